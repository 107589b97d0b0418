"""Long operations answer 202 with a task monitor; the monitor gives the final response.

The rack's bind latency (0.3 s per device) against a 0.05 s threshold makes compositions
and expansions long; the simulated rack's default latency keeps the same operations
short, and those stay synchronous.
"""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
import yaml

from redfish_service import services
from redfish_service.app import create_app
from redfish_service.composition.invariants import violations
from redfish_service.config import Settings
from redfish_service.drivers.contract import LinkDown
from redfish_service.drivers.simulated import SimulatedDriver, default_rack
from redfish_service.store import MemoryBackend

from .conftest import ADMIN_PASSWORD, basic, json_schema_dir
from .support.schemas import Schemas
from .support.service import ServiceProcess

ADMIN = basic("admin", ADMIN_PASSWORD)
SYSTEMS = "/redfish/v1/Systems"
BLOCKS = "/redfish/v1/CompositionService/ResourceBlocks"
ADD = "/redfish/v1/Systems/{}/Actions/ComputerSystem.AddResourceBlock"
TASKS = "/redfish/v1/TaskService/Tasks"
TASK_SERVICE = "/redfish/v1/TaskService"
MONITORS = "/redfish/v1/TaskService/TaskMonitors/"
LATENCY = 0.3


class SlowRack(SimulatedDriver):
    """The default rack with slow link training; a link in ``down`` fails after it."""

    def __init__(self, latency: float = LATENCY) -> None:
        super().__init__(default_rack().model_copy(update={"bind_latency_s": latency}))
        self.down: set[str] = set()

    async def bind(self, device_id: str, host_id: str) -> None:
        if device_id in self.down:
            await asyncio.sleep(self.rack.bind_latency_s)  # training, then the link drops
            raise LinkDown(f"link to {device_id} went down")
        await super().bind(device_id, host_id)


def compose_request(*names: str, name: str = "t1") -> dict:
    return {"Name": name, "Links": {"ResourceBlocks": [
        {"@odata.id": f"{BLOCKS}/{n}"} for n in names]}}


def block(name: str) -> dict:
    return {"ResourceBlock": {"@odata.id": f"{BLOCKS}/{name}"}}


async def start(aiohttp_client, tmp_path, driver, **settings):
    app = create_app(Settings(state_dir=tmp_path, admin_password=ADMIN_PASSWORD,
                              **{"task_threshold_s": 0.05, **settings}),
                     backend=MemoryBackend(), driver=driver)
    return app, await aiohttp_client(app)


@pytest.fixture
def slow():
    return SlowRack()


@pytest.fixture
async def tf(aiohttp_client, tmp_path, slow):
    """A service on the slow rack, threshold 0.05 s; the invariants must hold after."""
    app, client = await start(aiohttp_client, tmp_path, slow)
    yield client
    store = app[services.STORE]
    broken = violations(store.doc, store.members)
    assert not broken, "invariants broken after the scenario:\n" + "\n".join(broken)


async def until_done(client, monitor: str, headers=ADMIN):
    """Poll the monitor until it stops answering 202; returns that response."""
    deadline = time.monotonic() + 10.0
    while True:
        resp = await client.get(monitor, headers=headers)
        if resp.status != 202:
            return resp
        body = await resp.json()
        assert body["TaskState"] == "Running" and resp.headers["Location"] == monitor
        assert int(resp.headers["Retry-After"]) >= 1
        assert time.monotonic() < deadline, "task did not finish"
        await asyncio.sleep(0.05)


async def task_finished(client, task_uri: str) -> dict:
    """Wait for the Task resource (not its monitor) to leave Running."""
    for _ in range(200):
        doc = await (await client.get(task_uri, headers=ADMIN)).json()
        if doc["TaskState"] != "Running":
            return doc
        await asyncio.sleep(0.05)
    raise AssertionError(f"{task_uri} still running")


async def finished(resp, client, headers=ADMIN):
    """The final response of an operation, following its monitor if it answered 202."""
    if resp.status != 202:
        return resp
    return await until_done(client, resp.headers["Location"], headers)


