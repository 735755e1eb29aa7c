"""Device choice (``auto`` takes the GPU when there is one and the CPU otherwise), the run's
generator, and deterministic kernels."""

from __future__ import annotations

import os

import torch

from grouping.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda if available, else cpu; an explicit device must exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"train.device is {name!r} but no CUDA device is available; use cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(
                f"train.device is {name!r} but only {torch.cuda.device_count()} CUDA devices exist"
            )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("train.device is 'mps' but MPS is not available; use cpu")
    return device


def make_generator(device: torch.device, seed: int) -> torch.Generator:
    """The run's one torch generator (noise and gamma^(0)), on the device that uses it."""
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g


def set_deterministic(flag: bool, device: torch.device) -> None:
    """``train.deterministic``, for the whole process: cuDNN's deterministic algorithms and
    ``torch.use_deterministic_algorithms`` (an operator without a deterministic kernel warns, naming
    itself, rather than stopping the run); cuBLAS gets the workspace that makes it repeatable.
    Without it a CUDA run lets cuDNN pick its fastest algorithms per shape (``benchmark``)."""
    if flag and device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.deterministic = flag
    torch.backends.cudnn.benchmark = device.type == "cuda" and not flag
    torch.use_deterministic_algorithms(flag, warn_only=True)
