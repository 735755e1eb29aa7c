"""The trainer's Adam: fused where torch has a kernel for the device, the same update as the loop."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from grouping.accel.optim import make_adam


def _steps(opt_factory, steps: int = 5) -> list[torch.Tensor]:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))
    opt = opt_factory(net.parameters())
    x = torch.randn(16, 6)
    for _ in range(steps):
        opt.zero_grad()
        net(x).pow(2).sum().backward()
        opt.step()
    return [p.detach().clone() for p in net.parameters()]


def test_fused_adam_on_this_cpu() -> None:
    """torch >= 2.4 has a fused CPU Adam; the trainer takes it."""
    opt = make_adam(nn.Linear(2, 2).parameters(), 1e-3)
    major, minor = (int(v) for v in torch.__version__.split(".")[:2])
    if (major, minor) < (2, 4):
        pytest.skip("no fused CPU Adam before torch 2.4")
    assert opt.defaults["fused"] is True


def test_same_update_as_torchs_default_adam() -> None:
    fused = _steps(lambda p: make_adam(p, 1e-2))
    plain = _steps(lambda p: torch.optim.Adam(p, lr=1e-2))
    start = _steps(lambda p: torch.optim.Adam(p, lr=0.0))
    for a, b, s in zip(fused, plain, start, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        assert (a - s).abs().max() > 1e-3  # five steps at 1e-2 moved every parameter


def test_falls_back_where_fused_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """An older torch or a device without the kernel: the plain loop, same hyper-parameters."""
    real = torch.optim.Adam

    def refusing(params, lr, **kw):  # type: ignore[no-untyped-def]
        if kw.get("fused"):
            raise RuntimeError("`fused=True` requires all the params to be on a supported device")
        return real(params, lr=lr, **kw)

    monkeypatch.setattr(torch.optim, "Adam", refusing)
    opt = make_adam(nn.Linear(2, 2).parameters(), 3e-3)
    assert not opt.defaults.get("fused") and opt.defaults["lr"] == 3e-3