async def make_user(client, username: str, role: str) -> dict[str, str]:
    password = "User-passw0rd"
    resp = await client.post("/redfish/v1/AccountService/Accounts", headers=ADMIN, json={
        "UserName": username, "Password": password, "RoleId": role})
    resp = await finished(resp, client)  # hashing the password may pass the threshold
    assert resp.status == 201, await resp.text()
    return basic(username, password)


async def test_a_long_composition_answers_202_and_the_monitor_gives_the_201(tf, slow):
    wanted = compose_request("sled1", "gpu1-1", "nvme1-2", "cxlmem1")
    resp = await tf.post(SYSTEMS, json=wanted, headers=ADMIN)
    assert resp.status == 202, await resp.text()
    monitor = resp.headers["Location"]
    assert monitor.startswith(MONITORS)
    assert int(resp.headers["Retry-After"]) >= 1
    task = await resp.json()
    assert task["@odata.type"].startswith("#Task.v1_7_")
    assert task["TaskState"] == "Running" and task["TaskMonitor"] == monitor
    assert task["Payload"]["HttpOperation"] == "POST"
    assert task["Payload"]["TargetUri"] == SYSTEMS
    assert orjson.loads(task["Payload"]["JsonBody"]) == wanted
    assert task["HidePayload"] is False
    task_uri = task["@odata.id"]

    # while it runs: the monitor answers 202 with the task, the Task resource says Running
    running = await tf.get(monitor, headers=ADMIN)
    assert running.status == 202
    assert running.headers["Location"] == monitor and "Retry-After" in running.headers
    assert (await running.json())["@odata.id"] == task_uri
    doc = await (await tf.get(task_uri, headers=ADMIN)).json()
    assert doc["TaskState"] == "Running" and "EndTime" not in doc

    final = await until_done(tf, monitor)
    assert final.status == 201, await final.text()
    system_uri = final.headers["Location"]
    system = await final.json()
    assert system["@odata.id"] == system_uri and system["SystemType"] == "Composed"
    assert final.headers["ETag"] == system["@odata.etag"]
    assert final.headers["OData-Version"] == "4.0"
    assert slow.bindings == {"gpu1-1": "sled1", "nvme1-2": "sled1", "cxlmem1": "sled1"}
    assert (await tf.get(system_uri, headers=ADMIN)).status == 200

    resp = await tf.get(task_uri, headers=ADMIN)
    doc = await resp.json()
    assert doc["TaskState"] == "Completed" and doc["TaskStatus"] == "OK"
    assert doc["PercentComplete"] == 100 and doc["EndTime"] >= doc["StartTime"]
    assert doc["Links"]["CreatedResources"] == [{"@odata.id": system_uri}]
    assert doc["Messages"][-1]["MessageId"] == "TaskEvent.1.0.TaskCompletedOK"
    assert "DELETE" in resp.headers["Allow"]
    tasks = await (await tf.get(f"{TASKS}?$expand=.", headers=ADMIN)).json()
    assert [m["@odata.id"] for m in tasks["Members"]] == [task_uri]
    assert tasks["Members"][0]["TaskState"] == "Completed"
    # the monitor keeps answering the same final response until it expires
    again = await tf.get(monitor, headers=ADMIN)
    assert again.status == 201 and again.headers["Location"] == system_uri

    # decomposing is long too: 202, then the monitor's 204
    resp = await tf.delete(system_uri, headers=ADMIN)
    assert resp.status == 202
    assert (await until_done(tf, resp.headers["Location"])).status == 204
    assert slow.bindings == {}
    # the first task no longer points at the deleted system
    doc = await (await tf.get(task_uri, headers=ADMIN)).json()
    assert doc["Links"]["CreatedResources"] == []


async def test_a_long_action_ends_in_the_actions_204(tf, slow):
    resp = await tf.post(ADD.format("host1"), json=block("gpu1-3"), headers=ADMIN)
    assert resp.status == 202, await resp.text()
    task = await resp.json()
    final = await until_done(tf, resp.headers["Location"])
    assert final.status == 204 and await final.read() == b""
    assert slow.bindings == {"gpu1-3": "host1"}
    doc = await (await tf.get(task["@odata.id"], headers=ADMIN)).json()
    assert doc["TaskState"] == "Completed"
    assert doc["Links"]["CreatedResources"] == []
    assert doc["Payload"]["TargetUri"] == ADD.format("host1")


