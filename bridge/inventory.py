"""What the composability manager holds, read through standard Redfish.

ResourceZones, ResourceBlocks (with the devices inside them) and ComputerSystems become a
`Pool`: plain frozen values the publisher and the binder compute from. A service that
supports ``$expand`` is read in three requests; one that does not, member by member.
"""

from __future__ import annotations

import asyncio
import functools
import re
from dataclasses import dataclass, field
from typing import Any

from .redfish import Redfish, RedfishError

COMPOSITION = "/redfish/v1/CompositionService"
BLOCKS = f"{COMPOSITION}/ResourceBlocks"
ZONES = f"{COMPOSITION}/ResourceZones"
SYSTEMS = "/redfish/v1/Systems"
EXPAND = "?$expand=.($levels={})"
DEVICE_PROPS = ("Processors", "Drives", "Memory", "NetworkInterfaces", "Storage")


@dataclass(frozen=True)
class Block:
    uri: str
    id: str
    type: str | None            # gpu | nvme | cxl-memory | dpu | nic | fpga, None: not a device
    state: str                  # CompositionStatus.CompositionState
    reserved: bool
    healthy: bool
    zones: tuple[str, ...]      # zone ids
    systems: tuple[str, ...]    # ComputerSystem URIs it is composed into
    attributes: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    capacity: dict[str, str] = field(default_factory=dict, hash=False, compare=False)

    @property
    def free(self) -> bool:
        return self.state == "Unused" and not self.reserved and self.healthy


@dataclass(frozen=True)
class System:
    uri: str
    id: str
    uuid: str
    blocks: frozenset[str]      # ResourceBlock URIs in Links.ResourceBlocks
    add_target: str | None      # ComputerSystem.AddResourceBlock, when it is expandable
    remove_target: str | None


@dataclass(frozen=True)
class Pool:
    blocks: dict[str, Block]    # by URI
    systems: dict[str, System]  # by URI
    zones: dict[str, frozenset[str]]  # zone id -> block URIs

    @functools.cached_property
    def _by_uuid(self) -> dict[str, System]:
        return {s.uuid.lower(): s for s in self.systems.values() if s.uuid}

    def system_by_uuid(self, uuid: str) -> System | None:
        return self._by_uuid.get(uuid.strip().lower())

    def zones_of_system(self, system: System) -> set[str]:
        """The zones holding one of the system's own blocks (its compute block): not
        those of the devices attached to it (a CXL device reachable from two zones would
        otherwise offer the node the other zone's devices, which it cannot reach)."""
        own = {u for u in system.blocks if (b := self.blocks.get(u)) is not None
               and b.type is None}
        return {z for z, members in self.zones.items() if members & own}


def _link_ids(links: list[dict[str, Any]] | None) -> tuple[str, ...]:
    return tuple(str(link.get("@odata.id", "")).rstrip("/").rsplit("/", 1)[-1]
                 for link in links or [] if isinstance(link, dict))


def _uris(links: list[dict[str, Any]] | None) -> tuple[str, ...]:
    return tuple(str(link["@odata.id"]) for link in links or []
                 if isinstance(link, dict) and "@odata.id" in link)


def _quantity_mib(mib: Any) -> str | None:
    return f"{int(mib)}Mi" if isinstance(mib, int | float) and mib > 0 else None


def _function_link(resource: dict[str, Any]) -> str | None:
    """The first PCIe function a Processor or Drive names (``Links.PCIeFunctions``)."""
    for link in (resource.get("Links") or {}).get("PCIeFunctions") or []:
        if isinstance(link, dict) and isinstance(link.get("@odata.id"), str):
            return link["@odata.id"]
    return None


