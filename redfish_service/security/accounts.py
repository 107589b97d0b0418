"""Credential checks, lockout and the principal an account acts as.

Accounts themselves are documents in the store (``/redfish/v1/AccountService/Accounts/N``)
whose private data holds the scrypt hash. Failure counters live in memory; ``Locked`` and
the time it was set are persisted with the account.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
from typing import Any

from ..resources import uris
from ..resources.context import Principal
from ..store import Store
from .passwords import hash_password, verify_password

log = logging.getLogger("redfish_service.security")

_DUMMY_HASH = hash_password(secrets.token_hex(8))


class Accounts:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._failures: dict[str, tuple[int, float]] = {}
        self._pepper = secrets.token_bytes(16)
        # (account uri, keyed digest of a password) -> the hash it was verified against
        self._verified: dict[tuple[str, str], str] = {}
        self._principals: dict[tuple, Principal] = {}

    # -- lookups ----------------------------------------------------------------------
    def policy(self) -> dict[str, Any]:
        return self._store.doc(uris.ACCOUNT_SERVICE) or {}

    def find(self, username: str) -> str | None:
        for uri in self._store.members(uris.ACCOUNTS):
            doc = self._store.doc(uri)
            if doc and doc.get("UserName") == username:
                return uri
        return None

    def role_privileges(self, role_id: str) -> tuple[str, ...]:
        role = self._store.doc(f"{uris.ROLES}/{role_id}") or {}
        return tuple(role.get("AssignedPrivileges", ())) + tuple(
            role.get("OemPrivileges", ())
        )

    def principal(self, account_uri: str, session_uri: str | None = None) -> Principal | None:
        entry = self._store.get(account_uri)
        if entry is None or not entry.doc.get("Enabled", True):
            return None
        role_id = entry.doc.get("RoleId", "")
        role = self._store.get(f"{uris.ROLES}/{role_id}")
        # Built once per (account revision, role revision, session): every request asks.
        key = (account_uri, session_uri, entry.revision, role.revision if role else 0)
        cached = self._principals.get(key)
        if cached is not None:
            return cached
        principal = Principal(
            username=entry.doc.get("UserName", ""),
            account_uri=account_uri,
            role_id=role_id,
            privileges=self.role_privileges(role_id),
            session_uri=session_uri,
            password_change_required=bool(entry.doc.get("PasswordChangeRequired")),
        )
        if len(self._principals) > 4096:
            self._principals.clear()
        self._principals[key] = principal
        return principal

    # -- authentication ---------------------------------------------------------------
    def _digest(self, uri: str, password: str) -> str:
        return hashlib.blake2b(
            password.encode(), key=self._pepper, person=uri.encode()[-16:]
        ).hexdigest()

    async def _verify(self, uri: str, password: str, encoded: str) -> bool:
        key = (uri, self._digest(uri, password))
        if self._verified.get(key) == encoded:
            return True
        ok = await asyncio.get_running_loop().run_in_executor(
            None, verify_password, password, encoded
        )
        if ok:
            if len(self._verified) > 1024:
                self._verified.clear()
            self._verified[key] = encoded
        return ok

    async def authenticate(self, username: str, password: str) -> Principal | None:
        """The principal for these credentials, or None (never saying why)."""
        uri = self.find(username)
        entry = self._store.get(uri) if uri else None
        if entry is None or not entry.private:
            await asyncio.get_running_loop().run_in_executor(
                None, verify_password, password, _DUMMY_HASH
            )
            return None
        if entry.doc.get("Locked") and not await self._maybe_unlock(uri, entry.private):
            return None
        ok = await self._verify(uri, password, entry.private.get("password", ""))
        if not ok:
            await self._record_failure(uri, username)
            return None
        self._failures.pop(username, None)
        return self.principal(uri)

    async def _record_failure(self, uri: str, username: str) -> None:
        policy = self.policy()
        threshold = policy.get("AccountLockoutThreshold", 0) or 0
        reset_after = policy.get("AccountLockoutCounterResetAfter", 0) or 0
        now = time.monotonic()
        count, first = self._failures.get(username, (0, now))
        reset_enabled = policy.get("AccountLockoutCounterResetEnabled", True)
        if reset_enabled and reset_after and now - first > reset_after:
            count, first = 0, now
        count += 1
        self._failures[username] = (count, first)
        log.info("authentication failed", extra={"user": username, "failures": count})
        if threshold and count >= threshold and policy.get("AccountLockoutDuration", 0) != 0:
            self._failures.pop(username, None)
            async with self._store.transaction("service") as tx:
                doc = tx.get(uri)
                if doc is not None and not doc.get("Locked"):
                    private = tx.private(uri) or {}
                    private["locked_at"] = time.time()
                    doc["Locked"] = True
                    tx.put(uri, doc, private)
            log.warning("account locked after failed logins", extra={"user": username})

    async def _maybe_unlock(self, uri: str, private: dict[str, Any]) -> bool:
        policy = self.policy()
        duration = policy.get("AccountLockoutDuration", 0) or 0
        if not policy.get("AccountLockoutCounterResetEnabled", True) or not duration:
            return False
        if time.time() < private.get("locked_at", 0) + duration:
            return False
        async with self._store.transaction("service") as tx:
            doc = tx.get(uri)
            if doc is not None and doc.get("Locked"):
                doc["Locked"] = False
                tx.put(uri, doc)
        return True
