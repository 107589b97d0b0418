"""Persistence for the store: an in-memory backend (tests) and SQLite (the service).

SQLite runs in WAL mode with ``synchronous=FULL``: a commit is on disk before the client
is told it succeeded, so a SIGKILL loses nothing that was acknowledged. All SQLite work
happens on one dedicated thread so the event loop never blocks on disk.
"""

from __future__ import annotations

import asyncio
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from .store import Change


@dataclass(slots=True)
class StoredDocument:
    uri: str
    doc: dict[str, Any] | bytes  # bytes: the JSON as stored, not parsed yet
    private: dict[str, Any] | None
    revision: int


class Backend:
    async def load(self) -> tuple[list[StoredDocument], int]:
        raise NotImplementedError

    async def recent_changes(self, limit: int) -> list[Change]:
        raise NotImplementedError

    async def write(self, changes: list[tuple[Change, StoredDocument | None]]) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        return None


class MemoryBackend(Backend):
    """Keeps nothing beyond the process: for unit tests and throwaway services."""

    async def load(self) -> tuple[list[StoredDocument], int]:
        return [], 0

    async def recent_changes(self, limit: int) -> list[Change]:
        return []

    async def write(self, changes: list[tuple[Change, StoredDocument | None]]) -> None:
        return None


_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    uri TEXT PRIMARY KEY,
    doc BLOB NOT NULL,
    private BLOB,
    revision INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY,
    uri TEXT NOT NULL,
    op TEXT NOT NULL,
    actor TEXT,
    time REAL NOT NULL,
    odata_type TEXT,
    properties TEXT NOT NULL,
    note TEXT
);
"""


class SqliteBackend(Backend):
    def __init__(self, path: Path, change_retention: int = 100_000) -> None:
        self._path = path
        self._retention = change_retention
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._conn: sqlite3.Connection | None = None

    async def _run(self, fn, *args):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    # -- runs on the sqlite thread ------------------------------------------------------
    def _open(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.executescript(_SCHEMA)
            columns = {row[1] for row in conn.execute("PRAGMA table_info(changes)")}
            if "note" not in columns:  # a state directory from before notes were kept
                conn.execute("ALTER TABLE changes ADD COLUMN note TEXT")
            self._conn = conn
        return self._conn

    def _load(self) -> tuple[list[StoredDocument], int]:
        conn = self._open()
        docs = [
            StoredDocument(uri, bytes(doc), orjson.loads(private) if private else None, rev)
            for uri, doc, private, rev in conn.execute(
                "SELECT uri, doc, private, revision FROM documents"
            )
        ]
        row = conn.execute("SELECT MAX(seq) FROM changes").fetchone()
        seq = max([row[0] or 0, *(d.revision for d in docs)])
        return docs, seq

    def _recent(self, limit: int) -> list[Change]:
        from .store import Change

        rows = self._open().execute(
            "SELECT seq, uri, op, actor, time, odata_type, properties, note FROM changes"
            " ORDER BY seq DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [
            Change(seq, uri, op, actor, t, otype, tuple(orjson.loads(props)),
                   tuple(orjson.loads(note)) if note else None)
            for seq, uri, op, actor, t, otype, props, note in reversed(rows)
        ]

    def _write(self, changes: list[tuple[Change, StoredDocument | None]]) -> None:
        conn = self._open()
        conn.execute("BEGIN IMMEDIATE")
        try:
            for change, sd in changes:
                if sd is None:
                    conn.execute("DELETE FROM documents WHERE uri = ?", (change.uri,))
                else:
                    conn.execute(
                        "INSERT OR REPLACE INTO documents (uri, doc, private, revision)"
                        " VALUES (?, ?, ?, ?)",
                        (
                            sd.uri,
                            sd.doc if isinstance(sd.doc, bytes) else orjson.dumps(sd.doc),
                            orjson.dumps(sd.private) if sd.private is not None else None,
                            sd.revision,
                        ),
                    )
                conn.execute(
                    "INSERT INTO changes"
                    " (seq, uri, op, actor, time, odata_type, properties, note)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        change.seq,
                        change.uri,
                        change.op,
                        change.actor,
                        change.time,
                        change.odata_type,
                        orjson.dumps(list(change.properties)).decode(),
                        orjson.dumps(change.note).decode() if change.note else None,
                    ),
                )
            last = changes[-1][0].seq
            if last % 1000 == 0:
                conn.execute("DELETE FROM changes WHERE seq <= ?", (last - self._retention,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- async API ----------------------------------------------------------------------
    async def load(self) -> tuple[list[StoredDocument], int]:
        return await self._run(self._load)

    async def recent_changes(self, limit: int) -> list[Change]:
        return await self._run(self._recent, limit)

    async def write(self, changes: list[tuple[Change, StoredDocument | None]]) -> None:
        await self._run(self._write, changes)

    async def close(self) -> None:
        await self._run(self._close)
        self._executor.shutdown(wait=True)
