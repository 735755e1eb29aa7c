"""The five plugin kinds: the abstract interfaces every built-in and third-party plugin implements.

Shape letters: B batch, K components, N = B*K flat copies (what a network sees), T EM steps, H, W image size, C channels,
S component state size. Tensors are channels-last, as in the original code: images are (..., H, W, C).

A plugin is a class that subclasses one of the interfaces below and sets three class attributes:

* ``name``: the name users type (``--likelihood bernoulli``);
* ``description``: one line for ``grouping list-plugins``;
* ``Config``: a pydantic model of its own options (``--set likelihood.<option>=...``).

The registry validates a plugin's options against ``Config`` once, when the run config is resolved,
and builds the plugin from that validated object.
"""

from __future__ import annotations

import abc
import contextlib
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Literal, TypeVar

import torch
from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator
from torch import Tensor, nn

from grouping.plugin_api.splits import SPLITS as SPLITS  # re-exported: the plugin API
from grouping.plugin_api.splits import ArraySplit as ArraySplit
from grouping.plugin_api.splits import Split as Split
from grouping.plugin_api.splits import SplitName as SplitName
from grouping.plugin_api.splits import SplitSizes as SplitSizes

PluginKind = Literal["likelihood", "network", "updater", "dataset", "noise"]


#: Option types that take numbers, not true/false (pydantic would read ``true`` as 1).
NUMBER_TYPES: tuple[object, ...] = (int, float, int | None, float | None, int | float)


class PluginConfig(BaseModel):
    """Base of every plugin's ``Config``: unknown options are an error, not silently ignored, and
    a number option refuses true/false (``--set network.hidden=true`` is not 1)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _numbers_are_numbers(cls, value: object, info: ValidationInfo) -> object:
        field = cls.model_fields.get(info.field_name or "")
        if isinstance(value, bool) and field is not None and field.annotation in NUMBER_TYPES:
            raise ValueError(f"Input should be a number, not {value}")
        return value


class Plugin:
    """What every plugin class declares. Subclass one of the five kinds, not this."""

    kind: ClassVar[PluginKind]
    name: ClassVar[str]
    description: ClassVar[str]
    Config: ClassVar[type[PluginConfig]] = PluginConfig


# --------------------------------------------------------------------------------------------------
# likelihood


class Likelihood(Plugin):
    """Per-pixel distribution P(x | psi) of one mixture component (spec 2.1, 2.3, 3.1).

    ``psi`` is the distribution parameter the network predicts (a Bernoulli mean, a Gaussian mean).
    Every method works element-wise, so ``x`` and ``psi`` may be any broadcastable shapes; the engine
    calls them with ``x`` (B, 1, H, W, C) and ``psi`` (B, K, H, W, C).
    """

    kind: ClassVar[PluginKind] = "likelihood"
    #: name of the noise plugin that fits this kind of data (``noise = "auto"`` picks it).
    default_noise: ClassVar[str] = "none"
    #: preset (name or .toml path) of a run that names this likelihood but no preset and no data
    #: set; None keeps the default preset (``config.implied_preset``).
    default_preset: ClassVar[str | None] = None
    #: True when ``activation`` is the distribution's canonical link (Bernoulli + sigmoid, Gaussian
    #: + identity), so d log P(x | psi) / d raw = x - psi up to a constant factor: then the masked
    #: difference gamma * (x - psi) is the gradient of Q with respect to the raw output, which the
    #: ``n-em`` updater relies on (spec 2.5).
    canonical_link: ClassVar[bool] = False
    #: The pixel values the distribution is defined on. Features enter the core in [0, 1] (the
    #: ``Split`` contract); a likelihood may narrow that, and a batch outside is refused in one line.
    support: ClassVar[tuple[float, float]] = (0.0, 1.0)

    def __init__(self, config: PluginConfig) -> None:
        self.config = config

    @abc.abstractmethod
    def activation(self, raw: Tensor) -> Tensor:
        """Map the network's raw output to psi (sigmoid for Bernoulli, identity for Gaussian)."""

    @abc.abstractmethod
    def pixel_prob(self, x: Tensor, psi: Tensor) -> Tensor:
        """Per-pixel, per-channel probability (or density) P(x | psi) used by the E-step (spec 2.3).

        Linear space, not log: the engine multiplies over channels, adds a floor and normalises over K.
        """

    @abc.abstractmethod
    def intra(self, x: Tensor, psi: Tensor) -> Tensor:
        """Intra-cluster loss per pixel and channel, -log P(x | psi) up to a constant (spec 3.1)."""

    @abc.abstractmethod
    def inter(self, psi: Tensor) -> Tensor:
        """Inter-cluster loss per pixel and channel: KL(prior || P(. | psi)) (spec 3.1)."""


