"""Kubernetes Events on ResourceClaims (best effort: a lost Event never blocks work)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from .claims import now_rfc3339
from .kube import Kube

log = logging.getLogger("bridge.events")
COMPONENT = "redfish-dra-bridge"


class Recorder:
    def __init__(self, kube: Kube, identity: str, *, max_in_flight: int = 8) -> None:
        self.kube = kube
        self.identity = identity
        self._gate = asyncio.Semaphore(max_in_flight)
        self._tasks: set[asyncio.Task[None]] = set()

    def claim_event(self, claim: dict[str, Any], reason: str, message: str,
                    warning: bool = False) -> None:
        meta = claim.get("metadata") or {}
        now = now_rfc3339()
        body = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": f"{meta.get('name')}.",
                         "namespace": meta.get("namespace")},
            "involvedObject": {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
                               "name": meta.get("name"), "namespace": meta.get("namespace"),
                               "uid": meta.get("uid")},
            "reason": reason, "message": message[:1024],
            "type": "Warning" if warning else "Normal",
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT, "reportingInstance": self.identity,
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        }
        task = asyncio.create_task(self._post(str(meta.get("namespace")), body))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _post(self, namespace: str, body: dict[str, Any]) -> None:
        async with self._gate:
            try:
                await self.kube.request("POST", f"/api/v1/namespaces/{namespace}/events",
                                        body=body)
            except Exception as e:
                log.debug("event not recorded: %s", e)

    async def drain(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
