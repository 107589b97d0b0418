"""Events across a SIGKILL of the service and a restart on the same state directory.

A push subscription survives: it is listed again with the same properties (its
HttpHeaders still hidden), and a change committed after the restart reaches its receiver
with the subscription's Context and HttpHeaders, and only what its filters allow; its
heartbeats start again. An SSE client resuming with Last-Event-ID is told what a live
client was told."""

from __future__ import annotations

import asyncio

import pytest

from .support.composition import SYSTEMS, compose_body
from .support.events import SUBSCRIPTIONS, Receiver
from .support.service import ServiceProcess

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

SECRET = "durable-s3cret-token"
SUSPEND = "EventDestination.SuspendSubscription"
RESUME = "EventDestination.ResumeSubscription"
TEST_EVENT = "/redfish/v1/EventService/Actions/EventService.SubmitTestEvent"
CREATED = "ResourceEvent.1.4.ResourceCreated"
HEARTBEAT = "HeartbeatEvent.1.1.RedfishServiceFunctional"
UNIT = 0.2  # seconds per heartbeat "minute"


async def call(svc: ServiceProcess, method: str, path: str, body=None):
    """A request to the service off the event loop (the receiver runs on it)."""
    return await asyncio.to_thread(svc.request, method, path, body)


async def test_subscription_survives_sigkill_and_restart(tmp_path):
    receiver, suspended = await Receiver().start(), await Receiver().start()
    config = tmp_path / "config.yaml"
    config.write_text(f"heartbeat_unit_s: {UNIT}\n")
    svc = ServiceProcess(tmp_path / "state", extra_args=["--config", str(config)]).start()
    try:
        status, headers, body = await call(svc, "POST", SUBSCRIPTIONS, {
            "Destination": receiver.url, "Protocol": "Redfish", "Context": "kept-context",
            "HttpHeaders": [{"X-Receiver-Token": SECRET}],
            "ResourceTypes": ["ComputerSystem"], "MessageIds": [CREATED],
            "Severities": ["OK"], "DeliveryRetryPolicy": "RetryForever",
            "SendHeartbeat": True, "HeartbeatIntervalMinutes": 1,
        })
        assert status == 201, body
        uri = local(headers["Location"])
        status, _, before = await call(svc, "GET", uri)
        assert status == 200 and before["HttpHeaders"] == []
        # a second one, suspended before the kill, stays suspended
        status, headers, body = await call(svc, "POST", SUBSCRIPTIONS, {
            "Destination": suspended.url, "Protocol": "Redfish", "Context": "paused"})
        assert status == 201, body
        paused = local(headers["Location"])
        status, _, body = await call(svc, "POST", f"{paused}/Actions/{SUSPEND}", {})
        assert status == 204, body

        # delivered before the kill: the subscription is live
        status, headers, body = await call(svc, "POST", SYSTEMS,
                                           compose_body("sled1", "gpu1-1", name="one"))
        assert status == 201, body
        await receiver.wait_for(lambda r: len(events(r)) == 1 and len(beats(r)) >= 1,
                                within=10)

        await asyncio.to_thread(svc.kill)
        beats_before = len(beats(receiver))
        await asyncio.to_thread(svc.start)

        status, _, after = await call(svc, "GET", uri)
        assert status == 200, after
        for key in ("@odata.etag",):
            before.pop(key, None)
            after.pop(key, None)
        assert after == before  # same properties, same Context, headers still hidden
        assert SECRET not in str(after)
        status, _, collection = await call(svc, "GET", SUBSCRIPTIONS)
        assert {"@odata.id": uri} in collection["Members"]
        status, _, expanded = await call(svc, "GET", SUBSCRIPTIONS + "?$expand=*")
        assert status == 200 and SECRET not in str(expanded)

        status, headers, body = await call(svc, "POST", SYSTEMS,
                                           compose_body("sled2", "gpu2-1", name="two"))
        assert status == 201, body
        system = body["@odata.id"]
        await receiver.wait_for(lambda r: len(events(r)) >= 2, within=10)
        await asyncio.sleep(0.2)  # nothing else the filters exclude arrives late
        assert len(events(receiver)) == 2
        record = events(receiver)[-1]
        assert record["MessageId"] == CREATED
        assert record["OriginOfCondition"] == {"@odata.id": system}
        assert {p["Context"] for p in receiver.posts} == {"kept-context"}
        assert all(h["X-Receiver-Token"] == SECRET for h in receiver.headers)
        # the heartbeat timer is back too
        await receiver.wait_for(lambda r: len(beats(r)) > beats_before + 1, within=10)

        status, _, body = await call(svc, "GET", paused)
        assert body["Status"]["State"] == "Disabled" and body["Context"] == "paused"
        assert suspended.posts == []
        status, _, body = await call(svc, "POST", f"{paused}/Actions/{RESUME}", {})
        assert status == 204, body
        status, _, body = await call(svc, "POST", TEST_EVENT, {
            "MessageId": "ResourceEvent.1.4.TestMessage", "EventId": "resumed"})
        assert status == 204, body
        await suspended.wait_for(lambda r: r.event_ids() == ["resumed"], within=10)
        assert suspended.posts[0]["Context"] == "paused"
        assert "Traceback" not in (svc.log_path.read_text() if svc.log_path else "")
    finally:
        await asyncio.to_thread(svc.stop)
        await receiver.stop()
        await suspended.stop()


