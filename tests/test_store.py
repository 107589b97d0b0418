"""The document store: transactions, revisions, collections, change log, subscribers and
SQLite persistence."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import orjson
import pytest

from redfish_service.store import (
    Backend,
    Change,
    MemoryBackend,
    SqliteBackend,
    Store,
    StoreError,
)

ETAG = "@odata.etag"


def doc(uri: str, **props) -> dict:
    return {"@odata.id": uri, "@odata.type": "#Thing.v1_0_0.Thing", "Id": uri.rsplit("/", 1)[1],
            **props}


def collection(uri: str) -> dict:
    return {"@odata.id": uri, "@odata.type": "#ThingCollection.ThingCollection",
            "Name": "Things", "Members": [], "Members@odata.count": 0}


def plain(d: dict | None) -> dict | None:
    """A document without the store-maintained ETag annotation."""
    return None if d is None else {k: v for k, v in d.items() if k != ETAG}


@pytest.fixture(params=["memory", "sqlite"])
async def store(request, tmp_path):
    backend = MemoryBackend() if request.param == "memory" else SqliteBackend(tmp_path / "s.db")
    s = Store(backend)
    await s.open()
    yield s
    await s.close()


# -- transactions --------------------------------------------------------------------------


async def test_create_and_read(store):
    async with store.transaction("tester") as tx:
        tx.create("/r/a", doc("/r/a", Value=1), {"secret": "s"})
        assert tx.get("/r/a")["Value"] == 1  # reads its own writes
        assert store.get("/r/a") is None  # not visible outside before commit
    entry = store.get("/r/a")
    assert plain(entry.doc) == doc("/r/a", Value=1)
    assert entry.private == {"secret": "s"}
    assert "/r/a" in store
    assert store.doc("/r/a")["Value"] == 1


async def test_exception_discards_everything(store):
    async with store.transaction() as tx:
        tx.create("/r/keep", doc("/r/keep", Value=1))
    seq = store.seq
    n = len(store)
    with pytest.raises(RuntimeError):
        async with store.transaction() as tx:
            tx.create("/r/new", doc("/r/new"))
            tx.update("/r/keep", {"Value": 2})
            tx.delete("/r/keep")
            raise RuntimeError("boom")
    assert store.get("/r/new") is None
    assert store.doc("/r/keep")["Value"] == 1
    assert store.seq == seq
    assert len(store) == n
    assert store.changes_since(seq) == []
    # The lock was released: another transaction works.
    async with store.transaction() as tx:
        tx.update("/r/keep", {"Value": 3})
    assert store.doc("/r/keep")["Value"] == 3


async def test_transaction_copies_are_isolated(store):
    original = doc("/r/a", Items=[1, 2])
    async with store.transaction() as tx:
        tx.create("/r/a", original)
    original["Items"].append(3)
    assert store.doc("/r/a")["Items"] == [1, 2]
    async with store.transaction() as tx:
        copy = tx.get("/r/a")
        copy["Items"].append(99)
        assert tx.get("/r/a")["Items"] == [1, 2]
    assert store.doc("/r/a")["Items"] == [1, 2]


async def test_store_errors(store):
    async with store.transaction() as tx:
        tx.create("/r/a", doc("/r/a"))
    seq = store.seq
    with pytest.raises(StoreError):
        async with store.transaction() as tx:
            tx.create("/r/a", doc("/r/a"))
    with pytest.raises(StoreError):
        async with store.transaction() as tx:
            tx.delete("/r/missing")
    with pytest.raises(StoreError):
        async with store.transaction() as tx:
            tx.create("/r/b", doc("/r/other"))
    with pytest.raises(StoreError):
        async with store.transaction() as tx:
            tx.update("/r/missing", {"x": 1})
    assert store.seq == seq
    assert store.get("/r/b") is None


async def test_delete_then_recreate_in_one_transaction(store):
    async with store.transaction() as tx:
        tx.create("/r/a", doc("/r/a", Value=1))
    async with store.transaction() as tx:
        tx.delete("/r/a")
        assert not tx.exists("/r/a")
        tx.create("/r/a", doc("/r/a", Value=2))
    assert store.doc("/r/a")["Value"] == 2


async def test_transactions_are_serialized(store):
    async with store.transaction() as tx:
        tx.create("/r/counter", doc("/r/counter", N=0))

    async def bump():
        async with store.transaction() as tx:
            d = tx.get("/r/counter")
            await asyncio.sleep(0)  # let the other one try to interleave
            d["N"] += 1
            tx.put("/r/counter", d)

    await asyncio.gather(*(bump() for _ in range(10)))
    assert store.doc("/r/counter")["N"] == 10


async def test_failed_backend_write_leaves_memory_untouched():
    class Failing(MemoryBackend):
        fail = False

        async def write(self, changes):
            if self.fail:
                raise OSError("disk full")

    backend = Failing()
    store = Store(backend)
    await store.open()
    calls = []
    store.subscribe(calls.append)
    async with store.transaction() as tx:
        tx.create("/r/a", doc("/r/a", Value=1))
    assert len(calls) == 1
    seq, etag = store.seq, store.get("/r/a").etag
    backend.fail = True
    with pytest.raises(OSError):
        async with store.transaction() as tx:
            tx.update("/r/a", {"Value": 2})
            tx.create("/r/b", doc("/r/b"))
    assert store.doc("/r/a")["Value"] == 1
    assert store.get("/r/a").etag == etag
    assert store.get("/r/b") is None
    assert store.seq == seq
    assert len(calls) == 1
    backend.fail = False
    async with store.transaction() as tx:
        tx.update("/r/a", {"Value": 3})
    assert store.doc("/r/a")["Value"] == 3
    assert store.seq == seq + 1


# -- revisions and ETags ----------------------------------------------------------------------


async def test_revision_bumps_only_on_real_change(store):
    async with store.transaction() as tx:
        tx.create("/r/a", doc("/r/a", Value=1))
    entry = store.get("/r/a")
    rev, etag, seq = entry.revision, entry.etag, store.seq
    assert etag == f'"{rev}"'
    assert entry.doc.get(ETAG, etag) == etag
    # Writing the same content: no change, no new revision, no change-log entry.
    async with store.transaction() as tx:
        tx.put("/r/a", plain(store.doc("/r/a")))
        tx.update("/r/a", {"Value": 1})
    assert store.get("/r/a").revision == rev
    assert store.get("/r/a").etag == etag
    assert store.seq == seq
    assert store.changes_since(seq) == []
    # A real change.
    async with store.transaction() as tx:
        tx.update("/r/a", {"Value": 2})
    entry = store.get("/r/a")
    assert entry.revision == seq + 1 == store.seq
    assert entry.etag != etag
    assert entry.doc.get(ETAG, entry.etag) == entry.etag
    # A change of private data alone is a change too.
    async with store.transaction() as tx:
        tx.set_private("/r/a", {"secret": "new"})
    assert store.get("/r/a").revision == seq + 2
    assert store.get("/r/a").private == {"secret": "new"}


async def test_revisions_are_per_document(store):
    async with store.transaction() as tx:
        tx.create("/r/a", doc("/r/a"))
        tx.create("/r/b", doc("/r/b"))
    a, b = store.get("/r/a").revision, store.get("/r/b").revision
    assert a != b
    async with store.transaction() as tx:
        tx.update("/r/b", {"x": 1})
    assert store.get("/r/a").revision == a
    assert store.get("/r/b").revision > b


async def test_body_bytes_match_document(store):
    async with store.transaction() as tx:
        tx.create("/r/a", doc("/r/a", Value="\u00e9"))
    entry = store.get("/r/a")
    assert orjson.loads(entry.body) == entry.doc
    async with store.transaction() as tx:
        tx.update("/r/a", {"Value": "changed"})
    assert orjson.loads(store.get("/r/a").body)["Value"] == "changed"


# -- collections ---------------------------------------------------------------------------


async def test_collection_members_maintained(store):
    async with store.transaction() as tx:
        tx.create("/c", collection("/c"))
        tx.create("/c/1", doc("/c/1"))
    assert store.members("/c") == ["/c/1"]
    assert store.doc("/c")["Members@odata.count"] == 1
    async with store.transaction() as tx:
        tx.create("/c/2", doc("/c/2"))
        tx.create("/c/3", doc("/c/3"))
    assert store.members("/c") == ["/c/1", "/c/2", "/c/3"]
    assert store.doc("/c")["Members@odata.count"] == 3
    collection_rev = store.get("/c").revision
    async with store.transaction() as tx:
        tx.delete("/c/2")
    assert store.members("/c") == ["/c/1", "/c/3"]
    assert store.doc("/c")["Members@odata.count"] == 2
    assert store.get("/c").revision > collection_rev
    # Non-collection parents are not touched.
    async with store.transaction() as tx:
        tx.create("/c/1/sub", doc("/c/1/sub"))
    assert "Members" not in store.doc("/c/1")
    assert store.members("/c") == ["/c/1", "/c/3"]


async def test_members_of_non_collection_is_empty(store):
    async with store.transaction() as tx:
        tx.create("/r/a", doc("/r/a"))
    assert store.members("/r/a") == []
    assert store.members("/nothing") == []


async def test_subtree_delete(store):
    async with store.transaction() as tx:
        tx.create("/c", collection("/c"))
        tx.create("/c/a", doc("/c/a"))
        tx.create("/c/a/b", doc("/c/a/b"))
        tx.create("/c/a/b/c", doc("/c/a/b/c"))
        tx.create("/c/ab", doc("/c/ab"))  # shares a string prefix, not a path prefix
    seq = store.seq
    async with store.transaction() as tx:
        tx.create("/c/a/b/staged", doc("/c/a/b/staged"))
        tx.delete("/c/a")
        assert not tx.exists("/c/a/b/c")
        assert not tx.exists("/c/a/b/staged")
    for uri in ("/c/a", "/c/a/b", "/c/a/b/c", "/c/a/b/staged"):
        assert store.get(uri) is None, uri
    assert store.get("/c/ab") is not None
    assert store.members("/c") == ["/c/ab"]
    deleted = {c.uri for c in store.changes_since(seq) if c.op == "delete"}
    assert deleted == {"/c/a", "/c/a/b", "/c/a/b/c"}


# -- change log ----------------------------------------------------------------------------


async def test_change_log(store):
    start = store.seq
    async with store.transaction("alice") as tx:
        tx.create("/r/a", doc("/r/a", Value=1, Other="x"))
    async with store.transaction("bob") as tx:
        tx.update("/r/a", {"Value": 2})
    async with store.transaction(None) as tx:
        tx.delete("/r/a")
    changes = store.changes_since(start)
    assert [(c.seq, c.uri, c.op, c.actor) for c in changes] == [
        (start + 1, "/r/a", "create", "alice"),
        (start + 2, "/r/a", "update", "bob"),
        (start + 3, "/r/a", "delete", None),
    ]
    assert changes[1].properties == ("Value",)
    assert all(c.odata_type == "#Thing.v1_0_0.Thing" for c in changes)
    assert all(isinstance(c.time, float) and c.time > 0 for c in changes)
    assert store.changes_since(start + 2) == changes[2:]
    assert store.changes_since(store.seq) == []
    assert store.changes_since(store.seq + 5) == []


async def test_update_records_removed_and_added_properties(store):
    async with store.transaction() as tx:
        tx.create("/r/a", doc("/r/a", Gone=1, Same=2))
    seq = store.seq
    async with store.transaction() as tx:
        d = tx.get("/r/a")
        del d["Gone"]
        d["New"] = 3
        tx.put("/r/a", d)
    (change,) = store.changes_since(seq)
    assert change.properties == ("Gone", "New")


async def test_change_log_window(tmp_path):
    store = Store(MemoryBackend(), change_retention=3)
    await store.open()
    for i in range(6):
        async with store.transaction() as tx:
            tx.put("/r/a", doc("/r/a", N=i))
    assert store.seq == 6
    assert [c.seq for c in store.changes_since(3)] == [4, 5, 6]
    assert store.changes_since(1) is None  # older than the retained window
    assert store.changes_since(0) is None


# -- subscribers ---------------------------------------------------------------------------


async def test_subscribers_after_commit_only(store):
    seen: list[tuple[list[Change], dict | None]] = []

    def subscriber(changes):
        # Called after the commit: the store already shows the change.
        seen.append((changes, store.doc("/r/a")))

    unsubscribe = store.subscribe(subscriber)
    async with store.transaction() as tx:
        tx.create("/r/a", doc("/r/a", Value=1))
        assert seen == []
    assert len(seen) == 1
    changes, visible = seen[0]
    assert [c.op for c in changes] == ["create"]
    assert visible is not None and visible["Value"] == 1
    # No notification for a failed or empty transaction.
    with pytest.raises(ValueError):
        async with store.transaction() as tx:
            tx.update("/r/a", {"Value": 2})
            raise ValueError
    async with store.transaction() as tx:
        tx.update("/r/a", {"Value": 1})
    assert len(seen) == 1
    # One notification per transaction with all its changes.
    async with store.transaction() as tx:
        tx.update("/r/a", {"Value": 5})
        tx.create("/r/b", doc("/r/b"))
    assert len(seen) == 2
    assert [(c.uri, c.op) for c in seen[1][0]] == [("/r/a", "update"), ("/r/b", "create")]
    assert seen[1][1]["Value"] == 5
    unsubscribe()
    async with store.transaction() as tx:
        tx.update("/r/a", {"Value": 6})
    assert len(seen) == 2


async def test_sqlite_subscriber_sees_durable_data(tmp_path):
    path = tmp_path / "s.db"
    store = Store(SqliteBackend(path))
    await store.open()
    on_disk: list[bytes | None] = []

    def subscriber(changes):
        conn = sqlite3.connect(path)
        try:
            row = conn.execute("SELECT doc FROM documents WHERE uri = ?", ("/r/a",)).fetchone()
        finally:
            conn.close()
        on_disk.append(row[0] if row else None)

    store.subscribe(subscriber)
    async with store.transaction() as tx:
        tx.create("/r/a", doc("/r/a", Value=1))
    assert on_disk and on_disk[0] is not None
    assert orjson.loads(on_disk[0])["Value"] == 1
    await store.close()


# -- persistence ---------------------------------------------------------------------------


async def _populate(store: Store) -> None:
    async with store.transaction("setup") as tx:
        tx.create("/c", collection("/c"))
        tx.create("/c/1", doc("/c/1", Value=1), {"password": "scrypt$..."})
        tx.create("/c/2", doc("/c/2", Value=2))
        tx.create("/c/3", doc("/c/3", Value=3))
    async with store.transaction("edit") as tx:
        tx.update("/c/2", {"Value": 22})
        tx.delete("/c/3")
        tx.set_private("/c/2", {"token": "digest"})


async def test_sqlite_reopen_keeps_everything(tmp_path: Path):
    path = tmp_path / "state.sqlite3"
    first = Store(SqliteBackend(path))
    await first.open()
    await _populate(first)
    snapshot = {u: (first.get(u).doc, first.get(u).private, first.get(u).revision)
                for u in first.uris()}
    seq = first.seq
    log = first.changes_since(0)
    await first.close()

    second = Store(SqliteBackend(path))
    await second.open()
    try:
        assert second.seq == seq
        assert {u: (second.get(u).doc, second.get(u).private, second.get(u).revision)
                for u in second.uris()} == snapshot
        assert second.get("/c/3") is None
        assert second.members("/c") == ["/c/1", "/c/2"]
        assert second.get("/c/1").private == {"password": "scrypt$..."}
        assert second.get("/c/2").private == {"token": "digest"}
        assert second.get("/c/2").etag == f'"{second.get("/c/2").revision}"'
        assert [(c.seq, c.uri, c.op, c.actor, c.properties) for c in second.changes_since(0)] \
            == [(c.seq, c.uri, c.op, c.actor, c.properties) for c in log]
        # Numbering continues after the last change.
        async with second.transaction() as tx:
            tx.update("/c/1", {"Value": 100})
        assert second.seq == seq + 1
        assert second.get("/c/1").revision == seq + 1
    finally:
        await second.close()

    third = Store(SqliteBackend(path))
    await third.open()
    try:
        assert third.doc("/c/1")["Value"] == 100
        assert third.seq == seq + 1
    finally:
        await third.close()


async def test_sqlite_failed_transaction_not_persisted(tmp_path: Path):
    path = tmp_path / "state.sqlite3"
    store = Store(SqliteBackend(path))
    await store.open()
    async with store.transaction() as tx:
        tx.create("/r/a", doc("/r/a", Value=1))
    with pytest.raises(RuntimeError):
        async with store.transaction() as tx:
            tx.update("/r/a", {"Value": 2})
            raise RuntimeError
    await store.close()
    reopened = Store(SqliteBackend(path))
    await reopened.open()
    try:
        assert reopened.doc("/r/a")["Value"] == 1
        assert reopened.seq == 1
    finally:
        await reopened.close()


async def test_sqlite_write_is_atomic(tmp_path: Path):
    """A failure in the middle of a batch leaves none of the batch on disk."""
    from redfish_service.store.backend import StoredDocument

    path = tmp_path / "state.sqlite3"
    backend = SqliteBackend(path)
    store = Store(backend)
    await store.open()
    async with store.transaction() as tx:
        tx.create("/r/a", doc("/r/a", Value=1))
    good = (Change(2, "/r/a", "update", None, 1.0, None, ("Value",)),
            StoredDocument("/r/a", doc("/r/a", Value=2), None, 2))
    bad = (Change(3, "/r/b", "create", None, 1.0, None, ()),
           StoredDocument("/r/b", doc("/r/b", Bad={1, 2}), None, 3))  # not serializable
    with pytest.raises(TypeError):
        await backend.write([good, bad])
    await store.close()
    reopened = Store(SqliteBackend(path))
    await reopened.open()
    try:
        assert reopened.doc("/r/a")["Value"] == 1
        assert reopened.get("/r/b") is None
        assert reopened.seq == 1
        assert [c.seq for c in reopened.changes_since(0)] == [1]
    finally:
        await reopened.close()


async def test_notes_are_kept_with_changes_and_old_state_is_upgraded(tmp_path: Path):
    """``Store.describe`` notes each change at commit time, while the documents before and
    after are at hand; the note is written with the change and read back after a
    restart, also from a state file made before the change log had notes."""
    path = tmp_path / "state.sqlite3"
    conn = sqlite3.connect(path)  # the change log as it was before notes
    conn.executescript("""
        CREATE TABLE documents (uri TEXT PRIMARY KEY, doc BLOB NOT NULL, private BLOB,
                                revision INTEGER NOT NULL);
        CREATE TABLE changes (seq INTEGER PRIMARY KEY, uri TEXT NOT NULL, op TEXT NOT NULL,
                              actor TEXT, time REAL NOT NULL, odata_type TEXT,
                              properties TEXT NOT NULL);
        INSERT INTO changes VALUES (1, '/r/a', 'create', NULL, 1.0, NULL, '[]');
    """)
    conn.execute("INSERT INTO documents VALUES ('/r/a', ?, NULL, 1)",
                 (orjson.dumps(doc("/r/a", Value=1)),))
    conn.commit()
    conn.close()
    store = Store(SqliteBackend(path))
    await store.open()
    store.describe = lambda c: (c.before or {}).get("Value") and (
        "went", [c.before["Value"], c.after["Value"]])
    async with store.transaction() as tx:
        tx.update("/r/a", {"Value": 2})
        tx.create("/r/b", doc("/r/b"))
    live = store.changes_since(0)
    await store.close()
    again = Store(SqliteBackend(path))
    await again.open()
    try:
        assert [c.note for c in live] == [None, ("went", [1, 2]), None]
        assert [(c.seq, c.note) for c in again.changes_since(0)] == [
            (1, None), (2, ("went", [1, 2])), (3, None)]
        assert again.changes_since(0)[1].after is None  # the documents are not kept
    finally:
        await again.close()


async def test_memory_backend_keeps_nothing():
    backend = MemoryBackend()
    store = Store(backend)
    await store.open()
    async with store.transaction() as tx:
        tx.create("/r/a", doc("/r/a"))
    fresh = Store(backend)
    await fresh.open()
    assert len(fresh) == 0 and fresh.seq == 0


def test_backend_interface_is_abstract():
    with pytest.raises(NotImplementedError):
        asyncio.run(Backend().load())
