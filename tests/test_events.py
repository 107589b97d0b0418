"""EventService and push subscriptions: events of a composition delivered to real loopback
receivers, in order, filtered; retries and the retry policies; persistence; bad requests."""

from __future__ import annotations

import asyncio
import time

import pytest

from redfish_service import services
from redfish_service.app import create_app

from .support.events import EVENT_SERVICE, SUBSCRIPTIONS, ChangeLog, subscribe
from .test_compose import SYSTEMS, request
from .test_expansion import ADD, ADMIN, BLOCKS, block

pytestmark = pytest.mark.timeout(60)

TEST_EVENT = EVENT_SERVICE + "/Actions/EventService.SubmitTestEvent"
GPU = f"{BLOCKS}/gpu1-1"


def hub(client):
    return client.server.app[services.EVENTS]


async def submit_test_event(rf, event_id: str | None = None) -> None:
    """``SubmitTestEvent`` with ``ResourceEvent.TestMessage`` (and ``event_id``)."""
    body = {"MessageId": "ResourceEvent.1.4.TestMessage"}
    if event_id is not None:
        body["EventId"] = event_id
    resp = await rf.post(TEST_EVENT, headers=ADMIN, json=body)
    assert resp.status == 204, await resp.text()


async def fast_retries(rf, attempts: int = 2, unit: float = 0.02) -> None:
    """Retry after 1 "second", where a second is ``unit`` seconds for the test."""
    hub(rf).retry_unit_s = unit
    resp = await rf.patch(EVENT_SERVICE, headers=ADMIN, json={
        "DeliveryRetryAttempts": attempts, "DeliveryRetryIntervalSeconds": 1})
    assert resp.status == 200, await resp.text()
    assert "@Message.ExtendedInfo" not in await resp.json()


async def test_event_service_document(rf):
    root = await (await rf.get("/redfish/v1/", headers=ADMIN)).json()
    assert root["EventService"] == {"@odata.id": EVENT_SERVICE}
    resp = await rf.get(EVENT_SERVICE, headers=ADMIN)
    doc = await resp.json()
    assert "PATCH" in resp.headers["Allow"]
    assert doc["ServerSentEventUri"] == EVENT_SERVICE + "/SSE"
    assert set(doc["RegistryPrefixes"]) == {"Base", "ResourceEvent", "Composition", "TaskEvent",
                                            "Fabric", "HeartbeatEvent"}
    assert {"ResourceBlock", "ComputerSystem", "Zone"} <= set(doc["ResourceTypes"])
    assert doc["Subscriptions"] == {"@odata.id": SUBSCRIPTIONS}
    resp = await rf.patch(EVENT_SERVICE, headers=ADMIN, json={"ServerSentEventUri": "/x"})
    assert resp.status == 400
    resp = await rf.patch(EVENT_SERVICE, headers=ADMIN, json={"DeliveryRetryAttempts": 5})
    assert (await resp.json())["DeliveryRetryAttempts"] == 5


