"""Attribute filters, as a vector store search's ``filters`` describes them.

A comparison filter is ``{"type": "eq", "key": "year", "value": 2024}`` with ``eq``, ``ne``,
``gt``, ``gte``, ``lt``, ``lte``, ``in`` and ``nin``; a compound filter is ``{"type": "and" | "or",
"filters": [...]}`` and nests. Values compare only with values of their own kind: a number with a
number, a string with a string, a boolean with a boolean (so ``1`` never equals ``true``), and
``gt``/``lt`` order numbers numerically and strings by code point. A file without the key matches
only ``ne`` and ``nin``, which ask what it is not.
"""

from __future__ import annotations

import operator
from typing import Any, Callable, Mapping

Attributes = Mapping[str, Any]
Predicate = Callable[[Attributes], bool]

_ORDER = {"gt": operator.gt, "gte": operator.ge, "lt": operator.lt, "lte": operator.le}
_COMPARISONS = ("eq", "ne", *_ORDER, "in", "nin")
MAX_DEPTH = 16


class FilterError(ValueError):
    """A filter that is not well formed; ``param`` names the offending part."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"Invalid value for '{param}': {message}")
        self.param = param


def _kind(value: Any) -> str | None:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return None


def _same_kind(a: Any, b: Any) -> bool:
    return _kind(a) is not None and _kind(a) == _kind(b)


def compile_filter(spec: Any, param: str = "filters", depth: int = 0) -> Predicate:
    """A predicate over a file's attributes, or :class:`FilterError` naming what is wrong."""
    if not isinstance(spec, Mapping):
        raise FilterError(param, "a filter is an object with 'type' and either 'key' and 'value' or 'filters'.")
    if depth > MAX_DEPTH:
        raise FilterError(param, f"filters nest at most {MAX_DEPTH} deep.")
    kind = spec.get("type")
    if kind in ("and", "or"):
        return _compound(spec, kind, param, depth)
    if kind in _COMPARISONS:
        return _comparison(spec, kind, param)
    raise FilterError(f"{param}.type", f"expected one of {', '.join(_COMPARISONS)}, and, or (got {kind!r}).")


def _compound(spec: Mapping[str, Any], kind: str, param: str, depth: int) -> Predicate:
    extra = set(spec) - {"type", "filters"}
    if extra:
        raise FilterError(f"{param}.{sorted(extra)[0]}", f"a compound '{kind}' filter has only 'type' and 'filters'.")
    items = spec.get("filters")
    if not isinstance(items, list) or not items:
        raise FilterError(f"{param}.filters", "expected a non-empty list of filters.")
    parts = [compile_filter(item, f"{param}.filters[{i}]", depth + 1) for i, item in enumerate(items)]
    combine = all if kind == "and" else any
    return lambda attributes: combine(part(attributes) for part in parts)


def _comparison(spec: Mapping[str, Any], kind: str, param: str) -> Predicate:
    extra = set(spec) - {"type", "key", "value"}
    if extra:
        raise FilterError(f"{param}.{sorted(extra)[0]}", "a comparison filter has only 'type', 'key' and 'value'.")
    key, value = spec.get("key"), spec.get("value")
    if not isinstance(key, str) or not key:
        raise FilterError(f"{param}.key", "expected the name of an attribute.")
    if kind in ("in", "nin"):
        if not isinstance(value, list) or not value or not all(_kind(v) in ("string", "number") for v in value):
            raise FilterError(f"{param}.value", f"'{kind}' takes a non-empty list of strings or numbers.")
        member = lambda a: key in a and any(_same_kind(a[key], v) and a[key] == v for v in value)  # noqa: E731
        return member if kind == "in" else (lambda a: not member(a))
    if _kind(value) is None:
        raise FilterError(f"{param}.value", f"'{kind}' compares with a string, number or boolean (got {value!r}).")
    if kind == "eq":
        return lambda a: key in a and _same_kind(a[key], value) and a[key] == value
    if kind == "ne":
        return lambda a: not (key in a and _same_kind(a[key], value) and a[key] == value)
    if isinstance(value, bool):
        raise FilterError(f"{param}.value", f"'{kind}' orders numbers or strings, not booleans.")
    compare = _ORDER[kind]
    return lambda a: key in a and _same_kind(a[key], value) and compare(a[key], value)
