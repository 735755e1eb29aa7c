"""One training step, read top to bottom: noise and gamma^(0) -> forward -> loss -> backward -> Adam.

The step never waits for the device. The loss comes back as a device tensor, read by the trainer
at its logging interval; a non-finite loss or gradient is found on the device (one fused norm over
all gradients) and handed to the fused Adam as ``found_inf``, which then leaves the weights and
moments as they were. The model arrives ready (``grouping.training.setup``): its precision hooks,
activation checkpointing and compile are set when it is built, not here. The noise and gamma^(0)
are drawn here, from the run's generator, outside the compiled forward (a draw from a generator is
a graph break), in the order the forward drew them before (noise, then gamma^(0)): the same numbers.
The throughput benchmark runs this same step.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from grouping.accel.precision import Precision, matmul_context
from grouping.engine.em import NeuralEM
from grouping.plugin_api.interfaces import Noise


class TrainStep:
    """Callable ``(features, generator) -> (loss, norms)``: one optimizer step on ``model``.

    ``loss`` is the detached training loss and ``norms`` the loss followed by every gradient's
    norm, (1 + P,), both on the device: the trainer reads them at its logging interval to book
    the losses and to name what was not finite (``train.on_nonfinite``).
    """

    def __init__(
        self,
        model: NeuralEM,
        optimizer: torch.optim.Optimizer,
        noise: Noise,
        device: torch.device,
        *,
        precision: Precision = "fp32",
        forward: Any = None,
    ) -> None:
        self.model = model
        self.optimizer = optimizer
        self.noise = noise
        self.device = device
        self.precision = precision
        #: the module the forward calls: the model, its compiled form or its DDP wrapper
        self.forward = forward if forward is not None else model
        #: the parameters that get gradients, and their names, set after the first backward
        self.params: list[nn.Parameter] = []
        self.names: list[str] = []
        #: the fused Adam skips a step on the device; the plain loop needs the host to decide
        self.device_skip = bool(optimizer.defaults.get("fused"))

    def __call__(self, features: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """features (B, T+1, H, W, C) clean frames -> (loss, norms), detached, on the device."""
        inputs = self.noise(features, generator)
        b, _, h, w, _ = features.shape
        gamma = self.model.initial_gamma(
            (b, self.model.components, h, w, 1), generator, self.device
        )
        with matmul_context(self.device, self.precision):
            loss = self.forward(inputs, features, keep=False, gamma=gamma).loss
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if not self.params:
            named = [(n, p) for n, p in self.model.named_parameters() if p.grad is not None]
            self.names, self.params = [n for n, _ in named], [p for _, p in named]
        grads = [p.grad for p in self.params if p.grad is not None]
        norms = torch.stack([loss.detach(), *torch._foreach_norm(grads)])
        bad = ~torch.isfinite(norms.sum())
        if self.device_skip:
            self.optimizer.found_inf = bad.float()  # type: ignore[attr-defined]
            self.optimizer.step()
        elif not bool(bad):  # pragma: no cover - torch without a fused Adam for this device
            self.optimizer.step()
        return norms[0], norms  # not ``loss``: a CUDA graph's next replay overwrites it
