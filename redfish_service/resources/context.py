"""The per-request context handed to resource kinds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

from .. import services

if TYPE_CHECKING:
    from ..config import Settings
    from ..security.accounts import Accounts
    from ..security.sessions import Sessions
    from ..store import Store
    from .composer import Composer
    from .kind import Kinds


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking: the account, its role's privileges and the session, if any."""

    username: str
    account_uri: str
    role_id: str
    privileges: tuple[str, ...]
    session_uri: str | None = None
    password_change_required: bool = False


@dataclass(slots=True)
class Ctx:
    app: web.Application
    principal: Principal | None
    remote: str | None = None

    @property
    def store(self) -> Store:
        return self.app[services.STORE]

    @property
    def settings(self) -> Settings:
        return self.app[services.SETTINGS]

    @property
    def kinds(self) -> Kinds:
        return self.app[services.KINDS]

    @property
    def accounts(self) -> Accounts:
        return self.app[services.ACCOUNTS]

    @property
    def sessions(self) -> Sessions:
        return self.app[services.SESSIONS]

    @property
    def composer(self) -> Composer:
        return self.app[services.COMPOSER]

    @property
    def actor(self) -> str | None:
        return self.principal.username if self.principal else None
