"""``grouping segment`` and ``grouping visualize --gif``: a trained model on pictures drawn here."""

from __future__ import annotations

import json
import shutil
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import grouping
from grouping import hookimpl
from grouping.cli.main import cli
from grouping.config.loading import build_config
from grouping.evaluation import scoring
from grouping.figures.segment import BINARY_NOTE, SegmentFailed
from grouping.rundir.loading import load_trained
from tests.conftest import TINY
from tests.test_inspection import MovingColourSquares

K, T, SIZE = 3, 3, 28  # the quickstart model of TINY: 3 components, 3 steps, 28x28 grey


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def stderr_lines(result: Any) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny static run (binary shapes, K = 3, T = 3)."""
    config = build_config("quickstart", assignments=TINY)
    return grouping.train(config, tmp_path_factory.mktemp("runs") / "tiny").path


def square_image(size: int = SIZE, value: int = 255) -> np.ndarray:
    """Two squares on black, as 8-bit grey."""
    image = np.zeros((size, size), dtype=np.uint8)
    image[2:9, 2:9] = value
    image[14 : 14 + 8, 12 : 12 + 8] = value // 2 + 1
    return image


def save_png(array: np.ndarray, path: Path) -> Path:
    Image.fromarray(array).save(path)
    return path


def labels_of(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.mode == "P" and image.size == (SIZE, SIZE)  # values 1..K, shown in colour
        return np.asarray(image)


# --------------------------------------------------------------------------------------------------
# pictures


def test_grey_and_binary_pngs_give_labels_overlays_arrays_and_records(
    run: Path, tmp_path: Path
) -> None:
    grey = save_png(square_image(), tmp_path / "grey.png")
    binary = save_png(np.where(square_image() > 0, 255, 0).astype(np.uint8), tmp_path / "bin.png")
    colour = np.stack([square_image(), square_image(), np.zeros((SIZE, SIZE), np.uint8)], -1)
    rgb = save_png(colour, tmp_path / "rgb.png")
    out = tmp_path / "out"
    result = invoke(
        "segment", str(run), str(grey), str(binary), str(rgb), "--out", str(out), "--json"
    )
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["input"] for r in records] == [str(grey), str(binary), str(rgb)]
    for record in records:
        name = Path(record["input"]).stem
        expected = [str(out / f"{name}.{end}") for end in ("labels.png", "overlay.png", "npz")]
        assert record["outputs"] == expected and record["steps"] == T and not record["video"]
        labels = labels_of(out / f"{name}.labels.png")
        assert labels.min() >= 1 and labels.max() <= K
        assert len(record["shares"]) == K and sum(record["shares"]) == pytest.approx(1.0, abs=1e-5)
        shares = np.bincount(labels.ravel(), minlength=K + 1)[1:] / labels.size
        assert np.allclose(shares, record["shares"], atol=1e-5)
        with np.load(out / f"{name}.npz") as arrays:
            assert arrays["gamma"].shape == (T, K, SIZE, SIZE)
            assert arrays["psi"].shape == (T, K, SIZE, SIZE, 1)
            assert np.allclose(arrays["gamma"].sum(axis=1), 1.0, atol=1e-4)
            assert np.array_equal(arrays["gamma"][-1].argmax(axis=0) + 1, labels)
        with Image.open(out / f"{name}.overlay.png") as overlay:
            assert overlay.mode == "RGB" and overlay.size[0] >= SIZE
    # the binary model thresholds grey values and says so, once, on stderr
    assert [r["notes"] for r in records] == [[BINARY_NOTE], [], [BINARY_NOTE]]
    assert stderr_lines(result) == [f"note: {BINARY_NOTE}"]


def test_a_folder_is_its_pictures_sorted_and_with_sequence_one_video(
    run: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in (2, 0, 1):
        save_png(np.roll(square_image(), i, axis=1), folder / f"f{i}.png")
    (folder / "notes.txt").write_text("not a picture")
    records = grouping.segment(run, [folder], tmp_path / "out")
    assert [r["name"] for r in records] == ["f0", "f1", "f2"]
    [video] = grouping.segment(run, [folder], tmp_path / "video", sequence=True)
    assert video["video"] and video["steps"] == 3 and video["name"] == "frames"
    assert (tmp_path / "video" / "frames.gif").is_file()


def test_an_animated_gif_is_one_video_with_a_file_per_frame(run: Path, tmp_path: Path) -> None:
    frames = [Image.fromarray(np.roll(square_image(), 2 * i, axis=1)) for i in range(4)]
    gif = tmp_path / "moving.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=100, loop=0)
    out = tmp_path / "out"
    [record] = grouping.segment(run, [gif], out)
    assert record["video"] and record["steps"] == 4
    for i in range(4):
        labels = labels_of(out / f"moving-{i:03d}.labels.png")
        assert labels.min() >= 1 and labels.max() <= K
        assert (out / f"moving-{i:03d}.overlay.png").is_file()
    with Image.open(out / "moving.gif") as animation:
        assert animation.n_frames == 4
    with np.load(out / "moving.npz") as arrays:
        assert arrays["gamma"].shape == (4, K, SIZE, SIZE)
        assert arrays["psi"].shape == (4, K, SIZE, SIZE, 1)
    [first_two] = grouping.segment(run, [gif], tmp_path / "two", steps=2)
    assert first_two["steps"] == 2 and not (tmp_path / "two" / "moving-002.labels.png").exists()
    result = invoke("segment", str(run), str(gif), "--out", str(tmp_path / "x"), "--steps", "5")
    assert result.exit_code == 2 and "the video has 4 frames" in result.stderr


def test_an_npz_of_images_and_one_of_sequences(run: Path, tmp_path: Path) -> None:
    images = np.stack([square_image(), square_image().T]).astype(np.float32) / 255
    np.savez(tmp_path / "images.npz", features=images)
    sequences = np.stack([images, images[::-1]])[..., None]  # (2, 2, H, W, 1)
    np.savez(tmp_path / "videos.npz", features=sequences > 0)
    records = grouping.segment(run, [tmp_path / "images.npz", tmp_path / "videos.npz"], tmp_path)
    assert [(r["name"], r["video"]) for r in records] == [
        ("images-000", False),
        ("images-001", False),
        ("videos-000", True),
        ("videos-001", True),
    ]
    assert records[2]["notes"] == [] and records[0]["notes"] == [BINARY_NOTE]
    assert labels_of(tmp_path / "videos-001-001.labels.png").max() <= K


# --------------------------------------------------------------------------------------------------
# refusals


def test_the_wrong_size_is_refused_in_one_line_unless_resize(run: Path, tmp_path: Path) -> None:
    big = save_png(square_image(40), tmp_path / "big.png")
    result = invoke("segment", str(run), str(big), "--out", str(tmp_path / "out"))
    assert result.exit_code == 2
    [line] = stderr_lines(result)
    assert "40x40" in line and "the model takes 28x28" in line and "--resize" in line
    result = invoke("segment", str(run), str(big), "--out", str(tmp_path / "out"), "--resize")
    assert result.exit_code == 0, result.output
    assert labels_of(tmp_path / "out" / "big.labels.png").max() <= K


def test_a_corrupt_file_is_one_line_and_the_good_ones_are_written(
    run: Path, tmp_path: Path
) -> None:
    good = [save_png(square_image(), tmp_path / f"good{i}.png") for i in (1, 2)]
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG truncated")
    out = tmp_path / "out"
    result = invoke("segment", str(run), str(good[0]), str(bad), str(good[1]), "--out", str(out))
    assert result.exit_code == 2
    [line] = [x for x in stderr_lines(result) if not x.startswith("note:")]
    assert line.startswith("error: ") and str(bad) in line and "not a readable image" in line
    for path in good:
        assert (out / f"{path.stem}.labels.png").is_file() and (out / f"{path.stem}.npz").is_file()
    with pytest.raises(SegmentFailed) as caught:
        grouping.segment(run, [good[0], bad], tmp_path / "api")
    assert [r["name"] for r in caught.value.records] == ["good1"]
    assert len(caught.value.failures) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["pretrained:nope"], "unknown pretrained model 'nope'; shipped: pretrained:"),
        (["RUN", "--checkpoint", "worst"], "'worst' is not one of"),
        (["RUN", "-k", "0"], "0 is not in the range x>=1"),
    ],
)
def test_bad_runs_and_options_are_one_line(
    run: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    args = [str(run) if a == "RUN" else a for a in args]
    image = save_png(square_image(), tmp_path / "a.png")
    result = CliRunner().invoke(cli, ["segment", *args, str(image), "--out", str(tmp_path)])
    assert result.exit_code == 2
    [line] = [x for x in result.output.splitlines() if x.strip()]
    assert message in line


# --------------------------------------------------------------------------------------------------
# the same groupings as the scoring path


def test_segment_labels_equal_those_grouping_evaluate_scores(
    run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = 8
    loaded = load_trained(run, "best", "cpu")
    features, _ = loaded.dataset.split("test").get(np.arange(n))
    np.savez(tmp_path / "test.npz", features=features[:, 0, ..., 0].numpy())
    scored: list[torch.Tensor] = []
    score = scoring.score_groupings

    def capture(gamma: torch.Tensor, groups: torch.Tensor) -> Any:
        scored.append(gamma[:, -1, ..., 0].argmax(dim=1) + 1)
        return score(gamma, groups)

    monkeypatch.setattr(scoring, "score_groupings", capture)
    grouping.evaluate(run, assignments=[f"eval.samples={n}"], device="cpu")
    expected = torch.cat(scored).numpy()
    grouping.segment(run, [tmp_path / "test.npz"], tmp_path / "out", noise=True)  # as evaluate
    got = np.stack([labels_of(tmp_path / "out" / f"test-{i:03d}.labels.png") for i in range(n)])
    assert np.array_equal(got, expected)


# --------------------------------------------------------------------------------------------------
# visualize --gif


def gif_frames(path: Path) -> int:
    with Image.open(path) as image:
        return int(image.n_frames)


def test_visualize_gif_has_one_frame_per_step_and_keeps_the_runs_figure(
    run: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    before = (copy / "figure.png").read_bytes()
    result = invoke("visualize", str(copy), "--gif")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == str(copy / "figure-visualize.gif")
    assert gif_frames(copy / "figure-visualize.gif") == T
    assert grouping.visualize(copy) == copy / "figure-visualize.png"
    assert (copy / "figure.png").read_bytes() == before
    out = tmp_path / "five.gif"
    assert grouping.visualize(copy, steps=5, gif=True, out=out) == out
    assert gif_frames(out) == 5


def test_visualize_gif_of_a_sequence_run(
    register_plugin: Callable[[Any, str], None], tmp_path: Path
) -> None:
    module = types.ModuleType("adhoc_sequences")
    module.register_datasets = hookimpl(lambda register: register(MovingColourSquares))  # type: ignore[attr-defined]
    register_plugin(module, "adhoc-sequences")
    config = build_config(
        "quickstart",
        assignments=[*TINY, "dataset.name=adhoc-moving-squares", "model.components=2"],
    )
    path = grouping.train(config, tmp_path / "seq").path
    out = grouping.visualize(path, samples=2, gif=True)
    assert out == path / "figure-visualize.gif" and gif_frames(out) == T
    with Image.open(out) as image:
        # columns input, psi 1..2, gamma, truth; 12 px panels enlarged 6 times, 2 px apart
        assert image.size[0] == (2 + 3) * (12 * 6 + 2)
    # a colour model segments a colour GIF: psi keeps the three channels
    frames = np.zeros((3, 12, 12, 3), dtype=np.uint8)
    for f in range(3):
        frames[f, 1:4, f : f + 3, 0] = 255
        frames[f, 7:10, 6 - f : 9 - f, 1] = 255
    gif = tmp_path / "colour.gif"
    pictures = [Image.fromarray(frame) for frame in frames]
    pictures[0].save(gif, save_all=True, append_images=pictures[1:], duration=100, loop=0)
    [record] = grouping.segment(path, [gif], tmp_path / "masks")
    assert record["video"] and record["steps"] == 3 and len(record["shares"]) == 2
    with np.load(tmp_path / "masks" / "colour.npz") as arrays:
        assert arrays["psi"].shape == (3, 2, 12, 12, 3)
