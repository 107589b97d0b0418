"""Roles, privileges and the operation-to-privilege map (facts of the DMTF privilege
registry 1.8.0) enforced on every request, and rendered as the service's PrivilegeRegistry.

A requirement is a list of alternatives, each a list of privileges that must all be held:
``[["ConfigureManager"], ["ConfigureSelf"]]`` means either privilege suffices.
``ConfigureSelf`` counts only when the target is the caller's own account, session or
event subscription (see :func:`owner_mark`).
"""

from __future__ import annotations

from collections.abc import Iterable

Requirement = list[list[str]]

PRIVILEGES_USED = [
    "Login",
    "ConfigureManager",
    "ConfigureUsers",
    "ConfigureComponents",
    "ConfigureSelf",
]

ROLES: dict[str, list[str]] = {
    "Administrator": [
        "Login",
        "ConfigureManager",
        "ConfigureUsers",
        "ConfigureComponents",
        "ConfigureSelf",
    ],
    "Operator": ["Login", "ConfigureComponents", "ConfigureSelf"],
    "ReadOnly": ["Login", "ConfigureSelf"],
}

METHODS = ("GET", "HEAD", "PATCH", "PUT", "POST", "DELETE")


def _map(read: Requirement, write: Requirement, **overrides: Requirement) -> dict[str, Requirement]:
    out = {m: (read if m in ("GET", "HEAD") else write) for m in METHODS}
    out.update(overrides)
    return out


_LOGIN: Requirement = [["Login"]]
_MANAGER: Requirement = [["ConfigureManager"]]
_USERS: Requirement = [["ConfigureUsers"]]
_COMPONENTS: Requirement = [["ConfigureComponents"]]

OPERATION_MAP: dict[str, dict[str, Requirement]] = {
    "ServiceRoot": _map([["Login"], ["NoAuth"]], _MANAGER),
    "AccountService": _map(_LOGIN, _USERS),
    "ManagerAccountCollection": _map(_LOGIN, _USERS),
    "ManagerAccount": _map(
        [["ConfigureManager"], ["ConfigureUsers"], ["ConfigureSelf"]],
        _USERS,
        HEAD=_LOGIN,
    ),
    "RoleCollection": _map(_LOGIN, _MANAGER),
    "Role": _map(_LOGIN, _MANAGER),
    "PrivilegeRegistry": _map(_LOGIN, _MANAGER),
    "SessionService": _map(_LOGIN, _MANAGER),
    "SessionCollection": _map(_LOGIN, _MANAGER, POST=_LOGIN),
    "Session": _map(
        [["ConfigureManager"], ["ConfigureSelf"]],
        _MANAGER,
        DELETE=[["ConfigureManager"], ["ConfigureSelf"]],
    ),
    "ManagerCollection": _map(_LOGIN, _MANAGER),
    "Manager": _map(_LOGIN, _MANAGER),
    "ManagerNetworkProtocol": _map(_LOGIN, _MANAGER),
    "TaskService": _map(_LOGIN, _MANAGER),
    "TaskCollection": _map(_LOGIN, _MANAGER),
    "Task": _map(_LOGIN, _MANAGER),
    "MessageRegistryFileCollection": _map(_LOGIN, _MANAGER),
    "MessageRegistryFile": _map(_LOGIN, _MANAGER),
    "JsonSchemaFileCollection": _map(_LOGIN, _MANAGER),
    "JsonSchemaFile": _map(_LOGIN, _MANAGER),
    "EventService": _map(_LOGIN, _MANAGER),
    "EventDestinationCollection": _map(_LOGIN, [["ConfigureManager"], ["ConfigureComponents"]]),
    "EventDestination": _map(_LOGIN, [["ConfigureManager"], ["ConfigureSelf"]]),
    "ComputerSystemCollection": _map(_LOGIN, _COMPONENTS),
    "CompositionService": _map(_LOGIN, _MANAGER),
    "CompositionReservationCollection": _map(_LOGIN, _MANAGER),
    "CompositionReservation": _map(_LOGIN, _MANAGER),
    "ChassisCollection": _map(_LOGIN, _COMPONENTS),
}

# Property overrides: a PATCH that touches only these properties may use this requirement.
PROPERTY_OVERRIDES: dict[str, tuple[frozenset[str], Requirement]] = {
    "ManagerAccount": (frozenset({"Password"}), [["ConfigureUsers"], ["ConfigureSelf"]]),
}

# Everything else (composition, fabrics, devices, mockup resources): the registry's
# default for components.
DEFAULT_MAP = _map(_LOGIN, _COMPONENTS)


def owner_mark(account_uri: str, username: str) -> dict[str, str]:
    """What a resource's private part records of the account that made it (an event
    subscription). The user name is kept too: account Ids are reused after a deletion,
    and a new account in an old Id must not own what the old one made."""
    return {"owner": account_uri, "owner_name": username}


def is_owner(private: dict | None, account_uri: str, username: str) -> bool:
    return bool(private) and private.get("owner") == account_uri \
        and private.get("owner_name") == username


def requirement(entity: str, method: str, patched: Iterable[str] | None = None) -> Requirement:
    ops = OPERATION_MAP.get(entity, DEFAULT_MAP)
    req = ops.get(method, ops["POST"])
    if method == "PATCH" and patched is not None and entity in PROPERTY_OVERRIDES:
        props, override = PROPERTY_OVERRIDES[entity]
        keys = {k for k in patched if not k.startswith("@")}
        if keys and keys <= props:
            return override
    return req


def satisfied(req: Requirement, held: Iterable[str], *, is_self: bool) -> bool:
    for alternative in req:
        for p in alternative:
            if p not in held or (p == "ConfigureSelf" and not is_self):
                break
        else:
            return True
    return False


def registry_mappings() -> list[dict]:
    """The Mappings array of the PrivilegeRegistry resource, from the tables above."""
    mappings = []
    for entity, ops in OPERATION_MAP.items():
        mapping: dict = {
            "Entity": entity,
            "OperationMap": {
                method: [{"Privilege": alt} for alt in req] for method, req in ops.items()
            },
        }
        if entity in PROPERTY_OVERRIDES:
            props, req = PROPERTY_OVERRIDES[entity]
            mapping["PropertyOverrides"] = [
                {
                    "Targets": sorted(props),
                    "OperationMap": {"PATCH": [{"Privilege": alt} for alt in req]},
                }
            ]
        mappings.append(mapping)
    return mappings