# --------------------------------------------------------------------------------------------------
# network


@dataclass(frozen=True)
class NetworkSpec:
    """What the engine tells a network when it builds it."""

    image_shape: tuple[int, int, int]  # (H, W, C)
    #: True when the updater reads the network's encoder (RNN-EM, LSTM-EM); False when it only
    #: decodes (N-EM), so a network can skip building its encoder.
    encoder: bool = True


class Network(nn.Module, Plugin):
    """The component network shared by the K copies (spec 5): an encoder and a decoder.

    The network holds no recurrence: the updater owns the M-step (RNN-EM's recurrent layer, N-EM's
    gradient step, an LSTM cell, an interaction between components) and calls ``encode`` on the
    masked differences and ``decode`` on the representation it keeps. Both work on flat copies
    (N = B * K rows), so an updater flattens its grouped (B, K, ...) tensors around them.
    """

    kind: ClassVar[PluginKind] = "network"
    #: Whether the representation an updater hands ``decode`` should be layer-normalised before
    #: its squashing (the TF 1.2 "rnn" layer with layer norm of spec 5.1). RNN-EM reads it.
    layer_norm: bool = False

    def __init__(self, config: PluginConfig, spec: NetworkSpec) -> None:
        super().__init__()
        self.config = config
        self.spec = spec

    @property
    @abc.abstractmethod
    def state_size(self) -> int:
        """S, the length of the representation ``decode`` reads."""

    @property
    def encoding_size(self) -> int:
        """E, the length of ``encode``'s output; the flat image size H*W*C unless overridden."""
        h, w, c = self.spec.image_shape
        return h * w * c

    def encode(self, u: Tensor) -> Tensor:
        """Encoding e (N, E) of masked differences u (N, H, W, C); the flat pixels by default."""
        return u.reshape(u.shape[0], -1)

    @abc.abstractmethod
    def decode(self, h: Tensor) -> Tensor:
        """Raw prediction (N, H, W, C) from a representation h (N, S), before the likelihood's
        activation."""

    def decoder_weight(self) -> Tensor | None:
        """W (D, S), D = H*W*C, when ``decode(h)`` is affine in h (W h + b, reshaped), else None.

        Optional: it lets N-EM use the paper's closed-form, tied-weight step instead of autograd.
        """
        return None

    def unrolled(self) -> contextlib.AbstractContextManager[None]:
        """A context around one unrolled pass (T steps), for work a network does once per pass
        rather than once per step (the conv decoder derives its sub-pixel kernels here)."""
        return contextlib.nullcontext()


# --------------------------------------------------------------------------------------------------
# updater


