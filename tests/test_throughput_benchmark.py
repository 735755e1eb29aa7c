"""The throughput benchmark counts the FLOPs of a training step exactly and writes its JSON keys."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch

from tests.scripts import load_benchmark

ROOT = Path(__file__).resolve().parents[1]


def _load() -> ModuleType:
    return load_benchmark("throughput")


def _peaks() -> ModuleType:
    """The sibling module that owns ``dense_rate``, as throughput.py imported it: ``workload_peak``
    looks ``dense_rate`` up there, so that is where a test stubs it."""
    return sys.modules["throughput_peaks"]


def test_fc_flops_and_recorded_products_match_a_hand_count() -> None:
    tp = _load()
    fam = dataclasses.replace(tp.FAMILIES[0], steps=2, network_options={"hidden": 8}, notes=[])
    model, noise = tp.build(fam, seed=0)
    step = tp.TrainStep(model, torch.optim.Adam(model.parameters()), noise, torch.device("cpu"))
    path = tp.Path_("eager", step, 0, torch.Generator().manual_seed(0))
    split = tp.make_split(fam, 4, seed=1)
    flops, products = tp.record_products(path, split, fam, 2, torch.device("cpu"))
    d, s, k, t = 28 * 28, 8, fam.components, fam.steps
    cell, dec = (d + s) * s, s * d  # multiply-adds per copy
    forward = 2 * (cell + dec) * k * t
    # backward: grad of input and of weight for every layer, except the first step's cell input
    # (u at step 1 depends on nothing trainable)
    backward = 2 * forward - 2 * cell * k
    assert flops == forward + backward
    # the recorder sees the same products as GEMMs: per step and batch of 2 images
    assert sum(p.flops for p in products) == 2 * flops
    n = 2 * k  # rows: images x components
    assert tp.Product(n, d + s, s, 1, torch.float32) in products  # cell forward
    assert tp.Product(s, n, d + s, 1, torch.float32) in products  # cell weight gradient
    assert tp.Product(n, s, d, 1, torch.float32) in products  # decoder forward


def test_recorder_counts_a_convolution_as_its_gemms() -> None:
    tp = _load()
    x = torch.randn(3, 4, 10, 10, requires_grad=True)
    w = torch.randn(6, 4, 3, 3, requires_grad=True)
    with tp.ProductRecorder() as rec:
        y = torch.nn.functional.conv2d(x, w, stride=2)  # (3, 6, 4, 4)
        y.sum().backward()
    rows, taps = 3 * 4 * 4, 4 * 3 * 3
    assert rec.products == [
        tp.Product(rows, taps, 6, 1, torch.float32),  # forward
        tp.Product(rows, 6, taps, 1, torch.float32),  # grad of the input
        tp.Product(6, rows, taps, 1, torch.float32),  # grad of the weight
    ]


def test_workload_peak_is_flops_over_the_time_of_the_dense_products(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tp = _load()
    a = tp.Product(10, 10, 10, 1, torch.float32)  # 2,000 FLOPs
    b = tp.Product(20, 10, 10, 1, torch.float32)  # 4,000 FLOPs
    rates = {a: tp.Rate(mm=1.0, best=2.0), b: tp.Rate(mm=4.0, best=4.0)}
    # measured rates only lower nothing
    monkeypatch.setattr(_peaks(), "dense_rate", lambda shape, device, seconds: tp.Rate())
    peak = tp.workload_peak([a, b, b], torch.device("cpu"), 0.0, rates)
    # best: 10,000 FLOPs in 2,000 / 2 + 8,000 / 4 ns-units; mm: in 2,000 / 1 + 8,000 / 4
    assert peak.best == pytest.approx(10_000 / (1_000 + 2_000))
    assert peak.mm == pytest.approx(10_000 / (2_000 + 2_000))


@pytest.fixture
def one_thread() -> Iterator[None]:
    """``--threads 1`` for a tiny run (two threads beside other jobs can be many times slower);
    the session's thread count comes back afterwards."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _tiny_run(tp, tmp_path: Path, *extra: str) -> dict:  # type: ignore[no-untyped-def]
    out = tmp_path / "b.json"
    code = tp.main(
        ["--family", "fc-static", "--batch", "2", "--steps", "1", "--repeats", "1", "--threads",
         "1", "--warmup", "0", "--quick", "--json", str(out), "--precision", "fp32", *extra]
    )  # fmt: skip
    assert code == 0
    (row,) = json.loads(out.read_text())
    return row  # type: ignore[no-any-return]


