"""Shared helpers for the composition suites: URIs, a document snapshot of a running
service that ``redfish_service.composition.invariants.violations`` can read, task-monitor
following, and the per-block checks every suite makes."""

from __future__ import annotations

import base64
import http.client
import json
import time
import weakref
from collections.abc import Callable
from typing import Any

from redfish_service.composition.invariants import violations

SYSTEMS = "/redfish/v1/Systems"
COMPOSITION_SERVICE = "/redfish/v1/CompositionService"
BLOCKS = f"{COMPOSITION_SERVICE}/ResourceBlocks"
ZONES = f"{COMPOSITION_SERVICE}/ResourceZones"
FREE_POOL = f"{COMPOSITION_SERVICE}/FreePool"
ACTIVE_POOL = f"{COMPOSITION_SERVICE}/ActivePool"
FABRICS = "/redfish/v1/Fabrics"
ADD = SYSTEMS + "/{}/Actions/ComputerSystem.AddResourceBlock"
REMOVE = SYSTEMS + "/{}/Actions/ComputerSystem.RemoveResourceBlock"
EXPAND = "?$expand=.($levels=1)"

# (status, headers, body) of one HTTP exchange
Result = tuple[int, dict[str, str], Any]
Getter = Callable[[str], Result]


def block_uri(name: str) -> str:
    return f"{BLOCKS}/{name}"


def name_of(uri: str) -> str:
    return uri.rstrip("/").rsplit("/", 1)[1]


def block_param(name: str, **extra: Any) -> dict[str, Any]:
    return {"ResourceBlock": {"@odata.id": block_uri(name)}, **extra}


def compose_body(*names: str, name: str = "composed") -> dict[str, Any]:
    return {"Name": name, "Links": {"ResourceBlocks": [{"@odata.id": block_uri(n)}
                                                        for n in names]}}


def ids(links: list[dict[str, Any]] | None) -> list[str]:
    return [link["@odata.id"] for link in links or ()]


def local_path(location: str) -> str:
    """A Location header (absolute or relative) as a path."""
    if location.startswith(("http://", "https://")):
        return "/" + location.split("/", 3)[3]
    return location


def message_ids(body: Any) -> list[str]:
    if not isinstance(body, dict):
        return []
    error = body.get("error", {})
    return [m.get("MessageId", "") for m in error.get("@Message.ExtendedInfo", [])]


def follow_task(get: Getter, result: Result, *, timeout: float = 60) -> Result:
    """An operation may answer 202 with a task monitor in ``Location`` (long operations,
    once they exceed the service's task threshold): poll it until it stops answering 202
    and return that final answer; anything else is returned as is."""
    status, headers, body = result
    deadline = time.monotonic() + timeout
    while status == 202:
        monitor = headers.get("Location") or headers.get("location")
        assert monitor, f"202 without a task monitor in Location: {headers} {body}"
        assert time.monotonic() < deadline, f"task monitor {monitor} still 202 after {timeout}s"
        time.sleep(min(float(headers.get("Retry-After") or 0.05), 0.2))
        status, headers, body = get(local_path(monitor))
    return status, headers, body


class KeepAlive:
    """GETs (and other requests) over one kept-alive HTTPS connection to a
    ``ServiceProcess``: a TLS handshake per request costs ~30 ms, this ~1 ms. One thread
    only; make a new one after a restart."""

    def __init__(self, svc) -> None:
        from .service import insecure_context

        self._conn = http.client.HTTPSConnection("127.0.0.1", svc.port, timeout=30,
                                                 context=insecure_context())
        cred = base64.b64encode(f"admin:{svc.password}".encode()).decode()
        self._headers = {"Authorization": f"Basic {cred}"}

    def request(self, method: str, path: str, body: Any = None) -> Result:
        headers = dict(self._headers)
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        for attempt in (1, 2):  # once more on a fresh connection if the old one was closed
            try:
                self._conn.request(method, path, body=data, headers=headers)
                resp = self._conn.getresponse()
                raw = resp.read()
                break
            except (http.client.RemoteDisconnected, ConnectionError):
                self._conn.close()
                if attempt == 2 or method != "GET":
                    raise
        return resp.status, dict(resp.headers), json.loads(raw) if raw else None

    def get(self, path: str) -> Result:
        return self.request("GET", path)

    def close(self) -> None:
        self._conn.close()


