"""Who may manage a subscription (Redfish privilege registry 1.8.0): creating one in the
Subscriptions collection takes ConfigureManager or ConfigureComponents; changing,
suspending or deleting one takes ConfigureManager, or ConfigureSelf on one's own.

So an Operator (Login, ConfigureComponents, ConfigureSelf) subscribes and manages its own
subscriptions but not others'; a ReadOnly account (Login, ConfigureSelf) cannot subscribe
by POST, but its SSE stream is an EventDestination it owns and may delete; an
Administrator manages every one."""

from __future__ import annotations

import asyncio

import pytest

from .conftest import basic
from .support.events import SSE, SUBSCRIPTIONS, read_sse, subscribe
from .test_expansion import ADMIN

pytestmark = pytest.mark.timeout(60)

ACCOUNTS = "/redfish/v1/AccountService/Accounts"
DEST = "http://127.0.0.1:9/events"
SUSPEND = "Actions/EventDestination.SuspendSubscription"
RESUME = "Actions/EventDestination.ResumeSubscription"


@pytest.fixture
def user(rf):
    async def make(username: str, role: str, password: str = "User-passw0rd"):
        resp = await rf.post(ACCOUNTS, headers=ADMIN, json={
            "UserName": username, "Password": password, "RoleId": role})
        assert resp.status == 201, await resp.text()
        return basic(username, password), resp.headers["Location"]

    return make


def error_id(doc) -> str:
    return doc["error"]["@Message.ExtendedInfo"][0]["MessageId"]


async def test_an_operator_manages_its_own_subscriptions_only(rf, user):
    alice, _ = await user("alice", "Operator")
    bob, _ = await user("bob", "Operator")
    mine = await subscribe(rf, alice, DEST, Context="alice's")
    theirs = await subscribe(rf, bob, DEST, Context="bob's")
    admins = await subscribe(rf, ADMIN, DEST, Context="admin's")

    # its own: PATCH, suspend, resume, delete
    resp = await rf.patch(mine, headers=alice, json={"Context": "renamed"})
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["Context"] == "renamed"
    for action in (SUSPEND, RESUME):
        resp = await rf.post(f"{mine}/{action}", headers=alice, json={})
        assert resp.status == 204, await resp.text()

    # someone else's: readable (Login), not changeable
    for other in (theirs, admins):
        assert (await rf.get(other, headers=alice)).status == 200
        resp = await rf.patch(other, headers=alice, json={"Context": "hijacked"})
        assert resp.status == 403
        assert error_id(await resp.json()) == "Base.1.22.InsufficientPrivilege"
        assert (await rf.post(f"{other}/{SUSPEND}", headers=alice, json={})).status == 403
        assert (await rf.delete(other, headers=alice)).status == 403
        doc = await (await rf.get(other, headers=ADMIN)).json()
        assert doc["Context"] != "hijacked" and doc["Status"]["State"] == "Enabled"

    assert (await rf.delete(mine, headers=alice)).status == 204
    assert (await rf.get(mine, headers=ADMIN)).status == 404
    # the administrator (ConfigureManager) manages anyone's
    assert (await rf.patch(theirs, headers=ADMIN, json={"Context": "by admin"})).status == 200
    assert (await rf.delete(theirs, headers=ADMIN)).status == 204


async def test_readonly_cannot_subscribe_but_deletes_its_own_stream(rf, user):
    watcher, _ = await user("watcher", "ReadOnly")
    resp = await rf.post(SUBSCRIPTIONS, headers=watcher, json={
        "Destination": DEST, "Protocol": "Redfish"})
    assert resp.status == 403  # the collection needs ConfigureManager/ConfigureComponents
    admins = await subscribe(rf, ADMIN, DEST)

    stream = await rf.get(SSE, headers={**watcher, "Accept": "text/event-stream"})
    assert stream.status == 200
    await read_sse(stream)  # ": connected": its EventDestination exists
    members = (await (await rf.get(SUBSCRIPTIONS, headers=watcher)).json())["Members"]
    [own] = [m["@odata.id"] for m in members if "/SSE-" in m["@odata.id"]]
    admin_stream = await rf.get(SSE, headers={**ADMIN, "Accept": "text/event-stream"})
    await read_sse(admin_stream)
    members = (await (await rf.get(SUBSCRIPTIONS, headers=watcher)).json())["Members"]
    [other] = [m["@odata.id"] for m in members if "/SSE-" in m["@odata.id"]
               and m["@odata.id"] != own]

    for uri in (admins, other):  # not its own
        resp = await rf.delete(uri, headers=watcher)
        assert resp.status == 403
        assert error_id(await resp.json()) == "Base.1.22.InsufficientPrivilege"
        assert (await rf.get(uri, headers=ADMIN)).status == 200
    resp = await rf.patch(admins, headers=watcher, json={"Context": "x"})
    assert resp.status == 403

    # its own: deleting it ends the stream
    resp = await rf.delete(own, headers=watcher)
    assert resp.status == 204, await resp.text()
    assert await asyncio.wait_for(stream.content.read(), 5) == b""
    assert (await rf.get(own, headers=ADMIN)).status == 404
    assert (await rf.get(other, headers=ADMIN)).status == 200  # the admin's stream is open
    admin_stream.close()
    stream.close()


async def test_a_new_account_in_a_deleted_accounts_id_owns_nothing(rf, user):
    first, uri = await user("first", "Operator")
    sub = await subscribe(rf, first, DEST)
    assert (await rf.delete(uri, headers=ADMIN)).status == 204
    second, again = await user("second", "Operator")
    assert again == uri  # the Id is reused
    assert (await rf.delete(sub, headers=second)).status == 403
    assert (await rf.patch(sub, headers=second, json={"Context": "mine?"})).status == 403
    assert (await rf.delete(sub, headers=ADMIN)).status == 204
