"""A small async Redfish client: a session, retries with backoff, task monitors, SSE.

Only standard Redfish is used, so the bridge drives any compliant composability manager.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson

log = logging.getLogger("bridge.redfish")

SESSIONS = "/redfish/v1/SessionService/Sessions"
RETRY_STATUSES = {502, 503, 504}


class RedfishError(Exception):
    """A Redfish request that failed: status, the first MessageId and its message."""

    def __init__(self, status: int, body: Any = None, what: str = "") -> None:
        self.status = status
        info = _first_message(body)
        self.message_id = info.get("MessageId", "")
        self.message = info.get("Message", "") or what
        super().__init__(f"{status} {self.message_id}: {self.message}".strip())


def _first_message(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        return {}
    err = body.get("error") if isinstance(body.get("error"), dict) else body
    infos = err.get("@Message.ExtendedInfo") or body.get("Messages") or []
    if infos and isinstance(infos[0], dict):
        return infos[0]
    return {"MessageId": err.get("code", ""), "Message": err.get("message", "")}


def ssl_context(verify: bool, ca_bundle: Path | None) -> ssl.SSLContext | bool:
    if not verify:
        return False
    return ssl.create_default_context(cafile=str(ca_bundle) if ca_bundle else None)


class Redfish:
    def __init__(self, base_url: str, username: str, password: str, *,
                 ssl_ctx: ssl.SSLContext | bool = True, timeout_s: float = 30.0,
                 task_poll_s: float = 0.05, attempts: int = 4, connections: int = 32) -> None:
        self.base = base_url.rstrip("/")
        self.connections = connections
        self._credentials = (username, password)
        self._ssl = ssl_ctx
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.task_poll_s = task_poll_s
        self.attempts = attempts
        self._session: aiohttp.ClientSession | None = None
        self._token: str | None = None
        self._session_uri: str | None = None
        self._login_lock = asyncio.Lock()

    async def __aenter__(self) -> Redfish:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl, limit=self.connections),
                timeout=self.timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            if self._session_uri and self._token:
                try:
                    async with self._session.delete(self.base + self._session_uri,
                                                    headers=self._auth()):
                        pass
                except (TimeoutError, aiohttp.ClientError):
                    pass
            await self._session.close()
            self._session = None

    def _auth(self) -> dict[str, str]:
        return {"X-Auth-Token": self._token} if self._token else {}

    async def _login(self, stale: str | None) -> None:
        async with self._login_lock:
            if self._token is not None and self._token != stale:
                return  # another request logged in already
            user, password = self._credentials
            async with self._http().post(self.base + SESSIONS,
                                         json={"UserName": user, "Password": password}) as r:
                body = await _body(r)
                if r.status not in (200, 201):
                    raise RedfishError(r.status, body, "login failed")
                self._token = r.headers.get("X-Auth-Token")
                self._session_uri = r.headers.get("Location")
            log.info("Redfish session opened at %s", self.base)

    async def request(self, method: str, path: str, body: Any = None,
                      headers: dict[str, str] | None = None) -> tuple[int, Any, dict[str, str]]:
        """One request with the session (logging in, and once more on 401) and retries of
        connection failures and 502/503/504 for requests that are safe to repeat."""
        idempotent = method in ("GET", "HEAD", "DELETE", "PATCH", "PUT")
        delay = 0.1
        for attempt in range(self.attempts):
            if self._token is None:
                await self._login(None)
            token = self._token
            try:
                async with self._http().request(
                        method, self.base + path, json=body,
                        headers={**self._auth(), **(headers or {})}) as r:
                    data = await _body(r)
                    if r.status == 401 and attempt == 0:
                        await self._login(token)
                        continue
                    if r.status in RETRY_STATUSES and attempt < self.attempts - 1:
                        await asyncio.sleep(delay * (1 + random.random()))
                        delay *= 2
                        continue
                    return r.status, data, dict(r.headers)
            except (TimeoutError, aiohttp.ClientConnectionError) as e:
                sent = not isinstance(e, aiohttp.ClientConnectorError)
                if (sent and not idempotent) or attempt == self.attempts - 1:
                    raise RedfishError(0, None, f"{method} {path}: {e or type(e).__name__}")\
                        from None
                await asyncio.sleep(delay * (1 + random.random()))
                delay *= 2
        raise RedfishError(0, None, f"{method} {path}: no answer")

    async def get(self, path: str) -> dict[str, Any]:
        status, body, _ = await self.request("GET", path)
        if status != 200:
            raise RedfishError(status, body, f"GET {path}")
        return body

    async def operation(self, method: str, path: str, body: Any = None,
                        timeout_s: float | None = None) -> Any:
        """A modifying request, followed through its task monitor if it answers 202."""
        status, data, headers = await self.request(method, path, body)
        if status == 202 and headers.get("Location"):
            status, data = await self._follow(headers["Location"], timeout_s)
        if status >= 400:
            raise RedfishError(status, data, f"{method} {path}")
        if isinstance(data, dict) and str(data.get("@odata.type", "")).startswith("#Task."):
            if data.get("TaskState") in ("Exception", "Killed", "Cancelled"):
                raise RedfishError(500, data, f"task {data.get('@odata.id')} ended "
                                   f"{data.get('TaskState')}")
        return data

    async def _follow(self, monitor: str, timeout_s: float | None) -> tuple[int, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (timeout_s or self.timeout.total or 30.0)
        poll = self.task_poll_s
        while True:
            status, data, _ = await self.request("GET", monitor)
            if status != 202:
                return status, data
            if loop.time() > deadline:
                raise RedfishError(504, None, f"task monitor {monitor} still running")
            await asyncio.sleep(poll)
            poll = min(poll * 1.5, 1.0)

    async def events(self, path: str) -> AsyncIterator[dict[str, Any]]:
        """Server-sent events at ``path`` (the EventService's ServerSentEventUri), each
        as the Event document, until the stream ends."""
        if self._token is None:
            await self._login(None)
        async with self._http().get(
                self.base + path, headers={**self._auth(), "Accept": "text/event-stream"},
                timeout=aiohttp.ClientTimeout(total=None, sock_read=None)) as r:
            if r.status != 200:
                raise RedfishError(r.status, await _body(r), f"GET {path}")
            data: list[str] = []
            async for raw in r.content:
                line = raw.decode(errors="replace").rstrip("\r\n")
                if line.startswith("data:"):
                    data.append(line[5:].lstrip())
                elif not line and data:
                    try:
                        event = orjson.loads("\n".join(data))
                    except ValueError:
                        event = None
                    data = []
                    if isinstance(event, dict):
                        yield event


async def _body(r: aiohttp.ClientResponse) -> Any:
    raw = await r.read()
    if not raw:
        return None
    try:
        return orjson.loads(raw)
    except ValueError:
        return None
