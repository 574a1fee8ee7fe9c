"""The real-documentation set: Git's own manual pages (Debian's git-doc package), nobody here wrote them.

    uv run python bench/data/git_manual.py            # locate (or apt-get install) git-doc, check the labels

The corpus is not committed: it is the HTML that the `git-doc` package installs under
/usr/share/doc/git-doc (git 2.39 in Debian 12). The page set is every manual page there
(git-*.html, git*.html for the guides, scalar.html), except index.html (a copy of git.html),
the user manual (one 200-chunk page that covers everything, which would blur the labels),
and the empty redirect stubs. About 190 pages, ~4,000 chunks as ingestion cuts them.

The questions (bench/data/gitdocs/*.tsv) were written by hand for this set, one a line:
question, the page that answers it, and (optionally) other pages that answer it as well.
- paraphrase.tsv: how a person asks who has not read the page: the task in everyday words,
  avoiding the page's name and the command's vocabulary ("put my unfinished work aside
  temporarily" for git-stash, "line of work" for branch, "snapshot"/"save" for commit). Names
  of other systems (Subversion, CVS, GPG) are kept: users say them. The script reports how
  many paraphrases still contain the page's command word.
- keyword.tsv: worded like the documentation (the page's NAME line, option names).

Label audit (2026-12-02), of the paraphrases the default retriever missed (68 of 169, MiniLM
hybrid): for each miss the 5 passages it returned were read. Rule: a returned page is added as
another answering page only when the returned passage itself tells how to do what the question
asks (names the command, option or setting for that task and says what it does); a passing
mention ("see git-push(1)"), a list of commands, or an answer for a narrower case (CVS only) is
not enough, and no page was added that the retriever had not returned. 4 questions gained a page:
"stop tracking a file but keep it on my disk" + gitignore.html (its NOTES: "To stop tracking a
file that is currently tracked, use git rm --cached"); "change which text editor opens ..." +
gitfaq.html ("How do I configure a different editor? ... core.editor"); "bring in what my
teammates shared and combine it with my work" + gitcvs-migration.html ("git pull origin, which
merges in any work that others might have done"); "speed up a huge project with recommended
settings in one go" + git-config.html (feature.manyFiles: "these new defaults improve
performance"). One question depended on a context it does not give ("after all that, what did
the shared server's copy look like ...") and lost the dangling "after all that, ". None was
found wrongly labelled. Left out as borderline: giteveryday's command list ("git-pull(1) ... to
keep up-to-date with the upstream"), gitcvs-migration's CVS import for "migrate history from
another version control system", git-verify-commit's "created by git commit -S" for signing.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent / "gitdocs"
DOC_DIR = Path(os.environ.get("GIT_DOC_DIR", "/usr/share/doc/git-doc"))
EXCLUDED = {
    "index.html",
    "howto-index.html",
    "user-manual.html",
    "git-bisect-lk2009.html",  # an essay, not a manual page
    "git-remote-helpers.html",  # redirect stubs
    "git-tools.html",
    "everyday.html",
}


@dataclass(frozen=True)
class LabelledQuestion:
    question: str
    kind: str  # "keyword" or "paraphrase"
    pages: tuple[str, ...]  # the page that answers it first, then any others that do too


def locate(*, install: bool = True) -> Path:
    """The git-doc HTML folder, installing the Debian package first if it is missing and we may."""
    if not (DOC_DIR / "git-reset.html").is_file() and install and shutil.which("apt-get"):
        print("installing the git-doc package (the Git manual pages)", file=sys.stderr)
        subprocess.run(["apt-get", "install", "-y", "-q", "git-doc"], check=False, capture_output=True)
    if not (DOC_DIR / "git-reset.html").is_file():
        raise SystemExit(f"the Git manual is not at {DOC_DIR}: install the Debian package git-doc (or set GIT_DOC_DIR)")
    return DOC_DIR


def pages(root: Path) -> list[Path]:
    found = [*root.glob("git*.html"), root / "scalar.html"]
    return sorted(p for p in found if p.is_file() and p.name not in EXCLUDED)


def questions() -> list[LabelledQuestion]:
    labelled: list[LabelledQuestion] = []
    for kind in ("paraphrase", "keyword"):
        for line in (HERE / f"{kind}.tsv").read_text().splitlines():
            if not line.strip() or line.startswith("#"):
                continue
            question, page, *others = line.split("\t")
            also = tuple(p for p in (others[0].split(",") if others else []) if p)
            labelled.append(LabelledQuestion(question, kind, (page, *also)))
    return labelled


def command_word(page: str) -> str:
    """git-cherry-pick.html -> 'cherry-pick'; gitignore.html -> 'ignore'."""
    stem = page.removesuffix(".html").split(".")[0]
    return re.sub(r"^git-?", "", stem) or stem


def main() -> None:
    root = locate()
    names = {p.name for p in pages(root)}
    labelled = questions()
    unknown = sorted({page for q in labelled for page in q.pages if page not in names})
    if unknown:
        raise SystemExit(f"labels name pages outside the set: {unknown}")
    paraphrases = [q for q in labelled if q.kind == "paraphrase"]
    leaking = [q for q in paraphrases if command_word(q.pages[0]).lower() in q.question.lower()]
    print(f"{len(names)} pages in {root}")
    print(f"{len(paraphrases)} paraphrased questions, {len(labelled) - len(paraphrases)} worded like the docs")
    print(f"{len({q.pages[0] for q in labelled})} distinct pages labelled")
    print(f"{len(leaking)} paraphrases contain their page's command word:")
    for q in leaking:
        print(f"  {q.pages[0]}: {q.question}")


if __name__ == "__main__":
    main()