async def test_a_long_patch_of_the_blocks_is_a_task_too(tf, slow):
    system = await (await tf.get(f"{SYSTEMS}/host2", headers=ADMIN)).json()
    blocks = system["Links"]["ResourceBlocks"] + [{"@odata.id": f"{BLOCKS}/gpu1-5"}]
    resp = await tf.patch(f"{SYSTEMS}/host2", json={"Links": {"ResourceBlocks": blocks}},
                          headers=ADMIN)
    assert resp.status == 202, await resp.text()
    final = await until_done(tf, resp.headers["Location"])
    assert final.status == 200
    assert (await final.json())["Links"]["ResourceBlocks"] == blocks
    assert slow.bindings == {"gpu1-5": "host2"}


async def test_a_failing_long_operation_ends_in_its_error(tf, slow):
    slow.down.add("nvme1-3")
    resp = await tf.post(SYSTEMS, json=compose_request("sled1", "gpu1-4", "nvme1-3"),
                         headers=ADMIN)
    assert resp.status == 202
    task_uri = (await resp.json())["@odata.id"]
    final = await until_done(tf, resp.headers["Location"])
    assert final.status == 503
    assert "Retry-After" in final.headers
    error = (await final.json())["error"]
    ids = [m["MessageId"] for m in error["@Message.ExtendedInfo"]]
    assert ids == ["Base.1.22.ServiceTemporarilyUnavailable"]
    assert slow.bindings == {}  # the bound GPU was unbound again
    sled = await (await tf.get(f"{BLOCKS}/sled1", headers=ADMIN)).json()
    assert sled["CompositionStatus"]["CompositionState"] == "Unused"
    doc = await (await tf.get(task_uri, headers=ADMIN)).json()
    assert doc["TaskState"] == "Exception" and doc["TaskStatus"] == "Critical"
    assert [m["MessageId"] for m in doc["Messages"]] == [
        "Base.1.22.ServiceTemporarilyUnavailable", "TaskEvent.1.0.TaskAborted"]
    assert doc["Links"]["CreatedResources"] == []


async def test_fast_operations_stay_synchronous(aiohttp_client, tmp_path):
    _, client = await start(aiohttp_client, tmp_path, SlowRack(latency=0),
                            task_threshold_s=0.25)
    resp = await client.post(SYSTEMS, json=compose_request("sled1", "gpu1-1"), headers=ADMIN)
    assert resp.status == 201, await resp.text()
    resp = await client.post(ADD.format("host1"), json=block("gpu1-2"), headers=ADMIN)
    assert resp.status == 204
    resp = await client.patch(f"{SYSTEMS}/host1", json={"AssetTag": "a1"}, headers=ADMIN)
    assert resp.status == 200
    resp = await client.post("/redfish/v1/SessionService/Sessions",
                             json={"UserName": "admin", "Password": ADMIN_PASSWORD})
    assert resp.status == 201 and "X-Auth-Token" in resp.headers
    tasks = await (await client.get(TASKS, headers=ADMIN)).json()
    assert tasks["Members"] == []


async def test_refusals_before_the_operation_starts_are_immediate(tf):
    # a request refused by the plan takes no time: answered directly, no task
    resp = await tf.post(SYSTEMS, json=compose_request("sled1", "gpu2-1"), headers=ADMIN)
    assert resp.status == 400
    resp = await tf.post(ADD.format("host1"), json={}, headers=ADMIN)
    assert resp.status == 400
    assert (await (await tf.get(TASKS, headers=ADMIN)).json())["Members"] == []


