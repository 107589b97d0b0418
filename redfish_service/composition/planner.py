"""Pure planning of expansion and reduction of a host server: no I/O, no aiohttp, no
driver. Given the documents as they are, either a step to carry out or a Redfish error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..protocol.errors import RedfishError
from .messages import COMPOSITION

# Blocks a running host can take: devices (alone, or several composed into an Expansion
# block), not other hosts or compute sleds.
DEVICE_TYPES = frozenset({"Processor", "Storage", "Memory", "Network"})
EXPANSION_TYPES = DEVICE_TYPES | {"Expansion"}
FREE_STATES = frozenset({"Unused"})


def refuse(status: int, key: str, *args: Any) -> RedfishError:
    return RedfishError.of(status, key, *args, registry=COMPOSITION)


@dataclass(frozen=True, slots=True)
class BlockView:
    uri: str
    id: str
    types: frozenset[str]
    state: str
    reserved: bool
    zones: frozenset[str]
    systems: tuple[str, ...]

    @classmethod
    def of(cls, doc: dict[str, Any]) -> BlockView:
        status = doc.get("CompositionStatus", {})
        links = doc.get("Links", {})
        return cls(
            uri=doc["@odata.id"],
            id=doc["Id"],
            types=frozenset(doc.get("ResourceBlockType", ())),
            state=status.get("CompositionState", ""),
            reserved=bool(status.get("Reserved")),
            zones=frozenset(z["@odata.id"] for z in links.get("Zones", ())),
            systems=tuple(s["@odata.id"] for s in links.get("ComputerSystems", ())),
        )


@dataclass(frozen=True, slots=True)
class Step:
    """Bind (attach=True) or unbind ``device_id`` with ``host_id``."""

    attach: bool
    block_uri: str
    device_id: str
    system_uri: str
    host_id: str


HOST_TYPES = frozenset({"ComputerSystem", "Compute"})


def host_block(system: dict[str, Any], blocks: dict[str, dict[str, Any]]) -> BlockView:
    """The block a system stands on: a registered host's, or a composed system's sled."""
    for link in system.get("Links", {}).get("ResourceBlocks", ()):
        doc = blocks.get(link["@odata.id"])
        if doc and HOST_TYPES & set(doc.get("ResourceBlockType", ())):
            return BlockView.of(doc)
    raise refuse(400, "ResourceBlockInvalid", system.get("Id", ""))


def driver_host(system: dict[str, Any], host: BlockView) -> str:
    """The id the driver knows the system's root ports by."""
    return host.id if "Compute" in host.types else system["Id"]


def plan_add(system: dict[str, Any], block_uri: str,
             blocks: dict[str, dict[str, Any]], *, check_state: bool = True) -> Step:
    """Attach the device of ``block_uri`` to the expandable ``system``."""
    host = host_block(system, blocks)
    doc = blocks.get(block_uri)
    if doc is None:
        raise refuse(400, "ResourceBlockNotFound", block_uri.rsplit("/", 1)[-1])
    block = BlockView.of(doc)
    if not block.types or not block.types <= EXPANSION_TYPES:
        raise refuse(400, "ResourceBlockInvalid", block.id)
    if system["@odata.id"] in block.systems:
        raise refuse(409, "ResourceBlockInUse", block.id)
    if check_state and (block.state not in FREE_STATES or block.reserved):
        raise refuse(409, "ResourceBlockInUse", block.id)
    if not block.zones & host.zones:
        raise refuse(400, "IncompatibleZone")
    return Step(True, block.uri, block.id, system["@odata.id"], driver_host(system, host))


def plan_remove(system: dict[str, Any], block_uri: str,
                blocks: dict[str, dict[str, Any]], *, check_state: bool = True) -> Step:
    """Detach the device of ``block_uri`` from ``system``."""
    host = host_block(system, blocks)
    doc = blocks.get(block_uri)
    if doc is None:
        raise refuse(400, "ResourceBlockNotFound", block_uri.rsplit("/", 1)[-1])
    block = BlockView.of(doc)
    if block.uri == host.uri or system["@odata.id"] not in block.systems:
        raise refuse(400, "ResourceBlockInvalid", block.id)
    if block.state == "Composing":
        raise refuse(409, "ResourceBlockInUse", block.id)
    return Step(False, block.uri, block.id, system["@odata.id"], driver_host(system, host))


