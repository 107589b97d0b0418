"""Kubernetes-style errors for the fake API server: ``ApiError`` and ``Status`` builders.

Message texts follow k8s.io/apimachinery (``errors.NewNotFound``, ``NewConflict``,
``NewInvalid``...) and ``field.Error.ErrorBody`` so clients see the same strings a real
kube-apiserver would send.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

CONFLICT_MSG = (
    "the object has been modified; please apply your changes to the latest version and try again"
)

_TYPE_TEXT = {
    "FieldValueNotFound": "Not found",
    "FieldValueRequired": "Required value",
    "FieldValueDuplicate": "Duplicate value",
    "FieldValueInvalid": "Invalid value",
    "FieldValueNotSupported": "Unsupported value",
    "FieldValueForbidden": "Forbidden",
    "FieldValueTooLong": "Too long",
    "FieldValueTooMany": "Too many",
    "InternalError": "Internal error",
    "FieldValueTypeInvalid": "Invalid value",
}
_NO_VALUE_TYPES = {
    "FieldValueRequired", "FieldValueForbidden", "FieldValueTooLong", "InternalError",
}
OMIT = object()


def go_quote(text: str) -> str:
    """Approximate Go's ``%q`` for a string."""
    return json.dumps(text, ensure_ascii=False)


def go_value(value: Any) -> str:
    """Render a bad value the way ``field.Error.ErrorBody`` does (close enough)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return go_quote(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


@dataclass
class FieldError:
    """One ``field.Error``: type is the cause type (``FieldValueInvalid``...)."""

    type: str
    field: str
    value: Any = OMIT
    detail: str = ""

    def body(self) -> str:
        text = _TYPE_TEXT[self.type]
        if self.type not in _NO_VALUE_TYPES and self.value is not OMIT:
            text = f"{text}: {go_value(self.value)}"
        if self.detail:
            text = f"{text}: {self.detail}"
        return text

    def error(self) -> str:
        return f"{self.field}: {self.body()}"


def required(path: str, detail: str = "") -> FieldError:
    return FieldError("FieldValueRequired", path, "", detail)


def invalid(path: str, value: Any, detail: str) -> FieldError:
    return FieldError("FieldValueInvalid", path, value, detail)


def forbidden(path: str, detail: str) -> FieldError:
    return FieldError("FieldValueForbidden", path, "", detail)


def duplicate(path: str, value: Any) -> FieldError:
    return FieldError("FieldValueDuplicate", path, value)


def not_supported(path: str, value: Any, supported: list[str]) -> FieldError:
    detail = ""
    if supported:
        detail = "supported values: " + ", ".join(go_quote(s) for s in supported)
    return FieldError("FieldValueNotSupported", path, value, detail)


def too_long(path: str, max_len: int) -> FieldError:
    return FieldError("FieldValueTooLong", path, "", f"must have at most {max_len} bytes")


def too_many(path: str, actual: int, max_items: int) -> FieldError:
    return FieldError("FieldValueTooMany", path, actual, f"must have at most {max_items} items")


def aggregate(errs: list[FieldError]) -> str:
    """``ErrorList.ToAggregate().Error()``: deduplicated, bracketed when more than one."""
    msgs: list[str] = []
    for err in errs:
        text = err.error()
        if text not in msgs:
            msgs.append(text)
    if len(msgs) == 1:
        return msgs[0]
    return "[" + ", ".join(msgs) + "]"


@dataclass(eq=False)
class ApiError(Exception):
    """A failed API call; ``body`` is the ``Status`` object sent to HTTP clients."""

    status: int
    reason: str
    message: str
    details: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    @property
    def body(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.status,
        }
        if self.details is not None:
            status["details"] = self.details
        return status

    def __str__(self) -> str:
        return f"{self.status} {self.reason}: {self.message}"


def _details(group: str, kind: str, name: str = "", **extra: Any) -> dict[str, Any]:
    details: dict[str, Any] = {}
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    if kind:
        details["kind"] = kind
    details.update({k: v for k, v in extra.items() if v})
    return details


def qualified(group: str, resource: str) -> str:
    return f"{resource}.{group}" if group else resource


def not_found(group: str, resource: str, name: str) -> ApiError:
    msg = f"{qualified(group, resource)} {go_quote(name)} not found"
    return ApiError(404, "NotFound", msg, _details(group, resource, name))


def already_exists(group: str, resource: str, name: str) -> ApiError:
    msg = f"{qualified(group, resource)} {go_quote(name)} already exists"
    return ApiError(409, "AlreadyExists", msg, _details(group, resource, name))


def conflict(group: str, resource: str, name: str, detail: str = CONFLICT_MSG) -> ApiError:
    target = f"{qualified(group, resource)} {go_quote(name)}"
    msg = f"Operation cannot be fulfilled on {target}: {detail}"
    return ApiError(409, "Conflict", msg, _details(group, resource, name))


def invalid_error(group: str, kind: str, name: str, errs: list[FieldError]) -> ApiError:
    qkind = f"{kind}.{group}" if group else kind
    causes = [{"reason": e.type, "message": e.body(), "field": e.field} for e in errs]
    msg = f"{qkind} {go_quote(name)} is invalid"
    if errs:
        msg = f"{msg}: {aggregate(errs)}"
    return ApiError(422, "Invalid", msg, _details(group, kind, name, causes=causes))


def unprocessable(message: str) -> ApiError:
    """``NewGenericServerResponse(422, ...)`` as used for failed JSON patches."""
    causes = [{"reason": "UnexpectedServerResponse", "message": message}]
    return ApiError(
        422,
        "Invalid",
        "the server rejected our request due to an error in our request",
        {"causes": causes},
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def forbidden_error(group: str, resource: str, name: str, message: str) -> ApiError:
    qres = qualified(group, resource)
    if not resource:
        full = f"forbidden: {message}"
    elif name:
        full = f"{qres} {go_quote(name)} is forbidden: {message}"
    else:
        full = f"{qres} is forbidden: {message}"
    return ApiError(403, "Forbidden", full, _details(group, resource, name))


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def expired(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


def gone(message: str) -> ApiError:
    return ApiError(410, "Gone", message)


def unsupported_media_type(content_type: str, accepted: list[str]) -> ApiError:
    msg = (
        f"the body of the request was in an unknown format - accepted media types include: "
        f"{', '.join(accepted)}"
    )
    del content_type
    return ApiError(415, "UnsupportedMediaType", msg)


def method_not_allowed(method: str) -> ApiError:
    del method
    return ApiError(
        405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
    )


def route_not_found() -> ApiError:
    causes = [{"reason": "UnexpectedServerResponse", "message": "404 page not found"}]
    return ApiError(
        404, "NotFound", "the server could not find the requested resource", {"causes": causes}
    )


def internal_error(message: str) -> ApiError:
    causes = [{"message": message}]
    return ApiError(500, "InternalError", f"Internal error occurred: {message}", {"causes": causes})


def too_many_requests(retry_after: int = 1) -> ApiError:
    return ApiError(
        429,
        "TooManyRequests",
        "Too many requests, please try again later.",
        {"retryAfterSeconds": retry_after},
        headers={"Retry-After": str(retry_after)},
    )


def server_timeout(message: str, retry_after: int = 1) -> ApiError:
    return ApiError(504, "Timeout", message, {"retryAfterSeconds": retry_after})


def service_unavailable(message: str = "the server is currently unable to handle the request"):
    return ApiError(503, "ServiceUnavailable", message)
