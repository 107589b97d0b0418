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


def violations(doc: Docs, members: Callable[[str], list[str]]) -> list[str]:
    """Every broken invariant, as a sentence; empty when all hold."""
    out: list[str] = []
    blocks = {u: doc(u) or {} for u in members(BLOCKS)}
    free, active = set(members(FREE_POOL)), set(members(ACTIVE_POOL))
    for uri, block in blocks.items():
        status = block.get("CompositionStatus", {})
        state = status.get("CompositionState")
        systems = _ids(block.get("Links", {}).get("ComputerSystems"))
        if state == "Composing":
            out.append(f"{uri} is left Composing")
        if "ComputerSystem" not in block.get("ResourceBlockType", ()):
            composed = state in ("Composed", "ComposedAndAvailable")
            if composed != bool(systems):
                out.append(f"{uri} is {state} with systems {sorted(systems)}")
            if len(systems) > (status.get("MaxCompositions") or 1):
                out.append(f"{uri} is in more systems than MaxCompositions")
            if status.get("NumberOfCompositions", 0) != len(systems):
                out.append(f"{uri} NumberOfCompositions disagrees with its links")
        for system in systems:
            if uri not in _ids((doc(system) or {}).get("Links", {}).get("ResourceBlocks")):
                out.append(f"{uri} names {system}, which does not name it back")
        in_free = state == "Unused" and not status.get("Reserved")
        if (uri in free) != in_free:
            out.append(f"{uri} ({state}) {'missing from' if in_free else 'wrongly in'} FreePool")
        in_active = state in ("Composed", "ComposedAndAvailable")
        if (uri in active) != in_active:
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
    out += _fabric_violations(doc, members, blocks)
    return out


def _fabric_violations(doc: Docs, members, blocks: dict[str, dict[str, Any]]) -> list[str]:
    """Fabric zones hold exactly each initiator's bound devices; endpoints agree."""
    from ..protocol.errors import RedfishError
    from .planner import driver_host, host_block

    out: list[str] = []
    bound: dict[str, str] = {}
    for block in blocks.values():
        systems = block.get("Links", {}).get("ComputerSystems", [])
        if systems and "ComputerSystem" not in block.get("ResourceBlockType", ()) \
                and "Compute" not in block.get("ResourceBlockType", ()):
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
    return out
