"""What ``grouping list-plugins --options`` shows: every option of a plugin, read from the pydantic
fields of its config section (``dataset.train_size``, ...) and of its own ``Config``, with its type,
default, bounds and one-line description, so that options are found without a deliberate typo."""

from __future__ import annotations

import json
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined, to_jsonable_python

from grouping.config.schema import SECTION_MODELS
from grouping.plugin_api.interfaces import PluginConfig, PluginKind

#: How each pydantic / annotated-types bound is written: attribute name -> text before the value.
BOUNDS = {
    "gt": "> ",
    "ge": ">= ",
    "lt": "< ",
    "le": "<= ",
    "min_length": "length >= ",
    "max_length": "length <= ",
    "pattern": "matches ",
}


def plugin_options(kind: PluginKind, cls: type[Any]) -> list[dict[str, Any]]:
    """The options of one plugin class: first its section's core fields (``core`` true; every
    plugin of the kind has them), then its own ``Config`` fields, each keyed as ``--set`` takes it."""
    core = option_rows(SECTION_MODELS[kind], kind, skip={"name"})
    model = getattr(cls, "Config", PluginConfig)
    own = option_rows(model, kind) if isinstance(model, type) else []
    return [{**row, "core": True} for row in core] + [{**row, "core": False} for row in own]


def option_rows(
    model: type[BaseModel], section: str, skip: frozenset[str] | set[str] = frozenset()
) -> list[dict[str, Any]]:
    """One row per field of ``model``: key, type, default (JSON), required, bounds, description."""
    rows = []
    for name, info in model.model_fields.items():
        if name in skip:
            continue
        required = info.is_required()
        rows.append(
            {
                "key": f"{section}.{name}",
                "option": name,
                "type": type_text(info.annotation),
                "default": None if required else default_value(info),
                "required": required,
                "bounds": bounds_text(info),
                "description": one_line(info.description),
            }
        )
    return rows


def type_text(annotation: Any) -> str:
    """A field's type as a user reads it: ``int``, ``float | None``, ``"last" | "all"`` (a
    ``Literal`` as the values ``--set`` takes), ``tuple[int, ...]``."""
    origin, args = get_origin(annotation), get_args(annotation)
    if annotation is type(None):
        return "None"
    if origin is Annotated:
        return type_text(args[0])
    if origin is Literal:
        return " | ".join(json.dumps(a) if isinstance(a, str) else repr(a) for a in args)
    if origin in (Union, UnionType):
        return " | ".join(type_text(a) for a in args)
    if origin is not None:
        inner = ", ".join("..." if a is Ellipsis else type_text(a) for a in args)
        return f"{getattr(origin, '__name__', origin)}[{inner}]"
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def default_value(info: FieldInfo) -> Any:
    """The default as JSON (a tuple becomes a list), ``default_factory`` called."""
    value = info.default
    if value is PydanticUndefined and info.default_factory is not None:
        value = info.get_default(call_default_factory=True, validated_data={})
    return to_jsonable_python(value)


def bounds_text(info: FieldInfo) -> str:
    """The field's bounds, e.g. ``>= 1, <= 20``; empty where it has none."""
    parts = []
    for item in info.metadata:
        for attr, prefix in BOUNDS.items():
            value = getattr(item, attr, None)
            if value is not None:
                parts.append(f"{prefix}{value}")
    return ", ".join(parts)


def one_line(text: str | None) -> str:
    """A description on one line (whitespace collapsed); empty where the field has none."""
    return " ".join((text or "").split())


def shown_default(row: dict[str, Any]) -> str:
    """The default as ``--set`` takes it (TOML-like literals, ``null`` for none)."""
    if row["required"]:
        return "(required)"
    value = row["default"]
    if value is None:
        return "null"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)
