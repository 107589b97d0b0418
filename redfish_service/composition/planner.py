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
COMPOSED_STATES = frozenset({"Composed", "ComposedAndAvailable"})


# -- reading blocks and systems that may not be ours --------------------------------------
# A served mockup's documents were not written by this service: any property may be
# missing or of another shape, and links may name documents that do not exist. These
# read what is there and take what is not for absent.
def obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def link_ids(value: Any) -> list[str]:
    """The ``@odata.id`` of each well-formed link of a link array (others are skipped)."""
    if not isinstance(value, list):
        return []
    return [item["@odata.id"].rstrip("/") for item in value if isinstance(item, dict)
            and isinstance(item.get("@odata.id"), str)]


def doc_id(doc: dict[str, Any]) -> str:
    """A document's ``Id``, else the last segment of its URI."""
    value = doc.get("Id")
    return value if isinstance(value, str) and value else \
        str(doc.get("@odata.id", "")).rstrip("/").rsplit("/", 1)[-1]


def block_types(doc: dict[str, Any]) -> frozenset[str]:
    value = doc.get("ResourceBlockType")
    return frozenset(t for t in value if isinstance(t, str)) if isinstance(value, list) \
        else frozenset()


def status_of(doc: dict[str, Any]) -> dict[str, Any]:
    return obj(doc.get("CompositionStatus"))


def links_of(doc: dict[str, Any]) -> dict[str, Any]:
    return obj(doc.get("Links"))


def systems_of(doc: dict[str, Any]) -> list[str]:
    """The systems a block is composed into."""
    return link_ids(links_of(doc).get("ComputerSystems"))


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
    capacity: int  # how many systems it may be in at once (1 unless shared)

    @classmethod
    def of(cls, doc: dict[str, Any]) -> BlockView:
        status = status_of(doc)
        links = links_of(doc)
        state = status.get("CompositionState")
        return cls(
            uri=str(doc["@odata.id"]).rstrip("/") or "/",
            id=doc_id(doc),
            types=block_types(doc),
            state=state if isinstance(state, str) else "",
            reserved=status.get("Reserved") is True,
            zones=frozenset(link_ids(links.get("Zones"))),
            systems=tuple(link_ids(links.get("ComputerSystems"))),
            capacity=capacity(doc),
        )

    def can_join(self, system_uri: str | None = None) -> bool:
        """Whether the block may join a(nother) system, reservations aside: free, or
        shared with room left (and not in ``system_uri`` already)."""
        if system_uri is not None and system_uri in self.systems:
            return False
        if self.state in FREE_STATES:
            return True
        return self.state == "ComposedAndAvailable" and len(self.systems) < self.capacity


def capacity(doc: dict[str, Any]) -> int:
    """``MaxCompositions`` of a block whose sharing is enabled, else 1."""
    status = status_of(doc)
    if status.get("SharingCapable") is not True or status.get("SharingEnabled") is not True:
        return 1
    most = status.get("MaxCompositions")
    return most if isinstance(most, int) and not isinstance(most, bool) and most > 1 else 1


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
    for uri in link_ids(links_of(system).get("ResourceBlocks")):
        doc = blocks.get(uri)
        if doc and HOST_TYPES & block_types(doc):
            return BlockView.of(doc)
    raise refuse(400, "ResourceBlockInvalid", doc_id(system))


def driver_host(system: dict[str, Any], host: BlockView) -> str:
    """The id the driver knows the system's root ports by."""
    return host.id if "Compute" in host.types else doc_id(system)


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
    if check_state and (not block.can_join(system["@odata.id"]) or block.reserved):
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
        if check_state and (not view.can_join() or view.reserved):
            raise refuse(409, "ResourceBlockInUse", view.id)
    common = frozenset.intersection(*(v.zones for v in views))
    if not common:
        raise refuse(400, "IncompatibleZone")
    return computes[0], devices


def _shared_state(block: dict[str, Any], systems: list[str]) -> str:
    return "ComposedAndAvailable" if len(systems) < capacity(block) else "Composed"


def composed(block: dict[str, Any], system_uri: str) -> dict[str, Any]:
    """The block after joining ``system_uri`` (besides the systems it shares itself with,
    if it is shared)."""
    out = dict(block)
    systems = systems_of(block) if capacity(block) > 1 else []
    systems = [s for s in systems if s != system_uri] + [system_uri]
    status = dict(status_of(out))
    status.update(CompositionState=_shared_state(block, systems),
                  NumberOfCompositions=len(systems), Reserved=False)
    out["CompositionStatus"] = status
    if "Pool" in out:  # only where the block has one (ResourceBlock 1.4 and later)
        out["Pool"] = "Active"
    out["Links"] = {**links_of(out), "ComputerSystems": [{"@odata.id": s} for s in systems]}
    return out


def released(block: dict[str, Any], system_uri: str | None = None) -> dict[str, Any]:
    """The block after leaving ``system_uri`` (every system if None): free when no other
    system shares it."""
    out = dict(block)
    systems = [s for s in systems_of(block) if system_uri is not None and s != system_uri]
    status = dict(status_of(out))
    out["Links"] = {**links_of(out), "ComputerSystems": [{"@odata.id": s} for s in systems]}
    if systems:  # still in the others it is shared with
        status.update(CompositionState=_shared_state(block, systems),
                      NumberOfCompositions=len(systems), Reserved=False)
        out["CompositionStatus"] = status
        return out
    # A device that failed while in a system is not free: out of the pool until repaired.
    healthy = obj(out.get("Status")).get("Health", "OK") == "OK"
    status.update(CompositionState="Unused" if healthy else "Unavailable",
                  NumberOfCompositions=0, Reserved=False)
    out["CompositionStatus"] = status
    if "Pool" in out:
        out["Pool"] = "Free"
    out.pop("Client", None)
    return out


def with_state(block: dict[str, Any], state: str) -> dict[str, Any]:
    out = dict(block)
    out["CompositionStatus"] = {**status_of(out), "CompositionState": state}
    return out


def suppliers(block: dict[str, Any]) -> list[str]:
    """The blocks an Expansion block is composed of (none for other blocks)."""
    return link_ids(links_of(block).get("SupplyingResourceBlocks"))


def supplying(block: dict[str, Any], consumer_uri: str,
              system_uri: str | None = None) -> dict[str, Any]:
    """A device block inside the Expansion block ``consumer_uri``: composed into it (and
    through it into ``system_uri`` when the Expansion block is in a system)."""
    out = composed(block, system_uri) if system_uri else dict(block)
    status = dict(status_of(out))
    status.update(CompositionState="Composed", Reserved=False,
                  NumberOfCompositions=1 if system_uri else 0)
    out["CompositionStatus"] = status
    if "Pool" in out:
        out["Pool"] = "Active"
    out["Links"] = {**links_of(out), "ConsumingResourceBlocks": [{"@odata.id": consumer_uri}],
                    "ComputerSystems": [{"@odata.id": system_uri}] if system_uri else []}
    return out


def unsupplied(block: dict[str, Any]) -> dict[str, Any]:
    """A device block freed from the Expansion block it was in."""
    out = released(block)
    out["Links"] = {k: v for k, v in links_of(out).items() if k != "ConsumingResourceBlocks"}
    return out
