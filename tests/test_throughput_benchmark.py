"""The throughput benchmark counts the FLOPs of a training step exactly and writes its JSON keys."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def _load():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("throughput", ROOT / "benchmarks/throughput.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["throughput"] = module
    spec.loader.exec_module(module)
    return module


def test_fc_flops_per_image_match_a_hand_count() -> None:
    tp = _load()
    fam = dataclasses.replace(tp.FAMILIES[0], steps=2, network_options={"hidden": 8}, notes=[])
    model, noise = tp.build(fam, seed=0)
    step = tp.TrainStep(model, torch.optim.Adam(model.parameters()), noise, torch.device("cpu"))
    path = tp.Path_("eager", step, 0, torch.Generator().manual_seed(0))
    split = tp.make_split(fam, 4, seed=1)
    flops, largest = tp.count_flops(path, split, fam, 2, torch.device("cpu"))
    d, s, k, t = 28 * 28, 8, fam.components, fam.steps
    cell, dec = (d + s) * s, s * d  # multiply-adds per copy
    forward = 2 * (cell + dec) * k * t
    # backward: grad of input and of weight for every layer, except the first step's cell input
    # (u at step 1 depends on nothing trainable)
    backward = 2 * forward - 2 * cell * k
    assert flops == forward + backward
    assert largest == (2 * k, d + s, s)
    assert np.isfinite(flops)


def test_quick_json_has_the_issue_keys(tmp_path: Path) -> None:
    tp = _load()
    out = tmp_path / "b.json"
    code = tp.main(
        ["--families", "fc-static", "--batch", "2", "--steps", "1", "--repeats", "1",
         "--warmup", "0", "--quick", "--json", str(out), "--precision", "fp32"]
    )  # fmt: skip
    assert code == 0
    (row,) = json.loads(out.read_text())
    for key in ("family", "images_per_s", "gflops_per_s", "peak_gflops_per_s",
                "fraction_of_peak", "speedup_vs_eager", "peak_memory_mb"):  # fmt: skip
        assert key in row
    assert row["family"] == "fc-static" and row["images_per_s"] > 0 and row["peak_memory_mb"] > 0
