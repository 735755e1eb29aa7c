"""The run configuration as pydantic models: one section per plugin kind (a plugin ``name`` plus
that plugin's options), the EM model, training and evaluation. Unknown keys are errors."""

from __future__ import annotations

import hashlib
import json
import math
import sys
from typing import Any, Literal

import tomli_w
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from grouping.config.checks import NAMED_SECTIONS, NAMES_HINT, no_bool_numbers
from grouping.errors import ConfigError
from grouping.plugins.interfaces import PluginKind
from grouping.plugins.kinds import KINDS

if sys.version_info >= (3, 11):
    pass
else:  # pragma: no cover
    pass


AUTO = "auto"


DEFAULT_PRESET = "quickstart"


#: The plugin sections of a config, one per plugin kind (``grouping.plugins.kinds``).
PLUGIN_SECTIONS: tuple[PluginKind, ...] = tuple(KINDS)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bools(cls, value: Any, info: ValidationInfo) -> Any:
        return no_bool_numbers(cls, value, info)


class PluginSection(BaseModel):
    """A plugin's name plus its own options, which the plugin's ``Config`` validates."""

    model_config = ConfigDict(extra="allow")
    name: str = Field(min_length=1)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bools(cls, value: Any, info: ValidationInfo) -> Any:
        return no_bool_numbers(cls, value, info)

    def options(self) -> dict[str, Any]:
        """The plugin's own options: everything in the section except the core fields."""
        core = set(type(self).model_fields)
        return {k: v for k, v in self.model_dump().items() if k not in core}


class DatasetSection(PluginSection):
    name: str = Field(min_length=1)
    train_size: int = Field(default=50_000, ge=1)
    valid_size: int = Field(default=10_000, ge=1)
    test_size: int = Field(default=10_000, ge=1)


class LikelihoodSection(PluginSection):
    #: ``auto`` takes the data set's ``default_likelihood``.
    name: str = Field(default=AUTO, min_length=1)


class NetworkSection(PluginSection):
    name: str = Field(min_length=1)


class UpdaterSection(PluginSection):
    name: str = Field(min_length=1)


class NoiseSection(PluginSection):
    #: ``auto`` takes the likelihood's ``default_noise`` (bitflip for binary data, spec 4.1).
    name: str = Field(default=AUTO, min_length=1)


class ModelConfig(_Strict):
    """The unrolled EM procedure (spec 2, 3.2)."""

    components: int = Field(default=3, ge=1, le=64, description="K, mixture components")
    steps: int = Field(default=15, ge=1, le=1000, description="T, unrolled EM steps")
    gradient_gamma: bool = Field(
        default=True, description="let gradients flow through gamma (False = stop-gradient)"
    )
    loss_step_weights: Literal["last", "all"] | list[float] = Field(
        default="last", description="'last', 'all' or one weight per step"
    )
    loss_inter_weight: float = Field(default=1.0, ge=0.0, allow_inf_nan=False)
    pred_init: float = Field(default=0.0, allow_inf_nan=False, description="psi before step 1")
    gamma_init: Literal["pixel", "smooth"] = Field(
        default="pixel",
        description="gamma^(0): 'pixel' (the paper's |N(0,1)| per pixel) or 'smooth' regions",
    )
    gamma_init_grid: int = Field(
        default=3, ge=1, le=64, description="the coarse grid of a 'smooth' gamma^(0)"
    )

    @model_validator(mode="after")
    def _weights_match_steps(self) -> ModelConfig:
        w = self.loss_step_weights
        if isinstance(w, list):
            if len(w) != self.steps:
                raise ValueError(
                    f"loss_step_weights has {len(w)} entries but steps is {self.steps}; "
                    "give one weight per step, or 'last' or 'all'"
                )
            if not all(math.isfinite(v) and v >= 0 for v in w):
                raise ValueError("loss_step_weights must be finite and >= 0")
        return self

    def step_weights(self) -> list[float]:
        """One weight per EM step (spec 3.2)."""
        w = self.loss_step_weights
        if w == "last":
            return [0.0] * (self.steps - 1) + [1.0]
        if w == "all":
            return [1.0] * self.steps
        return list(w)


