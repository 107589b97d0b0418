"""Heartbeats: a push subscription with ``SendHeartbeat`` gets
``HeartbeatEvent.RedfishServiceFunctional`` every ``HeartbeatIntervalMinutes``, through
the same delivery path as every event (Context, HttpHeaders, retries, retry policy); a
suspended subscription, a deleted one or a disabled EventService gets none.

A "minute" here is ``Settings.heartbeat_unit_s`` = UNIT seconds."""

from __future__ import annotations

import asyncio
import time

import pytest

from .support.events import EVENT_SERVICE, SUBSCRIPTIONS, Receiver, subscribe
from .test_events import fast_retries, wait_state
from .test_expansion import ADMIN

pytestmark = pytest.mark.timeout(60)

UNIT = 0.05
HEARTBEAT = "HeartbeatEvent.1.1.RedfishServiceFunctional"
SUSPEND = "Actions/EventDestination.SuspendSubscription"
RESUME = "Actions/EventDestination.ResumeSubscription"


@pytest.fixture
def settings(settings):
    return settings.model_copy(update={"heartbeat_unit_s": UNIT})


def beats(receiver: Receiver) -> list[dict]:
    return [r for r in receiver.records if r["MessageId"] == HEARTBEAT]


async def test_heartbeats_arrive_every_interval_with_context_and_headers(rf, receivers):
    beating, quiet = await receivers(), await receivers()
    started = time.monotonic()
    uri = await subscribe(rf, ADMIN, beating.url, Context="alive?", SendHeartbeat=True,
                          HeartbeatIntervalMinutes=2, HttpHeaders=[{"X-Token": "hb-secret"}],
                          # filters select events; the heartbeat was asked for and comes
                          RegistryPrefixes=["TaskEvent"])
    await subscribe(rf, ADMIN, quiet.url, Context="no heartbeat")
    doc = await (await rf.get(uri, headers=ADMIN)).json()
    assert doc["SendHeartbeat"] is True and doc["HeartbeatIntervalMinutes"] == 2

    await beating.wait_for(lambda r: len(beats(r)) >= 3)
    # never sooner than the interval: three heartbeats take at least three intervals
    assert time.monotonic() - started >= 3 * 2 * UNIT * 0.95
    assert beating.records == beats(beating)  # nothing but heartbeats (no TaskEvent)
    for post, headers in zip(beating.posts, beating.headers, strict=True):
        assert post["Context"] == "alive?"
        assert headers["X-Token"] == "hb-secret"
    record = beats(beating)[0]
    assert record["MessageSeverity"] == "OK" and record["MessageArgs"] == []
    assert record["OriginOfCondition"] == {"@odata.id": uri}
    assert record["EventType"] == "Other" and record["EventTimestamp"].endswith("Z")
    assert len({r["EventId"] for r in beats(beating)}) == len(beats(beating))
    assert quiet.posts == []  # no SendHeartbeat: no heartbeat

    # deleted: no more heartbeats
    assert (await rf.delete(uri, headers=ADMIN)).status == 204
    await asyncio.sleep(2 * UNIT)
    count = len(beating.records)
    await asyncio.sleep(5 * UNIT)
    assert len(beating.records) == count


async def test_suspended_subscription_and_disabled_service_get_no_heartbeat(rf, receivers):
    recv = await receivers()
    uri = await subscribe(rf, ADMIN, recv.url, SendHeartbeat=True, HeartbeatIntervalMinutes=1)
    await recv.wait_for(lambda r: len(beats(r)) >= 1)
    assert (await rf.post(f"{uri}/{SUSPEND}", headers=ADMIN, json={})).status == 204
    await asyncio.sleep(2 * UNIT)  # a heartbeat in flight may still land
    count = len(recv.records)
    await asyncio.sleep(6 * UNIT)
    assert len(recv.records) == count
    assert (await rf.post(f"{uri}/{RESUME}", headers=ADMIN, json={})).status == 204
    await recv.wait_for(lambda r: len(r.records) > count)

    resp = await rf.patch(EVENT_SERVICE, headers=ADMIN, json={"ServiceEnabled": False})
    assert resp.status == 200
    await asyncio.sleep(2 * UNIT)
    count = len(recv.records)
    await asyncio.sleep(6 * UNIT)
    assert len(recv.records) == count


