"""Resource kinds: what each resource family allows beyond the generic GET.

A kind is keyed by the entity name of ``@odata.type`` (``#ManagerAccount.v1_14_1.
ManagerAccount`` → ``ManagerAccount``). It declares its writable properties, whether its
instances may be deleted, whether it (a collection) accepts POST, and its actions. The
generic handlers in :mod:`redfish_service.protocol.dispatch` do the rest. Documents of a
type no kind claims (mockups, for instance) are read-only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..protocol.errors import RedfishError
from ..protocol.fields import Field

if TYPE_CHECKING:
    from ..store import Entry, Transaction
    from .context import Ctx


def entity_of(doc: dict[str, Any]) -> str:
    odata_type = doc.get("@odata.type", "")
    return odata_type.rsplit(".", 1)[-1] if odata_type else ""


@dataclass
class Created:
    """What a collection POST produced: the new URI, and the status to answer."""

    uri: str
    status: int = 201
    headers: dict[str, str] | None = None
    body: dict[str, Any] | None = None  # defaults to the new resource's representation


@dataclass
class ActionResult:
    status: int = 204
    body: dict[str, Any] | None = None
    headers: dict[str, str] | None = None


ActionHandler = Callable[["Ctx", str, dict[str, Any]], Awaitable[ActionResult]]


def checked_entry(ctx: Ctx, uri: str, if_match: list[str] | None) -> Entry:
    """The resource an operation hook acts on, with its ``If-Match`` precondition met:
    404 if it is gone, 412 if the client's ETag is not its current one."""
    entry = ctx.store.get(uri)
    if entry is None:
        raise RedfishError.of(404, "ResourceMissingAtURI", uri)
    if if_match is not None and "*" not in if_match and not (
        {entry.etag, f"W/{entry.etag}"} & set(if_match)
    ):
        raise RedfishError.of(412, "PreconditionFailed")
    return entry


class Kind:
    entity: str = ""
    writable: dict[str, Field] = {}
    deletable: bool = False
    insertable: bool = False
    # what ?excerpt keeps (besides the @odata annotations)
    excerpt: tuple[str, ...] = ("Id", "Name")
    # action name ("ComputerSystem.AddResourceBlock") -> method name on the kind
    actions: dict[str, str] = {}

    def allow(self, doc: dict[str, Any]) -> list[str]:
        methods = ["GET", "HEAD"]
        if self.insertable:
            methods.append("POST")
        if self.writable:
            methods.append("PATCH")
        if self.deletable:
            methods.append("DELETE")
        return methods

    def render(self, entry: Entry, ctx: Ctx) -> dict[str, Any] | None:
        """A live view of the document, or None to serve the stored bytes as they are."""
        return None

    async def pre_patch(
        self, ctx: Ctx, uri: str, body: dict[str, Any], if_match: list[str] | None
    ) -> tuple[dict[str, Any], bool]:
        """Carry out the part of a PATCH that is an operation rather than a document edit
        (a system's ``Links.ResourceBlocks``), outside the store lock. Returns the rest of
        the body for the generic rules, and whether anything was handled (then the
        ``If-Match`` precondition has been checked here)."""
        return body, False

    async def pre_delete(self, ctx: Ctx, uri: str, if_match: list[str] | None) -> bool:
        """Carry out a DELETE that is an operation (decomposing a system) outside the
        store lock; True if done (``If-Match`` checked here), False for the generic path."""
        return False

    async def check_patch(
        self, ctx: Ctx, tx: Transaction, uri: str, old: dict[str, Any], new: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """Semantic checks of a PATCH; raise RedfishError to refuse it whole, or return
        extra messages for the response."""
        return []

    async def after_patch(
        self, ctx: Ctx, tx: Transaction, uri: str, old: dict[str, Any], new: dict[str, Any]
    ) -> None:
        """Side effects of an accepted PATCH, in the same transaction."""

    async def create(self, ctx: Ctx, collection_uri: str, body: Any) -> Created:
        raise RedfishError.of(405, "OperationNotAllowed")

    async def delete(self, ctx: Ctx, tx: Transaction, uri: str) -> None:
        tx.delete(uri)


class ReadOnly(Kind):
    """The kind of documents no other kind claims."""


class Kinds:
    def __init__(self) -> None:
        self._by_entity: dict[str, Kind] = {}
        self._default = ReadOnly()

    def add(self, kind: Kind) -> None:
        self._by_entity[kind.entity] = kind

    def of(self, doc: dict[str, Any]) -> Kind:
        return self._by_entity.get(entity_of(doc), self._default)
