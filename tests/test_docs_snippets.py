"""Every ```python block of the plugin author guide runs, and every module path it names exists.

How the blocks run: each block is compiled under the name ``plugins.md:block N (line L)`` and
executed in its own fresh namespace (``exec(code, {"__name__": ...})``), in the order the guide
gives them, with the working directory a temporary folder. A fresh namespace per block means no
block may lean on a name an earlier block defined: every block is complete, so a reader can copy
any one of them and run it. Other fences (```toml, ```bash, plain ```) are not run.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "plugins.md"
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)
ANY_FENCE = re.compile(r"^```.*?^```[ \t]*$", re.DOTALL | re.MULTILINE)
#: A dotted name in the guide that starts with one of grouping's packages.
DOTTED = re.compile(r"\b(?:grouping|grouping_plugins)(?:\.[A-Za-z_]\w*)+")
#: A repository path in backticks or a link: grouping/..., plugins/..., examples/..., tests/...
PATH = re.compile(r"(?<![\w/.])((?:grouping|plugins|examples|tests|docs)/[\w./-]*\w)")


def python_blocks() -> list[tuple[int, str]]:
    """(line number of the fence, code) of every ```python block, in order."""
    text = GUIDE.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start()) + 1, m.group(1)) for m in FENCE.finditer(text)]


BLOCKS = python_blocks()


def test_the_guide_has_python_blocks() -> None:
    assert len(BLOCKS) >= 10  # the parser must not silently find nothing


@pytest.mark.parametrize(
    ("number", "line", "code"),
    [(n, line, code) for n, (line, code) in enumerate(BLOCKS, start=1)],
    ids=[f"block{n}-line{line}" for n, (line, _) in enumerate(BLOCKS, start=1)],
)
def test_every_python_block_runs(
    number: int, line: int, code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # whatever a block writes lands in a temporary folder
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    where = f"plugins.md:block {number} (line {line})"
    namespace: dict[str, object] = {"__name__": f"plugins_md_block_{number}"}
    exec(compile(code, where, "exec"), namespace)


def resolves(dotted: str) -> bool:
    """True when ``dotted`` is a module, or an attribute path inside one."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return False
        return True
    return False


def test_every_dotted_name_in_the_guide_exists() -> None:
    names = sorted(set(DOTTED.findall(GUIDE.read_text(encoding="utf-8"))))
    assert "grouping.plugins.SPLITS" in names  # the pattern finds names
    missing = [name for name in names if not resolves(name)]
    assert not missing, f"docs/plugins.md names modules or attributes that do not exist: {missing}"


def test_every_repository_path_in_the_guide_exists() -> None:
    text = ANY_FENCE.sub("", GUIDE.read_text(encoding="utf-8"))  # a package's own tree is relative
    paths = sorted(set(PATH.findall(text)))
    assert "grouping/plugin_api/interfaces.py" in paths
    missing = [p for p in paths if not (ROOT / p).exists() and not (ROOT / "docs" / p).exists()]
    assert not missing, f"docs/plugins.md names paths that do not exist: {missing}"


@pytest.mark.parametrize("gone", ["grouping.interfaces", "grouping.hookspecs", "grouping.registry"])
def test_the_guide_names_no_removed_module(gone: str) -> None:
    assert not re.search(rf"\b{re.escape(gone)}\b", GUIDE.read_text(encoding="utf-8"))
