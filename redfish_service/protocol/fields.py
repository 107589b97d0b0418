"""Declarative writable properties and the DSP0266 PATCH rules that use them.

A resource kind says which properties a client may write and what they accept:

    WRITABLE = {
        "Enabled": Bool(),
        "RoleId": Str(enum=["Administrator", "Operator", "ReadOnly"]),
        "NTP": Obj({"NTPServers": Arr(Str(), max_items=4)}),
    }

:func:`apply_patch` checks a PATCH body against that declaration and the current document
and returns the merged document plus one message per refused property (unknown,
read-only, wrong type, not in list...).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from .messages import message


def shown_value(value: Any, limit: int = 128) -> str:
    """A short printable form of a client's value for a message argument."""
    if isinstance(value, str):
        text = value
    else:
        try:
            text = orjson.dumps(value).decode()
        except (TypeError, RecursionError):  # nesting beyond what can be shown
            text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass
class Field:
    nullable: bool = False
    write_only: bool = False  # shown as null, never echoed

    def check(self, path: str, value: Any, old: Any) -> tuple[Any, list[dict]]:
        """Return (value to store, messages); messages non-empty means refused."""
        if value is None:
            if self.nullable:
                return None, []
            return None, [message("PropertyValueTypeError", "null", path, related=[_ptr(path)])]
        return self._check(path, value, old)

    def _check(self, path: str, value: Any, old: Any) -> tuple[Any, list[dict]]:
        raise NotImplementedError

    def _type_error(self, path: str, value: Any) -> tuple[Any, list[dict]]:
        shown = "******" if self.write_only else shown_value(value)
        return None, [message("PropertyValueTypeError", shown, path, related=[_ptr(path)])]


def _ptr(path: str) -> str:
    return "/" + path


@dataclass
class Bool(Field):
    def _check(self, path, value, old):
        if not isinstance(value, bool):
            return self._type_error(path, value)
        return value, []


@dataclass
class Int(Field):
    minimum: int | None = None
    maximum: int | None = None

    def _check(self, path, value, old):
        if isinstance(value, bool) or not isinstance(value, int):
            return self._type_error(path, value)
        if (self.minimum is not None and value < self.minimum) or (
            self.maximum is not None and value > self.maximum
        ):
            return None, [
                message("PropertyValueOutOfRange", str(value), path, related=[_ptr(path)])
            ]
        return value, []


@dataclass
class Str(Field):
    enum: list[str] | None = None
    pattern: str | None = None
    min_length: int | None = None
    max_length: int | None = None

    def _check(self, path, value, old):
        if not isinstance(value, str):
            return self._type_error(path, value)
        shown = "******" if self.write_only else value
        if self.enum is not None and value not in self.enum:
            return None, [message("PropertyValueNotInList", shown, path, related=[_ptr(path)])]
        if self.pattern is not None and not re.fullmatch(self.pattern, value):
            return None, [message("PropertyValueFormatError", shown, path, related=[_ptr(path)])]
        if self.min_length is not None and len(value) < self.min_length:
            return None, [
                message("StringValueTooShort", shown, self.min_length, related=[_ptr(path)])
            ]
        if self.max_length is not None and len(value) > self.max_length:
            return None, [
                message("StringValueTooLong", shown, self.max_length, related=[_ptr(path)])
            ]
        return value, []


@dataclass
class Arr(Field):
    """An array written whole, with the Redfish rules: ``null`` removes the element at that
    position, ``{}`` keeps it, a shorter array truncates."""

    items: Field = field(default_factory=Field)
    max_items: int | None = None

    def _check(self, path, value, old):
        if not isinstance(value, list):
            return self._type_error(path, value)
        old_list = old if isinstance(old, list) else []
        out: list[Any] = []
        errors: list[dict] = []
        for i, item in enumerate(value):
            if item is None:
                continue  # removes the element at this position
            if item == {} and not isinstance(self.items, Obj):
                if i < len(old_list):
                    out.append(old_list[i])
                continue
            old_item = old_list[i] if i < len(old_list) else None
            v, errs = self.items.check(f"{path}/{i}", item, old_item)
            errors += errs
            out.append(v)
        if self.max_items is not None and len(out) > self.max_items:
            errors.append(message("ArraySizeTooLong", path, self.max_items, related=[_ptr(path)]))
        return (None, errors) if errors else (out, [])


@dataclass
class Obj(Field):
    fields: dict[str, Field] = field(default_factory=dict)

    def _check(self, path, value, old):
        if not isinstance(value, dict):
            return self._type_error(path, value)
        merged, errors, _ = merge_properties(path, self.fields, value, old or {})
        return merged, errors


def merge_properties(
    prefix: str, fields: dict[str, Field], body: dict[str, Any], current: dict[str, Any]
) -> tuple[dict[str, Any], list[dict], int]:
    """Merge ``body`` into a copy of ``current`` under the writable ``fields``.

    Returns the merged object, a message per refused property and the number of
    properties accepted.
    """
    merged = dict(current)
    errors: list[dict] = []
    accepted = 0
    for key, value in body.items():
        path = f"{prefix}/{key}" if prefix else key
        if key.startswith("@odata.") or "@" in key:
            continue  # annotations are not properties
        spec = fields.get(key)
        if spec is None:
            known = key in current
            msg = "PropertyNotWritable" if known else "PropertyUnknown"
            errors.append(message(msg, path, related=[_ptr(path)]))
            continue
        if isinstance(spec, Obj) and isinstance(value, dict):
            sub, errs, n = merge_properties(path, spec.fields, value, current.get(key) or {})
            errors += errs
            if n:
                merged[key] = sub
                accepted += n
            continue
        new, errs = spec.check(path, value, current.get(key))
        if errs:
            errors += errs
            continue
        merged[key] = new
        accepted += 1
    return merged, errors, accepted


@dataclass
class PatchResult:
    doc: dict[str, Any]
    errors: list[dict]
    accepted: int


def apply_patch(
    fields: dict[str, Field], body: Any, current: dict[str, Any]
) -> PatchResult:
    """Apply the PATCH rules; raises RedfishError when nothing at all can be applied."""
    from .errors import RedfishError

    if not isinstance(body, dict):
        raise RedfishError.of(400, "MalformedJSON")
    if not body:
        raise RedfishError.of(400, "EmptyJSON")
    if all(k.startswith("@") for k in body):
        raise RedfishError.of(400, "NoOperation")
    merged, errors, accepted = merge_properties("", fields, body, current)
    if accepted == 0:
        raise RedfishError(400, errors or [message("NoOperation")])
    return PatchResult(merged, errors, accepted)
