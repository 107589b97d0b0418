"""The composer's own Manager and its network protocol settings, and the OEM actions
that inject faults into a driver that allows it (``RedfishComposer.InjectFault`` and
``RedfishComposer.ClearFaults``; see docs/faults.md)."""

from __future__ import annotations

import datetime
import socket
from typing import Any

from aiohttp import web

from ..config import Settings
from ..drivers.contract import (
    FAULT_ERRORS,
    FAULT_KINDS,
    DriverError,
    Fault,
    FaultInjector,
    InvalidFault,
    InventoryDriver,
)
from ..protocol.errors import RedfishError
from ..protocol.fields import Arr, Obj, Str, shown_value
from ..store import Entry, Store
from . import uris
from .context import Ctx
from .kind import ActionResult, Kind

# The driver, when it can inject faults; absent otherwise (the actions then refuse).
FAULT_INJECTOR: web.AppKey[FaultInjector] = web.AppKey("fault_injector")

MANAGER_TYPE = "#Manager.v1_24_0.Manager"
NETWORK_PROTOCOL_TYPE = "#ManagerNetworkProtocol.v1_12_0.ManagerNetworkProtocol"


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def manager_doc(service_uuid: str, version: str) -> dict[str, Any]:
    return {
        "@odata.id": uris.MANAGER,
        "@odata.type": MANAGER_TYPE,
        "Id": uris.MANAGER_ID,
        "Name": "redfish-composer composability manager",
        "Description": "The service that composes pooled devices with hosts",
        "ManagerType": "Service",
        "Manufacturer": "redfish-composer",
        "Model": "redfish-composer",
        "FirmwareVersion": version,
        "UUID": service_uuid,
        "ServiceEntryPointUUID": service_uuid,
        "PowerState": "On",
        "Status": {"State": "Enabled", "Health": "OK"},
        "DateTimeLocalOffset": "+00:00",
        "NetworkProtocol": {"@odata.id": uris.NETWORK_PROTOCOL},
    }


def network_protocol_doc(settings: Settings) -> dict[str, Any]:
    host = socket.gethostname()
    return {
        "@odata.id": uris.NETWORK_PROTOCOL,
        "@odata.type": NETWORK_PROTOCOL_TYPE,
        "Id": "NetworkProtocol",
        "Name": "Network protocols of the composability manager",
        "Status": {"State": "Enabled", "Health": "OK"},
        "HostName": host,
        "HTTPS": {"ProtocolEnabled": not settings.insecure_http,
                  "Port": settings.port if not settings.insecure_http else None},
        "HTTP": {"ProtocolEnabled": settings.insecure_http,
                 "Port": settings.port if settings.insecure_http else None},
        "NTP": {"ProtocolEnabled": False, "NTPServers": []},
    }


ACTION_INFO_TYPE = "#ActionInfo.v1_5_0.ActionInfo"
INJECT = "RedfishComposer.InjectFault"
CLEAR = "RedfishComposer.ClearFaults"
# Parameter -> (Fault field, JSON type, ActionInfo DataType, allowable values)
_INJECT_PARAMS: dict[str, tuple[str, type | tuple[type, ...], str, tuple[str, ...]]] = {
    "Kind": ("kind", str, "String", FAULT_KINDS),
    "Device": ("device", str, "String", ()),
    "Host": ("host", str, "String", ()),
    "Times": ("times", int, "Number", ()),
    "Probability": ("probability", (int, float), "Number", ()),
    "Error": ("error", str, "String", FAULT_ERRORS),
    "DurationSeconds": ("duration_s", (int, float), "Number", ()),
}
_CLEAR_PARAMS: dict[str, tuple[str, type | tuple[type, ...], str, tuple[str, ...]]] = {
    "Device": ("device", str, "String", ()),
    "Seed": ("seed", int, "Number", ()),
}
_PARAM_OF = {field: name for name, (field, *_) in _INJECT_PARAMS.items()}


def _action_info_uri(action: str) -> str:
    return f"{uris.MANAGER}/{action.split('.', 1)[1]}ActionInfo"


def _action_info(action: str, params: dict[str, Any], required: set[str]) -> dict[str, Any]:
    parameters = []
    for name, (_, _, data_type, allowed) in params.items():
        entry: dict[str, Any] = {"Name": name, "Required": name in required,
                                 "DataType": data_type}
        if allowed:
            entry["AllowableValues"] = list(allowed)
        parameters.append(entry)
    uri = _action_info_uri(action)
    return {"@odata.id": uri, "@odata.type": ACTION_INFO_TYPE, "Id": uri.rsplit("/", 1)[1],
            "Name": f"Parameters of {action}", "Parameters": parameters}


def fault_actions() -> dict[str, Any]:
    """The Manager's ``Actions.Oem`` while the driver can inject faults. Rendered live,
    not stored: the stored Manager is rewritten at every start, and a driver change
    must not leave a stale action behind."""
    return {f"#{action}": {"target": f"{uris.MANAGER}/Actions/Oem/{action}",
                           "@Redfish.ActionInfo": _action_info_uri(action)}
            for action in (INJECT, CLEAR)}


