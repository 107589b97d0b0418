"""The composer's own Manager and its network protocol settings."""

from __future__ import annotations

import datetime
import socket
from typing import Any

from ..config import Settings
from ..protocol.fields import Arr, Obj, Str
from ..store import Entry
from . import uris
from .context import Ctx
from .kind import Kind

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


class ManagerKind(Kind):
    entity = "Manager"

    def render(self, entry: Entry, ctx: Ctx) -> dict[str, Any] | None:
        return {**entry.doc, "DateTime": now_iso()}


class NetworkProtocolKind(Kind):
    entity = "ManagerNetworkProtocol"
    writable = {
        "NTP": Obj(fields={"NTPServers": Arr(items=Str(max_length=255), max_items=4)}),
    }


KINDS = [ManagerKind(), NetworkProtocolKind()]
