"""TF 1.2 layers the ``conv`` network is built from (spec 5.1): ``SAME``-padded convolutions (a
space-to-depth form for the first, few-channel layer), nearest-resize convolutions computed as
sub-pixel convolutions, and TF-style layer norms. Not a plugin: the building blocks of one."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: Layer norm epsilon of TF 1.2 ``slim.layer_norm`` (spec 5.1).
LAYER_NORM_EPS = 1e-12

#: A stride-2 conv over at most this many input channels runs after a space-to-depth (_SameConv).
SPACE_TO_DEPTH_CHANNELS = 4


def _autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The dtype autocast multiplies in on ``device`` now, or None when autocast is off."""
    kind = device.type
    if hasattr(torch, "get_autocast_dtype"):  # torch >= 2.4
        return torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else None
    if kind == "cpu":  # pragma: no cover - older torch
        return torch.get_autocast_cpu_dtype() if torch.is_autocast_cpu_enabled() else None
    if kind == "cuda":  # pragma: no cover
        return torch.get_autocast_gpu_dtype() if torch.is_autocast_enabled() else None
    return None


def _same_padding(kernel: int, stride: int) -> tuple[int, int]:
    """TF ``SAME`` padding (before, after) of one axis whose size is divisible by ``stride``."""
    total = max(kernel - stride, 0)
    return total // 2, total - total // 2


def _fc_norm(n: int, enabled: bool) -> nn.Module:
    """TF-style layer norm of a feature vector (N, n), or identity."""
    return nn.LayerNorm(n, eps=LAYER_NORM_EPS) if enabled else nn.Identity()


def _map_norm(channels: int, enabled: bool) -> nn.Module:
    """TF-style layer norm of a conv map (N, C, H, W): over C, H, W jointly, per-channel affine."""
    return nn.GroupNorm(1, channels, eps=LAYER_NORM_EPS) if enabled else nn.Identity()


