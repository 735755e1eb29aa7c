"""The README stays a front door (short, no lab-notebook run names or session numbers), and the
LICENSE and CITATION.cff it points to exist and are well formed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAX_LINES = 200  # a front door: what it is, two commands, the results, a trained model, links

#: Run codenames of the lab notebook (docs/experiments/, once docs/reproduction.md). They name run
#: folders on a developer's machine and mean nothing to a reader of the README.
CODENAMES = """
b0 a01 a02 a03 a04 a05 a06 a065 a08 r1 f1 f2 f3 r2 s1 r3 r3b t55 r5 m1 m3 m4 m5 r5b g1 m6 c1 c1b c2
m7 p1 t1cpu m8 q1 m9 m10 m11 a-decay c-smooth t1b t1c m13 sw qfm pn pn2 mh64 iw2 ms05 m1d t1k1
ft-sharp ft-early sf05 ms035 pn3 pn4 pn4b mc1 mc2 gg mb1 pb64 ms03 ms03a mbin mbin-nocur mbin2 mmu
mbf1 mbf3 mbf4 msw sbf3 fmc mbf45 fh250 fdec t1k5 t1k5b t1k5e msw4 fmb11 ftn2 ftsh fk3 fiw2 fiw05
fpn fpnc fpnd fmb12 t1k5c t1k5d fpne fpnf fmb13 fs3s1 fmcs1 mswpn fmb14 diag fs3pn fs5 fmsw fmd
"""
#: A run's own section in the notebook: ``### fpne, fpnf — ...``.
RUN_HEADING = re.compile(r"^#{2,4} ([a-z0-9-]+(?:, [a-z0-9-]+)*) — ", re.MULTILINE)


def notebook_codenames() -> set[str]:
    """The codenames above plus every run named in a section heading of docs/experiments/."""
    found = set(CODENAMES.split())
    for page in (ROOT / "docs" / "experiments").glob("*.md"):
        for names in RUN_HEADING.findall(page.read_text(encoding="utf-8")):
            found.update(n.strip() for n in names.split(","))
    return found


def named_codenames(text: str) -> list[str]:
    return sorted(
        c for c in notebook_codenames() if re.search(rf"(?<![\w-]){re.escape(c)}(?![\w-])", text)
    )


def test_the_readme_is_short() -> None:
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_LINES, (
        f"README.md has {lines} lines; move detail into docs/ (limit {MAX_LINES})"
    )


def test_the_codename_list_is_found() -> None:
    assert {"fmc", "pn4b", "t1k5c", "msw4", "fpne"} <= notebook_codenames()
    assert len(notebook_codenames()) >= 100


def test_the_readme_names_no_run_codename() -> None:
    named = named_codenames(README.read_text(encoding="utf-8"))
    assert not named, f"README.md names lab-notebook runs {named}; cite docs/results.md instead"


def test_the_readme_names_no_session() -> None:
    found = re.findall(r"\bsessions? \d+", README.read_text(encoding="utf-8"), re.IGNORECASE)
    assert not found, f"README.md names {found}; the lab notebook is docs/experiments/"


def test_the_checks_catch_what_they_are_for() -> None:
    assert named_codenames("the direct run (run fpne) scored") == ["fpne"]
    assert named_codenames("spn, fpnex, a-decayed, ms03a-like") == []
    assert re.search(r"\bsessions? \d+", "as in Session 13", re.IGNORECASE)


def test_the_readme_has_its_parts() -> None:
    text = README.read_text(encoding="utf-8")
    for needed in [
        "https://arxiv.org/abs/1708.03498",
        "grouping run",
        "-e examples/grouping-laplace -e examples/grouping-lstm",
        "python -m pytest",
        "docs/results.md",
        "docs/plugins.md",
        "@inproceedings{",
        "LICENSE",
    ]:
        assert needed in text, f"README.md lacks {needed!r}"
    for heading in ["## Results", "## Use a trained model", "## Command line", "## Citation"]:
        assert heading in text.splitlines(), f"README.md lacks the section {heading!r}"


def test_the_readme_installs_what_ci_installs() -> None:
    """The README's test command installs the example packages, as .ci/run does, so the count it
    states is the count a user gets."""
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    for package in re.findall(r"-e (examples/[\w-]+)", ci):
        assert f"-e {package}" in README.read_text(encoding="utf-8")


def test_the_license_is_mit_as_pyproject_says() -> None:
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License")
    assert "Copyright (c) 2026 the grouping authors" in text
    assert 'license = { text = "MIT" }' in (ROOT / "pyproject.toml").read_text(encoding="utf-8")


# ---- CITATION.cff: the few keys of the CFF 1.2.0 schema that matter, parsed by hand (no PyYAML)


def cff_blocks(text: str) -> dict[str, str]:
    """Each top-level key of a YAML mapping and the raw text under it (its value and its block)."""
    blocks: dict[str, str] = {}
    key = ""
    for line in text.splitlines():
        match = re.match(r"^([A-Za-z][\w-]*):(.*)$", line)
        if match:
            key = match.group(1)
            blocks[key] = match.group(2).strip()
        elif key and line.strip() and not line.lstrip().startswith("#"):
            blocks[key] += "\n" + line
    return blocks


def scalar(block: str) -> str:
    return block.splitlines()[0].strip().strip("\"'") if block else ""


def nested(block: str) -> dict[str, str]:
    """A block mapping two spaces in, as cff_blocks reads the top level."""
    inner = "\n".join(line[2:] for line in block.splitlines()[1:] if line.startswith("  "))
    return cff_blocks(inner)


def persons(block: str) -> list[str]:
    """The list items of an ``authors`` block, each as its text."""
    return [item for item in re.split(r"\n\s*- ", "\n" + block.strip()) if item.strip()]


def cff_problems(text: str) -> list[str]:
    top = cff_blocks(text)
    problems = [
        f"missing {k}" for k in ("cff-version", "message", "title", "authors") if k not in top
    ]
    if scalar(top.get("cff-version", "")) != "1.2.0":
        problems.append("cff-version is not 1.2.0")
    if not persons(top.get("authors", "")):
        problems.append("authors is empty")
    if "preferred-citation" not in top:
        return [*problems, "missing preferred-citation"]
    cite = nested(top["preferred-citation"])
    problems += [
        f"preferred-citation lacks {k}" for k in ("type", "title", "authors") if k not in cite
    ]
    for person in persons(cite.get("authors", "")):
        if "family-names:" not in person and "name:" not in person:
            problems.append(f"an author has neither family-names nor name: {person.strip()!r}")
    return problems


def test_citation_cff_is_valid() -> None:
    text = (ROOT / "CITATION.cff").read_text(encoding="utf-8")
    assert cff_problems(text) == []
    cite = nested(cff_blocks(text)["preferred-citation"])
    assert scalar(cite["title"]) == "Neural Expectation Maximization"
    assert scalar(cite["year"]) == "2017"
    families = re.findall(r"family-names: (.+)", cite["authors"])
    assert families == ["Greff", "van Steenkiste", "Schmidhuber"]


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (
            lambda t: t.replace("cff-version: 1.2.0", "cff-version: 1.1.0"),
            "cff-version is not 1.2.0",
        ),
        (lambda t: re.sub(r"^message:.*\n", "", t, flags=re.MULTILINE), "missing message"),
        (
            lambda t: t.replace('  title: "Neural', '  headline: "Neural'),
            "preferred-citation lacks title",
        ),
    ],
)
def test_the_cff_check_catches_a_broken_file(edit: object, problem: str) -> None:
    text = (ROOT / "CITATION.cff").read_text(encoding="utf-8")
    assert callable(edit)
    assert problem in cff_problems(edit(text))
