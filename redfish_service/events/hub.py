"""The event hub: turns the store's committed changes into event records and hands them to
push subscriptions (one queue and one worker per destination) and to open SSE streams.

Nothing here ever waits inside the store's commit: the change callback only builds
records and puts them in bounded queues. One timer, the hub's tick, paces every receiver:
a published record asks for a tick, and a tick wakes each receiver holding records once,
so under a burst every SSE write or push POST carries all that arrived since the last one,
at no cost of a timer or a wake-up per receiver and record. The first tick after a quiet
spell fires at once; the next one waits ``flush_interval_s``, or longer when the sends it
started would exceed ``sends_per_s``: the fan-out's cost to the service is bounded by a
send budget, and a crowd of receivers costs each of them latency, not the service its
capacity to answer requests.

A destination that is slow or down fills its own queue (records beyond its bound are
dropped and announced with ``EventBufferExceeded``), an SSE client that falls behind is
disconnected and resumes from the change log with ``Last-Event-ID``; neither delays a
client request, the store or another receiver.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import ssl
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import orjson

from ..protocol.messages import message
from ..security.tls import client_context
from ..store import Change, Store
from . import resources as res
from .delivery import Client, Unusable
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
        self.items: deque[Record] = deque()  # at most hub.queue_size
        self.wake = asyncio.Event()  # set by the hub's tick (or a heartbeat)
        self.dropped = 0
        self.stopped = False
        self.task: asyncio.Task | None = None
        self.beat_task: asyncio.Task | None = None
        self.heartbeat_minutes: int | None = None  # None: no heartbeats
        self.client: Client | None = None  # made for the settings in client_key
        self.client_key: tuple[Any, ...] = ()
        self.configure()

    def configure(self) -> None:
        """(Re)read the subscription's settings from the store."""
        entry = self.hub.store.get(self.uri)
        doc = entry.doc if entry else {}
        private = (entry.private if entry else None) or {}
        self.destination: str = doc.get("Destination", "")
        self.context: str | None = doc.get("Context")
        self.selection = Selection.of(doc)
        # None: the subscription selects everything (no filter to run per record)
        self.matches = None if self.selection == Selection() else self.selection.matches
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
        if self.client is not None:
            self.client.close()
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
            self._put(self.hub.heartbeat_record(self.uri))
            self.wake.set()  # not paced: nothing else is being sent

    def _clear(self) -> None:
        self.items.clear()
        self.dropped = 0

    def _put(self, record: Record) -> None:
        if len(self.items) < self.hub.queue_size:
            self.items.append(record)
        else:
            self.dropped += 1

    def offer(self, record: Record) -> None:
        if self.enabled and not self.stopped and (
                self.matches is None or self.matches(record[0])):
            self._put(record)

    async def _run(self) -> None:
        while not self.stopped:
            await self.wake.wait()
            self.wake.clear()
            # What is queued now; what comes in meanwhile waits for the next tick.
            waiting = len(self.items)
            while waiting > 0 and self.items and not self.stopped:
                n = min(self.hub.max_batch, waiting, len(self.items))
                waiting -= n
                await self._send_batch(n)

    async def _send_batch(self, n: int) -> None:
        """One Event of the first ``n`` queued records, delivered as the retry policy
        says."""
        batch = [self.items.popleft() for _ in range(n)]
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
        try:
            status = await self._client().post(body)
            if 200 <= status < 300:
                return True
            reason = f"HTTP {status}"
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                Unusable, ValueError) as e:
            reason = type(e).__name__
        # The destination, never the headers (they may hold credentials).
        log.info("event delivery to %s failed (%s)", self.destination, reason,
                 extra={"subscription": self.uri})
        return False

    def _client(self) -> Client:
        """The delivery client for the subscription's current settings (made again, by
        the worker between two POSTs, after they changed)."""
        key = (self.destination, tuple(self.headers.items()), self.verify)
        if self.client is None or key != self.client_key:
            if self.client is not None:
                self.client.close()
            self.client = Client(self.destination, self.headers,
                                 tls=self.hub.tls(self.verify),
                                 timeout_s=self.hub.post_timeout_s)
            self.client_key = key
        return self.client


class Listener:
    """An open SSE stream: records that pass its filter (None: no filter), buffered up to
    a bound; woken by the hub's tick, or to write a keep-alive comment (``ping``)."""

    def __init__(self, predicate: Callable[[Origin], bool] | None, limit: int) -> None:
        self.predicate = predicate
        self.limit = limit
        self.items: deque[Record] = deque()
        self.wake = asyncio.Event()
        self.overflowed = False
        self.closed = False
        self.ping = False  # a keep-alive is due
        self.quiet = False  # nothing written since the last keep-alive round
        self.uri: str | None = None  # its EventDestination, while open

    def offer(self, record: Record) -> None:
        if self.closed or self.overflowed or (
                self.predicate is not None and not self.predicate(record[0])):
            return
        if len(self.items) >= self.limit:
            self.overflowed = True  # the stream ends; the client resumes with Last-Event-ID
            self.wake.set()
        else:
            self.items.append(record)

    def close(self) -> None:
        self.closed = True
        self.wake.set()


