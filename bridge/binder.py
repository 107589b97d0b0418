"""Attaches the devices allocated to claims, and says so in the claim's status.

For each binding unit without a terminal condition: find the node's ComputerSystem,
look at the block in Redfish, attach it (``ComputerSystem.AddResourceBlock``, following a
task monitor) unless it is already there, and only when Redfish shows the block in the
system write ``<driver>/attached=True``. Any failure, a timeout (the attach must end before
the scheduler's binding timeout) or an unmapped node writes ``<driver>/attach-failed=True``
with a reason, after rolling back a half-done attach. Every step is idempotent: after a
crash the same claim is simply reconciled again, and a block already in the system is
never attached a second time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from .claims import Unit, condition, parse_time, status_entry, units, with_conditions
from .kevents import Recorder
from .kube import MERGE_PATCH, Kube, KubeError
from .observe import Metrics
from .redfish import Redfish, RedfishError
from .state import RESOURCE, BridgeState

log = logging.getLogger("bridge.binder")


class AttachFailed(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def claim_path(namespace: str, name: str) -> str:
    return f"{RESOURCE}/namespaces/{namespace}/resourceclaims/{name}"


class Binder:
    def __init__(self, state: BridgeState, kube: Kube, redfish: Redfish, metrics: Metrics,
                 recorder: Recorder, *, on_changed=None, concurrency: int = 32) -> None:
        self.state = state
        self.kube = kube
        self.rf = redfish
        self.metrics = metrics
        self.recorder = recorder
        # the pool changed (these blocks and systems; none: anything): read it, publish
        self.on_changed = on_changed or (lambda *uris: None)
        self._gate = asyncio.Semaphore(concurrency)
        self._first_seen: dict[str, float] = {}

    async def reconcile(self, key: str) -> None:
        claim = self.state.claims.get(key)
        log.debug("reconcile %s (%s)", key, "present" if claim else "gone")
        if claim is None:
            return
        settings = self.state.settings
        for unit in units(claim, self.state.ident.driver):
            entry = status_entry(claim, self.state.ident.driver, unit)
            if "True" in (condition(entry, self.state.ident.attached),
                          condition(entry, self.state.ident.failed)):
                continue
            if self.state.pool is None:
                raise RuntimeError("Redfish pool not read yet")
            start = parse_time(unit.epoch) or self._first_seen.setdefault(
                unit.attachment_id, time.time())
            deadline = start + min(settings.attach_timeout_s,
                                   settings.binding_timeout_s - settings.binding_margin_s)
            await self._bind(claim, unit, deadline)
            self._first_seen.pop(unit.attachment_id, None)

    async def _bind(self, claim: dict[str, Any], unit: Unit, deadline: float) -> None:
        block = self.state.block_for(unit.device)
        try:
            if block is None:
                raise AttachFailed("DeviceUnknown", f"no ResourceBlock is published as "
                                   f"{unit.pool}/{unit.device}")
            system = self.state.system_for_node(unit.node)
            if system is None or not system.add_target:
                raise AttachFailed("NodeUnmapped", f"node {unit.node!r} maps to no expandable "
                                   "Redfish ComputerSystem (system UUID or the "
                                   f"{self.state.ident.driver}/redfish-system annotation)")
            remaining = deadline - time.time()
            if remaining <= 0:
                raise AttachFailed("AttachTimeout", "the attach did not finish in time")
            attached_now = False
            self.state.busy.add(block.uri)
            try:
                async with self._gate, self.state.system_lock(system.uri):
                    started = time.monotonic()
                    try:
                        async with asyncio.timeout(remaining):
                            attached_now = await self._attach(claim, block.uri, system)
                    except TimeoutError:
                        await self._rollback(block.uri, system)
                        raise AttachFailed("AttachTimeout", f"attaching {block.uri} to "
                                           f"{system.uri} did not finish in time") from None
                    except RedfishError as e:
                        await self._rollback(block.uri, system)
                        raise AttachFailed("AttachFailed", f"Redfish refused attaching "
                                           f"{block.uri} to {system.uri}: {e}") from None
                    if attached_now:
                        self.metrics.attach_duration.observe(time.monotonic() - started)
            finally:
                self.state.busy.discard(block.uri)
        except AttachFailed as f:
            await self._report_failure(unit, block, f)
            return
        written = await self._write(unit, [{
            "type": self.state.ident.attached, "status": "True", "reason": "Attached",
            "message": f"{block.uri} attached to {system.uri}"}], block.uri, system.uri)
        if written and attached_now:  # a re-run finding the block attached counts nothing
            self.metrics.attaches.inc()
            if (t := parse_time(unit.epoch)) is not None:
                self.metrics.attach_latency.observe(max(0.0, time.time() - t))
            self.recorder.claim_event(claim, "Attached",
                                      f"{unit.device} attached to node {unit.node}")

    async def _attach(self, claim: dict[str, Any], block_uri: str, system) -> bool:
        """Make the block part of the system; False if it already was.

        When the last pool read shows the block free, the attach is tried at once (one
        request, not two); a 409 is then looked into as for a block the pool shows taken:
        already ours (an attempt before a restart) is success, anything else fails."""
        cached = self.state.pool.blocks.get(block_uri) if self.state.pool else None
        if cached is None or not cached.free or cached.systems:
            if await self._owned_by(block_uri, system):
                return False
        self.recorder.claim_event(claim, "Attaching", f"attaching {block_uri} to {system.uri}")
        body = {"ResourceBlock": {"@odata.id": block_uri}}
        try:
            await self.rf.operation("POST", system.add_target, body)
        except RedfishError as e:
            if e.status != 409:
                raise
            if await self._owned_by(block_uri, system):
                return False
            raise  # refused for another reason (the manager's driver, say)
        self.on_changed(block_uri, system.uri)
        members = await self.rf.get(system.uri)
        linked = {link.get("@odata.id") for link in
                  (members.get("Links") or {}).get("ResourceBlocks") or []}
        if block_uri not in linked:
            raise RedfishError(500, None, f"{block_uri} not in {system.uri} after the attach")
        return True

    async def _owned_by(self, block_uri: str, system) -> bool:
        """Whether the block is already part of the system (True) or free to attach
        (False), once no composition of it is in flight; DeviceInUse otherwise."""
        while True:
            doc = await self.rf.get(block_uri)
            owners = [link.get("@odata.id") for link in
                      (doc.get("Links") or {}).get("ComputerSystems") or []]
            state = (doc.get("CompositionStatus") or {}).get("CompositionState")
            if system.uri in owners:
                return True
            if state == "Composing":
                await asyncio.sleep(0.1)  # someone's attach in flight (ours, before a crash)
                continue
            if owners or state not in ("Unused", None):
                raise AttachFailed("DeviceInUse", f"{block_uri} is {state}"
                                   + (f", part of {owners[0]}" if owners else ""))
            return False

    async def _rollback(self, block_uri: str, system) -> None:
        """Take the block out of the system again if the failed attach left it there."""
        try:
            doc = await asyncio.wait_for(self.rf.get(block_uri), 30)
            owners = [link.get("@odata.id") for link in
                      (doc.get("Links") or {}).get("ComputerSystems") or []]
            if system.uri in owners and system.remove_target:
                await asyncio.wait_for(self.rf.operation(
                    "POST", system.remove_target, {"ResourceBlock": {"@odata.id": block_uri}}),
                    60)
                self.on_changed(block_uri, system.uri)
        except (RedfishError, TimeoutError) as e:
            log.warning("rollback of %s left for the releaser: %s", block_uri, e)

    async def _report_failure(self, unit: Unit, block, failure: AttachFailed) -> None:
        if block is not None and failure.reason not in ("NodeUnmapped",):
            until = time.time() + self.state.settings.quarantine_s
            self.state.quarantine[unit.device] = until
        self.metrics.failures.labels(failure.reason).inc()
        log.warning("attach failed", extra={"claim": unit.claim_key, "device": unit.device,
                                            "reason": failure.reason,
                                            "detail": failure.message})
        written = await self._write(unit, [{
            "type": self.state.ident.failed, "status": "True", "reason": failure.reason,
            "message": failure.message[:1000]}], block.uri if block else "", "")
        claim = self.state.claims.get(unit.claim_key)
        if written and claim is not None:
            self.recorder.claim_event(claim, "AttachFailed", failure.message, warning=True)
        self.on_changed(*([block.uri] if block is not None else []))

    async def _write(self, unit: Unit, conditions: list[dict[str, str]], block_uri: str,
                     system_uri: str) -> bool:
        """A conditional merge patch of ``status.devices`` (retried on 409 from a fresh
        read); False when the allocation this was for is gone."""
        path = claim_path(unit.namespace, unit.name)
        claim = self.state.claims.get(unit.claim_key)
        data = {"attachmentID": unit.attachment_id, "node": unit.node or "",
                "system": system_uri, "resourceBlock": block_uri}
        for attempt in range(10):
            if claim is None or unit not in units(claim, self.state.ident.driver):
                return False
            devices = with_conditions(claim, self.state.ident.driver, unit, conditions, data)
            body = {"metadata": {"resourceVersion": claim["metadata"]["resourceVersion"]},
                    "status": {"devices": devices}}
            try:
                await self.kube.request("PATCH", f"{path}/status", body=body,
                                        content_type=MERGE_PATCH)
                return True
            except KubeError as e:
                if e.status == 404:
                    return False
                if e.status == 422 and not any(
                        "Forbidden" in str(c.get("message", "")) for c in e.causes):
                    return False  # no longer an allocated device: the allocation changed
                if e.status != 409:
                    raise
                self.metrics.status_conflicts.inc()
                await asyncio.sleep(min(0.01 * 2 ** attempt, 0.5))
                claim = await self.kube.get(path)
        raise RuntimeError(f"status of {unit.claim_key} kept conflicting")
