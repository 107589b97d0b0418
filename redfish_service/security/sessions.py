"""Redfish sessions: creation, token lookup, idle expiry, logout.

A session is a document under ``/redfish/v1/SessionService/Sessions``; its private data
holds the SHA-256 of the token and the account URI, never the token. The token index is
rebuilt from the store at start and kept in step with it through the store's change
feed, so deleting a session document by any path ends the session.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import time
import uuid
from typing import Any

from ..protocol.errors import RedfishError
from ..resources import uris
from ..resources.context import Principal
from ..store import Change, Store
from .accounts import Accounts
from .passwords import new_token, token_digest

log = logging.getLogger("redfish_service.security")

SESSION_TYPE = "#Session.v1_8_0.Session"


def _iso(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).isoformat(timespec="seconds")


class Sessions:
    def __init__(self, store: Store, accounts: Accounts, max_sessions: int) -> None:
        self._store = store
        self._accounts = accounts
        self._max = max_sessions
        self._by_digest: dict[str, str] = {}
        self._last_seen: dict[str, float] = {}
        self._unsubscribe = store.subscribe(self._on_changes)
        self._reaper: asyncio.Task | None = None

    def load(self) -> None:
        now = time.monotonic()
        for uri in self._store.members(uris.SESSIONS):
            entry = self._store.get(uri)
            if entry and entry.private and "token" in entry.private:
                self._by_digest[entry.private["token"]] = uri
                self._last_seen[uri] = now

    def start(self) -> None:
        self._reaper = asyncio.create_task(self._reap_forever(), name="session-reaper")

    async def stop(self) -> None:
        self._unsubscribe()
        if self._reaper:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper

    def _on_changes(self, changes: list[Change]) -> None:
        prefix = uris.SESSIONS + "/"
        for change in changes:
            if change.op == "delete" and change.uri.startswith(prefix):
                self._last_seen.pop(change.uri, None)
                for digest, uri in list(self._by_digest.items()):
                    if uri == change.uri:
                        del self._by_digest[digest]

    @property
    def timeout(self) -> int:
        service = self._store.doc(uris.SESSION_SERVICE) or {}
        return int(service.get("SessionTimeout", 1800))

    def count(self) -> int:
        return len(self._by_digest)

    # -- create / look up / end ---------------------------------------------------------
    async def create(
        self, principal: Principal, remote: str | None, context: str | None
    ) -> tuple[str, str]:
        """Create a session for ``principal``; returns (session URI, token)."""
        if len(self._by_digest) >= self._max:
            await self.reap()
            if len(self._by_digest) >= self._max:
                raise RedfishError.of(503, "SessionLimitExceeded")
        token = new_token()
        session_id = uuid.uuid4().hex
        uri = f"{uris.SESSIONS}/{session_id}"
        now = time.time()
        doc: dict[str, Any] = {
            "@odata.id": uri,
            "@odata.type": SESSION_TYPE,
            "Id": session_id,
            "Name": f"Session of {principal.username}",
            "UserName": principal.username,
            "Password": None,
            "SessionType": "Redfish",
            "CreatedTime": _iso(now),
            "Roles": [principal.role_id],
        }
        if remote:
            doc["ClientOriginIPAddress"] = remote
        if context is not None:
            doc["Context"] = context
        private = {"token": token_digest(token), "account": principal.account_uri}
        async with self._store.transaction(principal.username) as tx:
            tx.create(uri, doc, private)
        self._by_digest[private["token"]] = uri
        self._last_seen[uri] = time.monotonic()
        log.info("session created", extra={"user": principal.username, "session": session_id})
        return uri, token

    def lookup(self, token: str) -> Principal | None:
        uri = self._by_digest.get(token_digest(token))
        if uri is None:
            return None
        now = time.monotonic()
        if now - self._last_seen.get(uri, now) > self.timeout:
            return None  # the reaper deletes it
        entry = self._store.get(uri)
        if entry is None or not entry.private:
            return None
        principal = self._accounts.principal(entry.private["account"], session_uri=uri)
        if principal is None:
            return None
        self._last_seen[uri] = now
        return principal

    async def delete_where(self, predicate) -> None:
        """End every session whose private data matches ``predicate``."""
        async with self._store.transaction("service") as tx:
            for uri in self._store.members(uris.SESSIONS):
                entry = self._store.get(uri)
                if entry and entry.private and predicate(entry.private):
                    tx.delete(uri)

    async def reap(self) -> None:
        now = time.monotonic()
        timeout = self.timeout
        expired = [u for u, seen in self._last_seen.items() if now - seen > timeout]
        if not expired:
            return
        async with self._store.transaction("service") as tx:
            for uri in expired:
                if tx.exists(uri):
                    tx.delete(uri)
        log.info("sessions expired", extra={"count": len(expired)})

    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(min(30, max(1, self.timeout // 4)))
            try:
                await self.reap()
            except Exception:  # keep reaping whatever one round hit
                log.exception("session reaper failed")
