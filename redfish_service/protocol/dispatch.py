"""The generic request handler: GET/HEAD, PATCH, POST (create or action), DELETE on any
document of the store, with authorization, ETags and query options applied uniformly.
Resource kinds supply only what differs per resource family.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from .. import services
from ..resources import uris
from ..resources.context import Ctx
from ..resources.kind import Kind, entity_of
from ..resources.task_runner import TaskRunner
from ..resources.tasks import TASK_MONITORS
from ..security import privileges
from ..security.auth import LOGIN_URIS, basic_mode, unauthorized
from ..store import Entry
from . import metadata, query
from .errors import RedfishError, method_not_allowed, not_found
from .fields import apply_patch
from .render import describedby, json_response

ALL_METHODS = ("GET", "HEAD", "PATCH", "POST", "PUT", "DELETE")


def normalize(path: str) -> str:
    if path in ("/redfish/v1", "/redfish/v1/"):
        return uris.SERVICE_ROOT
    return path.rstrip("/") if len(path) > 1 else path


def context(request: web.Request) -> Ctx:
    return Ctx(request.app, request.get("principal"), request.remote)


def task_runner(ctx: Ctx) -> TaskRunner:
    """Runs operations, answering 202 + a task monitor for those that take long."""
    return ctx.app[services.TASK_RUNNER]


# -- authorization ----------------------------------------------------------------------


def _is_self(ctx: Ctx, uri: str, doc: dict[str, Any]) -> bool:
    p = ctx.principal
    if p is None:
        return False
    if uri == p.account_uri:
        return True
    if entity_of(doc) == "Session":
        entry = ctx.store.get(uri)
        return bool(entry and entry.private and entry.private.get("account") == p.account_uri)
    if entity_of(doc) == "EventDestination":  # a subscription its account made
        entry = ctx.store.get(uri)
        return entry is not None and privileges.is_owner(entry.private, p.account_uri,
                                                         p.username)
    return False


def _password_change_allows(ctx: Ctx, method: str, uri: str) -> bool:
    p = ctx.principal
    assert p is not None
    if uri == p.account_uri:
        return method in ("GET", "HEAD", "PATCH")
    if uri == p.session_uri:
        return method in ("GET", "HEAD", "DELETE")
    return method in ("GET", "HEAD") and uri == uris.SERVICE_ROOT


def may(ctx: Ctx, method: str, uri: str, doc: dict[str, Any], patched=None) -> bool:
    req = privileges.requirement(entity_of(doc), method, patched)
    p = ctx.principal
    if p is None:
        return ["NoAuth"] in req
    if p.password_change_required and not _password_change_allows(ctx, method, uri):
        return False
    return privileges.satisfied(req, p.privileges, is_self=_is_self(ctx, uri, doc))


def authorize(ctx: Ctx, method: str, uri: str, doc: dict[str, Any], patched=None) -> None:
    if may(ctx, method, uri, doc, patched):
        return
    p = ctx.principal
    if p is None:
        raise unauthorized(basic_mode(ctx.app) == "Enabled")
    if p.password_change_required:
        raise RedfishError.of(403, "PasswordChangeRequired", p.account_uri)
    raise RedfishError.of(403, "InsufficientPrivilege")


# -- helpers ------------------------------------------------------------------------------


def _entry(ctx: Ctx, uri: str) -> Entry:
    entry = ctx.store.get(uri)
    if entry is None:
        raise not_found(uri)
    return entry


def _target(ctx: Ctx, uri: str, method: str) -> tuple[Entry, Kind]:
    """The resource and its kind, if it allows ``method`` (405 with Allow if not; a client
    that may not even read it learns nothing more than from a GET)."""
    entry = _entry(ctx, uri)
    kind = ctx.kinds.of(entry.doc)
    if method not in kind.allow(entry.doc):
        if uri not in LOGIN_URIS:
            authorize(ctx, "GET", uri, entry.doc)
        raise method_not_allowed(kind.allow(entry.doc))
    return entry, kind


def if_match_tags(request: web.Request) -> list[str] | None:
    header = request.headers.get("If-Match")
    return None if header is None else [t.strip() for t in header.split(",")]


def etag_matches(tags: list[str] | None, entry: Entry) -> bool:
    # A live-rendered document is served with the weak form of its revision ETag.
    return tags is None or "*" in tags or entry.etag in tags or f"W/{entry.etag}" in tags


def check_if_match(request: web.Request, entry: Entry) -> None:
    if not etag_matches(if_match_tags(request), entry):
        raise RedfishError.of(412, "PreconditionFailed")


async def read_json(request: web.Request, *, required: bool) -> Any:
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise RedfishError.of(413, "PayloadTooLarge") from None
    if not raw.strip():
        if required:
            raise RedfishError.of(400, "MalformedJSON")
        return {}
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise RedfishError.of(400, "MalformedJSON") from None


def resource_headers(kind: Kind, entry: Entry, doc: dict[str, Any]) -> dict[str, str]:
    headers = {"Allow": ", ".join(kind.allow(doc)), "ETag": entry.etag}
    link = describedby(doc.get("@odata.type"))
    if link:
        headers["Link"] = link
    return headers


def representation(ctx: Ctx, uri: str) -> tuple[dict[str, Any], dict[str, str]] | None:
    """The current view of a document (live where its kind makes one) and its headers."""
    entry = ctx.store.get(uri)
    if entry is None:
        return None
    kind = ctx.kinds.of(entry.doc)
    headers = resource_headers(kind, entry, entry.doc)
    live = kind.render(entry, ctx)
    if live is None:
        return dict(entry.doc), headers
    headers["ETag"] = live["@odata.etag"] = f"W/{entry.etag}"
    return live, headers


# -- methods ------------------------------------------------------------------------------


def _query(request: web.Request) -> query.Query:
    qs = request.query_string
    if not qs:
        return query.Query()
    bare = {part for part in qs.split("&") if part and "=" not in part}
    return query.parse(list(request.query.items()), bare=bare)


async def do_get(request: web.Request, ctx: Ctx, uri: str) -> web.Response:
    entry = _entry(ctx, uri)
    authorize(ctx, "GET", uri, entry.doc)
    kind = ctx.kinds.of(entry.doc)
    q = _query(request)
    live = kind.render(entry, ctx)
    headers = resource_headers(kind, entry, entry.doc)
    if live is not None:
        # Live properties (a clock) change the body between revisions: a weak validator.
        headers["ETag"] = live["@odata.etag"] = f"W/{entry.etag}"
    if_none = request.headers.get("If-None-Match")
    if if_none and live is None:
        # Weak comparison (RFC 9110 13.1.2): W/"3" matches "3"; '*' matches any.
        tags = {t.strip().removeprefix("W/") for t in if_none.split(",")}
        if "*" in tags or entry.etag in tags:
            return web.Response(status=304, headers=headers)
    if q.empty and live is None:
        return json_response(200, entry.body, headers)
    doc = live if live is not None else entry.doc

    def resolve(target: str) -> dict[str, Any] | None:
        e = ctx.store.get(target)
        if e is None or not may(ctx, "GET", target, e.doc):
            return None
        view = ctx.kinds.of(e.doc).render(e, ctx)
        return view if view is not None else e.doc

    if q.only and isinstance(doc.get("Members"), list) and len(doc["Members"]) == 1:
        only = doc["Members"][0]
        target = only.get("@odata.id") if isinstance(only, dict) else None
        if isinstance(target, str):  # (a mockup's collection may hold anything)
            return await do_get(request.clone(rel_url=target), ctx, target)
    if q.filter is not None or q.top is not None or q.skip is not None:
        doc = query.page(doc, uri, q, resolve)
    if q.expand:
        doc = query.expand(doc, q.expand, q.levels, resolve)
    if q.excerpt:
        doc = query.select(doc, [[p] for p in kind.excerpt])
    if q.select:
        doc = query.select(doc, q.select)
    if not q.empty:
        headers.pop("ETag", None)
    return json_response(200, doc, headers)


async def do_patch(request: web.Request, ctx: Ctx, uri: str) -> web.Response:
    entry, kind = _target(ctx, uri, "PATCH")
    body = await read_json(request, required=True)
    patched = body.keys() if isinstance(body, dict) else None
    authorize(ctx, "PATCH", uri, entry.doc, patched)
    tags = if_match_tags(request)
    if not (isinstance(body, dict) and body):
        return await _patch(ctx, kind, uri, body, False, tags)
    handled: bool | None = None  # not known while the kind's pre_patch runs

    async def operation() -> web.Response:
        nonlocal handled
        rest, handled = await kind.pre_patch(ctx, uri, body, tags)
        return await _patch(ctx, kind, uri, rest, handled, tags)

    # Only an operation the kind carries out (not a plain document edit) becomes a task.
    return await task_runner(ctx).run(ctx, "PATCH", uri, body, operation,
                                      deferrable=lambda: handled is not False)


async def _patch(ctx: Ctx, kind: Kind, uri: str, body: Any, handled: bool,
                 tags: list[str] | None) -> web.Response:
    if handled and all(k.startswith("@") for k in body):
        view = representation(ctx, uri)
        if view is None:
            raise not_found(uri)
        return json_response(200, view[0], view[1])
    messages: list[dict] = []
    async with ctx.store.transaction(ctx.actor) as tx:
        current = ctx.store.get(uri)
        if current is None:
            raise not_found(uri)
        if not handled and not etag_matches(tags, current):
            raise RedfishError.of(412, "PreconditionFailed")
        result = apply_patch(kind.writable, body, tx.get(uri) or {})
        messages += result.errors
        messages += await kind.check_patch(ctx, tx, uri, current.doc, result.doc)
        tx.put(uri, result.doc)
        await kind.after_patch(ctx, tx, uri, current.doc, result.doc)
    view = representation(ctx, uri)
    if view is None:
        raise not_found(uri)
    doc, headers = view
    if messages:
        doc["@Message.ExtendedInfo"] = messages
    return json_response(200, doc, headers)


async def do_post(request: web.Request, ctx: Ctx, uri: str) -> web.Response:
    if "/Actions/" in uri:
        return await do_action(request, ctx, uri)
    if uri.endswith("/Members"):
        parent = ctx.store.doc(uri[: -len("/Members")])
        if parent is not None and isinstance(parent.get("Members"), list):
            uri = uri[: -len("/Members")]
    entry, kind = _target(ctx, uri, "POST")
    if uri not in LOGIN_URIS:
        authorize(ctx, "POST", uri, entry.doc)
    body = await read_json(request, required=True)

    async def operation() -> web.Response:
        created = await kind.create(ctx, uri, body)
        headers = {"Location": created.uri, **(created.headers or {})}
        body_out = created.body
        view = representation(ctx, created.uri)
        if view is not None:
            if body_out is None:
                body_out = view[0]
            headers.update(view[1])
        return json_response(created.status, body_out, headers)

    if uri in LOGIN_URIS:
        return await operation()  # a login answers with its token, never through a task
    return await task_runner(ctx).run(ctx, "POST", uri, body, operation)


def _advertised(doc: dict[str, Any], action: str) -> bool:
    """Whether the resource lists the action (a kind's action exists only where offered:
    an unregistered host has no AddResourceBlock)."""
    actions = doc.get("Actions") or {}
    if action.startswith("Oem/"):
        return f"#{action.removeprefix('Oem/')}" in (actions.get("Oem") or {})
    return f"#{action}" in actions


async def do_action(request: web.Request, ctx: Ctx, uri: str) -> web.Response:
    target, _, action = uri.partition("/Actions/")
    entry = _entry(ctx, target)
    kind = ctx.kinds.of(entry.doc)
    method_name = kind.actions.get(action)
    if method_name is None:
        authorize(ctx, "GET", target, entry.doc)
        raise not_found(uri)
    if not _advertised(kind.render(entry, ctx) or entry.doc, action):
        authorize(ctx, "GET", target, entry.doc)
        raise RedfishError.of(400, "ActionNotSupported", action)
    authorize(ctx, "POST", target, entry.doc)
    check_if_match(request, entry)
    body = await read_json(request, required=False)
    if not isinstance(body, dict):
        raise RedfishError.of(400, "MalformedJSON")

    async def operation() -> web.Response:
        result = await getattr(kind, method_name)(ctx, target, body)
        return json_response(result.status, result.body, result.headers)

    return await task_runner(ctx).run(ctx, "POST", uri, body, operation)


async def do_delete(request: web.Request, ctx: Ctx, uri: str) -> web.Response:
    entry, kind = _target(ctx, uri, "DELETE")
    authorize(ctx, "DELETE", uri, entry.doc)
    tags = if_match_tags(request)
    handled: bool | None = None  # not known while the kind's pre_delete runs

    async def operation() -> web.Response:
        nonlocal handled
        handled = await kind.pre_delete(ctx, uri, tags)
        if handled:
            return web.Response(status=204)
        async with ctx.store.transaction(ctx.actor) as tx:
            current = ctx.store.get(uri)
            if current is None:
                raise not_found(uri)
            if not etag_matches(tags, current):
                raise RedfishError.of(412, "PreconditionFailed")
            await kind.delete(ctx, tx, uri)
        return web.Response(status=204)

    # Only an operation the kind carries out (decomposing a system) becomes a task.
    return await task_runner(ctx).run(ctx, "DELETE", uri, None, operation,
                                      deferrable=lambda: handled is not False)


_STATIC_ALLOW = "GET, HEAD"


async def handle(request: web.Request) -> web.StreamResponse:
    path = normalize(request.path)
    ctx = context(request)
    method = request.method
    if path in ("/redfish", uris.ODATA, uris.METADATA):
        if method not in ("GET", "HEAD"):
            raise method_not_allowed(["GET", "HEAD"])
        headers = {"Allow": _STATIC_ALLOW}
        if path == "/redfish":
            return json_response(200, {"v1": uris.SERVICE_ROOT}, headers)
        if path == uris.ODATA:
            return json_response(200, metadata.service_document(ctx.store), headers)
        return web.Response(
            body=metadata.metadata_xml(ctx.store),
            headers={"Content-Type": "application/xml;charset=utf-8", **headers},
        )
    if path.startswith(TASK_MONITORS + "/"):
        return await task_runner(ctx).monitor(request, ctx, path)
    if method in ("GET", "HEAD"):
        return await do_get(request, ctx, path)
    if method == "PATCH":
        return await do_patch(request, ctx, path)
    if method == "POST":
        return await do_post(request, ctx, path)
    if method == "DELETE":
        return await do_delete(request, ctx, path)
    # PUT and unknown methods: 405 with what the resource does allow.
    entry = ctx.store.get(path)
    if entry is None:
        raise not_found(path)
    authorize(ctx, "GET", path, entry.doc)
    raise method_not_allowed(ctx.kinds.of(entry.doc).allow(entry.doc))


def setup_routes(app: web.Application) -> None:
    app.router.add_route("*", "/redfish", handle)
    app.router.add_route("*", "/redfish/{tail:.*}", handle)


__all__ = ["handle", "services", "setup_routes"]
