"""The event hub: turns the store's committed changes into event records and hands them to
push subscriptions (one queue and one worker per destination) and to open SSE streams.

Nothing here ever waits inside the store's commit: the change callback only builds
records and puts them in bounded queues. A destination that is slow or down fills its own
queue (records beyond its bound are dropped and announced with ``EventBufferExceeded``),
an SSE client that falls behind is disconnected and resumes from the change log with
``Last-Event-ID``; neither delays a client request, the store or another receiver.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson

from ..protocol.messages import message
from ..store import Change, Store
from . import resources as res
from .messages import HEARTBEAT_EVENT
from .records import (
    Origin,
    Record,
    Selection,
    describe,
    event_body,
    from_change,
    iso_time,
)

log = logging.getLogger("redfish_service.events")

ACTOR = "EventService"
RETRY_FOREVER = ("RetryForever", "RetryForeverWithBackoff")


class PushDestination:
    """One push subscription: its settings, its queue and the worker that delivers it,
    and, if it asked for heartbeats, the timer that queues them."""

    def __init__(self, hub: EventHub, uri: str) -> None:
        self.hub = hub
        self.uri = uri
        self.queue: asyncio.Queue[Record] = asyncio.Queue(maxsize=hub.queue_size)
        self.dropped = 0
        self.stopped = False
        self.task: asyncio.Task | None = None
        self.beat_task: asyncio.Task | None = None
        self.heartbeat_minutes: int | None = None  # None: no heartbeats
        self.configure()

    def configure(self) -> None:
        """(Re)read the subscription's settings from the store."""
        entry = self.hub.store.get(self.uri)
        doc = entry.doc if entry else {}
        private = (entry.private if entry else None) or {}
        self.destination: str = doc.get("Destination", "")
        self.context: str | None = doc.get("Context")
        self.selection = Selection.of(doc)
        self.policy: str = doc.get("DeliveryRetryPolicy") or "SuspendRetries"
        self.verify: bool = doc.get("VerifyCertificate") is not False
        self.headers: dict[str, str] = {}
        for item in private.get("http_headers") or ():
            self.headers.update(item)
        self.enabled = (doc.get("Status") or {}).get("State", "Enabled") == "Enabled"
        if not self.enabled:
            self._clear()
        minutes = doc.get("HeartbeatIntervalMinutes") or res.DEFAULT_HEARTBEAT_MINUTES
        heartbeat = minutes if doc.get("SendHeartbeat") is True else None
        if heartbeat != self.heartbeat_minutes:
            self.heartbeat_minutes = heartbeat
            if self.task is not None:  # started: the timer follows the new setting
                self._restart_heartbeat()

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run(),
                                                           name=f"events {self.uri}")
        self._restart_heartbeat()

    def stop(self) -> None:
        self.stopped = True
        for task in (self.task, self.beat_task):
            if task is not None and task is not asyncio.current_task():
                task.cancel()

    def _restart_heartbeat(self) -> None:
        if self.beat_task is not None:
            self.beat_task.cancel()
            self.beat_task = None
        if self.heartbeat_minutes is not None and not self.stopped:
            self.beat_task = asyncio.get_running_loop().create_task(
                self._beat(self.heartbeat_minutes), name=f"heartbeat {self.uri}")

    async def _beat(self, minutes: int) -> None:
        """Every ``minutes`` (of ``heartbeat_unit_s`` seconds), queue a heartbeat. It takes
        the delivery path of every record (in order, retries, the retry policy); filters
        do not apply, since the subscriber asked for it; a suspended subscription, or a
        disabled EventService, gets none."""
        while not self.stopped:
            await asyncio.sleep(minutes * self.hub.heartbeat_unit_s)
            if not self.enabled or self.stopped or not self.hub.enabled():
                continue
            try:
                self.queue.put_nowait(self.hub.heartbeat_record(self.uri))
            except asyncio.QueueFull:
                self.dropped += 1

    def _clear(self) -> None:
        while not self.queue.empty():
            self.queue.get_nowait()
        self.dropped = 0

    def offer(self, record: Record) -> None:
        if not self.enabled or self.stopped or not self.selection.matches(record[0]):
            return
        try:
            self.queue.put_nowait(record)
        except asyncio.QueueFull:
            self.dropped += 1

    async def _run(self) -> None:
        pace = Pace(self.hub.flush_interval_s)
        while not self.stopped:
            first = await self.queue.get()
            await pace.wait()
            batch = [first]
            while len(batch) < self.hub.max_batch and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            records = [r for _, r in batch]
            if self.dropped:
                lost = message("EventBufferExceeded")
                records.insert(0, {"EventType": "Other", "MemberId": "0",
                                   "EventTimestamp": iso_time(time.time()),
                                   **{k: lost[k] for k in ("MessageId", "Message",
                                                           "MessageArgs", "MessageSeverity")}})
                self.dropped = 0
            last_origin, last_record = batch[-1]
            event_id = str(last_origin.seq or last_record.get("EventId")
                           or self.hub.next_test_id())
            body = orjson.dumps(event_body(records, event_id, self.context))
            try:
                await self._deliver(body)
            except asyncio.CancelledError:
                raise
            except Exception:  # never let one bad delivery end the worker
                log.exception("event delivery failed", extra={"subscription": self.uri})

    async def _deliver(self, body: bytes) -> None:
        attempt = 0
        while not self.stopped and self.enabled:
            if await self._post(body):
                return
            attempt += 1
            attempts, interval = self.hub.retry_settings()
            if self.policy in RETRY_FOREVER or attempt <= attempts:
                delay = interval * self.hub.retry_unit_s
                if self.policy == "RetryForeverWithBackoff":
                    delay *= 2 ** min(attempt - 1, 6)
                await asyncio.sleep(delay)
                continue
            await self.hub.give_up(self)
            return

    async def _post(self, body: bytes) -> bool:
        headers = {**self.headers, "Content-Type": "application/json"}
        try:
            async with self.hub.http().post(
                self.destination, data=body, headers=headers,
                ssl=None if self.verify else False,
                timeout=aiohttp.ClientTimeout(total=self.hub.post_timeout_s),
                allow_redirects=False,
            ) as resp:
                await resp.read()
                if 200 <= resp.status < 300:
                    return True
                reason = f"HTTP {resp.status}"
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as e:
            reason = type(e).__name__
        # The destination, never the headers (they may hold credentials).
        log.info("event delivery to %s failed (%s)", self.destination, reason,
                 extra={"subscription": self.uri})
        return False


