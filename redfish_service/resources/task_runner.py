"""Long-running operations: 202 Accepted with a task monitor (DSP0266 "Asynchronous
operations"), all in this one place; the dispatcher hands it each operation.

* :meth:`TaskRunner.run` starts the operation as an asyncio task and waits for it up to
  ``Settings.task_threshold_s``. Done by then: its response is the answer, as if no task
  existed. Still running: a Task resource is committed (``Running``) and the client gets
  ``202``, ``Location: <task monitor>``, ``Retry-After`` and the Task; the operation goes
  on (the composer's operations are shielded anyway), and when it ends its final response
  (status, headers, body) is kept in the Task's private data and the Task moves to
  ``Completed`` or ``Exception``.
* The task monitor (``/redfish/v1/TaskService/TaskMonitors/<random>``) answers 202 while
  the operation runs, then the original operation's final response. It belongs to the
  account that started the operation (``ConfigureManager`` may read any); others get 404.
  ``TaskMonitorAutoExpirySeconds`` after its first read of a finished task it is gone
  (404). It cannot cancel: the operations are all-or-nothing and shielded, so ``DELETE``
  answers 405.
* Tasks are store documents, so they survive a restart; one that was running when the
  service stopped is marked ``Exception`` at start (the composer's recovery has put the
  blocks back by then). At most ``Settings.max_tasks`` are kept (the oldest finished ones
  are overwritten, ``CompletedTaskOverWritePolicy: Oldest``), and finished ones older
  than ``TaskAutoDeleteTimeoutMinutes`` are deleted.
* Secrets: the request's headers are never recorded, and a body holding anything like a
  password is not recorded either (``HidePayload``). The final response is kept without
  ``X-Auth-Token`` / ``Set-Cookie``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from ..config import Settings
from ..protocol.errors import RedfishError, not_found
from ..protocol.messages import message
from ..protocol.render import error_response, json_response
from ..store import Store, Transaction
from . import uris
from .context import Ctx
from .registries import ensure_schema_files
from .tasks import TASK_EVENT, TASK_MONITORS, TASK_TYPE, is_finished, task_service_actions

log = logging.getLogger("redfish_service.tasks")

RETRY_AFTER_S = 1
STOP_GRACE_S = 10.0
REAP_INTERVAL_S = 30.0
MONITOR_METHODS = ["GET", "HEAD"]
# Keys of a request body that make it secret (compared in lower case, as substrings).
_SECRET_MARKS = ("password", "passphrase", "secret", "token", "credential", "privatekey")
# Headers of a final response that are never kept.
_DROPPED_HEADERS = {"content-length", "date", "server", "x-auth-token", "set-cookie"}

Operation = Callable[[], Awaitable[web.StreamResponse]]


def _now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _parse_iso(value: str | None) -> float | None:
    try:
        return datetime.datetime.fromisoformat(value).timestamp() if value else None
    except ValueError:
        return None


def has_secrets(value: Any) -> bool:
    """Whether a JSON value holds a property whose name looks like a secret."""
    if isinstance(value, dict):
        return any(any(m in str(k).lower() for m in _SECRET_MARKS) or has_secrets(v)
                   for k, v in value.items())
    if isinstance(value, list):
        return any(has_secrets(v) for v in value)
    return False


def _kept_response(response: web.StreamResponse) -> dict[str, Any]:
    body = response.body if isinstance(response, web.Response) else None
    return {
        "status": response.status,
        "headers": {str(k): v for k, v in response.headers.items()
                    if k.lower() not in _DROPPED_HEADERS},
        "body": bytes(body).decode() if body else None,
    }


def _replay(kept: dict[str, Any]) -> web.Response:
    body = kept.get("body")
    return web.Response(status=kept["status"], headers=kept["headers"],
                        body=body.encode() if body is not None else None)


class TaskRunner:
    """The service behind ``services.TASK_RUNNER``; one per application."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self._store = store
        self._threshold = settings.task_threshold_s
        self._max_tasks = settings.max_tasks
        self._watchers: dict[str, asyncio.Task] = {}  # task URI -> its watcher
        self._reaper: asyncio.Task | None = None

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        """Settle tasks a stopped service left running; start the reaper."""
        async with self._store.transaction("service") as tx:
            service = tx.get(uris.TASK_SERVICE)
            if service is not None and "Actions" not in service:  # created by an older build
                service["Actions"] = task_service_actions()
                tx.put(uris.TASK_SERVICE, service)
            for uri in self._store.members(uris.TASKS):
                doc = tx.get(uri)
                if doc is None or is_finished(doc):
                    continue
                kept = _kept_response(error_response(RedfishError(503, [
                    message("ServiceShuttingDown"),
                    message("TaskAborted", doc["Id"], registry=TASK_EVENT),
                ], {"Retry-After": str(RETRY_AFTER_S)})))
                self._finish(tx, uri, "Exception", kept)
                log.warning("task interrupted by a restart", extra={"task": uri})
            self._sweep(tx, room_for=0)
        self._reaper = asyncio.create_task(self._reap_forever(), name="task-reaper")

    async def stop(self) -> None:
        """Give running operations a moment to finish and record their outcome."""
        if self._reaper:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        watchers = list(self._watchers.values())
        if watchers:
            _, pending = await asyncio.wait(watchers, timeout=STOP_GRACE_S)
            for w in pending:  # left Running in the store: the next start settles them
                w.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*pending, return_exceptions=True)

    # -- running an operation -------------------------------------------------------------
    async def run(
        self, ctx: Ctx, method: str, uri: str, body: Any, operation: Operation,
        *, deferrable: Callable[[], bool] | None = None,
    ) -> web.StreamResponse:
        """The operation's response if it ends within the threshold, else 202 + monitor.

        ``deferrable``, if given, is asked at the threshold whether the operation may
        become a task (a PATCH whose kind handled no operation stays synchronous)."""
        job = asyncio.ensure_future(operation())
        try:
            done, _ = await asyncio.wait({job}, timeout=self._threshold)
        except asyncio.CancelledError:
            # The client went away; the operation goes on and its outcome is logged only.
            job.add_done_callback(_log_outcome)
            raise
        if done or (deferrable is not None and not deferrable()):
            return await job
        try:
            task_uri, doc = await self._open(ctx, method, uri, body)
        except BaseException:
            job.add_done_callback(_log_outcome)
            raise
        watcher = asyncio.ensure_future(self._watch(task_uri, job))
        self._watchers[task_uri] = watcher
        watcher.add_done_callback(lambda _: self._watchers.pop(task_uri, None))
        log.info("operation continues as a task",
                 extra={"task": task_uri, "method": method, "path": uri})
        return self._accepted(doc)

    def _accepted(self, doc: dict[str, Any]) -> web.Response:
        return json_response(202, doc, {"Location": doc["TaskMonitor"],
                                        "Retry-After": str(RETRY_AFTER_S)})

    async def _open(self, ctx: Ctx, method: str, uri: str, body: Any
                    ) -> tuple[str, dict[str, Any]]:
        p = ctx.principal
        async with self._store.transaction(ctx.actor) as tx:
            self._sweep(tx, room_for=1)
            task_id = secrets.token_hex(4)
            while tx.exists(f"{uris.TASKS}/{task_id}"):
                task_id = secrets.token_hex(4)
            task_uri = f"{uris.TASKS}/{task_id}"
            monitor_id = secrets.token_hex(16)
            doc: dict[str, Any] = {
                "@odata.id": task_uri,
                "@odata.type": TASK_TYPE,
                "Id": task_id,
                "Name": f"{method} {uri}",
                "TaskState": "Running",
                "TaskStatus": "OK",
                "StartTime": _now_iso(),
                "PercentComplete": 0,
                "TaskMonitor": f"{TASK_MONITORS}/{monitor_id}",
                "Messages": [message("TaskStarted", task_id, registry=TASK_EVENT)],
                "Links": {"CreatedResources": []},
            }
            if has_secrets(body):
                doc["HidePayload"] = True
            else:
                doc["HidePayload"] = False
                doc["Payload"] = {"HttpOperation": method, "TargetUri": uri}
                if body not in (None, {}):
                    doc["Payload"]["JsonBody"] = orjson.dumps(body).decode()
            private = {
                "monitor": monitor_id,
                "owner": p.account_uri if p else None,
                "response": None,
            }
            tx.create(task_uri, doc, private)
            ensure_schema_files(tx, [TASK_TYPE])
        entry = self._store.get(task_uri)
        return task_uri, dict(entry.doc) if entry else doc

    async def _watch(self, task_uri: str, job: asyncio.Future) -> None:
        # asyncio.wait, not await: cancelling this watcher must not cancel the operation.
        await asyncio.wait({job})
        try:
            response = job.result()
            state = "Completed"
        except RedfishError as e:
            response, state = error_response(e), "Exception"
        except asyncio.CancelledError:
            response = error_response(RedfishError.of(500, "InternalError"))
            state = "Cancelled"
        except Exception:
            log.exception("operation of a task failed", extra={"task": task_uri})
            response, state = error_response(RedfishError.of(500, "InternalError")), "Exception"
        kept = _kept_response(response)
        if state == "Completed" and kept["status"] >= 400:
            state = "Exception"
        try:
            async with self._store.transaction("service") as tx:
                self._finish(tx, task_uri, state, kept)
        except Exception:
            log.exception("cannot record the end of a task", extra={"task": task_uri})
            return
        log.info("task finished", extra={"task": task_uri, "state": state,
                                         "status": kept["status"]})

    def _finish(self, tx: Transaction, task_uri: str, state: str,
                kept: dict[str, Any]) -> None:
        doc = tx.get(task_uri)
        private = tx.private(task_uri) or {}
        if doc is None:
            return  # deleted meanwhile
        task_id = doc["Id"]
        ok = state == "Completed"
        messages: list[dict[str, Any]] = []
        if not ok:
            try:
                body = orjson.loads(kept["body"]) if kept["body"] else {}
                messages = list(body.get("error", {}).get("@Message.ExtendedInfo", []))
            except (orjson.JSONDecodeError, AttributeError):
                messages = []
        key = {"Completed": "TaskCompletedOK", "Cancelled": "TaskCancelled"}.get(
            state, "TaskAborted")
        messages.append(message(key, task_id, registry=TASK_EVENT))
        doc.update({
            "TaskState": state,
            "TaskStatus": "OK" if ok else "Warning" if state == "Cancelled" else "Critical",
            "PercentComplete": 100,
            "EndTime": _now_iso(),
            "Messages": messages,
        })
        location = kept["headers"].get("Location")
        if ok and kept["status"] == 201 and location:
            doc["Links"] = {"CreatedResources": [{"@odata.id": location}]}
        private["response"] = kept
        tx.put(task_uri, doc, private)

    # -- keeping the number of tasks bounded ----------------------------------------------
    def _sweep(self, tx: Transaction, *, room_for: int) -> None:
        """Delete finished tasks past TaskAutoDeleteTimeoutMinutes, then the oldest
        finished ones until ``room_for`` new tasks fit under ``max_tasks``."""
        service = tx.get(uris.TASK_SERVICE) or {}
        keep_s = 60 * (service.get("TaskAutoDeleteTimeoutMinutes") or 60)
        now = time.time()
        finished: list[str] = []  # in creation order, the collection's
        count = 0
        for uri in self._store.members(uris.TASKS):
            doc = tx.get(uri)
            if doc is None:
                continue
            count += 1
            if not is_finished(doc):
                continue
            ended = _parse_iso(doc.get("EndTime")) or 0.0
            if now - ended > keep_s:
                tx.delete(uri)
                count -= 1
            else:
                finished.append(uri)
        while count + room_for > self._max_tasks and finished:
            tx.delete(finished.pop(0))
            count -= 1

    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(REAP_INTERVAL_S)
            try:
                async with self._store.transaction("service") as tx:
                    self._sweep(tx, room_for=0)
            except Exception:
                log.exception("task reaper failed")

    # -- the task monitor -----------------------------------------------------------------
    def _task_of_monitor(self, monitor_id: str) -> str | None:
        wanted = monitor_id.encode()
        for uri in self._store.members(uris.TASKS):
            entry = self._store.get(uri)
            if entry and entry.private and secrets.compare_digest(
                    str(entry.private.get("monitor", "")).encode(), wanted):
                return uri
        return None

    async def monitor(self, request: web.Request, ctx: Ctx, path: str) -> web.StreamResponse:
        monitor_id = path[len(TASK_MONITORS) + 1:]
        task_uri = self._task_of_monitor(monitor_id) if monitor_id else None
        entry = self._store.get(task_uri) if task_uri else None
        p = ctx.principal
        if entry is None or p is None or not entry.private:
            raise not_found(path)
        owner = entry.private.get("owner")
        if p.password_change_required:
            raise RedfishError.of(403, "PasswordChangeRequired", p.account_uri)
        if owner != p.account_uri and "ConfigureManager" not in p.privileges:
            raise not_found(path)  # someone else's monitor: as if it did not exist
        if request.method not in MONITOR_METHODS:
            # DELETE would cancel; the operations cannot be stopped halfway.
            raise RedfishError.of(405, "OperationNotAllowed",
                                  headers={"Allow": ", ".join(MONITOR_METHODS)})
        kept = entry.private.get("response")
        if kept is None:
            return self._accepted(dict(entry.doc))
        read_at = entry.private.get("monitor_read_at")
        if read_at is not None:
            service = self._store.doc(uris.TASK_SERVICE) or {}
            expiry = service.get("TaskMonitorAutoExpirySeconds", 600)
            if time.time() - read_at > expiry:
                raise not_found(path)
        else:
            # The expiry counts from the first read of the finished task's monitor.
            async with self._store.transaction(ctx.actor) as tx:
                private = tx.private(task_uri)
                if private is not None and "monitor_read_at" not in private:
                    private["monitor_read_at"] = time.time()
                    tx.set_private(task_uri, private)
        return _replay(kept)


def _log_outcome(job: asyncio.Future) -> None:
    if job.cancelled():
        return
    exc = job.exception()
    if exc is not None and not isinstance(exc, RedfishError):
        log.error("operation of a gone client failed", exc_info=exc)
