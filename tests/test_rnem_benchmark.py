"""benchmarks/rnem.py on tiny sizes: it trains the models, scores every test set and writes every
score, and its relational loss counts only the pixels near a collision."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import rnem


@pytest.mark.slow
def test_the_benchmark_writes_every_score_of_every_model_and_set(tmp_path: Path) -> None:
    out = tmp_path / "scores.json"
    args = [
        "--quick",
        "--out",
        str(tmp_path / "runs"),
        "--json",
        str(out),
        "--models",
        "r-nem,rnn-em",
    ]
    assert rnem.main(args) == 0
    data = json.loads(out.read_text())
    assert set(data["scores"]) == {"r-nem", "rnn-em"}
    for sets in data["scores"].values():
        assert set(sets) == set(rnem.TEST_SETS)
        for s in sets.values():
            assert s["sequences"] == 16 and len(s["ami_per_step"]) == 4
            # the relational loss is the loss over a subset of the pixels: never above it
            assert 0.0 <= s["rel_bce"] <= s["bce"] and s["ub_bce"] > 0.0
            assert -1.0 <= s["ami"] <= 1.0
