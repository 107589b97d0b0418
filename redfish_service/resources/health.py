"""Device health from the driver's events, applied to the documents.

A driver that is an :class:`~redfish_service.drivers.contract.EventSource` reports devices
that fail, vanish, come back or lose their link. :class:`HealthMonitor` keeps the latest
condition of every device that is not nominal and makes the documents agree with it:

* the device's ResourceBlock, the resource inside it and its fabric Endpoints get a
  ``Status`` (absent: ``Absent``/``Critical``; failed: ``UnavailableOffline``/``Critical``;
  link down: ``UnavailableOffline``/``Warning``);
* a free block that is not nominal becomes ``Unavailable`` (it leaves the FreePool, so no
  composition can take it) and ``Unused`` again when it is nominal; a composed block stays
  composed (the admin decides whether to decompose), and its system's ``Status.Health``
  and ``HealthRollup`` show the worst health of its blocks.

Each event is applied in one transaction. The composition writes blocks too (it restores
or releases a block from the document it read before calling the driver), so the monitor
also watches the store and settles any block or system a composition touched: a failed
device released from its system lands in ``Unavailable``, not in the FreePool.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

from ..composition import planner
from ..drivers.contract import NOMINAL, DeviceCondition, DriverEvent, EventSource
from ..store import Change, Store, Transaction
from . import uris
from .fabrics import FABRICS
from .pool import refresh_pools

log = logging.getLogger("redfish_service.health")

ACTOR = "health"  # the actor of the monitor's own transactions
_RANK = {"OK": 0, "Warning": 1, "Critical": 2}
# Properties of a device block that list the resources inside it.
_CONTAINED = ("Processors", "Drives", "Memory", "NetworkInterfaces")


def device_status(condition: DeviceCondition) -> dict[str, str]:
    """The Redfish ``Status`` of a device in ``condition`` (absent beats failed beats
    link down)."""
    if not condition.present:
        return {"State": "Absent", "Health": "Critical"}
    if condition.failed:
        return {"State": "UnavailableOffline", "Health": "Critical"}
    if not condition.link_up:
        return {"State": "UnavailableOffline", "Health": "Warning"}
    return {"State": "Enabled", "Health": "OK"}


def _is_device_block(doc: dict[str, Any]) -> bool:
    types = set(doc.get("ResourceBlockType", ()))
    return bool(types) and types <= planner.DEVICE_TYPES


def _block_state(doc: dict[str, Any], condition: DeviceCondition) -> str:
    """The composition state a block should have: only free blocks change, a composed
    (or composing) one keeps its state so no system silently loses a device."""
    state = doc.get("CompositionStatus", {}).get("CompositionState", "")
    if state == "Unused" and not condition.nominal:
        return "Unavailable"
    if state == "Unavailable" and condition.nominal:
        return "Unused"
    return state


def _block_wants(doc: dict[str, Any], condition: DeviceCondition) -> bool:
    """Whether a block disagrees with its device's condition (cheap; no copies)."""
    return doc.get("Status") != device_status(condition) or (
        _block_state(doc, condition)
        != doc.get("CompositionStatus", {}).get("CompositionState", ""))


def _system_status(status: dict[str, Any], healths: Iterable[str]) -> dict[str, Any]:
    """A system's Status with Health and HealthRollup the worst of its blocks';
    ``HealthRollup`` is shown only while something is wrong."""
    worst = max(healths, key=lambda h: _RANK.get(h, 0), default="OK")
    out = {k: v for k, v in status.items() if k != "HealthRollup"}
    out["Health"] = worst
    if worst != "OK":
        out["HealthRollup"] = worst
    return out


def _put_status(tx: Transaction, uri: str, status: dict[str, str]) -> None:
    doc = tx.get(uri)
    if doc is not None and doc.get("Status") != status:
        doc["Status"] = status
        tx.put(uri, doc)


def settle_block(tx: Transaction, store: Store, uri: str, condition: DeviceCondition
                 ) -> list[str]:
    """Make a device block, what it contains and its endpoints agree with ``condition``;
    returns the systems the block is in (their health rolls up from it)."""
    doc = tx.get(uri)
    if doc is None or not _is_device_block(doc):
        return []
    status = device_status(condition)
    state = _block_state(doc, condition)
    if doc.get("Status") != status or state != doc["CompositionStatus"]["CompositionState"]:
        doc["Status"] = status
        doc["CompositionStatus"] = {**doc["CompositionStatus"], "CompositionState": state}
        tx.put(uri, doc)
    for prop in _CONTAINED:
        for link in doc.get(prop, ()):
            _put_status(tx, link["@odata.id"], status)
    for fabric in store.members(FABRICS):
        _put_status(tx, f"{fabric}/Endpoints/{doc['Id']}", status)
    return [s["@odata.id"] for s in doc.get("Links", {}).get("ComputerSystems", ())]


