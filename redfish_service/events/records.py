"""Event records derived from the store's change feed, and the filters that select them.

A record is a pure function of one committed :class:`~redfish_service.store.Change`, so
an SSE client resuming from the retained change log gets exactly the records it would
have got live. Each record travels with an :class:`Origin` (what the filters look at).
"""

from __future__ import annotations

import functools
import re
import time
from dataclasses import dataclass
from typing import Any

from ..composition.messages import COMPOSITION
from ..protocol.messages import REGISTRIES, Registry, message
from ..store import Change
from .messages import FABRIC, RESOURCE_EVENT

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

# The registries whose messages can be sent (EventService.RegistryPrefixes): Base only for
# EventBufferExceeded, HeartbeatEvent for subscriptions that ask for heartbeats.
EVENT_REGISTRIES = ("Base", "Composition", "Fabric", "HeartbeatEvent", "ResourceEvent",
                    "TaskEvent")

_HEALTH_KEYS = {"OK": "ResourceStatusChangedOK", "Warning": "ResourceStatusChangedWarning",
                "Critical": "ResourceStatusChangedCritical"}

# TaskState after the change -> TaskEvent message key (Completed depends on TaskStatus).
_TASK_KEYS = {"Running": "TaskStarted", "Exception": "TaskAborted", "Killed": "TaskAborted",
              "Cancelled": "TaskCancelled", "Suspended": "TaskPaused",
              "Interrupted": "TaskPaused"}


# A fabric's zones, connections and endpoints (not a storage service's connections, nor
# the composition service's resource zones): the collection, the fabric's Id, the member's.
_FABRIC_MEMBER = re.compile(r"/redfish/v1/Fabrics/([^/]+)/(Zones|Connections|Endpoints)/([^/]+)")
_FABRIC_KEYS = {"Zones": "Zone", "Connections": "Connection", "Endpoints": "Endpoint"}
_FABRIC_OPS = {"create": "Created", "delete": "Removed", "update": "Modified"}
RESOURCE_ZONES = "/redfish/v1/CompositionService/ResourceZones/"


def _path(doc: dict[str, Any] | None, *keys: str) -> Any:
    for key in keys:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(key)
    return doc


def _specific(change: Change, entity: str) -> tuple[Registry, str, list[Any]] | None:
    """The registry message that says more than ResourceChanged about ``change``, if any.

    Mostly needs the documents before and after the change (``Change.after``/``before``);
    a change log reloaded after a restart has neither, but keeps what this said at
    commit time (``Change.note``, see :func:`describe`). One change gives one message,
    the most telling first: a task's new state, a health change (severity follows the
    new health), a fabric zone, connection or endpoint created, removed or changed
    (Fabric registry, from the URI alone), a resource zone's blocks, a block's
    composition state, a block's state.
    """
    after, before = change.after, change.before
    if entity == "Task":
        tasks = REGISTRIES.get("TaskEvent")
        if tasks is None:
            return None
        task_id = _path(after or before, "Id") or change.uri.rsplit("/", 1)[-1]
        if change.op == "delete":
            return tasks, "TaskRemoved", [task_id]
        state = _path(after, "TaskState")
        if state is None or (change.op == "update" and state == _path(before, "TaskState")):
            return None
        if state == "Completed":
            ok = _path(after, "TaskStatus") in (None, "OK")
            return tasks, "TaskCompletedOK" if ok else "TaskCompletedWarning", [task_id]
        if state == "Running" and _path(before, "TaskState") in ("Suspended", "Interrupted"):
            return tasks, "TaskResumed", [task_id]
        key = _TASK_KEYS.get(state)
        return (tasks, key, [task_id]) if key else None
    health = _path(after, "Status", "Health")
    if change.op == "update" and after is not None and before is not None \
            and health in _HEALTH_KEYS and health != _path(before, "Status", "Health"):
        return RESOURCE_EVENT, _HEALTH_KEYS[health], [change.uri, health]
    fabric_member = _FABRIC_MEMBER.fullmatch(change.uri)
    if fabric_member is not None and entity in _FABRIC_KEYS.values():
        # From the URI and the operation alone, so a change log reloaded after a restart
        # announces it the same way.
        fabric, collection, member = fabric_member.groups()
        return FABRIC, _FABRIC_KEYS[collection] + _FABRIC_OPS[change.op], [member, fabric]
    if change.op != "update" or after is None or before is None:
        return None
    if entity == "Zone" and change.uri.startswith(RESOURCE_ZONES) \
            and _path(after, "Links", "ResourceBlocks") \
            != _path(before, "Links", "ResourceBlocks"):
        zone_id = _path(after, "Id") or change.uri.rsplit("/", 1)[-1]
        return COMPOSITION, "ResourceZoneMembershipChanged", [zone_id]
    if entity == "ResourceBlock":
        block_id = _path(after, "Id") or change.uri.rsplit("/", 1)[-1]  # the registry's %1
        state = _path(after, "CompositionStatus", "CompositionState")
        if state != _path(before, "CompositionStatus", "CompositionState"):
            return COMPOSITION, "ResourceBlockCompositionStateChanged", [block_id]
        if _path(after, "Status", "State") != _path(before, "Status", "State"):
            return COMPOSITION, "ResourceBlockStateChanged", [block_id]
    return None


