"""Carrying out composition changes: plan, mark, switch, commit (all or nothing).

1. In one transaction: plan the whole change on a working copy
   (:class:`~redfish_service.composition.batch.View`) against the documents as they are
   (so two clients racing for one block cannot both win) and mark every block it touches
   ``Composing``, with the intent recorded for recovery.
2. Ask the driver for each bind or unbind in order, each abandoned after a timeout.
3. In one transaction: blocks, systems created or deleted, links both ways, pools,
   fabric. If the driver failed, the steps done are undone and the blocks get their
   previous state back instead.

Operations naming a system are serialized per system. The whole operation runs shielded
from the client's request, so a client hanging up cannot leave a block half-composed. On
start, :meth:`Composer.recover` settles blocks a crash left ``Composing`` and replays the
bindings into the driver (idempotently).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from ..composition import planner
from ..composition.batch import Batch, SystemBuilder, View
from ..drivers.contract import BindingDriver, DeviceBusy, DriverError, DriverTimeout
from ..protocol.errors import RedfishError
from ..store import GroupCommit, Store, Transaction
from . import reservations, uris
from .fabrics import sync_zones
from .host_view import COMPOSED
from .pool import ZONES, refresh_pools

T = TypeVar("T")
# the block properties that hold the resources a constrained request is matched against
CONTAINED = ("Processors", "Memory", "Drives", "NetworkInterfaces", "EthernetInterfaces")

log = logging.getLogger("redfish_service.composition")


def _driver_error(e: DriverError, block_id: str) -> RedfishError:
    if isinstance(e, DeviceBusy):
        return planner.refuse(409, "ResourceBlockInUse", block_id)
    if e.transient:
        return RedfishError.of(503, "ServiceTemporarilyUnavailable", "5",
                               headers={"Retry-After": "5"})
    return planner.refuse(409, "ResourceBlockInvalid", block_id)


def _etag_matches(store: Store, uri: str, tag: str | None) -> bool:
    entry = store.get(uri)
    return tag is None or (entry is not None and tag in (entry.etag, f"W/{entry.etag}"))


class Composer:
    def __init__(self, store: Store, driver: BindingDriver, *, timeout_s: float = 30.0) -> None:
        self._store = store
        self._driver = driver
        self._timeout_s = timeout_s
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)  # per system
        self._expirer: asyncio.Task[None] | None = None
        # The two transactions of every operation (marking its blocks Composing, then
        # committing the result) are grouped with concurrent operations' (see store.group).
        self._marks = GroupCommit(store, self._pools)
        self._commits = GroupCommit(store, self._views)

    async def start(self) -> None:
        self._expirer = asyncio.create_task(self._expire_reservations())

    async def stop(self) -> None:
        if self._expirer is not None:
            self._expirer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._expirer

    async def _expire_reservations(self) -> None:
        """For the service's life: end each reservation when its time is up (at most a
        second late; every composition also ends the due ones before it plans)."""
        while True:
            due = reservations.next_expiry(self._store)
            await asyncio.sleep(1.0 if due is None else min(1.0, max(0.0, due - time.time())))
            try:
                await reservations.expire(self._store)
            except Exception:
                log.exception("could not end expired reservations")

    async def _bind(self, device_id: str, host_id: str, attach: bool = True) -> None:
        """One driver operation, abandoned after the timeout: a driver that hangs then
        gets an unbind (attach) so the device is not left half-attached."""
        op = self._driver.bind if attach else self._driver.unbind
        try:
            await asyncio.wait_for(op(device_id, host_id), self._timeout_s)
        except TimeoutError:
            if attach:
                with contextlib.suppress(DriverError, TimeoutError):
                    await asyncio.wait_for(self._driver.unbind(device_id, host_id),
                                           self._timeout_s)
            raise DriverTimeout(f"{device_id} on {host_id}: no answer in "
                                f"{self._timeout_s:g} s") from None

    async def _unbind(self, device_id: str, host_id: str) -> None:
        await self._bind(device_id, host_id, attach=False)

    def _blocks_now(self, read: Callable[[str], dict[str, Any] | None] | None = None,
                    ) -> dict[str, dict[str, Any]]:
        read = read or self._store.doc
        return {u: d for u in planner.link_ids((read(uris.RESOURCE_BLOCKS) or {}).get("Members"))
                if (d := read(u)) is not None}

    # -- what the planner sees -----------------------------------------------------------

    def view(self, tx: Transaction, *, mine: frozenset[str] = frozenset()) -> View:
        """A working copy of the composition state as ``tx`` sees it (the committed
        documents and what earlier steps of its group staged); it copies nothing, and
        the planner never changes what it reads."""
        read = tx.peek
        service = read(uris.COMPOSITION_SERVICE) or {}
        blocks = self._blocks_now(read)

        def contents(uri: str) -> dict[str, list[dict[str, Any]]]:
            block = read(uri) or {}
            return {prop: [d for link in planner.link_ids(block.get(prop)) if (d := read(link))]
                    for prop in CONTAINED if prop in block}

        # each zone with the blocks it lists that exist (a mockup's may list others)
        zones = [(z, [b for b in planner.link_ids(planner.links_of(
                      read(z) or {}).get("ResourceBlocks")) if b in blocks])
                 for z in planner.link_ids((read(ZONES) or {}).get("Members"))]
        return View(blocks, read, zones=zones,
                    contents=contents, reserved_by=reservations.holders(self._store),
                    mine=mine,
                    overprovisioning=bool(service.get("AllowOverprovisioning")),
                    zone_affinity=bool(service.get("AllowZoneAffinity")))

    # -- carrying out a planned batch --------------------------------------------------

    async def run(self, actor: str | None, plan: Callable[[View], T], *,
                  lock: Iterable[str] = (), dry_run: bool = False,
                  mine: frozenset[str] = frozenset(),
                  on_plan: Callable[[Transaction, View], None] | None = None,
                  on_commit: Callable[[Transaction], None] | None = None) -> T:
        """Plan with ``plan(view)`` and carry the batch out, all or nothing.

        ``lock``: systems whose operations must not interleave with this one (taken in
        order, before planning). ``dry_run``: plan only (and ``on_plan`` writes, for a
        reservation). Runs shielded: a client hanging up does not stop it half-way.
        """
        task = asyncio.ensure_future(self._run(actor, plan, sorted(set(lock)), dry_run,
                                               mine, on_plan, on_commit))
        return await asyncio.shield(task)

    async def _run(self, actor, plan, lock, dry_run, mine, on_plan, on_commit):
        await reservations.expire(self._store)
        # Reservations are read from the committed store: a step that makes or applies
        # one is not grouped with others (they could not see its staged writes).
        alone = on_plan is not None or on_commit is not None or bool(mine)

        def mark(tx: Transaction) -> tuple[T, Batch | None]:
            view = self.view(tx, mine=mine)
            result = plan(view)
            batch = view.batch
            if on_plan is not None:
                on_plan(tx, view)
            if dry_run or batch.empty:
                return result, None
            for uri, doc in batch.before.items():
                if uri in batch.created_blocks:
                    continue  # made in the commit: nothing to mark yet
                # the intent keeps the block as it was: recovery puts it back
                intent = {**batch.intents[uri], "before": doc}
                tx.put(uri, planner.with_state(doc, "Composing"), {"composing": intent})
            return result, batch

        def commit(tx: Transaction) -> None:
            self._commit(tx, batch)
            if on_commit is not None:
                on_commit(tx)

        async with contextlib.AsyncExitStack() as held:
            for system_uri in lock:  # so concurrent steps of one group touch other systems
                await held.enter_async_context(self._locks[system_uri])
            result, batch = await self._marks.run(actor, mark, alone=alone)
            if batch is None:
                return result
            await self._switch(actor, batch)
            await self._commits.run(actor, commit, alone=alone)
        log.info("composition changed", extra={
            "steps": len(batch.steps), "systems_created": list(batch.created),
            "systems_deleted": batch.deleted})
        return result

    async def _switch(self, actor: str | None, batch: Batch) -> None:
        """The driver steps in order; on a failure the ones done are undone in reverse
        and the blocks get their previous state back."""
        done: list[planner.Step] = []
        try:
            for step in batch.steps:
                await self._bind(step.device_id, step.host_id, step.attach)
                done.append(step)
        except DriverError as e:
            log.warning("driver refused", extra={"block": step.device_id,
                                                 "host": step.host_id, "error": str(e)})
            for undo in reversed(done):
                try:
                    await self._bind(undo.device_id, undo.host_id, not undo.attach)
                except DriverError:
                    log.exception("could not undo a driver step",
                                  extra={"block": undo.device_id, "host": undo.host_id})
            async with self._store.transaction(actor) as tx:
                for uri, doc in batch.before.items():
                    if uri not in batch.created_blocks:
                        tx.put(uri, doc, {})
                refresh_pools(tx, self._store.members(uris.RESOURCE_BLOCKS))
            raise _driver_error(e, step.device_id) from None

    def _commit(self, tx: Transaction, batch: Batch) -> None:
        for uri, doc in batch.created.items():
            tx.create(uri, doc, dict(COMPOSED))  # its views are the service's (host_view)
        for uri, doc in batch.created_blocks.items():
            tx.create(uri, doc)
        for uri in batch.deleted_blocks:
            tx.delete(uri)
        for zone_uri, block_uri, add in batch.zone_edits:
            zone = tx.get(zone_uri)
            if zone is None:
                continue
            listed = [{"@odata.id": b} for b in planner.link_ids(
                planner.links_of(zone).get("ResourceBlocks")) if b != block_uri]
            if add:
                listed.append({"@odata.id": block_uri})
            zone["Links"] = {**planner.links_of(zone), "ResourceBlocks": listed}
            tx.put(zone_uri, zone)
        for uri in batch.deleted:
            tx.delete(uri)
        for system_uri, edits in batch.links.items():
            system = tx.get(system_uri)
            if system is None:
                continue
            links = system["Links"] = planner.links_of(system)
            attached = planner.link_ids(links.get("ResourceBlocks"))
            for block_uri, add in edits:
                attached = [b for b in attached if b != block_uri]
                if add:
                    attached.append(block_uri)
            links["ResourceBlocks"] = [{"@odata.id": b} for b in attached]
            tx.put(system_uri, system)
        for uri, doc in batch.after.items():
            if uri not in batch.deleted_blocks:
                tx.put(uri, doc, {})

    def _pools(self, tx: Transaction) -> None:
        """What follows from the blocks' states, once per group of marks (only the
        blocks ``tx`` changed can have moved)."""
        refresh_pools(tx, planner.link_ids((tx.peek(uris.RESOURCE_BLOCKS) or {}).get("Members")),
                      set(tx.staged(uris.RESOURCE_BLOCKS)))

    def _views(self, tx: Transaction) -> None:
        """What follows from the blocks' bindings, once per group of commits. A system's
        own view changes only with it or with a block naming it, before or after."""
        self._pools(tx)
        systems = set(tx.staged(uris.SYSTEMS))
        for uri in tx.staged(uris.RESOURCE_BLOCKS):
            for doc in (self._store.doc(uri), tx.peek(uri)):
                systems.update(planner.systems_of(doc or {}))
        sync_zones(tx, self._store, systems)

    # -- the operations clients ask for --------------------------------------------------

    async def change(self, actor: str | None, system_uri: str, block_uri: str, *,
                     attach: bool, etags: dict[str, str | None] | None = None) -> None:
        """Attach (or detach) the block's device to (from) the system; raises RedfishError."""
        if self._store.doc(system_uri) is None:
            raise RedfishError.of(404, "ResourceMissingAtURI", system_uri)

        def plan(view: View) -> None:
            if not all(_etag_matches(self._store, u, t) for u, t in (etags or {}).items()):
                raise RedfishError.of(428, "PreconditionFailed")
            (view.attach if attach else view.detach)(system_uri, block_uri)

        await self.run(actor, plan, lock=[system_uri])

    async def compose(self, actor: str | None, body: dict[str, Any],
                      system_doc: SystemBuilder) -> str:
        """A new system from the request body (specific, constrained or mixed); its URI.
        ``system_doc(uri, compute_block_doc, block_uris, name)`` builds its document."""
        system_uri = f"{uris.SYSTEMS}/composed-{uuid.uuid4().hex[:8]}"
        await self.run(actor, lambda view: view.compose(system_uri, body, system_doc))
        return system_uri

    async def decompose(self, actor: str | None, system_uri: str) -> None:
        """Detach every device of a composed system, free its blocks, delete it."""
        if self._store.doc(system_uri) is None:
            raise RedfishError.of(404, "ResourceMissingAtURI", system_uri)
        await self.run(actor, lambda view: view.decompose(system_uri), lock=[system_uri])

    async def recover(self) -> None:
        """Settle what a crash interrupted and make the driver agree with the documents.

        An attach that had not committed is undone (unbind, block free); a detach that had
        not committed is undone too (bind again, block still composed). Then every
        composed block is bound again, which a driver treats as a no-op if it already is.
        """
        for uri in self._store.members(uris.RESOURCE_BLOCKS):
            entry = self._store.get(uri)
            if entry is None or not entry.private or "composing" not in entry.private:
                continue
            intent = entry.private["composing"]
            block = entry.doc
            block_id = planner.doc_id(block)
            is_device = planner.block_types(block) <= planner.DEVICE_TYPES
            try:
                # sleds, Expansion blocks and blocks joining or leaving an Expansion
                # block are not bound to anything by this step: only their state settles
                if not is_device or intent.get("host") is None:
                    pass
                elif intent["attach"]:
                    await self._unbind(block_id, intent["host"])
                else:
                    await self._bind(block_id, intent["host"])
            except DriverError as e:
                log.error("cannot settle an interrupted composition",
                          extra={"block": uri, "error": str(e)})
                continue
            async with self._store.transaction("service") as tx:
                if "before" in intent:
                    settled = intent["before"]
                elif intent["attach"]:
                    settled = planner.released(block, intent.get("system"))
                else:
                    settled = planner.composed(block, intent["system"])
                tx.put(uri, settled, {})
                refresh_pools(tx, self._store.members(uris.RESOURCE_BLOCKS))
                sync_zones(tx, self._store)
            log.warning("settled an interrupted composition", extra={"block": uri})
        recorded = self._recorded_bindings()
        for device_id, host in sorted(recorded):
            try:
                await self._bind(device_id, host)
            except DriverError as e:
                log.error("driver cannot restore a binding",
                          extra={"block": device_id, "host": host, "error": str(e)})
        await self._forget_unrecorded(recorded)

    def _recorded_bindings(self) -> set[tuple[str, str]]:
        """(device id, host id) of every binding the documents record (a shared device
        is bound to the host of each of its systems)."""
        blocks = self._blocks_now()
        out: set[tuple[str, str]] = set()
        for uri, block in blocks.items():
            types = planner.block_types(block)
            if not types or not types <= planner.DEVICE_TYPES:
                continue  # only devices are bound
            for system_uri in planner.systems_of(block):
                system = self._store.doc(system_uri)
                if system is None:
                    continue  # a link to a system that is not there binds nothing
                try:
                    out.add((planner.doc_id(block),
                             planner.driver_host(system, planner.host_block(system, blocks))))
                except RedfishError:
                    log.error("composed block without a host", extra={"block": uri})
        return out

    async def _forget_unrecorded(self, recorded: set[tuple[str, str]]) -> None:
        """Unbind what the fabric holds but no document records: the documents are the
        acknowledged truth, and such a binding was never acknowledged to anyone."""
        try:
            bound = await self._driver.bound()
        except DriverError as e:
            log.error("driver cannot list its bindings", extra={"error": str(e)})
            return
        for device_id, host_id in (bound or {}).items():
            if (device_id, host_id) in recorded:
                continue
            try:
                await self._unbind(device_id, host_id)
                log.warning("undid a binding no document records",
                            extra={"block": device_id, "host": host_id})
            except DriverError as e:
                log.error("cannot undo an unrecorded binding",
                          extra={"block": device_id, "host": host_id, "error": str(e)})
