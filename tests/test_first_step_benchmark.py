"""``benchmarks/first_step.py``: the step-1 oracle on gamma^(0), checked on hand-made labels and on
generated flying shapes."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import numpy as np

import grouping
from tests.scripts import load_benchmark

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "first_step.py"


def load() -> ModuleType:
    return load_benchmark("first_step")


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


def test_reading_on_hand_made_predictions() -> None:
    """Owners from gamma^(0): object 1 -> component 1, object 2 -> component 2. psi_1 predicts
    object 1 brighter in copy 1 (0.8 against 0.2) and object 2 brighter in copy 1 too (0.6 against
    0.4): one object of two agrees, spreads 0.6 and 0.2; gamma_1 gives object 1 whole to one
    component and splits object 2's three pixels 2 to 1."""
    first_step = load()
    gamma0 = np.zeros((1, 2, 8))
    gamma0[0, 0, :4], gamma0[0, 1, 4:] = 1.0, 1.0
    psi1 = np.zeros((1, 2, 8))
    psi1[0, :, 1:4] = np.array([[0.8], [0.2]])
    psi1[0, :, 5:8] = np.array([[0.6], [0.4]])
    gamma1 = np.zeros((1, 2, 8))
    gamma1[0, 0, 1:4] = 1.0
    gamma1[0, 1, [5, 6]], gamma1[0, 0, 7] = 1.0, 1.0
    read = first_step.reading(FIRST, SECOND, gamma0, psi1, gamma1)
    assert read["owner_agreement"] == 0.5
    assert read["chance"] == 0.5
    assert np.isclose(read["spread"], (0.6 + 0.2) / 2)
    assert np.isclose(read["largest_share"], (1.0 + 2 / 3) / 2)


def test_with_a_trained_run_the_model_s_step_one_is_printed_beside(tmp_path: Path) -> None:
    """``--run``: the model's step-1 AMI is the one ``grouping evaluate`` reports, and its reading
    of gamma^(0) is a set of fractions."""
    first_step = load()
    tiny = [
        "dataset.train_size=32",
        "dataset.valid_size=16",
        "dataset.test_size=16",
        "train.batch_size=16",
        "train.epochs=1",
        "train.valid_samples=16",
        "eval.batch_size=16",
        "model.steps=2",
        "network.encoder_channels=[4, 8]",
        "network.encoder_fc=16",
        "network.hidden=8",
        "network.decoder_fc=16",
    ]
    run = tmp_path / "run"
    grouping.train(grouping.build_config("flying-shapes-3", assignments=tiny), run)
    result = first_step.main(
        ["--preset", str(run / "config.toml"), "--test-size", "16", "--run", str(run)]
    )
    step1 = grouping.evaluate(run, assignments=["eval.samples=16"])["ami_per_step"][0]
    assert result["model_step1_ami"] == step1
    read = result["model_reading"]
    assert read["chance"] == 1 / 3
    assert all(0.0 <= read[key] <= 1.0 for key in ("owner_agreement", "spread", "largest_share"))
