"""Server-sent events at ``ServerSentEventUri``.

Each SSE event carries one record and ``id: <change sequence number>``; a client that
reconnects with ``Last-Event-ID`` gets the retained changes after it, then live ones, with
no gap and no repeat (the listener is registered in the same step that reads the log, and
records are passed on only with a sequence number above the last one sent). If the id is
older than the retained log, the stream starts with a ``Base.EventBufferExceeded`` event.
"""

from __future__ import annotations

import contextlib
import time

import orjson
from aiohttp import web

from .. import services
from ..protocol import filter as odata_filter
from ..protocol.dispatch import authorize, context
from ..protocol.errors import RedfishError
from ..protocol.messages import message
from ..protocol.middleware import COMMON_HEADERS
from .hub import EventHub, Listener
from .records import EVENT_TYPE, Origin, Record, from_change, iso_time
from .resources import EVENT_SERVICE, SSE_URI, owner_of

FRAME_CACHE = 2048  # records whose JSON the streams share (a burst's worth)
BACKLOG_WRITE = 500  # replayed records per write

FILTER_NAMES = ("EventFormatType", "EventType", "MessageId", "OriginResource",
                "RegistryPrefix", "ResourceType", "MessageSeverity")


def _predicate(request: web.Request):
    unsupported = [k for k in request.query if k != "$filter"]
    if unsupported:
        raise RedfishError.of(400, "QueryParameterUnsupported", unsupported[0])
    text = request.query.get("$filter")
    if text is None:
        return None  # every record
    try:
        test = odata_filter.parse(text)
    except odata_filter.FilterSyntaxError:
        raise RedfishError.of(400, "QueryParameterValueFormatError", text[:256],
                              "$filter") from None
    # Only the supported properties may be named (a typo would silently match nothing).
    for word in odata_filter._tokenize(text):
        if word[0] == "word" and word[1] not in FILTER_NAMES and \
                word[1] not in ("and", "or", "not", "eq", "ne", "gt", "ge", "lt", "le",
                                "true", "false", "null"):
            raise RedfishError.of(400, "QueryParameterValueError", "$filter")
    return lambda origin: test(origin.filter_view())


def _last_event_id(request: web.Request) -> int | None:
    raw = request.headers.get("Last-Event-ID")
    if raw is None or not raw.strip():
        return None
    head = raw.strip().split("-", 1)[0]
    if not head.isdigit():
        raise RedfishError.of(400, "HeaderInvalid", "Last-Event-ID")
    return int(head)


def _frame_head(record: Record, cache: dict[int, bytes] | None = None) -> bytes:
    """The SSE event of one record, ``event_body([record], id, context)``, up to its
    Context (the one part each stream has its own of): computed once per record and
    shared by the streams through ``cache`` (the hub's, by sequence number)."""
    origin, rec = record
    head = cache.get(origin.seq) if cache is not None and origin.seq else None
    if head is None:
        event_id = str(origin.seq) if origin.seq else rec.get("EventId", "0")
        head = (b"id: " + event_id.encode() + b'\ndata: {"@odata.type":"'
                + EVENT_TYPE.encode() + b'","Id":' + orjson.dumps(event_id)
                + b',"Name":"Event","Events":[' + orjson.dumps({**rec, "MemberId": "0"})
                + b'],"Events@odata.count":1,"Context":')
        if cache is not None and origin.seq:
            cache[origin.seq] = head
            if len(cache) > FRAME_CACHE:
                del cache[next(iter(cache))]
    return head


def _frame_tail(context_value: str) -> bytes:
    return orjson.dumps(context_value) + b"}\n\n"


def _record_frame(record: Record, context_value: str, cache: dict[int, bytes] | None = None
                  ) -> bytes:
    return _frame_head(record, cache) + _frame_tail(context_value)


async def handle(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    service = ctx.store.doc(EVENT_SERVICE)
    if service is None:
        raise RedfishError.of(404, "ResourceMissingAtURI", SSE_URI)
    authorize(ctx, "GET", EVENT_SERVICE, service)
    hub: EventHub = request.app[services.EVENTS]
    if request.method == "HEAD":
        return web.Response(status=200, headers={"Content-Type": "text/event-stream"})
    if not hub.enabled():
        raise RedfishError.of(503, "ServiceDisabled", EVENT_SERVICE)
    predicate = _predicate(request)
    last = _last_event_id(request)

    # Register and read the log in one step (no await in between): every change is then
    # either in the backlog or in the listener, never in neither.
    listener: Listener = hub.listen(predicate)
    backlog: list[Record] = []
    too_old = False
    if last is not None:
        changes = ctx.store.changes_since(last)
        if changes is None:
            too_old = True
        else:
            for change in changes:
                record = from_change(change)
                if record is not None and (predicate is None or predicate(record[0])):
                    backlog.append(record)
    try:
        dest_uri = await hub.open_sse_destination(listener, owner_of(ctx))
        dest = ctx.store.doc(dest_uri) or {}
        context_value = dest.get("Context", "")
        response = web.StreamResponse(status=200, headers={
            **COMMON_HEADERS,
            "Content-Type": "text/event-stream; charset=utf-8",
            "X-Accel-Buffering": "no",
        })
        await response.prepare(request)
        sent = last or 0
        if too_old:
            lost = message("EventBufferExceeded")
            record = {"EventType": "Other", "MemberId": "0", "EventId": f"{ctx.store.seq}-lost",
                      "EventTimestamp": iso_time(time.time()),
                      **{k: lost[k] for k in ("MessageId", "Message", "MessageArgs",
                                              "MessageSeverity")}}
            origin = Origin(0, "Base", "EventBufferExceeded", "Warning", "", "")
            await response.write(_record_frame((origin, record), context_value))
        await response.write(b": connected\n\n")
        tail = _frame_tail(context_value)
        for start in range(0, len(backlog), BACKLOG_WRITE):
            part = backlog[start:start + BACKLOG_WRITE]
            await response.write(tail.join(_frame_head(r) for r in part) + tail)
            sent = max(sent, *(r[0].seq for r in part))
        while not listener.closed:
            if not listener.items:
                if listener.overflowed:
                    break
                if listener.ping:
                    listener.ping = False
                    await response.write(b": keep-alive\n\n")
                    continue
                await listener.wake.wait()  # the hub's tick, or a keep-alive round
                listener.wake.clear()
                continue
            # Everything queued since the last tick goes out in one write.
            heads = []
            while listener.items:
                record = listener.items.popleft()
                seq = record[0].seq
                if seq and seq <= sent:
                    continue  # already sent from the backlog
                heads.append(_frame_head(record, hub.frame_cache))
                if seq:
                    sent = seq
            if heads:
                listener.quiet = False
                await response.write(tail.join(heads) + tail)
        return response
    except ConnectionResetError:  # the client went away
        return response
    finally:
        hub.unlisten(listener)
        with contextlib.suppress(Exception):
            hub.close_sse_destination(listener)


async def _close_streams(app: web.Application) -> None:
    if services.EVENTS in app:
        app[services.EVENTS].close_streams()


def setup_routes(app: web.Application) -> None:
    """The SSE route (added before the dispatcher's catch-all so it is matched first), and
    open streams ended when the server shuts down instead of holding it up."""
    app.router.add_get(SSE_URI, handle)
    app.on_shutdown.append(_close_streams)
