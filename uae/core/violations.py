"""A schema violation in words: the dotted key, what the schema says it must be, and what it got::

    loss.sharpness must be a number > 0, got 'abc'

Kept apart from :mod:`uae.core.schema` (which says what the config is) because turning pydantic's error
locations back into config keys is a job of its own: a union's members add their names to the location,
and a field's constraints live in its metadata.
"""

from __future__ import annotations

import types
import typing
from typing import Annotated, Any, Literal, Union

import annotated_types
from pydantic import BaseModel

from uae.core.keys import bare, model_of, unknown_message


def message(error: Any, sections: dict[str, Any], root: type[BaseModel]) -> str:
    """``key must be <what the schema says>, got <value>``, or the validator's own sentence."""
    key, annotation, value = _locate(error["loc"], sections, root)
    if error["type"] == "missing":
        return f"{key} is missing: it must be {_describe(annotation)}."
    if error["type"] == "extra_forbidden":
        return unknown_message(key, root)
    if error["type"] == "value_error":
        return str(error["msg"]).removeprefix("Value error, ")
    return f"{key} must be {_describe(annotation)}, got {value!r}"


def _locate(loc: tuple[Any, ...], sections: dict[str, Any], root: type[BaseModel]) -> tuple[str, Any, Any]:
    """The dotted key of an error, the annotation that governs it, and the value the config holds there.

    A union's members add their own names to ``loc`` (``constrained-int``, ``dict[str,...]``); the walk
    stops at the union, so that the message states the whole of what the key accepts, once.
    """
    annotation: Any = root
    node: Any = sections
    parts: list[str] = []
    for part in loc:
        model = model_of(annotation)
        stripped = bare(annotation)
        if model is not None and isinstance(part, str):
            field = model.model_fields.get(part) or next((f for f in model.model_fields.values() if f.alias == part), None)
            annotation = Any if field is None else _with_metadata(field)
        elif typing.get_origin(stripped) in (list, dict):
            args = typing.get_args(stripped)
            annotation = args[-1] if args else Any
        else:
            break  # a union member's name, or deeper than the schema goes
        if isinstance(part, int):
            parts[-1] += f"[{part}]"
        else:
            parts.append(str(part))
        node = node[part] if isinstance(node, (dict, list)) and _has(node, part) else None
    return ".".join(parts), annotation, node


def _has(node: dict[str, Any] | list[Any], part: Any) -> bool:
    return part in node if isinstance(node, dict) else isinstance(part, int) and 0 <= part < len(node)


def _with_metadata(field: Any) -> Any:
    annotation = field.annotation
    extras = list(field.metadata)
    if field.description:
        extras.append(_Said(field.description))
    return Annotated[(annotation, *extras)] if extras else annotation


class _Said:
    """A field's own description of what it accepts, used verbatim in messages."""

    def __init__(self, text: str) -> None:
        self.text = text


def _describe(annotation: Any) -> str:
    """What a value of ``annotation`` must be, in words: 'a number > 0', 'an integer >= 1 or null'."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        base, *metadata = typing.get_args(annotation)
        said = [m.text for m in metadata if isinstance(m, _Said)]
        if said:
            return said[0]
        bounds = [b for m in metadata for b in (getattr(m, "metadata", None) or [m])]
        return _describe(base) + _bounds(bounds)
    if origin in (Union, types.UnionType):
        args = typing.get_args(annotation)
        words = [_describe(a) for a in args if a is not type(None)]
        text = " or ".join(words)
        return text + " or null" if type(None) in args else text
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in typing.get_args(annotation))
    if origin is list:
        return "a list"
    if origin is dict:
        return "a mapping"
    if annotation is bool:
        return "true or false"
    if annotation is int:
        return "an integer"
    if annotation is float:
        return "a number"
    if annotation is str:
        return "a string"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "a mapping of settings"
    return "a valid value"


def _bounds(metadata: list[Any]) -> str:
    low = next((m for m in metadata if isinstance(m, (annotated_types.Gt, annotated_types.Ge))), None)
    high = next((m for m in metadata if isinstance(m, (annotated_types.Lt, annotated_types.Le))), None)
    if low is not None and high is not None:
        left = "[" if isinstance(low, annotated_types.Ge) else "("
        right = "]" if isinstance(high, annotated_types.Le) else ")"
        return f" in {left}{_num(low)}, {_num(high)}{right}"
    if low is not None:
        return (" > " if isinstance(low, annotated_types.Gt) else " >= ") + str(_num(low))
    if high is not None:
        return (" < " if isinstance(high, annotated_types.Lt) else " <= ") + str(_num(high))
    return ""


def _num(bound: Any) -> Any:
    for name in ("gt", "ge", "lt", "le"):
        if hasattr(bound, name):
            return getattr(bound, name)
    return bound
