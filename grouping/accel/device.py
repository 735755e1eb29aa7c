"""Device choice: ``auto`` takes the GPU when there is one and the CPU otherwise."""

from __future__ import annotations

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