class TrainConfig(_Strict):
    """Optimisation and the training loop (spec 7)."""

    lr: float = Field(default=1e-3, gt=0.0, le=10.0, allow_inf_nan=False)
    lr_schedule: Literal["constant", "cosine", "linear"] = Field(
        default="constant",
        description="the rate over the budget: constant, or decayed from lr to zero (cosine or "
        "linear) over the epochs, or over max_minutes where those run out first "
        "(grouping.training.schedule)",
    )
    batch_size: int = Field(default=64, ge=1)
    epochs: int = Field(default=500, ge=1, description="maximum number of epochs")
    patience: int = Field(default=10, ge=1, description="epochs without a better valid loss")
    max_minutes: float | None = Field(
        default=None, gt=0.0, allow_inf_nan=False, description="stop after this much training"
    )
    valid_samples: int | None = Field(
        default=1000, ge=1, description="validate on the first N validation samples (None: all)"
    )
    device: str = Field(default="auto", description="auto, cpu, cuda or cuda:N")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        default="auto",
        description="matmul precision: bf16 products with fp32 elementwise work, or fp32 "
        "(auto: bf16 where the device multiplies bf16 natively)",
    )
    compile: bool = Field(default=False, description="torch.compile the training forward")
    cpu_matmul: Literal["auto", "blas", "onednn"] = Field(
        default="auto",
        description="fp32 linear layers on the CPU through the BLAS or oneDNN (auto: oneDNN on "
        "a non-Intel CPU with AVX-512, where MKL runs its AVX2 kernels at half the rate)",
    )
    checkpoint_minutes: float | None = Field(
        default=10.0,
        gt=0.0,
        allow_inf_nan=False,
        description="also write last.pt every N minutes of training, mid-epoch (None: only at "
        "the end of each epoch); a kill loses at most that much work",
    )
    test_checkpoint: Literal["best", "last"] = Field(
        default="best",
        description="the model the run tests at its end: best by validation loss (the paper's "
        "rule) or the last one (where the validation loss does not track grouping quality)",
    )
    resume: Literal["never", "auto"] = Field(
        default="never",
        description="auto: a run whose --out holds this run unfinished, with a last.pt, resumes "
        "it (set by --nproc, so that torchrun's restarts continue by themselves)",
    )
    checkpoint_steps: bool = Field(
        default=False, description="recompute each EM step in backward (memory flat in T)"
    )
    prefetch: int | None = Field(
        default=None,
        ge=0,
        description="batches gathered ahead on a thread (None: 2 on CUDA, 0 on the CPU, where "
        "the thread competes with the compute threads: it halved the quickstart's images/s)",
    )
    threads: int | None = Field(
        default=None,
        ge=1,
        description="CPU threads (None: one or all cores, whichever trains the first batches "
        "faster; under torchrun the cores shared among the local ranks)",
    )
    on_nonfinite: Literal["stop", "skip"] = Field(
        default="stop",
        description="a NaN/inf loss or gradient stops the run, or skips that batch (counted)",
    )
    init_from: str | None = Field(
        default=None,
        min_length=1,
        description="run folder whose best weights (and optimizer state) the run starts from",
    )

    @field_validator("device")
    @classmethod
    def _device_form(cls, v: str) -> str:
        ok = v in ("auto", "cpu", "cuda", "mps") or (v.startswith("cuda:") and v[5:].isdigit())
        if not ok:
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, not {v!r}")
        return v


class EvalConfig(_Strict):
    """Scoring on the test split (spec 8.1)."""

    batch_size: int = Field(default=100, ge=1)
    samples: int | None = Field(default=None, ge=1, description="score the first N (None: all)")


