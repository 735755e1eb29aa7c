"""Convolutional component network ``conv`` (spec 5.1, 5.3, 5.4).

One plugin covers both convolutional networks of the original code; only the sizes differ:

* flying shapes (spec 5.3, 28x28x1) is the default ``Config()``: conv 32, conv 64, fc 512,
  RNN 100, fc 512, fc 7*7*64, up-conv 32, up-conv C. 3,403,389 parameters.
* flying MNIST (spec 5.4, 24x24x1) is ``Config(encoder_channels=(32, 64, 128), hidden=250,
  input_norm=True)``. 1,835,091 parameters.

Layers follow the TF 1.2 conventions of spec 5.1: every encoder layer is conv/fc -> layer norm ->
ELU, every decoder layer is fc/conv -> layer norm -> ReLU, except the last decoder layer, which has
neither: the network returns the raw output and the likelihood applies its activation. Layer norm is
the TF flavour (statistics over all non-batch axes, per-channel gain and bias, eps 1e-12):
fc -> ``LayerNorm(n)``, conv maps -> ``GroupNorm(1, C)``. Convolutions use kernel 4 and TF ``SAME``
padding; flattening between conv maps and fc layers uses TF's NHWC order. Weights are
Glorot-uniform, biases zero (spec 11, pitfall 6).

The recurrent layer between encoder and decoder (spec 5.1, "rnn" with sigmoid) is the updater's
(``rnn-em``): the network is the encoder e = enc(u) and the decoder of a representation h.
``layer_norm`` tells the updater to layer-normalise the representation it decodes, as the
original did. With ``NetworkSpec.encoder`` False (N-EM) the encoder is not built.

Deviation from the original code (spec 11, pitfall 4): ``input_norm`` divides by
sqrt(var + ``INPUT_NORM_EPS``) instead of sqrt(var), so that a constant input gives zeros (and
finite gradients) instead of NaN. The epsilon is far below the variance of any non-constant image,
so other inputs are unaffected.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Annotated, ClassVar

import torch
from pydantic import Field
from torch import Tensor, nn

from grouping.plugins import Network, NetworkSpec, PluginConfig, Register, hookimpl
from grouping_plugins.layers.tf_conv import (
    SPACE_TO_DEPTH_CHANNELS as SPACE_TO_DEPTH_CHANNELS,  # re-exported: tests and readers look here
)
from grouping_plugins.layers.tf_conv import (
    _autocast_dtype,
    _fc_norm,
    _map_norm,
    _SameConv,
    _UpConv,
)

PositiveInt = Annotated[int, Field(gt=0)]

#: Epsilon added to the variance in ``input_norm`` (documented deviation: the original has none).
INPUT_NORM_EPS = 1e-12


def _encoder(
    cfg: ConvNetwork.Config, channels: int, flat: int
) -> tuple[nn.ModuleList, nn.Sequential]:
    """The stride-2 convs (conv -> layer norm -> ELU each) and the fc layer after them."""
    convs: list[nn.Module] = []
    in_ch = channels
    for out_ch in cfg.encoder_channels:
        conv = _SameConv(in_ch, out_ch, cfg.kernel, stride=2)
        convs.append(nn.Sequential(conv, _map_norm(out_ch, cfg.layer_norm), nn.ELU()))
        in_ch = out_ch
    fc = nn.Sequential(
        nn.Linear(flat, cfg.encoder_fc), _fc_norm(cfg.encoder_fc, cfg.layer_norm), nn.ELU()
    )
    return nn.ModuleList(convs), fc


class ConvNetwork(Network):
    """Conv encoder and resize-conv decoder (spec 5.3 flying shapes, 5.4 MNIST).

    Input and output are channels-last, (N, H, W, C); the representation is (N, ``hidden``).
    """

    name: ClassVar[str] = "conv"
    description: ClassVar[str] = (
        "conv encoder, resize-conv decoder (flying shapes / MNIST, spec 5.3, 5.4)"
    )

    class Config(PluginConfig):
        """Sizes of the convolutional network. Defaults are flying shapes (spec 5.3)."""

        encoder_channels: tuple[PositiveInt, ...] = Field(
            default=(32, 64),
            min_length=1,
            description="output channels of the stride-2 encoder convs; the decoder mirrors them",
        )
        encoder_fc: PositiveInt = Field(
            default=512, description="width of the encoder's fc layer (the encoding size E)"
        )
        hidden: PositiveInt = Field(
            default=100, description="representation size S (RNN-EM's state, N-EM's theta)"
        )
        decoder_fc: PositiveInt = Field(default=512, description="width of the decoder's first fc")
        layer_norm: bool = Field(
            default=True,
            description="TF-style layer norm on every layer but the last decoder layer, and on "
            "the representation the updater decodes",
        )
        input_norm: bool = Field(
            default=False,
            description="standardise each copy's input by its own mean and std (flying MNIST)",
        )
        kernel: PositiveInt = Field(default=4, description="square kernel size of every conv")

    config: Config

    def __init__(self, config: PluginConfig, spec: NetworkSpec) -> None:
        if not isinstance(config, ConvNetwork.Config):
            config = ConvNetwork.Config.model_validate(config.model_dump())
        super().__init__(config, spec)
        cfg = self.config
        height, width, channels = spec.image_shape
        layers = len(cfg.encoder_channels)
        factor = 2**layers
        if min(height, width, channels) <= 0 or height % factor or width % factor:
            raise ValueError(
                f"conv network: image size {height}x{width}x{channels} does not fit "
                f"{layers} stride-2 layers (encoder_channels={cfg.encoder_channels}): "
                f"H and W must be positive multiples of 2**{layers} = {factor}"
            )
        self.image_shape = (height, width, channels)
        #: spatial size (h, w) and channels of the innermost conv map
        self.bottleneck = (height // factor, width // factor, cfg.encoder_channels[-1])
        flat = self.bottleneck[0] * self.bottleneck[1] * self.bottleneck[2]
        ln = cfg.layer_norm

        self.layer_norm = ln
        # the encoder: only when the updater reads it
        self.encoder_convs: nn.ModuleList | None = None
        self.encoder_fc: nn.Sequential | None = None
        if spec.encoder:
            self.encoder_convs, self.encoder_fc = _encoder(cfg, channels, flat)
        self.decoder_fc = nn.Sequential(
            nn.Linear(cfg.hidden, cfg.decoder_fc),
            _fc_norm(cfg.decoder_fc, ln),
            nn.ReLU(),
            nn.Linear(cfg.decoder_fc, flat),
            _fc_norm(flat, ln),
            nn.ReLU(),
        )
        reversed_channels = cfg.encoder_channels[::-1]
        ups: list[nn.Module] = []
        for i, in_ch in enumerate(reversed_channels):
            last = i == layers - 1
            out_ch = channels if last else reversed_channels[i + 1]
            up = _UpConv(in_ch, out_ch, cfg.kernel)
            ups.append(up if last else nn.Sequential(up, _map_norm(out_ch, ln), nn.ReLU()))
        self.decoder_convs = nn.ModuleList(ups)

        self.reset_parameters()

    @property
    def state_size(self) -> int:
        return self.config.hidden

    @property
    def encoding_size(self) -> int:
        return self.config.encoder_fc

    @contextlib.contextmanager
    def unrolled(self) -> Iterator[None]:
        """Derive the kernels that are functions of the weights (the up-convs' sub-pixel kernels,
        the first conv's space-to-depth kernel) once for the T steps of a pass, in the dtype the
        products run in (bf16 under autocast: one cast per pass, not one per step)."""
        layers = [m for m in self.modules() if isinstance(m, _UpConv | _SameConv)]
        dtype = _autocast_dtype(next(self.parameters()).device)
        for layer in layers:
            derived = layer.derive()
            if derived is not None and dtype is not None:
                derived = (
                    derived[0].to(dtype),
                    None if derived[1] is None else derived[1].to(dtype),
                )
            layer.derived = derived
        try:
            yield
        finally:
            for layer in layers:
                layer.derived = None

    def reset_parameters(self) -> None:
        """Glorot-uniform weights, zero biases, layer norm gain 1 and bias 0 (TF/slim defaults)."""
        for module in self.modules():
            if isinstance(module, nn.Linear | nn.Conv2d):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm | nn.GroupNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def normalize_input(self, u: Tensor) -> Tensor:
        """Standardise each copy (N, H, W, C) by its own mean and population std over H*W*C.

        Deviation: ``INPUT_NORM_EPS`` is added to the variance (the original has no epsilon, so a
        constant input gave NaN there and gives zeros here).
        """
        flat = u.reshape(u.shape[0], -1)  # (N, D)
        var, mean = torch.var_mean(flat, dim=1, keepdim=True, unbiased=False)  # (N, 1) each
        return ((flat - mean) * torch.rsqrt(var + INPUT_NORM_EPS)).reshape(u.shape)

    def encode(self, u: Tensor) -> Tensor:
        """Encoder output e (N, encoder_fc) of the masked difference u (N, H, W, C)."""
        if self.encoder_convs is None or self.encoder_fc is None:
            raise RuntimeError("conv network was built with encoder=False: it has no encoder")
        if self.config.input_norm:
            u = self.normalize_input(u)
        x = u.permute(0, 3, 1, 2)  # (N, C, H, W)
        for layer in self.encoder_convs:
            x = layer(x)  # (N, C_l, H / 2^l, W / 2^l)
        x = x.permute(0, 2, 3, 1).flatten(1)  # (N, h * w * C_L), TF NHWC order
        return self.encoder_fc(x)  # (N, encoder_fc)

    def decode(self, h: Tensor) -> Tensor:
        """Raw prediction (N, H, W, C) from a representation h (N, S) in (0, 1)."""
        rows, cols, c = self.bottleneck
        x = self.decoder_fc(h)  # (N, h * w * C_L)
        x = x.reshape(-1, rows, cols, c).permute(0, 3, 1, 2)  # (N, C_L, h, w)
        for layer in self.decoder_convs:
            x = layer(x)  # (N, C_l, 2 h_l, 2 w_l)
        return x.permute(0, 2, 3, 1).contiguous()  # (N, H, W, C)


@hookimpl
def register_networks(register: Register) -> None:
    """Register the ``conv`` network."""
    register(ConvNetwork)