async def test_composition_events_in_order_with_context_and_filters(rf, receivers):
    everything, gpu_only, systems_only = await receivers(), await receivers(), await receivers()
    await subscribe(rf, ADMIN, everything.url, Context="all",
                    HttpHeaders=[{"X-Receiver-Token": "s3cret-value"}])
    await subscribe(rf, ADMIN, gpu_only.url, Context="gpu",
                    OriginResources=[{"@odata.id": GPU}], SubordinateResources=True)
    await subscribe(rf, ADMIN, systems_only.url, Context="systems",
                    ResourceTypes=["ComputerSystem"],
                    MessageIds=["ResourceEvent.1.4.ResourceCreated"])
    log = ChangeLog(rf.server.app[services.STORE])
    resp = await rf.post(SYSTEMS, json=request("sled1", "gpu1-1"), headers=ADMIN)
    assert resp.status == 201, await resp.text()
    system = resp.headers["Location"]
    log.close()
    expected = log.ids()
    assert expected, "a composition commits changes"

    await everything.wait_for(lambda r: r.event_ids()[-1:] == expected[-1:])
    assert everything.event_ids() == expected  # every change, once, in commit order
    assert {p["Context"] for p in everything.posts} == {"all"}
    assert all(h.get("X-Receiver-Token") == "s3cret-value" for h in everything.headers)
    assert all(h["Content-Type"].startswith("application/json") for h in everything.headers)
    assert all(p["@odata.type"].startswith("#Event.") for p in everything.posts)
    created = [r for r in everything.records
               if r["MessageId"] == "ResourceEvent.1.4.ResourceCreated"]
    assert {"@odata.id": system} in [r["OriginOfCondition"] for r in created]
    changed = [r for r in everything.records if r["OriginOfCondition"]["@odata.id"] == GPU
               and "Oem" in r]
    assert changed and all("CompositionStatus" in r["Oem"]["RedfishComposer"]
                           ["ChangedProperties"] or "Links" in r["Oem"]["RedfishComposer"]
                           ["ChangedProperties"] for r in changed)
    # the block's composition state change is announced with the Composition message,
    # in place of ResourceChanged (one record per change)
    state_changes = [r for r in changed if r["MessageId"]
                     == "Composition.1.1.ResourceBlockCompositionStateChanged"]
    # the registry's argument is the block's Id; the origin is its URI
    assert state_changes and all(r["MessageArgs"] == [GPU.rsplit("/", 1)[1]]
                                 and r["MessageSeverity"] == "OK" for r in state_changes)

    gpu_expected = log.ids(lambda o: o.uri == GPU or o.uri.startswith(GPU + "/"))
    await gpu_only.wait_for(lambda r: r.event_ids()[-1:] == gpu_expected[-1:])
    assert gpu_only.event_ids() == gpu_expected
    assert {p["Context"] for p in gpu_only.posts} == {"gpu"}

    await systems_only.wait_for(lambda r: len(r.records) >= 1)
    await asyncio.sleep(0.05)
    assert [r["OriginOfCondition"]["@odata.id"] for r in systems_only.records] == [system]

    # headers are never shown
    sub = await (await rf.get(f"{SUBSCRIPTIONS}/1", headers=ADMIN)).json()
    assert sub["HttpHeaders"] == [] and sub["Context"] == "all"
    assert "s3cret" not in await (await rf.get(f"{SUBSCRIPTIONS}?$expand=*",
                                               headers=ADMIN)).text()


async def test_https_receiver_and_certificate_verification(rf, receivers, tmp_path):
    tls = await receivers(tls_dir=tmp_path)
    strict = await receivers(tls_dir=tmp_path)
    await fast_retries(rf, attempts=0)
    await subscribe(rf, ADMIN, tls.url, VerifyCertificate=False, Context="tls")
    verifying = await subscribe(rf, ADMIN, strict.url, DeliveryRetryPolicy="SuspendRetries")
    resp = await rf.post(ADD.format("host1"), json=block("gpu1-2"), headers=ADMIN)
    assert resp.status == 204
    await tls.wait_for(lambda r: len(r.records) > 0)
    assert tls.posts[0]["Context"] == "tls"
    # a self-signed certificate fails verification: never delivered, then suspended
    await wait_state(rf, verifying, "Disabled")
    assert strict.posts == []