class Pace:
    """Sends to one receiver at most once per ``interval_s``: under a burst each send
    carries everything that arrived meanwhile (at the default 25 ms, at most forty writes
    or POSTs a second, instead of one per commit), while a send after a quiet spell goes
    at once."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._last = -interval_s

    async def wait(self) -> None:
        loop = asyncio.get_running_loop()
        delay = self._last + self.interval_s - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        self._last = loop.time()


class Listener:
    """An open SSE stream: records that pass its filter, buffered up to a bound."""

    def __init__(self, predicate: Callable[[Origin], bool], limit: int) -> None:
        self.predicate = predicate
        self.limit = limit
        self.items: deque[Record] = deque()
        self.wake = asyncio.Event()
        self.overflowed = False
        self.closed = False
        self.uri: str | None = None  # its EventDestination, while open

    def offer(self, record: Record) -> None:
        if self.closed or self.overflowed or not self.predicate(record[0]):
            return
        if len(self.items) >= self.limit:
            self.overflowed = True  # the stream ends; the client resumes with Last-Event-ID
        else:
            self.items.append(record)
        self.wake.set()

    def close(self) -> None:
        self.closed = True
        self.wake.set()


class EventHub:
    """Owns the push workers and SSE listeners; started and stopped with the app."""

    def __init__(self, store: Store, *, queue_size: int = 1000, sse_buffer: int = 5000,
                 max_batch: int = 100, post_timeout_s: float = 5.0,
                 keepalive_s: float = 15.0, max_subscriptions: int = 100,
                 heartbeat_unit_s: float = 60.0, flush_interval_s: float = 0.025) -> None:
        self.store = store
        self.queue_size = queue_size
        self.sse_buffer = sse_buffer
        self.max_batch = max_batch
        self.post_timeout_s = post_timeout_s
        self.keepalive_s = keepalive_s
        # Sends to one receiver (an SSE write, a push POST) start at least this far apart;
        # what arrives meanwhile goes in the next. An idle receiver is sent to at once.
        self.flush_interval_s = flush_interval_s
        self.max_subscriptions = max_subscriptions
        # Seconds per unit of DeliveryRetryIntervalSeconds (tests shorten it).
        self.retry_unit_s = 1.0
        # Seconds per unit of HeartbeatIntervalMinutes (Settings.heartbeat_unit_s).
        self.heartbeat_unit_s = heartbeat_unit_s
        self.destinations: dict[str, PushDestination] = {}
        self.listeners: set[Listener] = set()
        # Serialized records by sequence number, shared by the SSE streams (sse.py).
        self.frame_cache: dict[int, bytes] = {}
        self._session: aiohttp.ClientSession | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._test_ids = 0
        self._pending: set[asyncio.Task] = set()

    # -- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        await res.ensure_documents(self.store)
        stale = []
        for uri in self.store.members(res.SUBSCRIPTIONS):
            doc = self.store.doc(uri) or {}
            if doc.get("SubscriptionType") == "SSE":
                stale.append(uri)  # its stream died with the previous process
        if stale:
            async with self.store.transaction(ACTOR) as tx:
                for uri in stale:
                    if tx.exists(uri):
                        tx.delete(uri)
        self.store.describe = describe  # notes kept with each change, for replays
        self._unsubscribe = self.store.subscribe(self._on_changes)
        for uri in self.store.members(res.SUBSCRIPTIONS):
            self._add(uri)

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
            self.store.describe = None
        for listener in list(self.listeners):
            listener.close()
        workers = [t for d in self.destinations.values() for t in (d.task, d.beat_task)
                   if t is not None]
        for d in self.destinations.values():
            d.stop()
        for task in [*workers, *self._pending]:
            task.cancel()
        for task in [*workers, *self._pending]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.destinations.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    def http(self) -> aiohttp.ClientSession:
        if self._session is None:
            # No pool limit: each destination has at most one request in flight.
            connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    # -- settings -----------------------------------------------------------------------
    def service(self) -> dict[str, Any]:
        return self.store.doc(res.EVENT_SERVICE) or {}

    def enabled(self) -> bool:
        return self.service().get("ServiceEnabled", True) is not False

    def retry_settings(self) -> tuple[int, float]:
        doc = self.service()
        return (int(doc.get("DeliveryRetryAttempts", 3)),
                float(doc.get("DeliveryRetryIntervalSeconds", 30)))

    def next_test_id(self, tag: str = "t") -> str:
        """An EventId for an event not from the change log (tests, heartbeats)."""
        self._test_ids += 1
        return f"{self.store.seq}-{tag}{self._test_ids}"

    def heartbeat_record(self, subscription: str) -> Record:
        msg = message("RedfishServiceFunctional", registry=HEARTBEAT_EVENT)
        record = {"EventType": "Other", "MemberId": "0", "EventId": self.next_test_id("h"),
                  "EventTimestamp": iso_time(time.time()),
                  **{k: msg[k] for k in ("MessageId", "Message", "MessageArgs",
                                         "MessageSeverity")},
                  "OriginOfCondition": {"@odata.id": subscription}}
        origin = Origin(0, HEARTBEAT_EVENT.prefix, "RedfishServiceFunctional", "OK",
                        "EventDestination", subscription)
        return origin, record

    # -- subscriptions ------------------------------------------------------------------
    def _add(self, uri: str) -> None:
        doc = self.store.doc(uri) or {}
        if doc.get("SubscriptionType", "RedfishEvent") != "RedfishEvent":
            return
        dest = PushDestination(self, uri)
        self.destinations[uri] = dest
        dest.start()

    def _sync(self, change: Change) -> None:
        if change.op == "delete":
            dest = self.destinations.pop(change.uri, None)
            if dest is not None:
                dest.stop()
            for listener in list(self.listeners):
                if listener.uri == change.uri:
                    listener.close()  # DELETE of an SSE subscription ends its stream
        elif change.uri in self.destinations:
            self.destinations[change.uri].configure()
        elif change.op == "create":
            self._add(change.uri)

    async def give_up(self, dest: PushDestination) -> None:
        """Retries exhausted: suspend the subscription or end it, as its policy says."""
        async with self.store.transaction(ACTOR) as tx:
            doc = tx.get(dest.uri)
            if doc is None:
                return
            if dest.policy == "TerminateAfterRetries":
                tx.delete(dest.uri)
            else:
                doc["Status"] = {"State": "Disabled", "Health": "Warning"}
                tx.put(dest.uri, doc)
        log.warning("subscription %s %s after failed deliveries", dest.uri,
                    "ended" if dest.policy == "TerminateAfterRetries" else "suspended")

    # -- the change feed ----------------------------------------------------------------
    def _on_changes(self, changes: list[Change]) -> None:
        enabled = self.enabled()
        for change in changes:
            if change.uri.startswith(res.SUBSCRIPTIONS + "/"):
                self._sync(change)
            if not enabled:
                continue
            record = from_change(change)
            if record is not None:
                self.publish(record)

    def publish(self, record: Record) -> None:
        for dest in list(self.destinations.values()):
            dest.offer(record)
        for listener in list(self.listeners):
            listener.offer(record)

    def inject(self, origin: Origin, record: dict[str, Any],
               only: PushDestination | None = None) -> None:
        """A record not from the change log (SubmitTestEvent, TestEventSubscription)."""
        if only is not None:
            only.offer((origin, record))
        else:
            self.publish((origin, record))

    # -- SSE ----------------------------------------------------------------------------
    def listen(self, predicate: Callable[[Origin], bool]) -> Listener:
        listener = Listener(predicate, self.sse_buffer)
        self.listeners.add(listener)
        return listener

    def close_streams(self) -> None:
        for listener in list(self.listeners):
            listener.close()

    def unlisten(self, listener: Listener) -> None:
        self.listeners.discard(listener)
        listener.close()

    async def open_sse_destination(self, listener: Listener,
                                   owner: dict[str, str] | None) -> str:
        async with self.store.transaction(ACTOR) as tx:
            taken = {u.rsplit("/", 1)[1] for u in self.store.members(res.SUBSCRIPTIONS)}
            n = 1
            while f"SSE-{n}" in taken:
                n += 1
            doc = res.sse_destination_doc(f"SSE-{n}", secrets.token_hex(8))
            tx.create(doc["@odata.id"], doc, dict(owner or {}))
        listener.uri = doc["@odata.id"]
        return doc["@odata.id"]

    def close_sse_destination(self, listener: Listener) -> None:
        """Delete the stream's EventDestination, in the background (the client is gone)."""
        uri = listener.uri
        if uri is None or uri not in self.store:
            return

        async def remove() -> None:
            async with self.store.transaction(ACTOR) as tx:
                if tx.exists(uri):
                    tx.delete(uri)

        task = asyncio.get_running_loop().create_task(remove())
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