async def advertise_faults(store: Store, supported: bool) -> None:
    """Store the ActionInfo of the fault actions if the driver can inject faults, and
    remove it if it cannot (a restart with another driver)."""
    infos = [_action_info(INJECT, _INJECT_PARAMS, {"Kind"}),
             _action_info(CLEAR, _CLEAR_PARAMS, set())]
    async with store.transaction("service") as tx:
        for info in infos:
            if supported:
                tx.put(info["@odata.id"], info)  # records nothing when unchanged
            elif tx.exists(info["@odata.id"]):
                tx.delete(info["@odata.id"])


def _params(action: str, body: dict[str, Any], table: dict[str, Any],
            required: tuple[str, ...] = ()) -> dict[str, Any]:
    """The body's parameters as the driver's field names, checked against ``table``
    with the Base registry's ActionParameter messages."""
    for key in body:
        if key not in table and not key.startswith("@"):
            raise RedfishError.of(400, "ActionParameterUnknown", action, key, related=[f"/{key}"])
    for key in required:
        if key not in body:
            raise RedfishError.of(400, "ActionParameterMissing", action, key,
                                  related=[f"/{key}"])
    out: dict[str, Any] = {}
    for name, (field, types, _, allowed) in table.items():
        if name not in body:
            continue
        value = body[name]
        if isinstance(value, bool) or not isinstance(value, types):
            raise RedfishError.of(400, "ActionParameterValueTypeError", shown_value(value),
                                  name, action, related=[f"/{name}"])
        if allowed and value not in allowed:
            raise RedfishError.of(400, "ActionParameterValueNotInList", shown_value(value),
                                  name, action, related=[f"/{name}"])
        out[field] = value
    return out


async def _known(ctx: Ctx, action: str, body: dict[str, Any], driver: FaultInjector) -> None:
    """Device and Host must name parts of the fabric (ids as the driver reports them)."""
    if not isinstance(driver, InventoryDriver):
        return
    inventory = await driver.discover()
    known = {"Device": {d.id for d in inventory.devices},
             "Host": {h.id for h in inventory.hosts} | {s.id for s in inventory.sleds}}
    for name, ids in known.items():
        if name in body and body[name] not in ids:
            raise RedfishError.of(400, "ActionParameterValueNotInList", shown_value(body[name]),
                                  name, action, related=[f"/{name}"])


def _injector(ctx: Ctx, action: str) -> FaultInjector:
    driver = ctx.app.get(FAULT_INJECTOR)
    if driver is None:
        raise RedfishError.of(400, "ActionNotSupported", action)
    return driver


class ManagerKind(Kind):
    entity = "Manager"
    actions = {
        f"Oem/{INJECT}": "inject_fault",
        f"Oem/{CLEAR}": "clear_faults",
    }

    def render(self, entry: Entry, ctx: Ctx) -> dict[str, Any] | None:
        doc = {**entry.doc, "DateTime": now_iso()}
        if ctx.app.get(FAULT_INJECTOR) is not None:
            actions = dict(doc.get("Actions", {}))
            actions["Oem"] = {**actions.get("Oem", {}), **fault_actions()}
            doc["Actions"] = actions
        return doc

    async def inject_fault(self, ctx: Ctx, uri: str, body: dict[str, Any]) -> ActionResult:
        """Arm a bind rule or raise a device event now (admin testing aid)."""
        driver = _injector(ctx, INJECT)
        fields = _params(INJECT, body, _INJECT_PARAMS, ("Kind",))
        await _known(ctx, INJECT, body, driver)
        try:
            fault = Fault(**fields)
        except InvalidFault as e:
            name = _PARAM_OF.get(e.field, e.field)
            if e.missing:
                raise RedfishError.of(400, "ActionParameterMissing", INJECT, name,
                                      related=[f"/{name}"]) from None
            raise RedfishError.of(400, "ActionParameterValueError", name, INJECT,
                                  related=[f"/{name}"]) from None
        try:
            await driver.inject(fault)
        except DriverError:
            raise RedfishError.of(400, "ActionParameterValueError", "Device", INJECT,
                                  related=["/Device"]) from None
        return ActionResult(204)

    async def clear_faults(self, ctx: Ctx, uri: str, body: dict[str, Any]) -> ActionResult:
        """Disarm the rules and bring devices back (one ``Device``, or all); ``Seed``
        restarts the generator probability rules draw from."""
        driver = _injector(ctx, CLEAR)
        fields = _params(CLEAR, body, _CLEAR_PARAMS)
        await _known(ctx, CLEAR, body, driver)
        try:
            await driver.clear(fields.get("device"))
        except DriverError:
            raise RedfishError.of(400, "ActionParameterValueError", "Device", CLEAR,
                                  related=["/Device"]) from None
        if "seed" in fields:
            driver.reseed(fields["seed"])
        return ActionResult(204)


class NetworkProtocolKind(Kind):
    entity = "ManagerNetworkProtocol"
    writable = {
        "NTP": Obj(fields={"NTPServers": Arr(items=Str(max_length=255), max_items=4)}),
    }


KINDS = [ManagerKind(), NetworkProtocolKind()]
