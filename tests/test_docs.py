"""The plugin author guide documents every hook and every interface method with its exact signature
(as datasette's test_plugin_hooks_are_documented)."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from grouping.plugin_api.kinds import KINDS
from grouping.plugins import hookspecs, interfaces

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "plugins.md"
INTERFACES = ("Likelihood", "Network", "Updater", "Noise", "Dataset", "Split")
#: Dunder methods a plugin author implements or calls; other dunders are Python's business.
PUBLIC_DUNDERS = {"__init__", "__call__", "__len__"}


def signature(func: Callable[..., Any], name: str) -> str:
    """``def name(param: annotation, ...) -> annotation`` as written in the source."""
    sig = inspect.signature(func)
    params = []
    for p in sig.parameters.values():
        text = p.name if p.annotation is inspect.Parameter.empty else f"{p.name}: {p.annotation}"
        if p.default is not inspect.Parameter.empty:
            text += f" = {p.default!r}"
        params.append(text)
    returns = sig.return_annotation
    tail = "" if returns is inspect.Signature.empty else f" -> {returns}"
    return f"def {name}({', '.join(params)}){tail}"


def hook_signatures() -> list[str]:
    return [
        signature(func, name)
        for name, func in vars(hookspecs).items()
        if callable(func) and hasattr(func, f"{hookspecs.PROJECT}_spec")
    ]


def interface_members(cls: type) -> list[tuple[str, str]]:
    """(member name, signature) of each method and property a class defines itself."""
    out = []
    for name, member in vars(cls).items():
        func = member.fget if isinstance(member, property) else member
        if not inspect.isfunction(func):
            continue
        if name.startswith("_") and name not in PUBLIC_DUNDERS:
            continue
        out.append((name, signature(func, name)))
    return out


def joined(text: str) -> str:
    """Signatures the formatter wrapped, back on one line: ``def f(\n    a, b\n) -> T``."""
    return re.sub(r"\s*\n\s*\)", ")", re.sub(r"\(\s*\n\s*", "(", text))


def section(text: str, heading: str) -> str:
    """The guide's text under ``### `heading` `` up to the next heading of level 2 or 3."""
    lines = text.splitlines()
    start = lines.index(f"### `{heading}`")
    end = next(
        (i for i in range(start + 1, len(lines)) if lines[i].startswith(("## ", "### "))),
        len(lines),
    )
    return "\n".join(lines[start:end])


def test_the_hookspecs_are_found() -> None:
    assert len(hook_signatures()) == len(KINDS) == 5


@pytest.mark.parametrize("sig", hook_signatures())
def test_every_hook_is_documented_with_its_signature(sig: str) -> None:
    assert sig in GUIDE.read_text(encoding="utf-8"), f"docs/plugins.md lacks `{sig}`"


@pytest.mark.parametrize("cls_name", INTERFACES)
def test_every_interface_method_is_documented_in_its_section(cls_name: str) -> None:
    cls = getattr(interfaces, cls_name)
    abstract = {n for n, m in vars(cls).items() if getattr(m, "__isabstractmethod__", False)}
    members = interface_members(cls)
    assert abstract <= {name for name, _ in members}  # the abstract ones are all checked below
    text = joined(section(GUIDE.read_text(encoding="utf-8"), cls_name))
    missing = [sig for _, sig in members if sig not in text]
    assert not missing, f"docs/plugins.md, section `{cls_name}`, lacks {missing}"


def test_the_check_catches_a_missing_method() -> None:
    text = section(GUIDE.read_text(encoding="utf-8"), "Likelihood")
    sig = signature(interfaces.Likelihood.pixel_prob, "pixel_prob")
    assert sig in text
    assert sig not in text.replace(sig, "")


def test_the_readme_links_the_guide() -> None:
    assert "docs/plugins.md" in (ROOT / "README.md").read_text(encoding="utf-8")
