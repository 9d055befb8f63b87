"""The user docs (README.md and docs/*.md; not docs/experiments/, not CHANGELOG.md) are reference:
no tuning passes, issue numbers, working sessions or commit hashes, and every relative link
resolves to a file and, with ``#anchor``, to a heading of that file (GitHub's slug rule).
docs/architecture.md names every module of hear_codec and training, and nothing that is not there.

Each test reports every offending line as ``file:line: what: text``.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"


def user_docs() -> list[Path]:
    """README.md and the reference pages; docs/experiments/ (history) is a sub-folder, not globbed."""
    return [REPO / "README.md", *sorted(DOCS.glob("*.md"))]


def rel(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


# ---- markdown reading ----
FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"(`+)(.+?)\1")
LINK = re.compile(r"!?\[((?:[^\[\]]|\[[^\]]*\])*)\]\(\s*<?([^()\s>]*(?:\([^()\s]*\)[^()\s>]*)*)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def code_mask(lines: list[str]) -> list[bool]:
    """Which lines are inside a fenced code block (the fences included)."""
    inside, mask = None, []
    for line in lines:
        fence = FENCE.match(line)
        if inside is None and fence:
            inside = fence.group(1)
            mask.append(True)
        elif inside is not None:
            mask.append(True)
            if fence and fence.group(1) == inside:
                inside = None
        else:
            mask.append(False)
    return mask


def blank_inline_code(line: str) -> str:
    """The line with its inline code spans replaced by spaces (same length)."""
    return INLINE_CODE.sub(lambda m: " " * len(m.group(0)), line)


def github_slug(text: str) -> str:
    """GitHub's heading anchor: the rendered text, lower case, without punctuation but ``-`` and
    ``_``, spaces as hyphens (a heading that repeats gets ``-1``, ``-2``: see :func:`anchors`)."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link renders as its text
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    seen: dict[str, int] = {}
    found = set()
    for line, in_code in zip(lines, code_mask(lines)):
        heading = None if in_code else HEADING.match(line)
        if heading:
            slug = github_slug(heading.group(2))
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            found.add(slug if n == 0 else f"{slug}-{n}")
    return found


def links(path: Path):
    """(line number, target) of every markdown link outside code, inline links and reference definitions."""
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, (line, in_code) in enumerate(zip(lines, code_mask(lines)), 1):
        if in_code:
            continue
        line = blank_inline_code(line)
        for m in LINK.finditer(line):
            yield number, m.group(2)
        ref = REFERENCE_DEF.match(line)
        if ref:
            yield number, ref.group(1)


def broken_links(path: Path) -> list[str]:
    problems = []
    for number, target in links(path):
        if not target or SCHEME.match(target):
            continue  # a web address (http:, mailto:): not checked offline
        file_part, _, anchor = target.partition("#")
        dest = path if not file_part else (path.parent / file_part)
        where = f"{rel(path)}:{number}: link {target}"
        if not dest.exists():
            problems.append(f"{where}: no such file {file_part}")
        elif anchor:
            if dest.suffix != ".md":
                problems.append(f"{where}: an anchor into a file that is not markdown")
            elif anchor not in anchors(dest):
                problems.append(f"{where}: {rel(dest.resolve())} has no heading with that anchor")
    return problems


# ---- what the user docs never say ----
ORDINAL = (r"(?:first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|eleventh|twelfth|"
           r"thirteenth|fourteenth|fifteenth|sixteenth|seventeenth|eighteenth|nineteenth|twentieth|"
           r"twenty[- ]\w+|\d+(?:st|nd|rd|th))")
CARDINAL = (r"(?:two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|"
            r"sixteen|seventeen|eighteen|nineteen|twenty|several|many|\d+)")
HEX = r"[0-9a-f]{7,40}"
FORBIDDEN = [
    ("a tuning pass", re.compile(rf"\b{ORDINAL}[- ]pass(?:es)?\b", re.I)),
    ("a tuning pass", re.compile(r"\bpass(?:es)?\s+(?:no\.?\s*)?#?\d{1,2}\b(?![.,]\d)", re.I)),
    ("tuning passes", re.compile(rf"\b{CARDINAL}\s+(?:tuning\s+)?passes\b", re.I)),
    ("an issue number", re.compile(r"\b(?:issues?|PRs?|pull requests?)[- ]?(?:#|no\.?\s*)?\d+\b", re.I)),
    ("an issue number", re.compile(r"(?<![\w&#/])#\d+\b")),
    ("a working session", re.compile(r"\bsessions?[- ]#?\d+\b", re.I)),
    ("a working session", re.compile(r"\b(?:this|that|working|numbered|previous|last|next|same|earlier|later)"
                                     r"\s+(?:working\s+)?sessions?\b", re.I)),
    ("a commit hash", re.compile(rf"`({HEX})`")),
    ("a commit hash", re.compile(rf"\bcommits?\s+(?:at\s+|is\s+|of\s+)?({HEX})\b", re.I)),
    ("a commit hash", re.compile(rf"(?<![\w#./-])({HEX})(?![\w/-]|\.\w)")),
]
# An upstream project's version, "owner/repo at 1a2b3c4", is a reference (which code we compare
# with), not this project's history.
UPSTREAM_PIN = re.compile(r"[\w.-]+/[\w.-]+\s+at\s*$")


def is_hash(word: str) -> bool:
    return bool(re.search(r"\d", word) and re.search(r"[a-f]", word))


