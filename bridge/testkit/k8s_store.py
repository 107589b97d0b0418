"""In-memory object store of the fake API server: resourceVersions, writes, watch fan-out.

Everything here is synchronous and runs in the event loop thread, so each write is atomic
with respect to watch registration and event delivery (no locks needed).
"""

from __future__ import annotations

import asyncio
import copy
import random
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from . import k8s_errors as errors
from .k8s_errors import ApiError, FieldError
from .k8s_patch import apply_patch, strategic_schema
from .k8s_rbac import UserInfo, claim_status_authz
from .k8s_resources import Registry, ResourceType
from .k8s_selectors import Selection
from .k8s_strategy import (
    Strategy,
    full_schema,
    prepare_status_update,
    prepare_update,
    strategy_for,
)
from .k8s_validation import DecodeError, Obj, check_types

NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
GENERATE_ATTEMPTS = 8
SYSTEM_NAMESPACES = ("default", "kube-node-lease", "kube-public", "kube-system")
_CLOSE = "close"
_ABORT = "abort"


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class WriteContext:
    """Who is writing and how (HTTP requests carry a user; the Python API does not)."""

    user: UserInfo | None = None
    verb: str = "update"
    dry_run: bool = False
    require_namespace: bool = True


@dataclass(frozen=True)
class Event:
    rv: int
    type: str
    obj: Obj
    prev: Obj | None = None


class TooOldResourceVersion(ApiError):
    """Watch start RV older than the retained window (sent as a 200 stream + ERROR event)."""


# -- normalisation ------------------------------------------------------------------------------


def _is_raw(path: tuple[Any, ...]) -> bool:
    if len(path) >= 2 and path[-2:] == ("opaque", "parameters"):
        return True
    return len(path) == 4 and path[:2] == ("status", "devices") and path[3] == "data"


def prune(value: Any, path: tuple[Any, ...] = ()) -> Any:
    """Drop JSON nulls and empty lists like Go's decode+``omitempty`` encode would."""
    if _is_raw(path):
        return value
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if v is None:
                continue
            v = prune(v, (*path, k))
            if isinstance(v, list) and not v:
                continue
            out[k] = v
        return out
    if isinstance(value, list):
        return [prune(v, (*path, i)) for i, v in enumerate(value)]
    return value


def _prune_object(obj: Obj) -> Obj:
    obj = prune(obj)
    meta = obj.setdefault("metadata", {})
    for name in ("labels", "annotations"):
        if name in meta and not meta[name]:
            del meta[name]
    return obj


def _without_rv(obj: Obj) -> Obj:
    clone = copy.deepcopy(obj)
    clone.get("metadata", {}).pop("resourceVersion", None)
    return clone


# -- watchers -----------------------------------------------------------------------------------


class Watcher:
    """One open watch: receives committed events, filtered and converted for its selection."""

    def __init__(self, rt: ResourceType, selection: Selection) -> None:
        self.rt = rt
        self.selection = selection
        self.queue: asyncio.Queue[Any] = asyncio.Queue()

    def offer(self, event: Event) -> None:
        converted = self._convert(event)
        if converted is not None:
            self.queue.put_nowait({"type": converted[0], "object": converted[1]})

    def _convert(self, event: Event) -> tuple[str, Obj] | None:
        sel = self.selection
        now_ok = sel.matches(event.obj)
        if event.type != "MODIFIED" or event.prev is None:
            return (event.type, event.obj) if now_ok else None
        was_ok = sel.matches(event.prev)
        if now_ok:
            return ("MODIFIED" if was_ok else "ADDED", event.obj)
        if not was_ok:
            return None
        gone = copy.deepcopy(event.prev)
        gone["metadata"]["resourceVersion"] = str(event.rv)
        return ("DELETED", gone)

    def close(self, *, abrupt: bool = False) -> None:
        self.queue.put_nowait(_ABORT if abrupt else _CLOSE)

    @staticmethod
    def is_close(item: Any) -> bool:
        return item == _CLOSE

    @staticmethod
    def is_abort(item: Any) -> bool:
        return item == _ABORT


@dataclass
class _Bucket:
    objects: dict[tuple[str, str], Obj] = field(default_factory=dict)
    log: deque[Event] = field(default_factory=deque)
    window_start: int = 0


