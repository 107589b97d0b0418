"""The bridge: caches and the Redfish pool kept warm on every replica; publishing,
binding and releasing done by the leader only.

Level-triggered: every change (a claim, a node, a Redfish event, a timer) just marks work
due, and the work recomputes from the current state. The periodic resync puts every claim
through the binder again, so nothing depends on having seen a particular event.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from .binder import Binder
from .config import Settings
from .inventory import BLOCKS, SYSTEMS, ZONES, PoolChanged, read_pool, update_pool
from .kevents import Recorder
from .kube import Kube
from .leader import LeaderElector
from .observe import Metrics
from .publisher import Publisher
from .redfish import Redfish
from .reflector import Reflector, key_of
from .releaser import Releaser
from .slices import Identity, read_quarantine
from .state import RESOURCE, BridgeState
from .workqueue import WorkQueue

log = logging.getLogger("bridge")


class Trigger:
    """A level: set any number of times, taken once."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self, within_s: float | None = None) -> bool:
        try:
            await asyncio.wait_for(self._event.wait(), within_s)
        except TimeoutError:
            return False
        self._event.clear()
        return True


class Bridge:
    def __init__(self, settings: Settings, kube: Kube, redfish: Redfish) -> None:
        self.settings = settings
        self.kube = kube
        self.rf = redfish
        self.metrics = Metrics()
        ident = Identity(settings.driver_name, frozenset(settings.device_types))
        self.state = BridgeState(
            settings, ident,
            claims=Reflector(kube, f"{RESOURCE}/resourceclaims", on_change=self._claim_changed),
            slices=Reflector(kube, f"{RESOURCE}/resourceslices",
                             field_selector=f"spec.driver={ident.driver}"),
            nodes=Reflector(kube, "/api/v1/nodes", on_change=self._node_changed))
        self.recorder = Recorder(kube, settings.identity)
        self.publisher = Publisher(self.state, kube, self.metrics)
        self.binder = Binder(self.state, kube, redfish, self.metrics, self.recorder,
                             on_changed=self.pool_changed,
                             concurrency=settings.attach_concurrency)
        self.releaser = Releaser(self.state, redfish, self.metrics,
                                 on_changed=self.pool_changed)
        self.queue = WorkQueue(self._reconcile, workers=settings.attach_concurrency)
        self.elector = LeaderElector(
            kube, settings.namespace, settings.lease_name, settings.identity,
            lease_duration_s=settings.lease_duration_s,
            renew_deadline_s=settings.renew_deadline_s,
            retry_period_s=settings.retry_period_s)
        self._pool_due, self._publish_due, self._release_due = Trigger(), Trigger(), Trigger()
        # blocks and systems to read again (None: the whole pool), see pool_changed
        self._stale: set[str] | None = None
        self.pool_errors = 0

    # -- change handlers (cheap; they only mark work due) --------------------------------
    @property
    def leading(self) -> bool:
        return self.elector.leading.is_set()

    def _claim_changed(self, _kind: str, claim: dict[str, Any]) -> None:
        if self.leading:
            self.queue.add(key_of(claim))
            self.metrics.queue_depth.set(len(self.queue))
        self._publish_due.set()
        self._release_due.set()

    def _node_changed(self, _kind: str, _node: dict[str, Any]) -> None:
        self._publish_due.set()

    def pool_changed(self, *uris: str) -> None:
        """The pool changed: these blocks and systems (none named: anything)."""
        if not uris:
            self._stale = None
        elif self._stale is not None:
            self._stale.update(uris)
        self._pool_due.set()

    async def _reconcile(self, key: str) -> None:
        await self.binder.reconcile(key)
        self.metrics.queue_depth.set(len(self.queue))

    # -- readiness ------------------------------------------------------------------------
    def ready(self) -> tuple[bool, str]:
        for name in ("claims", "slices", "nodes"):
            if not getattr(self.state, name).synced.is_set():
                return False, f"{name} cache not synced"
        if self.state.pool is None:
            return False, "Redfish pool not read yet"
        if time.time() - self.state.pool_read_at > 3 * self.settings.resync_interval_s + 10:
            return False, "Redfish pool stale: the manager does not answer"
        return True, "ready"

    # -- loops ---------------------------------------------------------------------------
    async def _pool_loop(self) -> None:
        """Read the pool whole at start, every ``resync_interval_s`` and whenever a change
        cannot be applied piecemeal; otherwise read again only the blocks and systems
        named as changed (by the manager's events, or by our own attaches)."""
        whole = True
        while True:
            stale, self._stale = self._stale, set()
            try:
                pool = self.state.pool
                if whole or stale is None or pool is None:
                    pool = await read_pool(self.rf, self.state.pcie_functions)
                elif stale:
                    try:
                        pool = await update_pool(self.rf, pool, stale,
                                                 self.state.pcie_functions)
                    except PoolChanged as e:
                        log.debug("reading the pool whole: %s", e)
                        pool = await read_pool(self.rf, self.state.pcie_functions)
                if pool is not self.state.pool:
                    self.state.set_pool(pool)
                    self._publish_due.set()
                    self._release_due.set()
                self.pool_errors = 0
            except Exception as e:
                self._stale = None  # whole, next time
                self.pool_errors += 1
                log.warning("reading the Redfish pool failed: %s", e)
                await asyncio.sleep(min(0.5 * 2 ** self.pool_errors, 30))
                continue
            await asyncio.sleep(self.settings.pool_read_min_interval_s)
            whole = not await self._pool_due.wait(self.settings.resync_interval_s)

    def _note(self, event: dict[str, Any]) -> None:
        """Which parts of the pool an event's records say changed."""
        for record in event.get("Events") or [{}]:
            origin = (record.get("OriginOfCondition") or {}).get("@odata.id") \
                if isinstance(record, dict) else None
            if not isinstance(origin, str) or str(record.get("MessageId", "")).endswith(
                    "EventBufferExceeded"):
                self.pool_changed()  # we may have missed something: read it whole
                continue
            for top in (BLOCKS, SYSTEMS):  # a block or system, or something inside one
                if origin.startswith(top + "/"):
                    self.pool_changed("/".join(origin.split("/")[:top.count("/") + 2]))
                    break
            else:
                if origin.rstrip("/") in (BLOCKS, SYSTEMS) or origin.startswith(ZONES):
                    self.pool_changed()  # members or zones: only read whole
                # anything else (pools, fabrics, tasks...) is not part of the pool

    async def _redfish_events(self) -> None:
        """Server-sent events from the manager mark the pool stale at once; without them
        the periodic read still catches every change."""
        delay = 1.0
        while True:
            try:
                service = await self.rf.get("/redfish/v1/EventService")
                uri = service.get("ServerSentEventUri")
                if not uri or service.get("ServiceEnabled") is False:
                    log.info("the manager offers no server-sent events; polling only")
                    return
                self.pool_changed()  # (re)connecting: what happened while away is unknown
                async for event in self.rf.events(uri):
                    delay = 1.0
                    self._note(event)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.info("Redfish event stream interrupted: %s", e)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    async def _publish_loop(self) -> None:
        await self.state.slices.synced.wait()
        while True:
            await self._publish_due.wait(self.settings.resync_interval_s)
            if self.state.pool is None or not self.state.nodes.synced.is_set():
                continue
            try:
                await self.publisher.sync()
            except Exception as e:
                log.warning("publishing slices failed: %s", e)
                await asyncio.sleep(1.0)
                self._publish_due.set()

    async def _release_loop(self) -> None:
        while True:
            due = self.releaser.next_due()
            wait = self.settings.resync_interval_s if due is None else min(
                due + 0.01, self.settings.resync_interval_s)
            await self._release_due.wait(wait)
            try:
                await self.releaser.sync()
            except Exception as e:
                log.warning("releasing devices failed: %s", e)
                await asyncio.sleep(1.0)

    async def _resync_loop(self) -> None:
        while True:
            for claim in self.state.claims.values():
                self.queue.add(key_of(claim))
            self.metrics.queue_depth.set(len(self.queue))
            await asyncio.sleep(self.settings.resync_interval_s)

    async def lead(self) -> None:
        """What only the leader does."""
        self.metrics.leader.set(1)
        try:
            await self.state.slices.synced.wait()
            await self.state.claims.synced.wait()
            for name, until in read_quarantine(self.state.ident,
                                               self.state.slices.values()).items():
                self.state.quarantine[name] = max(self.state.quarantine.get(name, 0), until)
            async with asyncio.TaskGroup() as group:
                group.create_task(self.queue.run())
                group.create_task(self._publish_loop())
                group.create_task(self._release_loop())
                group.create_task(self._resync_loop())
        finally:
            self.metrics.leader.set(0)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            for reflector in (self.state.claims, self.state.slices, self.state.nodes):
                group.create_task(reflector.run())
            group.create_task(self._pool_loop())
            group.create_task(self._redfish_events())
            group.create_task(self.elector.run(self.lead))
