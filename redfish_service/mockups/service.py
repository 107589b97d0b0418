"""Serving a mockup live: its documents seed the store at first start, the service's own
parts are layered on at every start.

* Replaced: the subtrees the service itself runs (``SERVICE_OWNED``: AccountService,
  SessionService, TaskService, EventService). A mockup's accounts have no passwords, its
  sessions no tokens, its tasks no operations behind them and its event subscriptions
  destinations we must not post to; ours are what the security, task and event code
  work on. The mockup's documents there are not loaded.
* Merged: every other collection (Managers gets the service's own ``Composer`` manager
  beside the mockup's; Registries and JsonSchemas get the service's files), and the service
  root: the service's properties win, the mockup's other properties (links to its
  EventService, UpdateService, ...) are kept, and the service's links to documents that do
  not exist (no CompositionService in the mockup) are dropped.
* The mockup's root as loaded is kept as private data of the service root, so later starts
  need not read the folder again: the state directory is the service from then on.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from ..resources import uris
from ..store import Store
from . import check, loader

log = logging.getLogger("redfish_service")

# The EventService too: a mockup's subscriptions name destinations that must never get
# our events.
SERVICE_OWNED = (uris.ACCOUNT_SERVICE, uris.SESSION_SERVICE, uris.TASK_SERVICE,
                 "/redfish/v1/EventService")
PRIVATE_KEY = "mockup"


class MockupError(Exception):
    """The state directory cannot serve this mockup."""


def service_owned(uri: str) -> bool:
    return any(uri == top or uri.startswith(top + "/") for top in SERVICE_OWNED)


def mockup_info(store: Store) -> dict[str, Any] | None:
    """What the state directory recorded about the mockup it was seeded from, if any."""
    entry = store.get(uris.SERVICE_ROOT)
    if entry is None or not entry.private:
        return None
    return entry.private.get(PRIVATE_KEY)


async def seed(store: Store, path: Path | None) -> bool:
    """Before the bootstrap: load the mockup into an empty store. Returns whether the
    service is a mockup service (seeded now or at an earlier start)."""
    info = mockup_info(store)
    source = str(await asyncio.to_thread(path.resolve)) if path is not None else None
    if info is not None:
        if source is not None and info["source"] != source:
            log.warning("the state directory was seeded from another mockup; serving it",
                        extra={"seeded_from": info["source"], "mockup": str(path)})
        log.info("serving mockup", extra={"source": info["source"],
                                          "problems": info["summary"]})
        return True
    if path is None:
        return False
    if len(store):
        raise MockupError("the state directory holds a service that was not seeded from a "
                          "mockup; give --mockup an empty --state-dir")
    mockup = await asyncio.to_thread(loader.load, path)
    schemas = check.SchemaSet.from_env()
    problems = await asyncio.to_thread(check.check, mockup, schemas)
    summary = check.summary(problems)
    root = mockup.documents.get(uris.SERVICE_ROOT, {})
    info = {"source": source, "root": root, "summary": summary,
            "documents": len(mockup.documents)}
    async with store.transaction("mockup") as tx:
        for uri, doc in mockup.documents.items():
            if service_owned(uri):
                continue
            private = {PRIVATE_KEY: info} if uri == uris.SERVICE_ROOT else None
            tx.create(uri, doc, private, member=False, owned=True)
        if not tx.exists(uris.SERVICE_ROOT):  # a mockup without a root document
            tx.create(uris.SERVICE_ROOT, {"@odata.id": uris.SERVICE_ROOT},
                      {PRIVATE_KEY: info}, member=False)
    log.warning(f"mockup {path}: {len(mockup.documents)} documents, {summary}"
                + ("" if schemas else " (schemas not checked: set REDFISH_JSON_SCHEMA_DIR)")
                + "; details: redfish-composer mockup check",
                extra={"mockup": str(path), "problems": summary})
    return True


async def layer(store: Store) -> None:
    """After the bootstrap (which wrote the service's own root): merge the mockup's root."""
    info = mockup_info(store)
    if info is None:
        return
    async with store.transaction("mockup") as tx:
        ours = tx.get(uris.SERVICE_ROOT) or {}
        merged = {k: v for k, v in ours.items() if not _dangling(tx, v)}
        for key, value in info["root"].items():
            if key == "Links" and isinstance(value, dict):
                links = {k: v for k, v in merged.get("Links", {}).items()
                         if not _dangling(tx, v)}
                merged["Links"] = {**value, **links}
            elif key not in merged and key != "@odata.etag":
                merged[key] = value
        merged.pop("@odata.etag", None)
        ours.pop("@odata.etag", None)
        if merged != ours:
            tx.put(uris.SERVICE_ROOT, merged)


def _dangling(tx, value: Any) -> bool:
    """A bare link to a document that does not exist."""
    if isinstance(value, dict) and set(value) == {"@odata.id"} \
            and isinstance(value["@odata.id"], str):
        return not tx.exists(loader.link_target(value["@odata.id"]))
    return False