def settle_system(tx: Transaction, uri: str) -> None:
    system = tx.get(uri)
    if system is None or "Status" not in system:
        return
    healths = []
    for link in system.get("Links", {}).get("ResourceBlocks", ()):
        block = tx.get(link["@odata.id"]) or {}
        healths.append(block.get("Status", {}).get("Health", "OK"))
    status = _system_status(system["Status"], healths)
    if status != system["Status"]:
        system["Status"] = status
        tx.put(uri, system)


def _system_wants(store: Store, uri: str) -> bool:
    system = store.doc(uri) or {}
    if "Status" not in system:
        return False
    healths = [(store.doc(b["@odata.id"]) or {}).get("Status", {}).get("Health", "OK")
               for b in system.get("Links", {}).get("ResourceBlocks", ())]
    return _system_status(system["Status"], healths) != system["Status"]


def _direct_member(uri: str, collection: str) -> bool:
    return uri.startswith(collection + "/") and "/" not in uri[len(collection) + 1:]


class HealthMonitor:
    """Consumes a driver's events and keeps the documents in step with them."""

    def __init__(self, store: Store, source: EventSource) -> None:
        self._store = store
        self._source = source
        self._conditions: dict[str, DeviceCondition] = {}
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._unsubscribe: Callable[[], None] | None = None

    def condition(self, device_id: str) -> DeviceCondition:
        return self._conditions.get(device_id, NOMINAL)

    async def start(self) -> None:
        """Subscribe, then read the conditions as they are (so nothing falls between),
        settle every block and system once (a restart forgets nothing), then follow."""
        events = self._source.events()
        self._conditions = dict(await self._source.conditions())
        blocks = self._store.members(uris.RESOURCE_BLOCKS)
        systems = self._store.members(uris.SYSTEMS)
        await self._apply(set(blocks) | set(systems))
        self._unsubscribe = self._store.subscribe(self._on_changes)
        self._tasks = [asyncio.create_task(self._pump(events), name="health-events"),
                       asyncio.create_task(self._settler(), name="health-settler")]

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def _pump(self, events: AsyncIterator[DriverEvent]) -> None:
        try:
            async for event in events:
                await self._on_event(event)
        except Exception:  # a driver bug: say so rather than die unnoticed
            log.exception("the driver's event stream failed; device health is frozen")
        finally:
            close = getattr(events, "aclose", None)
            if close is not None:
                await close()

    async def _on_event(self, event: DriverEvent) -> None:
        block = f"{uris.RESOURCE_BLOCKS}/{event.device_id}"
        if self._store.get(block) is None:
            log.warning("event for an unknown device", extra={"device": event.device_id})
            return
        if event.condition.nominal:
            self._conditions.pop(event.device_id, None)
        else:
            self._conditions[event.device_id] = event.condition
        log.info("device condition", extra={"device": event.device_id,
                                            "event": str(event.kind)})
        try:
            await self._apply({block})
        except Exception:  # the monitor must outlive one bad event
            log.exception("cannot apply a device event", extra={"device": event.device_id})

    def _on_changes(self, changes: list[Change]) -> None:
        """Store subscriber: blocks and systems someone else changed get settled."""
        for change in changes:
            if change.actor == ACTOR or change.op == "delete":
                continue
            if _direct_member(change.uri, uris.RESOURCE_BLOCKS) or _direct_member(
                    change.uri, uris.SYSTEMS):
                self._dirty.add(change.uri)
        if self._dirty:
            self._wake.set()

    async def _settler(self) -> None:
        while True:
            await self._wake.wait()
            dirty, self._dirty = self._dirty, set()
            try:
                await self._apply(dirty)
            except Exception:
                log.exception("cannot settle device health")
            finally:
                if not self._dirty:
                    self._wake.clear()

    def _wanted(self, touched: set[str]) -> tuple[list[str], set[str]]:
        """The blocks and systems among ``touched`` (and the systems of those blocks)
        that disagree with the conditions, read without copying or locking."""
        blocks, systems = [], set()
        for uri in sorted(touched):
            doc = self._store.doc(uri)
            if doc is None:
                continue
            if _direct_member(uri, uris.SYSTEMS):
                systems.add(uri)
            elif _is_device_block(doc):
                if _block_wants(doc, self.condition(doc["Id"])):
                    blocks.append(uri)
                systems.update(s["@odata.id"]
                               for s in doc.get("Links", {}).get("ComputerSystems", ()))
        return blocks, {s for s in systems if _system_wants(self._store, s)}

    async def _apply(self, touched: set[str]) -> None:
        blocks, systems = self._wanted(touched)
        if not blocks and not systems:
            return
        async with self._store.transaction(ACTOR) as tx:
            for uri in blocks:
                doc = tx.get(uri) or {}
                systems.update(settle_block(tx, self._store, uri,
                                            self.condition(doc.get("Id", ""))))
            for uri in sorted(systems):
                settle_system(tx, uri)
            refresh_pools(tx, self._store.members(uris.RESOURCE_BLOCKS))