def forbidden_mentions(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    # Link targets are checked by the link test; their anchors may name history pages' headings.
    visible = LINK.sub(lambda m: m.group(0)[:m.start(2) - m.start(0)] + " " * len(m.group(2))
                       + m.group(0)[m.end(2) - m.start(0):], text)
    lines = text.splitlines()
    problems = []
    for what, pattern in FORBIDDEN:
        for m in pattern.finditer(visible):
            if what == "a commit hash":
                if not is_hash(m.group(1)):
                    continue
                if UPSTREAM_PIN.search(visible[max(0, m.start() - 120):m.start()]):
                    continue
            number = visible.count("\n", 0, m.start()) + 1
            problems.append(f"{rel(path)}:{number}: {what} ({m.group(0).strip()!r}): {lines[number - 1].strip()[:160]}")
    return sorted(set(problems), key=lambda p: int(p.split(":")[1]))


@pytest.mark.parametrize("path", user_docs(), ids=rel)
def test_user_docs_hold_no_history(path):
    """Passes, issue numbers, sessions and commit hashes belong in docs/experiments/ and CHANGELOG.md."""
    problems = forbidden_mentions(path)
    assert not problems, "history in a user doc (move it to docs/experiments/ or CHANGELOG.md):\n" + "\n".join(problems)


@pytest.mark.parametrize("path", user_docs(), ids=rel)
def test_user_docs_links_resolve(path):
    problems = broken_links(path)
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_the_checks_catch_what_they_are_for(tmp_path):
    """The patterns on the forms they are for, and not on the docs' look-alikes."""
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n## A heading, with `code` — and more (2026-12-06)\n\n"
                    "caught: a sixteenth pass; pass 12; fifteen passes; the issue-15 bar; issue 35; see #15;\n"
                    "this session; session 16; a working session; at commit 84590bd; `c52bab5`; (ad7231d)\n"
                    "fine: one pass of random crops; a validation pass; tests pass; `--model-options`;\n"
                    "habla-liaa/encodecmae at 2dd6759; encodec_24khz-d7cc33bc.th; colour #1f77b4; 1e-4;\n"
                    "sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08; deadbeef1\n"
                    "[ok](#a-heading-with-code--and-more-2026-12-06) [ok](#title) [bad](#nope) [bad](missing.md)\n"
                    "[ok](https://example.com/issues/15) [history](other.md#a-sixteenth-pass)\n")
    (tmp_path / "other.md").write_text("## A sixteenth pass\n")
    found = forbidden_mentions_of(page, tmp_path)
    caught = {p.split("(")[1].split(")")[0] for p in found}
    assert caught == {"'sixteenth pass'", "'pass 12'", "'fifteen passes'", "'issue-15'", "'issue 35'", "'#15'",
                      "'this session'", "'session 16'", "'working session'", "'commit 84590bd'", "'`c52bab5`'",
                      "'ad7231d'", "'84590bd'", "'c52bab5'", "'deadbeef1'"}, found
    broken = broken_links_of(page, tmp_path)
    assert [b.split(": ")[1] for b in broken] == ["link #nope", "link missing.md"], broken


def forbidden_mentions_of(path: Path, root: Path) -> list[str]:
    global REPO
    saved, REPO = REPO, root
    try:
        return forbidden_mentions(path)
    finally:
        REPO = saved


def broken_links_of(path: Path, root: Path) -> list[str]:
    global REPO
    saved, REPO = REPO, root
    try:
        return broken_links(path)
    finally:
        REPO = saved


# ---- docs/architecture.md: one row per module ----
def architecture_rows() -> list[tuple[int, list[str]]]:
    """(line, paths) of each row of docs/architecture.md's module table: the backticked paths of
    its first cell; a bare file name after a path is in that path's folder."""
    rows = []
    for number, line in enumerate((DOCS / "architecture.md").read_text(encoding="utf-8").splitlines(), 1):
        if not line.startswith("|") or set(line) <= set("|-: "):
            continue
        first = line.strip("|").split("|")[0]
        names = re.findall(r"`([^`]+)`", first)
        paths, folder = [], ""
        for name in names:
            if "/" in name.rstrip("/"):
                folder = name.rsplit("/", 1)[0] + "/" if not name.endswith("/") else ""
                paths.append(name)
            elif name.endswith(".py") and folder:
                paths.append(folder + name)
            else:
                paths.append(name)
        if paths and paths[0].split("/")[0] in ("hear_codec", "training", "benchmarks", "tests"):
            rows.append((number, paths))
    return rows


def modules() -> list[str]:
    """Every module of the two packages; a package's ``__init__.py`` only where it holds the API."""
    found = [p for pkg in ("hear_codec", "training") for p in (REPO / pkg).rglob("*.py")
             if "__pycache__" not in p.parts]
    return sorted(rel(p) for p in found if p.name != "__init__.py" or p.parent == REPO / "hear_codec")


def test_architecture_names_every_module_once_and_nothing_else():
    rows = architecture_rows()
    assert rows, "docs/architecture.md has no module table"
    named: dict[str, list[int]] = {}
    problems = []
    for number, paths in rows:
        for p in paths:
            named.setdefault(p.rstrip("/"), []).append(number)
            if not (REPO / p).exists():
                problems.append(f"docs/architecture.md:{number}: {p} does not exist")
    for module in modules():
        lines = named.get(module, [])
        if not lines:
            problems.append(f"docs/architecture.md: no row for {module}")
        elif len(lines) > 1:
            problems.append(f"docs/architecture.md:{lines}: {module} has {len(lines)} rows")
    assert not problems, "\n".join(problems)