def classify(block: dict[str, Any], functions: dict[str, dict[str, Any]] | None = None,
             ) -> tuple[str | None, dict[str, str], dict[str, str]]:
    """The device type, attributes and capacity of a block from the documents inside it
    (expanded members; links alone give no type). ``functions``: PCIe function documents
    by URI, for the PCI ids of the resource's function."""
    inner = {p: [m for m in block.get(p) or [] if isinstance(m, dict)] for p in DEVICE_PROPS}
    processors = inner["Processors"]
    kind: str | None = None
    main: dict[str, Any] = {}
    capacity: dict[str, str] = {}
    types = set(block.get("ResourceBlockType") or [])
    if types & {"ComputerSystem", "Compute", "Expansion"}:
        return None, {}, {}
    gpu = [p for p in processors if p.get("ProcessorType") in ("GPU", "Accelerator")]
    fpga = [p for p in processors if p.get("ProcessorType") == "FPGA"]
    if inner["NetworkInterfaces"]:
        kind = "dpu" if processors else "nic"
        main = processors[0] if processors else inner["NetworkInterfaces"][0]
    elif gpu:
        kind, main = "gpu", gpu[0]
        mem = sum(m.get("CapacityMiB") or 0 for m in main.get("ProcessorMemory") or [])
        if q := _quantity_mib(mem):
            capacity["memory"] = q
    elif fpga:
        kind, main = "fpga", fpga[0]
    elif inner["Drives"]:
        kind, main = "nvme", inner["Drives"][0]
        size = main.get("CapacityBytes")
        if isinstance(size, int) and size > 0:
            capacity["storage"] = str(size)
    elif inner["Memory"]:
        kind, main = "cxl-memory", inner["Memory"][0]
        if q := _quantity_mib(sum(m.get("CapacityMiB") or 0 for m in inner["Memory"])):
            capacity["memory"] = q
    if kind is None:
        return None, {}, {}
    attrs = {"type": kind}
    for prop, name in (("Manufacturer", "vendor"), ("Model", "model"),
                       ("SerialNumber", "serialNumber")):
        value = main.get(prop)
        if isinstance(value, str) and value:
            attrs[name] = value[:64]
    function = (functions or {}).get(_function_link(main) or "") or {}
    for prop, name in (("VendorId", "pcieVendorId"), ("DeviceId", "pcieDeviceId")):
        value = main.get(prop) or function.get(prop)
        if isinstance(value, str) and re.fullmatch(r"0[xX][0-9a-fA-F]{4}", value):
            attrs[name] = value.lower()
    return kind, attrs, capacity


def parse_block(doc: dict[str, Any], functions: dict[str, dict[str, Any]] | None = None,
                ) -> Block:
    status = doc.get("CompositionStatus") or {}
    links = doc.get("Links") or {}
    kind, attrs, capacity = classify(doc, functions)
    health = (doc.get("Status") or {}).get("Health")
    return Block(
        uri=str(doc["@odata.id"]), id=str(doc.get("Id", "")), type=kind,
        state=str(status.get("CompositionState", "")),
        reserved=bool(status.get("Reserved")), healthy=health in (None, "OK"),
        zones=_link_ids(links.get("Zones")), systems=_uris(links.get("ComputerSystems")),
        attributes={**attrs, "resourceBlock": str(doc["@odata.id"])}, capacity=capacity)


def parse_system(doc: dict[str, Any]) -> System:
    actions = doc.get("Actions") or {}

    def target(name: str) -> str | None:
        action = actions.get(f"#ComputerSystem.{name}")
        return action.get("target") if isinstance(action, dict) else None

    return System(
        uri=str(doc["@odata.id"]), id=str(doc.get("Id", "")), uuid=str(doc.get("UUID") or ""),
        blocks=frozenset(_uris((doc.get("Links") or {}).get("ResourceBlocks"))),
        add_target=target("AddResourceBlock"), remove_target=target("RemoveResourceBlock"))


async def _members(rf: Redfish, collection: str, levels: int) -> list[dict[str, Any]]:
    """The members of a collection, expanded when the service can; else fetched one by one
    (and their device members too, when ``levels`` is 2)."""
    body = await rf.get(collection + EXPAND.format(levels))
    members = body.get("Members") or []
    if all(isinstance(m, dict) and "Id" in m for m in members):
        if levels < 2 or all(_inner_expanded(m) for m in members):
            return members
    gate = asyncio.Semaphore(16)

    async def fetch(uri: str) -> dict[str, Any]:
        async with gate:
            doc = await rf.get(uri)
        return await _with_inner(rf, doc) if levels >= 2 else doc

    return list(await asyncio.gather(*(fetch(m["@odata.id"]) for m in members)))


