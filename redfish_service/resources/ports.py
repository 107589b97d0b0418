"""Switch ports: an upstream port per host or compute sled a switch reaches, a downstream
port per device behind it, each linked with the endpoint at its far end (and back).

Ports describe cabling and link training, which the composition does not change: they
are written when the fabric is reconciled, not per composition.
"""

from __future__ import annotations

from typing import Any

from ..drivers.contract import Device, Switch
from .fabric_state import OK, downstream_port_id, port_uri, ref, upstream_port_id

PORT_TYPE = "#Port.v1_18_0.Port"
GBPS_PER_LANE = 32  # PCIe 5.0 (and CXL 2.0 over it): 32 GT/s a lane
PROTOCOL_VERSION = {"PCIe": "5.0", "CXL": "2.0"}
HOST_LANES = 16
DEVICE_LANES = {"GPU": 16, "NVMe": 4, "CXLMemory": 8, "DPU": 16, "NIC": 16}


def _port(fabric: str, switch: Switch, port_id: str, number: int, port_type: str,
          lanes: int, endpoint: str, name: str) -> dict[str, Any]:
    uri = port_uri(fabric, switch.id, port_id)
    return {
        "@odata.id": uri, "@odata.type": PORT_TYPE, "Id": port_id, "Name": name,
        "PortId": str(number), "PortProtocol": switch.protocol, "PortType": port_type,
        "PortMedium": "Electrical", "LinkNetworkTechnology": "PCIe",
        "CurrentProtocolVersion": PROTOCOL_VERSION[switch.protocol],
        "LinkStatus": "LinkUp", "LinkState": "Enabled", "InterfaceEnabled": True,
        "Width": lanes, "ActiveWidth": lanes,
        "CurrentSpeedGbps": GBPS_PER_LANE * lanes, "MaxSpeedGbps": GBPS_PER_LANE * lanes,
        "Status": OK, "Links": {"AssociatedEndpoints": [ref(endpoint)]},
    }


def _link_port(fabric: str, switch: Switch, port_id: str, number: int, port_type: str,
               peer: str, peer_port: str, name: str) -> dict[str, Any]:
    """A port cabled to another switch's port (two-level fabrics), x16."""
    doc = _port(fabric, switch, port_id, number, port_type, HOST_LANES, "", name)
    doc["Links"] = {"AssociatedEndpoints": [],
                    "ConnectedSwitches": [ref(f"{fabric}/Switches/{peer}")],
                    "ConnectedSwitchPorts": [ref(port_uri(fabric, peer, peer_port))]}
    return doc


def switch_ports(fabric: str, switch: Switch, initiators: list[str],
                 devices: list[Device], leaves: list[str] = ()) -> dict[str, dict[str, Any]]:
    """The switch's Ports collection and ports; ``initiators`` are the ids of the hosts
    and sleds it reaches, in port order; ``leaves`` the switches cabled below it. A leaf
    switch's upstream port is cabled to its spine's downstream port, and each names the
    other (``ConnectedSwitches``, ``ConnectedSwitchPorts``)."""
    collection = f"{fabric}/Switches/{switch.id}/Ports"
    docs: dict[str, dict[str, Any]] = {collection: {
        "@odata.id": collection, "@odata.type": "#PortCollection.PortCollection",
        "Name": f"Ports of switch {switch.id}", "Members": [], "Members@odata.count": 0,
    }}
    number = 0
    for initiator in initiators:
        number += 1
        doc = _port(fabric, switch, upstream_port_id(initiator), number, "UpstreamPort",
                    HOST_LANES, f"{fabric}/Endpoints/{initiator}",
                    f"Upstream port to {initiator}")
        if switch.protocol == "CXL":
            doc["CXL"] = {"CurrentPortConfigurationState": "USP"}
        docs[doc["@odata.id"]] = doc
    if switch.upstream is not None:
        number += 1
        doc = _link_port(fabric, switch, upstream_port_id(switch.upstream), number,
                         "UpstreamPort", switch.upstream, downstream_port_id(switch.id),
                         f"Upstream port to switch {switch.upstream}")
        docs[doc["@odata.id"]] = doc
    for leaf in leaves:
        number += 1
        doc = _link_port(fabric, switch, downstream_port_id(leaf), number, "DownstreamPort",
                         leaf, upstream_port_id(switch.id), f"Downstream port to switch {leaf}")
        docs[doc["@odata.id"]] = doc
    for device in devices:
        number += 1
        doc = _port(fabric, switch, downstream_port_id(device.id), number, "DownstreamPort",
                    DEVICE_LANES.get(device.kind, 16), f"{fabric}/Endpoints/{device.id}",
                    f"Downstream port to {device.id}")
        if switch.protocol == "CXL":
            doc["CXL"] = {
                "CurrentPortConfigurationState": "DSP",
                "ConnectedDeviceType": "Type3SLD" if device.kind == "CXLMemory"
                else "PCIeDevice",
                "MaxLogicalDeviceCount": 1,
            }
        docs[doc["@odata.id"]] = doc
    return docs


def ports_of_endpoints(docs: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    """Endpoint URI -> the switch ports naming it, from the port documents."""
    out: dict[str, list[str]] = {}
    for uri, doc in docs.items():
        if doc.get("@odata.type") == PORT_TYPE:
            for endpoint in doc["Links"].get("AssociatedEndpoints", []):
                out.setdefault(endpoint["@odata.id"], []).append(uri)
    return out

