"""Matmul precision: bf16 matrix products with fp32 everything else.

``train.precision = "bf16"`` runs the forward under ``torch.autocast(dtype=bfloat16)``, so every
matmul and convolution (and their backward) multiplies bf16 operands with fp32 accumulation, and
casts each such layer's output straight back to fp32 with a forward hook. Plain autocast would leave
the outputs in bf16 and run the sigmoids, the E-step and the loss in bf16 too; bf16 has 8 mantissa
bits, so a sigmoid output above ~0.998 rounds to exactly 1, the likelihood's clip then cuts the
gradient to zero, and the E-step's products lose their resolution. With the hooks only the products
are bf16; the weights, the optimizer, the states and all elementwise work stay fp32.

``"tf32"`` is fp32 storage and elementwise work with TF32 products on CUDA (10 mantissa bits in the
multiply, fp32 accumulation: ``torch.set_float32_matmul_precision("high")`` and cuDNN's TF32), and
plain fp32 elsewhere; ``"fp32"`` on CUDA turns TF32 off (the correctness reference).

``"auto"`` on the CPU picks bf16 where the hardware multiplies bf16 natively (AVX-512 BF16 or AMX)
and fp32 elsewhere, where bf16 would be emulated and slower. On CUDA it picks bf16 where the step
is compiled (the compiler fuses the casts into the kernels around each product) or the batch is at
least :data:`BF16_MIN_BATCH` (the products are then large enough that halving their operands pays
for ~860 extra cast kernels per step), and tf32 otherwise: an eager step at batch 64 is bound by
kernel launches, not by the products (docs/gpu.md).
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

Precision = Literal["fp32", "tf32", "bf16"]

#: The eager CUDA batch from which ``auto`` multiplies in bf16 (an estimate; benchmarks/gpu_check.py
#: measures the batch sweep that should confirm it).
BF16_MIN_BATCH = 256

#: Layers whose products autocast runs in bf16 and whose outputs the hooks cast back to fp32.
MATMUL_LAYERS: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
)
#: CPU flags of native bf16 dot products (Linux ``/proc/cpuinfo``).
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.cache
def cpu_has_native_bf16() -> bool:
    """True on a CPU with AVX-512 BF16 or AMX (read from /proc/cpuinfo; False where unreadable)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return any(f in flags for f in CPU_BF16_FLAGS)
    return False


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` multiplies bf16 natively."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        return cpu_has_native_bf16()
    return False


def resolve_precision(
    name: str, device: torch.device, *, compiled: bool = False, batch: int = 0
) -> Precision:
    """``auto`` by the policy of the module docstring; fp32, tf32 and bf16 as given (tf32 is fp32
    off CUDA). ``compiled`` and ``batch`` are the run's ``train.compile`` and local batch size."""
    if name not in ("auto", "fp32", "tf32", "bf16"):
        raise ValueError(f"precision must be auto, fp32, tf32 or bf16, not {name!r}")
    cuda = device.type == "cuda"
    if name == "auto":
        if not cuda:
            return "bf16" if native_bf16(device) else "fp32"
        if native_bf16(device) and (compiled or batch >= BF16_MIN_BATCH):
            return "bf16"
        name = "tf32" if torch.cuda.get_device_capability(device)[0] >= 8 else "fp32"
    if name == "tf32" and not cuda:
        return "fp32"
    return name  # type: ignore[return-value]


def apply_matmul_precision(device: torch.device, precision: Precision) -> None:
    """Set the process's fp32 product precision for a CUDA run: TF32 in matmuls and convolutions
    unless ``precision`` is fp32. Nothing changes on the CPU, whose policy this leaves as it was."""
    if device.type != "cuda":
        return
    tf32 = precision != "fp32"
    torch.set_float32_matmul_precision("high" if tf32 else "highest")
    torch.backends.cudnn.allow_tf32 = tf32


def _to_fp32(module: nn.Module, args: Any, output: Any) -> Any:
    """Forward hook: a bf16 layer output becomes fp32 (a no-op outside autocast)."""
    if isinstance(output, Tensor) and output.dtype == torch.bfloat16:
        return output.float()
    return output


def install_fp32_outputs(model: nn.Module) -> int:
    """Hook every matmul layer of ``model`` so its output is fp32; returns how many were hooked.

    Idempotent: a layer is hooked once however often this is called.
    """
    count = 0
    for module in model.modules():
        if isinstance(module, MATMUL_LAYERS) and not getattr(module, "_grouping_fp32_out", False):
            module.register_forward_hook(_to_fp32)
            module._grouping_fp32_out = True  # type: ignore[assignment]
            count += 1
    return count


def matmul_context(
    device: torch.device, precision: Precision
) -> contextlib.AbstractContextManager[Any]:
    """The context the forward runs in, in training and in evaluation alike: bf16 autocast, or
    nothing for fp32 and tf32 (whose products the process setting decides)."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def machine_facts(device: torch.device, precision: Precision) -> dict[str, Any]:
    """What a run's speed and numerics depend on, for ``summary.json``: the same config trains in
    bf16 on one CPU and in fp32 on another (``auto``), several times slower without AVX-512.
    ``precision`` is the one the run resolved and trained in."""
    facts: dict[str, Any] = {
        "torch": torch.__version__,
        "precision": precision,
        "native_bf16": native_bf16(device),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }
    if device.type == "cuda":
        facts["gpu"] = torch.cuda.get_device_name(device)
    return facts