class Snapshot:
    """The composition-relevant documents of a running service, fetched with ``$expand``
    (one GET per collection) and, for anything else, one GET each; then usable as the
    ``doc``/``members`` pair :func:`violations` takes. Take it while the service is idle."""

    def __init__(self, get: Getter) -> None:
        self._get = get
        self.docs: dict[str, dict[str, Any] | None] = {}
        self._members: dict[str, list[str]] = {}
        for collection in (BLOCKS, ZONES, SYSTEMS, FREE_POOL, ACTIVE_POOL):
            self._load(collection)
        for fabric in self.members(FABRICS):
            self._load(f"{fabric}/Endpoints")
            self._load(f"{fabric}/Zones")

    def _load(self, collection: str) -> None:
        status, _, body = self._get(collection + EXPAND)
        assert status in (200, 404), f"GET {collection}{EXPAND} -> {status}: {body}"
        if status == 404:  # a served mockup may have no pools
            self.docs[collection] = None
            self._members[collection] = []
            return
        uris = []
        for member in body.get("Members", []):
            uri = member["@odata.id"]
            uris.append(uri)
            if len(member) > 1:  # expanded
                self.docs[uri] = member
        self._members[collection] = uris

    def doc(self, uri: str) -> dict[str, Any] | None:
        if uri not in self.docs:
            status, _, body = self._get(uri)
            assert status in (200, 404), f"GET {uri} -> {status}: {body}"
            self.docs[uri] = body if status == 200 else None
        return self.docs[uri]

    def members(self, collection: str) -> list[str]:
        if collection not in self._members:
            status, _, body = self._get(collection)
            assert status in (200, 404), f"GET {collection} -> {status}: {body}"
            self._members[collection] = ids(body.get("Members")) if status == 200 else []
        return self._members[collection]

    # -- views ------------------------------------------------------------------------
    def block(self, name: str) -> dict[str, Any]:
        doc = self.doc(block_uri(name))
        assert doc is not None, f"block {name} is missing"
        return doc

    def state(self, name: str) -> str:
        return self.block(name)["CompositionStatus"]["CompositionState"]

    def owner(self, name: str) -> str | None:
        """The system a block is composed into (None when free)."""
        systems = ids(self.block(name).get("Links", {}).get("ComputerSystems"))
        assert len(systems) <= 1, f"{name} is in several systems: {systems}"
        return systems[0] if systems else None

    def composed_systems(self) -> dict[str, list[str]]:
        """Composed system URI -> the names of its blocks."""
        out = {}
        for uri in self.members(SYSTEMS):
            doc = self.doc(uri) or {}
            if doc.get("SystemType") == "Composed":
                out[uri] = [name_of(b) for b in ids(doc.get("Links", {}).get("ResourceBlocks"))]
        return out

    def violations(self) -> list[str]:
        return violations(self.doc, self.members) + self.consistency()

    def consistency(self) -> list[str]:
        """What a client sees of each block, said plainly (the invariants say most of it
        too; these are the sentences of the composition issue)."""
        out = []
        free, active = set(self.members(FREE_POOL)), set(self.members(ACTIVE_POOL))
        for uri in self.members(BLOCKS):
            doc = self.doc(uri) or {}
            state = doc.get("CompositionStatus", {}).get("CompositionState")
            systems = ids(doc.get("Links", {}).get("ComputerSystems"))
            if state == "Composing":
                out.append(f"{uri} is left Composing")
            if "ComputerSystem" in doc.get("ResourceBlockType", ()):
                continue
            if state == "Composed":
                if len(systems) != 1:
                    out.append(f"{uri} is Composed into {systems}")
                for system in systems:
                    linked = ids((self.doc(system) or {}).get("Links", {}).get("ResourceBlocks"))
                    if uri not in linked:
                        out.append(f"{uri} is Composed into {system}, which does not link it")
                if doc.get("Pool") != "Active" or uri not in active or uri in free:
                    out.append(f"{uri} is Composed but Pool={doc.get('Pool')}, "
                               f"in ActivePool={uri in active}, in FreePool={uri in free}")
            elif state == "Unused":
                if systems:
                    out.append(f"{uri} is Unused but links {systems}")
                if doc.get("Pool") != "Free" or uri not in free or uri in active:
                    out.append(f"{uri} is Unused but Pool={doc.get('Pool')}, "
                               f"in FreePool={uri in free}, in ActivePool={uri in active}")
            else:
                out.append(f"{uri} is in state {state!r}")
        return out


def snapshot(svc) -> Snapshot:
    """A :class:`Snapshot` of a ``ServiceProcess``, fetched over one kept-alive
    connection (closed when the snapshot is garbage)."""
    conn = KeepAlive(svc)
    snap = Snapshot(conn.get)
    weakref.finalize(snap, conn.close)
    return snap
