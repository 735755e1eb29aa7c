"""The model, its optimizer and its data made ready to train or score on a device, once, when a run
is built.

Everything that changes how the model computes is set here and nowhere later: the device, the CPU's
fp32 linear kernel, the precision (bf16 hooks, TF32 on CUDA; ``grouping.accel.precision``),
deterministic kernels, and ``torch.compile``. The training step (``grouping.training.batch_step``)
then only calls what it is handed. ``docs/gpu.md`` states the CUDA policy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from grouping.accel.cpu_linear import use_cpu_matmul
from grouping.accel.device import set_deterministic
from grouping.accel.optim import make_adam
from grouping.accel.precision import (
    Precision,
    apply_matmul_precision,
    install_fp32_outputs,
    resolve_precision,
)
from grouping.config.schema import TrainConfig
from grouping.data.resident import RunSplits
from grouping.engine.em import NeuralEM
from grouping.plugin_api.interfaces import Split, SplitName

#: ``train.compile``'s values; true and false in older configs mean default and off.
COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune")


def prepare_model(
    model: NeuralEM, train: TrainConfig, device: torch.device
) -> tuple[NeuralEM, Precision]:
    """The model on ``device`` with its matmul kernel and precision hooks; and the precision,
    resolved by the policy for this device, compile mode and batch size."""
    model = model.to(device)
    use_cpu_matmul(model, train.cpu_matmul, device)
    set_deterministic(train.deterministic, device)
    on = compile_mode(train.compile) != "off"
    precision = resolve_precision(train.precision, device, compiled=on, batch=train.batch_size)
    apply_matmul_precision(device, precision)
    if precision == "bf16":
        install_fp32_outputs(model)
    return model, precision


def compile_mode(mode: str | bool) -> str:
    """``train.compile`` as a mode name (true -> default, false -> off)."""
    if isinstance(mode, bool):
        return "default" if mode else "off"
    if mode not in COMPILE_MODES:
        raise ValueError(f"train.compile must be one of {', '.join(COMPILE_MODES)}, not {mode!r}")
    return mode


class _GraphSteps:
    """A module compiled with CUDA graphs, each call marked as a new step: the graphs' memory of
    the step before (its loss, its gradients) has been read by then."""

    def __init__(self, module: Any) -> None:
        self.module = module

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        torch.compiler.cudagraph_mark_step_begin()
        return self.module(*args, **kwargs)


def compiled(module: Any, mode: str | bool) -> Any:
    """``torch.compile(module)`` in ``train.compile``'s mode (its forward and, through AOTAutograd,
    its backward), or the module itself when off. gamma^(0) and the noise are drawn outside
    (``TrainStep``), so the unrolled pass compiles as one graph."""
    mode = compile_mode(mode)
    if mode == "off":
        return module
    if mode == "default":
        return torch.compile(module)
    graphs = torch.compile(module, mode=mode)
    return _GraphSteps(graphs) if mode == "reduce-overhead" else graphs


def make_optimizer(
    params: Iterable[nn.Parameter], train: TrainConfig, device: torch.device
) -> torch.optim.Adam:
    """Adam at ``train.lr``: fused where torch has it for the device; on CUDA with a compiled
    step also ``capturable`` (its step counts on the device, so the update may join a graph)."""
    params = list(params)
    if device.type == "cuda" and compile_mode(train.compile) != "off":
        return torch.optim.Adam(params, lr=train.lr, fused=True, capturable=True)
    return make_adam(params, train.lr)


def run_splits(
    source: Callable[[SplitName], Split], train: TrainConfig, device: torch.device
) -> RunSplits:
    """The run's splits as the trainer reads them (``train.data_on_device``,
    ``grouping.data.resident``)."""
    return RunSplits(source, train.data_on_device, device)