def events(receiver: Receiver) -> list[dict]:
    return [r for r in receiver.records if r["MessageId"] != HEARTBEAT]


def beats(receiver: Receiver) -> list[dict]:
    return [r for r in receiver.records if r["MessageId"] == HEARTBEAT]


def local(location: str) -> str:
    """A Location header (absolute or relative) as a path."""
    return "/" + location.split("/", 3)[3] if location.startswith("http") else location


async def test_a_resume_after_sigkill_announces_what_was_announced_live(tmp_path):
    """Messages chosen from the documents before and after a change (a block's
    composition state, a resource zone's membership) are kept with the change log, so an
    SSE client resuming with Last-Event-ID after a SIGKILL and a restart is told the same
    records, with the same MessageIds and MessageArgs, as a client that was listening."""
    import base64

    import aiohttp

    from .support.events import read_sse, read_until
    from .support.service import insecure_context

    svc = ServiceProcess(tmp_path / "state").start()
    auth = {"Authorization": "Basic " + base64.b64encode(
        f"admin:{svc.password}".encode()).decode()}
    sse = "/redfish/v1/EventService/SSE"
    try:
        async with aiohttp.ClientSession(headers=auth) as http:
            async with http.get(svc.url + sse, ssl=insecure_context()) as live:
                assert live.status == 200
                assert (await read_sse(live))[0] is None  # ": connected"
                status, _, body = await call(svc, "POST", SYSTEMS,
                                             compose_body("sled1", "gpu1-1", name="one"))
                assert status == 201, body
                status, _, body = await call(svc, "DELETE", local(body["@odata.id"]))
                assert status in (200, 204), body
                seen: list[tuple[str, dict]] = []
                while True:  # until the stream has been quiet for a second
                    try:
                        event_id, data = await read_sse(live, 1.0)
                    except TimeoutError:
                        break
                    if event_id is not None:
                        seen.append((event_id, data))
                    assert len(seen) < 1000

        await asyncio.to_thread(svc.kill)
        await asyncio.to_thread(svc.start)

        first = int(seen[0][0])
        async with aiohttp.ClientSession(headers=auth) as http:
            async with http.get(svc.url + sse, ssl=insecure_context(),
                                headers={"Last-Event-ID": str(first - 1)}) as resumed:
                assert resumed.status == 200
                replayed = await read_until(resumed, seen[-1][0], within=10)
    finally:
        await asyncio.to_thread(svc.stop)

    def said(events: list[tuple[str, dict]]) -> list[tuple]:
        return [(i, r["MessageId"], r["MessageArgs"], r["OriginOfCondition"]["@odata.id"])
                for i, d in events for r in d["Events"]]

    live_records = said(seen)
    ids = {i for i, *_ in live_records}
    assert said([e for e in replayed if e[0] in ids]) == live_records
    kinds = {(m.split(".")[0], m.split(".")[-1], args[0]) for _, m, args, _ in live_records
             if m.startswith("Composition.")}
    # the block's composed and freed states and its zones' memberships, by Id
    assert {("Composition", "ResourceBlockCompositionStateChanged", "gpu1-1"),
            ("Composition", "ResourceBlockCompositionStateChanged", "sled1")} <= kinds