def plan_compose(block_uris: list[str], blocks: dict[str, dict[str, Any]], *,
                 check_state: bool = True) -> tuple[BlockView, list[BlockView]]:
    """A new system from exactly one free compute block and free device blocks that all
    share a zone: (compute block, device blocks)."""
    views = []
    for uri in dict.fromkeys(block_uris):
        doc = blocks.get(uri)
        if doc is None:
            raise refuse(400, "ResourceBlockNotFound", uri.rsplit("/", 1)[-1])
        views.append(BlockView.of(doc))
    computes = [v for v in views if "Compute" in v.types]
    if len(computes) != 1:
        culprit = computes[1] if computes else views[0]
        raise refuse(400, "ResourceBlockInvalid", culprit.id)
    devices = [v for v in views if v is not computes[0]]
    for view in devices:
        if not view.types or not view.types <= EXPANSION_TYPES:
            raise refuse(400, "ResourceBlockInvalid", view.id)
    for view in views:
        if check_state and (view.state not in FREE_STATES or view.reserved):
            raise refuse(409, "ResourceBlockInUse", view.id)
    common = frozenset.intersection(*(v.zones for v in views))
    if not common:
        raise refuse(400, "IncompatibleZone")
    return computes[0], devices


def composed(block: dict[str, Any], system_uri: str) -> dict[str, Any]:
    """The block after joining ``system_uri``."""
    out = dict(block)
    status = dict(out["CompositionStatus"])
    status.update(CompositionState="Composed", NumberOfCompositions=1, Reserved=False)
    out["CompositionStatus"] = status
    out["Pool"] = "Active"
    out["Links"] = {**out["Links"], "ComputerSystems": [{"@odata.id": system_uri}]}
    return out


def released(block: dict[str, Any]) -> dict[str, Any]:
    """The block after leaving its system."""
    out = dict(block)
    status = dict(out["CompositionStatus"])
    # A device that failed while in a system is not free: out of the pool until repaired.
    healthy = out.get("Status", {}).get("Health", "OK") == "OK"
    status.update(CompositionState="Unused" if healthy else "Unavailable",
                  NumberOfCompositions=0, Reserved=False)
    out["CompositionStatus"] = status
    out["Pool"] = "Free"
    out.pop("Client", None)
    out["Links"] = {**out["Links"], "ComputerSystems": []}
    return out


def with_state(block: dict[str, Any], state: str) -> dict[str, Any]:
    out = dict(block)
    out["CompositionStatus"] = {**out["CompositionStatus"], "CompositionState": state}
    return out


def suppliers(block: dict[str, Any]) -> list[str]:
    """The blocks an Expansion block is composed of (none for other blocks)."""
    return [b["@odata.id"] for b in block.get("Links", {}).get("SupplyingResourceBlocks", [])]


def supplying(block: dict[str, Any], consumer_uri: str,
              system_uri: str | None = None) -> dict[str, Any]:
    """A device block inside the Expansion block ``consumer_uri``: composed into it (and
    through it into ``system_uri`` when the Expansion block is in a system)."""
    out = composed(block, system_uri) if system_uri else dict(block)
    status = dict(out["CompositionStatus"])
    status.update(CompositionState="Composed", Reserved=False,
                  NumberOfCompositions=1 if system_uri else 0)
    out["CompositionStatus"] = status
    out["Pool"] = "Active"
    out["Links"] = {**out["Links"], "ConsumingResourceBlocks": [{"@odata.id": consumer_uri}],
                    "ComputerSystems": [{"@odata.id": system_uri}] if system_uri else []}
    return out


def unsupplied(block: dict[str, Any]) -> dict[str, Any]:
    """A device block freed from the Expansion block it was in."""
    out = released(block)
    out["Links"] = {k: v for k, v in out["Links"].items() if k != "ConsumingResourceBlocks"}
    return out
