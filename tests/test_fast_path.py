"""The fast training path computes what the plain eager path computes."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import torch
from torch import Tensor

from grouping.accel import precision
from grouping.config.loading import build_config
from grouping.data.batches import Prefetcher
from grouping.engine.assembly import assemble, resolve
from grouping.engine.em import E_STEP_FLOOR, NeuralEM
from grouping.errors import ConfigError
from grouping.training.batch_step import TrainStep
from tests.conftest import TINY

B, T = 4, 4


def _model(*assignments: str) -> NeuralEM:
    config = resolve(build_config("quickstart", assignments=[*TINY, *assignments]))
    torch.manual_seed(0)
    return assemble(config).model


def _inputs(seed: int) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    targets = (torch.rand(B, T + 1, 28, 28, 1, generator=g) < 0.3).float()
    inputs = (torch.rand(B, T + 1, 28, 28, 1, generator=g) < 0.5).float()
    return inputs, targets


def eager_loss(model: NeuralEM, inputs: Tensor, targets: Tensor, seed: int) -> Tensor:
    """The unrolled loss written straight from the spec (2.2-2.4, 3.1-3.2), with none of the
    engine's shortcuts: full autograd everywhere, the channel product, the textbook Bernoulli."""
    b, _, h, w, c = targets.shape
    k = model.components
    g = torch.randn((b, k, h, w, 1), generator=torch.Generator().manual_seed(seed)).abs()
    gamma = g / g.sum(dim=1, keepdim=True)
    psi = torch.full((b, k, h, w, c), model.pred_init)
    state = model.updater.initial_state(b, k, targets.device, targets.dtype)
    total = targets.new_zeros(())
    for t in range(model.steps):
        mask = gamma if model.gradient_gamma else gamma.detach()
        u = mask * (inputs[:, t, None] - psi)
        psi, state = model.updater(u, state)  # (B, K, H, W, C), (B, K, S)
        x = targets[:, t + 1, None]
        p = (x * psi + (1 - x) * (1 - psi)).prod(dim=-1, keepdim=True) + E_STEP_FLOOR
        gamma = p / p.sum(dim=1, keepdim=True)
        weight = gamma if model.gradient_gamma else gamma.detach()
        like = model.likelihood
        intra = (weight * like.intra(x, psi)).sum()
        inter = ((1 - weight) * like.inter(psi)).sum()
        loss_t = (intra + model.inter_weight * inter) / b
        total = total + model.step_weights[t] * loss_t
    return total


def _loss_and_grads(model: NeuralEM, loss: Tensor) -> tuple[float, list[Tensor]]:
    model.zero_grad(set_to_none=True)
    loss.backward()
    return float(loss.detach()), [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("gradient_gamma", [True, False])
@pytest.mark.parametrize("checkpoint_steps", [False, True])
def test_fast_path_loss_and_gradients_equal_the_eager_path(
    gradient_gamma: bool, checkpoint_steps: bool
) -> None:
    model = _model(
        f"model.steps={T}",
        f"model.gradient_gamma={str(gradient_gamma).lower()}",
        "model.loss_step_weights='all'",
    )
    inputs, targets = _inputs(1)
    ref_loss, ref_grads = _loss_and_grads(model, eager_loss(model, inputs, targets, seed=3))
    model.checkpoint_steps = checkpoint_steps
    out = model(inputs, targets, torch.Generator().manual_seed(3), keep=False)
    loss, grads = _loss_and_grads(model, out.loss)
    assert loss == pytest.approx(ref_loss, rel=1e-6)
    for got, want in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


def test_bf16_matmuls_keep_elementwise_work_in_fp32() -> None:
    model = _model(f"model.steps={T}")
    inputs, targets = _inputs(2)
    fp32 = model(inputs, targets, torch.Generator().manual_seed(3), keep=True)
    precision.install_fp32_outputs(model)
    with precision.matmul_context(torch.device("cpu"), "bf16"):
        bf16 = model(inputs, targets, torch.Generator().manual_seed(3), keep=True)
        raw = model.updater.network.decoder(torch.rand(2, 16))
    assert raw.dtype == bf16.psi.dtype == bf16.gamma.dtype == bf16.loss.dtype == torch.float32
    torch.testing.assert_close(bf16.gamma.sum(dim=2), torch.ones_like(bf16.gamma.sum(dim=2)))
    assert float(bf16.loss.detach()) == pytest.approx(float(fp32.loss.detach()), rel=1e-2)
    assert not torch.equal(bf16.psi, fp32.psi)  # the products really ran in bf16
    # hooks are idempotent and inert outside autocast
    assert precision.install_fp32_outputs(model) == 0
    again = model(inputs, targets, torch.Generator().manual_seed(3), keep=True)
    assert torch.equal(again.psi, fp32.psi)


def test_train_step_in_bf16_updates_fp32_weights() -> None:
    config = resolve(build_config("quickstart", assignments=[*TINY, "noise.name=none"]))
    torch.manual_seed(0)
    parts = assemble(config)
    model = parts.model
    before = [p.detach().clone() for p in model.parameters()]
    precision.install_fp32_outputs(model)  # as grouping.training.setup.prepare_model does
    step = TrainStep(
        model,
        torch.optim.Adam(model.parameters()),
        parts.noise,
        torch.device("cpu"),
        precision="bf16",
    )
    _, targets = _inputs(4)
    loss, norms = step(targets, torch.Generator().manual_seed(0))
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert norms.dtype == torch.float32 and torch.isfinite(norms).all() and norms[0] == loss
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert all(not torch.equal(a, p) for a, p in zip(before, model.parameters()))


def test_auto_precision_is_bf16_only_with_native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    assert precision.resolve_precision("auto", cpu) == "fp32"
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    assert precision.resolve_precision("auto", cpu) == "bf16"
    assert precision.resolve_precision("fp32", cpu) == "fp32"
    assert precision.resolve_precision("auto", torch.device("meta")) == "fp32"


def test_precision_and_speed_options_are_validated() -> None:
    config = build_config("quickstart")
    assert (config.train.precision, config.train.compile, config.train.prefetch) == (
        "auto",
        "off",
        None,  # by device: 2 on CUDA, 0 on the CPU
    )
    with pytest.raises(ConfigError, match=r"train\.precision"):
        build_config("quickstart", assignments=["train.precision=fp16"])
    with pytest.raises(ConfigError, match=r"train\.prefetch"):
        build_config("quickstart", assignments=["train.prefetch=-1"])


def test_prefetcher_keeps_order_and_reraises() -> None:
    assert list(Prefetcher(range(50), depth=3)) == list(range(50))
    assert list(Prefetcher(range(5), depth=0)) == list(range(5))

    def broken() -> Iterator[int]:
        yield 1
        raise ValueError("bad batch")

    got = []
    with pytest.raises(ValueError, match="bad batch"):
        for item in Prefetcher(broken(), depth=2):
            got.append(item)
    assert got == [1]


def test_prefetcher_stops_its_thread_when_the_loop_breaks() -> None:
    for item in Prefetcher(iter(range(10_000)), depth=2):
        if item == 3:
            break
    alive = [t for t in threading.enumerate() if t.name == "grouping-prefetch"]
    assert not alive
