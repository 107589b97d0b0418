"""Bearer-token authentication and RBAC PolicyRule evaluation for the fake API server.

Includes the DRA granular claim-status checks (KEP-5007 / DRAResourceClaimGranular-
StatusAuthorization): changing ``status.devices`` needs ``resourceclaims/driver`` with an
``arbitrary-node:<verb>`` (or ``associated-node:<verb>``) verb per changed driver, changing
``status.allocation``/``status.reservedFor`` needs ``resourceclaims/binding``. Denials are
field errors (so the request fails with 422 Invalid), as in the real apiserver.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .k8s_errors import FieldError, forbidden, go_quote, qualified
from .k8s_validation import dig

NODE_NAME_EXTRA = "authentication.kubernetes.io/node-name"
DISCOVERY_PATHS = ("/api", "/apis", "/version", "/healthz", "/livez", "/readyz", "/openapi")


@dataclass(frozen=True)
class UserInfo:
    name: str
    rules: tuple[Mapping[str, Any], ...]
    extra: Mapping[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Attributes:
    """Authorizer attributes of one (possibly synthetic) request."""

    user: UserInfo
    verb: str
    group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""
    resource_request: bool = True

    @property
    def full_resource(self) -> str:
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource


def make_user(token: str, spec: Any) -> UserInfo:
    """``tokens`` values: a list of PolicyRules, or ``{"user", "rules", "extra"}``."""
    if isinstance(spec, Mapping):
        name = spec.get("user") or _default_name(token)
        return UserInfo(name, tuple(spec.get("rules") or ()), dict(spec.get("extra") or {}))
    return UserInfo(_default_name(token), tuple(spec or ()))


def _default_name(token: str) -> str:
    return "token:" + hashlib.sha256(token.encode()).hexdigest()[:8]


def _match(values: Any, wanted: str) -> bool:
    values = list(values or [])
    return "*" in values or wanted in values


def _resource_matches(rule_resources: Any, attrs: Attributes) -> bool:
    for res in rule_resources or []:
        if res in ("*", attrs.full_resource):
            return True
        if attrs.subresource and res == f"*/{attrs.subresource}":
            return True
    return False


def _url_matches(rule_urls: Any, path: str) -> bool:
    for url in rule_urls or []:
        if url == "*" or url == path or (url.endswith("*") and path.startswith(url[:-1])):
            return True
    return False


def rule_allows(rule: Mapping[str, Any], attrs: Attributes) -> bool:
    if not _match(rule.get("verbs"), attrs.verb):
        return False
    if not attrs.resource_request:
        return _url_matches(rule.get("nonResourceURLs"), attrs.path)
    if not _match(rule.get("apiGroups"), attrs.group):
        return False
    if not _resource_matches(rule.get("resources"), attrs):
        return False
    names = rule.get("resourceNames") or []
    return not names or attrs.name in names


def allowed(attrs: Attributes) -> bool:
    if not attrs.resource_request and attrs.path.startswith(DISCOVERY_PATHS):
        return True  # system:discovery is granted to every authenticated user
    return any(rule_allows(rule, attrs) for rule in attrs.user.rules)


def forbidden_message(attrs: Attributes) -> str:
    """``responsewriters.forbiddenMessage``."""
    user = go_quote(attrs.user.name)
    if not attrs.resource_request:
        return f"User {user} cannot {attrs.verb} path {go_quote(attrs.path)}"
    res = go_quote(attrs.full_resource)
    group = go_quote(attrs.group)
    if attrs.namespace:
        return (f"User {user} cannot {attrs.verb} resource {res} in API group {group} "
                f"in the namespace {go_quote(attrs.namespace)}")
    return (f"User {user} cannot {attrs.verb} resource {res} in API group {group} "
            "at the cluster scope")


def forbidden_status_message(attrs: Attributes) -> str:
    """Message of ``ForbiddenStatusError`` (what ``NewForbidden`` would render)."""
    msg = forbidden_message(attrs)
    if not attrs.resource:
        return f"forbidden: {msg}"
    qres = qualified(attrs.group, attrs.resource)
    if attrs.name:
        return f"{qres} {go_quote(attrs.name)} is forbidden: {msg}"
    return f"{qres} is forbidden: {msg}"


# -- DRA claim status checks -------------------------------------------------------------------


def _entry_key(entry: Mapping[str, Any]) -> tuple[str, str, str, str]:
    return (entry.get("driver") or "", entry.get("pool") or "", entry.get("device") or "",
            entry.get("shareID") or "")


def modified_drivers(new_status: Mapping[str, Any], old_status: Mapping[str, Any]) -> list[str]:
    """``getModifiedDrivers``: drivers whose status.devices entries were added/changed/removed."""
    old = {_entry_key(e): e for e in old_status.get("devices") or []}
    drivers: set[str] = set()
    for entry in new_status.get("devices") or []:
        k = _entry_key(entry)
        previous = old.pop(k, None)
        if previous is None or previous != entry:
            drivers.add(entry.get("driver") or "")
    drivers.update(e.get("driver") or "" for e in old.values())
    return sorted(drivers)


def _allocated_node(status: Mapping[str, Any]) -> str:
    terms = dig(status, "allocation", "nodeSelector", "nodeSelectorTerms") or []
    if len(terms) != 1 or terms[0].get("matchExpressions"):
        return ""
    if len(terms[0].get("matchFields") or []) != 1:
        return ""
    req = terms[0]["matchFields"][0]
    if req.get("key") != "metadata.name" or req.get("operator") != "In":
        return ""
    values = req.get("values") or []
    return values[0] if len(values) == 1 else ""


def _associated(user: UserInfo, node: str) -> bool:
    if not node or not user.name.startswith("system:serviceaccount:"):
        return False
    names = list(user.extra.get(NODE_NAME_EXTRA) or [])
    return len(names) == 1 and names[0] == node


def claim_status_authz(
    user: UserInfo, verb: str, namespace: str,
    new_status: Mapping[str, Any], old_status: Mapping[str, Any],
) -> list[FieldError]:
    """``AuthorizedForBinding`` + ``AuthorizedForDeviceStatus`` as field errors."""
    errs: list[FieldError] = []
    if (new_status.get("allocation") != old_status.get("allocation")
            or (new_status.get("reservedFor") or []) != (old_status.get("reservedFor") or [])):
        attrs = Attributes(user, verb, "resource.k8s.io", "resourceclaims", "binding")
        if not allowed(attrs):
            errs.append(forbidden("status", (
                f'changing status.allocation or status.reservedFor requires '
                f'resource="resourceclaims/binding", verb="{verb}" permission: '
                f"{forbidden_status_message(attrs)}")))
    drivers = modified_drivers(new_status, old_status)
    if not drivers:
        return errs
    verbs = [f"arbitrary-node:{verb}"]
    if _associated(user, _allocated_node(new_status)):
        verbs.insert(0, f"associated-node:{verb}")
    for driver in drivers:
        checks = [Attributes(user, v, "resource.k8s.io", "resourceclaims", "driver", namespace,
                             driver) for v in verbs]
        if any(allowed(a) for a in checks):
            continue
        errs.append(forbidden("status.devices", (
            f'changing status.devices requires resource="resourceclaims/driver", '
            f'verb="[{" ".join(verbs)}]" permission: {forbidden_status_message(checks[0])}')))
    return errs
