"""The services an application shares, each under its own ``web.AppKey``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from .config import Settings
    from .events.hub import EventHub
    from .resources.composer import Composer
    from .resources.kind import Kinds
    from .resources.task_runner import TaskRunner
    from .security.accounts import Accounts
    from .security.sessions import Sessions
    from .store import Store

SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
STORE: web.AppKey[Store] = web.AppKey("store")
KINDS: web.AppKey[Kinds] = web.AppKey("kinds")
ACCOUNTS: web.AppKey[Accounts] = web.AppKey("accounts")
SESSIONS: web.AppKey[Sessions] = web.AppKey("sessions")
COMPOSER: web.AppKey[Composer] = web.AppKey("composer")
TASK_RUNNER: web.AppKey[TaskRunner] = web.AppKey("task_runner")
EVENTS: web.AppKey[EventHub] = web.AppKey("events")