async def _with_inner(rf: Redfish, doc: dict[str, Any]) -> dict[str, Any]:
    """A block with the resources inside it read (a manager that did not expand them)."""
    for prop in DEVICE_PROPS:
        links = doc.get(prop)
        if isinstance(links, list) and not all(
                isinstance(m, dict) and "Id" in m for m in links):
            doc[prop] = [await rf.get(link["@odata.id"]) for link in links
                         if isinstance(link, dict) and "@odata.id" in link]
    return doc


class PoolChanged(Exception):
    """What changed cannot be applied to the pool piecemeal: read it whole."""


async def update_pool(rf: Redfish, pool: Pool, changed: set[str],
                      functions: dict[str, dict[str, Any]] | None = None) -> Pool:
    """``pool`` with the blocks and systems in ``changed`` (their URIs) read again, the
    others kept as they are. PoolChanged when that is not enough: a block or system that
    appeared or went away (collections and zones are only read whole)."""
    functions = {} if functions is None else functions
    blocks, systems = dict(pool.blocks), dict(pool.systems)

    async def read(uri: str) -> tuple[str, dict[str, Any]]:
        try:
            if uri in blocks:
                return uri, await _with_inner(rf, await rf.get(uri + EXPAND.format(1)))
            return uri, await rf.get(uri)
        except RedfishError as e:
            if e.status == 404:
                raise PoolChanged(f"{uri} is gone") from None
            raise

    unknown = [u for u in changed if u not in blocks and u not in systems]
    if unknown:
        raise PoolChanged(f"{unknown[0]} is not in the pool read last")
    docs = dict(await asyncio.gather(*(read(u) for u in sorted(changed))))
    await _read_functions(rf, [d for u, d in docs.items() if u in blocks], functions)
    for uri, doc in docs.items():
        if uri in blocks:
            blocks[uri] = parse_block(doc, functions)
        else:
            systems[uri] = parse_system(doc)
    return Pool(blocks=blocks, systems=systems, zones=pool.zones)


async def _read_functions(rf: Redfish, block_docs: list[dict[str, Any]],
                          functions: dict[str, dict[str, Any]]) -> None:
    wanted = {uri for doc in block_docs for p in DEVICE_PROPS
              for m in doc.get(p) or [] if isinstance(m, dict)
              and (uri := _function_link(m)) is not None and uri not in functions}
    gate = asyncio.Semaphore(16)

    async def read(uri: str) -> None:
        async with gate:
            try:
                doc = await rf.get(uri)
            except RedfishError as e:
                if e.status != 404:
                    return  # read again next time
                doc = {}
        functions[uri] = {k: doc.get(k) for k in ("VendorId", "DeviceId") if k in doc}

    await asyncio.gather(*(read(u) for u in sorted(wanted)))


def _inner_expanded(member: dict[str, Any]) -> bool:
    return all("Id" in link for p in DEVICE_PROPS
               for link in member.get(p) or [] if isinstance(member.get(p), list)
               and isinstance(link, dict))


async def read_pool(rf: Redfish, functions: dict[str, dict[str, Any]] | None = None) -> Pool:
    """The pool as Redfish shows it now. ``functions`` caches the PCIe functions the
    devices name (their PCI ids never change): each is read once, then reused."""
    functions = {} if functions is None else functions
    zones_docs, block_docs, system_docs = await asyncio.gather(
        _members(rf, f"{COMPOSITION}/ResourceZones", 1),
        _members(rf, f"{COMPOSITION}/ResourceBlocks", 2),
        _members(rf, SYSTEMS, 1))
    await _read_functions(rf, block_docs, functions)
    blocks = {b.uri: b for b in (parse_block(d, functions) for d in block_docs)}
    systems = {s.uri: s for s in map(parse_system, system_docs)}
    zones = {str(z.get("Id")): frozenset(_uris((z.get("Links") or {}).get("ResourceBlocks")))
             for z in zones_docs}
    return Pool(blocks=blocks, systems=systems, zones=zones)
