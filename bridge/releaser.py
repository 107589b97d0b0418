"""Detaches what no claim holds any more.

A block of a type the bridge manages, composed into the system of a Kubernetes node, is
wanted only while a live claim allocation puts that device on that node. Anything else
(the claim deallocated or deleted, a failed attach the scheduler gave up on, an attach
that finished after a crash nobody wanted any more) is detached once it has stayed
unwanted for ``detach_grace_s``, and then offered again. The grace clock is in memory: a
restart only delays a detach, never hastens one.
"""

from __future__ import annotations

import logging
import time

from .inventory import Block, System
from .observe import Metrics
from .redfish import Redfish, RedfishError
from .state import BridgeState

log = logging.getLogger("bridge.releaser")


class Releaser:
    def __init__(self, state: BridgeState, redfish: Redfish, metrics: Metrics, *,
                 on_changed=None) -> None:
        self.state = state
        self.rf = redfish
        self.metrics = metrics
        self.on_changed = on_changed or (lambda *uris: None)
        self._unwanted_since: dict[str, float] = {}

    def wanted(self) -> set[tuple[str, str]]:
        """(block URI, system URI) pairs some live claim allocation asks for."""
        out = set()
        for unit in self.state.live_units():
            block = self.state.block_for(unit.device)
            system = self.state.system_for_node(unit.node)
            if block is not None and system is not None:
                out.add((block.uri, system.uri))
        return out

    def candidates(self) -> list[tuple[Block, System]]:
        pool = self.state.pool
        if pool is None:
            return []
        node_systems = {s.uri: s for s in self.state.node_systems().values()}
        out = []
        for block in pool.blocks.values():
            if block.type not in self.state.ident.device_types:
                continue
            for uri in block.systems:
                if uri in node_systems:
                    out.append((block, node_systems[uri]))
        return out

    async def sync(self) -> int:
        """Detach what has been unwanted long enough; returns how many were detached."""
        if not (self.state.claims.synced.is_set() and self.state.nodes.synced.is_set()):
            return 0
        wanted = self.wanted()
        now = time.monotonic()
        seen: set[str] = set()
        detached = 0
        for block, system in self.candidates():
            if (block.uri, system.uri) in wanted or block.uri in self.state.busy:
                continue
            seen.add(block.uri)
            since = self._unwanted_since.setdefault(block.uri, now)
            if now - since < self.state.settings.detach_grace_s:
                continue
            if await self._detach(block, system):
                detached += 1
        for uri in set(self._unwanted_since) - seen:
            del self._unwanted_since[uri]
        return detached

    def next_due(self) -> float | None:
        """Seconds until the earliest pending detach is due (None: nothing pending)."""
        if not self._unwanted_since:
            return None
        grace = self.state.settings.detach_grace_s
        return max(0.0, min(self._unwanted_since.values()) + grace - time.monotonic())

    async def _detach(self, block: Block, system: System) -> bool:
        if not system.remove_target:
            return False
        self.state.busy.add(block.uri)
        try:
            async with self.state.system_lock(system.uri):
                # Look again: an attach for a new claim may have been decided meanwhile.
                if (block.uri, system.uri) in self.wanted():
                    return False
                await self.rf.operation("POST", system.remove_target,
                                        {"ResourceBlock": {"@odata.id": block.uri}})
        except RedfishError as e:
            log.warning("detach failed", extra={"block": block.uri, "system": system.uri,
                                                "detail": str(e)})
            return False
        finally:
            self.state.busy.discard(block.uri)
        self._unwanted_since.pop(block.uri, None)
        self.metrics.detaches.inc()
        log.info("detached", extra={"block": block.uri, "system": system.uri})
        self.on_changed(block.uri, system.uri)
        return True
