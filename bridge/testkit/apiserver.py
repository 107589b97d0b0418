"""A faithful fake Kubernetes API server (aiohttp, loopback) for the DRA bridge's tests.

Serves discovery plus the core/v1, resource.k8s.io/v1, coordination.k8s.io/v1 and
events.k8s.io/v1 resources the bridge touches, with the apiserver semantics clients rely on:
a global resourceVersion, list/watch with selectors, bookmarks and 410 expiry, status
subresources, optimistic concurrency, the four PATCH media types (server-side apply answers
415), finalizers, DRA validation and the granular claim-status authorization.

``FakeKubeAPI`` runs in the caller's event loop. Tests drive it over HTTP with the real
``kubernetes`` client and directly through the Python API (same store, same validation).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import json
import logging
import re
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from . import k8s_errors as errors
from .k8s_errors import ApiError
from .k8s_patch import MERGE_PATCH, PATCH_TYPES, STRATEGIC_PATCH, decode_patch
from .k8s_rbac import Attributes, UserInfo, allowed, forbidden_message, make_user
from .k8s_resources import GROUP_VERSIONS, Registry, ResourceType
from .k8s_selectors import Selection
from .k8s_store import Store, TooOldResourceVersion, Watcher, WriteContext

__all__ = ["ApiError", "FakeKubeAPI", "create_app"]

log = logging.getLogger(__name__)

DEFAULT_WATCH_TIMEOUT_S = 1800
TOO_LARGE_RV_WAIT_S = 3.0
IDLE_CHECK_S = 0.25
JSON = "application/json"
BODY_TYPES = (JSON, "application/yaml", "application/vnd.kubernetes.protobuf", "application/cbor")
VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")
_REASONS = {
    400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
    405: "MethodNotAllowed", 409: "Conflict", 410: "Expired", 415: "UnsupportedMediaType",
    422: "Invalid", 429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable",
    504: "Timeout",
}


def parse_bool(name: str, value: str | None) -> bool:
    """Go ``strconv.ParseBool`` for query parameters (400 on anything else)."""
    if value is None or value == "":
        return False
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise errors.bad_request(f'strconv.ParseBool: parsing "{value}": invalid syntax ({name})')


def _parse_int(name: str, value: str | None) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise errors.bad_request(
            f'strconv.ParseInt: parsing "{value}": invalid syntax ({name})') from None


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _json_response(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=_dumps(obj), status=status, content_type=JSON)


def _error_response(err: ApiError) -> web.Response:
    resp = _json_response(err.body, err.status)
    resp.headers.update(err.headers)
    return resp


def _media_type(header: str | None) -> str:
    return (header or "").split(";", 1)[0].strip().lower()


@dataclass
class _Fault:
    method: str
    pattern: re.Pattern[str]
    status: int
    remaining: int
    delay_s: float

    def matches(self, method: str, path: str) -> bool:
        return (self.method in ("*", method.upper())) and bool(self.pattern.search(path))


@dataclass(frozen=True)
class _Target:
    """A parsed resource URL."""

    rt: ResourceType
    namespace: str | None
    name: str | None
    subresource: str | None
    watch_path: bool


# -- URL parsing ----------------------------------------------------------------------------------


def _split_scope(
    registry: Registry, group: str, version: str, rest: list[str]
) -> tuple[str | None, list[str]]:
    if len(rest) >= 3 and rest[0] == "namespaces":
        scoped = registry.by_url(group, version, rest[2])
        if (scoped is not None and scoped.namespaced) or (group == "" and rest[2] == "bindings"):
            return rest[1], rest[2:]
    return None, rest


def parse_target(registry: Registry, group: str, version: str, rest: list[str]) -> _Target:
    watch_path = bool(rest) and rest[0] == "watch"
    if watch_path:
        rest = rest[1:]
    namespace, rest = _split_scope(registry, group, version, rest)
    if not rest or len(rest) > 3:
        raise errors.route_not_found()
    plural = rest[0]
    if group == "" and plural == "bindings":
        plural, rest = "pods", ["pods", "", "binding"]
    rt = registry.by_url(group, version, plural)
    if rt is None or (namespace is not None and not rt.namespaced):
        raise errors.route_not_found()
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else None
    if sub is not None and not (
        (sub == "status" and rt.status) or (sub == "binding" and plural == "pods")
    ):
        raise errors.route_not_found()
    if rt.namespaced and name and namespace is None:
        raise errors.route_not_found()
    return _Target(rt, namespace, name, sub, watch_path)


# -- discovery ------------------------------------------------------------------------------------


def _gv(group: str, version: str) -> str:
    return f"{group}/{version}" if group else version


def _resource_list(registry: Registry, group: str, version: str) -> dict[str, Any]:
    resources: list[dict[str, Any]] = []
    for rt in registry.for_group_version(group, version):
        entry: dict[str, Any] = {
            "name": rt.plural, "singularName": rt.singular, "namespaced": rt.namespaced,
            "kind": rt.kind, "verbs": VERBS,
        }
        if rt.short_names:
            entry["shortNames"] = list(rt.short_names)
        resources.append(entry)
        if rt.status:
            resources.append({"name": f"{rt.plural}/status", "singularName": "",
                              "namespaced": rt.namespaced, "kind": rt.kind,
                              "verbs": ["get", "patch", "update"]})
        if rt.plural == "pods" and not rt.group:
            resources.append({"name": "pods/binding", "singularName": "", "namespaced": True,
                              "kind": "Binding", "verbs": ["create"]})
    if not group:
        resources.append({"name": "bindings", "singularName": "binding", "namespaced": True,
                          "kind": "Binding", "verbs": ["create"]})
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": _gv(group, version),
            "resources": resources}


def _group_doc(group: str) -> dict[str, Any]:
    versions = [{"groupVersion": _gv(g, v), "version": v} for g, v in GROUP_VERSIONS if g == group]
    return {"name": group, "versions": versions, "preferredVersion": versions[0]}


def _discovery(registry: Registry, segments: list[str], address: str) -> dict[str, Any] | None:
    if segments == ["version"]:
        return {"major": "1", "minor": "37", "gitVersion": "v1.37.0+fake",
                "gitCommit": "0000000000000000000000000000000000000000",
                "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z",
                "goVersion": "go1.25.0", "compiler": "gc", "platform": "linux/amd64"}
    if segments == ["api"]:
        return {"kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                                "serverAddress": address}]}
    if segments == ["api", "v1"]:
        return _resource_list(registry, "", "v1")
    if segments == ["apis"]:
        groups = [_group_doc(g) for g, _ in GROUP_VERSIONS if g]
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}
    if len(segments) == 2 and segments[0] == "apis" and segments[1] in dict(GROUP_VERSIONS):
        return {"kind": "APIGroup", "apiVersion": "v1", **_group_doc(segments[1])}
    if len(segments) == 3 and segments[0] == "apis" and tuple(segments[1:]) in GROUP_VERSIONS:
        return _resource_list(registry, segments[1], segments[2])
    return None


# -- continue tokens ------------------------------------------------------------------------------


def _encode_continue(rv: int, key: tuple[str, str]) -> str:
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": list(key)})
    return base64.urlsafe_b64encode(raw.encode()).decode()


def _decode_continue(token: str) -> tuple[int, tuple[str, str]]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        return int(data["rv"]), (str(data["start"][0]), str(data["start"][1]))
    except (ValueError, KeyError, IndexError, TypeError) as err:
        raise errors.bad_request(f"continue key is not valid: {err}") from None


def _object_key(obj: dict[str, Any]) -> tuple[str, str]:
    meta = obj["metadata"]
    return (meta.get("namespace") or "", meta["name"])


class FakeKubeAPI:
    """The fake API server: an HTTP front end plus a direct Python API over one store.

    The Python API is the test harness's "admin" access: no authentication, authorization or
    fault injection, namespaced calls default to ``default`` and a missing namespace is created
    on the fly (over HTTP a missing namespace is a 404, as with NamespaceLifecycle). Writes are
    validated and versioned exactly like HTTP writes and raise ``ApiError`` with the Status.
    ``create("bindings", binding)`` binds a pod (``pods/binding``: the only way to set
    ``spec.nodeName`` once a pod exists).
    """

    def __init__(
        self,
        *,
        event_window: int = 10_000,
        bookmark_interval_s: float = 1.0,
        tokens: dict[str, list[dict]] | None = None,
    ) -> None:
        self.registry = Registry()
        self.store = Store(self.registry, event_window)
        self.bookmark_interval_s = bookmark_interval_s
        self._users: dict[str, UserInfo] | None = None
        if tokens is not None:
            self._users = {tok: make_user(tok, spec) for tok, spec in tokens.items()}
        self.requests: list[tuple[str, str, str | None]] = []
        self._faults: list[_Fault] = []
        self._runner: web.AppRunner | None = None
        self.too_large_rv_wait_s = TOO_LARGE_RV_WAIT_S  # apiserver waits ~3 s for a future RV
        self.url = ""

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        runner = web.AppRunner(create_app(self), access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._runner = runner
        bound = runner.addresses[0][1] if runner.addresses else port
        self.url = f"http://{host}:{bound}"
        return self.url

    async def stop(self) -> None:
        self.store.drop_watches()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- Python API ---------------------------------------------------------------------------

    def _rt(self, resource: str) -> ResourceType:
        return self.registry.by_name(resource)

    def _ensure_namespace(self, namespace: str) -> None:
        if not self.store.namespace_exists(namespace):
            ns_rt = self._rt("namespaces")
            self.store.create(ns_rt, {"metadata": {"name": namespace}}, None, WriteContext())

    def create(self, resource: str, obj: dict) -> dict:
        """Create ``obj``; namespaced objects default to ``default`` (namespace auto-created)."""
        if resource == "bindings":
            ns = (obj.get("metadata") or {}).get("namespace") or "default"
            self.store.bind_pod(obj, ns, WriteContext())
            return self.get("pods", obj["metadata"]["name"], ns) or {}
        rt = self._rt(resource)
        namespace = None
        if rt.namespaced:
            namespace = (obj.get("metadata") or {}).get("namespace") or "default"
            self._ensure_namespace(namespace)
        return self.store.create(rt, obj, namespace, WriteContext(require_namespace=False))

    def get(self, resource: str, name: str, namespace: str | None = None) -> dict | None:
        rt = self._rt(resource)
        obj = self.store.get(rt, name, (namespace or "default") if rt.namespaced else None)
        return copy.deepcopy(obj) if obj is not None else None

    def list(self, resource: str, namespace: str | None = None) -> list[dict]:
        rt = self._rt(resource)
        selection = Selection(rt, namespace=namespace if rt.namespaced else None)
        return [copy.deepcopy(o) for o in self.store.items(rt, selection)]

    def update(self, resource: str, obj: dict, *, subresource: str | None = None) -> dict:
        rt = self._rt(resource)
        meta = obj.get("metadata") or {}
        namespace = (meta.get("namespace") or "default") if rt.namespaced else None
        if namespace is not None and rt.create_on_update:
            self._ensure_namespace(namespace)
        result, _ = self.store.update(rt, meta.get("name") or "", namespace, obj, subresource,
                                      WriteContext(require_namespace=False))
        return result

    def patch(
        self, resource: str, name: str, patch: Any, *, namespace: str | None = None,
        subresource: str | None = None, content_type: str = MERGE_PATCH,
    ) -> dict:
        rt = self._rt(resource)
        if isinstance(patch, bytes | str):
            patch = decode_patch(patch)
        if content_type not in PATCH_TYPES or content_type == "application/apply-patch+yaml":
            raise errors.unsupported_media_type(content_type, [*PATCH_TYPES[:2], STRATEGIC_PATCH])
        ns = (namespace or "default") if rt.namespaced else None
        return self.store.patch(rt, name, ns, copy.deepcopy(patch), content_type, subresource,
                                WriteContext(verb="patch", require_namespace=False))

    def delete(
        self, resource: str, name: str, namespace: str | None = None, *,
        preconditions: dict | None = None,
    ) -> None:
        rt = self._rt(resource)
        ns = (namespace or "default") if rt.namespaced else None
        options = {"preconditions": preconditions} if preconditions else {}
        self.store.delete(rt, name, ns, options, WriteContext(require_namespace=False))

    def subscribe(self) -> asyncio.Queue:
        """A queue receiving ``(type, resource, obj)`` for every committed change."""
        return self.store.subscribe()

    # -- faults -----------------------------------------------------------------------------------

    def fail_next(
        self, method: str, path_regex: str, status: int, count: int = 1, *, delay_s: float = 0.0,
    ) -> None:
        """Fail the next ``count`` requests matching (method, path regex) with ``status``.

        ``status`` 0 only adds ``delay_s`` of latency and then serves the request normally.
        ``method`` "*" matches any method; the regex is searched in the URL path (no query).
        """
        self._faults.append(_Fault(method.upper(), re.compile(path_regex), status, count, delay_s))

    def drop_watches(self, *, abrupt: bool = False) -> None:
        """End every open watch stream (cleanly, or ``abrupt``: connection cut mid-stream)."""
        self.store.drop_watches(abrupt=abrupt)

    def compact(self) -> None:
        """Forget the event history: watches from any older resourceVersion get 410."""
        self.store.compact()

    def _take_fault(self, method: str, path: str) -> _Fault | None:
        for fault in self._faults:
            if fault.remaining > 0 and fault.matches(method, path):
                fault.remaining -= 1
                if fault.remaining == 0:
                    self._faults.remove(fault)
                return fault
        return None

    # -- HTTP -----------------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.method, request.path_qs,
                              request.headers.get("Content-Type")))
        fault = self._take_fault(request.method, request.path)
        try:
            if fault is not None:
                if fault.delay_s:
                    await asyncio.sleep(fault.delay_s)
                if fault.status:
                    raise self._fault_error(fault.status, request.path)
            return await self._serve(request)
        except ApiError as err:
            return _error_response(err)
        except Exception as err:  # pragma: no cover - a bug in the fake, not in the client
            log.exception("fake apiserver failed on %s %s", request.method, request.path_qs)
            return _error_response(errors.internal_error(f"{type(err).__name__}: {err}"))

    def _fault_error(self, status: int, path: str) -> ApiError:
        if status == 409:
            try:
                target = self._target([p for p in path.split("/") if p])
            except ApiError:
                return errors.conflict("", "objects", "")
            return errors.conflict(target.rt.group, target.rt.plural, target.name or "")
        if status == 429:
            return errors.too_many_requests()
        if status == 500:
            return errors.internal_error("fault injected by the test")
        return ApiError(status, _REASONS.get(status, "Unknown"), "fault injected by the test")

    def _authenticate(self, request: web.Request) -> UserInfo | None:
        if self._users is None:
            return None
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        user = self._users.get(token.strip()) if scheme.lower() == "bearer" else None
        if user is None:
            raise errors.unauthorized()
        return user

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        user = self._authenticate(request)
        segments = [s for s in request.path.split("/") if s]
        if request.method == "GET":
            doc = self._misc(segments, request)
            if doc is not None:
                if user is not None:
                    self._authorize(Attributes(user, "get", path=request.path,
                                               resource_request=False))
                return doc
        target = self._target(segments)
        return await _Handler(self, request, target, user).dispatch()

    def _misc(self, segments: list[str], request: web.Request) -> web.StreamResponse | None:
        if segments in (["healthz"], ["livez"], ["readyz"]):
            return web.Response(text="ok", content_type="text/plain")
        address = f"{request.url.host}:{request.url.port}"
        doc = _discovery(self.registry, segments, address)
        return _json_response(doc) if doc is not None else None

    def _target(self, segments: list[str]) -> _Target:
        if len(segments) >= 2 and segments[0] == "api" and segments[1] == "v1":
            return parse_target(self.registry, "", "v1", segments[2:])
        if len(segments) >= 4 and segments[0] == "apis":
            group, version = segments[1], segments[2]
            if (group, version) in GROUP_VERSIONS:
                return parse_target(self.registry, group, version, segments[3:])
        raise errors.route_not_found()

    @staticmethod
    def _authorize(attrs: Attributes) -> None:
        if not allowed(attrs):
            raise errors.forbidden_error(attrs.group, attrs.resource if attrs.resource_request
                                         else "", attrs.name, forbidden_message(attrs))


class _Handler:
    """One resource request: verb selection, authorization, body decoding, dispatch."""

    def __init__(self, api: FakeKubeAPI, request: web.Request, target: _Target,
                 user: UserInfo | None) -> None:
        self.api = api
        self.store = api.store
        self.request = request
        self.target = target
        self.rt = target.rt
        self.user = user
        self.query = request.query

    # -- dispatch -------------------------------------------------------------------------------

    def _verb(self) -> str:
        method, name, sub = self.request.method, self.target.name, self.target.subresource
        if sub == "binding":
            if method != "POST":
                raise errors.method_not_allowed(method)
            return "create"
        if method == "GET":
            if name:
                return "get"
            return "watch" if self.target.watch_path or parse_bool(
                "watch", self.query.get("watch")) else "list"
        table = {"POST": "create", "PUT": "update", "PATCH": "patch"}
        if method in table:
            if (method == "POST") == bool(name):
                raise errors.method_not_allowed(method)
            return table[method]
        if method == "DELETE":
            return "delete" if name else "deletecollection"
        raise errors.method_not_allowed(method)

    async def dispatch(self) -> web.StreamResponse:
        verb = self._verb()
        if self.user is not None:
            self.api._authorize(Attributes(
                self.user, verb, self.rt.group, self.rt.plural, self.target.subresource or "",
                self.target.namespace or "", self.target.name or "", self.request.path))
        ctx = WriteContext(user=self.user, verb=verb, dry_run=self._dry_run())
        if self.target.subresource == "binding":
            return await self._bind(ctx)
        handler = {
            "get": self._get, "list": self._list, "watch": self._watch, "create": self._create,
            "update": self._update, "patch": self._patch, "delete": self._delete,
            "deletecollection": self._delete_collection,
        }[verb]
        return await handler(ctx)

    def _dry_run(self) -> bool:
        values = self.query.getall("dryRun", [])
        for value in values:
            if value != "All":
                raise errors.invalid_error("", "", "", [errors.not_supported(
                    "dryRun", values, ["All"])])
        return bool(values)

    async def _body(self) -> Any:
        media = _media_type(self.request.headers.get("Content-Type"))
        if self.request.method in ("POST", "PUT") and media not in ("", JSON):
            raise errors.unsupported_media_type(media, list(BODY_TYPES))
        raw = await self.request.read()
        if not raw:
            raise errors.bad_request("the body of the request is empty")
        try:
            return json.loads(raw)
        except ValueError as err:
            msg = f"couldn't get version/kind; json parse error: {err}"
            raise errors.bad_request(msg) from None

    # -- verbs ----------------------------------------------------------------------------------

    async def _get(self, ctx: WriteContext) -> web.StreamResponse:
        del ctx
        obj = self.store.require(self.rt, self.target.name or "", self.target.namespace)
        return _json_response(obj)

    def _selection(self) -> Selection:
        return Selection.parse(self.rt, self.query.get("labelSelector", ""),
                               self.query.get("fieldSelector", ""), self.target.namespace)

    async def _list(self, ctx: WriteContext) -> web.StreamResponse:
        del ctx
        selection = self._selection()
        limit = _parse_int("limit", self.query.get("limit")) or 0
        token = self.query.get("continue", "")
        rv = self.store.resource_version
        items = self.store.items(self.rt, selection)
        if token:
            if self.query.get("resourceVersion"):
                raise errors.bad_request(
                    "specifying resource version is not allowed when using continue")
            rv, start = _decode_continue(token)
            if rv < self.store.window_start(self.rt):
                raise errors.expired(
                    "The provided continue parameter is too old to display a consistent list "
                    "result. You can start a new list without the continue parameter, or use the "
                    "continue value from the response.")
            items = [o for o in items if _object_key(o) > start]
        else:
            await self._check_rv_not_too_large(self.query.get("resourceVersion"))
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        if limit > 0 and len(items) > limit:
            remaining = len(items) - limit
            items = items[:limit]
            meta["continue"] = _encode_continue(rv, _object_key(items[-1]))
            if selection.empty:
                meta["remainingItemCount"] = remaining
        body = {"kind": self.rt.list_kind, "apiVersion": self.rt.api_version, "metadata": meta,
                "items": [self._list_item(o) for o in items]}
        return _json_response(body)

    @staticmethod
    def _list_item(obj: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in obj.items() if k not in ("kind", "apiVersion")}

    async def _check_rv_not_too_large(self, value: str | None) -> int | None:
        if value in (None, "", "0"):
            return None
        try:
            rv = int(value or "")
        except ValueError:
            raise errors.bad_request(f'invalid resource version "{value}"') from None
        if rv > self.store.resource_version and not await self.store.wait_for_rv(
                rv, self.api.too_large_rv_wait_s):
            raise ApiError(504, "Timeout",
                           f"Timeout: Too large resource version: {rv}, current: "
                           f"{self.store.resource_version}",
                           {"causes": [{"reason": "ResourceVersionTooLarge",
                                        "message": "Too large resource version"}],
                            "retryAfterSeconds": 1})
        return rv

    async def _create(self, ctx: WriteContext) -> web.StreamResponse:
        body = await self._body()
        obj = self.store.create(self.rt, body, self.target.namespace, ctx)
        return _json_response(obj, 201)

    async def _update(self, ctx: WriteContext) -> web.StreamResponse:
        body = await self._body()
        obj, created = self.store.update(self.rt, self.target.name or "", self.target.namespace,
                                         body, self.target.subresource, ctx)
        return _json_response(obj, 201 if created else 200)

    async def _patch(self, ctx: WriteContext) -> web.StreamResponse:
        media = _media_type(self.request.headers.get("Content-Type"))
        if media not in PATCH_TYPES or media == "application/apply-patch+yaml":
            raise errors.unsupported_media_type(media, list(PATCH_TYPES))
        raw = await self.request.read()
        if parse_bool("force", self.query.get("force")):
            raise errors.invalid_error("", "", "", [errors.forbidden(
                "force", "may not be specified for non-apply patch")])
        obj = self.store.patch(self.rt, self.target.name or "", self.target.namespace,
                               decode_patch(raw), media, self.target.subresource, ctx)
        return _json_response(obj)

    async def _delete_options(self) -> dict[str, Any]:
        raw = await self.request.read()
        options: dict[str, Any] = {}
        if raw.strip():
            try:
                options = json.loads(raw)
            except ValueError as err:
                raise errors.bad_request(f"invalid DeleteOptions: {err}") from None
            if not isinstance(options, dict):
                raise errors.bad_request("invalid DeleteOptions: not an object")
        return options

    async def _delete(self, ctx: WriteContext) -> web.StreamResponse:
        options = await self._delete_options()
        obj, deleted_now = self.store.delete(self.rt, self.target.name or "",
                                             self.target.namespace, options, ctx)
        return _json_response(obj, 200 if deleted_now else 202)

    async def _delete_collection(self, ctx: WriteContext) -> web.StreamResponse:
        options = await self._delete_options()
        deleted = []
        for obj in list(self.store.items(self.rt, self._selection())):
            meta = obj["metadata"]
            result, _ = self.store.delete(self.rt, meta["name"], meta.get("namespace"), options,
                                          ctx)
            deleted.append(self._list_item(result))
        return _json_response({"kind": self.rt.list_kind, "apiVersion": self.rt.api_version,
                               "metadata": {"resourceVersion": str(self.store.resource_version)},
                               "items": deleted})

    async def _bind(self, ctx: WriteContext) -> web.StreamResponse:
        body = await self._body()
        if not isinstance(body, dict):
            raise errors.bad_request("the body of the request must be a JSON object")
        meta = body.setdefault("metadata", {})
        if self.target.name and meta.get("name") not in (None, "", self.target.name):
            raise errors.bad_request("name in URL does not match name in Binding object")
        if self.target.name:
            meta["name"] = self.target.name
        self.store.bind_pod(body, self.target.namespace, ctx)
        return _json_response({"kind": "Status", "apiVersion": "v1", "metadata": {},
                               "status": "Success"}, 201)

    # -- watch ----------------------------------------------------------------------------------

    async def _watch(self, ctx: WriteContext) -> web.StreamResponse:
        del ctx
        selection = self._selection()
        bookmarks = parse_bool("allowWatchBookmarks", self.query.get("allowWatchBookmarks"))
        initial = parse_bool("sendInitialEvents", self.query.get("sendInitialEvents"))
        timeout = _parse_int("timeoutSeconds", self.query.get("timeoutSeconds"))
        rv_text = self.query.get("resourceVersion")
        if initial and (self.query.get("resourceVersionMatch") != "NotOlderThan" or not bookmarks):
            raise errors.invalid_error("", "", "", [errors.forbidden(
                "sendInitialEvents", "sendInitialEvents is forbidden for watch unless the "
                "WatchList feature gate is enabled and resourceVersionMatch is NotOlderThan and "
                "allowWatchBookmarks is true")])
        since = await self._check_rv_not_too_large(rv_text)
        if initial:
            since = None
        resp = web.StreamResponse(status=200, headers={"Content-Type": JSON})
        resp.enable_chunked_encoding()
        try:
            watcher = self.store.watch(self.rt, selection, since)
        except TooOldResourceVersion as err:
            await resp.prepare(self.request)
            await resp.write(_dumps({"type": "ERROR", "object": err.body}) + b"\n")
            await resp.write_eof()
            return resp
        if initial:
            watcher.queue.put_nowait(self._bookmark(initial_end=True))
        await resp.prepare(self.request)
        try:
            await self._pump(resp, watcher, bookmarks,
                             DEFAULT_WATCH_TIMEOUT_S if timeout is None else timeout)
        finally:
            self.store.unwatch(watcher)
        return resp

    def _bookmark(self, *, initial_end: bool = False) -> dict[str, Any]:
        meta: dict[str, Any] = {"resourceVersion": str(self.store.resource_version)}
        if initial_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        return {"type": "BOOKMARK", "object": {"kind": self.rt.kind,
                                               "apiVersion": self.rt.api_version,
                                               "metadata": meta}}

    async def _pump(self, resp: web.StreamResponse, watcher: Watcher, bookmarks: bool,
                    duration_s: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + duration_s
        interval = self.api.bookmark_interval_s
        next_bookmark = loop.time() + interval
        while True:
            now = loop.time()
            if now >= deadline or self._client_gone():
                break
            wait = min(deadline - now, IDLE_CHECK_S)
            if bookmarks:
                wait = max(0.0, min(wait, next_bookmark - now))
            try:
                # An event already queued is taken at once: wait_for(get(), 0) would time
                # out before the getter ran and, with a bookmark due, starve the stream.
                item = (watcher.queue.get_nowait() if not watcher.queue.empty()
                        else await asyncio.wait_for(watcher.queue.get(), wait))
            except TimeoutError:
                if bookmarks and loop.time() >= next_bookmark and watcher.queue.empty():
                    next_bookmark = loop.time() + interval
                    if not await self._send(resp, self._bookmark()):
                        return
                continue
            if Watcher.is_close(item):
                break
            if Watcher.is_abort(item):
                self._abort()
                return
            if not await self._send(resp, item):
                return
        with contextlib.suppress(ConnectionError, RuntimeError):
            await resp.write_eof()

    def _client_gone(self) -> bool:
        transport = self.request.transport
        return transport is None or transport.is_closing()

    def _abort(self) -> None:
        transport = self.request.transport
        if transport is not None:
            transport.abort()

    @staticmethod
    async def _send(resp: web.StreamResponse, item: dict[str, Any]) -> bool:
        try:
            await resp.write(_dumps(item) + b"\n")
        except (ConnectionError, RuntimeError):
            return False
        return True


API_KEY = web.AppKey("fake_kube_api", FakeKubeAPI)


async def _entry(request: web.Request) -> web.StreamResponse:
    return await request.app[API_KEY].handle(request)


def create_app(api: FakeKubeAPI) -> web.Application:
    """The aiohttp application serving ``api`` (one catch-all route)."""
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app[API_KEY] = api
    app.router.add_route("*", "/{tail:.*}", _entry)
    return app

