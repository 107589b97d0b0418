"""The invariants of the composition, checked over the documents (tests run this after
every scenario): links both ways, pools matching states, nothing left half-done."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

BLOCKS = "/redfish/v1/CompositionService/ResourceBlocks"
ZONES = "/redfish/v1/CompositionService/ResourceZones"
FREE_POOL = "/redfish/v1/CompositionService/FreePool"
ACTIVE_POOL = "/redfish/v1/CompositionService/ActivePool"
FABRICS = "/redfish/v1/Fabrics"

Docs = Callable[[str], dict[str, Any] | None]


def _ids(links: list[dict[str, Any]] | None) -> set[str]:
    return {link["@odata.id"] for link in links or ()}


def violations(doc: Docs, members: Callable[[str], list[str]], *,
               fabric: bool = True) -> list[str]:
    """Every broken invariant, as a sentence; empty when all hold. ``fabric=False``
    leaves out the fabric and host-view ones (a served mockup's fabric and systems are
    its documents, not derived from the composition); the pools are checked where
    they exist (a mockup may have none)."""
    out: list[str] = []
    blocks = {u: doc(u) or {} for u in members(BLOCKS)}
    free, active = set(members(FREE_POOL)), set(members(ACTIVE_POOL))
    pools = doc(FREE_POOL) is not None or doc(ACTIVE_POOL) is not None
    for uri, block in blocks.items():
        status = block.get("CompositionStatus", {})
        state = status.get("CompositionState")
        systems = _ids(block.get("Links", {}).get("ComputerSystems"))
        if state == "Composing":
            out.append(f"{uri} is left Composing")
        # Device health (resources/health.py): a free block is Unavailable exactly while
        # its device is not healthy, so a broken device is never offered for composition.
        health = block.get("Status", {}).get("Health", "OK")
        if (state == "Unused" and health != "OK") or (state == "Unavailable" and health == "OK"):
            out.append(f"{uri} is {state} with Health {health}")
        consumers = _ids(block.get("Links", {}).get("ConsumingResourceBlocks"))
        for consumer in consumers:  # a device inside an Expansion block
            outer = blocks.get(consumer, {})
            if uri not in _ids(outer.get("Links", {}).get("SupplyingResourceBlocks")):
                out.append(f"{uri} names consumer {consumer}, which does not name it back")
            if state != "Composed":
                out.append(f"{uri} supplies {consumer} but is {state}")
            if systems != _ids(outer.get("Links", {}).get("ComputerSystems")):
                out.append(f"{uri} is in systems {sorted(systems)}, its consumer is not")
        for supplier in _ids(block.get("Links", {}).get("SupplyingResourceBlocks")):
            if uri not in _ids(blocks.get(supplier, {}).get("Links", {}).get(
                    "ConsumingResourceBlocks")):
                out.append(f"{uri} names supplier {supplier}, which does not name it back")
        if "ComputerSystem" not in block.get("ResourceBlockType", ()):
            composed = state in ("Composed", "ComposedAndAvailable")
            if composed != bool(systems) and not consumers:
                out.append(f"{uri} is {state} with systems {sorted(systems)}")
            if len(systems) > (status.get("MaxCompositions") or 1):
                out.append(f"{uri} is in more systems than MaxCompositions")
            if status.get("NumberOfCompositions", 0) != len(systems):
                out.append(f"{uri} NumberOfCompositions disagrees with its links")
        for system in systems:
            named = _ids((doc(system) or {}).get("Links", {}).get("ResourceBlocks"))
            if uri not in named and not consumers & named:
                out.append(f"{uri} names {system}, which does not name it back")
        in_free = state == "Unused" and not status.get("Reserved")
        if pools and (uri in free) != in_free:
            out.append(f"{uri} ({state}) {'missing from' if in_free else 'wrongly in'} FreePool")
        in_active = state in ("Composed", "ComposedAndAvailable")
        if pools and (uri in active) != in_active:
            out.append(f"{uri} ({state}) {'missing from' if in_active else 'wrongly in'} "
                       "ActivePool")
        for zone in _ids(block.get("Links", {}).get("Zones")):
            if uri not in _ids((doc(zone) or {}).get("Links", {}).get("ResourceBlocks")):
                out.append(f"{uri} names zone {zone}, which does not list it")
    for zone_uri in members(ZONES):
        for uri in _ids((doc(zone_uri) or {}).get("Links", {}).get("ResourceBlocks")):
            if zone_uri not in _ids(blocks.get(uri, {}).get("Links", {}).get("Zones")):
                out.append(f"zone {zone_uri} lists {uri}, which does not name it")
    for system_uri in members("/redfish/v1/Systems"):
        for uri in _ids((doc(system_uri) or {}).get("Links", {}).get("ResourceBlocks")):
            block = blocks.get(uri)
            if block is None:
                out.append(f"{system_uri} names missing block {uri}")
                continue
            is_host = "ComputerSystem" in block.get("ResourceBlockType", ())
            linked = _ids(block.get("ComputerSystems") if is_host
                          else block.get("Links", {}).get("ComputerSystems"))
            if system_uri not in linked:
                out.append(f"{system_uri} names {uri}, which does not name it back")
    if fabric:
        out += _fabric_violations(doc, members, blocks)
    return out


def _fabric_violations(doc: Docs, members, blocks: dict[str, dict[str, Any]]) -> list[str]:
    """Fabric zones hold exactly each initiator's bound devices; endpoints agree; ports
    and endpoints link both ways; every bound CXL memory device has one Connection to its
    initiator and one Memory entry in its system (free ones none); systems list the
    PCIe devices of exactly their attached device blocks, and the processors, network
    interfaces and drives those blocks hold."""
    from ..protocol.errors import RedfishError
    from .planner import driver_host, host_block

    out: list[str] = []
    bound: dict[str, str] = {}
    for block in blocks.values():
        systems = block.get("Links", {}).get("ComputerSystems", [])
        if systems and set(block.get("ResourceBlockType", ())) <= {
                "Processor", "Storage", "Memory", "Network"}:
            system = doc(systems[0]["@odata.id"]) or {}
            try:
                bound[block["Id"]] = driver_host(system, host_block(system, blocks))
            except RedfishError:
                out.append(f"{block['@odata.id']} is composed into a system without a base")
    for fabric in members(FABRICS):
        endpoints = set(members(f"{fabric}/Endpoints"))
        listed: dict[str, set[str]] = {}
        for zone_uri in members(f"{fabric}/Zones"):
            zone = doc(zone_uri) or {}
            initiator = zone.get("Id", "").removeprefix("zone-")
            eps = _ids(zone.get("Links", {}).get("Endpoints"))
            for ep in eps:
                listed.setdefault(ep, set()).add(zone_uri)
            devices = {e.rsplit("/", 1)[1] for e in eps} - {initiator}
            expected = {d for d, h in bound.items()
                        if h == initiator and f"{fabric}/Endpoints/{d}" in endpoints}
            if devices != expected:
                out.append(f"{zone_uri} holds {sorted(devices)}, bound are {sorted(expected)}")
        for ep in endpoints:
            named = _ids((doc(ep) or {}).get("Links", {}).get("Zones"))
            if named != listed.get(ep, set()):
                out.append(f"{ep} names zones {sorted(named)}, listed in "
                           f"{sorted(listed.get(ep, set()))}")
        out += _port_violations(doc, members, fabric, endpoints)
    out += _cxl_violations(doc, members, blocks, bound)
    out += _host_device_violations(doc, members, blocks)
    return out


def _port_violations(doc: Docs, members, fabric: str, endpoints: set[str]) -> list[str]:
    out: list[str] = []
    ports_of: dict[str, set[str]] = {}
    for switch in members(f"{fabric}/Switches"):
        for port in members(f"{switch}/Ports"):
            links = (doc(port) or {}).get("Links", {})
            for ep in _ids(links.get("AssociatedEndpoints")):
                ports_of.setdefault(ep, set()).add(port)
                if ep not in endpoints:
                    out.append(f"{port} names {ep}, which is not an endpoint of {fabric}")
            # a switch-to-switch cable (two-level fabrics): both ends name each other
            for peer in _ids(links.get("ConnectedSwitchPorts")):
                back = (doc(peer) or {}).get("Links", {})
                if _ids(back.get("ConnectedSwitchPorts")) != {port} \
                        or _ids(back.get("ConnectedSwitches")) != {switch}:
                    out.append(f"{port} is cabled to {peer}, which does not name it back")
    for ep in endpoints:
        named = _ids((doc(ep) or {}).get("Links", {}).get("ConnectedPorts"))
        if named != ports_of.get(ep, set()):
            out.append(f"{ep} names ports {sorted(named)}, named by "
                       f"{sorted(ports_of.get(ep, set()))}")
    return out


def _cxl_violations(doc: Docs, members, blocks: dict[str, dict[str, Any]],
                    bound: dict[str, str]) -> list[str]:
    out: list[str] = []
    system_of = {b["Id"]: b["Links"]["ComputerSystems"][0]["@odata.id"]
                 for b in blocks.values() if b.get("Id") in bound}
    # chunk -> (system, Memory entry) of every host-side CXL memory entry
    entries: dict[str, list[tuple[str, str]]] = {}
    for system in members("/redfish/v1/Systems"):
        for memory in members(f"{system}/Memory"):
            for chunk in _ids((doc(memory) or {}).get("Links", {}).get("MemoryMediaSources")):
                entries.setdefault(chunk, []).append((system, memory))
    for fabric in members(FABRICS):
        if (doc(fabric) or {}).get("FabricType") != "CXL":
            continue
        by_target: dict[str, list[dict[str, Any]]] = {}
        for uri in members(f"{fabric}/Connections"):
            connection = doc(uri) or {}
            links = connection.get("Links", {})
            for side in ("InitiatorEndpoints", "TargetEndpoints"):
                for ep in _ids(links.get(side)):
                    if uri not in _ids((doc(ep) or {}).get("Links", {}).get("Connections")):
                        out.append(f"{uri} names {ep}, which does not name it back")
            for ep in _ids(links.get("TargetEndpoints")):
                by_target.setdefault(ep, []).append(connection)
        for ep in members(f"{fabric}/Endpoints"):
            for uri in _ids((doc(ep) or {}).get("Links", {}).get("Connections")):
                linked = (doc(uri) or {}).get("Links", {})
                if ep not in _ids(linked.get("InitiatorEndpoints")) | _ids(
                        linked.get("TargetEndpoints")):
                    out.append(f"{ep} names connection {uri}, which does not name it")
            endpoint = doc(ep) or {}
            chunks = [e["EntityLink"]["@odata.id"] for e in endpoint.get("ConnectedEntities", ())
                      if e.get("EntityType") == "MemoryChunk" and "EntityLink" in e]
            if not chunks:
                continue
            device = ep.rsplit("/", 1)[1]
            connections = by_target.get(ep, [])
            if device not in bound:
                if connections:
                    out.append(f"free CXL device {device} has connections")
                for chunk in chunks:
                    if entries.get(chunk):
                        out.append(f"free CXL device {device} is memory of "
                                   f"{sorted(s for s, _ in entries[chunk])}")
                continue
            initiator = f"{fabric}/Endpoints/{bound[device]}"
            if len(connections) != 1:
                out.append(f"bound CXL device {device} has {len(connections)} connections")
            for connection in connections:
                if _ids(connection.get("Links", {}).get("InitiatorEndpoints")) != {initiator}:
                    out.append(f"{connection.get('@odata.id')} is not to {initiator}")
                granted = {i.get("MemoryChunk", {}).get("@odata.id")
                           for i in connection.get("MemoryChunkInfo", ())}
                if granted != set(chunks):
                    out.append(f"{connection.get('@odata.id')} grants {sorted(granted)}, "
                               f"not {chunks}")
            for chunk in chunks:
                if doc(chunk) is None:
                    out.append(f"{ep} names missing memory chunk {chunk}")
                if [s for s, _ in entries.get(chunk, [])] != [system_of[device]]:
                    out.append(f"bound CXL device {device} is memory of "
                               f"{sorted(s for s, _ in entries.get(chunk, []))}, "
                               f"not of {system_of[device]}")
    return out


def _host_device_violations(doc: Docs, members, blocks: dict[str, dict[str, Any]]
                            ) -> list[str]:
    out: list[str] = []
    for system_uri in members("/redfish/v1/Systems"):
        system = doc(system_uri) or {}
        attached = set()
        for uri in _ids(system.get("Links", {}).get("ResourceBlocks")):
            types = set(blocks.get(uri, {}).get("ResourceBlockType", ()))
            inside = _ids(blocks.get(uri, {}).get("Links", {}).get("SupplyingResourceBlocks"))
            if "Expansion" in types:  # its devices are what the host sees
                attached |= {s.rsplit("/", 1)[1] for s in inside}
            elif types and not types & {"ComputerSystem", "Compute"}:
                attached.add(uri.rsplit("/", 1)[1])
        shown = set()
        for uri in _ids(system.get("PCIeDevices")):
            device = doc(uri)
            if device is None or not device.get("@odata.type", "").startswith("#PCIeDevice."):
                out.append(f"{system_uri} shows {uri}, which is not a PCIe device")
            shown.add(uri.rsplit("/", 1)[1])
        if shown != attached:
            out.append(f"{system_uri} shows PCIe devices {sorted(shown)}, "
                       f"has blocks {sorted(attached)}")
        if system.get("PCIeDevices@odata.count", len(shown)) != len(system.get("PCIeDevices", ())):
            out.append(f"{system_uri} PCIeDevices@odata.count disagrees")
        # what its blocks hold is what it lists (host_view)
        held: dict[str, set[str]] = {"Processors": set(), "NetworkInterfaces": set(),
                                     "Drives": set()}
        for uri in _ids(system.get("Links", {}).get("ResourceBlocks")):
            for prop, found in held.items():
                found |= _ids(blocks.get(uri, {}).get(prop))
        listed = {"Processors": set(members(f"{system_uri}/Processors")),
                  "NetworkInterfaces": set(members(f"{system_uri}/NetworkInterfaces")),
                  "Drives": _ids((doc(f"{system_uri}/Storage/Pooled") or {}).get("Drives"))}
        for prop, found in held.items():
            if listed[prop] != found:
                out.append(f"{system_uri} lists {prop} {sorted(listed[prop])}, its blocks "
                           f"hold {sorted(found)}")
    return out
