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
from grouping.config.train import EvalConfig, TrainConfig
from grouping.config.train import Strict as _Strict
from grouping.errors import ConfigError
from grouping.plugin_api.interfaces import PluginKind
from grouping.plugin_api.kinds import KINDS

if sys.version_info >= (3, 11):
    pass
else:  # pragma: no cover
    pass


AUTO = "auto"


DEFAULT_PRESET = "quickstart"


#: The plugin sections of a config, one per plugin kind (``grouping.plugin_api.kinds``).
PLUGIN_SECTIONS: tuple[PluginKind, ...] = tuple(KINDS)


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
