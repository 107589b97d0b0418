"""Helpers of the event suites: a loopback receiver of pushed events, and SSE reading."""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from redfish_service.events.records import from_change
from redfish_service.security.tls import ensure_self_signed, server_context

from .service import free_port

EVENT_SERVICE = "/redfish/v1/EventService"
SUBSCRIPTIONS = EVENT_SERVICE + "/Subscriptions"
SSE = EVENT_SERVICE + "/SSE"


class Receiver:
    """An aiohttp server on 127.0.0.1 that records every event POSTed to ``/events``;
    it can be stopped and started again on the same port."""

    def __init__(self, tls_dir: Path | None = None) -> None:
        self.port = free_port()
        self.posts: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.status = 200
        self._runner: web.AppRunner | None = None
        self._ssl: ssl.SSLContext | None = None
        if tls_dir is not None:
            cert, key = tls_dir / "recv-cert.pem", tls_dir / "recv-key.pem"
            ensure_self_signed(cert, key, ["127.0.0.1", "localhost"])
            self._ssl = server_context(cert, key)

    @property
    def url(self) -> str:
        scheme = "https" if self._ssl else "http"
        return f"{scheme}://127.0.0.1:{self.port}/events"

    async def _handle(self, request: web.Request) -> web.Response:
        self.posts.append(await request.json())
        self.headers.append(dict(request.headers))
        return web.Response(status=self.status)

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/events", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=self._ssl).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def records(self) -> list[dict[str, Any]]:
        return [r for post in self.posts for r in post["Events"]]

    def event_ids(self) -> list[str]:
        return [r["EventId"] for r in self.records]

    async def wait_for(self, predicate, within: float = 5.0) -> None:
        deadline = time.monotonic() + within
        while not predicate(self):
            assert time.monotonic() < deadline, f"receiver got only {self.event_ids()}"
            await asyncio.sleep(0.01)


class ChangeLog:
    """The records the service should announce, from the store's own change feed."""

    def __init__(self, store) -> None:
        self.records: list[tuple[Any, dict]] = []
        self._stop = store.subscribe(self._on)

    def _on(self, changes) -> None:
        for change in changes:
            record = from_change(change)
            if record is not None:
                self.records.append(record)

    def close(self) -> None:
        self._stop()

    def ids(self, predicate=lambda origin: True) -> list[str]:
        return [str(o.seq) for o, _ in self.records if predicate(o)]


async def subscribe(client, headers, destination: str, **extra) -> str:
    resp = await client.post(SUBSCRIPTIONS, headers=headers,
                             json={"Destination": destination, "Protocol": "Redfish", **extra})
    assert resp.status == 201, await resp.text()
    return resp.headers["Location"]


async def read_sse(resp, within: float = 5.0) -> tuple[str | None, Any]:
    """The next SSE event of a stream: (id, data), or (None, comment text) for a comment."""
    chunk = await asyncio.wait_for(resp.content.readuntil(b"\n\n"), within)
    assert chunk, "stream ended"
    lines = chunk.decode().strip("\n").split("\n")
    if all(line.startswith(":") for line in lines):
        return None, "\n".join(lines)
    fields = dict(line.split(": ", 1) for line in lines)
    return fields.get("id"), json.loads(fields["data"])


async def read_until(resp, last_id: str, within: float = 5.0) -> list[tuple[str, Any]]:
    """SSE events up to and including ``last_id`` (comments skipped)."""
    out: list[tuple[str, Any]] = []
    deadline = time.monotonic() + within
    while not out or out[-1][0] != last_id:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"stream gave only {[i for i, _ in out]}, waiting for {last_id}"
        event_id, data = await read_sse(resp, remaining)
        if event_id is not None:
            out.append((event_id, data))
    return out
