"""Every relative link in README.md and docs/**/*.md resolves: the file exists, and a ``#anchor``
names a heading of that file (GitHub's rule: lower case, punctuation dropped, spaces to hyphens,
``-1``, ``-2`` for repeated headings) or an explicit ``<a id>``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.DOTALL | re.MULTILINE)
CODE = re.compile(r"`[^`\n]*`")
#: [text](target) and ![alt](target); the target ends at whitespace or the closing bracket.
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.MULTILINE)
HTML_ID = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text."""
    text = re.sub(r"<[^>]+>", "", heading).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    out = set(HTML_ID.findall(text))
    for heading in HEADING.findall(text):
        base = slug(heading)
        n = seen.get(base, 0)
        out.add(base if n == 0 else f"{base}-{n}")
        seen[base] = n + 1
    return out


def links(path: Path) -> list[str]:
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    return LINK.findall(CODE.sub("", text))


def broken(path: Path) -> list[str]:
    """The relative links of ``path`` that do not resolve, each with the reason."""
    out = []
    for target in links(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:, ...
            continue
        file_part, _, anchor = target.partition("#")
        dest = path if not file_part else (path.parent / file_part).resolve()
        if not dest.exists():
            out.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            name = dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest.name
            out.append(f"{target}: no heading #{anchor} in {name}")
    return out


def test_the_pages_and_links_are_found() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in PAGES}
    assert {"README.md", "docs/results.md", "docs/experiments/README.md"} <= names
    assert len(links(ROOT / "README.md")) >= 10  # the pattern finds links


@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(ROOT).as_posix() for p in PAGES])
def test_every_relative_link_resolves(page: Path) -> None:
    assert not broken(page), f"{page.relative_to(ROOT)}: {broken(page)}"


def test_the_check_catches_a_missing_file_and_anchor(tmp_path: Path) -> None:
    (tmp_path / "b.md").write_text("# Title\n\n## A `code` heading: yes\n\n## Again\n\n## Again\n")
    page = tmp_path / "a.md"
    page.write_text(
        "[ok](b.md#a-code-heading-yes) [ok](b.md#again-1) [ok](#here) ![img](b.md)\n"
        "[gone](c.md) [bad](b.md#nope) `[not a link](x.md)` [web](https://example.com/x)\n\n"
        "# Here\n\n```\n[in a fence](y.md)\n```\n"
    )
    assert broken(page) == ["c.md: no such file", "b.md#nope: no heading #nope in b.md"]


def test_slug_follows_github() -> None:
    assert (
        slug("b0 — baseline (flying-shapes-3 as shipped)")
        == "b0--baseline-flying-shapes-3-as-shipped"
    )
    assert slug("5.3 Flying shapes (conv)") == "53-flying-shapes-conv"
    assert slug("`grouping run`") == "grouping-run"
