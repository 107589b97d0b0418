"""TaskService and its Tasks collection (task monitors come with long-running work)."""

from __future__ import annotations

from typing import Any

from ..protocol.fields import Bool, Int
from ..store import Entry
from . import uris
from .context import Ctx
from .kind import Kind
from .managers import now_iso

TASK_SERVICE_TYPE = "#TaskService.v1_3_0.TaskService"


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
    }


class TaskServiceKind(Kind):
    entity = "TaskService"
    writable = {
        "ServiceEnabled": Bool(),
        "TaskAutoDeleteTimeoutMinutes": Int(minimum=1, maximum=60 * 24 * 30),
    }

    def render(self, entry: Entry, ctx: Ctx) -> dict[str, Any] | None:
        return {**entry.doc, "DateTime": now_iso()}


KINDS = [TaskServiceKind()]
