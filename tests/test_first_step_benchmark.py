"""``benchmarks/first_step.py``: the step-1 oracle on gamma^(0), checked on hand-made labels and on
generated flying shapes."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import numpy as np

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "first_step.py"


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("first_step", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["first_step"] = module
    spec.loader.exec_module(module)
    return module


# one image of 8 pixels: object 1 on pixels 0-2, object 2 on 4-6, background elsewhere
FIRST = np.array([[1, 1, 1, 0, 2, 2, 2, 0]])
SECOND = np.array([[0, 1, 1, 1, 0, 2, 2, 2]])  # both objects moved one pixel right


def test_owners_are_the_argmax_of_each_objects_mean_share() -> None:
    first_step = load()
    gamma = np.array([[[0.6, 0.6, 0.3, 0.5, 0.2, 0.4, 0.3, 0.5]]])  # component 1 of K = 2
    gamma = np.concatenate([gamma, 1.0 - gamma], axis=1)  # (1, 2, 8)
    # object 1: mean share 0.5 for component 1, 0.5 for 2 -> ties go to the first: 1
    # object 2: 0.3 against 0.7 -> component 2
    table = first_step.owners(FIRST, gamma, objects=2)
    assert table.tolist() == [[0, 1, 2]]


def test_separate_owners_score_one_and_a_shared_owner_zero() -> None:
    first_step = load()
    apart = np.zeros((1, 2, 8))
    apart[0, 0, :4], apart[0, 1, 4:] = 1.0, 1.0
    assert first_step.oracle_ami(FIRST, SECOND, apart).tolist() == [1.0]
    shared = np.zeros((1, 2, 8))
    shared[0, 0] = 1.0
    assert first_step.oracle_ami(FIRST, SECOND, shared).tolist() == [0.0]


def test_flying_shapes_oracle_beats_chance(tmp_path: Path) -> None:
    """On generated sequences the oracle lies between chance and a perfect split, and the JSON
    carries what was printed."""
    first_step = load()
    out = tmp_path / "first.json"
    result = first_step.main(["--test-size", "200", "--json", str(out)])
    assert 0.3 < result["oracle_step1_ami"] < 0.95
    assert json.loads(out.read_text())["samples"] == 200
