"""The one error type of the service: a Redfish error with its HTTP status.

Every refusal anywhere in the service raises :class:`RedfishError`; the error middleware
renders it in one place (:func:`error_body`).
"""

from __future__ import annotations

from typing import Any

from .messages import BASE, Registry, message


class RedfishError(Exception):
    """An HTTP status plus one or more Redfish messages."""

    def __init__(
        self,
        status: int,
        messages: list[dict[str, Any]],
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(", ".join(m["MessageId"] for m in messages))
        self.status = status
        self.messages = messages
        self.headers = headers or {}

    @classmethod
    def of(
        cls,
        status: int,
        key: str,
        *args: Any,
        registry: Registry = BASE,
        related: list[str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> RedfishError:
        return cls(status, [message(key, *args, registry=registry, related=related)], headers)


def error_body(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``{"error": ...}`` body: the single message's id as code, else GeneralError."""
    if len(messages) == 1:
        code = messages[0]["MessageId"]
        text = messages[0]["Message"]
    else:
        general = message("GeneralError")
        code, text = general["MessageId"], general["Message"]
    return {"error": {"code": code, "message": text, "@Message.ExtendedInfo": messages}}


# Shorthands for the errors raised all over the service.


def not_found(uri: str) -> RedfishError:
    return RedfishError.of(404, "ResourceMissingAtURI", uri)


def method_not_allowed(allow: list[str]) -> RedfishError:
    return RedfishError.of(405, "OperationNotAllowed", headers={"Allow": ", ".join(allow)})


def bad_request(key: str, *args: Any, related: list[str] | None = None) -> RedfishError:
    return RedfishError.of(400, key, *args, related=related)
