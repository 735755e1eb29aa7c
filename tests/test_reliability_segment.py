"""The attacks of issue 36 on ``grouping segment``, and a folder tried as a new user would: real
CLI calls with the shipped model on generated pictures. Nothing is overwritten, a bad file is one
line and skipped, and the defaults suit your own pictures."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from click.testing import CliRunner
from PIL import Image

from grouping.cli.main import cli
from grouping.figures.segment import BINARY_NOTE
from grouping.rundir.loading import load_trained
from tests.test_reliability_attacks import forged_npz

MODEL = "pretrained:static-shapes"  # binary 28x28 shapes


def segment(*args: str) -> Any:
    return CliRunner().invoke(cli, ["segment", MODEL, *args, "--json"])


def records(result: Any) -> list[dict[str, Any]]:
    return [json.loads(line) for line in result.stdout.splitlines()]


def errors(result: Any) -> list[str]:
    return [x for x in result.stderr.splitlines() if x.startswith("error: ")]


def hollow(size: int = 28, shift: int = 0) -> np.ndarray:
    """Two hollow squares on black, 8-bit grey: what the shipped model knows."""
    image = np.zeros((size, size), np.uint8)
    for top, left, side in ((3 + shift, 3, 8), (14, 12 + shift, 9)):
        image[top : top + side, left : left + side] = 255
        image[top + 1 : top + side - 1, left + 1 : left + side - 1] = 0
    return image


def png(array: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def png_declaring(path: Path, width: int, height: int) -> Path:
    """A tiny PNG whose header declares ``width`` x ``height`` pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


def labels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


# -- data loss: no output replaces an input or another output ----------------------------------------


