"""Leader election on a coordination.k8s.io/v1 Lease.

A candidate takes the Lease when it is free or its holder stopped renewing for
``lease_duration_s``; the holder renews every ``retry_period_s`` and gives up leading if it
could not renew for ``renew_deadline_s`` (shorter than the lease, so two replicas never both
believe they lead). Writes are conditional on the Lease's resourceVersion: of two racing
candidates exactly one wins.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from .kube import Kube, KubeError

log = logging.getLogger("bridge.leader")


def micro_time(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_micro_time(value: str | None) -> float:
    if not value:
        return 0.0
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


class LeaderElector:
    def __init__(self, kube: Kube, namespace: str, name: str, identity: str, *,
                 lease_duration_s: float, renew_deadline_s: float, retry_period_s: float,
                 clock: Callable[[], float] | None = None) -> None:
        self.kube = kube
        self.path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
        self.namespace, self.name, self.identity = namespace, name, identity
        self.lease_duration_s = lease_duration_s
        self.renew_deadline_s = renew_deadline_s
        self.retry_period_s = retry_period_s
        self.clock = clock or (lambda: datetime.now(UTC).timestamp())
        self.leading = asyncio.Event()
        self.observed_holder: str | None = None

    def _spec(self, acquire_time: str, transitions: int) -> dict[str, Any]:
        return {"holderIdentity": self.identity,
                "leaseDurationSeconds": max(1, round(self.lease_duration_s)),
                "acquireTime": acquire_time, "renewTime": micro_time(self.clock()),
                "leaseTransitions": transitions}

    async def try_acquire_or_renew(self) -> bool:
        now = self.clock()
        lease = await self.kube.get(f"{self.path}/{self.name}")
        if lease is None:
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace},
                    "spec": self._spec(micro_time(now), 0)}
            try:
                await self.kube.request("POST", self.path, body=body)
            except KubeError as e:
                if e.status == 409:
                    return False
                raise
            return True
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity")
        self.observed_holder = holder
        duration = float(spec.get("leaseDurationSeconds") or self.lease_duration_s)
        renewed = parse_micro_time(spec.get("renewTime"))
        if holder and holder != self.identity and renewed + duration > now:
            return False  # someone else holds a live lease
        transitions = int(spec.get("leaseTransitions") or 0)
        if holder == self.identity:
            acquired = spec.get("acquireTime") or micro_time(now)
        else:
            acquired, transitions = micro_time(now), transitions + 1
        lease["spec"] = self._spec(acquired, transitions)
        try:
            await self.kube.request("PUT", f"{self.path}/{self.name}", body=lease)
        except KubeError as e:
            if e.status == 409:
                return False
            raise
        self.observed_holder = self.identity
        return True

    async def _attempt(self) -> bool:
        try:
            return await asyncio.wait_for(self.try_acquire_or_renew(), min(
                self.renew_deadline_s, max(self.retry_period_s, 1.0)))
        except Exception as e:  # API errors, timeouts, the client's connection errors
            log.warning("lease %s/%s: %s", self.namespace, self.name, e or type(e).__name__)
            return False

    async def run(self, lead: Callable[[], Awaitable[None]]) -> None:
        """Campaign forever; while leading, run ``lead()`` (cancelled on losing the lease;
        if it returns, the replica stops leading and campaigns again)."""
        loop = asyncio.get_running_loop()
        while True:
            while not await self._attempt():  # noqa: ASYNC110 (polling the Lease is the protocol)
                await asyncio.sleep(self.retry_period_s)
            log.info("became leader", extra={"lease": self.name, "identity": self.identity})
            self.leading.set()
            task = asyncio.create_task(lead())
            last_renew = loop.time()
            try:
                while not task.done():
                    await asyncio.wait([task], timeout=self.retry_period_s)
                    if task.done():
                        break
                    if await self._attempt():
                        last_renew = loop.time()
                    elif loop.time() - last_renew > self.renew_deadline_s:
                        log.warning("lost the lease", extra={"lease": self.name})
                        break
            finally:
                self.leading.clear()
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            if task.done() and not task.cancelled() and task.exception() is not None:
                log.error("leader work failed: %s", task.exception())
            await asyncio.sleep(self.retry_period_s)
