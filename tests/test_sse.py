"""Server-sent events: filters, resuming with Last-Event-ID, the stream's EventDestination,
keep-alives, errors, and many clients receiving a burst."""

from __future__ import annotations

import asyncio
from collections import deque

import pytest

from redfish_service import services

from .support.events import SSE, SUBSCRIPTIONS, ChangeLog, read_sse, read_until
from .test_compose import SYSTEMS, request
from .test_expansion import ADD, ADMIN, BLOCKS, REMOVE, block

pytestmark = pytest.mark.timeout(60)
STREAM = {**ADMIN, "Accept": "text/event-stream"}
CHASSIS = "/redfish/v1/Chassis"


async def open_stream(rf, query: str = "", **headers):
    resp = await rf.get(SSE + query, headers={**STREAM, **headers})
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    event_id, comment = await read_sse(resp)
    assert event_id is None and "connected" in comment
    return resp


async def test_filters_select_what_each_stream_gets(rf):
    store = rf.server.app[services.STORE]
    systems = await open_stream(
        rf, "?$filter=(RegistryPrefix eq 'ResourceEvent') and (ResourceType eq 'ComputerSystem')")
    gpu = f"{BLOCKS}/gpu1-1"
    one_block = await open_stream(rf, f"?$filter=OriginResource eq '{gpu}'")
    created = await open_stream(
        rf, "?$filter=MessageId eq 'ResourceEvent.1.4.ResourceCreated' and "
            "EventFormatType eq 'Event'")
    log = ChangeLog(store)
    resp = await rf.post(SYSTEMS, json=request("sled1", "gpu1-1"), headers=ADMIN)
    assert resp.status == 201
    log.close()

    for stream, predicate in (
        (systems, lambda o: o.resource_type == "ComputerSystem"),
        (one_block, lambda o: o.uri == gpu),
        (created, lambda o: o.message_key == "ResourceCreated"),
    ):
        expected = log.ids(predicate)
        assert expected
        got = await read_until(stream, expected[-1])
        assert [i for i, _ in got] == expected
        for event_id, data in got:
            assert data["@odata.type"].startswith("#Event.") and data["Id"] == event_id
            assert data["Events"][0]["EventId"] == event_id
            assert data["Context"]  # the stream's opaque context
        stream.close()


