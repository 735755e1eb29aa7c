"""Every shipped model, the video ones included: it loads, scores near its listed test AMI on a
small generated set, kept its stored-precision check, and a video model segments a GIF of its own
data and draws its groupings (issue 39)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import grouping
from grouping.cli.main import cli
from grouping.evaluation.metrics import adjusted_mutual_info
from grouping.rundir.loading import load_trained
from grouping.rundir.pretrained import (
    PRETRAINED_ROOT,
    SHIPPED,
    pretrained_models,
    resolve_run,
    shipped_record,
)

SHIPPED_MODELS = sorted(pretrained_models())
VIDEO_MODELS = [
    n for n in SHIPPED_MODELS if shipped_record(n)["experiment"] not in (None, "static-shapes")
]
#: Samples each model is scored on here: a loose check of the listed figure, in seconds.
SAMPLES = 48
#: Test clips each video model segments from GIFs.
CLIPS = 4


@pytest.mark.parametrize("name", SHIPPED_MODELS)
def test_every_shipped_model_loads_and_scores_near_its_listed_test_ami(name: str) -> None:
    record = shipped_record(name)
    scores = grouping.evaluate(
        f"pretrained:{name}", assignments=[f"eval.samples={SAMPLES}"], device="cpu"
    )
    assert scores["images"] == SAMPLES
    assert scores["ami"] >= record["test_ami"] - 0.1, (scores["ami"], record["test_ami"])
    check = json.loads((PRETRAINED_ROOT / name / SHIPPED).read_text())["precision_check"]
    assert check["chosen"] == record["weights_dtype"]
    assert check[check["chosen"]]["change"] < 0.002  # the stored precision's cost, at shipping


@pytest.mark.parametrize(
    ("name", "dataset", "components", "paper"),
    [
        ("flying-shapes-3", "flying-shapes", 3, 0.970),
        ("flying-shapes-5", "flying-shapes", 5, 0.878),
        ("flying-mnist", "flying-mnist", 2, 0.819),
        ("flying-mnist-stagewise", "flying-mnist", 2, 0.917),
    ],
)
def test_the_papers_video_experiments_are_shipped(
    name: str, dataset: str, components: int, paper: float
) -> None:
    assert name in VIDEO_MODELS
    row = shipped_record(name)
    assert (row["dataset"], row["components"], row["steps"]) == (dataset, components, 20)
    assert row["experiment"] == name and row["paper"]["ami"] == paper
    assert row["budget"]["samples_seen"] > 50_000 and row["budget"]["stages"] >= 2
    assert row["command"].startswith("grouping run") and row["weights_dtype"] != "float32"


@pytest.mark.parametrize("name", VIDEO_MODELS)
def test_a_video_model_segments_a_gif_of_its_data_and_draws_it(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = load_trained(
        resolve_run(f"pretrained:{name}"), "auto", "cpu", {"dataset": {"test_size": 4}}
    )
    features, groups = run.dataset.split("test").get(np.arange(CLIPS))
    gifs = [tmp_path / f"clip{i}.gif" for i in range(CLIPS)]
    for gif, clip in zip(gifs, features):
        frames = [Image.fromarray((f[..., 0].numpy() * 255).astype(np.uint8)) for f in clip]
        frames[0].save(gif, save_all=True, append_images=frames[1:], duration=100, loop=0)
    out = tmp_path / "masks"
    result = CliRunner().invoke(
        cli, ["segment", f"pretrained:{name}", *map(str, gifs), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    with Image.open(out / "clip0.gif") as animation:
        assert animation.n_frames == features.shape[1]
    scores = []
    for i in range(CLIPS):  # a GIF merges identical frames: each clip's own last frame
        last = len(list(out.glob(f"clip{i}-*.labels.png"))) - 1
        labels = np.asarray(Image.open(out / f"clip{i}-{last:03d}.labels.png")).reshape(1, -1)
        truth = groups[i, -1].numpy()  # the clip's last frame, merged or not
        scores.append(adjusted_mutual_info(truth.reshape(1, -1), labels)[0])
    # one clip can be two digits on top of each other all along; the clips' mean cannot be chance
    assert np.mean(scores) >= 0.5, scores
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["visualize", f"pretrained:{name}", "--samples", "1", "--gif"])
    assert result.exit_code == 0, result.output
    assert Path(result.output.strip().splitlines()[-1]).is_file()
