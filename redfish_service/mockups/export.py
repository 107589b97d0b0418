"""Writing the tree of a state directory as a DSP2043 mockup (short layout).

The export reads the SQLite state directly (a running service may keep running: WAL lets
a reader see the last committed revision), so it needs no credentials and sees exactly the
documents, not a client's view of them. Each document is written as canonical JSON:
sorted keys, two-space indentation, a final newline, without ``@odata.etag`` (revisions are
the exporting service's). Private data (password hashes, token digests) is never written.
Sessions and tasks belong to the running service and are left out (their collections are
written empty). ``$metadata/index.xml`` and ``odata/index.json`` are derived from the tree
as the service derives them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from ..protocol import metadata
from ..resources import uris
from ..store import SqliteBackend, Store

STATE_FILE = "state.sqlite3"  # as in app.STATE_FILE (not imported: app pulls in the service)
EPHEMERAL = (uris.SESSIONS, uris.TASKS)  # collections written without their members


class ExportError(Exception):
    pass


def canonical(doc: dict[str, Any]) -> bytes:
    clean = {k: v for k, v in doc.items() if k != "@odata.etag"}
    return orjson.dumps(clean, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def path_of(out: Path, uri: str) -> Path:
    rel = uri.rstrip("/")[len(uris.ROOT):].lstrip("/")
    parts = [p for p in rel.split("/") if p]
    if any(p in (".", "..") or "\\" in p for p in parts):
        raise ExportError(f"{uri} cannot be written as a path")
    return out.joinpath(*parts, "index.json")


def documents(store: Store) -> dict[str, dict[str, Any]]:
    """The documents an export holds, by URI."""
    out: dict[str, dict[str, Any]] = {}
    for uri in sorted(store.uris()):
        if not (uri == uris.SERVICE_ROOT or uri.startswith(uris.ROOT + "/")):
            continue
        if any(uri.startswith(c + "/") for c in EPHEMERAL):
            continue
        doc = store.doc(uri) or {}
        if uri in EPHEMERAL and isinstance(doc.get("Members"), list):
            doc = {**doc, "Members": [], "Members@odata.count": 0}
        out[uri] = doc
    return out


def write(store: Store, out: Path) -> int:
    """Write the tree under ``out`` (which must be empty or absent); the document count."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExportError(f"{out} exists and is not an empty directory")
    docs = documents(store)
    for uri, doc in docs.items():
        file = path_of(out, uri)
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(canonical(doc))
    (out / "$metadata").mkdir(parents=True, exist_ok=True)
    (out / "$metadata" / "index.xml").write_bytes(metadata.metadata_xml(store))
    (out / "odata").mkdir(exist_ok=True)
    service = metadata.service_document(store)
    service["value"].sort(key=lambda v: (v["name"] != "Service", v["name"]))
    (out / "odata" / "index.json").write_bytes(canonical(service))
    return len(docs)


async def export_state(state_dir: Path, out: Path) -> int:
    db = state_dir / STATE_FILE
    if not db.is_file():
        raise ExportError(f"{state_dir} holds no service state ({STATE_FILE})")
    store = Store(SqliteBackend(db))
    await store.open()
    try:
        return write(store, out)
    finally:
        await store.close()
