"""The resource tree: JSON documents keyed by ``@odata.id``, changed only in transactions.

* Reads are from memory and never wait (``get``, ``doc``, ``members``).
* Writes go through ``async with store.transaction(actor) as tx``: the transaction stages
  its changes (reading its own writes), and on a clean exit persists them durably through
  the backend, then applies them in memory, then tells subscribers. An exception inside the
  block discards everything.
* Every change gets the next sequence number; a document's revision is the sequence number
  of the change that last touched it, so its strong ETag survives restarts. The store writes
  that ETag into the document as ``@odata.etag``.
* Creating a document under a collection document (one with ``Members``) adds the member
  reference; deleting removes it and the whole subtree below the deleted URI.
* Each document may carry *private* data (password hashes, token digests) that is persisted
  with it but never served.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from .backend import Backend, MemoryBackend, StoredDocument

Op = Literal["create", "update", "delete"]
ETAG = "@odata.etag"  # kept by the store in every document, equal to the ETag header
_ODATA_TYPE = re.compile(rb'"@odata\.type":"([^"]+)"')


def deep_copy(value: Any) -> Any:
    return orjson.loads(orjson.dumps(value))


class Entry:
    """One document at one revision. Loaded from disk it is kept as its JSON bytes and
    parsed on first use: most documents of a large pool (ports, PCIe functions) are only
    ever served whole, and bytes take a fraction of the memory of parsed objects."""

    __slots__ = ("_bytes", "_doc", "private", "revision")

    def __init__(self, doc: dict[str, Any] | bytes, revision: int,
                 private: dict[str, Any] | None = None) -> None:
        if isinstance(doc, bytes):
            self._doc: dict[str, Any] | None = None
            self._bytes: bytes | None = doc
        else:
            self._doc, self._bytes = doc, None
        self.revision = revision
        self.private = private

    @property
    def doc(self) -> dict[str, Any]:
        """The document (shared: callers must not change it)."""
        if self._doc is None:
            assert self._bytes is not None
            self._doc = orjson.loads(self._bytes)
        return self._doc

    @property
    def etag(self) -> str:
        return f'"{self.revision}"'

    @property
    def body(self) -> bytes:
        """The serialized document, computed once per revision."""
        if self._bytes is None:
            self._bytes = orjson.dumps(self._doc)
        return self._bytes

    def __repr__(self) -> str:
        return f"Entry(revision={self.revision})"


@dataclass(frozen=True, slots=True)
class Change:
    seq: int
    uri: str
    op: Op
    actor: str | None
    time: float
    odata_type: str | None
    properties: tuple[str, ...] = ()  # top-level properties an update changed
    # What a subscriber (Store.describe) made of the change at commit time, from the
    # documents before and after; persisted with it, so it survives a restart that
    # loses ``before`` and ``after``. JSON values only.
    note: tuple[Any, ...] | None = None
    # The committed document after the change (None for a delete) and before it (None for
    # a create): shared references, never copies, for the subscribers called at commit
    # only (neither the retained window nor a change log reloaded after a restart has
    # them), so readers must treat them as optional.
    after: dict[str, Any] | None = field(default=None, compare=False, repr=False)
    before: dict[str, Any] | None = field(default=None, compare=False, repr=False)

    def without_documents(self) -> Change:
        """The change as the retained window and the log on disk keep it."""
        return Change(self.seq, self.uri, self.op, self.actor, self.time, self.odata_type,
                      self.properties, self.note)


Subscriber = Callable[[list[Change]], None]


class StoreError(Exception):
    """A programming error in a transaction (create over an existing URI, ...)."""


class Transaction:
    def __init__(self, store: Store, actor: str | None) -> None:
        self._store = store
        self.actor = actor
        # uri -> (doc or None for deleted, private or None)
        self._staged: dict[str, tuple[dict[str, Any] | None, dict[str, Any] | None]] = {}
        self._order: list[str] = []
        self.writes = 0  # staging operations so far: whether a step wrote anything

    # -- reads (see own writes) -------------------------------------------------------
    def get(self, uri: str) -> dict[str, Any] | None:
        """A private copy of the document as this transaction sees it."""
        if uri in self._staged:
            doc = self._staged[uri][0]
            return deep_copy(doc) if doc is not None else None
        entry = self._store.get(uri)
        return deep_copy(entry.doc) if entry else None

    def peek(self, uri: str) -> dict[str, Any] | None:
        """The document as this transaction sees it, not copied: for reading only (whole
        pools are scanned per composition; a copy per block would be most of its cost)."""
        if uri in self._staged:
            return self._staged[uri][0]
        return self._store.doc(uri)

    def staged(self, parent: str | None = None) -> list[str]:
        """The URIs this transaction created, changed or deleted so far, in order; with
        ``parent``, only those directly below it (the members of a collection)."""
        return [u for u in self._order if parent is None or u.rsplit("/", 1)[0] == parent]

    def private(self, uri: str) -> dict[str, Any] | None:
        if uri in self._staged:
            priv = self._staged[uri][1]
            return deep_copy(priv) if priv is not None else None
        entry = self._store.get(uri)
        return deep_copy(entry.private) if entry and entry.private is not None else None

    def exists(self, uri: str) -> bool:
        if uri in self._staged:
            return self._staged[uri][0] is not None
        return self._store.get(uri) is not None

    def _staged_copy(self, uri: str) -> dict[str, Any] | None:
        """This transaction's own copy of a document, staged, to change in place: copying a
        large collection once per added member would make bulk creation quadratic."""
        self.writes += 1
        if uri in self._staged:
            return self._staged[uri][0]
        entry = self._store.get(uri)
        if entry is None:
            return None
        private = deep_copy(entry.private) if entry.private is not None else None
        self._stage(uri, deep_copy(entry.doc), private)
        return self._staged[uri][0]

    # -- writes -----------------------------------------------------------------------
    def _stage(self, uri: str, doc: dict[str, Any] | None, private: dict[str, Any] | None) -> None:
        self.writes += 1
        if uri not in self._staged:
            self._order.append(uri)
        self._staged[uri] = (doc, private)

    def create(
        self, uri: str, doc: dict[str, Any], private: dict[str, Any] | None = None,
        *, member: bool = True, owned: bool = False,
    ) -> None:
        """Create a document; under a collection it becomes a member unless ``member`` is
        False (a collection's capabilities object lives beside its members, not among).
        ``owned``: the caller hands ``doc`` over and will not touch it again, so it is not
        copied (bulk reconciliation of a large pool would otherwise hold two copies)."""
        if self.exists(uri):
            raise StoreError(f"{uri} exists")
        if doc.get("@odata.id") != uri:
            raise StoreError(f"document @odata.id {doc.get('@odata.id')!r} is not {uri}")
        self._stage(uri, doc if owned else deep_copy(doc),
                    deep_copy(private) if private is not None else None)
        parent_uri = uri.rsplit("/", 1)[0]
        parent = self._staged_copy(parent_uri) if member else None
        if parent is not None and isinstance(parent.get("Members"), list):
            parent["Members"].append({"@odata.id": uri})
            parent["Members@odata.count"] = len(parent["Members"])

    def put(self, uri: str, doc: dict[str, Any], private: dict[str, Any] | None = None,
            *, owned: bool = False) -> None:
        """Replace (or create) a document; ``private`` None keeps the current private data.
        ``owned`` as for :meth:`create`."""
        if not self.exists(uri):
            self.create(uri, doc, private, owned=owned)
            return
        if private is None:
            private = self.private(uri)
        self._stage(uri, doc if owned else deep_copy(doc),
                    deep_copy(private) if private is not None else None)

    def update(self, uri: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Set top-level properties of an existing document; returns the new document."""
        doc = self.get(uri)
        if doc is None:
            raise StoreError(f"{uri} does not exist")
        doc.update(deep_copy(changes))
        self.put(uri, doc)
        return doc

    def set_private(self, uri: str, private: dict[str, Any]) -> None:
        doc = self.get(uri)
        if doc is None:
            raise StoreError(f"{uri} does not exist")
        self._stage(uri, doc, deep_copy(private))

    def delete(self, uri: str) -> None:
        if not self.exists(uri):
            raise StoreError(f"{uri} does not exist")
        prefix = uri + "/"
        below = [u for u in self._store.uris_under(prefix)]
        below += [u for u in self._staged if u.startswith(prefix)]
        for child in sorted(set(below), key=len, reverse=True):
            if self.exists(child):
                self._stage(child, None, None)
        self._stage(uri, None, None)
        parent_uri = uri.rsplit("/", 1)[0]
        parent = self._staged_copy(parent_uri)
        if parent is not None and isinstance(parent.get("Members"), list):
            parent["Members"] = [m for m in parent["Members"]
                                 if not isinstance(m, dict) or m.get("@odata.id") != uri]
            parent["Members@odata.count"] = len(parent["Members"])

    # -- commit -----------------------------------------------------------------------
    def _diff(self) -> list[tuple[str, Op, dict | None, dict | None, tuple[str, ...]]]:
        out = []
        for uri in self._order:
            doc, private = self._staged[uri]
            before = self._store.get(uri)
            if doc is None:
                if before is not None:
                    out.append((uri, "delete", None, None, ()))
                continue
            if before is None:
                out.append((uri, "create", doc, private, ()))
                continue
            keys = (set(doc) | set(before.doc)) - {ETAG}
            changed = tuple(sorted(k for k in keys if doc.get(k) != before.doc.get(k)))
            if not changed and private == before.private:
                continue
            out.append((uri, "update", doc, private, changed))
        return out


class Store:
    """Documents in memory, persisted through a :class:`Backend`."""

    def __init__(self, backend: Backend | None = None, change_retention: int = 10_000) -> None:
        self._backend = backend or MemoryBackend()
        self._entries: dict[str, Entry] = {}
        self._lock = asyncio.Lock()
        self._subscribers: list[Subscriber] = []
        self._recent: deque[Change] = deque(maxlen=change_retention)
        # Set by the event hub: a change's note (Change.note), computed at commit.
        self.describe: Callable[[Change], tuple[Any, ...] | None] | None = None
        self.seq = 0

    # -- lifecycle --------------------------------------------------------------------
    def odata_types(self) -> set[str]:
        """Every ``@odata.type`` the documents hold, nested ones included, read from the
        serialized form so that nothing has to be parsed."""
        found: set[bytes] = set()
        for entry in self._entries.values():
            # the bytes if kept, else serialized for this search only (not cached: that
            # would keep a second copy of every parsed document)
            raw = entry._bytes if entry._bytes is not None else orjson.dumps(entry._doc)
            found.update(_ODATA_TYPE.findall(raw))
        return {t.decode() for t in found}

    async def open(self) -> None:
        loaded, seq = await self._backend.load()
        self._entries = {
            d.uri: Entry(d.doc, d.revision, d.private) for d in loaded
        }
        self.seq = seq
        self._recent.extend(await self._backend.recent_changes(self._recent.maxlen or 0))

    async def close(self) -> None:
        async with self._lock:
            await self._backend.close()

    # -- reads ------------------------------------------------------------------------
    def get(self, uri: str) -> Entry | None:
        return self._entries.get(uri)

    def doc(self, uri: str) -> dict[str, Any] | None:
        entry = self._entries.get(uri)
        return entry.doc if entry else None

    def __contains__(self, uri: str) -> bool:
        return uri in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def uris(self) -> Iterator[str]:
        return iter(list(self._entries))

    def uris_under(self, prefix: str) -> list[str]:
        return [u for u in self._entries if u.startswith(prefix)]

    def members(self, collection_uri: str) -> list[str]:
        doc = self.doc(collection_uri)
        if not doc:
            return []
        listed = doc.get("Members")
        if not isinstance(listed, list):
            return []
        # a served mockup's collection may hold anything: only well-formed links count
        return [m["@odata.id"] for m in listed
                if isinstance(m, dict) and isinstance(m.get("@odata.id"), str)]

    def changes_since(self, seq: int) -> list[Change] | None:
        """Changes after ``seq`` from the retained window; None if ``seq`` is too old."""
        if seq >= self.seq:
            return []
        if not self._recent or self._recent[0].seq > seq + 1:
            return None
        return [c for c in self._recent if c.seq > seq]

    # -- writes -----------------------------------------------------------------------
    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        self._subscribers.append(subscriber)
        return lambda: self._subscribers.remove(subscriber)

    def transaction(self, actor: str | None = None) -> _TransactionContext:
        return _TransactionContext(self, actor)

    async def _commit(self, tx: Transaction) -> list[Change]:
        diff = tx._diff()
        if not diff:
            return []
        now = time.time()
        changes: list[Change] = []
        stored: list[tuple[Change, StoredDocument | None]] = []
        seq = self.seq
        for uri, op, doc, private, props in diff:
            seq += 1
            before = self._entries.get(uri)
            odata_type = (doc or (before.doc if before else {})).get("@odata.type")
            change = Change(seq, uri, op, tx.actor, now, odata_type, props, after=doc,
                            before=before.doc if before else None)
            if self.describe is not None and (note := self.describe(change)) is not None:
                change = dataclasses.replace(change, note=note)
            changes.append(change)
            if doc is not None:
                doc[ETAG] = f'"{seq}"'
            stored.append((change, StoredDocument(uri, doc, private, seq)
                           if doc is not None else None))
        # Durable first: if this raises, memory is untouched and the caller sees the error.
        await self._backend.write(stored)
        self.seq = seq
        for change, sd in stored:
            if sd is None:
                self._entries.pop(change.uri, None)
            else:
                self._entries[change.uri] = Entry(sd.doc, sd.revision, sd.private)
        # Retained without the documents: what they tell is in ``note`` by now, and the
        # window would otherwise keep thousands of superseded documents alive.
        self._recent.extend(c.without_documents() for c in changes)
        for subscriber in list(self._subscribers):
            subscriber(changes)
        return changes


class _TransactionContext:
    def __init__(self, store: Store, actor: str | None) -> None:
        self._store = store
        self._actor = actor
        self._tx: Transaction | None = None
        self.changes: list[Change] = []

    async def __aenter__(self) -> Transaction:
        await self._store._lock.acquire()
        self._tx = Transaction(self._store, self._actor)
        return self._tx

    async def __aexit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None or self._tx is None:
            self._store._lock.release()
            return
        # The commit runs to its end even if the awaiting request is cancelled (a client
        # that hangs up), so that disk and memory never disagree; it releases the lock.
        commit = asyncio.ensure_future(self._commit_and_release(self._tx))
        self.changes = await asyncio.shield(commit)

    async def _commit_and_release(self, tx: Transaction) -> list[Change]:
        try:
            return await self._store._commit(tx)
        finally:
            self._store._lock.release()
