"""Building a run's config: presets (TOML), command-line options and ``--set`` overrides, merged
in that order of precedence and validated once, at the edge."""

from __future__ import annotations

import copy
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from grouping.config.schema import (
    AUTO,
    DEFAULT_PRESET,
    NAMED_SECTIONS,
    PLUGIN_SECTIONS,
    SECTION_MODELS,
    RunConfig,
    validate,
)
from grouping.errors import ConfigError, GroupingError, PluginError
from grouping.plugin_api.registry import get_registry

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def preset_names() -> list[str]:
    folder = resources.files("grouping.config") / "presets"
    return sorted(p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml"))


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML file as a dictionary, or a one-line error."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"preset file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read preset {path}: {exc}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"preset {path} is not valid TOML: {exc}") from None


def is_preset_file(preset: str) -> bool:
    """Whether ``preset`` names a TOML file (a user's preset, a run's config) not a shipped one."""
    return preset.endswith(".toml") or Path(preset).is_file()


def load_preset(preset: str) -> dict[str, Any]:
    """A preset by name (shipped in ``grouping/presets``) or by path to a TOML file."""
    path = Path(preset)
    if is_preset_file(preset):
        data = extended(_built_on(read_toml(path)))
        data.setdefault("preset", path.stem if path.name != "config.toml" else str(path.parent))
        return data
    if preset not in preset_names():
        raise ConfigError(
            f"unknown preset {preset!r}; valid: {', '.join(preset_names())} or a path to a .toml file"
        )
    resource = resources.files("grouping.config") / "presets" / f"{preset}.toml"
    data = extended(tomllib.loads(resource.read_text(encoding="utf-8")))
    data["preset"] = preset
    return data


def extended(data: dict[str, Any]) -> dict[str, Any]:
    """A preset that says ``extends = "other"`` is that preset with its own values over it; a
    plugin section that names another plugin replaces the base's section (and its options)."""
    base_name = data.pop("extends", None)
    if base_name is None:
        return data
    base = load_preset(str(base_name))
    base.pop("preset", None)  # the preset is the one that extends
    for section, values in data.items():
        old = base.get(section)
        if (
            isinstance(values, dict)
            and isinstance(old, dict)
            and values.get("name", old.get("name")) != old.get("name")
        ):
            base[section] = {}
    return merge(base, data)


def _built_on(data: dict[str, Any]) -> dict[str, Any]:
    """A preset file that names a shipped preset (``preset = "quickstart"``) and leaves a plugin
    unnamed extends it. A complete config (a run's ``config.toml``) is taken as it is."""
    base = data.get("preset")
    named = all(isinstance(data.get(k), dict) and "name" in data[k] for k in NAMED_SECTIONS)
    if named or not isinstance(base, str) or base not in preset_names():
        return data
    return {**{k: v for k, v in data.items() if k != "preset"}, "extends": base}


def parse_value(text: str) -> Any:
    """A ``--set`` value: a TOML literal when it parses as one (5, 0.1, true, [1, 2], "x"),
    ``null`` for "unset" (TOML has none), otherwise the plain string (so
    ``--set dataset.path=/data/x.h5`` needs no quotes, and ``--set noise.name=none`` names the
    ``none`` plugin)."""
    if text == "null":
        return None
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_assignment(item: str) -> tuple[list[str], Any]:
    """``a.b=c`` -> (["a", "b"], parsed c)."""
    key, sep, value = item.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(p.strip() for p in parts):
        raise ConfigError(f"--set expects dotted.key=value, got {item!r}")
    if "\n" in value or "\r" in value:  # TOML would read the first line and drop the rest
        raise ConfigError(
            f"--set {key.strip()}: the value holds a line break; give one value per --set"
        )
    return [p.strip() for p in parts], parse_value(value.strip())


