"""Carrying out expansion and reduction of host servers: plan, reserve, switch, commit.

1. In one transaction: plan against the documents as they are (so two clients racing for
   one block cannot both win) and mark the block ``Composing``.
2. Ask the driver to bind or unbind, serialized per host.
3. In one transaction: the block ``Composed`` (or ``Unused``), the links both ways, the
   pools. If the driver failed, the block gets its previous state back instead.

The whole operation runs shielded from the client's request, so a client hanging up
cannot leave a block half-composed. On start, :meth:`Composer.recover` settles blocks a
crash left ``Composing`` and replays the bindings into the driver (idempotently).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import defaultdict
from typing import Any

from ..composition import planner
from ..drivers.contract import BindingDriver, DeviceBusy, DriverError, DriverTimeout
from ..protocol.errors import RedfishError
from ..store import Store, Transaction
from . import uris
from .fabrics import sync_zones
from .pool import refresh_pools

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
        self._host_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

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

    def _blocks_now(self) -> dict[str, dict[str, Any]]:
        return {u: d for u in self._store.members(uris.RESOURCE_BLOCKS)
                if (d := self._store.doc(u)) is not None}

    def _blocks(self, tx: Transaction) -> dict[str, dict[str, Any]]:
        return {u: d for u in self._store.members(uris.RESOURCE_BLOCKS)
                if (d := tx.get(u)) is not None}

    async def change(self, actor: str | None, system_uri: str, block_uri: str, *,
                     attach: bool, etags: dict[str, str | None] | None = None) -> None:
        """Attach (or detach) the block's device to (from) the system; raises RedfishError."""
        task = asyncio.ensure_future(self._change(actor, system_uri, block_uri, attach,
                                                  etags or {}))
        await asyncio.shield(task)

    async def _change(self, actor, system_uri, block_uri, attach, etags) -> None:
        system = self._store.doc(system_uri)
        if system is None:
            raise RedfishError.of(404, "ResourceMissingAtURI", system_uri)
        async with self._host_locks[system["Id"]]:
            async with self._store.transaction(actor) as tx:
                if not all(_etag_matches(self._store, u, t) for u, t in etags.items()):
                    raise RedfishError.of(428, "PreconditionFailed")
                system = tx.get(system_uri)
                blocks = self._blocks(tx)
                plan = planner.plan_add if attach else planner.plan_remove
                step = plan(system, block_uri, blocks)
                before = blocks[step.block_uri]
                # What is under way is kept with the block, for recovery after a crash.
                intent = {"composing": {"host": step.host_id, "attach": attach,
                                        "system": step.system_uri}}
                tx.put(step.block_uri, planner.with_state(before, "Composing"), intent)
            try:
                await self._bind(step.device_id, step.host_id, attach)
            except DriverError as e:
                log.warning("driver refused", extra={"block": step.device_id,
                                                     "host": step.host_id, "error": str(e)})
                async with self._store.transaction(actor) as tx:
                    tx.put(step.block_uri, before, {})
                raise _driver_error(e, step.device_id) from None
            async with self._store.transaction(actor) as tx:
                self._commit(tx, step, before)
            log.info("attached" if attach else "detached",
                     extra={"block": step.device_id, "host": step.host_id})

    def _commit(self, tx: Transaction, step: planner.Step, before: dict[str, Any]) -> None:
        system = tx.get(step.system_uri) or {}
        links = system.setdefault("Links", {})
        attached = [b for b in links.get("ResourceBlocks", [])
                    if b["@odata.id"] != step.block_uri]
        if step.attach:
            attached.append({"@odata.id": step.block_uri})
            tx.put(step.block_uri, planner.composed(before, step.system_uri), {})
        else:
            tx.put(step.block_uri, planner.released(before), {})
        links["ResourceBlocks"] = attached
        tx.put(step.system_uri, system)
        refresh_pools(tx, self._store.members(uris.RESOURCE_BLOCKS))
        sync_zones(tx, self._store)

    async def compose(self, actor: str | None, name: str, block_uris: list[str],
                      system_doc) -> str:
        """A new system from a compute block and device blocks; returns its URI.
        ``system_doc(uri, compute_block_doc, block_uris)`` builds the system document."""
        task = asyncio.ensure_future(self._compose(actor, name, block_uris, system_doc))
        return await asyncio.shield(task)

    async def _compose(self, actor, name, block_uris, system_doc) -> str:
        system_uri = f"{uris.SYSTEMS}/composed-{uuid.uuid4().hex[:8]}"
        async with self._store.transaction(actor) as tx:
            blocks = self._blocks(tx)
            compute, devices = planner.plan_compose(block_uris, blocks)
            before = {v.uri: blocks[v.uri] for v in (compute, *devices)}
            intent = {"host": compute.id, "attach": True, "system": system_uri}
            for uri, doc in before.items():
                tx.put(uri, planner.with_state(doc, "Composing"), {"composing": intent})
        async with self._host_locks[compute.id]:
            done: list[str] = []
            try:
                for device in devices:
                    await self._bind(device.id, compute.id)
                    done.append(device.id)
            except DriverError as e:
                for device_id in reversed(done):
                    with contextlib.suppress(DriverError):
                        await self._unbind(device_id, compute.id)
                async with self._store.transaction(actor) as tx:
                    for uri, doc in before.items():
                        tx.put(uri, doc, {})
                raise _driver_error(e, device.id) from None
            async with self._store.transaction(actor) as tx:
                ordered = [compute.uri, *(d.uri for d in devices)]
                tx.create(system_uri, system_doc(system_uri, before[compute.uri], ordered, name))
                for uri, doc in before.items():
                    tx.put(uri, planner.composed(doc, system_uri), {})
                refresh_pools(tx, self._store.members(uris.RESOURCE_BLOCKS))
                sync_zones(tx, self._store)
        log.info("composed", extra={"system": system_uri, "blocks": len(before)})
        return system_uri

    async def decompose(self, actor: str | None, system_uri: str) -> None:
        """Detach every device of a composed system, free its blocks, delete it."""
        await asyncio.shield(asyncio.ensure_future(self._decompose(actor, system_uri)))

    async def _decompose(self, actor, system_uri) -> None:
        async with self._store.transaction(actor) as tx:
            system = tx.get(system_uri)
            if system is None:
                raise RedfishError.of(404, "ResourceMissingAtURI", system_uri)
            blocks = self._blocks(tx)
            host = planner.host_block(system, blocks)
            linked = [b["@odata.id"] for b in system["Links"].get("ResourceBlocks", [])]
            before = {u: blocks[u] for u in linked if u in blocks}
            for doc in before.values():
                if doc["CompositionStatus"]["CompositionState"] == "Composing":
                    raise planner.refuse(409, "ResourceBlockInUse", doc["Id"])
            intent = {"host": host.id, "attach": False, "system": system_uri}
            for uri, doc in before.items():
                tx.put(uri, planner.with_state(doc, "Composing"), {"composing": intent})
        async with self._host_locks[host.id]:
            done: list[str] = []
            devices = [d["Id"] for u, d in before.items() if u != host.uri]
            try:
                for device_id in devices:
                    await self._unbind(device_id, host.id)
                    done.append(device_id)
            except DriverError as e:
                for device_id in reversed(done):
                    with contextlib.suppress(DriverError):
                        await self._bind(device_id, host.id)
                async with self._store.transaction(actor) as tx:
                    for uri, doc in before.items():
                        tx.put(uri, doc, {})
                raise _driver_error(e, device_id) from None
            async with self._store.transaction(actor) as tx:
                tx.delete(system_uri)
                for uri, doc in before.items():
                    tx.put(uri, planner.released(doc), {})
                refresh_pools(tx, self._store.members(uris.RESOURCE_BLOCKS))
                sync_zones(tx, self._store)
        log.info("decomposed", extra={"system": system_uri})

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
            try:
                if "Compute" in block.get("ResourceBlockType", ()):
                    pass  # a sled is not bound to anything; only its state settles
                elif intent["attach"]:
                    await self._unbind(block["Id"], intent["host"])
                else:
                    await self._bind(block["Id"], intent["host"])
            except DriverError as e:
                log.error("cannot settle an interrupted composition",
                          extra={"block": uri, "error": str(e)})
                continue
            async with self._store.transaction("service") as tx:
                if intent["attach"]:
                    settled = planner.released(block)
                else:
                    settled = planner.composed(block, intent["system"])
                tx.put(uri, settled, {})
                refresh_pools(tx, self._store.members(uris.RESOURCE_BLOCKS))
                sync_zones(tx, self._store)
            log.warning("settled an interrupted composition", extra={"block": uri})
        for uri in self._store.members(uris.RESOURCE_BLOCKS):
            block = self._store.doc(uri) or {}
            if "ComputerSystem" in block.get("ResourceBlockType", ()):
                continue
            systems = block.get("Links", {}).get("ComputerSystems", [])
            if not systems:
                continue
            system = self._store.doc(systems[0]["@odata.id"]) or {}
            try:
                host = planner.driver_host(
                    system, planner.host_block(system, self._blocks_now()))
            except RedfishError:
                log.error("composed block without a host", extra={"block": uri})
                continue
            if "Compute" in block.get("ResourceBlockType", ()):
                continue
            try:
                await self._bind(block["Id"], host)
            except DriverError as e:
                log.error("driver cannot restore a binding",
                          extra={"block": uri, "host": host, "error": str(e)})
