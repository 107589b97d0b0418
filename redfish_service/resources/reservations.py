"""CompositionReservations: blocks set aside by a ``PreviewReserve`` for one client.

A reservation holds the manifest as it was processed — every constrained request resolved
to the blocks the preview chose, which is what ``Apply`` carries out — and the blocks it
set aside (each with ``CompositionStatus.Reserved`` true, so other clients' compositions
leave them alone). It ends when applied, deleted,
or ``ReservationDuration`` (CompositionService) after it was made: the blocks are then
released.
"""

from __future__ import annotations

import datetime
import logging
import re
import time
import uuid
from typing import Any

from ..composition import planner
from ..protocol.errors import RedfishError
from ..store import Entry, Store, Transaction
from . import uris
from .context import Ctx
from .kind import Kind

log = logging.getLogger("redfish_service.composition")

RESERVATIONS = uris.COMPOSITION_SERVICE + "/CompositionReservations"
RESERVATION_TYPE = "#CompositionReservation.v1_0_2.CompositionReservation"
DEFAULT_DURATION_S = 600.0

_DURATION = re.compile(
    r"P(?:(?P<d>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?")
DURATION_PATTERN = _DURATION.pattern


def duration_s(value: Any) -> float | None:
    """Seconds in an ISO 8601 duration (``P1DT2H``, ``PT10M``, ``PT0.5S``), else None."""
    if not isinstance(value, str):
        return None
    m = _DURATION.fullmatch(value)
    if m is None or value in ("P", "PT") or value.endswith("T"):
        return None
    d, h, mi, s = (float(m.group(k) or 0) for k in "dhms")
    return d * 86400 + h * 3600 + mi * 60 + s


def holders(store: Store) -> dict[str, str]:
    """Block URI -> Id of the reservation that holds it."""
    out: dict[str, str] = {}
    for uri in store.members(RESERVATIONS):
        doc = store.doc(uri) or {}
        for block in planner.link_ids(doc.get("ReservedResourceBlocks")):
            out[block] = planner.doc_id(doc)
    return out


def reserve(tx: Transaction, store: Store, client: str | None, blocks: list[str],
            manifest: dict[str, Any]) -> str:
    """Create a reservation of ``blocks`` for ``client``; returns its Id."""
    service = store.doc(uris.COMPOSITION_SERVICE) or {}
    duration = duration_s(service.get("ReservationDuration")) or DEFAULT_DURATION_S
    reservation_id = uuid.uuid4().hex[:12]
    uri = f"{RESERVATIONS}/{reservation_id}"
    now = datetime.datetime.now(datetime.UTC)
    tx.create(uri, {
        "@odata.id": uri,
        "@odata.type": RESERVATION_TYPE,
        "Id": reservation_id,
        "Name": f"Reservation {reservation_id}",
        "ReservationTime": now.isoformat(timespec="seconds"),
        "Client": client or "",
        "ReservedResourceBlocks": [{"@odata.id": b} for b in blocks],
        "ReservedResourceBlocks@odata.count": len(blocks),
        "Manifest": manifest,
    }, {"expires": time.time() + duration})
    for block in blocks:
        doc = tx.get(block)
        if doc is not None:
            doc["CompositionStatus"] = {**planner.status_of(doc), "Reserved": True}
            tx.put(block, doc)
    _refresh(tx, store)
    return reservation_id


def release(tx: Transaction, store: Store, uri: str, *, blocks_too: bool = True) -> None:
    """End a reservation: its blocks are no longer reserved (unless ``blocks_too`` is
    False, when they were just composed and their state is already settled)."""
    doc = tx.get(uri)
    if doc is None:
        return
    if blocks_too:
        for uri_ in planner.link_ids(doc.get("ReservedResourceBlocks")):
            block = tx.get(uri_)
            if block is not None and planner.status_of(block).get("Reserved"):
                block["CompositionStatus"] = {**planner.status_of(block), "Reserved": False}
                tx.put(uri_, block)
    tx.delete(uri)
    _refresh(tx, store)


def _refresh(tx: Transaction, store: Store) -> None:
    from .pool import refresh_pools

    refresh_pools(tx, store.members(uris.RESOURCE_BLOCKS))


def find(store: Store, reservation_id: Any, client: str | None) -> Entry | None:
    """The caller's own reservation with this Id, if any."""
    if not isinstance(reservation_id, str) or "/" in reservation_id:
        return None
    entry = store.get(f"{RESERVATIONS}/{reservation_id}")
    if entry is None or entry.doc.get("Client") != (client or ""):
        return None
    return entry


async def expire(store: Store, now: float | None = None) -> int:
    """End the reservations whose time is up; how many ended."""
    now = time.time() if now is None else now
    due = [u for u in store.members(RESERVATIONS)
           if (e := store.get(u)) and (e.private or {}).get("expires", now + 1) <= now]
    if not due:
        return 0
    async with store.transaction("service") as tx:
        for uri in due:
            release(tx, store, uri)
    log.info("reservations expired", extra={"reservations": due})
    return len(due)


def next_expiry(store: Store) -> float | None:
    times = [(e.private or {}).get("expires") for u in store.members(RESERVATIONS)
             if (e := store.get(u))]
    return min((t for t in times if t is not None), default=None)


class ReservationKind(Kind):
    entity = "CompositionReservation"
    deletable = True

    async def delete(self, ctx: Ctx, tx: Transaction, uri: str) -> None:
        release(tx, ctx.store, uri)


class ReservationCollectionKind(Kind):
    """The collection shows each client its own reservations only."""

    entity = "CompositionReservationCollection"

    def render(self, entry: Entry, ctx: Ctx) -> dict[str, Any] | None:
        mine = [{"@odata.id": m} for m in planner.link_ids(entry.doc.get("Members"))
                if (ctx.store.doc(m) or {}).get("Client") == (ctx.actor or "")]
        return {**entry.doc, "Members": mine, "Members@odata.count": len(mine)}


def not_found(reservation_id: Any) -> RedfishError:
    return RedfishError.of(400, "ActionParameterValueError", "ReservationId",
                           "CompositionService.Compose")


KINDS = [ReservationKind(), ReservationCollectionKind()]
