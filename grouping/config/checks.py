"""Config checks pydantic does not make: numbers are numbers (pydantic would take ``true`` for an
int field as 1, so ``--set model.components=true`` trained with K = 1 and said nothing), and a
config that names no plugins says how a preset names them."""

from __future__ import annotations

from types import UnionType
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationInfo


def numbers_only(annotation: Any) -> bool:
    """Whether a field of this type takes numbers and not true/false (int, float, int | None...)."""
    if annotation in (int, float):
        return True
    args = [a for a in get_args(annotation) if a is not type(None)]
    return (
        get_origin(annotation) in (Union, UnionType)
        and bool(args)
        and all(a in (int, float) for a in args)
    )


def no_bool_numbers(model: type[BaseModel], value: Any, info: ValidationInfo) -> Any:
    """Refuse true/false for a number: pydantic would take ``--set model.components=true`` as 1."""
    field = model.model_fields.get(info.field_name or "")
    if isinstance(value, bool) and field is not None and numbers_only(field.annotation):
        raise ValueError(f"Input should be a number, not {value}")
    return value


#: Said when a config names no data set, network or updater (a preset file written from scratch).
NAMES_HINT = (
    'a preset names its plugins ([dataset] name = "shapes", and likewise [network] and '
    '[updater]) or builds on a shipped preset with preset = "quickstart" at its top'
)
#: The sections every config must name a plugin for (the others have defaults).
NAMED_SECTIONS = ("dataset", "network", "updater")
