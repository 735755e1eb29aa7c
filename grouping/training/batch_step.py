"""One training step, the way the trainer and the throughput benchmark both run it.

noise -> the unrolled EM forward (keep=False: only the weighted loss) -> backward -> Adam. The
``train`` config picks how: the matmul precision (``grouping.precision``), ``torch.compile`` of the
forward, activation checkpointing over EM steps, and the module the forward calls (the model, or
its ``DistributedDataParallel`` wrapper). The CPU's fp32 linear kernel is the model's own
(``grouping.accel.cpu_linear.use_cpu_matmul``), so training, evaluation and figures share it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from grouping.accel.precision import Precision, install_fp32_outputs, matmul_context
from grouping.engine.em import NeuralEM
from grouping.plugins.guard import apply_noise, nonfinite
from grouping.plugins.interfaces import Noise


class TrainStep:
    """Callable ``(features, generator) -> loss`` that trains ``model`` by one optimizer step.

    A step whose loss or gradients are not finite is not applied: ``problem`` then says what was
    wrong (else it is None), and the trainer stops or skips (``train.on_nonfinite``). ``agree``
    makes all data-parallel ranks take the same decision.
    """

    def __init__(
        self,
        model: NeuralEM,
        optimizer: torch.optim.Optimizer,
        noise: Noise,
        device: torch.device,
        *,
        precision: Precision = "fp32",
        compile: bool = False,
        checkpoint_steps: bool = False,
        forward: nn.Module | None = None,
        agree: Callable[[bool], bool] | None = None,
    ) -> None:
        self.model = model
        self.optimizer = optimizer
        self.noise = noise
        self.device = device
        self.precision = precision
        if precision == "bf16":
            install_fp32_outputs(model)
        model.checkpoint_steps = checkpoint_steps
        module = forward if forward is not None else model
        self.forward: Any = torch.compile(module) if compile else module
        self.agree = agree or (lambda flag: flag)
        self.problem: str | None = None

    def __call__(self, features: Tensor, generator: torch.Generator) -> Tensor:
        """features (B, T+1, H, W, C) clean frames -> the detached training loss (a scalar)."""
        inputs = apply_noise(self.noise, features, generator)
        with matmul_context(self.device, self.precision):
            out = self.forward(inputs, features, generator, keep=False)
        self.optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        problem = nonfinite(out.loss, self.model)
        if self.agree(problem is not None):
            self.problem = problem or "another process met a non-finite loss or gradient"
        else:
            self.problem = None
            self.optimizer.step()
        return out.loss.detach()