class _SameConv(nn.Module):
    """Conv2d with TF ``SAME`` padding (possibly asymmetric) on maps (N, C, H, W).

    A stride-2 conv with an even kernel over at most ``SPACE_TO_DEPTH_CHANNELS`` input channels (the
    first encoder layer, which reads the image) runs as the same conv after a 2 x 2 space-to-depth:
    kernel k / 2, stride 1, 4 C input channels, the weight rearranged on the fly. The result and
    the parameters are the plain conv's; oneDNN's kernels for one input channel at stride 2 are
    slow, and this form of the first layer trained 1.2-2.4x faster in a micro-benchmark (bf16, one
    thread). With 16 or 32 input channels the plain conv is faster, so it keeps them.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int) -> None:
        super().__init__()
        before, after = _same_padding(kernel, stride)
        self.pad = (before, after, before, after)  # (left, right, top, bottom) for F.pad
        self.space_to_depth = (
            stride == 2 and kernel % 2 == 0 and in_channels <= SPACE_TO_DEPTH_CHANNELS
        )
        # symmetric padding goes into the conv itself, which saves a padded copy of the map
        self.inner = before == after and not self.space_to_depth
        padding = before if self.inner else 0
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=padding)
        #: The rearranged kernel and bias, derived once per unrolled pass, or None.
        self.derived: tuple[Tensor, Tensor | None] | None = None

    def derive(self) -> tuple[Tensor, Tensor | None] | None:
        """The space-to-depth kernel (C_out, 4 C_in, k / 2, k / 2) and bias, or None."""
        if not self.space_to_depth:
            return None
        # w[o, c, 2a + i, 2b + j] -> w'[o, 4c + 2i + j, a, b], pixel_unshuffle's channel order
        w = self.conv.weight
        out, inp, k = w.shape[0], w.shape[1], w.shape[2] // 2
        w = w.reshape(out, inp, k, 2, k, 2).permute(0, 1, 3, 5, 2, 4).reshape(out, 4 * inp, k, k)
        return w, self.conv.bias

    def forward(self, x: Tensor) -> Tensor:
        if self.inner:
            return self.conv(x)
        if any(self.pad):
            x = F.pad(x, self.pad)
        if self.space_to_depth:  # the padded map is even: H, W are even and k - 2 is
            derived = self.derived or self.derive()
            assert derived is not None
            # back to the input's dtype: under bf16 autocast only the product is bf16
            return F.conv2d(F.pixel_unshuffle(x, 2), *derived).to(x.dtype)
        return self.conv(x)


def _subpixel_taps(kernel: int) -> tuple[Tensor, tuple[int, int]]:
    """How the ``kernel`` taps of a stride-1 ``SAME`` conv after a x2 nearest resize land on the
    low-resolution map, per output parity: A (2, L, kernel) with A[r, l, a] = 1 when tap a of an
    output pixel of parity r reads low-resolution offset l - before, and the padding (before, after).

    Output pixel 2m + r reads resized pixel 2m + r + a - before, i.e. source pixel
    floor((r + a - before) / 2) relative to m; the resize's zero padding is exactly a zero padding
    on the small map, since a resized index is inside iff its source is.
    """
    before, _ = _same_padding(kernel, 1)
    offsets = [[(r + a - before) // 2 for a in range(kernel)] for r in range(2)]
    low = min(min(o) for o in offsets)
    high = max(max(o) for o in offsets)
    taps = torch.zeros(2, high - low + 1, kernel)
    for r in range(2):
        for a, offset in enumerate(offsets[r]):
            taps[r, offset - low, a] = 1.0
    return taps, (-low, high)


class _UpConv(nn.Module):
    """TF "r_conv": nearest-neighbour resize x2, then a stride-1 ``SAME`` conv (N, C, H, W).

    Computed exactly, without building the resized map: a conv with 4x the output channels and an
    L x L kernel (3 x 3 for kernel 4) on the small map, whose outputs ``pixel_shuffle`` interleaves.
    Its kernel is the ``SAME`` conv's own weight with the taps that read the same source pixel
    summed, so the parameters (and checkpoints) are those of the plain resize-conv. It does 36
    instead of 64 multiply-adds per (small pixel, input channel, output channel) at kernel 4, and
    skips the resized map's memory traffic: about 1.3x faster training on the conv families.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int) -> None:
        super().__init__()
        self.conv = _SameConv(in_channels, out_channels, kernel, stride=1)
        taps, (before, after) = _subpixel_taps(kernel)
        self.pad = (before, after, before, after)  # (left, right, top, bottom) for F.pad
        self.small = taps.shape[1]  # L
        # (r, s, p, q) x (a, b): 1 where tap (a, b) of output parity (r, s) reads offset (p, q)
        sums = torch.einsum("rpa,sqb->rspqab", taps, taps).reshape(4 * self.small**2, kernel**2)
        self.register_buffer("sums", sums, persistent=False)
        #: The kernel and bias derived once per unrolled pass (``ConvNetwork.unrolled``), or None.
        self.derived: tuple[Tensor, Tensor | None] | None = None

    def derive(self) -> tuple[Tensor, Tensor | None]:
        return self.subpixel_weight()

    def subpixel_weight(self) -> tuple[Tensor, Tensor | None]:
        """Kernel (4 C_out, C_in, L, L) and bias (4 C_out) of the small-map conv, in fp32."""
        weight, bias = self.conv.conv.weight, self.conv.conv.bias
        out, inp, size = weight.shape[0], weight.shape[1], self.small
        with torch.autocast(weight.device.type, enabled=False):
            # k[o, i, (r, s, p, q)] = sum_ab w[o, i, a, b] [tap (a, b) of parity (r, s) reads (p, q)]
            k = weight.reshape(out, inp, -1) @ self.sums.t()  # one small product, fp32
        k = k.reshape(out, inp, 4, size, size).transpose(1, 2).reshape(4 * out, inp, size, size)
        # each bias four times, by a broadcast (no atomics in its backward, unlike repeat_interleave)
        return k, bias[:, None].expand(out, 4).reshape(4 * out) if bias is not None else None

    def forward(self, x: Tensor) -> Tensor:
        weight, bias = self.derived if self.derived is not None else self.subpixel_weight()
        if self.pad[0] == self.pad[1]:
            y = F.conv2d(x, weight, bias, padding=self.pad[0])  # (N, 4 C_out, H, W)
        else:
            y = F.conv2d(F.pad(x, self.pad), weight, bias)
        # back to the input's dtype: under bf16 autocast only the product is bf16 (grouping.precision)
        return F.pixel_shuffle(y, 2).to(x.dtype)  # (N, C_out, 2H, 2W)
