"""How many prompt tokens a piece of input costs, estimated before the request (one rule for text, images
and PDFs, so the prompt's budget counts everything it sends).

- Text: about four characters a token for English text (cheap and conservative).
- Images (Anthropic's vision guide): about width × height / 750 tokens, after the API scales an image
  down to at most 1,568 pixels on its long edge and about 1.15 megapixels (so at most about 1,600).
- PDFs (Anthropic's PDF guide): every page is sent as its text, typically 1,500-3,000 tokens, and as an
  image of the page; a page is counted as 3,000 tokens in all. A request takes at most 100 pages.
"""

from __future__ import annotations

import math

IMAGE_PIXELS_PER_TOKEN = 750
IMAGE_MAX_EDGE = 1568
IMAGE_MAX_PIXELS = 1_150_000
IMAGE_MAX_TOKENS = math.ceil(IMAGE_MAX_PIXELS / IMAGE_PIXELS_PER_TOKEN)  # also an image whose size is unknown
PDF_PAGE_TOKENS = 3_000
PDF_MAX_PAGES = 100
# What the files of one prompt may cost, apart from the context budget (thread, history, passages): a
# PDF of about ten pages, or a dozen large images, read whole while thread and knowledge still fit.
FILE_TOKENS = 32_000


def estimate_tokens(text: str) -> int:
    """A cheap, conservative estimate (about four characters a token for English text)."""
    return len(text) // 4 + 1


def image_tokens(width: int, height: int) -> int:
    """The tokens of an image of this many pixels, as the API scales it; the ceiling when unknown."""
    if width <= 0 or height <= 0:
        return IMAGE_MAX_TOKENS
    scale = min(1.0, IMAGE_MAX_EDGE / max(width, height), math.sqrt(IMAGE_MAX_PIXELS / (width * height)))
    return max(1, math.ceil((width * scale) * (height * scale) / IMAGE_PIXELS_PER_TOKEN))


def pdf_tokens(pages: int) -> int:
    return max(1, pages) * PDF_PAGE_TOKENS