@pytest.mark.usefixtures("one_thread")
def test_quick_json_has_the_issue_keys(tmp_path: Path) -> None:
    tp = _load()
    row = _tiny_run(tp, tmp_path, "--profile-steps", "1")
    for key in ("family", "images_per_s", "gflops_per_s", "peak_gflops_per_s",
                "fraction_of_peak", "speedup_vs_eager", "peak_memory_mb",
                "compile_images_per_s", "compile_seconds", "breakdown"):  # fmt: skip
        assert key in row
    assert row["family"] == "fc-static" and row["images_per_s"] > 0 and row["peak_memory_mb"] > 0
    # compile is not measured without --compile
    assert row["compile_images_per_s"] is None and row["compile_seconds"] is None
    shares = row["breakdown"]
    assert list(shares) == list(sys.modules["step_profile"].CATEGORIES)
    assert all(v >= 0.0 for v in shares.values())
    assert abs(sum(shares.values()) - 1.0) < 1e-9
    ceiling = row["ceilings"]  # computed from the row's own figures
    rest = 1.0 - shares["matmul_conv"]
    f, speedup = row["fraction_of_peak"], row["speedup_vs_eager"]
    assert ceiling["of_peak_dense_products"] == pytest.approx(f / (f + rest))
    assert ceiling["speedup_free_products"] == pytest.approx(speedup / rest)


def test_ceilings_by_hand() -> None:
    """A step at 30% of peak with 60% of its time in products, 1.5x eager: dense products would
    take 0.3 of it and the rest 0.4, so 0.3 / 0.7 of peak and 1.5 / 0.7 eager; with free
    products 1.5 / 0.4; 50% of peak needs the rest at 0.3, and 2x needs it at 0.45."""
    _load()
    c = sys.modules["step_profile"].ceilings(0.3, 1.5, 0.6)
    assert c["products_vs_dense"] == pytest.approx(0.5)
    assert c["of_peak_dense_products"] == pytest.approx(0.3 / 0.7)
    assert c["speedup_dense_products"] == pytest.approx(1.5 / 0.7)
    assert c["speedup_free_products"] == pytest.approx(3.75)
    assert c["rest_share"] == pytest.approx(0.4)
    assert c["rest_for_half_peak"] == pytest.approx(0.3)
    assert c["rest_for_2x"] == pytest.approx(0.45)


@pytest.mark.usefixtures("one_thread")
def test_compile_column_times_the_compiled_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ``--compile`` plumbing, with torch.compile stubbed out (its cold start is the business of
    tests/test_compiled_step.py)."""
    tp = _load()
    compiled: list[object] = []
    monkeypatch.setattr(torch, "compile", lambda module: compiled.append(module) or module)
    monkeypatch.setattr(_peaks(), "dense_rate", lambda shape, device, seconds: tp.Rate(1.0, 1.0))
    row = _tiny_run(tp, tmp_path, "--compile", "--profile-steps", "0")
    assert len(compiled) == 1  # the compile path only: eager and fast stay the default
    assert row["compile_images_per_s"] > 0 and row["compile_seconds"] > 0
    assert row["compile"] is True and row["breakdown"] is None


def test_family_selects_families(monkeypatch: pytest.MonkeyPatch) -> None:
    tp = _load()
    ran: list[str] = []

    def fake(family, args, device):  # type: ignore[no-untyped-def]
        ran.append(family.name)
        raise SystemExit(0)  # stop before printing a table of stubs

    monkeypatch.setattr(tp, "bench_family", fake)
    with pytest.raises(SystemExit):
        tp.main(["--family", "conv-mnist", "--family", "fc-static"])
    assert ran == ["fc-static"]  # in the script's order, the first one ran
    with pytest.raises(SystemExit) as exc:
        tp.parse(["--family", "nope"])
    assert exc.value.code == 2


def test_breakdown_assigns_the_step_phases() -> None:
    """A profiled fc step: products, the network's elementwise work, the EM, Adam and data all
    show; an fc network without layer norm has no norm time; the shares sum to 1."""
    tp = _load()
    fam = dataclasses.replace(tp.FAMILIES[0], steps=2, network_options={"hidden": 8}, notes=[])
    model, noise = tp.build(fam, seed=0)
    step = tp.TrainStep(model, torch.optim.Adam(model.parameters()), noise, torch.device("cpu"))
    split = tp.make_split(fam, 4, seed=1)
    shares = tp.profile_breakdown(step, split, fam.steps + 1, 2, 2, 0, torch.Generator())
    assert shares["norm"] == 0.0
    for key in ("matmul_conv", "elementwise", "em", "optimizer", "data_noise", "other"):
        assert shares[key] > 0.0, key
    assert abs(sum(shares.values()) - 1.0) < 1e-9
    assert "forward" not in vars(model.updater) and step.forward is model  # instrumentation undone