def entity_of_type(odata_type: str | None) -> str:
    if not odata_type:
        return ""
    return odata_type.lstrip("#").split(".", 1)[0] if "." in odata_type else \
        odata_type.lstrip("#")


@functools.lru_cache(maxsize=64)  # the changes of one commit share their time
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


def _message(change: Change, entity: str) -> tuple[Registry, str, list[Any]] | None:
    """The message announcing ``change``; None for one that is not announced."""
    if entity in SILENT_ENTITIES:
        return None
    if change.op == "update" and not change.properties:
        return None  # only private data changed (password hashes, intents): nothing to say
    return _noted(change) or _specific(change, entity) \
        or (RESOURCE_EVENT, _OPS[change.op], [])


def describe(change: Change) -> tuple[Any, ...] | None:
    """The note the store keeps with ``change`` (``Store.describe``), computed once at
    commit time while the documents before and after are at hand: the message that
    announces it, as (registry prefix, key, args). The live record is built from it, and
    a change log reloaded after a restart announces the change as it was announced live."""
    found = _message(change, entity_of_type(change.odata_type))
    return None if found is None else (found[0].prefix, found[1], list(found[2]))


def _noted(change: Change) -> tuple[Registry, str, list[Any]] | None:
    if not change.note or len(change.note) != 3:
        return None
    prefix, key, args = change.note
    registry = REGISTRIES.get(prefix)
    if registry is None or key not in registry.messages:
        return None  # a note from another version of the service: derive it again
    return registry, key, list(args)


def from_change(change: Change) -> Record | None:
    """The record announcing ``change``, or None for an unannounced one."""
    entity = entity_of_type(change.odata_type)
    found = _message(change, entity)
    if found is None:
        return None
    registry, key, args = found
    msg = message(key, *args, registry=registry)
    record: dict[str, Any] = {
        "EventType": "Other",
        "EventId": str(change.seq),
        "EventTimestamp": iso_time(change.time),
        "MemberId": "0",
        "MessageId": msg["MessageId"],
        "Message": msg["Message"],
        "MessageArgs": msg["MessageArgs"],
        "MessageSeverity": msg["MessageSeverity"],
        "OriginOfCondition": {"@odata.id": change.uri},
    }
    if change.op == "update":
        record["Oem"] = {OEM_KEY: {"ChangedProperties": list(change.properties)}}
    origin = Origin(change.seq, registry.prefix, key, msg["MessageSeverity"], entity,
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