class Store:
    """Objects of all resource types, one global resourceVersion counter, event windows."""

    def __init__(self, registry: Registry, event_window: int) -> None:
        self.registry = registry
        self.event_window = max(1, event_window)
        self._rv = 0
        self._buckets = {rt: _Bucket(log=deque()) for rt in registry.types}
        self._strategies = {rt: strategy_for(rt) for rt in registry.types}
        self._watchers: set[Watcher] = set()
        self._subscribers: list[asyncio.Queue[Any]] = []
        self._changed: asyncio.Event | None = None
        self._namespaces = registry.by_name("namespaces")
        for name in SYSTEM_NAMESPACES:
            self.create(self._namespaces, {"metadata": {"name": name}}, None, WriteContext())

    # -- reads --------------------------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        return self._rv

    def strategy(self, rt: ResourceType) -> Strategy:
        return self._strategies[rt]

    def get(self, rt: ResourceType, name: str, namespace: str | None) -> Obj | None:
        return self._buckets[rt].objects.get((namespace or "", name))

    def require(self, rt: ResourceType, name: str, namespace: str | None) -> Obj:
        obj = self.get(rt, name, namespace)
        if obj is None:
            raise errors.not_found(rt.group, rt.plural, name)
        return obj

    def items(self, rt: ResourceType, selection: Selection) -> list[Obj]:
        objects = self._buckets[rt].objects
        return [objects[k] for k in sorted(objects) if selection.matches(objects[k])]

    def window_start(self, rt: ResourceType) -> int:
        return self._buckets[rt].window_start

    def namespace_exists(self, name: str) -> bool:
        return self.get(self._namespaces, name, None) is not None

    # -- commit / events ----------------------------------------------------------------------

    def _commit(self, rt: ResourceType, etype: str, obj: Obj, prev: Obj | None) -> Obj:
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        bucket = self._buckets[rt]
        ident = (obj["metadata"].get("namespace") or "", obj["metadata"]["name"])
        if etype == "DELETED":
            bucket.objects.pop(ident, None)
        else:
            bucket.objects[ident] = obj
        event = Event(self._rv, etype, copy.deepcopy(obj), copy.deepcopy(prev) if prev else None)
        if len(bucket.log) >= self.event_window:
            bucket.window_start = bucket.log.popleft().rv
        bucket.log.append(event)
        for watcher in list(self._watchers):
            if watcher.rt is rt:
                watcher.offer(event)
        for queue in self._subscribers:
            queue.put_nowait((etype, rt.name, copy.deepcopy(obj)))
        if self._changed is not None:
            self._changed.set()
            self._changed = None
        return copy.deepcopy(obj)

    async def wait_for_rv(self, rv: int, wait_s: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while self._rv < rv:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            if self._changed is None:
                self._changed = asyncio.Event()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                return False
        return True

    def subscribe(self) -> asyncio.Queue[Any]:
        queue: asyncio.Queue[Any] = asyncio.Queue()
        self._subscribers.append(queue)
        return queue

    # -- watch ----------------------------------------------------------------------------------

    def watch(self, rt: ResourceType, selection: Selection, since: int | None) -> Watcher:
        """Register a watcher; ``since`` None = synthetic ADDED of the current state first."""
        bucket = self._buckets[rt]
        watcher = Watcher(rt, selection)
        if since is None:
            for obj in self.items(rt, selection):
                watcher.queue.put_nowait({"type": "ADDED", "object": copy.deepcopy(obj)})
        else:
            if since < bucket.window_start:
                raise TooOldResourceVersion(
                    410, "Expired",
                    f"too old resource version: {since} ({bucket.window_start})",
                )
            for event in bucket.log:
                if event.rv > since:
                    watcher.offer(event)
        self._watchers.add(watcher)
        return watcher

    def unwatch(self, watcher: Watcher) -> None:
        self._watchers.discard(watcher)

    def drop_watches(self, *, abrupt: bool = False) -> None:
        for watcher in list(self._watchers):
            watcher.close(abrupt=abrupt)
        self._watchers.clear()

    def compact(self) -> None:
        for bucket in self._buckets.values():
            bucket.log.clear()
            bucket.window_start = self._rv

    # -- create ---------------------------------------------------------------------------------

    def _check_kind(self, rt: ResourceType, obj: Obj) -> None:
        kind, api_version = obj.get("kind"), obj.get("apiVersion")
        if kind and kind != rt.kind:
            raise errors.bad_request(
                f"the object provided is unrecognized (must be of type {rt.kind}): "
                f"kind {kind!r} does not match {rt.kind!r}")
        if api_version and api_version != rt.api_version:
            raise errors.bad_request(
                f"the API version in the data ({api_version}) does not match the expected "
                f"API version ({rt.api_version})")
        obj["kind"], obj["apiVersion"] = rt.kind, rt.api_version

    def decode(self, rt: ResourceType, obj: Any) -> Obj:
        """Check a request body decodes into the kind's Go type (400 otherwise)."""
        if not isinstance(obj, dict):
            raise errors.bad_request("the body of the request must be a JSON object")
        try:
            check_types(obj, full_schema(self.strategy(rt)), "")
        except DecodeError as err:
            raise errors.bad_request(str(err)) from None
        obj = copy.deepcopy(obj)
        self._check_kind(rt, obj)
        if not isinstance(obj.get("metadata", {}), dict):
            raise errors.bad_request("metadata must be an object")
        return obj

    def _namespace_for(self, rt: ResourceType, meta: Obj, namespace: str | None) -> None:
        if not rt.namespaced:
            meta.pop("namespace", None)
            return
        body_ns = meta.get("namespace") or ""
        if namespace and body_ns and body_ns != namespace:
            raise errors.bad_request(
                "the namespace of the provided object does not match the namespace sent on the "
                "request")
        meta["namespace"] = namespace or body_ns

    def create(self, rt: ResourceType, body: Obj, namespace: str | None, ctx: WriteContext) -> Obj:
        obj = self.decode(rt, body)
        meta = obj.setdefault("metadata", {})
        if meta.get("resourceVersion"):
            raise errors.bad_request("resourceVersion should not be set on objects to be created")
        self._namespace_for(rt, meta, namespace)
        generate = not meta.get("name") and meta.get("generateName")
        if generate:
            meta["name"] = self._generated_name(rt, meta)
        self._system_fields(rt, meta)
        self.strategy(rt).prepare_create(obj)
        obj = _prune_object(obj)
        meta = obj["metadata"]
        self._raise_invalid(rt, meta.get("name") or "", self.strategy(rt).validate(obj, rt))
        self._admit_namespace(rt, meta, ctx)
        ident = (meta.get("namespace") or "", meta["name"])
        if ident in self._buckets[rt].objects:
            raise errors.already_exists(rt.group, rt.plural, meta["name"])
        if ctx.dry_run:
            return obj
        return self._commit(rt, "ADDED", obj, None)

    def _generated_name(self, rt: ResourceType, meta: Obj) -> str:
        base = meta["generateName"][:58]
        for _ in range(GENERATE_ATTEMPTS):
            name = base + "".join(random.choice(NAME_ALPHABET) for _ in range(5))
            if (meta.get("namespace") or "", name) not in self._buckets[rt].objects:
                return name
        return name

    def _system_fields(self, rt: ResourceType, meta: Obj) -> None:
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_rfc3339()
        for name in ("deletionTimestamp", "deletionGracePeriodSeconds", "selfLink",
                     "managedFields", "generation"):
            meta.pop(name, None)
        if rt.generation:
            meta["generation"] = 1

    def _admit_namespace(self, rt: ResourceType, meta: Obj, ctx: WriteContext) -> None:
        """NamespaceLifecycle admission for namespaced objects."""
        if not rt.namespaced or not ctx.require_namespace:
            return
        ns = self.get(self._namespaces, meta["namespace"], None)
        if ns is None:
            raise errors.not_found("", "namespaces", meta["namespace"])
        if ns["metadata"].get("deletionTimestamp"):
            raise errors.forbidden_error(
                rt.group, rt.plural, meta["name"],
                f"unable to create new content in namespace {meta['namespace']} because it is "
                "being terminated")

    @staticmethod
    def _raise_invalid(rt: ResourceType, name: str, errs: list[FieldError]) -> None:
        if errs:
            raise errors.invalid_error(rt.group, rt.kind, name, errs)

    # -- update / patch -----------------------------------------------------------------------

    def update(
        self, rt: ResourceType, name: str, namespace: str | None, body: Obj,
        subresource: str | None, ctx: WriteContext,
    ) -> tuple[Obj, bool]:
        """PUT. Returns (object, created) - Leases and Events may be created by PUT."""
        obj = self.decode(rt, body)
        meta = obj.setdefault("metadata", {})
        if meta.get("name") != name:
            raise errors.bad_request(
                f"the name of the object ({meta.get('name') or ''}) does not match the name on "
                f"the URL ({name})")
        self._namespace_for(rt, meta, namespace)
        old = self.get(rt, name, namespace)
        if old is None:
            if subresource is None and rt.create_on_update and not meta.get("resourceVersion"):
                meta.pop("uid", None)
                return self.create(rt, obj, namespace, ctx), True
            raise errors.not_found(rt.group, rt.plural, name)
        return self._update_existing(rt, old, obj, subresource, ctx), False

    def patch(
        self, rt: ResourceType, name: str, namespace: str | None, patch: Any,
        content_type: str, subresource: str | None, ctx: WriteContext,
    ) -> Obj:
        old = self.require(rt, name, namespace)
        new = apply_patch(old, patch, content_type, strategic_schema(rt.plural, rt.group))
        if not isinstance(new, dict):
            raise errors.invalid_error("", "", "", [errors.invalid(
                "patch", "<patched object>", "the patched object must be a JSON object")])
        try:
            check_types(new, full_schema(self.strategy(rt)), "")
        except DecodeError as err:
            raise errors.invalid_error("", "", "", [errors.invalid(
                "patch", "<patched object>", str(err))]) from None
        meta = new.setdefault("metadata", {})
        if meta.get("name") != name:
            raise errors.bad_request(
                f"the name of the object ({meta.get('name') or ''}) does not match the name on "
                f"the URL ({name})")
        if (meta.get("namespace") or "") != (old["metadata"].get("namespace") or ""):
            raise errors.bad_request(
                "the namespace of the provided object does not match the namespace sent on the "
                "request")
        new["kind"], new["apiVersion"] = rt.kind, rt.api_version
        return self._update_existing(rt, old, new, subresource, ctx)

    def _preconditions(self, rt: ResourceType, new_meta: Obj, old_meta: Obj) -> None:
        uid = new_meta.get("uid")
        name = old_meta["name"]
        if uid and uid != old_meta["uid"]:
            raise errors.conflict(
                rt.group, rt.plural, name,
                f"Precondition failed: UID in precondition: {uid}, UID in object meta: "
                f"{old_meta['uid']}")
        rv = new_meta.get("resourceVersion")
        if rv:
            if rv != old_meta["resourceVersion"]:
                raise errors.conflict(rt.group, rt.plural, name)
        elif not rt.unconditional_update:
            raise errors.invalid_error(rt.group, rt.plural, name, [errors.invalid(
                "metadata.resourceVersion", 0, "must be specified for an update")])

    def _update_existing(
        self, rt: ResourceType, old: Obj, new: Obj, subresource: str | None, ctx: WriteContext,
    ) -> Obj:
        meta, old_meta = new.setdefault("metadata", {}), old["metadata"]
        self._preconditions(rt, meta, old_meta)
        for name in ("uid", "creationTimestamp", "deletionTimestamp",
                     "deletionGracePeriodSeconds", "generation", "namespace"):
            if name in old_meta:
                meta[name] = old_meta[name]
            else:
                meta.pop(name, None)
        for name in ("selfLink", "managedFields"):
            meta.pop(name, None)
        if subresource == "status":
            prepare_status_update(rt, new, old)
        else:
            prepare_update(rt, new, old)
        new = _prune_object(new)
        meta = new["metadata"]
        if rt.generation and new.get("spec") != old.get("spec"):
            meta["generation"] = int(old_meta.get("generation") or 0) + 1
        self._validate_update(rt, new, old, subresource, ctx)
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            return self._remove(rt, old, ctx)
        if _without_rv(new) == _without_rv(old):
            return copy.deepcopy(old)
        if ctx.dry_run:
            return new
        return self._commit(rt, "MODIFIED", new, old)

    def _validate_update(
        self, rt: ResourceType, new: Obj, old: Obj, subresource: str | None, ctx: WriteContext,
    ) -> None:
        strategy = self.strategy(rt)
        if subresource == "status":
            errs = strategy.validate_status(new, old, rt)
            if rt.plural == "resourceclaims" and ctx.user is not None:
                errs += claim_status_authz(
                    ctx.user, ctx.verb, new["metadata"].get("namespace") or "",
                    new.get("status") or {}, old.get("status") or {})
        else:
            errs = strategy.check_update(new, old, rt)
        self._raise_invalid(rt, new["metadata"]["name"], errs)

    # -- delete ---------------------------------------------------------------------------------

    def delete(
        self, rt: ResourceType, name: str, namespace: str | None, options: Obj,
        ctx: WriteContext,
    ) -> tuple[Obj, bool]:
        """DELETE. Returns (object, deleted_now); objects with finalizers are only marked."""
        old = self.require(rt, name, namespace)
        self._delete_preconditions(rt, old["metadata"], options.get("preconditions") or {})
        if rt is self._namespaces:
            return self._delete_namespace(old, ctx)
        return self._delete_object(rt, old, ctx)

    def _delete_preconditions(self, rt: ResourceType, meta: Obj, pre: Obj) -> None:
        if pre.get("uid") and pre["uid"] != meta["uid"]:
            raise errors.conflict(
                rt.group, rt.plural, meta["name"],
                f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: "
                f"{meta['uid']}")
        if pre.get("resourceVersion") and pre["resourceVersion"] != meta["resourceVersion"]:
            raise errors.conflict(
                rt.group, rt.plural, meta["name"],
                f"Precondition failed: ResourceVersion in precondition: "
                f"{pre['resourceVersion']}, ResourceVersion in object meta: "
                f"{meta['resourceVersion']}")

    def _delete_object(self, rt: ResourceType, old: Obj, ctx: WriteContext) -> tuple[Obj, bool]:
        meta = old["metadata"]
        if not meta.get("finalizers"):
            return self._remove(rt, old, ctx), True
        if meta.get("deletionTimestamp"):
            return copy.deepcopy(old), False
        new = copy.deepcopy(old)
        new_meta = new["metadata"]
        new_meta["deletionTimestamp"] = now_rfc3339()
        new_meta["deletionGracePeriodSeconds"] = 0
        if int(new_meta.get("generation") or 0) > 0:
            new_meta["generation"] = int(new_meta["generation"]) + 1
        if ctx.dry_run:
            return new, False
        return self._commit(rt, "MODIFIED", new, old), False

    def _remove(self, rt: ResourceType, old: Obj, ctx: WriteContext) -> Obj:
        gone = copy.deepcopy(old)
        if ctx.dry_run:
            return gone
        result = self._commit(rt, "DELETED", gone, None)
        namespace = gone["metadata"].get("namespace")
        if rt.namespaced and namespace:
            self._finalize_namespace(namespace)
        return result

    def _namespaced_objects(self, namespace: str) -> Iterator[tuple[ResourceType, Obj]]:
        for rt, bucket in self._buckets.items():
            if rt.namespaced:
                for (ns, _), obj in list(bucket.objects.items()):
                    if ns == namespace:
                        yield rt, obj

    def _delete_namespace(self, old: Obj, ctx: WriteContext) -> tuple[Obj, bool]:
        if ctx.dry_run:
            return copy.deepcopy(old), False
        name = old["metadata"]["name"]
        if not old["metadata"].get("deletionTimestamp"):
            marked = copy.deepcopy(old)
            marked["metadata"]["deletionTimestamp"] = now_rfc3339()
            marked["metadata"]["deletionGracePeriodSeconds"] = 0
            marked["status"] = {"phase": "Terminating"}
            self._commit(self._namespaces, "MODIFIED", marked, old)
        for rt, obj in list(self._namespaced_objects(name)):
            self._delete_object(rt, obj, WriteContext())
        final = self.get(self._namespaces, name, None)
        if final is None:
            return copy.deepcopy(old), True
        self._finalize_namespace(name)
        current = self.get(self._namespaces, name, None)
        return copy.deepcopy(current or final), current is None

    def _finalize_namespace(self, namespace: str) -> None:
        ns = self.get(self._namespaces, namespace, None)
        if ns is None or not ns["metadata"].get("deletionTimestamp"):
            return
        if next(self._namespaced_objects(namespace), None) is None:
            self._commit(self._namespaces, "DELETED", copy.deepcopy(ns), None)

    # -- pods/binding -----------------------------------------------------------------------------

    def bind_pod(self, binding: Obj, namespace: str | None, ctx: WriteContext) -> None:
        """POST pods/{name}/binding (what the scheduler uses to set ``spec.nodeName``)."""
        pods = self.registry.by_name("pods")
        meta = binding.get("metadata") or {}
        name = meta.get("name") or ""
        ns = namespace or meta.get("namespace") or ""
        target = binding.get("target") or {}
        if not target.get("name"):
            raise errors.invalid_error("", "Binding", name, [errors.required("target.name")])
        pod = self.require(pods, name, ns)
        assigned = (pod.get("spec") or {}).get("nodeName")
        if assigned:
            detail = f"pod {name} is already assigned to node {errors.go_quote(assigned)}"
            raise errors.conflict("", "pods", name, detail)
        if pod["metadata"].get("deletionTimestamp"):
            raise errors.conflict("", "pods", name, f"pod {name} is being deleted, cannot be "
                                                    "assigned to a host")
        new = copy.deepcopy(pod)
        new["spec"]["nodeName"] = target["name"]
        conditions = [c for c in new.setdefault("status", {}).get("conditions") or []
                      if c.get("type") != "PodScheduled"]
        conditions.append({"type": "PodScheduled", "status": "True",
                           "lastTransitionTime": now_rfc3339()})
        new["status"]["conditions"] = conditions
        if not ctx.dry_run:
            self._commit(pods, "MODIFIED", new, pod)

