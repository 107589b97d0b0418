"""What the service acknowledged survives a SIGKILL.

The service tells a client 2xx only after the change is on disk (SQLite, WAL,
``synchronous=FULL``), so killing it with SIGKILL right after the acknowledgement and
starting it again on the same state directory must show every acknowledged change, and
nothing else must have moved (same UUID, same ETags for documents nobody changed).
"""

from __future__ import annotations

import base64
import threading
import time
import urllib.error
import urllib.request

import pytest

from .support.odata import odata_links, resource_path
from .support.service import ServiceProcess, free_port, insecure_context

pytestmark = pytest.mark.slow

ACCOUNTS = "/redfish/v1/AccountService/Accounts"
# Properties a restart may legitimately change: the manager's clock.
VOLATILE = {"DateTime"}


def login_status(svc: ServiceProcess, user: str, password: str) -> int:
    """Status of a GET of the AccountService with Basic credentials."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    req = urllib.request.Request(svc.url + "/redfish/v1/AccountService",
                                 headers={"Authorization": f"Basic {token}"})
    try:
        with urllib.request.urlopen(req, context=insecure_context(), timeout=30) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code


def snapshot(svc: ServiceProcess) -> dict[str, tuple[str | None, dict]]:
    """{uri: (ETag header, document)} of every resource reachable from the root."""
    out: dict[str, tuple[str | None, dict]] = {}
    queue = ["/redfish/v1/"]
    while queue:
        uri = queue.pop(0)
        if uri in out:
            continue
        status, headers, body = svc.get(uri)
        assert status == 200, f"GET {uri} -> {status}: {body}"
        out[uri] = (headers.get("ETag"), body)
        for link in odata_links(body):
            target = resource_path(link)
            if target and target not in out:
                queue.append(target)
        assert len(out) < 2000
    return out


def without_volatile(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k not in VOLATILE and k != "@odata.etag"}


def ok(result, what: str):
    status, headers, body = result
    assert 200 <= status < 300, f"{what} -> {status}: {body}"
    return headers, body


def test_acknowledged_changes_survive_sigkill(tmp_path):
    svc = ServiceProcess(tmp_path / "state").start()
    try:
        _, _, root_before = svc.get("/redfish/v1/")
        created = {}
        for name, role in (("keep", "ReadOnly"), ("promote", "ReadOnly"), ("disable", "Operator"),
                           ("repass", "ReadOnly"), ("remove", "Operator")):
            headers, body = ok(svc.request("POST", ACCOUNTS, {
                "UserName": name, "Password": f"{name}-Old-passw0rd", "RoleId": role}),
                f"create {name}")
            created[name] = headers["Location"]
            assert login_status(svc, name, f"{name}-Old-passw0rd") == 200
        acked_etags = {}
        _, body = ok(svc.request("PATCH", created["promote"], {"RoleId": "Operator"}), "PATCH role")
        acked_etags[created["promote"]] = body["@odata.etag"]
        _, body = ok(svc.request("PATCH", created["disable"], {"Enabled": False}), "PATCH enabled")
        acked_etags[created["disable"]] = body["@odata.etag"]
        # the tree as it is now; the changes below are checked one by one instead
        before = snapshot(svc)
        changed_last = {created["repass"], created["remove"], ACCOUNTS,
                        "/redfish/v1/AccountService", "/redfish/v1/SessionService"}

        ok(svc.request("PATCH", created["repass"], {"Password": "repass-New-passw0rd"}),
           "PATCH password")
        ok(svc.request("DELETE", created["remove"]), "DELETE account")
        ok(svc.request("PATCH", "/redfish/v1/AccountService", {
            "AccountLockoutThreshold": 7, "AccountLockoutDuration": 900,
            "AccountLockoutCounterResetAfter": 120, "MinPasswordLength": 10}),
            "PATCH AccountService")
        ok(svc.request("PATCH", "/redfish/v1/SessionService", {"SessionTimeout": 600}),
           "PATCH SessionService")
        svc.kill()  # right after the last acknowledgement: no shutdown code runs
        svc.start()  # same state directory, same port

        _, _, root_after = svc.get("/redfish/v1/")
        assert root_after["UUID"] == root_before["UUID"]

        # accounts
        status, _, accounts = svc.get(ACCOUNTS)
        assert status == 200
        members = {m["@odata.id"] for m in accounts["Members"]}
        assert created["remove"] not in members
        assert accounts["Members@odata.count"] == len(members) == 5  # admin + 4 kept
        assert svc.get(created["remove"])[0] == 404
        assert login_status(svc, "remove", "remove-Old-passw0rd") == 401
        promote = svc.get(created["promote"])[2]
        assert promote["RoleId"] == "Operator"
        assert promote["Links"]["Role"]["@odata.id"].endswith("/Roles/Operator")
        assert svc.get(created["disable"])[2]["Enabled"] is False
        assert login_status(svc, "disable", "disable-Old-passw0rd") == 401
        assert svc.get(created["keep"])[2]["RoleId"] == "ReadOnly"
        assert login_status(svc, "keep", "keep-Old-passw0rd") == 200
        assert login_status(svc, "repass", "repass-New-passw0rd") == 200
        assert login_status(svc, "repass", "repass-Old-passw0rd") == 401
        for uri, etag in acked_etags.items():
            assert svc.get(uri)[2]["@odata.etag"] == etag, uri

        # policies
        policy = svc.get("/redfish/v1/AccountService")[2]
        assert (policy["AccountLockoutThreshold"], policy["AccountLockoutDuration"],
                policy["AccountLockoutCounterResetAfter"], policy["MinPasswordLength"]) == \
            (7, 900, 120, 10)
        assert svc.get("/redfish/v1/SessionService")[2]["SessionTimeout"] == 600

        # and everything else as it was before the last changes, ETags included
        after = snapshot(svc)
        differences = []
        for uri in sorted((set(before) | set(after)) - changed_last):
            if uri not in after or uri not in before:
                differences.append(f"{uri}: {'gone' if uri not in after else 'new'} after restart")
                continue
            (etag_b, doc_b), (etag_a, doc_a) = before[uri], after[uri]
            if without_volatile(doc_b) != without_volatile(doc_a):
                a, b = without_volatile(doc_a), without_volatile(doc_b)
                changed = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
                differences.append(f"{uri}: properties changed by the restart: {changed}")
            elif (etag_b, doc_b.get("@odata.etag")) != (etag_a, doc_a.get("@odata.etag")):
                differences.append(f"{uri}: ETag {etag_b} -> {etag_a} though nothing changed")
        assert not differences, "the restart changed the tree:\n  " + "\n  ".join(differences)
    finally:
        svc.stop()


def test_concurrent_patches_acknowledged_before_sigkill_survive(tmp_path):
    svc = ServiceProcess(tmp_path / "state").start()
    try:
        uris = []
        for i in range(6):
            headers, _ = ok(svc.request("POST", ACCOUNTS, {
                "UserName": f"h{i}-0", "Password": "Hammer-passw0rd", "RoleId": "ReadOnly"}),
                "create")
            uris.append(headers["Location"])
        acked = dict.fromkeys(uris, 0)      # last n whose PATCH returned 200
        attempted = dict.fromkeys(uris, 0)  # last n sent (may have committed unacknowledged)
        unexpected: list[str] = []
        stop = threading.Event()

        def hammer(i: int, uri: str) -> None:
            n = 0
            while not stop.is_set():
                n += 1
                attempted[uri] = n
                try:
                    status, _, body = svc.request("PATCH", uri, {"UserName": f"h{i}-{n}"})
                except Exception:  # the kill: connection refused / reset / closed
                    return
                if status != 200:
                    unexpected.append(f"PATCH {uri} #{n} -> {status}: {body}")
                    return
                acked[uri] = n

        threads = [threading.Thread(target=hammer, args=(i, uri), daemon=True)
                   for i, uri in enumerate(uris)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while min(acked.values()) < 10 and time.monotonic() < deadline and not unexpected:
            time.sleep(0.05)
        svc.kill()  # mid-stream: every thread has a request in flight or about to be
        stop.set()
        for t in threads:
            t.join(timeout=60)
        assert not any(t.is_alive() for t in threads), "a client thread hung after the kill"
        assert not unexpected, "\n".join(unexpected)
        assert min(acked.values()) >= 10, f"too few PATCHes acknowledged before the kill: {acked}"

        svc.port = free_port()  # restart on a new port this time
        svc.start()
        lost = []
        for i, uri in enumerate(uris):
            status, _, doc = svc.get(uri)
            assert status == 200, (uri, status, doc)
            prefix = f"h{i}-"
            assert doc["UserName"].startswith(prefix), doc
            n = int(doc["UserName"][len(prefix):])
            # the last acknowledged value, or the one in flight at the kill (it may have
            # reached the disk without its answer reaching the client); never an older one
            if not acked[uri] <= n <= attempted[uri]:
                lost.append(f"{uri}: UserName h{i}-{n} after restart, but h{i}-{acked[uri]} "
                            f"was acknowledged (last sent h{i}-{attempted[uri]})")
        assert not lost, "acknowledged PATCHes lost by the SIGKILL:\n  " + "\n  ".join(lost)
    finally:
        svc.stop()