class EventHub:
    """Owns the push workers and SSE listeners; started and stopped with the app."""

    def __init__(self, store: Store, *, queue_size: int = 1000, sse_buffer: int = 5000,
                 max_batch: int = 100, post_timeout_s: float = 5.0,
                 keepalive_s: float = 15.0, max_subscriptions: int = 100,
                 heartbeat_unit_s: float = 60.0, flush_interval_s: float = 0.025,
                 sends_per_s: float = 2400.0) -> None:
        self.store = store
        self.queue_size = queue_size
        self.sse_buffer = sse_buffer
        self.max_batch = max_batch
        self.post_timeout_s = post_timeout_s
        self.keepalive_s = keepalive_s
        # Ticks (see the module's docstring) are at least this far apart, and far enough
        # apart that the SSE writes and push POSTs each one starts fit in sends_per_s.
        self.flush_interval_s = flush_interval_s
        self.sends_per_s = sends_per_s
        self.max_subscriptions = max_subscriptions
        # Seconds per unit of DeliveryRetryIntervalSeconds (tests shorten it).
        self.retry_unit_s = 1.0
        # Seconds per unit of HeartbeatIntervalMinutes (Settings.heartbeat_unit_s).
        self.heartbeat_unit_s = heartbeat_unit_s
        self.destinations: dict[str, PushDestination] = {}
        self.listeners: set[Listener] = set()
        self._tick_at: asyncio.TimerHandle | None = None  # the next tick, if asked for
        self._last_tick = -float("inf")
        self._woken = 0  # receivers the last tick woke
        self._keepalive: asyncio.Task | None = None
        # Serialized records by sequence number, shared by the SSE streams (sse.py).
        self.frame_cache: dict[int, bytes] = {}
        self._tls: dict[bool, ssl.SSLContext] = {}
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
        if self._tick_at is not None:
            self._tick_at.cancel()
            self._tick_at = None
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
        if self._keepalive is not None:
            workers.append(self._keepalive)
            self._keepalive = None
        for task in [*workers, *self._pending]:
            task.cancel()
        for task in [*workers, *self._pending]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.destinations.clear()

    def tls(self, verify: bool) -> ssl.SSLContext:
        """The TLS context of push deliveries that verify certificates, or that do not
        (made once: loading the trust store takes milliseconds)."""
        if verify not in self._tls:
            self._tls[verify] = client_context(verify)
        return self._tls[verify]

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
            if not enabled or not (self.destinations or self.listeners):
                continue  # nobody to tell (a replay rebuilds records from the log)
            record = from_change(change)
            if record is not None:
                self.publish(record)

    def publish(self, record: Record) -> None:
        for dest in self.destinations.values():
            dest.offer(record)
        for listener in self.listeners:
            listener.offer(record)
        self._ask_tick()

    def inject(self, origin: Origin, record: dict[str, Any],
               only: PushDestination | None = None) -> None:
        """A record not from the change log (SubmitTestEvent, TestEventSubscription)."""
        if only is not None:
            only.offer((origin, record))
            self._ask_tick()
        else:
            self.publish((origin, record))

    def _ask_tick(self) -> None:
        if self._tick_at is None and (self.destinations or self.listeners):
            loop = asyncio.get_running_loop()
            interval = max(self.flush_interval_s, self._woken / self.sends_per_s)
            self._tick_at = loop.call_at(max(loop.time(), self._last_tick + interval),
                                         self._tick)

    def _tick(self) -> None:
        """Wake every receiver holding records (see the module's docstring). One still
        busy with its last send (a slow client, a destination between retries) is
        already awake and starts no new send: it does not count against the budget."""
        self._tick_at = None
        self._last_tick = asyncio.get_running_loop().time()
        woken = 0
        for receiver in (*self.destinations.values(), *self.listeners):
            if receiver.items and not receiver.wake.is_set():
                receiver.wake.set()
                woken += 1
        self._woken = woken

    # -- SSE ----------------------------------------------------------------------------
    def listen(self, predicate: Callable[[Origin], bool] | None) -> Listener:
        listener = Listener(predicate, self.sse_buffer)
        self.listeners.add(listener)
        if self._keepalive is None:
            self._keepalive = asyncio.get_running_loop().create_task(
                self._keep_alive(), name="SSE keep-alive")
        return listener

    async def _keep_alive(self) -> None:
        """Every ``keepalive_s`` while streams are open, each one that wrote nothing since
        the last round is woken to write a keep-alive comment (one task for all streams:
        no timer per stream and wait)."""
        try:
            while self.listeners:
                await asyncio.sleep(self.keepalive_s)
                for listener in self.listeners:
                    if listener.quiet:
                        listener.ping = True
                        listener.wake.set()
                    listener.quiet = True
        finally:
            if self._keepalive is asyncio.current_task():
                self._keepalive = None

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