async def test_only_the_owner_or_a_manager_reads_the_monitor(tf):
    operator = await make_user(tf, "op1", "Operator")
    other = await make_user(tf, "op2", "Operator")
    reader = await make_user(tf, "ro1", "ReadOnly")
    resp = await tf.post(ADD.format("host3"), json=block("gpu2-1"), headers=operator)
    assert resp.status == 202, await resp.text()
    monitor = resp.headers["Location"]
    task_uri = (await resp.json())["@odata.id"]
    for who in (other, reader):
        assert (await tf.get(monitor, headers=who)).status == 404
    assert (await tf.get(monitor)).status == 401
    assert (await tf.get(monitor, headers=ADMIN)).status == 202  # ConfigureManager
    final = await until_done(tf, monitor, headers=operator)
    assert final.status == 204
    assert (await tf.get(monitor, headers=other)).status == 404
    # the Task resource is readable with Login, deletable with ConfigureManager only
    assert (await tf.get(task_uri, headers=reader)).status == 200
    assert (await tf.delete(task_uri, headers=operator)).status == 403
    assert (await tf.get(MONITORS + "0" * 32, headers=ADMIN)).status == 404
    assert (await tf.get(MONITORS + "%C3%A9", headers=ADMIN)).status == 404


async def test_the_monitor_cannot_cancel_and_tasks_are_deleted_when_done(tf):
    resp = await tf.post(ADD.format("host4"), json=block("gpu2-2"), headers=ADMIN)
    assert resp.status == 202
    monitor, task_uri = resp.headers["Location"], (await resp.json())["@odata.id"]
    cancel = await tf.delete(monitor, headers=ADMIN)
    assert cancel.status == 405 and cancel.headers["Allow"] == "GET, HEAD"
    running = await tf.delete(task_uri, headers=ADMIN)  # a running task stays
    assert running.status == 405 and "DELETE" not in running.headers["Allow"]
    assert (await until_done(tf, monitor)).status == 204
    assert (await tf.delete(task_uri, headers=ADMIN)).status == 204
    assert (await tf.get(task_uri, headers=ADMIN)).status == 404
    assert (await tf.get(monitor, headers=ADMIN)).status == 404


async def test_delete_all_completed_tasks(tf):
    uris = []
    for gpu in ("gpu1-6", "gpu1-7"):
        resp = await tf.post(ADD.format("host1"), json=block(gpu), headers=ADMIN)
        assert resp.status == 202
        uris.append(resp.headers["Location"])
    for monitor in uris:
        assert (await until_done(tf, monitor)).status == 204
    service = await (await tf.get(TASK_SERVICE, headers=ADMIN)).json()
    target = service["Actions"]["#TaskService.DeleteAllCompletedTasks"]["target"]
    resp = await tf.post(target, json={}, headers=ADMIN)
    assert resp.status == 204
    assert (await (await tf.get(TASKS, headers=ADMIN)).json())["Members"] == []


async def test_the_monitor_expires_after_its_first_read(tf):
    resp = await tf.patch(TASK_SERVICE, json={"TaskMonitorAutoExpirySeconds": 1},
                          headers=ADMIN)
    assert resp.status == 200, await resp.text()
    resp = await tf.post(ADD.format("host2"), json=block("gpu1-8"), headers=ADMIN)
    monitor, task_uri = resp.headers["Location"], (await resp.json())["@odata.id"]
    await task_finished(tf, task_uri)
    await asyncio.sleep(1.2)  # finished a while ago, but never read: still there
    assert (await tf.get(monitor, headers=ADMIN)).status == 204
    assert (await tf.get(monitor, headers=ADMIN)).status == 204
    await asyncio.sleep(1.2)
    assert (await tf.get(monitor, headers=ADMIN)).status == 404
    assert (await tf.get(task_uri, headers=ADMIN)).status == 200  # the Task remains


async def test_secrets_never_reach_the_task(aiohttp_client, tmp_path):
    # with a zero threshold every create becomes a task, an account's among them
    _, client = await start(aiohttp_client, tmp_path, SlowRack(latency=0),
                            task_threshold_s=0)
    resp = await client.post("/redfish/v1/AccountService/Accounts", headers=ADMIN, json={
        "UserName": "secret", "Password": "Very-secret-passw0rd", "RoleId": "ReadOnly"})
    assert resp.status == 202
    task = await resp.json()
    assert task["HidePayload"] is True and "Payload" not in task
    final = await until_done(client, resp.headers["Location"])
    assert final.status == 201
    raw = (await (await client.get(task["@odata.id"], headers=ADMIN)).read()).decode()
    assert "Very-secret" not in raw
    # a login never becomes a task: its token is answered directly
    resp = await client.post("/redfish/v1/SessionService/Sessions",
                             json={"UserName": "secret", "Password": "Very-secret-passw0rd"})
    assert resp.status == 201 and "X-Auth-Token" in resp.headers


