"""The model made ready to train or score on a device, once, when a run is built.

Everything that changes how the model computes is set here and nowhere later: the device, the CPU's
fp32 linear kernel, the bf16 precision hooks, and ``torch.compile``. The training step
(``grouping.training.batch_step``) then only calls what it is handed.
"""

from __future__ import annotations

from typing import Any

import torch

from grouping.accel.cpu_linear import use_cpu_matmul
from grouping.accel.precision import Precision, install_fp32_outputs, resolve_precision
from grouping.config.schema import TrainConfig
from grouping.engine.em import NeuralEM


def prepare_model(
    model: NeuralEM, train: TrainConfig, device: torch.device
) -> tuple[NeuralEM, Precision]:
    """The model on ``device`` with its matmul kernel and precision hooks; and the precision."""
    model = model.to(device)
    use_cpu_matmul(model, train.cpu_matmul, device)
    precision = resolve_precision(train.precision, device)
    if precision == "bf16":
        install_fp32_outputs(model)
    return model, precision


def compiled(module: Any, enabled: bool) -> Any:
    """``torch.compile(module)`` where ``train.compile`` asks for it, else the module itself."""
    return torch.compile(module) if enabled else module
