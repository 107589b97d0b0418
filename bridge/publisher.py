"""Keeps the published ResourceSlices equal to what `slices` computes from the state."""

from __future__ import annotations

import logging
from typing import Any

from .inventory import Block, Pool
from .kube import MERGE_PATCH, Kube, KubeError
from .observe import Metrics
from .slices import build_slices, fingerprint, group_blocks, nodes_for, pool_content, pool_name
from .state import RESOURCE, BridgeState

log = logging.getLogger("bridge.publisher")
SLICES = f"{RESOURCE}/resourceslices"


def _ours(state: BridgeState, s: dict[str, Any]) -> bool:
    return (s.get("spec") or {}).get("driver") == state.ident.driver and not (
        s.get("spec") or {}).get("nodeName")


class Publisher:
    def __init__(self, state: BridgeState, kube: Kube, metrics: Metrics) -> None:
        self.state = state
        self.kube = kube
        self.metrics = metrics
        # pool -> (the blocks it was built from, its content, the content's fingerprint)
        self._built: dict[str, tuple[list[Block], dict[str, Any], str]] = {}
        self._checked: dict[str, tuple[Any, ...]] = {}  # slice -> what it was found equal to
        # the pool read and the other inputs of the last complete sync
        self._synced: tuple[Pool | None, tuple[Any, ...] | None] = (None, None)

    def _content(self, pool: str, blocks: list[Block]) -> tuple[dict[str, Any], str]:
        """A pool's content and fingerprint, built again only when its blocks are not the
        same objects as last time (the state keeps unchanged blocks' objects)."""
        built = self._built.get(pool)
        if built is not None and len(built[0]) == len(blocks) \
                and all(a is b for a, b in zip(built[0], blocks, strict=True)):
            return built[1], built[2]
        content = pool_content(self.state.ident, pool, blocks)
        content_id = fingerprint(content)
        self._built[pool] = (list(blocks), content, content_id)
        return content, content_id

    def desired(self) -> tuple[dict[str, list[dict[str, Any]]], dict[str, set[str]]]:
        """Pool name -> the slices it should have; node -> the pool labels it should have."""
        state, ident = self.state, self.state.ident
        assert state.pool is not None
        node_zones = state.node_zones()
        quarantined = state.quarantined()
        existing = self._existing()
        out: dict[str, list[dict[str, Any]]] = {}
        labels: dict[str, set[str]] = {n: set() for n in node_zones}
        groups = group_blocks(ident, state.pool, state.held_blocks(), quarantined)
        for zones, blocks in sorted(groups.items()):
            nodes = nodes_for(zones, node_zones)
            name = pool_name(zones)
            for node in nodes:
                labels[node].add(ident.pool_label(name))
            if not nodes or not blocks:
                continue  # nothing to offer, or no node can reach it
            content, content_id = self._content(name, blocks)
            quarantine = {d: state.quarantine[d] for d in quarantined
                          if (b := state.block_for(d)) is not None
                          and tuple(sorted(b.zones)) == zones}
            out[name] = build_slices(ident, name, content,
                                     self._generation(existing.get(name, []), content_id),
                                     quarantine, content_id)
        return out, labels

    def _existing(self) -> dict[str, list[dict[str, Any]]]:
        by_pool: dict[str, list[dict[str, Any]]] = {}
        for s in self.state.slices.values():
            if _ours(self.state, s):
                by_pool.setdefault(s["spec"]["pool"]["name"], []).append(s)
        return by_pool

    def _generation(self, old: list[dict[str, Any]], content_id: str) -> int:
        key = f"{self.state.ident.driver}/content"
        gens = [int(s["spec"]["pool"].get("generation") or 0) for s in old]
        top = max(gens, default=0)
        same = old and all(
            ((s.get("metadata") or {}).get("annotations") or {}).get(key) == content_id
            for s in old)
        return top if same and top > 0 else top + 1

    def _inputs(self) -> tuple[Any, ...]:
        """Everything ``desired`` and the writes depend on besides the pool read (compared
        by identity), cheaply: the held blocks, the quarantines, and the nodes' and our
        slices' resourceVersions (a change by anyone else shows there)."""
        state = self.state
        return (frozenset(state.held_blocks()),
                tuple(sorted(state.quarantined())),
                tuple(sorted((k, (n.get("metadata") or {}).get("resourceVersion"))
                             for k, n in state.nodes.objects.items())),
                tuple(sorted((k, (s.get("metadata") or {}).get("resourceVersion"))
                             for k, s in state.slices.objects.items())))

    async def sync(self) -> None:
        """Make the slices and node labels what they should be; nothing to do (no
        request, no recomputation) when none of their inputs changed since the last
        sync that completed (most claim changes: a status write, a Pod bound)."""
        if self.state.pool is None:
            return
        pool, inputs = self.state.pool, self._inputs()
        if pool is self._synced[0] and inputs == self._synced[1]:
            return
        await self._sync()
        self._synced = (pool, inputs)

    async def _sync(self) -> None:
        desired, labels = self.desired()
        await self._label_nodes(labels)
        existing = {s["metadata"]["name"]: s for s in self.state.slices.values()
                    if _ours(self.state, s)}
        wanted: set[str] = set()
        total = 0
        for slices in desired.values():
            for s in slices:
                name = s["metadata"]["name"]
                wanted.add(name)
                total += len(s["spec"]["devices"])
                await self._put(s, existing.get(name))
        for name in sorted(set(existing) - wanted):
            self._checked.pop(name, None)
            try:
                await self.kube.request("DELETE", f"{SLICES}/{name}")
            except KubeError as e:
                if e.status != 404:
                    raise
        self.metrics.slice_devices.set(total)

    async def _label_nodes(self, wanted: dict[str, set[str]]) -> None:
        """Keep each node's pool labels (``pool.<driver>/<pool>: "true"``) equal to the
        pools it can reach; labels of other owners are left alone."""
        prefix = self.state.ident.pool_label_prefix
        for node in self.state.nodes.values():
            name = str(node["metadata"]["name"])
            have = {k for k, v in ((node["metadata"].get("labels") or {}).items())
                    if k.startswith(prefix) and v == "true"}
            want = wanted.get(name, set())
            if have == want:
                continue
            patch = {k: "true" for k in want - have} | {k: None for k in have - want}
            try:
                await self.kube.request("PATCH", f"/api/v1/nodes/{name}",
                                        body={"metadata": {"labels": patch}},
                                        content_type=MERGE_PATCH)
            except KubeError as e:
                if e.status != 404:
                    raise

    async def _put(self, want: dict[str, Any], have: dict[str, Any] | None) -> None:
        if have is None:
            try:
                await self.kube.request("POST", SLICES, body=want)
            except KubeError as e:
                if e.status != 409:  # created meanwhile: the watch brings it, next sync fixes
                    raise
            return
        meta = have.get("metadata") or {}
        name = want["metadata"]["name"]
        # A slice found equal to what we want, unchanged since (same resourceVersion),
        # need not be compared device by device again.
        checked = (meta.get("resourceVersion"), want["spec"]["pool"]["generation"],
                   sorted(want["metadata"]["annotations"].items()))
        if self._checked.get(name) == checked:
            return
        prefix = self.state.ident.driver + "/"
        ours = {k: v for k, v in (meta.get("annotations") or {}).items()
                if k.startswith(prefix)}
        if have.get("spec") == want["spec"] and ours == want["metadata"]["annotations"]:
            self._checked[name] = checked
            return
        body = {**want, "metadata": {**want["metadata"],
                                     "resourceVersion": meta.get("resourceVersion")}}
        try:
            await self.kube.request("PUT", f"{SLICES}/{name}", body=body)
        except KubeError as e:
            if e.status not in (404, 409):
                raise
            log.debug("slice %s changed underneath (%s); next sync", want["metadata"]["name"],
                      e.status)