async def test_the_number_of_tasks_is_bounded(aiohttp_client, tmp_path):
    _, client = await start(aiohttp_client, tmp_path, SlowRack(latency=0.1), max_tasks=2)
    seen = []
    for gpu in ("gpu1-1", "gpu1-2", "gpu1-3"):
        resp = await client.post(ADD.format("host1"), json=block(gpu), headers=ADMIN)
        assert resp.status == 202
        seen.append((await resp.json())["@odata.id"])
        assert (await until_done(client, resp.headers["Location"])).status == 204
    members = [m["@odata.id"] for m in
               (await (await client.get(TASKS, headers=ADMIN)).json())["Members"]]
    assert members == seen[1:]  # the oldest finished task was overwritten


async def test_task_documents_match_their_json_schema(tf, slow):
    folder = json_schema_dir()
    if folder is None:
        pytest.skip("set REDFISH_JSON_SCHEMA_DIR to validate against DMTF JSON Schema")
    schemas = Schemas(folder, Schemas.swordfish_dir_for(folder))
    slow.down.add("nvme1-1")
    docs = []
    for target, req in ((SYSTEMS, compose_request("sled1", "gpu1-1")),
                        (ADD.format("host1"), block("nvme1-1"))):  # fails: link down
        resp = await tf.post(target, json=req, headers=ADMIN)
        assert resp.status == 202
        docs.append(await resp.json())
        await until_done(tf, resp.headers["Location"])
    for path in (TASKS, f"{TASKS}?$expand=.", TASK_SERVICE,
                 *(d["@odata.id"] for d in docs)):
        docs.append(await (await tf.get(path, headers=ADMIN)).json())
    problems = []
    for doc in docs:
        for item in [doc, *doc.get("Members", [])]:
            if "@odata.type" not in item:
                continue
            choice = schemas.schema_for_type(item["@odata.type"])
            problems += [f"{item['@odata.id']}: {e}" for e in schemas.errors(item, choice.path)]
    assert not problems, "\n".join(problems)


@pytest.mark.slow
def test_a_task_cut_short_by_a_crash_ends_in_exception(tmp_path):
    rack = default_rack().model_copy(update={"bind_latency_s": 5.0})
    (tmp_path / "rack.yaml").write_text(yaml.safe_dump(rack.model_dump(mode="json")))
    (tmp_path / "config.yaml").write_text("task_threshold_s: 0.05\n")
    args = ["--rack", str(tmp_path / "rack.yaml"), "--config", str(tmp_path / "config.yaml")]
    svc = ServiceProcess(tmp_path / "state", extra_args=args).start()
    try:
        status, headers, task = svc.request("POST", SYSTEMS,
                                            compose_request("sled1", "gpu1-1", "gpu1-2"))
        assert status == 202, task
        monitor = headers["Location"]
        status, _, body = svc.get(task["@odata.id"])
        assert body["TaskState"] == "Running"
        svc.kill()
        svc = ServiceProcess(tmp_path / "state", extra_args=args).start()
        status, _, doc = svc.get(task["@odata.id"])
        assert status == 200
        assert doc["TaskState"] == "Exception" and doc["TaskStatus"] == "Critical"
        assert "EndTime" in doc
        assert doc["Messages"][-1]["MessageId"] == "TaskEvent.1.0.TaskAborted"
        status, headers, body = svc.get(monitor)
        assert status == 503 and "Retry-After" in headers
        # recovery put the blocks back: nothing of the composition is left
        _, _, sled = svc.get(f"{BLOCKS}/sled1")
        assert sled["CompositionStatus"]["CompositionState"] == "Unused"
        _, _, systems = svc.get(SYSTEMS)
        assert not any("composed-" in m["@odata.id"] for m in systems["Members"])
    finally:
        svc.stop()
