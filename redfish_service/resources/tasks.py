"""TaskService, its Tasks collection and the Task resources of long-running operations.

The Task documents are written by :mod:`redfish_service.resources.task_runner` (which also
serves the task monitors); this module holds what the documents look like and what a
client may do with them: read them, delete finished ones (``ConfigureManager``), and
``TaskService.DeleteAllCompletedTasks``.
"""

from __future__ import annotations

from typing import Any

from ..protocol.fields import Bool, Int
from ..protocol.messages import MessageDef, Registry, register
from ..store import Entry, Transaction
from . import uris
from .context import Ctx
from .kind import ActionResult, Kind
from .managers import now_iso

TASK_SERVICE_TYPE = "#TaskService.v1_3_0.TaskService"
TASK_TYPE = "#Task.v1_7_4.Task"
TASK_MONITORS = uris.TASK_SERVICE + "/TaskMonitors"
DELETE_ALL_COMPLETED = "TaskService.DeleteAllCompletedTasks"

# TaskState values after which nothing more happens to a task (DeleteAllCompletedTasks
# removes exactly these).
FINISHED = ("Completed", "Killed", "Cancelled", "Exception")

TASK_EVENT = Registry(
    "TaskEvent",
    "1.0.5",
    {
        "TaskStarted": MessageDef(1, "OK", "Task %1 has started.", "None."),
        "TaskCompletedOK": MessageDef(1, "OK", "Task %1 finished successfully.", "None."),
        "TaskCompletedWarning": MessageDef(
            1, "Warning", "Task %1 finished with warnings.", "None."),
        "TaskAborted": MessageDef(
            1, "Critical", "Task %1 ended with an error.",
            "Read the task's other messages, correct the request and retry."),
        "TaskCancelled": MessageDef(1, "Warning", "Task %1 was cancelled.", "None."),
        "TaskRemoved": MessageDef(1, "Warning", "Task %1 was removed.", "None."),
        "TaskPaused": MessageDef(1, "Warning", "Task %1 was paused.", "None."),
        "TaskResumed": MessageDef(1, "OK", "Task %1 was resumed.", "None."),
        "TaskProgressChanged": MessageDef(
            2, "OK", "Task %1 is %2 percent complete.", "None."),
    },
)
register(TASK_EVENT)


def task_service_doc() -> dict[str, Any]:
    return {
        "@odata.id": uris.TASK_SERVICE,
        "@odata.type": TASK_SERVICE_TYPE,
        "Id": "TaskService",
        "Name": "Task Service",
        "ServiceEnabled": True,
        "Status": {"State": "Enabled", "Health": "OK"},
        "CompletedTaskOverWritePolicy": "Oldest",
        "LifeCycleEventOnTaskStateChange": True,
        "TaskAutoDeleteTimeoutMinutes": 60,
        "TaskMonitorAutoExpirySeconds": 600,
        "Tasks": {"@odata.id": uris.TASKS},
        "Actions": task_service_actions(),
    }


def task_service_actions() -> dict[str, Any]:
    return {f"#{DELETE_ALL_COMPLETED}": {
        "target": f"{uris.TASK_SERVICE}/Actions/{DELETE_ALL_COMPLETED}"}}


def is_finished(doc: dict[str, Any]) -> bool:
    return doc.get("TaskState") in FINISHED


def delete_finished(tx: Transaction, store_members: list[str]) -> int:
    """Delete every finished task; returns how many."""
    count = 0
    for uri in store_members:
        doc = tx.get(uri)
        if doc is not None and is_finished(doc):
            tx.delete(uri)
            count += 1
    return count


class TaskServiceKind(Kind):
    entity = "TaskService"
    writable = {
        "ServiceEnabled": Bool(),
        "TaskAutoDeleteTimeoutMinutes": Int(minimum=1, maximum=60 * 24 * 30),
        "TaskMonitorAutoExpirySeconds": Int(minimum=0, maximum=60 * 60 * 24 * 7),
    }
    actions = {DELETE_ALL_COMPLETED: "delete_all_completed"}

    def render(self, entry: Entry, ctx: Ctx) -> dict[str, Any] | None:
        return {**entry.doc, "DateTime": now_iso()}

    async def delete_all_completed(self, ctx: Ctx, uri: str,
                                   body: dict[str, Any]) -> ActionResult:
        async with ctx.store.transaction(ctx.actor) as tx:
            delete_finished(tx, ctx.store.members(uris.TASKS))
        return ActionResult(204)


class TaskKind(Kind):
    """A task: read-only; deletable (ConfigureManager) once it has finished — a running
    operation is all-or-nothing and cannot be stopped halfway."""

    entity = "Task"

    def allow(self, doc: dict[str, Any]) -> list[str]:
        return ["GET", "HEAD", "DELETE"] if is_finished(doc) else ["GET", "HEAD"]

    def render(self, entry: Entry, ctx: Ctx) -> dict[str, Any] | None:
        # A resource the operation created may have been deleted since: the task keeps
        # pointing only at what still exists.
        created = entry.doc.get("Links", {}).get("CreatedResources") or []
        alive = [r for r in created if r.get("@odata.id") in ctx.store]
        if len(alive) == len(created):
            return None
        return {**entry.doc, "Links": {**entry.doc["Links"], "CreatedResources": alive}}


KINDS = [TaskServiceKind(), TaskKind()]
