"""A list-then-watch cache of one kind of Kubernetes object, on raw JSON.

It lists, watches from the list's resourceVersion with bookmarks, re-watches from the last
version it saw when a stream ends, and lists again (reporting the difference as events)
when the server answers 410 Expired. Every change is handed to ``on_change``; the cache is
what the rest of the bridge reads, and it is never the truth about anything but what the
API server last said.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import Any

from .kube import Kube, KubeError

log = logging.getLogger("bridge.reflector")

OnChange = Callable[[str, dict[str, Any]], None]  # ("upsert" | "delete", object)


def key_of(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{ns}/{meta.get('name')}" if ns else str(meta.get("name"))


class Expired(Exception):
    """The watch's resourceVersion is older than the server keeps."""


class Reflector:
    def __init__(self, kube: Kube, path: str, *, on_change: OnChange | None = None,
                 field_selector: str | None = None, label_selector: str | None = None,
                 watch_timeout_s: int = 300) -> None:
        self.kube = kube
        self.path = path
        self.on_change = on_change
        self.selectors = {"fieldSelector": field_selector, "labelSelector": label_selector}
        self.watch_timeout_s = watch_timeout_s
        self.objects: dict[str, dict[str, Any]] = {}
        self.resource_version = ""
        self.synced = asyncio.Event()
        self.version = 0  # goes up with every change of ``objects`` (memo key for readers)

    def get(self, key: str) -> dict[str, Any] | None:
        return self.objects.get(key)

    def values(self) -> list[dict[str, Any]]:
        return list(self.objects.values())

    def _emit(self, kind: str, obj: dict[str, Any]) -> None:
        self.version += 1
        log.debug("%s %s %s", self.path, kind, key_of(obj))
        if self.on_change is not None:
            try:
                self.on_change(kind, obj)
            except Exception:  # a handler bug must not stop the cache
                log.exception("change handler failed for %s", key_of(obj))

    async def _list(self) -> None:
        body = await self.kube.request("GET", self.path, query=dict(self.selectors))
        fresh = {key_of(o): o for o in body.get("items") or []}
        gone = [k for k in self.objects if k not in fresh]
        for k in gone:
            self._emit("delete", self.objects.pop(k))
        for k, obj in fresh.items():
            old = self.objects.get(k)
            self.objects[k] = obj
            if old is None or _rv(old) != _rv(obj):
                self._emit("upsert", obj)
        self.resource_version = (body.get("metadata") or {}).get("resourceVersion", "")
        self.version += 1  # objects were replaced, changed or not
        self.synced.set()

    async def _watch_once(self) -> None:
        query = {**self.selectors, "resourceVersion": self.resource_version,
                 "allowWatchBookmarks": "true", "timeoutSeconds": self.watch_timeout_s}
        async for event in self.kube.watch(self.path, query):
            kind, obj = event.get("type"), event.get("object") or {}
            if kind == "ERROR":
                if obj.get("code") == 410:
                    raise Expired(obj.get("message", ""))
                raise KubeError(int(obj.get("code") or 500), obj)
            rv = _rv(obj)
            if rv:
                self.resource_version = rv
            if kind == "BOOKMARK":
                continue
            k = key_of(obj)
            if kind == "DELETED":
                self.objects.pop(k, None)
                self._emit("delete", obj)
            elif kind in ("ADDED", "MODIFIED"):
                self.objects[k] = obj
                self._emit("upsert", obj)

    async def run(self) -> None:
        """List and watch until cancelled; errors back off and list again."""
        backoff = 0.2
        need_list = True
        while True:
            try:
                if need_list:
                    await self._list()
                    need_list = False
                await self._watch_once()
                backoff = 0.2
            except asyncio.CancelledError:
                raise
            except Expired:
                log.info("watch of %s expired; listing again", self.path)
                need_list = True
            except Exception as e:  # connection loss, 5xx: back off, then list afresh
                log.warning("watch of %s failed (%s); retrying", self.path, e)
                need_list = True
                await asyncio.sleep(backoff * (1 + random.random()))
                backoff = min(backoff * 2, 10.0)


def _rv(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")
