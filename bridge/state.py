"""What the bridge knows, all of it re-derivable: caches of the API server (claims,
our slices, nodes), the last pool read from Redfish, and the lookups between them.

Nothing here is the truth: a restarted bridge rebuilds it from the claims and Redfish.
The only remembered judgements are quarantines, and those are written on our slices.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

from .claims import Unit, units
from .config import Settings
from .inventory import Block, Pool, System
from .reflector import Reflector
from .slices import Identity, device_name

RESOURCE = "/apis/resource.k8s.io/v1"


@dataclass
class BridgeState:
    settings: Settings
    ident: Identity
    claims: Reflector
    slices: Reflector
    nodes: Reflector
    pool: Pool | None = None
    pool_read_at: float = 0.0
    quarantine: dict[str, float] = field(default_factory=dict)   # device name -> until
    busy: set[str] = field(default_factory=set)                  # block URIs being worked on
    system_locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    by_device: dict[str, Block] = field(default_factory=dict)    # device name -> block
    _units: dict[str, tuple[dict[str, Any], list[Unit]]] = field(default_factory=dict)
    _live: tuple[tuple[int, int] | None, list[Unit]] = (None, [])
    # PCIe function URI -> its PCI ids: hardware facts, read once (inventory.read_pool)
    pcie_functions: dict[str, dict[str, Any]] = field(default_factory=dict)

    def set_pool(self, pool: Pool) -> None:
        """Take a fresh read of the pool. A block that did not change stays the same
        object, so what is derived from blocks can be memoized by identity."""
        if self.pool is not None:
            old = self.pool.blocks
            pool = dataclasses.replace(pool, blocks={
                uri: old[uri] if uri in old and _same_block(old[uri], b) else b
                for uri, b in pool.blocks.items()})
        self.pool = pool
        self.pool_read_at = time.time()
        self.by_device = {device_name(b): b for b in pool.blocks.values()
                          if b.type in self.ident.device_types}

    # -- nodes and systems ---------------------------------------------------------------
    def system_for_node(self, node_name: str | None) -> System | None:
        """The node's ComputerSystem: the node annotation ``<driver>/redfish-system`` if
        set, else the system whose UUID is the node's SMBIOS system UUID, else the
        providerID's last segment as system Id or UUID."""
        if not node_name or self.pool is None:
            return None
        node = self.nodes.get(node_name)
        if node is None:
            return None
        return self._map_node(node)

    def _map_node(self, node: dict[str, Any]) -> System | None:
        assert self.pool is not None
        meta = node.get("metadata") or {}
        override = (meta.get("annotations") or {}).get(f"{self.ident.driver}/redfish-system")
        if override:
            return self.pool.systems.get(override.rstrip("/"))
        uuid = ((node.get("status") or {}).get("nodeInfo") or {}).get("systemUUID")
        if uuid and (system := self.pool.system_by_uuid(uuid)):
            return system
        provider = str((node.get("spec") or {}).get("providerID") or "").rstrip("/")
        if provider:
            last = provider.rsplit("/", 1)[-1]
            for s in self.pool.systems.values():
                if last in (s.id, s.uuid):
                    return s
        return None

    def node_systems(self) -> dict[str, System]:
        """Every node that maps to an expandable system."""
        if self.pool is None:
            return {}
        out = {}
        for node in self.nodes.values():
            system = self._map_node(node)
            if system is not None and system.add_target:
                out[str(node["metadata"]["name"])] = system
        return out

    def node_zones(self) -> dict[str, set[str]]:
        assert self.pool is not None
        return {n: self.pool.zones_of_system(s) for n, s in self.node_systems().items()}

    # -- devices and blocks ----------------------------------------------------------------
    def block_for(self, device: str) -> Block | None:
        return self.by_device.get(device)

    def live_units(self) -> list[Unit]:
        """The allocated devices of every live claim: the same list until the claims
        cache changes, and then a claim's units are parsed again only when the cache
        holds a new object for it (every watch event brings one)."""
        seen = (self.claims.version, len(self.claims.objects))
        if self._live[0] == seen:
            return self._live[1]
        out: list[Unit] = []
        parsed: dict[str, tuple[dict[str, Any], list[Unit]]] = {}
        for key, claim in list(self.claims.objects.items()):
            known = self._units.get(key)
            if known is not None and known[0] is claim:
                found = known[1]
            elif (claim.get("metadata") or {}).get("deletionTimestamp") and not (
                    claim.get("status") or {}).get("allocation"):
                found = []
            else:
                found = units(claim, self.ident.driver)
            parsed[key] = (claim, found)
            out.extend(found)
        self._units = parsed
        self._live = (seen, out)
        return out

    def held_blocks(self) -> set[str]:
        """Blocks allocated to a live claim (whatever their attach state)."""
        held = set()
        for unit in self.live_units():
            if (block := self.block_for(unit.device)) is not None:
                held.add(block.uri)
        return held

    def quarantined(self, now: float | None = None) -> set[str]:
        now = time.time() if now is None else now
        for name in [n for n, until in self.quarantine.items() if until <= now]:
            del self.quarantine[name]
        return set(self.quarantine)

    def system_lock(self, uri: str) -> asyncio.Lock:
        return self.system_locks.setdefault(uri, asyncio.Lock())


def _same_block(a: Block, b: Block) -> bool:
    return a is b or (a == b and a.attributes == b.attributes and a.capacity == b.capacity)
