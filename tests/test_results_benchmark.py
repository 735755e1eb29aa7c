"""``benchmarks/results.py`` on tiny sizes: the shipped model's row scored on generated data under
both of the original code's AMI names, rows without a model saying so, and a video model shipped
with one command (a tiny stage-wise flying-MNIST run) filling its transfer tests and Figure 6."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest
import torch

import grouping
from grouping.rundir.pretrained import (
    EXPERIMENTS,
    PRETRAINED_ROOT,
    pretrained_models,
    shipped_record,
)
from tests.scripts import load_benchmark

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "results.py"
TINY = [
    "model.steps=2",
    "network.hidden=8",
    "network.encoder_fc=16",
    "network.decoder_fc=16",
    "network.encoder_channels=[4, 8, 8]",
    "train.batch_size=16",
    "train.epochs=1",
    "eval.batch_size=16",
    "dataset.train_size=32",
    "dataset.valid_size=16",
    "dataset.test_size=16",
    "train.valid_samples=16",
    "train.threads=1",
]


def load() -> ModuleType:
    return load_benchmark("results", "results_benchmark")


def test_the_table_scores_the_shipped_model_and_names_the_missing_ones(tmp_path: Path) -> None:
    results = load()
    md, js = tmp_path / "table.md", tmp_path / "table.json"
    table = results.main(["--samples", "12", "--out", str(md), "--json", str(js)])
    assert json.loads(js.read_text()) == json.loads(json.dumps(table))
    rows = {r["experiment"]: r for r in table["rows"]}
    static = rows[EXPERIMENTS["static-shapes"][0]]
    assert static["model"] == "pretrained:static-shapes" and static["samples"] == 12
    assert static["paper"] == 0.826 and static["budget"]["epochs"] == 6
    # static images: the original's "AMI" weighs only the last step; the plain mean is lower
    assert static["original_ami"] == pytest.approx(static["last_step"], abs=1e-9)
    assert static["mean_over_steps"] < static["last_step"]
    video = rows[EXPERIMENTS["flying-shapes-3"][0]]
    assert video["model"] == "pretrained:flying-shapes-3" and video["paper"] == 0.970
    # sequences: every step counts in the original's "AMI", which is the mean over steps
    assert video["original_ami"] == pytest.approx(video["mean_over_steps"], abs=1e-9)
    text = md.read_text()
    assert text.startswith("| experiment | paper | model |") and '"Last AMI"' in text
    assert f"| 0.826 | `pretrained:static-shapes` | {static['last_step']:.3f} |" in text
    again = results.main(["--samples", "12", "--json", "-", "--root", str(PRETRAINED_ROOT)])
    assert again["rows"][0]["last_step"] == static["last_step"]  # fixed seeds: the same figure


def test_a_video_model_ships_with_one_command_and_fills_its_transfer_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torch.set_num_threads(1)
    run = tmp_path / "run"
    grouping.train(grouping.build_config("flying-mnist-stagewise", assignments=TINY), run)
    results, root = load(), tmp_path / "models"
    ship = ["--ship", str(run), "flying-mnist-stagewise", "--command", "grouping run --preset x"]
    table = results.main([*ship, "--check-samples", "8", "--samples", "8", "--root", str(root)])
    assert "shipped" in capsys.readouterr().err
    meta = json.loads((root / "flying-mnist-stagewise" / "shipped.json").read_text())
    assert meta["budget"]["stages"] == 3 and meta["command"] == "grouping run --preset x"
    assert meta["precision_check"]["chosen"] == meta["weights_dtype"]
    rows = [r for r in table["rows"] if r["model"] == "pretrained:flying-mnist-stagewise"]
    assert [r["paper"] for r in rows] == [0.917, 0.838, 0.772, "rises, then flat"]
    assert all(r["samples"] == 8 for r in rows)
    # sequences: the original's "AMI" weighs every step the same, so it is the mean over steps
    for r in rows:
        assert r["original_ami"] == pytest.approx(r["mean_over_steps"], abs=1e-9)
    assert list(rows[-1]["curve"]) == [1, 10, 20, 50]  # Figure 6 over a 50-step unroll
    assert {r["experiment"] for r in table["rows"] if r["model"] is None} == {
        EXPERIMENTS[e][0] for e in EXPERIMENTS if e != "flying-mnist-stagewise"
    }


def test_each_experiment_lists_the_papers_transfer_tests() -> None:
    results = load()
    shapes3 = results.tests("flying-shapes-3")
    assert [(t.paper, t.components) for t in shapes3] == [(0.970, None), (0.972, 5)]
    assert results.tests("flying-shapes-5")[1].sets == ("dataset.objects=3",)
    direct = results.tests("flying-mnist")
    assert [t.paper for t in direct] == [0.819, 0.729, 0.619, "rises, then flat"]
    assert [t.steps for t in direct] == [None, None, 50, 50]
    assert len(results.tests("static-shapes")) == 1


def test_a_failed_ship_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = load()
    with pytest.raises(SystemExit) as exc:
        results.main(["--ship", str(tmp_path / "nope"), "x", "--root", str(tmp_path / "m")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")


def test_the_readme_and_results_page_show_the_table_results_py_wrote() -> None:
    """docs/results.json is what ``results.py --json`` wrote; both pages show its table, every
    shipped model is in it, and each row of a model's own test is the shipped weights' score."""
    results = load()
    table = json.loads((ROOT / "docs" / "results.json").read_text())
    readme, page = ((ROOT / f).read_text() for f in ("README.md", "docs/results.md"))
    assert results.block(readme) == results.block(page) == results.markdown(table)
    assert results.block(page, "results.py models") == results.models_markdown(table)
    names = {r["model"] for r in table["rows"] if r["model"]}
    assert names == {f"pretrained:{n}" for n in pretrained_models()}
    for name in pretrained_models():
        record = shipped_record(name)
        own = next(r for r in table["rows"] if r["model"] == record["name"])
        check = record["precision_check"]
        assert own["samples"] == check["samples"] == table["samples"] == 1000
        stored = check[check["chosen"]]  # the same data and draws as the shipping check
        assert own["last_step"] == pytest.approx(stored["ami"], abs=1e-9)
        assert own["mean_over_steps"] == pytest.approx(stored["ami_mean_over_steps"], abs=1e-9)


def test_update_rewrites_only_the_blocks_and_refuses_a_file_without_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = load()
    table = json.loads((ROOT / "docs" / "results.json").read_text())
    page = tmp_path / "page.md"
    page.write_text("intro\n<!-- results.py -->\nold\n<!-- /results.py -->\nafter\n")
    assert results.update(page, table) == ["results.py"]
    assert page.read_text() == f"intro\n<!-- results.py -->\n{results.markdown(table)}\n" \
        "<!-- /results.py -->\nafter\n"  # fmt: skip
    results.update(page, table)  # again: the same text, nothing doubled
    assert page.read_text().count("<!-- results.py -->") == 1
    plain = tmp_path / "plain.md"
    plain.write_text("no markers\n")
    with pytest.raises(SystemExit) as exc:
        results.main(["--samples", "4", "--update", str(plain)])
    assert exc.value.code == 2 and plain.read_text() == "no markers\n"
    assert capsys.readouterr().err.strip().startswith(f"error: {plain} has no <!-- results.py")
