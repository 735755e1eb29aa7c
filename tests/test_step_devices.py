"""Every tensor a training step creates is made on the model's device (issue 15, item 5).

There is no GPU in CI, so the check runs on the CPU with the default device moved away: inside the
step ``torch.set_default_device("meta")`` sends any factory call without ``device=`` (``torch.zeros
(n)``, ``torch.tensor(x)``, ``torch.rand(shape, generator=g)``) to the meta device, while a
``TorchDispatchMode`` records the device of every tensor every aten op returns. On CUDA such a call
would make a CPU tensor beside CUDA ones; here it makes a meta tensor, which the mode reports with
the op and the line that made it. (A device written out as ``"cpu"`` is not caught: on the CPU it
is the model's device.)

The step is the trainer's own (``TrainStep``: noise, the EM loop with its E-step and loss,
backward, the finite check and Adam), run once outside the mode so that Adam's state exists, then
once inside.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch
from torch import Tensor
from torch.utils._device import DeviceContext
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from grouping.config.loading import build_config
from grouping.engine import em
from grouping.engine.assembly import build_model, build_noise, resolve
from grouping.plugin_api.interfaces import Likelihood
from grouping.training.batch_step import TrainStep
from grouping.training.setup import prepare_model
from tests.conftest import TINY

B, T = 2, 3


class DeviceRecorder(TorchDispatchMode):
    """Records every aten op whose output tensors are not all on ``device``: the op, the devices
    and the innermost frames of the project's code that called it."""

    def __init__(self, device: torch.device) -> None:
        super().__init__()
        self.device = device
        self.ops = 0
        self.strays: list[str] = []
        #: the step's (loss, norms), when it ran to the end
        self.result: tuple[Tensor, Tensor] | None = None

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        out = func(*args, **(kwargs or {}))
        self.ops += 1
        devices = {t.device for t in tree_leaves(out) if isinstance(t, Tensor)}
        if devices - {self.device}:
            self.strays.append(f"{func} made a tensor on {sorted(map(str, devices))}\n{_where()}")
        return out


def _where() -> str:
    """The innermost frames of the current stack outside torch and this recorder."""
    frames = [
        f
        for f in traceback.extract_stack()
        if f"{os.sep}torch{os.sep}" not in f.filename
        and f.name not in ("_where", "__torch_dispatch__")
    ]
    return "".join(traceback.format_list(frames[-3:]))


@contextmanager
def default_device(device: str) -> Iterator[None]:
    """``torch.set_default_device(device)`` for the forward and the backward pass.

    torch's default device is a torch-function mode, and a mode is off while it handles a call, so
    ``loss.backward()`` would run the backward (hooks, custom ``Function.backward``, recomputed
    checkpoints) without it: the engine's entry point is wrapped to turn it on again.
    """
    before = torch.get_default_device()
    run_backward = torch.autograd._engine_run_backward

    def with_default(*args: Any, **kwargs: Any) -> Any:
        with DeviceContext(torch.device(device)):
            return run_backward(*args, **kwargs)

    torch.set_default_device(device)
    torch.autograd._engine_run_backward = with_default
    try:
        yield
    finally:
        torch.autograd._engine_run_backward = run_backward
        torch.set_default_device(before)


def record_step(step: TrainStep, features: Tensor, seed: int) -> DeviceRecorder:
    """One training step with factories' default device moved to meta, every output recorded.

    A stray meta tensor usually breaks the step soon after it is made; the error is then kept in
    ``recorder.strays`` beside the op that made the tensor."""
    recorder = DeviceRecorder(step.device)
    generator = torch.Generator(step.device).manual_seed(seed)
    try:
        with default_device("meta"), recorder:
            recorder.result = step(features, generator)
    except Exception as exc:
        if not recorder.strays:
            raise
        recorder.strays.append(f"and then: {exc!r}")
    return recorder


