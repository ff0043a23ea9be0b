"""The docs the code cites exist: every provider has its section, every cited anchor a heading."""

from __future__ import annotations

import re
from pathlib import Path

from nbllm.providers.catalog import BUILTIN

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
CODE_DIRS = ("nbllm", "magics", "widgets")
CITATION = re.compile(r"docs/([\w.-]+\.md)#([\w-]+)")
FENCE = re.compile(r"^\s*(```|~~~)")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The anchors of a Markdown page's headings (code blocks skipped, repeats numbered)."""
    found: set[str] = set()
    counts: dict[str, int] = {}
    in_fence = False
    for line in page.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        match = None if in_fence else re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            base = slug(match.group(1))
            n = counts.get(base, 0)
            counts[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")
    return found


def citations() -> list[tuple[Path, str, str]]:
    """(source file, cited page, cited anchor) for every ``docs/page.md#anchor`` in the code."""
    cited = []
    for folder in CODE_DIRS:
        for source in sorted((ROOT / folder).rglob("*.py")):
            for page, anchor in CITATION.findall(source.read_text(encoding="utf-8")):
                cited.append((source.relative_to(ROOT), page, anchor))
    return cited


def test_slug_matches_github():
    assert slug("Streaming (SSE)") == "streaming-sse"
    assert slug("ernie-v1") == "ernie-v1"
    assert slug("Errors") == "errors"


def test_providers_page_exists():
    assert (DOCS / "providers.md").is_file()


def test_every_catalogue_provider_has_a_section():
    headings = anchors(DOCS / "providers.md")
    text = (DOCS / "providers.md").read_text(encoding="utf-8")
    for spec in BUILTIN:
        assert f"\n## {spec.id}\n" in text, f"docs/providers.md has no '## {spec.id}' section"
        assert spec.id in headings
    assert {"streaming-sse", "errors"} <= headings


def test_cited_anchors_resolve():
    missing = []
    for source, page, anchor in citations():
        path = DOCS / page
        if path.is_file() and anchor not in anchors(path):
            missing.append(f"{source}: docs/{page}#{anchor}")
    assert not missing, "anchors cited in code but missing in docs:\n" + "\n".join(missing)