async def test_heartbeats_are_retried_then_the_policy_applies(rf, receivers):
    await fast_retries(rf, attempts=1, unit=0.02)
    down_for_good, down_then_up = await receivers(False), await receivers(False)
    healthy = await receivers()
    suspended = await subscribe(rf, ADMIN, down_for_good.url, SendHeartbeat=True,
                                HeartbeatIntervalMinutes=1,
                                DeliveryRetryPolicy="SuspendRetries")
    forever = await subscribe(rf, ADMIN, down_then_up.url, SendHeartbeat=True,
                              HeartbeatIntervalMinutes=1, DeliveryRetryPolicy="RetryForever",
                              Context="patient")
    await subscribe(rf, ADMIN, healthy.url, SendHeartbeat=True, HeartbeatIntervalMinutes=1)
    # heartbeats alone, undeliverable, exhaust the retries: the subscription is suspended
    await wait_state(rf, suspended, "Disabled")
    doc = await (await rf.get(suspended, headers=ADMIN)).json()
    assert doc["Status"]["Health"] == "Warning"
    # others are not held up
    await healthy.wait_for(lambda r: len(beats(r)) >= 3)
    await wait_state(rf, forever, "Enabled")
    await down_then_up.start()
    await down_then_up.wait_for(lambda r: len(beats(r)) >= 2)
    assert {p["Context"] for p in down_then_up.posts} == {"patient"}
    assert down_for_good.posts == []


@pytest.mark.parametrize(("extra", "expected"), [
    ({"SendHeartbeat": True, "HeartbeatIntervalMinutes": 0}, ["PropertyValueOutOfRange"]),
    ({"SendHeartbeat": True, "HeartbeatIntervalMinutes": 65536}, ["PropertyValueOutOfRange"]),
    ({"SendHeartbeat": True, "HeartbeatIntervalMinutes": "5"}, ["PropertyValueTypeError"]),
    ({"SendHeartbeat": True, "HeartbeatIntervalMinutes": 1.5}, ["PropertyValueTypeError"]),
    ({"SendHeartbeat": "yes"}, ["PropertyValueTypeError"]),
])
async def test_bad_heartbeat_settings_answer_400(rf, extra, expected):
    resp = await rf.post(SUBSCRIPTIONS, headers=ADMIN, json={
        "Destination": "http://127.0.0.1:9/e", "Protocol": "Redfish", **extra})
    assert resp.status == 400
    found = [m["MessageId"].rsplit(".", 1)[1]
             for m in (await resp.json())["error"]["@Message.ExtendedInfo"]]
    assert found == expected
    assert (await (await rf.get(SUBSCRIPTIONS, headers=ADMIN)).json())["Members"] == []


async def test_heartbeat_settings_defaults_schema_and_registry(rf):
    uri = await subscribe(rf, ADMIN, "http://127.0.0.1:9/e", SendHeartbeat=True)
    doc = await (await rf.get(uri, headers=ADMIN)).json()
    assert doc["SendHeartbeat"] is True and doc["HeartbeatIntervalMinutes"] == 10
    plain = await subscribe(rf, ADMIN, "http://127.0.0.1:9/e",
                            MessageIds=[HEARTBEAT])  # a message the service sends
    doc = await (await rf.get(plain, headers=ADMIN)).json()
    assert doc["SendHeartbeat"] is False
    # read-only in the EventDestination schema: set when subscribing, never PATCHed
    for body in ({"SendHeartbeat": False}, {"HeartbeatIntervalMinutes": 3}):
        resp = await rf.patch(uri, headers=ADMIN, json=body)
        assert resp.status == 400, await resp.text()
        info = (await resp.json())["error"]["@Message.ExtendedInfo"]
        assert [m["MessageId"] for m in info] == ["Base.1.22.PropertyNotWritable"]
    assert (await (await rf.get(uri, headers=ADMIN)).json())["SendHeartbeat"] is True

    service = await (await rf.get(EVENT_SERVICE, headers=ADMIN)).json()
    assert "HeartbeatEvent" in service["RegistryPrefixes"]
    resp = await rf.get("/redfish/v1/Registries/HeartbeatEvent", headers=ADMIN)
    assert resp.status == 200
    assert (await resp.json())["Registry"] == "HeartbeatEvent.1.1.1"
    resp = await rf.post(SUBSCRIPTIONS, headers=ADMIN, json={
        "Destination": "http://127.0.0.1:9/e", "Protocol": "Redfish",
        "MessageIds": ["HeartbeatEvent.1.1.RedfishServiceStarted"]})  # never sent
    assert resp.status == 400


async def test_heartbeat_event_and_subscription_match_their_json_schemas(rf, receivers):
    from .conftest import json_schema_dir
    from .support.schemas import Schemas

    folder = json_schema_dir()
    if folder is None:
        pytest.skip("set REDFISH_JSON_SCHEMA_DIR to check documents against DMTF schemas")
    schemas = Schemas(folder, Schemas.swordfish_dir_for(folder))
    recv = await receivers()
    uri = await subscribe(rf, ADMIN, recv.url, SendHeartbeat=True, HeartbeatIntervalMinutes=1)
    await recv.wait_for(lambda r: len(beats(r)) >= 1)
    docs = [recv.posts[0], await (await rf.get(uri, headers=ADMIN)).json()]
    problems = []
    for doc in docs:
        choice = schemas.schema_for_type(doc["@odata.type"])
        problems += [f"{doc.get('@odata.id', 'Event')}: {e}"
                     for e in schemas.errors(doc, choice.path)]
    assert not problems, "\n".join(problems)
