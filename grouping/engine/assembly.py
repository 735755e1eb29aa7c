"""Turns a validated :class:`RunConfig` into plugin objects, through the registry only.

:func:`resolve` fills the ``auto`` names and validates each plugin's options against its ``Config``;
:func:`assemble` builds the data set, likelihood, noise, network, updater and the EM engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

from pydantic import ValidationError

from grouping.config.schema import (
    AUTO,
    PLUGIN_SECTIONS,
    RunConfig,
    format_validation_error,
    validate,
)
from grouping.engine.contracts import check_model, check_split
from grouping.engine.em import NeuralEM
from grouping.errors import ConfigError, GroupingError, PluginError, one_line
from grouping.plugin_api.guard import blame, label
from grouping.plugin_api.interfaces import (
    Dataset,
    Likelihood,
    Network,
    NetworkSpec,
    Noise,
    PluginConfig,
    PluginKind,
    Split,
    SplitName,
    SplitSizes,
    Updater,
)
from grouping.plugin_api.registry import Registry, get_registry


def resolve(config: RunConfig, registry: Registry | None = None) -> RunConfig:
    """The same config with concrete plugin names and every plugin option validated and filled in."""
    registry = registry or get_registry()
    data = config.model_dump(mode="python")
    dataset_cls = registry.get("dataset", config.dataset.name).cls
    if data["likelihood"]["name"] == AUTO:
        options = config.dataset.options()
        checked = plugin_options("dataset", config.dataset.name, dataset_cls, options)
        chosen = dataset_cls.likelihood_for(checked)
        if not chosen:
            valid = ", ".join(registry.names("likelihood"))
            raise ConfigError(
                f"dataset {config.dataset.name!r} names no default likelihood; "
                f"choose one with --likelihood (valid: {valid})"
            )
        data["likelihood"]["name"] = chosen
    likelihood_cls = registry.get("likelihood", data["likelihood"]["name"]).cls
    if data["noise"]["name"] == AUTO:
        data["noise"]["name"] = likelihood_cls.default_noise
    for kind in PLUGIN_SECTIONS:
        section = data[kind]
        cls = registry.get(kind, section["name"]).cls
        core = set(type(config.section(kind)).model_fields)
        options = {k: v for k, v in section.items() if k not in core}
        checked = plugin_options(kind, section["name"], cls, options)
        data[kind] = {k: section[k] for k in core} | checked.model_dump(mode="python")
    return validate(data)


def is_resolved(config: RunConfig, registry: Registry | None = None) -> bool:
    """Whether :func:`resolve` made this config: no plugin name is left ``auto`` and every plugin
    section holds all of its plugin's options."""
    registry = registry or get_registry()
    for kind in PLUGIN_SECTIONS:
        section = config.section(kind)
        if section.name == AUTO:
            return False
        model = getattr(registry.get(kind, section.name).cls, "Config", PluginConfig)
        if not set(model.model_fields) <= set(section.options()):
            return False
    return True


def plugin_options(kind: PluginKind, name: str, cls: Any, options: dict[str, Any]) -> PluginConfig:
    """A plugin's options validated by its own ``Config``, or a one-line error naming the keys."""
    model = cast(type[PluginConfig], getattr(cls, "Config", PluginConfig))
    try:
        return model.model_validate(options)
    except ValidationError as exc:
        message = format_validation_error(exc, prefix=f"{kind}.")
        valid = ", ".join(sorted(model.model_fields)) or "none"
        raise ConfigError(f"{message} [{kind} {name!r} options: {valid}]") from None


@dataclass
class Assembly:
    """The plugin objects of one run."""

    config: RunConfig
    dataset: Dataset
    likelihood: Likelihood
    noise: Noise
    model: NeuralEM
    _splits: dict[SplitName, Split] = field(default_factory=dict, repr=False)

    def split(self, name: SplitName) -> Split:
        """The data set's split; its first batch is checked when it is first asked for
        (``grouping.engine.contracts``), and no batch after that."""
        if name not in self._splits:
            self._splits[name] = check_split(self.dataset, name, self.likelihood)
        return self._splits[name]


def _make(kind: PluginKind, config: RunConfig, registry: Registry, *args: Any) -> Any:
    section = config.section(kind)
    info = registry.get(kind, section.name)
    options = plugin_options(kind, section.name, info.cls, section.options())
    try:
        return info.cls(options, *args)
    except (ValueError, TypeError) as exc:
        raise PluginError(
            f"{kind} {section.name!r} ({info.provider}) refused its config: "
            f"{one_line(str(exc), 300)}"
        ) from None
    except GroupingError:
        raise
    except Exception as exc:  # a bug in the plugin: name it, keep the cause chained
        raise PluginError(
            f"{kind} {section.name!r} ({info.provider}) failed in __init__: "
            f"{type(exc).__name__}: {one_line(str(exc), 300)}"
        ) from exc


def build_dataset(
    config: RunConfig, registry: Registry | None = None, frames: int | None = None
) -> Dataset:
    registry = registry or get_registry()
    d = config.dataset
    sizes = SplitSizes(d.train_size, d.valid_size, d.test_size)
    frames = config.model.steps + 1 if frames is None else frames
    dataset: Dataset = _make("dataset", config, registry, sizes, frames, config.seed)
    with blame(dataset, "image_shape"):
        shape = tuple(dataset.image_shape)
    if len(shape) != 3 or not all(isinstance(n, int) and n > 0 for n in shape):
        raise PluginError(f"{label(dataset)} has image_shape {shape}; expected (H, W, C) > 0")
    return dataset


def build_model(
    config: RunConfig, image_shape: tuple[int, int, int], registry: Registry | None = None
) -> NeuralEM:
    registry = registry or get_registry()
    likelihood: Likelihood = _make("likelihood", config, registry)
    updater_cls = registry.get("updater", config.updater.name).cls
    spec = NetworkSpec(image_shape=image_shape, encoder=bool(updater_cls.needs_encoder))
    network: Network = _make("network", config, registry, spec)
    updater: Updater = _make("updater", config, registry, network, likelihood)
    m = config.model
    return NeuralEM(
        updater,
        likelihood,
        components=m.components,
        steps=m.steps,
        step_weights=m.step_weights(),
        gradient_gamma=m.gradient_gamma,
        inter_weight=m.loss_inter_weight,
        pred_init=m.pred_init,
        gamma_grid=m.gamma_init_grid if m.gamma_init == "smooth" else None,
        checkpoint_steps=config.train.checkpoint_steps,
    )


def build_noise(config: RunConfig, registry: Registry | None = None) -> Noise:
    noise: Noise = _make("noise", config, registry or get_registry())
    return noise


def assemble(config: RunConfig, registry: Registry | None = None) -> Assembly:
    """Every plugin object a run needs, from a resolved config, with the model plugins' contracts
    checked once on a tiny batch (``grouping.engine.contracts``)."""
    registry = registry or get_registry()
    dataset = build_dataset(config, registry)
    model = build_model(config, dataset.image_shape, registry)
    noise = build_noise(config, registry)
    check_model(model, noise, dataset.image_shape)
    return Assembly(config, dataset, model.likelihood, noise, model)