class Stage(_Strict):
    """One stage of a stage-wise run: the run's config with these overrides, started from the
    previous stage's best checkpoint (``grouping.stages``)."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9._-]+$", description="its run folder")
    overrides: dict[str, Any] = Field(
        default_factory=dict, description="nested sections, as in a preset: {dataset = {pool = 20}}"
    )

    @field_validator("name")
    @classmethod
    def _a_folder_of_its_own(cls, v: str) -> str:
        if set(v) == {"."}:  # "." is the run's own folder, ".." the one above it
            raise ValueError(f"a stage name is its own folder, so not {v!r}; use letters or digits")
        return v


class RunConfig(_Strict):
    """Everything that defines a run. Saved as ``config.toml`` in the run folder."""

    preset: str = DEFAULT_PRESET
    seed: int = Field(default=0, ge=0, le=2**63 - 1)
    # The core names no plugin: the data set, network and updater come from a preset (every
    # config starts from one, ``quickstart`` by default) or from the user.
    dataset: DatasetSection
    likelihood: LikelihoodSection = LikelihoodSection()
    network: NetworkSection
    updater: UpdaterSection
    noise: NoiseSection = NoiseSection()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    #: Empty for a plain run; otherwise the run is these stages in order (``grouping.stages``).
    stages: list[Stage] = Field(default_factory=list)

    @model_validator(mode="after")
    def _stage_names_unique(self) -> RunConfig:
        names = [stage.name for stage in self.stages]
        if len(set(names)) != len(names):
            raise ValueError(f"stage names must be unique, got {names}")
        return self

    @model_validator(mode="after")
    def _batch_fits(self) -> RunConfig:
        if self.train.batch_size > self.dataset.train_size:
            raise ValueError(
                f"train.batch_size ({self.train.batch_size}) is larger than dataset.train_size "
                f"({self.dataset.train_size}); use a batch of at most the split size"
            )
        return self

    def section(self, kind: PluginKind) -> PluginSection:
        section: PluginSection = getattr(self, kind)
        return section

    def to_toml(self) -> str:
        return tomli_w.dumps(self.model_dump(mode="json", exclude_none=True))

    def digest(self) -> str:
        """A short hash of the config, stored in checkpoints to tell runs apart."""
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


#: The section model of each plugin kind; a kind without options of the core's gets the plain
#: ``PluginSection`` (and a ``RunConfig`` field of that name).
_SPECIAL_SECTIONS: dict[str, type[PluginSection]] = {
    "dataset": DatasetSection,
    "likelihood": LikelihoodSection,
    "network": NetworkSection,
    "updater": UpdaterSection,
    "noise": NoiseSection,
}
SECTION_MODELS: dict[str, type[PluginSection]] = {
    kind: _SPECIAL_SECTIONS.get(kind, PluginSection) for kind in KINDS
}


def format_validation_error(exc: ValidationError, prefix: str = "") -> str:
    """One line naming each bad key, its rule and the value given."""
    parts = []
    for err in exc.errors():
        loc = ".".join(_key_text(p) for p in err["loc"] if p != "__root__")
        key = f"{prefix}{loc}" if loc else prefix.rstrip(".")
        msg = " ".join(err["msg"].removeprefix("Value error, ").split())
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        given = err.get("input")
        shown = (
            ""
            if isinstance(given, dict) or given is None or repr(given) in msg
            else f" (got {_short(given)})"
        )
        parts.append(f"{key}: {msg}{shown}" if key else f"{msg}{shown}")
    return "invalid config: " + "; ".join(parts)


#: How much of a rejected value an error message shows.
SHOWN_VALUE_CHARS = 60


def _key_text(part: object) -> str:
    """A key as typed, or quoted when it holds spaces, dots or control characters."""
    text = str(part)
    plain = text and text.isprintable() and not any(c.isspace() or c == "." for c in text)
    return text if plain else repr(text)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= SHOWN_VALUE_CHARS else text[: SHOWN_VALUE_CHARS - 3] + "..."


def validate(data: dict[str, Any]) -> RunConfig:
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        missing = [
            e for e in exc.errors() if e["type"] == "missing" and e["loc"][0] in NAMED_SECTIONS
        ]
        hint = f"; {NAMES_HINT}" if missing else ""
        raise ConfigError(format_validation_error(exc) + hint) from None
