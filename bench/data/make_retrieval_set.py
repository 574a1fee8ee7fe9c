"""Generate the labelled retrieval set: a handbook of 50 policy pages and 400 questions about them.

    uv run python bench/data/make_retrieval_set.py        # rewrites bench/data/retrieval/

Deterministic (a fixed seed). Every page has the same four sections (how to request, approval,
processing time, support) with facts of its own, so a question must find the right page AND the
right section. Each section gets two questions, labelled with the page and the section heading:
- keyword: in the page's own vocabulary ("Who approves laptop refresh requests?");
- paraphrase: how people actually ask, naming the subject in everyday words and avoiding the
  page's terms ("Whose sign-off do I need for a new work computer?"). The generator checks that a
  paraphrase shares no word with its page's title, and reports how many share any word with the
  labelled section at all.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

OUT = Path(__file__).parent / "retrieval"
SEED = 20261125

# slug, page title (also the subject in the page's words), the subject in everyday words, owning team
SUBJECTS: list[tuple[str, str, str, str]] = [
    ("laptop-refresh", "Laptop refresh", "a new work computer", "IT"),
    ("parental-leave", "Parental leave", "time off after having a baby", "People"),
    ("conference-travel", "Conference travel", "a trip to speak at an industry summit", "Finance"),
    ("home-office-stipend", "Home office stipend", "a desk and chair for working remotely", "Finance"),
    ("gym-membership", "Gym membership", "a fitness club pass", "People"),
    ("mobile-phone-plan", "Mobile phone plan", "a cell contract paid by the company", "IT"),
    ("cloud-sandbox", "Cloud sandbox account", "a personal AWS playground", "Platform"),
    ("database-access", "Production database access", "reading live customer tables", "Security"),
    ("vpn-hardware-token", "VPN hardware token", "the key fob for logging in remotely", "IT"),
    ("badge-replacement", "Badge replacement", "a lost door card", "Facilities"),
    ("parking-permit", "Parking permit", "a spot for my car at the building", "Facilities"),
    ("language-courses", "Language course funding", "Spanish lessons", "People"),
    ("certification-exams", "Certification exam fees", "paying for a professional test like the CKA", "People"),
    ("external-monitor", "External monitor", "a second screen", "IT"),
    ("software-licence", "Software licence purchase", "buying a paid app", "Procurement"),
    ("domain-registration", "Domain name registration", "a new website address", "Platform"),
    ("tls-certificates", "TLS certificate issuance", "the padlock for our https site", "Security"),
    ("github-organization", "GitHub organization access", "joining our code host", "Platform"),
    ("on-call-compensation", "On-call compensation", "extra pay for pager weeks", "Finance"),
    ("relocation-package", "Relocation package", "moving to another city for the job", "People"),
    ("referral-bonus", "Referral bonus", "recommending a friend who gets hired", "People"),
    ("sabbatical-leave", "Sabbatical leave", "a long break after years of service", "People"),
    ("team-offsite", "Team offsite", "a group retreat away from headquarters", "Operations"),
    ("customer-gifts", "Customer gift policy", "sending presents to clients", "Legal"),
    ("press-inquiries", "Press inquiry handling", "a journalist emailing me", "Communications"),
    ("open-source", "Open source contribution approval", "publishing code on public repositories", "Legal"),
    ("security-incidents", "Security incident reporting", "noticing a possible hack", "Security"),
    ("data-deletion", "Customer data deletion", "a client asking us to erase their records", "Legal"),
    ("penetration-testing", "Penetration testing engagement", "hiring ethical hackers", "Security"),
    ("api-key-rotation", "API key rotation", "changing secret tokens for integrations", "Platform"),
    ("gpu-quota", "GPU cluster quota", "compute for training neural networks", "Platform"),
    ("analytics-access", "Analytics dashboard access", "seeing product usage charts", "Data"),
    ("feature-flags", "Feature flag creation", "switching functionality on for some users", "Platform"),
    ("staging-environments", "Staging environment reservation", "a preproduction copy to try things on", "Platform"),
    ("dns-changes", "DNS record changes", "pointing a hostname at a new server", "Platform"),
    ("email-aliases", "Email alias creation", "a shared mailbox address", "IT"),
    ("guest-accounts", "Slack guest accounts", "bringing an outside partner into our chat", "IT"),
    ("hardware-return", "Hardware return", "giving back equipment when leaving", "IT"),
    ("visa-sponsorship", "Visa sponsorship", "a work permit for moving countries", "People"),
    ("tuition-assistance", "Tuition assistance", "help paying for a university degree", "People"),
    ("wellness-days", "Wellness days", "a mental health break", "People"),
    ("overtime-meals", "Overtime meal allowance", "dinner when working late", "Finance"),
    ("print-quota", "Print quota", "paper copies", "Facilities"),
    ("mentoring-program", "Mentoring program", "being paired with a senior colleague for guidance", "People"),
    ("internal-transfer", "Internal transfer", "switching to a different group", "People"),
    ("corporate-cards", "Corporate card", "plastic for paying business costs", "Finance"),
    ("vendor-onboarding", "Vendor onboarding", "adding a new supplier", "Procurement"),
    ("contract-review", "Contract legal review", "having a lawyer check an agreement", "Legal"),
    ("accessibility", "Accessibility accommodation", "an ergonomic setup for a disability", "People"),
    ("bug-bounty", "Bug bounty payout", "rewarding researchers who find vulnerabilities", "Security"),
]

QUEUES = ["HELP", "OPS", "PEOPLE", "FIN", "SEC", "PLAT", "FAC", "LEGAL"]
FORMS = ["F-101", "F-204", "F-310", "F-412", "F-518", "F-623", "F-735", "F-846"]
APPROVERS = [
    "your manager",
    "the department head",
    "the finance controller",
    "the security lead",
    "the people partner",
    "the platform lead",
    "the legal counsel",
    "the office manager",
]
ESCALATIONS = ["the duty manager", "the on-call engineer", "the service desk lead", "the operations director"]

# heading, two phrasings in the page's vocabulary
SECTIONS: dict[str, tuple[str, list[str]]] = {
    "request": (
        "How to request",
        [
            "To request {term}, open a ticket in the {queue} queue and attach the {form} form. "
            "Requests without the form are closed automatically.",
            "Requests for {term} start with the {form} form, filed in the {queue} queue. "
            "Incomplete requests are returned to the requester.",
        ],
    ),
    "approval": (
        "Approval",
        [
            "Every {term} request needs approval from {approver}. An approval stays valid for {valid} days; "
            "after that, file again.",
            "{Approver} approves or declines {term} requests at the weekly review. Approvals lapse after {valid} days.",
        ],
    ),
    "timeline": (
        "Processing time",
        [
            "Once approved, {term} is processed within {days} business days. "
            "Urgent cases can be escalated to {escalation}.",
            "Processing {term} takes {days} business days after approval; for urgent cases page {escalation}.",
        ],
    ),
    "support": (
        "Support",
        [
            "Questions about {term} go to the #{channel} channel, which the {team} team watches during office hours.",
            "The {team} team owns {term}; ask in #{channel} and mention the request ticket.",
        ],
    ),
}

KEYWORD_QUESTIONS: dict[str, list[str]] = {
    "request": ["How do I request {term}?", "Which queue and form are used to request {term}?"],
    "approval": ["Who approves {term} requests?", "How long is a {term} approval valid?"],
    "timeline": ["How many business days does {term} processing take?", "Where do I escalate an urgent {term} case?"],
    "support": ["Which channel handles questions about {term}?", "Which team owns {term}?"],
}

PARAPHRASE_QUESTIONS: dict[str, list[str]] = {
    "request": ["What's the first step to get {lay}?", "I'd like {lay}, where do I start?"],
    "approval": ["Whose sign-off do I need for {lay}?", "Who has to say yes before I get {lay}?"],
    "timeline": ["How long will I wait for {lay}?", "Once it's OK'd, when will {lay} actually happen?"],
    "support": ["Where can I get help with {lay}?", "Who can I talk to about {lay}?"],
}

STOPWORDS = frozenset(
    re.findall(
        r"\S+",
        "a an the to of for in on at by with and or is are be do does i i'd it it's my our me we you your what what's "
        "where when who whose which how long will can get has have before after once about like",
    )
)


def words(text: str) -> set[str]:
    """Content words, crudely stemmed (a trailing s dropped), for the overlap checks."""
    return {w.rstrip("s") for w in re.findall(r"[a-z0-9']+", text.lower()) if w not in STOPWORDS}


def generate() -> tuple[dict[str, str], list[dict[str, str]]]:
    rng = random.Random(SEED)
    pages: dict[str, str] = {}
    questions: list[dict[str, str]] = []
    for slug, title, lay, team in SUBJECTS:
        first = title.split()[0]
        term = title if first.isupper() or first in {"GitHub", "Slack"} else title[0].lower() + title[1:]
        facts = {
            "term": term,
            "queue": rng.choice(QUEUES),
            "form": rng.choice(FORMS),
            "approver": (approver := rng.choice(APPROVERS)),
            "Approver": approver[0].upper() + approver[1:],
            "valid": rng.choice([14, 30, 45, 60, 90]),
            "days": rng.choice([2, 3, 5, 7, 10, 15]),
            "escalation": rng.choice(ESCALATIONS),
            "channel": f"{slug}-help",
            "team": team,
        }
        body = [f"# {title}", ""]
        for kind, (heading, phrasings) in SECTIONS.items():
            section_text = rng.choice(phrasings).format(**facts)
            body += [f"## {heading}", "", section_text, ""]
            keyword = rng.choice(KEYWORD_QUESTIONS[kind]).format(term=term)
            paraphrase = rng.choice(PARAPHRASE_QUESTIONS[kind]).format(lay=lay)
            assert not words(paraphrase) & words(title), (paraphrase, title)
            for style, question in (("keyword", keyword), ("paraphrase", paraphrase)):
                questions.append({"question": question, "document": f"{slug}.md", "heading": heading, "kind": style})
        pages[f"{slug}.md"] = "\n".join(body)
    return pages, questions


def main() -> None:
    pages, questions = generate()
    corpus = OUT / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    for old in corpus.glob("*.md"):
        old.unlink()
    for name, text in pages.items():
        (corpus / name).write_text(text)
    (OUT / "questions.json").write_text(json.dumps(questions, indent=1) + "\n")
    paraphrases = [q for q in questions if q["kind"] == "paraphrase"]
    sections = {
        (name, heading): text
        for name, page in pages.items()
        for heading, text in re.findall(r"^## (.+?)\n\n(.+?)$", page, flags=re.M)
    }
    sharing = sum(
        1
        for q in paraphrases
        if words(q["question"]) & words(sections[(q["document"], q["heading"])] + " " + q["heading"])
    )
    print(
        f"{len(pages)} pages, {len(questions)} questions ({len(paraphrases)} paraphrases, "
        f"{sharing} of which share any word with their section) -> {OUT}"
    )


if __name__ == "__main__":
    main()
