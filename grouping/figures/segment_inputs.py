"""What ``grouping segment`` reads and the names it writes under: every input is tried on its own,
and no output overwrites an input or another output.

* A folder (without ``--sequence``) is its pictures, each read on its own: one unreadable file is
  one line, and the folder's other pictures are still written.
* A picture too big to decode (Pillow's decompression-bomb limit), an ``.npz`` whose header
  declares more than it holds, or one that does not fit in memory is one line, not a traceback.
* Output names are an input's stem; where two inputs share one (``a/img.png`` and ``b/img.png``,
  ``china.jpg`` beside ``china.png``), or an output would replace an input (``anim.gif`` into its
  own folder), or the name is too long for a file name, the outputs get a unique, shorter name and
  the record's notes say so.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

from grouping.data.sizes import npz_size_defects
from grouping.errors import DataError, one_line
from grouping.figures.images import IMAGE_SUFFIXES, Item, SegmentInputError, read_items

#: The longest output name, in bytes of UTF-8, before its suffixes ("-000.overlay.png", "-2"):
#: file systems allow 255.
MAX_NAME_BYTES = 200


def expand(path: Path, sequence: bool) -> list[Path]:
    """The inputs one command-line argument stands for: a folder's pictures one by one (sorted),
    unless ``sequence`` makes the folder one video; anything else as it is."""
    if sequence or not path.is_dir():
        return [path]
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    return files or [path]  # an empty folder: read_items says so in one line


def read_input(path: Path, channels: int, sequence: bool) -> list[Item]:
    """:func:`read_items`, with every way a file can be too big turned into one line."""
    from PIL import Image

    try:
        if path.suffix.lower() == ".npz" and path.is_file():
            defects = npz_size_defects(path, str(path))
            if defects:
                raise SegmentInputError(defects[0])
        return read_items(path, channels, sequence)
    except Image.DecompressionBombError as exc:
        raise SegmentInputError(
            f"{path}: not read, the picture is too big ({one_line(str(exc), 160)})"
        ) from None
    except MemoryError:
        raise SegmentInputError(f"{path}: not read, it does not fit in memory") from None
    except SegmentInputError:
        raise
    except DataError as exc:
        raise SegmentInputError(str(exc)) from None


def input_files(paths: Iterable[Path]) -> set[Path]:
    """Every file the inputs are read from (a ``--sequence`` folder's pictures included), resolved,
    so that no output replaces one."""
    found: set[Path] = set()
    for path in paths:
        files = path.iterdir() if path.is_dir() else [path]
        found.update(p.resolve() for p in files if p.is_file())
    return found


def output_files(name: str, video: bool, steps: int) -> list[str]:
    """The files an item named ``name`` writes (see :mod:`grouping.figures.segment`)."""
    if not video:
        return [f"{name}.labels.png", f"{name}.overlay.png", f"{name}.npz"]
    frames = [
        f"{name}-{i:03d}.{end}" for i in range(steps) for end in ("labels.png", "overlay.png")
    ]
    return [*frames, f"{name}.gif", f"{name}.npz"]


def short_name(name: str) -> str:
    """``name``, or its start and a hash of the whole where it is too long for a file name."""
    if len(name.encode()) <= MAX_NAME_BYTES:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    start = name.encode()[: MAX_NAME_BYTES - 9].decode(errors="ignore")
    return f"{start}-{digest}"


class OutputNames:
    """Hands out output names in one ``--out`` folder: unique, short, never an input's file."""

    def __init__(self, out: Path, inputs: set[Path]) -> None:
        self.out = out
        self.inputs = inputs
        self.taken: set[str] = set()

    def _clash(self, name: str, video: bool, steps: int) -> str | None:
        for file in output_files(name, video, steps):
            if file in self.taken:
                return "another input's outputs have that name"
            if (self.out / file).resolve() in self.inputs:
                return f"{self.out / file} is an input"
        return None

    def claim(self, item: Item, steps: int) -> str | None:
        """Give ``item`` its output name (``item.name`` changes where it must); why, if it did."""
        base = short_name(item.name)
        why = "the name is too long for a file name" if base != item.name else None
        name, n = base, 1
        while (clash := self._clash(name, item.video, steps)) is not None:
            why = why or clash
            n += 1
            name = f"{base}-{n}"
        self.taken.update(output_files(name, item.video, steps))
        note = None
        if name != item.name:
            note = f"{item.source}: outputs named {name}, not {item.name[:60]}: {why}"
        item.name = name
        return note


def prepare_out(out: Path) -> Path:
    """The ``--out`` folder, created, or one line saying why it cannot be."""
    if out.exists() and not out.is_dir():
        raise SegmentInputError(f"--out {out} exists and is not a folder; name a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SegmentInputError(f"cannot create --out {out}: {exc.strerror or exc}") from None
    return out