#: preset, image (H, W, C), --set assignments
CASES: dict[str, tuple[str, tuple[int, int, int], list[str]]] = {
    "fc rnn-em, bernoulli, bitflip": ("quickstart", (12, 12, 1), []),
    "fc rnn-em, checkpointed steps, bf16": (
        "quickstart",
        (12, 12, 1),
        ["train.checkpoint_steps=true", "train.precision=bf16"],
    ),
    "fc rnn-em, gaussian, masked-uniform, 3 channels": ("quickstart-flying-mnist", (8, 8, 3), []),
    "n-em, closed form": ("static-shapes-nem", (12, 12, 1), []),
    "n-em, autograd form": ("static-shapes-nem", (12, 12, 1), ["updater.form=autograd"]),
    "conv rnn-em, input norm, gaussian": (
        "flying-mnist",
        (24, 24, 1),
        ["network.encoder_channels=[4,4,4]", "network.hidden=8"],
    ),
}


def _step(case: str) -> tuple[TrainStep, Tensor]:
    """The case's model on the CPU in the trainer's ``TrainStep``, and a batch of clean frames."""
    preset, image, assignments = CASES[case]
    sets = [*TINY, f"model.steps={T}", "model.components=2", *assignments]
    config = resolve(build_config(preset, assignments=sets))
    torch.manual_seed(0)
    device = torch.device("cpu")
    train = config.train  # "auto" precision is fp32 here, whatever the CPU
    if train.precision == "auto":
        train = train.model_copy(update={"precision": "fp32"})
    # as the trainer: checkpointed steps from the config, then device, kernel and precision hooks
    model, precision = prepare_model(build_model(config, image), train, device)
    step = TrainStep(
        model,
        torch.optim.Adam(model.parameters(), lr=1e-3),
        build_noise(config),
        device,
        precision=precision,
    )
    features = torch.rand(B, T + 1, *image, generator=torch.Generator().manual_seed(1))
    if config.likelihood.name == "bernoulli":
        features = (features < 0.3).float()
    return step, features


@pytest.mark.parametrize("case", list(CASES))
def test_a_training_step_makes_every_tensor_on_the_models_device(case: str) -> None:
    step, features = _step(case)
    step(features, torch.Generator().manual_seed(0))  # Adam's state, outside the check
    recorder = record_step(step, features, seed=1)
    assert not recorder.strays, "\n".join(recorder.strays)
    assert recorder.ops > 100  # the mode saw the step
    assert recorder.result is not None and torch.isfinite(recorder.result[1]).all()


def _zeros_in_forward(e_step: Callable[..., Tensor]) -> Callable[..., Tensor]:
    def careless(likelihood: Likelihood, target: Tensor, psi: Tensor) -> Tensor:
        return e_step(likelihood, target, psi) + torch.zeros(psi.shape[-1])

    return careless


def _zeros_in_backward(e_step: Callable[..., Tensor]) -> Callable[..., Tensor]:
    def careless(likelihood: Likelihood, target: Tensor, psi: Tensor) -> Tensor:
        psi.register_hook(lambda grad: grad + torch.zeros(()))
        return e_step(likelihood, target, psi)

    return careless


@pytest.mark.parametrize("inject", [_zeros_in_forward, _zeros_in_backward])
def test_the_check_catches_a_tensor_made_without_a_device(
    inject: Callable[[Callable[..., Tensor]], Callable[..., Tensor]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The check is real: an E-step that adds ``torch.zeros(n)`` (no device) to its output, or
    registers a gradient hook that does, is reported with the line that made the tensor."""
    monkeypatch.setattr(em, "e_step", inject(em.e_step))
    step, features = _step("fc rnn-em, bernoulli, bitflip")
    step(features, torch.Generator().manual_seed(0))
    recorder = record_step(step, features, seed=1)
    assert recorder.strays and "aten.zeros.default made a tensor on ['meta']" in recorder.strays[0]
    assert "torch.zeros(" in recorder.strays[0]  # the line that made it
