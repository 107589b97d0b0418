"""The ResourceSlices the bridge should publish, computed from the pool (pure).

One DRA pool per ResourceZone: a block reachable through several zones goes into the pool
of that set of zones (named by joining them), so no device is ever offered twice and each
pool's node selection is exactly the nodes that can reach its devices. Every device binds
to a node and carries the bridge's binding conditions. Pools split into slices of at most
128 devices; a pool's generation goes up whenever what it offers changes.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

import orjson

from .inventory import Block, Pool

MAX_DEVICES = 128
API = "resource.k8s.io/v1"


def dns_label(text: str, limit: int = 63) -> str:
    """``text`` as a DNS label (lower case, [a-z0-9-], at most ``limit``), stable and
    collision-resistant when it has to be shortened."""
    label = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-") or "x"
    if len(label) > limit:
        digest = hashlib.sha256(text.encode()).hexdigest()[:8]
        label = label[: limit - 9].rstrip("-") + "-" + digest
    return label


def device_name(block: Block) -> str:
    return dns_label("rb-" + block.id)


def pool_name(zones: tuple[str, ...]) -> str:
    return dns_label("-".join(sorted(zones)))


@dataclass(frozen=True)
class Identity:
    driver: str
    device_types: frozenset[str]

    @property
    def attached(self) -> str:
        return f"{self.driver}/attached"

    @property
    def failed(self) -> str:
        return f"{self.driver}/attach-failed"

    @property
    def quarantine_key(self) -> str:
        return f"{self.driver}/quarantine"

    @property
    def managed_label(self) -> str:
        return f"{self.driver}/managed-by"

    @property
    def pool_label_prefix(self) -> str:
        return f"pool.{self.driver}/"

    def pool_label(self, pool: str) -> str:
        """The node label (value "true") of the nodes that can reach ``pool``."""
        return self.pool_label_prefix + pool

    def slice_name(self, pool: str, index: int) -> str:
        return f"{dns_label(self.driver, 200)}-{pool}-{index}"


def device_entry(ident: Identity, block: Block) -> dict[str, Any]:
    return {
        "name": device_name(block),
        "attributes": {k: {"string": v} for k, v in sorted(
            {**block.attributes, "zone": ",".join(sorted(block.zones))}.items())},
        **({"capacity": {k: {"value": v} for k, v in sorted(block.capacity.items())}}
           if block.capacity else {}),
        "bindsToNode": True,
        "bindingConditions": [ident.attached],
        "bindingFailureConditions": [ident.failed],
    }


def publishable(ident: Identity, block: Block) -> bool:
    return block.type in ident.device_types and bool(block.zones)


def group_blocks(ident: Identity, pool: Pool, held: set[str],
                 quarantined: set[str]) -> dict[tuple[str, ...], list[Block]]:
    """The blocks to offer, by zone set: free ones not quarantined, and those a live
    claim holds (kept until the claim lets go, so its allocation stays valid). Every zone
    set of a managed block is a key, even when it has nothing to offer now."""
    groups: dict[tuple[str, ...], list[Block]] = {}
    for block in pool.blocks.values():
        if not publishable(ident, block):
            continue
        offered = groups.setdefault(tuple(sorted(block.zones)), [])
        if block.uri in held or (block.free and device_name(block) not in quarantined):
            offered.append(block)
    return groups


def nodes_for(zones: tuple[str, ...], node_zones: dict[str, set[str]]) -> list[str]:
    return sorted(n for n, zs in node_zones.items() if zs & set(zones))


def pool_content(ident: Identity, pool: str, blocks: list[Block]) -> dict[str, Any]:
    """What a pool offers: its devices and node selection (compared to decide whether the
    generation must go up). The nodes are selected by a label the publisher keeps on
    them: a node field selector may name only one node."""
    return {
        "nodeSelector": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": ident.pool_label(pool), "operator": "In", "values": ["true"]}]}]},
        "devices": sorted((device_entry(ident, b) for b in blocks), key=lambda d: d["name"]),
    }


def fingerprint(content: dict[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(content, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def build_slices(ident: Identity, pool: str, content: dict[str, Any], generation: int,
                 quarantine: dict[str, float],
                 content_id: str | None = None) -> list[dict[str, Any]]:
    devices = content["devices"]
    chunks = [devices[i:i + MAX_DEVICES] for i in range(0, len(devices), MAX_DEVICES)] or [[]]
    annotations = {f"{ident.driver}/content": content_id or fingerprint(content)}
    if quarantine:
        annotations[ident.quarantine_key] = json.dumps(
            {k: round(v, 3) for k, v in sorted(quarantine.items())})
    return [{
        "apiVersion": API, "kind": "ResourceSlice",
        "metadata": {"name": ident.slice_name(pool, i),
                     "labels": {ident.managed_label: "redfish-dra-bridge"},
                     "annotations": dict(annotations)},
        "spec": {"driver": ident.driver,
                 "pool": {"name": pool, "generation": generation,
                          "resourceSliceCount": len(chunks)},
                 "nodeSelector": content["nodeSelector"],
                 "devices": chunk},
    } for i, chunk in enumerate(chunks)]


def read_quarantine(ident: Identity, slices: list[dict[str, Any]]) -> dict[str, float]:
    """Device name -> quarantine end (epoch seconds), as recorded on published slices."""
    out: dict[str, float] = {}
    for s in slices:
        raw = ((s.get("metadata") or {}).get("annotations") or {}).get(ident.quarantine_key)
        if not raw:
            continue
        try:
            for name, until in json.loads(raw).items():
                out[name] = max(out.get(name, 0.0), float(until))
        except (ValueError, TypeError, AttributeError):
            continue
    return out
