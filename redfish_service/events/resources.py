"""EventService, its Subscriptions collection and EventDestination resources.

A subscription is a store document (so it survives restarts); its ``HttpHeaders`` live in
the private part and are shown as ``[]``. The hub (:mod:`.hub`) follows subscriptions
through the change feed, so creating, changing, suspending or deleting one here is all it
takes for delivery to follow.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .. import services
from ..protocol.errors import RedfishError
from ..protocol.fields import Arr, Bool, Field, Int, Str, shown_value
from ..protocol.messages import REGISTRIES, message
from ..resources.context import Ctx
from ..resources.kind import ActionResult, Created, Kind
from ..resources.registries import ensure_schema_files
from ..security import privileges
from ..store import Store
from .messages import RESOURCE_EVENT
from .records import EVENT_REGISTRIES, Origin, entity_of_type, split_message_id

if TYPE_CHECKING:
    from .hub import EventHub

EVENT_SERVICE = "/redfish/v1/EventService"
SUBSCRIPTIONS = EVENT_SERVICE + "/Subscriptions"
SSE_URI = EVENT_SERVICE + "/SSE"
EVENT_SERVICE_TYPE = "#EventService.v1_12_0.EventService"
DESTINATION_TYPE = "#EventDestination.v1_16_0.EventDestination"
COLLECTION_TYPE = "#EventDestinationCollection.EventDestinationCollection"
SUBMIT_TEST_EVENT = "EventService.SubmitTestEvent"
TEST_SUBSCRIPTION = "EventService.TestEventSubscription"
SUSPEND = "EventDestination.SuspendSubscription"
RESUME = "EventDestination.ResumeSubscription"

SEVERITIES = ["OK", "Warning", "Critical"]
RETRY_POLICIES = ["TerminateAfterRetries", "SuspendRetries", "RetryForever",
                  "RetryForeverWithBackoff"]
PROTOCOLS = ["Redfish", "Kafka", "SNMPv1", "SNMPv2c", "SNMPv3", "SMTP", "SyslogTLS",
             "SyslogTCP", "SyslogUDP", "SyslogRELP", "OEM"]
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}")
RESERVED_HEADERS = frozenset({"content-type", "content-length", "host", "transfer-encoding",
                              "connection", "te", "trailer", "upgrade", "expect"})
MAX_DESTINATION = 2048
# HeartbeatIntervalMinutes of a subscription that asks for heartbeats without saying how
# often (the schema's range is 1..65535 and it names no default).
DEFAULT_HEARTBEAT_MINUTES = 10


def hub(ctx: Ctx) -> EventHub:
    return ctx.app[services.EVENTS]


def owner_of(ctx: Ctx) -> dict[str, str]:
    """The private mark of the account making a subscription: with it, that account may
    change, suspend and delete the subscription with ConfigureSelf alone."""
    p = ctx.principal
    return privileges.owner_mark(p.account_uri, p.username) if p is not None else {}


def event_service_doc(resource_types: list[str]) -> dict[str, Any]:
    return {
        "@odata.id": EVENT_SERVICE,
        "@odata.type": EVENT_SERVICE_TYPE,
        "Id": "EventService",
        "Name": "Event Service",
        "Description": "Events of the composability manager: push subscriptions and SSE",
        "ServiceEnabled": True,
        "Status": {"State": "Enabled", "Health": "OK"},
        "DeliveryRetryAttempts": 3,
        "DeliveryRetryIntervalSeconds": 30,
        "EventFormatTypes": ["Event"],
        "RegistryPrefixes": list(EVENT_REGISTRIES),
        "ResourceTypes": resource_types,
        "SubordinateResourcesSupported": True,
        "OriginResourcesSupported": True,
        "ExcludeMessageId": True,
        "ExcludeRegistryPrefix": True,
        "IncludeOriginOfConditionSupported": False,
        "Severities": SEVERITIES,
        "ServerSentEventUri": SSE_URI,
        "SSEFilterPropertiesSupported": {
            "EventFormatType": True,
            "EventType": True,
            "MessageId": True,
            "MetricReportDefinition": False,
            "OriginResource": True,
            "RegistryPrefix": True,
            "ResourceType": True,
            "SubordinateResources": False,
        },
        "Subscriptions": {"@odata.id": SUBSCRIPTIONS},
        "Actions": {
            f"#{SUBMIT_TEST_EVENT}": {"target": f"{EVENT_SERVICE}/Actions/{SUBMIT_TEST_EVENT}"},
            f"#{TEST_SUBSCRIPTION}": {"target": f"{EVENT_SERVICE}/Actions/{TEST_SUBSCRIPTION}"},
        },
    }


def _destination_actions(uri: str) -> dict[str, Any]:
    return {f"#{name}": {"target": f"{uri}/Actions/{name}"} for name in (SUSPEND, RESUME)}


def sse_destination_doc(dest_id: str, context: str) -> dict[str, Any]:
    uri = f"{SUBSCRIPTIONS}/{dest_id}"
    return {
        "@odata.id": uri,
        "@odata.type": DESTINATION_TYPE,
        "Id": dest_id,
        "Name": "Server-sent event stream",
        "Context": context,
        "Protocol": "Redfish",
        "SubscriptionType": "SSE",
        "EventFormatType": "Event",
        "Status": {"State": "Enabled", "Health": "OK"},
    }


def announced_types(store: Store) -> list[str]:
    from .records import SILENT_ENTITIES

    names = {entity_of_type(t) for t in store.odata_types()}
    # types that come and go (none may exist at start)
    names |= {"Task", "CompositionReservation", "ComputerSystem", "EventService"}
    if "ConnectionCollection" in names:  # a fabric whose connections follow the composition
        names.add("Connection")
    names -= SILENT_ENTITIES
    return sorted(n for n in names if n and not n.endswith("Collection")
                  and n not in ("Message", "Resource"))


async def ensure_documents(store: Store) -> None:
    """Create the EventService and its collection on first start; on every start refresh
    what describes the service, keeping what clients set."""
    async with store.transaction("service") as tx:
        fresh = event_service_doc(announced_types(store))
        current = tx.get(EVENT_SERVICE)
        if current is not None:
            for key in ("ServiceEnabled", "DeliveryRetryAttempts",
                        "DeliveryRetryIntervalSeconds"):
                if key in current:
                    fresh[key] = current[key]
        tx.put(EVENT_SERVICE, fresh)
        if not tx.exists(SUBSCRIPTIONS):
            tx.create(SUBSCRIPTIONS, {
                "@odata.id": SUBSCRIPTIONS,
                "@odata.type": COLLECTION_TYPE,
                "Name": "Event Subscriptions",
                "Members": [],
                "Members@odata.count": 0,
            })
        ensure_schema_files(tx, [EVENT_SERVICE_TYPE, DESTINATION_TYPE, COLLECTION_TYPE])


# -- validation of a subscription ---------------------------------------------------------


def _err(key: str, *args: Any, prop: str) -> dict[str, Any]:
    return message(key, *args, related=[f"/{prop}"])


def _check_destination(value: Any) -> list[dict]:
    if not isinstance(value, str):
        return [_err("PropertyValueTypeError", shown_value(value), "Destination",
                     prop="Destination")]
    try:
        parts = urlsplit(value)
        port = parts.port  # raises on a bad port
    except ValueError:
        parts, port = None, None
    ok = (parts is not None and parts.scheme in ("http", "https") and parts.hostname
          and len(value) <= MAX_DESTINATION and not parts.username and not parts.password
          and not any(c.isspace() for c in value) and port != 0)
    if not ok:
        return [_err("PropertyValueFormatError", shown_value(value), "Destination",
                     prop="Destination")]
    return []


def _check_list(body: dict, key: str, allowed: list[str] | None = None,
                check=None) -> list[dict]:
    if key not in body:
        return []
    value = body[key]
    if not isinstance(value, list):
        return [_err("PropertyValueTypeError", shown_value(value), key, prop=key)]
    errors = []
    for i, item in enumerate(value):
        path = f"{key}/{i}"
        if not isinstance(item, str):
            errors.append(_err("PropertyValueTypeError", shown_value(item), path, prop=path))
        elif allowed is not None and item not in allowed:
            errors.append(_err("PropertyValueNotInList", item, path, prop=path))
        elif check is not None and not check(item):
            errors.append(_err("PropertyValueNotInList", item, path, prop=path))
    return errors


def _known_message_id(value: str) -> bool:
    pair = split_message_id(value)
    if pair is None:
        return False
    registry = REGISTRIES.get(pair[0]) if pair[0] in EVENT_REGISTRIES else None
    return registry is not None and pair[1] in registry.messages


def _check_origins(body: dict) -> list[dict]:
    if "OriginResources" not in body:
        return []
    value = body["OriginResources"]
    if not isinstance(value, list):
        return [_err("PropertyValueTypeError", shown_value(value), "OriginResources",
                     prop="OriginResources")]
    errors = []
    for i, item in enumerate(value):
        path = f"OriginResources/{i}"
        target = item.get("@odata.id") if isinstance(item, dict) else None
        if not isinstance(target, str) or set(item) != {"@odata.id"}:
            errors.append(_err("PropertyValueTypeError", shown_value(item), path, prop=path))
        elif not target.startswith("/redfish/v1/"):
            errors.append(_err("PropertyValueFormatError", target, path, prop=path))
    return errors


def check_http_headers(value: Any) -> tuple[list[dict[str, str]], list[dict]]:
    """The headers as a list of one-name objects, or messages (values never shown)."""
    if not isinstance(value, list):
        return [], [_err("PropertyValueTypeError", "******", "HttpHeaders", prop="HttpHeaders")]
    out, errors = [], []
    for i, item in enumerate(value):
        path = f"HttpHeaders/{i}"
        if not isinstance(item, dict):
            errors.append(_err("PropertyValueTypeError", "******", path, prop=path))
            continue
        for name, header_value in item.items():
            if not isinstance(name, str) or not HEADER_NAME.fullmatch(name):
                errors.append(_err("PropertyValueFormatError", shown_value(name), path,
                                   prop=path))
            elif name.lower() in RESERVED_HEADERS:
                errors.append(_err("PropertyValueNotInList", name, path, prop=path))
            elif not isinstance(header_value, str) or any(c in header_value for c in "\r\n\0") \
                    or len(header_value) > 4096:
                errors.append(_err("PropertyValueFormatError", "******", f"{path}/{name}",
                                   prop=f"{path}/{name}"))
            else:
                out.append({name: header_value})
    return out, errors


CREATE_PROPERTIES = {
    "Destination", "Protocol", "Context", "RegistryPrefixes", "ExcludeRegistryPrefixes",
    "MessageIds", "ExcludeMessageIds", "ResourceTypes", "OriginResources",
    "SubordinateResources", "Severities", "HttpHeaders", "DeliveryRetryPolicy",
    "VerifyCertificate", "EventFormatType", "SubscriptionType", "Name", "Description",
    "SendHeartbeat", "HeartbeatIntervalMinutes", "EventTypes",
}


def check_subscription(ctx: Ctx, body: Any) -> list[dict]:
    """Every problem of a subscription request (empty: acceptable)."""
    if not isinstance(body, dict):
        raise RedfishError.of(400, "MalformedJSON")
    errors = [_err("PropertyUnknown", k, prop=k) for k in body
              if k not in CREATE_PROPERTIES and not k.startswith("@")]
    errors += [_err("PropertyMissing", k, prop=k) for k in ("Destination", "Protocol")
               if k not in body]
    if "Destination" in body:
        errors += _check_destination(body["Destination"])
    if "Protocol" in body:
        errors += Str(enum=["Redfish"]).check("Protocol", body["Protocol"], None)[1]
    for key, spec in (("Context", Str(max_length=256, nullable=True)),
                      ("Name", Str(max_length=128)), ("Description", Str(max_length=256)),
                      ("SubscriptionType", Str(enum=["RedfishEvent"])),
                      ("EventFormatType", Str(enum=["Event"])),
                      ("DeliveryRetryPolicy", Str(enum=RETRY_POLICIES)),
                      ("VerifyCertificate", Bool()), ("SubordinateResources", Bool()),
                      ("SendHeartbeat", Bool(nullable=True)),
                      ("HeartbeatIntervalMinutes", Int(minimum=1, maximum=65535,
                                                       nullable=True))):
        if key in body:
            errors += spec.check(key, body[key], None)[1]
    errors += _check_list(body, "RegistryPrefixes", list(EVENT_REGISTRIES))
    errors += _check_list(body, "ExcludeRegistryPrefixes", list(EVENT_REGISTRIES))
    errors += _check_list(body, "MessageIds", check=_known_message_id)
    errors += _check_list(body, "ExcludeMessageIds", check=_known_message_id)
    types = (ctx.store.doc(EVENT_SERVICE) or {}).get("ResourceTypes") or []
    errors += _check_list(body, "ResourceTypes", check=lambda t: entity_of_type(t) in types)
    errors += _check_list(body, "Severities", SEVERITIES)
    errors += _check_list(body, "EventTypes", ["Other", "ResourceAdded", "ResourceRemoved",
                                               "ResourceUpdated", "StatusChange", "Alert"])
    errors += _check_origins(body)
    for include, exclude in (("RegistryPrefixes", "ExcludeRegistryPrefixes"),
                             ("MessageIds", "ExcludeMessageIds")):
        if body.get(include) and body.get(exclude) and isinstance(body[include], list) \
                and isinstance(body[exclude], list):
            errors.append(_err("PropertyValueConflict", include, exclude, prop=exclude))
    if "HttpHeaders" in body:
        errors += check_http_headers(body["HttpHeaders"])[1]
    return errors


def subscription_doc(sub_id: str, body: dict[str, Any]) -> dict[str, Any]:
    uri = f"{SUBSCRIPTIONS}/{sub_id}"
    doc: dict[str, Any] = {
        "@odata.id": uri,
        "@odata.type": DESTINATION_TYPE,
        "Id": sub_id,
        "Name": body.get("Name", f"Event subscription {sub_id}"),
        "Destination": body["Destination"],
        "Protocol": "Redfish",
        "SubscriptionType": "RedfishEvent",
        "EventFormatType": "Event",
        "Context": body.get("Context"),
        "RegistryPrefixes": body.get("RegistryPrefixes", []),
        "ExcludeRegistryPrefixes": body.get("ExcludeRegistryPrefixes", []),
        "MessageIds": body.get("MessageIds", []),
        "ExcludeMessageIds": body.get("ExcludeMessageIds", []),
        "ResourceTypes": body.get("ResourceTypes", []),
        "OriginResources": body.get("OriginResources", []),
        "OriginResources@odata.count": len(body.get("OriginResources", [])),
        "SubordinateResources": body.get("SubordinateResources", False),
        "Severities": body.get("Severities", []),
        "HttpHeaders": [],
        "DeliveryRetryPolicy": body.get("DeliveryRetryPolicy", "SuspendRetries"),
        "VerifyCertificate": body.get("VerifyCertificate", True),
        "SendHeartbeat": body.get("SendHeartbeat") is True,
        "HeartbeatIntervalMinutes": body.get("HeartbeatIntervalMinutes")
        or DEFAULT_HEARTBEAT_MINUTES,
        "Status": {"State": "Enabled", "Health": "OK"},
        "Actions": _destination_actions(uri),
    }
    if "Description" in body:
        doc["Description"] = body["Description"]
    return doc


# -- kinds ----------------------------------------------------------------------------------


class EventServiceKind(Kind):
    entity = "EventService"
    writable = {
        "ServiceEnabled": Bool(),
        "DeliveryRetryAttempts": Int(minimum=0, maximum=20),
        "DeliveryRetryIntervalSeconds": Int(minimum=1, maximum=3600),
    }
    actions = {SUBMIT_TEST_EVENT: "submit_test_event", TEST_SUBSCRIPTION: "test_subscription"}

    async def check_patch(self, ctx, tx, uri, old, new):
        state = "Enabled" if new.get("ServiceEnabled", True) else "Disabled"
        new["Status"] = {**(new.get("Status") or {}), "State": state}
        return []

    def _enabled(self, ctx: Ctx) -> None:
        if not hub(ctx).enabled():
            raise RedfishError.of(400, "ServiceDisabled", EVENT_SERVICE)

    async def submit_test_event(self, ctx: Ctx, uri: str, body: dict[str, Any]
                                ) -> ActionResult:
        self._enabled(ctx)
        action = SUBMIT_TEST_EVENT
        params: dict[str, Any] = {
            "MessageId": Str(pattern=r"\w+\.\d+\.\d+\.\w+"),
            "MessageArgs": Arr(Str()),
            "Message": Str(max_length=1024),
            "MessageSeverity": Str(enum=SEVERITIES),
            "Severity": Str(max_length=64),
            "OriginOfCondition": Str(pattern=r"/redfish/v1(/.*)?"),
            "EventId": Str(max_length=128),
            "EventTimestamp": Str(max_length=64),
            "EventGroupId": Int(),
            "EventType": Str(enum=["StatusChange", "ResourceUpdated", "ResourceAdded",
                                   "ResourceRemoved", "Alert", "MetricReport", "Other"]),
        }
        errors = [message("ActionParameterUnknown", action, k) for k in body
                  if k not in params and not k.startswith("@")]
        if "MessageId" not in body:
            errors.append(message("ActionParameterMissing", action, "MessageId"))
        for key, spec in params.items():
            if key in body:
                _, errs = spec.check(key, body[key], None)
                if errs:
                    errors.append(message("ActionParameterValueFormatError",
                                          shown_value(body[key]), key, action))
        if errors:
            raise RedfishError(400, errors)
        record: dict[str, Any] = {"EventType": body.get("EventType", "Other"),
                                  "MemberId": "0"}
        for key in ("MessageId", "MessageArgs", "Message", "MessageSeverity", "Severity",
                    "EventId", "EventTimestamp", "EventGroupId"):
            if key in body:
                record[key] = body[key]
        record.setdefault("EventId", hub(ctx).next_test_id())
        origin_uri = body.get("OriginOfCondition", "")
        resource_type = ""
        if origin_uri:
            record["OriginOfCondition"] = {"@odata.id": origin_uri}
            doc = ctx.store.doc(origin_uri)
            resource_type = entity_of_type(doc.get("@odata.type")) if doc else ""
        prefix, key = split_message_id(body["MessageId"]) or ("", "")
        origin = Origin(0, prefix, key, body.get("MessageSeverity", "OK"), resource_type,
                        origin_uri)
        hub(ctx).inject(origin, record)
        return ActionResult(204)

    async def test_subscription(self, ctx: Ctx, uri: str, body: dict[str, Any]
                                ) -> ActionResult:
        self._enabled(ctx)
        unknown = [k for k in body if not k.startswith("@")]
        if unknown:
            raise RedfishError(400, [message("ActionParameterUnknown", TEST_SUBSCRIPTION, k)
                                     for k in unknown])
        msg = message("TestMessage", registry=RESOURCE_EVENT)
        record = {"EventType": "Other", "MemberId": "0", "EventId": hub(ctx).next_test_id(),
                  "EventTimestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  **{k: msg[k] for k in ("MessageId", "Message", "MessageArgs",
                                         "MessageSeverity")}}
        hub(ctx).inject(Origin(0, RESOURCE_EVENT.prefix, "TestMessage", "OK", "", ""),
                        record)
        return ActionResult(204)


class EventDestinationCollectionKind(Kind):
    entity = "EventDestinationCollection"
    insertable = True

    async def create(self, ctx: Ctx, collection_uri: str, body: Any) -> Created:
        errors = check_subscription(ctx, body)
        if errors:
            raise RedfishError(400, errors)
        headers, _ = check_http_headers(body.get("HttpHeaders", []))
        async with ctx.store.transaction(ctx.actor) as tx:
            members = ctx.store.members(collection_uri)
            push = [u for u in members
                    if (ctx.store.doc(u) or {}).get("SubscriptionType") == "RedfishEvent"]
            if len(push) >= hub(ctx).max_subscriptions:
                raise RedfishError.of(400, "EventSubscriptionLimitExceeded")
            numbers = [int(u.rsplit("/", 1)[1]) for u in members
                       if u.rsplit("/", 1)[1].isdigit()]
            sub_id = str(max(numbers, default=0) + 1)
            doc = subscription_doc(sub_id, body)
            tx.create(doc["@odata.id"], doc, {"http_headers": headers, **owner_of(ctx)})
        return Created(doc["@odata.id"])


@dataclass
class HttpHeadersField(Field):
    """``HttpHeaders`` in a PATCH: checked, then handed to ``after_patch`` wrapped (so an
    empty array, which clears them, differs from "not in the request")."""

    write_only: bool = True

    def _check(self, path, value, old):
        headers, errors = check_http_headers(value)
        return (None, errors) if errors else ({"set": headers}, [])


class EventDestinationKind(Kind):
    entity = "EventDestination"
    deletable = True
    writable = {
        "Context": Str(max_length=256, nullable=True),
        "DeliveryRetryPolicy": Str(enum=RETRY_POLICIES),
        "VerifyCertificate": Bool(),
        "HttpHeaders": HttpHeadersField(),
    }
    actions = {SUSPEND: "suspend", RESUME: "resume"}

    def allow(self, doc: dict[str, Any]) -> list[str]:
        if doc.get("SubscriptionType") == "SSE":
            return ["GET", "HEAD", "DELETE"]
        return super().allow(doc)

    async def after_patch(self, ctx, tx, uri, old, new):
        wrapped = new.get("HttpHeaders")
        if isinstance(wrapped, dict):
            private = tx.private(uri) or {}
            private["http_headers"] = wrapped["set"]
            new["HttpHeaders"] = []
            tx.put(uri, new, private)

    async def _set_state(self, ctx: Ctx, uri: str, action: str, state: str) -> ActionResult:
        async with ctx.store.transaction(ctx.actor) as tx:
            doc = tx.get(uri)
            if doc is None:
                raise RedfishError.of(404, "ResourceMissingAtURI", uri)
            if doc.get("SubscriptionType") == "SSE":
                raise RedfishError.of(400, "ActionNotSupported", action)
            doc["Status"] = {"State": state, "Health": "OK"}
            tx.put(uri, doc)
        return ActionResult(204)

    async def suspend(self, ctx: Ctx, uri: str, body: dict[str, Any]) -> ActionResult:
        return await self._set_state(ctx, uri, SUSPEND, "Disabled")

    async def resume(self, ctx: Ctx, uri: str, body: dict[str, Any]) -> ActionResult:
        return await self._set_state(ctx, uri, RESUME, "Enabled")


KINDS = [EventServiceKind(), EventDestinationCollectionKind(), EventDestinationKind()]