def test_a_gif_segmented_into_its_own_folder_is_kept(tmp_path: Path) -> None:
    frames = [Image.fromarray(np.roll(hollow(), i, axis=1)) for i in range(3)]
    gif = tmp_path / "anim.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=100, loop=0)
    before = gif.read_bytes()
    result = segment(str(gif), "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert gif.read_bytes() == before
    [record] = records(result)
    assert record["name"] == "anim-2" and str(tmp_path / "anim-2.gif") in record["outputs"]
    assert any("is an input" in note for note in record["notes"])


def test_inputs_sharing_a_name_get_their_own_outputs(tmp_path: Path) -> None:
    a = png(hollow(), tmp_path / "a" / "img.png")
    b = png(hollow(shift=2), tmp_path / "b" / "img.png")
    jpg = tmp_path / "china.jpg"
    Image.fromarray(hollow()).save(jpg)
    china = png(hollow(shift=1), tmp_path / "china.png")
    result = segment(str(a), str(b), str(jpg), str(china), "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    got = records(result)
    assert [r["name"] for r in got] == ["img", "img-2", "china", "china-2"]
    outputs = [o for r in got for o in r["outputs"]]
    assert len(outputs) == len(set(outputs)) and all(Path(o).is_file() for o in outputs)


def test_a_long_name_is_shortened_and_later_inputs_are_written(tmp_path: Path) -> None:
    long = png(hollow(), tmp_path / ("x" * 246 + ".png"))
    after = png(hollow(), tmp_path / "after.png")
    result = segment(str(long), str(after), "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    first, second = records(result)
    assert len(first["name"]) < 210 and Path(first["outputs"][0]).is_file()
    assert any("too long" in note for note in first["notes"]) and second["name"] == "after"


# -- one line, and the other inputs still written ----------------------------------------------------


def test_a_decompression_bomb_among_good_pictures_is_skipped(tmp_path: Path) -> None:
    good = png(hollow(), tmp_path / "a.png")
    bomb = png_declaring(tmp_path / "b.png", 60000, 60000)
    later = png(hollow(), tmp_path / "c.png")
    result = segment(str(good), str(bomb), str(later), "--out", str(tmp_path / "out"))
    assert result.exit_code == 2 and "Traceback" not in result.output
    [line] = errors(result)
    assert str(bomb) in line and "too big" in line
    assert [r["name"] for r in records(result)] == ["a", "c"]


def test_out_that_is_a_file_is_one_line(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("mine")
    result = segment(str(png(hollow(), tmp_path / "a.png")), "--out", str(afile))
    assert result.exit_code == 2 and "exists and is not a folder" in result.output
    assert afile.read_text() == "mine"


def test_an_npz_declaring_a_huge_shape_is_skipped(tmp_path: Path) -> None:
    huge = forged_npz(tmp_path / "huge.npz")
    good = png(hollow(), tmp_path / "good.png")
    result = segment(str(huge), str(good), "--out", str(tmp_path / "out"))
    assert result.exit_code == 2
    [line] = errors(result)
    assert "declares shape (1000000000000, 28, 28)" in line
    assert [r["name"] for r in records(result)] == ["good"]


# -- a folder, as a new user tries it ------------------------------------------------------------------


def test_one_bad_file_in_a_folder_skips_only_it(tmp_path: Path) -> None:
    folder = tmp_path / "pictures"
    for name in ("a", "c"):
        png(hollow(), folder / f"{name}.png")
    png(hollow(40), folder / "b-big.png")
    (folder / "d-corrupt.png").write_bytes(b"\x89PNG cut short")
    result = segment(str(folder), "--out", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert [r["name"] for r in records(result)] == ["a", "c"]
    skipped = errors(result)
    assert len(skipped) == 2 and "b-big.png" in skipped[0] and "d-corrupt.png" in skipped[1]


def test_red_and_blue_shapes_stay_objects_for_the_binary_model(tmp_path: Path) -> None:
    rgb = np.zeros((28, 28, 3), np.uint8)
    rgb[3:11, 3:11, 0] = 255  # red
    rgb[15:24, 14:23, 2] = 255  # blue
    rgb[4:10, 4:10] = rgb[16:23, 15:22] = 0  # hollow, as the model knows them
    result = segment(str(png(rgb, tmp_path / "rb.png")), "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    [record] = records(result)
    assert BINARY_NOTE in record["notes"]
    with Image.open(tmp_path / "out" / "rb.overlay.png") as image:
        shown = np.asarray(image, dtype=np.float32).max(axis=-1)
    scale = shown.shape[0] // 28  # the overlay is enlarged; an object pixel is drawn bright
    on = (rgb.max(axis=-1) > 0).repeat(scale, 0).repeat(scale, 1)
    assert shown[on].mean() > 2.5 * shown[~on].mean()


def test_a_picture_segments_the_same_alone_and_seventh_in_a_folder(tmp_path: Path) -> None:
    folder = tmp_path / "folder"
    for i in range(7):
        png(hollow(shift=i % 3), folder / f"p{i}.png")
    alone = png(hollow(shift=0), tmp_path / "alone" / "p6.png")  # p6 has shift 0 as well
    assert segment(str(folder), "--out", str(tmp_path / "f")).exit_code == 0
    assert segment(str(alone), "--out", str(tmp_path / "a")).exit_code == 0
    assert np.array_equal(
        labels(tmp_path / "f" / "p6.labels.png"), labels(tmp_path / "a" / "p6.labels.png")
    )


def test_a_note_says_when_a_picture_is_far_from_the_training_data(tmp_path: Path) -> None:
    filled = np.zeros((28, 28), np.uint8)
    filled[4:24, 4:24] = 255
    features, _ = load_trained(MODEL).dataset.split("test").get(np.arange(1))
    known = (features[0, 0, ..., 0].numpy() * 255).astype(np.uint8)
    result = segment(
        str(png(filled, tmp_path / "filled.png")),
        str(png(known, tmp_path / "known.png")),
        "--out",
        str(tmp_path / "out"),
    )
    assert result.exit_code == 0, result.output
    far, near = records(result)
    [note] = [n for n in far["notes"] if "far from what the model learned" in n]
    assert note.startswith("filled: 51% of its pixels are lit")
    assert not any("far from" in n for n in near["notes"])