async def wait_state(rf, uri: str, state: str | None, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while True:
        resp = await rf.get(uri, headers=ADMIN)
        current = (await resp.json())["Status"]["State"] if resp.status == 200 else None
        if current == state:
            return
        assert time.monotonic() < deadline, f"{uri} is {current}, not {state}"
        await asyncio.sleep(0.02)


async def test_receiver_down_then_up_gets_its_events_others_unaffected(rf, receivers):
    await fast_retries(rf, attempts=20, unit=0.1)
    late = await receivers(started=False)
    healthy = await receivers()
    late_uri = await subscribe(rf, ADMIN, late.url, Context="late")
    await subscribe(rf, ADMIN, healthy.url, Context="healthy")
    for n in range(3):
        await submit_test_event(rf, f"t{n}")
    started = time.monotonic()
    await healthy.wait_for(lambda r: len(r.records) == 3, within=1)
    assert time.monotonic() - started < 0.5  # not held up by the dead receiver
    await asyncio.sleep(0.1)  # a few failed attempts
    await late.start()
    await late.wait_for(lambda r: len(r.records) == 3)
    assert late.event_ids() == ["t0", "t1", "t2"]  # retried, then in order
    assert (await (await rf.get(late_uri, headers=ADMIN)).json())["Status"]["State"] \
        == "Enabled"


async def test_receiver_down_for_good_policies(rf, receivers):
    await fast_retries(rf, attempts=2)
    dead1, dead2, dead3 = [await receivers(started=False) for _ in range(3)]
    healthy = await receivers()
    suspend = await subscribe(rf, ADMIN, dead1.url, DeliveryRetryPolicy="SuspendRetries")
    terminate = await subscribe(rf, ADMIN, dead2.url,
                                DeliveryRetryPolicy="TerminateAfterRetries")
    forever = await subscribe(rf, ADMIN, dead3.url, DeliveryRetryPolicy="RetryForever")
    await subscribe(rf, ADMIN, healthy.url)
    await submit_test_event(rf)
    await healthy.wait_for(lambda r: len(r.records) == 1, within=1)
    await wait_state(rf, suspend, "Disabled")
    await wait_state(rf, terminate, None)  # deleted
    assert (await rf.get(terminate, headers=ADMIN)).status == 404
    await asyncio.sleep(0.15)
    await wait_state(rf, forever, "Enabled")  # still retrying
    # a suspended subscription gets nothing until resumed; then it gets new events
    await dead1.start()
    await submit_test_event(rf, "while-suspended")
    resp = await rf.post(f"{suspend}/Actions/EventDestination.ResumeSubscription",
                         headers=ADMIN, json={})
    assert resp.status == 204
    await submit_test_event(rf, "after-resume")
    await dead1.wait_for(lambda r: "after-resume" in r.event_ids())
    assert "while-suspended" not in dead1.event_ids()
    # the receiver retried forever gets its event once it is up
    await dead3.start()
    await dead3.wait_for(lambda r: len(r.records) >= 1)


async def test_patch_suspend_and_delete_a_subscription(rf, receivers):
    recv = await receivers()
    uri = await subscribe(rf, ADMIN, recv.url, Context="one")
    resp = await rf.patch(uri, headers=ADMIN, json={
        "Context": "two", "HttpHeaders": [{"Authorization": "Bearer abc"}],
        "DeliveryRetryPolicy": "TerminateAfterRetries"})
    assert resp.status == 200, await resp.text()
    doc = await resp.json()
    assert doc["Context"] == "two" and doc["HttpHeaders"] == []
    assert doc["DeliveryRetryPolicy"] == "TerminateAfterRetries"
    resp = await rf.patch(uri, headers=ADMIN, json={"Destination": "http://127.0.0.1:1/x"})
    assert resp.status == 400
    resp = await rf.patch(uri, headers=ADMIN, json={"HttpHeaders": [{"Bad\nName": "x"}]})
    assert resp.status == 400
    await rf.post(TEST_EVENT, headers=ADMIN, json={"MessageId": "Base.1.22.Success"})
    await recv.wait_for(lambda r: len(r.records) == 1)
    assert recv.posts[0]["Context"] == "two"
    assert recv.headers[0]["Authorization"] == "Bearer abc"

    assert (await rf.post(f"{uri}/Actions/EventDestination.SuspendSubscription",
                          headers=ADMIN, json={})).status == 204
    await rf.post(TEST_EVENT, headers=ADMIN, json={"MessageId": "Base.1.22.Success"})
    assert (await rf.delete(uri, headers=ADMIN)).status == 204
    assert (await rf.get(uri, headers=ADMIN)).status == 404
    await rf.post(TEST_EVENT, headers=ADMIN, json={"MessageId": "Base.1.22.Success"})
    await asyncio.sleep(0.1)
    assert len(recv.records) == 1


async def test_test_event_subscription_and_disabled_service(rf, receivers):
    recv = await receivers()
    await subscribe(rf, ADMIN, recv.url, RegistryPrefixes=["ResourceEvent"])
    resp = await rf.post(EVENT_SERVICE + "/Actions/EventService.TestEventSubscription",
                         headers=ADMIN, json={})
    assert resp.status == 204
    await recv.wait_for(lambda r: len(r.records) == 1)
    assert recv.records[0]["MessageId"] == "ResourceEvent.1.4.TestMessage"
    resp = await rf.post(TEST_EVENT, headers=ADMIN, json={"MessageId": "nope"})
    assert resp.status == 400
    assert (await rf.patch(EVENT_SERVICE, headers=ADMIN,
                           json={"ServiceEnabled": False})).status == 200
    assert (await rf.post(ADD.format("host1"), json=block("gpu1-3"), headers=ADMIN)
            ).status == 204
    resp = await rf.post(TEST_EVENT, headers=ADMIN,
                         json={"MessageId": "ResourceEvent.1.4.TestMessage"})
    assert resp.status == 400
    await asyncio.sleep(0.1)
    assert len(recv.records) == 1  # nothing announced while disabled


async def test_secrets_and_bookkeeping_are_not_announced(rf, receivers):
    recv = await receivers()
    await subscribe(rf, ADMIN, recv.url)
    resp = await rf.post("/redfish/v1/AccountService/Accounts", headers=ADMIN, json={
        "UserName": "evt", "Password": "Evt-passw0rd-1", "RoleId": "Operator"})
    account = resp.headers["Location"]
    resp = await rf.post("/redfish/v1/SessionService/Sessions",
                         json={"UserName": "evt", "Password": "Evt-passw0rd-1"})
    assert resp.status == 201
    resp = await rf.patch(account, headers=ADMIN, json={"Password": "Evt-passw0rd-2"})
    assert resp.status == 200
    await rf.post(TEST_EVENT, headers=ADMIN, json={"MessageId": "Base.1.22.Success",
                                                    "EventId": "end"})
    await recv.wait_for(lambda r: r.event_ids()[-1:] == ["end"])
    origins = [r.get("OriginOfCondition", {}).get("@odata.id", "") for r in recv.records]
    assert account in origins  # the account's creation
    assert not [o for o in origins if "/Sessions/" in o]
    assert "passw0rd" not in str(recv.posts)
    changes = [r for r in recv.records if r.get("OriginOfCondition", {}).get("@odata.id")
               == account and r["MessageId"].endswith("ResourceChanged")]
    assert changes == []  # a new password changes only the private part


@pytest.mark.parametrize(("body", "expected"), [
    ({"Destination": "ftp://example.com/x", "Protocol": "Redfish"},
     ["PropertyValueFormatError"]),
    ({"Destination": "https://u:p@example.com/x", "Protocol": "Redfish"},
     ["PropertyValueFormatError"]),
    ({"Destination": "https://example.com/x", "Protocol": "FTP"}, ["PropertyValueNotInList"]),
    ({"Destination": "https://example.com/x", "Protocol": "SNMPv2c"},
     ["PropertyValueNotInList"]),
    ({"Protocol": "Redfish"}, ["PropertyMissing"]),
    ({"Destination": 5, "Protocol": "Redfish", "Context": 7},
     ["PropertyValueTypeError", "PropertyValueTypeError"]),
    ({"Destination": "https://example.com/x", "Protocol": "Redfish",
      "RegistryPrefixes": ["NoSuchRegistry"], "ResourceTypes": ["Toaster"],
      "MessageIds": ["Base.1.22.NoSuchMessage"], "Severities": ["Bad"], "Color": "red"},
     ["PropertyUnknown", "PropertyValueNotInList", "PropertyValueNotInList",
      "PropertyValueNotInList", "PropertyValueNotInList"]),
    ({"Destination": "https://example.com/x", "Protocol": "Redfish",
      "RegistryPrefixes": "Base"}, ["PropertyValueTypeError"]),
    ({"Destination": "https://example.com/x", "Protocol": "Redfish",
      "RegistryPrefixes": ["Base"], "ExcludeRegistryPrefixes": ["TaskEvent"]},
     ["PropertyValueConflict"]),
    ({"Destination": "https://example.com/x", "Protocol": "Redfish",
      "HttpHeaders": [{"X-Token": "top\r\nsecret"}], "DeliveryRetryPolicy": "Sometimes"},
     ["PropertyValueNotInList", "PropertyValueFormatError"]),
    ({"Destination": "https://example.com/x", "Protocol": "Redfish",
      "OriginResources": ["/redfish/v1/Systems"]}, ["PropertyValueTypeError"]),
])
async def test_bad_subscriptions_answer_400_with_every_problem(rf, body, expected):
    resp = await rf.post(SUBSCRIPTIONS, headers=ADMIN, json=body)
    assert resp.status == 400
    text = await resp.text()
    assert "secret" not in text
    found = [m["MessageId"].rsplit(".", 1)[1]
             for m in (await resp.json())["error"]["@Message.ExtendedInfo"]]
    assert sorted(found) == sorted(expected)
    members = (await (await rf.get(SUBSCRIPTIONS, headers=ADMIN)).json())["Members"]
    assert members == []


async def test_readonly_may_not_subscribe(rf, make_user):
    ro, _ = await make_user("watcher", "ReadOnly")
    resp = await rf.post(SUBSCRIPTIONS, headers=ro, json={
        "Destination": "https://example.com/x", "Protocol": "Redfish"})
    assert resp.status == 403


@pytest.fixture
def make_user(rf):
    from .conftest import basic

    async def make(username: str, role: str, password: str = "User-passw0rd"):
        resp = await rf.post("/redfish/v1/AccountService/Accounts", headers=ADMIN, json={
            "UserName": username, "Password": password, "RoleId": role})
        assert resp.status == 201
        return basic(username, password), resp.headers["Location"]

    return make


async def test_subscription_survives_a_restart(aiohttp_client, settings, driver, receivers):
    recv = await receivers()
    client = await aiohttp_client(create_app(settings, driver=driver))  # SQLite in tmp
    uri = await subscribe(client, ADMIN, recv.url, Context="durable",
                          HttpHeaders=[{"X-Key": "k1"}], ResourceTypes=["ComputerSystem"])
    before = await (await client.get(uri, headers=ADMIN)).json()
    await client.close()

    client = await aiohttp_client(create_app(settings, driver=driver))
    after = await (await client.get(uri, headers=ADMIN)).json()
    assert after == before
    resp = await client.post(SYSTEMS, json=request("sled2", "gpu2-1"), headers=ADMIN)
    assert resp.status == 201
    await recv.wait_for(lambda r: len(r.records) >= 1)
    assert recv.posts[0]["Context"] == "durable"
    assert recv.headers[0]["X-Key"] == "k1"
    assert recv.records[0]["OriginOfCondition"] == {"@odata.id": resp.headers["Location"]}
    await client.close()


async def test_subscriptions_and_events_match_their_json_schemas(rf, receivers):
    """Subscriptions exist only when clients make them, so the crawl of test_json_schema
    does not see them; the Event bodies are not resources at all."""
    from .conftest import json_schema_dir
    from .support.schemas import Schemas

    folder = json_schema_dir()
    if folder is None:
        pytest.skip("set REDFISH_JSON_SCHEMA_DIR to check documents against DMTF schemas")
    schemas = Schemas(folder, Schemas.swordfish_dir_for(folder))
    recv = await receivers()
    uri = await subscribe(rf, ADMIN, recv.url, Context="c", RegistryPrefixes=["ResourceEvent"],
                          OriginResources=[{"@odata.id": GPU}], Severities=["OK"],
                          HttpHeaders=[{"X-A": "b"}])
    sse = await rf.get(EVENT_SERVICE + "/SSE", headers={**ADMIN, "Accept": "text/event-stream"})
    docs = [await (await rf.get(u, headers=ADMIN)).json()
            for u in (uri, SUBSCRIPTIONS, EVENT_SERVICE)]
    members = docs[1]["Members"]
    docs += [await (await rf.get(m["@odata.id"], headers=ADMIN)).json() for m in members]
    sse.close()
    assert (await rf.post(ADD.format("host1"), json=block("gpu1-1"), headers=ADMIN)).status \
        == 204
    await rf.post(TEST_EVENT, headers=ADMIN, json={
        "MessageId": "ResourceEvent.1.4.TestMessage", "MessageArgs": [], "OriginOfCondition": GPU,
        "EventId": "x", "MessageSeverity": "OK"})
    await recv.wait_for(lambda r: "x" in r.event_ids())
    docs += recv.posts
    problems = []
    for doc in docs:
        choice = schemas.schema_for_type(doc["@odata.type"])
        problems += [f"{doc.get('@odata.id', 'Event')}: {e}"
                     for e in schemas.errors(doc, choice.path)]
    assert not problems, "\n".join(problems)


# -- what is announced besides ResourceEvent ---------------------------------------------

COMPOSITION_STATE = "Composition.1.1.ResourceBlockCompositionStateChanged"


async def test_composition_messages_for_the_blocks_of_a_composition(rf, receivers):
    composition_only = await receivers()
    await subscribe(rf, ADMIN, composition_only.url, Context="composition",
                    RegistryPrefixes=["Composition"])
    log = ChangeLog(rf.server.app[services.STORE])
    resp = await rf.post(SYSTEMS, json=request("sled1", "gpu1-1"), headers=ADMIN)
    assert resp.status == 201, await resp.text()
    log.close()
    expected = log.ids(lambda o: o.registry == "Composition")
    assert expected
    await composition_only.wait_for(lambda r: r.event_ids()[-1:] == expected[-1:])
    assert composition_only.event_ids() == expected
    records = composition_only.records
    assert {r["MessageId"] for r in records} == {COMPOSITION_STATE}
    assert {r["MessageArgs"][0] for r in records} == {"sled1", GPU.rsplit("/", 1)[1]}
    assert all(r["OriginOfCondition"]["@odata.id"] == f"{BLOCKS}/{r['MessageArgs'][0]}"
               for r in records)
    # nothing else reached it: every ResourceEvent of the composition was filtered out
    assert {r.registry for r, _ in log.records} >= {"ResourceEvent", "Composition"}
    await asyncio.sleep(0.05)
    assert len(composition_only.records) == len(expected)


async def test_device_failure_and_recovery_are_health_events(rf, receivers):
    critical, recovered = await receivers(), await receivers()
    await subscribe(rf, ADMIN, critical.url, Severities=["Critical"])
    await subscribe(rf, ADMIN, recovered.url,
                    MessageIds=["ResourceEvent.1.4.ResourceStatusChangedOK"],
                    OriginResources=[{"@odata.id": GPU}])
    inject = "/redfish/v1/Managers/Composer/Actions/Oem/RedfishComposer.InjectFault"
    resp = await rf.post(inject, json={"Kind": "device_failure", "Device": "gpu1-1"},
                         headers=ADMIN)
    assert resp.status == 204, await resp.text()
    await critical.wait_for(lambda r: any(
        x["OriginOfCondition"]["@odata.id"] == GPU for x in r.records))
    rec = next(x for x in critical.records if x["OriginOfCondition"]["@odata.id"] == GPU)
    assert rec["MessageId"] == "ResourceEvent.1.4.ResourceStatusChangedCritical"
    assert rec["MessageSeverity"] == "Critical" and rec["MessageArgs"] == [GPU, "Critical"]
    assert all(x["MessageSeverity"] == "Critical" for x in critical.records)
    resp = await rf.post("/redfish/v1/Managers/Composer/Actions/Oem/RedfishComposer.ClearFaults",
                         json={}, headers=ADMIN)
    assert resp.status == 204, await resp.text()
    await recovered.wait_for(lambda r: len(r.records) >= 1)
    assert recovered.records[0]["MessageArgs"] == [GPU, "OK"]
    assert recovered.records[0]["MessageSeverity"] == "OK"


async def test_task_state_changes_are_task_events(rf, receivers):
    tasks = await receivers()
    await subscribe(rf, ADMIN, tasks.url, RegistryPrefixes=["TaskEvent"])
    store = rf.server.app[services.STORE]
    uri = "/redfish/v1/TaskService/Tasks/e1"
    doc = {"@odata.id": uri, "@odata.type": "#Task.v1_7_4.Task", "Id": "e1", "Name": "t",
           "TaskState": "Running", "TaskStatus": "OK", "PercentComplete": 0}
    async with store.transaction("test") as tx:
        tx.create(uri, dict(doc))
    async with store.transaction("test") as tx:
        tx.put(uri, {**doc, "PercentComplete": 50})  # no state change: not a TaskEvent
    async with store.transaction("test") as tx:
        tx.put(uri, {**doc, "TaskState": "Completed", "PercentComplete": 100})
    async with store.transaction("test") as tx:
        tx.delete(uri)
    await tasks.wait_for(lambda r: len(r.records) >= 3)
    await asyncio.sleep(0.05)
    assert [(r["MessageId"], r["MessageArgs"]) for r in tasks.records] == [
        ("TaskEvent.1.0.TaskStarted", ["e1"]), ("TaskEvent.1.0.TaskCompletedOK", ["e1"]),
        ("TaskEvent.1.0.TaskRemoved", ["e1"])]
    assert tasks.records[2]["MessageSeverity"] == "Warning"


async def test_a_subscription_to_a_registry_never_sent_is_refused(rf):
    resp = await rf.post(SUBSCRIPTIONS, headers=ADMIN, json={
        "Destination": "http://127.0.0.1:9/e", "Protocol": "Redfish",
        "RegistryPrefixes": ["Power"],  # a DMTF registry the service never sends
        "MessageIds": ["Fabric.1.0.PortFailed"]})  # a registry it sends, a message it does not
    assert resp.status == 400
    doc = await resp.json()
    assert [(m["MessageId"], m["RelatedProperties"]) for m in doc["error"]
            ["@Message.ExtendedInfo"]] == [
        ("Base.1.22.PropertyValueNotInList", ["/RegistryPrefixes/0"]),
        ("Base.1.22.PropertyValueNotInList", ["/MessageIds/0"])]


async def test_a_burst_to_a_receiver_is_paced_into_few_posts(rf, receivers):
    """Sends to one destination start at least ``flush_interval_s`` apart: the records of
    a burst arrive, all and in order, in a few Events instead of one POST each, while the
    first one of a quiet spell goes at once."""
    hub(rf).flush_interval_s = 0.5
    receiver = await receivers()
    await subscribe(rf, ADMIN, receiver.url, Context="paced")
    started = time.monotonic()
    for n in range(8):
        await submit_test_event(rf, f"b{n}")
        if n == 0:
            await receiver.wait_for(lambda r: len(r.records) == 1, within=1)
            assert time.monotonic() - started < 0.4  # idle before: sent at once
    await receiver.wait_for(lambda r: len(r.records) == 8, within=3)
    assert receiver.event_ids() == [f"b{n}" for n in range(8)]
    assert len(receiver.posts) <= 3, [len(p["Events"]) for p in receiver.posts]

