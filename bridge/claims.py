"""What a ResourceClaim asks of the bridge, and the status entries it writes back (pure).

A binding unit is one allocated device of ours in one allocation of one claim. Its epoch
is the allocation's timestamp: a claim deallocated and allocated again is new work.
Status writes rebuild ``status.devices`` from the raw claim: other drivers' entries are
copied verbatim, ours get their conditions merged by type (``lastTransitionTime`` moves
only when the status does).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True)
class Unit:
    namespace: str
    name: str
    uid: str
    request: str
    pool: str
    device: str
    share_id: str | None
    node: str | None
    epoch: str             # allocationTimestamp ("" when the scheduler gave none)

    @property
    def claim_key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def attachment_id(self) -> str:
        key = "|".join((self.uid, self.epoch, self.pool, self.device, self.share_id or ""))
        return hashlib.sha256(key.encode()).hexdigest()[:16]


def allocated_node(allocation: dict[str, Any]) -> str | None:
    """The node a bindsToNode allocation is for: its one ``metadata.name In [node]``."""
    terms = ((allocation.get("nodeSelector") or {}).get("nodeSelectorTerms") or [])
    for term in terms:
        for field in term.get("matchFields") or []:
            values = field.get("values") or []
            if field.get("key") == "metadata.name" and field.get("operator") == "In" \
                    and len(values) == 1:
                return str(values[0])
    return None


def units(claim: dict[str, Any], driver: str) -> list[Unit]:
    meta = claim.get("metadata") or {}
    allocation = (claim.get("status") or {}).get("allocation") or {}
    results = (allocation.get("devices") or {}).get("results") or []
    node = allocated_node(allocation)
    epoch = str(allocation.get("allocationTimestamp") or "")
    return [Unit(namespace=str(meta.get("namespace", "")), name=str(meta.get("name", "")),
                 uid=str(meta.get("uid", "")), request=str(r.get("request", "")),
                 pool=str(r.get("pool", "")), device=str(r.get("device", "")),
                 share_id=r.get("shareID"), node=node, epoch=epoch)
            for r in results if r.get("driver") == driver]


def _matches(entry: dict[str, Any], driver: str, unit: Unit) -> bool:
    return (entry.get("driver") == driver and entry.get("pool") == unit.pool
            and entry.get("device") == unit.device
            and entry.get("shareID") == unit.share_id)


def status_entry(claim: dict[str, Any], driver: str, unit: Unit) -> dict[str, Any] | None:
    for entry in (claim.get("status") or {}).get("devices") or []:
        if _matches(entry, driver, unit):
            return entry
    return None


def condition(entry: dict[str, Any] | None, kind: str) -> str | None:
    for c in (entry or {}).get("conditions") or []:
        if c.get("type") == kind:
            return c.get("status")
    return None


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str) -> float | None:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except (ValueError, AttributeError):
        return None


def with_conditions(claim: dict[str, Any], driver: str, unit: Unit,
                    conditions: list[dict[str, str]], data: dict[str, Any]) -> list[dict]:
    """``status.devices`` with the unit's entry carrying ``conditions`` (each: type,
    status, reason, message) merged in; every other entry verbatim."""
    devices = [dict(e) for e in (claim.get("status") or {}).get("devices") or []]
    entry = next((e for e in devices if _matches(e, driver, unit)), None)
    if entry is None:
        entry = {"driver": driver, "pool": unit.pool, "device": unit.device}
        if unit.share_id:
            entry["shareID"] = unit.share_id
        devices.append(entry)
    merged = {c["type"]: dict(c) for c in entry.get("conditions") or []}
    generation = (claim.get("metadata") or {}).get("generation")
    for c in conditions:
        old = merged.get(c["type"])
        new = {**c, "lastTransitionTime": now_rfc3339()}
        if old is not None and old.get("status") == c["status"]:
            new["lastTransitionTime"] = old.get("lastTransitionTime") or new[
                "lastTransitionTime"]
        if isinstance(generation, int):
            new["observedGeneration"] = generation
        merged[c["type"]] = new
    entry["conditions"] = list(merged.values())
    entry["data"] = data
    return devices
