"""Event records derived from the store's change feed, and the filters that select them.

A record is a pure function of one committed :class:`~redfish_service.store.Change`, so
an SSE client resuming from the retained change log gets exactly the records it would
have got live. Each record travels with an :class:`Origin` (what the filters look at).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from ..protocol.messages import REGISTRIES, message
from ..store import Change
from .messages import RESOURCE_EVENT

EVENT_TYPE = "#Event.v1_13_0.Event"
OEM_KEY = "RedfishComposer"

# Documents whose changes are not announced: bookkeeping of the service itself (sessions
# hold login activity; subscriptions announcing subscriptions would only echo clients'
# own requests; schema and registry files are rewritten at start).
SILENT_ENTITIES = frozenset({
    "Session", "SessionCollection", "EventDestination", "EventDestinationCollection",
    "JsonSchemaFile", "JsonSchemaFileCollection", "MessageRegistryFile",
    "MessageRegistryFileCollection", "PrivilegeRegistry",
})

_OPS = {"create": "ResourceCreated", "delete": "ResourceRemoved", "update": "ResourceChanged"}


def entity_of_type(odata_type: str | None) -> str:
    if not odata_type:
        return ""
    return odata_type.lstrip("#").split(".", 1)[0] if "." in odata_type else \
        odata_type.lstrip("#")


def iso_time(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


@dataclass(frozen=True, slots=True)
class Origin:
    """What filters select on: the record's message and the resource it is about."""

    seq: int  # change-log sequence number; 0 for events not from the change log
    registry: str
    message_key: str
    severity: str
    resource_type: str  # entity name, "" if none
    uri: str  # OriginOfCondition, "" if none

    def filter_view(self) -> dict[str, Any]:
        """The properties an SSE ``$filter`` may name."""
        return {
            "EventFormatType": "Event",
            "EventType": "Other",
            "MessageId": f"{REGISTRIES[self.registry].id_prefix}.{self.message_key}"
            if self.registry in REGISTRIES else f"{self.registry}.{self.message_key}",
            "RegistryPrefix": self.registry,
            "ResourceType": self.resource_type,
            "OriginResource": self.uri,
            "MessageSeverity": self.severity,
        }


Record = tuple[Origin, dict[str, Any]]


def from_change(change: Change) -> Record | None:
    """The ResourceEvent record announcing ``change``, or None for an unannounced one."""
    entity = entity_of_type(change.odata_type)
    if entity in SILENT_ENTITIES:
        return None
    if change.op == "update" and not change.properties:
        return None  # only private data changed (password hashes, intents): nothing to say
    key = _OPS[change.op]
    msg = message(key, registry=RESOURCE_EVENT)
    record: dict[str, Any] = {
        "EventType": "Other",
        "EventId": str(change.seq),
        "EventTimestamp": iso_time(change.time),
        "MemberId": "0",
        "MessageId": msg["MessageId"],
        "Message": msg["Message"],
        "MessageArgs": [],
        "MessageSeverity": msg["MessageSeverity"],
        "OriginOfCondition": {"@odata.id": change.uri},
    }
    if change.op == "update":
        record["Oem"] = {OEM_KEY: {"ChangedProperties": list(change.properties)}}
    origin = Origin(change.seq, RESOURCE_EVENT.prefix, key, msg["MessageSeverity"], entity,
                    change.uri)
    return origin, record


def event_body(records: list[dict[str, Any]], event_id: str, context: str | None
               ) -> dict[str, Any]:
    """An Event carrying ``records`` (their MemberIds numbered in order)."""
    events = [{**r, "MemberId": str(i)} for i, r in enumerate(records)]
    body: dict[str, Any] = {
        "@odata.type": EVENT_TYPE,
        "Id": event_id,
        "Name": "Event",
        "Events": events,
        "Events@odata.count": len(events),
    }
    if context is not None:
        body["Context"] = context
    return body


def split_message_id(value: str) -> tuple[str, str] | None:
    """(registry prefix, message key) of ``Prefix.Key`` or ``Prefix.M.m[.p].Key``."""
    parts = value.split(".")
    if len(parts) < 2 or not all(parts):
        return None
    if len(parts) > 2 and not all(p.isdigit() for p in parts[1:-1]):
        return None
    return parts[0], parts[-1]


@dataclass(frozen=True, slots=True)
class Selection:
    """A subscription's filters. Empty lists select everything."""

    registry_prefixes: frozenset[str] = frozenset()
    exclude_registry_prefixes: frozenset[str] = frozenset()
    message_ids: frozenset[tuple[str, str]] = frozenset()
    exclude_message_ids: frozenset[tuple[str, str]] = frozenset()
    resource_types: frozenset[str] = frozenset()
    origins: tuple[str, ...] = ()
    subordinates: bool = False
    severities: frozenset[str] = frozenset()

    @classmethod
    def of(cls, doc: dict[str, Any]) -> Selection:
        def ids(key: str) -> frozenset[tuple[str, str]]:
            out = set()
            for v in doc.get(key) or ():
                pair = split_message_id(v) if isinstance(v, str) else None
                if pair:
                    out.add(pair)
            return frozenset(out)

        return cls(
            frozenset(doc.get("RegistryPrefixes") or ()),
            frozenset(doc.get("ExcludeRegistryPrefixes") or ()),
            ids("MessageIds"),
            ids("ExcludeMessageIds"),
            frozenset(entity_of_type(t) for t in doc.get("ResourceTypes") or ()),
            tuple(o["@odata.id"].rstrip("/") for o in doc.get("OriginResources") or ()
                  if isinstance(o, dict) and isinstance(o.get("@odata.id"), str)),
            bool(doc.get("SubordinateResources")),
            frozenset(doc.get("Severities") or ()),
        )

    def matches(self, o: Origin) -> bool:
        if self.registry_prefixes and o.registry not in self.registry_prefixes:
            return False
        if o.registry in self.exclude_registry_prefixes:
            return False
        pair = (o.registry, o.message_key)
        if self.message_ids and pair not in self.message_ids:
            return False
        if pair in self.exclude_message_ids:
            return False
        if self.resource_types and o.resource_type not in self.resource_types:
            return False
        if self.severities and o.severity not in self.severities:
            return False
        if self.origins:
            uri = o.uri.rstrip("/")
            if not any(uri == x or (self.subordinates and uri.startswith(x + "/"))
                       for x in self.origins):
                return False
        return True