class Updater(nn.Module, Plugin):
    """The M-step (eq. 4): moves each component's state given its gamma-masked difference.

    The updater sees the K components of each sample together, (B, K, ...), so a method whose
    components interact (R-NEM) is one updater, and K is read from the shape: weights that do not
    depend on K let a model trained with one K run with another. It owns the network, so
    ``updater.parameters()`` are all the trainable weights.
    """

    kind: ClassVar[PluginKind] = "updater"
    #: Whether the updater calls ``network.encode`` (passed to the network as
    #: ``NetworkSpec.encoder``; N-EM, which only decodes, sets False).
    needs_encoder: ClassVar[bool] = True

    def __init__(self, config: PluginConfig, network: Network, likelihood: Likelihood) -> None:
        super().__init__()
        self.config = config
        self.network = network
        self.likelihood = likelihood

    @property
    def state_size(self) -> int:
        """The length of one component's state; the network's representation by default."""
        return self.network.state_size

    def initial_state(
        self, batch: int, components: int, device: torch.device, dtype: torch.dtype
    ) -> Tensor:
        """The state before step 1 (spec 2.6): zeros (B, K, S)."""
        return torch.zeros(batch, components, self.state_size, device=device, dtype=dtype)

    @abc.abstractmethod
    def forward(self, u: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """u = gamma * (x~ - psi) (B, K, H, W, C), state (B, K, S) ->
        (psi (B, K, H, W, C), new state (B, K, S))."""


# --------------------------------------------------------------------------------------------------
# noise


class Noise(Plugin):
    """Corrupts the network input only; the E-step and the loss see clean targets (spec 4)."""

    kind: ClassVar[PluginKind] = "noise"

    def __init__(self, config: PluginConfig) -> None:
        self.config = config

    @abc.abstractmethod
    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """Noisy copy of x (any shape, values in [0, 1]), fresh noise per element and call."""


# --------------------------------------------------------------------------------------------------
# dataset


DatasetT = TypeVar("DatasetT", bound="Dataset")


def cached_split(
    make: Callable[[DatasetT, SplitName], Split],
) -> Callable[[DatasetT, SplitName], Split]:
    """Decorate a data set's ``split``: each named split is built on its first request, then the
    same object is returned, so a split is generated once per run however often it is asked for."""

    @functools.wraps(make)
    def split(self: DatasetT, name: SplitName) -> Split:
        built: dict[SplitName, Split] = self.__dict__.setdefault("_cached_splits", {})
        if name not in built:
            built[name] = make(self, name)
        return built[name]

    return split


class Dataset(Plugin):
    """Train / validation / test splits of (features, groups) with frames on a time axis (spec 6)."""

    kind: ClassVar[PluginKind] = "dataset"
    #: Likelihood to use when the user names none (``bernoulli`` for binary data, say).
    default_likelihood: ClassVar[str | None] = None

    @classmethod
    def likelihood_for(cls, config: PluginConfig) -> str | None:
        """The likelihood ``likelihood.name = "auto"`` picks for these validated options.

        ``default_likelihood`` unless a data set overrides this: one read from a file (``hdf5``,
        ``arrays``) knows whether its pixels are binary or grey only once it has looked at the file.
        """
        return cls.default_likelihood

    #: Config values that suit this data set, as nested sections like a preset's (a sequence set's
    #: ``{"model": {"loss_step_weights": "all"}}``). A shipped preset was tuned for its own data set,
    #: so when the command line (an option or ``--set``) switches to this one, these replace the
    #: preset's values; options and ``--set`` still win, and a preset that names this data set, a
    #: preset file or a run folder's config keep their own (``config.loading.build_config``).
    run_defaults: ClassVar[dict[str, dict[str, object]]] = {}

    @classmethod
    def run_defaults_for(cls, config: PluginConfig) -> dict[str, dict[str, object]]:
        """The run defaults for these validated options: ``run_defaults`` unless a data set
        overrides this, as one read from a file does (sequence or static is known from the file)."""
        return cls.run_defaults

    def __init__(self, config: PluginConfig, sizes: SplitSizes, frames: int, seed: int) -> None:
        """``frames`` is how many frames the run needs (steps + 1); static sets may store 1."""
        self.config = config
        self.sizes = sizes
        self.frames = frames
        self.seed = seed

    @property
    @abc.abstractmethod
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, C)."""

    @property
    @abc.abstractmethod
    def binary(self) -> bool:
        """True when pixels are 0 or 1 (Bernoulli data), False for grey-scale."""

    @abc.abstractmethod
    def split(self, name: SplitName) -> Split:
        """The named split; built once, then reused (``@cached_split`` does both)."""

    def source(self) -> dict[str, object]:
        """Where the data came from, recorded as ``data_source`` in ``summary.json``.

        An optional ``description`` entry is one line that a run prints when it starts.
        """
        return {"kind": "generated", "dataset": self.name, "seed": self.seed}