async def test_reconnect_with_last_event_id_loses_and_repeats_nothing(rf):
    store = rf.server.app[services.STORE]
    log = ChangeLog(store)
    stream = await open_stream(rf, "?$filter=ResourceType eq 'ResourceBlock'")
    assert (await rf.post(ADD.format("host1"), json=block("gpu1-2"), headers=ADMIN)
            ).status == 204
    first = log.ids(lambda o: o.resource_type == "ResourceBlock")
    got = await read_until(stream, first[-1])
    stream.close()
    last = got[len(got) // 2][0]  # as if the connection dropped halfway through
    # changes while disconnected
    assert (await rf.post(REMOVE.format("host1"), json=block("gpu1-2"), headers=ADMIN)
            ).status == 204
    assert (await rf.post(ADD.format("host2"), json=block("gpu1-3"), headers=ADMIN)
            ).status == 204
    stream = await open_stream(rf, "?$filter=ResourceType eq 'ResourceBlock'",
                               **{"Last-Event-ID": last})
    # and changes after the reconnection
    assert (await rf.post(REMOVE.format("host2"), json=block("gpu1-3"), headers=ADMIN)
            ).status == 204
    log.close()
    expected = log.ids(lambda o: o.resource_type == "ResourceBlock")
    resumed = await read_until(stream, expected[-1])
    ids = [i for i, _ in got][: len(got) // 2 + 1] + [i for i, _ in resumed]
    assert ids == expected  # each exactly once, in order
    stream.close()


async def test_a_long_absence_is_replayed_whole_then_live(rf):
    """1,200 changes while disconnected (replayed in several writes), then live ones:
    every change once, in order."""
    store = rf.server.app[services.STORE]
    query = f"?$filter=OriginResource eq '{CHASSIS}/host1'"
    stream = await open_stream(rf, query)
    log = ChangeLog(store)

    async def tag(i: int) -> None:
        async with store.transaction("absence") as tx:
            tx.update(f"{CHASSIS}/host1", {"AssetTag": f"away-{i}"})

    await tag(0)
    first = await read_until(stream, log.ids()[-1])
    stream.close()
    for i in range(1, 1201):
        await tag(i)
    stream = await open_stream(rf, query, **{"Last-Event-ID": first[-1][0]})
    await tag(1201)
    log.close()
    expected = log.ids()
    assert len(expected) == 1202
    resumed = await read_until(stream, expected[-1], within=20)
    assert [i for i, _ in first + resumed] == expected
    stream.close()


async def test_last_event_id_older_than_the_log_is_announced(rf):
    store = rf.server.app[services.STORE]
    store._recent = deque(list(store._recent)[-3:], maxlen=3)  # a short retention window
    stream = await open_stream_raw(rf, {"Last-Event-ID": "1"})
    event_id, data = await read_sse(stream)
    assert data["Events"][0]["MessageId"] == "Base.1.22.EventBufferExceeded"
    event_id, comment = await read_sse(stream)
    assert event_id is None and "connected" in comment
    stream.close()


async def open_stream_raw(rf, headers):
    resp = await rf.get(SSE, headers={**STREAM, **headers})
    assert resp.status == 200
    return resp


async def test_stream_is_an_event_destination_while_open(rf):
    stream = await open_stream(rf)
    members = (await (await rf.get(SUBSCRIPTIONS, headers=ADMIN)).json())["Members"]
    assert len(members) == 1
    uri = members[0]["@odata.id"]
    doc = await (await rf.get(uri, headers=ADMIN)).json()
    assert doc["SubscriptionType"] == "SSE" and doc["Context"]
    # deleting it ends the stream
    assert (await rf.delete(uri, headers=ADMIN)).status == 204
    assert await asyncio.wait_for(stream.content.read(), 5) == b""
    # a stream that the client closes takes its EventDestination with it
    stream = await open_stream(rf)
    stream.close()
    for _ in range(200):
        members = (await (await rf.get(SUBSCRIPTIONS, headers=ADMIN)).json())["Members"]
        if not members:
            break
        await asyncio.sleep(0.01)
    assert members == []


async def test_keep_alive_comments(rf):
    rf.server.app[services.EVENTS].keepalive_s = 0.05
    stream = await open_stream(rf)
    event_id, comment = await read_sse(stream, within=2)
    assert event_id is None and "keep-alive" in comment
    stream.close()


@pytest.mark.parametrize(("query", "headers", "status"), [
    ("?$filter=ResourceType eq", STREAM, 400),
    ("?$filter=Colour eq 'red'", STREAM, 400),
    ("?$top=3", STREAM, 400),
    ("", {**ADMIN, "Accept": "application/json"}, 406),
    ("", {"Accept": "text/event-stream"}, 401),
    ("", {**STREAM, "Last-Event-ID": "yesterday"}, 400),
])
async def test_refused_streams_answer_json_errors(rf, query, headers, status):
    resp = await rf.get(SSE + query, headers=headers)
    assert resp.status == status
    assert resp.headers["Content-Type"].startswith("application/json")
    assert "error" in await resp.json()


async def test_many_clients_receive_a_burst(rf):
    store = rf.server.app[services.STORE]
    clients, changes = 100, 1000
    streams = [await open_stream(rf, f"?$filter=OriginResource eq '{CHASSIS}/host1'")
               for _ in range(clients)]
    log = ChangeLog(store)
    for i in range(changes):
        async with store.transaction("burst") as tx:
            tx.update(f"{CHASSIS}/host1", {"AssetTag": f"tag-{i}"})
    log.close()
    expected = log.ids()
    assert len(expected) == changes
    results = await asyncio.gather(*(read_until(s, expected[-1], within=20) for s in streams))
    for got in results:
        assert [i for i, _ in got] == expected
    for s in streams:
        s.close()


def test_an_assembled_frame_is_the_event_body_of_its_record():
    import json

    from redfish_service.events.records import Origin, event_body
    from redfish_service.events.sse import _record_frame

    rec = {"EventType": "Other", "EventId": "7", "MemberId": "0", "MessageId": "a.b",
           "MessageArgs": ["x\"y"], "OriginOfCondition": {"@odata.id": "/r"}}
    origin = Origin(7, "ResourceEvent", "ResourceChanged", "OK", "", "/r")
    cache: dict[int, bytes] = {}
    for context in ("c\u00e9\"", ""):
        frame = _record_frame((origin, rec), context, cache)
        head, data = frame.decode().rstrip("\n").split("\n")
        assert head == "id: 7" and frame.endswith(b"\n\n")
        assert json.loads(data.removeprefix("data: ")) == event_body([rec], "7", context)
    assert list(cache) == [7]