def assignments_to_dict(items: list[str]) -> dict[str, Any]:
    """Turn ``--set`` items into one nested dictionary."""
    out: dict[str, Any] = {}
    for item in items:
        path, value = parse_assignment(item)
        node = out
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {item!r} conflicts with an earlier --set of {part!r}")
            node = child
        node[path[-1]] = value
    return out


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``override`` into a copy of ``base``. A plugin section whose name changes keeps
    only the core fields of the base (the old plugin's options do not apply to the new one)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        old = out.get(key)
        if isinstance(value, dict) and isinstance(old, dict):
            if key in PLUGIN_SECTIONS and "name" in value and value["name"] != old.get("name"):
                core = set(SECTION_MODELS[key].model_fields)
                old = {k: v for k, v in old.items() if k in core}
            out[key] = merge(old, value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def implied_preset(*layers: dict[str, Any]) -> str:
    """The preset of a run that names none: ``DEFAULT_PRESET``, unless the overrides name a
    likelihood but no data set and that likelihood class sets ``default_preset``.

    ``layers`` are the override dictionaries, lowest precedence first (options, then ``--set``).
    So ``--likelihood gaussian`` alone trains on data that suits Gaussian pixels, while
    ``--likelihood gaussian --dataset shapes`` keeps the default preset.
    """
    likelihood = None
    for layer in layers:
        if layer.get("dataset", {}).get("name"):
            return DEFAULT_PRESET
        likelihood = layer.get("likelihood", {}).get("name", likelihood)
    if not likelihood or likelihood == AUTO:
        return DEFAULT_PRESET
    try:
        cls = get_registry().get("likelihood", str(likelihood)).cls
    except PluginError:  # reported, with the valid names, when the config is resolved
        return DEFAULT_PRESET
    preset: str | None = getattr(cls, "default_preset", None)
    return preset or DEFAULT_PRESET


def build_config(
    preset: str | None = None,
    options: dict[str, Any] | None = None,
    assignments: list[str] | None = None,
) -> RunConfig:
    """Defaults < preset < the data set's run defaults < command-line options < ``--set``
    assignments, validated once.

    Without a preset, :func:`implied_preset` picks one from the overrides. The data set's run
    defaults apply only where the options or ``--set`` switch a shipped preset to another data set
    (:func:`dataset_defaults`).
    """
    options = options or {}
    sets = assignments_to_dict(assignments or [])
    preset = preset or implied_preset(options, sets)
    data: dict[str, Any] = load_preset(preset)
    data = merge(data, _noise_follows_likelihood(data, options, sets))
    if not is_preset_file(preset):
        data = merge(data, dataset_defaults(data, options, sets))
    data = merge(data, options)
    data = merge(data, sets)
    return validate(data)


def _noise_follows_likelihood(
    base: dict[str, Any], options: dict[str, Any], sets: dict[str, Any]
) -> dict[str, Any]:
    """A likelihood chosen on the command line brings its own default noise (``noise = auto``)
    unless the noise is chosen too: the preset's noise was picked for the preset's likelihood."""
    sections = [d.get("likelihood") for d in (options, sets)]
    names = [s.get("name") for s in sections if isinstance(s, dict) and "name" in s]
    chosen = names[-1] if names else None
    preset = base.get("likelihood")
    current = preset.get("name") if isinstance(preset, dict) else None
    if chosen and chosen != current and "noise" not in options and "noise" not in sets:
        return {"noise": {"name": AUTO}}
    return {}


def dataset_defaults(
    base: dict[str, Any], options: dict[str, Any], sets: dict[str, Any]
) -> dict[str, Any]:
    """The run defaults (``Dataset.run_defaults_for``) of the data set the overrides switch to.

    The rule: a shipped preset's values were chosen for its own data set (the quickstart's
    ``model.loss_step_weights = "last"`` for static shapes), so when the options or ``--set`` name
    another data set, that data set's defaults replace them; the options and ``--set`` still
    override the defaults. Nothing changes when the data set stays the preset's: a preset that
    names the data set keeps its own values. The caller skips preset files (a user's TOML, a run
    folder's ``config.toml``): they hold the user's own choices, and a trained run keeps its config.
    """
    preset_section = base.get("dataset")
    preset_name = preset_section.get("name") if isinstance(preset_section, dict) else None
    section = merge(merge({"dataset": preset_section or {}}, options), sets)["dataset"]
    name = section.get("name") if isinstance(section, dict) else None
    if not isinstance(name, str) or name == preset_name:
        return {}
    try:
        cls = get_registry().get("dataset", name).cls
        model = cls.Config
        core = set(SECTION_MODELS["dataset"].model_fields)
        checked = model.model_validate({k: v for k, v in section.items() if k not in core})
        defaults = cls.run_defaults_for(checked)
    except (ValidationError, GroupingError):  # reported when the config is resolved
        return {}
    except Exception as exc:  # a bug in the plugin: name it
        raise PluginError(
            f"dataset {name!r} failed in run_defaults_for: {type(exc).__name__}: {exc}"
        ) from exc
    return _checked_defaults(name, defaults)


def _checked_defaults(name: str, defaults: object) -> dict[str, Any]:
    """A data set's run defaults if they are sections of known keys, else a one-line error that
    names the data set (a typo there would otherwise read as the user's)."""
    sections = {
        key: known
        for key, info in RunConfig.model_fields.items()
        if isinstance(known := getattr(info.annotation, "model_fields", None), dict)
    }
    if not isinstance(defaults, dict):
        raise PluginError(f"dataset {name!r}: run_defaults must be a dict of config sections")
    for key, values in defaults.items():
        known = sections.get(key)
        if known is None or not isinstance(values, dict):
            raise PluginError(
                f"dataset {name!r}: run_defaults[{key!r}] is not a config section of options "
                f"(sections: {', '.join(sections)})"
            )
        unknown = [k for k in values if k not in known and key not in PLUGIN_SECTIONS]
        if unknown:
            raise PluginError(
                f"dataset {name!r}: run_defaults names unknown key {key}.{unknown[0]} "
                f"(valid: {', '.join(sorted(known))})"
            )
    return copy.deepcopy(defaults)


def load_config_file(path: Path) -> RunConfig:
    """A saved ``config.toml``, validated."""
    return validate(read_toml(path))
