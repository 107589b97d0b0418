"""The base tree: created on first start, brought up to date on every start.

Documents clients may change (AccountService policy, accounts, SessionService, network
settings) are created once and then left as they are; documents that describe the running
service (root, manager, roles, privilege map, registries) are rewritten to match it.
"""

from __future__ import annotations

import uuid
from typing import Any

from ..config import Settings
from ..protocol.messages import REGISTRIES
from ..security import privileges
from ..security.passwords import generate_password, hash_password
from ..store import Store, Transaction
from . import uris
from .accounts import (
    account_doc,
    account_service_doc,
    collection_doc,
    privilege_map_doc,
    role_doc,
)
from .managers import manager_doc, network_protocol_doc
from .registries import ensure_registry_files, ensure_schema_files
from .service_root import service_root_doc
from .sessions import session_service_doc
from .tasks import task_service_doc

COLLECTIONS = [
    (uris.ACCOUNTS, "ManagerAccountCollection", "Accounts"),
    (uris.ROLES, "RoleCollection", "Roles"),
    (uris.SESSIONS, "SessionCollection", "Sessions"),
    (uris.MANAGERS, "ManagerCollection", "Managers"),
    (uris.SYSTEMS, "ComputerSystemCollection", "Computer Systems"),
    (uris.CHASSIS, "ChassisCollection", "Chassis"),
    (uris.TASKS, "TaskCollection", "Tasks"),
    (uris.REGISTRIES, "MessageRegistryFileCollection", "Message Registries"),
    (uris.JSON_SCHEMAS, "JsonSchemaFileCollection", "JSON Schemas"),
]


def _create_missing(tx: Transaction, doc: dict[str, Any]) -> None:
    if not tx.exists(doc["@odata.id"]):
        tx.create(doc["@odata.id"], doc)


def _refresh(tx: Transaction, doc: dict[str, Any]) -> None:
    tx.put(doc["@odata.id"], doc)  # the store records nothing when nothing changed


async def bootstrap(store: Store, settings: Settings, version: str) -> str | None:
    """Seed or refresh the base tree; returns the admin password if one was generated."""
    generated: str | None = None
    async with store.transaction("service") as tx:
        root = tx.get(uris.SERVICE_ROOT)
        service_uuid = root["UUID"] if root else str(uuid.uuid4())
        _refresh(tx, service_root_doc(service_uuid, version))
        _create_missing(tx, account_service_doc(settings.accounts))
        _create_missing(tx, session_service_doc(settings.session_timeout))
        _create_missing(tx, task_service_doc())
        for uri, entity, name in COLLECTIONS:
            _create_missing(tx, collection_doc(uri, entity, name))
        for role_id, assigned in privileges.ROLES.items():
            _refresh(tx, role_doc(role_id, assigned))
        _refresh(tx, privilege_map_doc())
        manager = manager_doc(service_uuid, version)
        current = tx.get(uris.MANAGER)
        if current is not None and "Links" in current:
            manager["Links"] = current["Links"]  # kept by the inventory reconciliation
        _refresh(tx, manager)
        protocol = network_protocol_doc(settings)
        current = tx.get(uris.NETWORK_PROTOCOL)
        if current is not None:
            protocol["NTP"] = current.get("NTP", protocol["NTP"])
        _refresh(tx, protocol)
        ensure_registry_files(tx, REGISTRIES.values())
        if not store.members(uris.ACCOUNTS):
            if settings.admin_password is not None:
                password = settings.admin_password.get_secret_value()
            else:
                password = generated = generate_password()
            doc = account_doc("1", "admin", "Administrator")
            tx.create(doc["@odata.id"], doc, {"password": hash_password(password)})
    return generated


async def bootstrap_schema_files(store: Store) -> None:
    """A JsonSchemaFile for every type the store holds."""
    async with store.transaction("service") as tx:
        types = store.odata_types()
        types.add("#JsonSchemaFile.v1_1_5.JsonSchemaFile")
        ensure_schema_files(tx, [t for t in types if t])
