"""fp32 linear layers through oneDNN compute what ``nn.Linear`` computes (grouping.cpu_linear)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from grouping.accel import cpu_linear
from grouping.config.loading import build_config
from grouping.engine.assembly import assemble, resolve
from grouping.errors import ConfigError
from grouping.training.batch_step import TrainStep
from tests.conftest import TINY

needs_onednn = pytest.mark.skipif(
    not cpu_linear.onednn_linear_works(), reason="this torch build has no oneDNN linear op"
)


@needs_onednn
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(6, 5), (2, 3, 5)])
def test_forward_and_gradients_equal_nn_linear(bias: bool, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    plain = nn.Linear(5, 4, bias=bias)
    routed = nn.Linear(5, 4, bias=bias)
    routed.load_state_dict(plain.state_dict())
    assert cpu_linear.install_onednn_linear(routed) == 1
    x = torch.randn(shape, requires_grad=True)
    g = torch.randn(*shape[:-1], 4)
    want = plain(x)
    (want * g).sum().backward()
    want_grads = [x.grad.clone(), *(p.grad.clone() for p in plain.parameters())]
    x.grad = None
    got = routed(x)
    (got * g).sum().backward()
    got_grads = [x.grad, *(p.grad for p in routed.parameters())]
    torch.testing.assert_close(got, want)
    for a, b in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(a, b)


@needs_onednn
def test_only_plain_linear_layers_change_and_nothing_else_does() -> None:
    class Custom(nn.Linear):
        pass

    model = nn.Sequential(nn.Linear(3, 3), Custom(3, 3), nn.ReLU())
    keys = list(model.state_dict())
    assert cpu_linear.install_onednn_linear(model) == 1
    assert type(model[0]) is cpu_linear.OneDNNLinear and type(model[1]) is Custom
    assert isinstance(model[0], nn.Linear) and list(model.state_dict()) == keys
    assert cpu_linear.install_onednn_linear(model) == 0  # idempotent


@needs_onednn
def test_bf16_autocast_and_other_dtypes_keep_pytorchs_kernel() -> None:
    layer = nn.Linear(4, 2)
    cpu_linear.install_onednn_linear(layer)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert layer(torch.randn(3, 4)).dtype == torch.bfloat16  # autocast's own bf16 product
    double = layer.double()
    assert double(torch.randn(3, 4, dtype=torch.float64)).dtype == torch.float64


def test_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    assert not cpu_linear.resolve_cpu_matmul("blas", cpu)
    assert not cpu_linear.resolve_cpu_matmul("onednn", torch.device("meta"))
    monkeypatch.setattr(cpu_linear, "onednn_linear_works", lambda: True)
    monkeypatch.setattr(cpu_linear, "_cpu_flags", lambda: ("GenuineIntel", frozenset({"avx512f"})))
    assert not cpu_linear.resolve_cpu_matmul("auto", cpu)  # MKL runs AVX-512 there
    monkeypatch.setattr(cpu_linear, "_cpu_flags", lambda: ("AuthenticAMD", frozenset({"avx2"})))
    assert not cpu_linear.resolve_cpu_matmul("auto", cpu)  # no AVX-512 for anyone
    monkeypatch.setattr(cpu_linear, "_cpu_flags", lambda: ("AuthenticAMD", frozenset({"avx512f"})))
    assert cpu_linear.resolve_cpu_matmul("auto", cpu)  # MKL would take its AVX2 kernels
    assert cpu_linear.resolve_cpu_matmul("onednn", cpu)
    monkeypatch.setattr(cpu_linear, "onednn_linear_works", lambda: False)
    assert not cpu_linear.resolve_cpu_matmul("auto", cpu)
    with pytest.raises(ConfigError, match="no working oneDNN linear op; use 'auto' or 'blas'"):
        cpu_linear.resolve_cpu_matmul("onednn", cpu)


def test_config_names_the_valid_choices() -> None:
    assert build_config("quickstart").train.cpu_matmul == "auto"
    with pytest.raises(ConfigError, match=r"train\.cpu_matmul.*'auto', 'blas' or 'onednn'"):
        build_config("quickstart", assignments=["train.cpu_matmul=mkl"])


@needs_onednn
def test_a_training_step_through_onednn_equals_the_blas_step() -> None:
    """Same loss, same gradients, same updated weights to float32 tolerance."""
    config = resolve(build_config("quickstart", assignments=[*TINY, "noise.name=none"]))
    results = []
    for onednn in (False, True):
        torch.manual_seed(0)
        parts = assemble(config)
        if onednn:
            cpu_linear.install_onednn_linear(parts.model)
        step = TrainStep(
            parts.model,
            torch.optim.SGD(parts.model.parameters(), lr=0.1),
            parts.noise,
            torch.device("cpu"),
        )
        targets = torch.rand(4, 5, 28, 28, 1, generator=torch.Generator().manual_seed(1)) < 0.3
        loss = step(targets.float(), torch.Generator().manual_seed(2))
        grads = [p.grad.clone() for p in parts.model.parameters()]
        results.append((loss, grads, [p.detach().clone() for p in parts.model.parameters()]))
    (loss_a, grads_a, weights_a), (loss_b, grads_b, weights_b) = results
    torch.testing.assert_close(loss_b, loss_a)
    for a, b in zip([*grads_a, *weights_a], [*grads_b, *weights_b], strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6)
