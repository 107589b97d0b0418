"""Simulators of the kube-scheduler DRA plugin and of the kcm resourceclaim controller.

They talk to :class:`bridge.testkit.apiserver.FakeKubeAPI` through its in-process Python API
and follow KEP-5007 (DRADeviceBindingConditions) as described in
``docs/k8s-bridge-notes.md`` §2.3:

* allocation (a subset of the structured allocator): current, complete pools only; pools
  without binding conditions before pools with them; first fit in (pool, slice, device)
  order; DeviceClass and request CEL selectors (:mod:`bridge.testkit.cel`); ExactCount and
  All modes, ``firstAvailable``, device taints vs. request tolerations;
* PreBind ``bindClaim``: finalizer, ``status.allocation`` (+ ``allocationTimestamp``) and
  ``reservedFor`` in one status update, then polling ``isClaimReadyForBinding`` until ready,
  failed ("claim X binding failed: reason=..., message=...") or timed out ("claim X binding
  timeout");
* on failure/timeout Unreserve + PostFilter: the pod leaves ``reservedFor`` and the claim is
  deallocated when nobody else holds it; the attempt is retried with the failed devices
  excluded (the real scheduler does not exclude them: it relies on the driver to);
* the claim controller removes finished pods from ``reservedFor``, deallocates claims nobody
  holds, drops the finalizer and deletes claims generated for pods that are gone.

Deliberate differences from the real scheduler are listed where they occur ("Simulator:").
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple, Protocol

from bridge.testkit import cel

log = logging.getLogger(__name__)

FINALIZER = "resource.kubernetes.io/delete-protection"
POD_CLAIM_NAME_ANNOTATION = "resource.kubernetes.io/pod-claim-name"
MAX_RESERVED_FOR = 256
TERMINAL_PHASES = ("Succeeded", "Failed")
UNTOLERATED_EFFECTS = ("NoSchedule", "NoExecute")
METRIC_KEYS = ("schedule_attempts", "pods_bound", "unschedulable", "prebind_waits",
               "allocations_success", "allocations_failure", "allocations_timeout",
               "deallocations")
WATCHED_BY_SCHEDULER = frozenset({"pods", "nodes", "resourceslices", "resourceclaims",
                                  "deviceclasses", "resourceclaimtemplates"})
WATCHED_BY_CONTROLLER = frozenset({"pods", "resourceclaims", "resourceclaimtemplates"})

Obj = dict[str, Any]


class KubeAPI(Protocol):
    """The part of FakeKubeAPI's Python API the simulators use."""

    def create(self, resource: str, obj: Obj) -> Obj: ...
    def get(self, resource: str, name: str, namespace: str | None = None) -> Obj | None: ...
    def list(self, resource: str, namespace: str | None = None) -> list[Obj]: ...
    def update(self, resource: str, obj: Obj, *, subresource: str | None = None) -> Obj: ...
    def delete(self, resource: str, name: str, namespace: str | None = None) -> None: ...
    def subscribe(self) -> asyncio.Queue: ...


class DeviceID(NamedTuple):
    driver: str
    pool: str
    device: str

    def __str__(self) -> str:
        return f"{self.driver}/{self.pool}/{self.device}"


class Unschedulable(Exception):
    """The pod cannot be scheduled in this attempt; ``retry``: worth another attempt now."""

    def __init__(self, message: str, *, retry: bool = False) -> None:
        super().__init__(message)
        self.retry = retry


class AllocationError(Exception):
    """The allocator aborts (CEL compile/runtime error, unsupported feature...)."""


class Gone(Exception):
    """The object to update no longer exists."""


@dataclass
class ScheduleResult:
    node: str | None
    attempts: int
    failures: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# Small object helpers


def meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def spec(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("spec") or {}


def status(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("status") or {}


def now_rfc3339(now: float) -> str:
    """metav1.Time: RFC 3339 with second precision."""
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(value: Any) -> float | None:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def api_status(exc: BaseException) -> int | None:
    """HTTP status of an ApiError (duck-typed, so this module does not need the fake)."""
    code = getattr(exc, "status", None)
    return code if isinstance(code, int) else None


def pod_is_done(pod: Mapping[str, Any]) -> bool:
    """kcm's isPodDone: terminal, or deleted before it was ever scheduled."""
    if status(pod).get("phase") in TERMINAL_PHASES:
        return True
    return bool(meta(pod).get("deletionTimestamp")) and not spec(pod).get("nodeName")


def pod_ref(pod: Mapping[str, Any]) -> Obj:
    return {"resource": "pods", "name": meta(pod).get("name"), "uid": meta(pod).get("uid")}


def is_reserved_for(claim: Mapping[str, Any], pod: Mapping[str, Any]) -> bool:
    uid = meta(pod).get("uid")
    return any(ref.get("resource") == "pods" and ref.get("uid") == uid
               for ref in status(claim).get("reservedFor") or [])


def allocation_results(claim: Mapping[str, Any]) -> list[Obj]:
    allocation = status(claim).get("allocation") or {}
    return list((allocation.get("devices") or {}).get("results") or [])


def result_id(result: Mapping[str, Any]) -> DeviceID:
    return DeviceID(str(result.get("driver")), str(result.get("pool")),
                    str(result.get("device")))


def allocated_devices(claims: Iterable[Mapping[str, Any]]) -> set[DeviceID]:
    """Devices in any claim's ``status.allocation`` (they are not free)."""
    return {result_id(r) for claim in claims for r in allocation_results(claim)}


def update_with_retry(api: KubeAPI, resource: str, name: str, namespace: str | None,
                      mutate: Callable[[Obj], bool], *, subresource: str | None = None,
                      attempts: int = 10) -> Obj:
    """GET, mutate (returns False: nothing to write) and PUT with the read resourceVersion;
    retried on 409 Conflict. Raises Gone when the object does not exist."""
    for _ in range(attempts):
        obj = api.get(resource, name, namespace)
        if obj is None:
            raise Gone(f"{resource} {namespace}/{name} not found")
        if not mutate(obj):
            return obj
        try:
            return api.update(resource, obj, subresource=subresource)
        except Exception as exc:
            if api_status(exc) == 404:
                raise Gone(f"{resource} {namespace}/{name} not found") from exc
            if api_status(exc) != 409:
                raise
    raise Unschedulable(f"too many conflicts updating {resource} {namespace}/{name}",
                        retry=True)


# --------------------------------------------------------------------------------------------
# Node selectors


def _requirement_matches(requirement: Mapping[str, Any], value: str | None) -> bool:
    operator = requirement.get("operator")
    values = [str(v) for v in requirement.get("values") or []]
    if operator == "In":
        return value is not None and value in values
    if operator == "NotIn":
        return value is None or value not in values
    if operator == "Exists":
        return value is not None
    if operator == "DoesNotExist":
        return value is None
    if operator in ("Gt", "Lt") and value is not None and len(values) == 1:
        try:
            left, right = int(value), int(values[0])
        except ValueError:
            return False
        return left > right if operator == "Gt" else left < right
    return False


def node_selector_term_matches(term: Mapping[str, Any], node: Mapping[str, Any]) -> bool:
    """matchExpressions on labels AND matchFields on metadata.name; an empty term matches
    nothing (as in Kubernetes)."""
    expressions = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not expressions and not fields:
        return False
    labels = meta(node).get("labels") or {}
    for requirement in expressions:
        if not _requirement_matches(requirement, labels.get(requirement.get("key"))):
            return False
    for requirement in fields:
        value = meta(node).get("name") if requirement.get("key") == "metadata.name" else None
        if requirement.get("key") != "metadata.name" or not _requirement_matches(
                requirement, value):
            return False
    return True


def node_selector_matches(selector: Mapping[str, Any] | None, node: Mapping[str, Any]) -> bool:
    """A v1.NodeSelector (terms ORed). ``None`` means "no restriction"."""
    if selector is None:
        return True
    return any(node_selector_term_matches(term, node)
               for term in selector.get("nodeSelectorTerms") or [])


def pod_fits_node(pod: Mapping[str, Any], node: Mapping[str, Any]) -> bool:
    """``spec.nodeSelector``, required node affinity and ``spec.unschedulable``.
    Simulator: node taints and pod tolerations are not considered."""
    if spec(node).get("unschedulable"):
        return False
    labels = meta(node).get("labels") or {}
    if any(labels.get(k) != v for k, v in (spec(pod).get("nodeSelector") or {}).items()):
        return False
    affinity = ((spec(pod).get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution")
    return affinity is None or node_selector_matches(affinity, node)


# --------------------------------------------------------------------------------------------
# Pools


@dataclass
class Pool:
    driver: str
    name: str
    generation: int
    slices: list[Obj] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        counts = {int(spec(s).get("pool", {}).get("resourceSliceCount") or 0)
                  for s in self.slices}
        return len(counts) == 1 and counts.pop() == len(self.slices)

    @property
    def has_binding_conditions(self) -> bool:
        return any(d.get("bindingConditions") for s in self.slices
                   for d in spec(s).get("devices") or [])


def _selection_matches(selection: Mapping[str, Any], node: Mapping[str, Any]) -> bool:
    """nodeName | nodeSelector | allNodes of a slice (or a device, per-device mode)."""
    if selection.get("nodeName"):
        return selection["nodeName"] == meta(node).get("name")
    if selection.get("allNodes"):
        return True
    if selection.get("nodeSelector") is not None:
        return node_selector_matches(selection["nodeSelector"], node)
    return False


def _slice_relevant(slice_: Mapping[str, Any], node: Mapping[str, Any]) -> bool:
    body = spec(slice_)
    return bool(body.get("perDeviceNodeSelection")) or _selection_matches(body, node)


def gather_pools(slices: Iterable[Mapping[str, Any]], node: Mapping[str, Any]) -> list[Pool]:
    """The pools visible from ``node``, highest generation only, ordered like the allocator
    with binding conditions enabled: pools without binding conditions first, then by
    (driver, pool name)."""
    pools: dict[tuple[str, str], Pool] = {}
    for slice_ in slices:
        if not _slice_relevant(slice_, node):
            continue
        body = spec(slice_)
        key = (str(body.get("driver")), str((body.get("pool") or {}).get("name")))
        generation = int((body.get("pool") or {}).get("generation") or 0)
        pool = pools.get(key)
        if pool is None or generation > pool.generation:
            pools[key] = pool = Pool(key[0], key[1], generation)
        if generation == pool.generation:
            pool.slices.append(dict(slice_))
    ordered = sorted(pools.values(), key=lambda p: (p.driver, p.name))
    return sorted(ordered, key=lambda p: p.has_binding_conditions)


@dataclass(frozen=True)
class Candidate:
    id: DeviceID
    device: Mapping[str, Any]
    slice: Mapping[str, Any]

    @property
    def binds_to_node(self) -> bool:
        return bool(self.device.get("bindsToNode"))


def iter_candidates(pools: Iterable[Pool], node: Mapping[str, Any]) -> Iterator[Candidate]:
    """Devices of complete pools, first-fit order: pool order as given, then slice name,
    then device name. Simulator: the real allocator keeps the devices' order in the slice."""
    for pool in pools:
        if not pool.complete:
            continue
        for slice_ in sorted(pool.slices, key=lambda s: str(meta(s).get("name"))):
            per_device = bool(spec(slice_).get("perDeviceNodeSelection"))
            devices = sorted(spec(slice_).get("devices") or [], key=lambda d: str(d.get("name")))
            for device in devices:
                if per_device and not _selection_matches(device, node):
                    continue
                yield Candidate(DeviceID(pool.driver, pool.name, str(device.get("name"))),
                                device, slice_)


# --------------------------------------------------------------------------------------------
# Allocator


def request_alternatives(request: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """(result request name, exact request) pairs: ``exactly``, ``firstAvailable`` (tried in
    order, named ``<req>/<sub>``) or the flat v1beta1 form."""
    name = str(request.get("name"))
    if request.get("exactly") is not None:
        return [(name, request["exactly"])]
    if request.get("firstAvailable"):
        return [(f"{name}/{sub.get('name')}", sub) for sub in request["firstAvailable"]]
    return [(name, request)]


def _tolerates(taint: Mapping[str, Any], tolerations: Iterable[Mapping[str, Any]]) -> bool:
    for toleration in tolerations:
        if toleration.get("effect") and toleration.get("effect") != taint.get("effect"):
            continue
        if toleration.get("operator") == "Exists":
            if not toleration.get("key") or toleration.get("key") == taint.get("key"):
                return True
        elif (toleration.get("key") == taint.get("key")
              and toleration.get("value", "") == taint.get("value", "")):
            return True
    return False


def taints_tolerated(device: Mapping[str, Any], tolerations: Iterable[Mapping[str, Any]]) -> bool:
    tolerations = list(tolerations)
    return all(_tolerates(taint, tolerations) for taint in device.get("taints") or []
               if taint.get("effect") in UNTOLERATED_EFFECTS)


def allocation_node_selector(picks: Iterable[Candidate], node: str) -> Obj | None:
    """``metadata.name In [node]`` when any device binds to the node; otherwise the
    intersection of the slices' (or devices') node selection, None for allNodes only."""
    picks = list(picks)
    if any(p.binds_to_node for p in picks):
        return {"nodeSelectorTerms": [{"matchFields": [
            {"key": "metadata.name", "operator": "In", "values": [node]}]}]}
    expressions: list[Obj] = []
    fields: list[Obj] = []
    for pick in picks:
        body = pick.device if spec(pick.slice).get("perDeviceNodeSelection") else spec(
            pick.slice)
        if body.get("nodeName"):
            fields.append({"key": "metadata.name", "operator": "In",
                           "values": [body["nodeName"]]})
        elif body.get("nodeSelector") is not None:
            for term in body["nodeSelector"].get("nodeSelectorTerms") or []:
                expressions.extend(term.get("matchExpressions") or [])
                fields.extend(term.get("matchFields") or [])
    term = {k: v for k, v in (("matchExpressions", expressions), ("matchFields", fields)) if v}
    return {"nodeSelectorTerms": [copy.deepcopy(term)]} if term else None


def _result(request: str, pick: Candidate, exact: Mapping[str, Any]) -> Obj:
    result: Obj = {"request": request, "driver": pick.id.driver, "pool": pick.id.pool,
                   "device": pick.id.device}
    if exact.get("tolerations"):
        result["tolerations"] = copy.deepcopy(exact["tolerations"])
    for key in ("bindingConditions", "bindingFailureConditions"):
        if pick.device.get(key):
            result[key] = list(pick.device[key])
    return result


def _unsupported(claim: Mapping[str, Any], exact: Mapping[str, Any]) -> str | None:
    if (spec(claim).get("devices") or {}).get("constraints"):
        return "constraints (matchAttribute/distinctAttribute)"
    if exact.get("adminAccess"):
        return "adminAccess"
    if exact.get("capacity"):
        return "consumable capacity requests"
    if exact.get("allocationMode", "ExactCount") not in ("ExactCount", "All"):
        return f"allocationMode {exact.get('allocationMode')}"
    return None


@dataclass
class _Picked:
    claim: Mapping[str, Any]
    picks: list[tuple[str, Candidate, Mapping[str, Any]]] = field(default_factory=list)


class Allocator:
    """The allocator subset. ``cel_runtime_errors``: "abort" (the real allocator: a CEL
    runtime error such as a missing attribute aborts the allocation attempt with
    "class X: selector #i: CEL runtime error: ...") or "nomatch" (treat as not matching)."""

    def __init__(self, *, cel_runtime_errors: Literal["abort", "nomatch"] = "abort") -> None:
        self.cel_runtime_errors = cel_runtime_errors
        self._programs: dict[str, cel.Program | cel.CelError] = {}

    def program(self, expression: str, owner: str, index: int) -> cel.Program:
        compiled = self._programs.get(expression)
        if compiled is None:
            try:
                compiled = cel.compile_expression(expression)
            except cel.CelError as exc:
                compiled = exc
            self._programs[expression] = compiled
        if isinstance(compiled, cel.CelError):
            raise AllocationError(f"{owner}: selector #{index}: CEL compile error: {compiled}")
        return compiled

    def selectors_match(self, candidate: Candidate, selectors: Iterable[Mapping[str, Any]],
                        owner: str) -> bool:
        device = cel.cel_device(candidate.id.driver, candidate.device)
        for index, selector in enumerate(selectors):
            expression = (selector.get("cel") or {}).get("expression")
            if expression is None:
                raise AllocationError(f"{owner}: selector #{index}: only CEL selectors are "
                                      "supported")
            try:
                if not self.program(expression, owner, index).evaluate(device):
                    return False
            except cel.CelEvalError as exc:
                if self.cel_runtime_errors == "nomatch":
                    return False
                raise AllocationError(f"{owner}: selector #{index}: CEL runtime error: "
                                      f"{exc}") from None
        return True

    def device_matches(self, candidate: Candidate, device_class: Mapping[str, Any],
                       exact: Mapping[str, Any], claim: Mapping[str, Any]) -> bool:
        if not taints_tolerated(candidate.device, exact.get("tolerations") or []):
            return False
        class_owner = f"class {meta(device_class).get('name')}"
        if not self.selectors_match(candidate, spec(device_class).get("selectors") or [],
                                    class_owner):
            return False
        claim_owner = f"claim {meta(claim).get('namespace')}/{meta(claim).get('name')}"
        return self.selectors_match(candidate, exact.get("selectors") or [], claim_owner)

    def _pick_exact(self, exact: Mapping[str, Any], device_class: Mapping[str, Any],
                    claim: Mapping[str, Any], candidates: list[Candidate],
                    taken: set[DeviceID]) -> list[Candidate] | None:
        count = int(exact.get("count") or 1)
        picked: list[Candidate] = []
        for candidate in candidates:
            # As in the real allocator, the cheap "in use" check comes before the selectors.
            if candidate.id in taken or any(p.id == candidate.id for p in picked):
                continue
            if self.device_matches(candidate, device_class, exact, claim):
                picked.append(candidate)
                if len(picked) == count:
                    return picked
        return None

    def _pick_all(self, exact: Mapping[str, Any], device_class: Mapping[str, Any],
                  claim: Mapping[str, Any], candidates: list[Candidate], taken: set[DeviceID],
                  pools: list[Pool]) -> list[Candidate] | None:
        matching = [c for c in candidates
                    if self.device_matches(c, device_class, exact, claim)]
        if any(not p.complete for p in pools):
            raise AllocationError(f"claim {meta(claim).get('name')}: asks for all devices, "
                                  "but a resource pool is currently being updated")
        if not matching or any(c.id in taken for c in matching):
            return None
        return matching

    def _allocate_request(self, request: Mapping[str, Any], claim: Mapping[str, Any],
                          classes: Mapping[str, Mapping[str, Any]],
                          candidates: list[Candidate], taken: set[DeviceID],
                          pools: list[Pool]) -> tuple[str, list[Candidate], Mapping] | None:
        for name, exact in request_alternatives(request):
            unsupported = _unsupported(claim, exact)
            if unsupported:
                raise AllocationError(f"claim {meta(claim).get('name')}: {unsupported} is not "
                                      "supported by the scheduler simulator")
            class_name = exact.get("deviceClassName")
            device_class = classes.get(str(class_name))
            if device_class is None:
                raise AllocationError(f"request {name}: device class {class_name} does not "
                                      "exist")
            if exact.get("allocationMode") == "All":
                picks = self._pick_all(exact, device_class, claim, candidates, taken, pools)
            else:
                picks = self._pick_exact(exact, device_class, claim, candidates, taken)
            if picks is not None:
                return name, picks, exact
        return None

    def allocate(self, claims: Iterable[Mapping[str, Any]], node: Mapping[str, Any],
                 pools: list[Pool], classes: Mapping[str, Mapping[str, Any]],
                 unavailable: set[DeviceID]) -> dict[str, Obj] | None:
        """Allocations (claim name -> ``status.allocation`` without timestamp) for all
        ``claims`` on ``node``, or None when they do not fit. Greedy: no backtracking
        (Simulator: the real allocator backtracks across requests)."""
        candidates = list(iter_candidates(pools, node))
        taken = set(unavailable)
        out: dict[str, Obj] = {}
        for claim in claims:
            picked = _Picked(claim)
            for request in (spec(claim).get("devices") or {}).get("requests") or []:
                found = self._allocate_request(request, claim, classes, candidates, taken,
                                               pools)
                if found is None:
                    return None
                name, picks, exact = found
                taken.update(p.id for p in picks)
                picked.picks.extend((name, p, exact) for p in picks)
            out[str(meta(claim).get("name"))] = build_allocation(
                picked, classes, str(meta(node).get("name")))
        return out


def _config(picked: _Picked, classes: Mapping[str, Mapping[str, Any]]) -> list[Obj]:
    config: list[Obj] = []
    for request, _, exact in {name: (name, p, e) for name, p, e in picked.picks}.values():
        device_class = classes.get(str(exact.get("deviceClassName"))) or {}
        for entry in spec(device_class).get("config") or []:
            config.append({"source": "FromClass", "requests": [request],
                           **copy.deepcopy(dict(entry))})
    for entry in (spec(picked.claim).get("devices") or {}).get("config") or []:
        config.append({"source": "FromClaim", **copy.deepcopy(dict(entry))})
    return config


def build_allocation(picked: _Picked, classes: Mapping[str, Mapping[str, Any]],
                     node: str) -> Obj:
    devices: Obj = {"results": [_result(name, pick, exact) for name, pick, exact in
                                picked.picks]}
    config = _config(picked, classes)
    if config:
        devices["config"] = config
    allocation: Obj = {"devices": devices}
    selector = allocation_node_selector([p for _, p, _ in picked.picks], node)
    if selector is not None:
        allocation["nodeSelector"] = selector
    return allocation


# --------------------------------------------------------------------------------------------
# PreBind readiness


@dataclass(frozen=True)
class BindingStatus:
    ready: bool
    failure: str | None = None
    failed: frozenset[DeviceID] = frozenset()    # devices whose failure condition is True
    pending: frozenset[DeviceID] = frozenset()   # devices with binding conditions not met


def _condition_true(entry: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for condition in entry.get("conditions") or []:
        if condition.get("type") == kind and condition.get("status") == "True":
            return condition
    return None


def _device_status(claim: Mapping[str, Any], result: Mapping[str, Any]) -> Obj | None:
    wanted = result_id(result)
    return next((e for e in status(claim).get("devices") or []
                 if (e.get("driver"), e.get("pool"), e.get("device")) == wanted), None)


def claim_binding_status(claim: Mapping[str, Any]) -> BindingStatus:
    """isClaimReadyForBinding: results are checked in order, the first one not ready ends
    the check (a later result's failure is only seen once the earlier ones are ready);
    ``pending`` still lists every device whose binding conditions are not all True."""
    name = meta(claim).get("name")
    if not status(claim).get("allocation"):
        return BindingStatus(False)
    pending: list[DeviceID] = []
    for result in allocation_results(claim):
        if not result.get("bindingConditions"):
            continue
        entry = _device_status(claim, result)
        if entry is not None and not pending:
            for kind in result.get("bindingFailureConditions") or []:
                condition = _condition_true(entry, kind)
                if condition is not None:
                    return BindingStatus(
                        False, f"claim {name} binding failed: reason={condition.get('reason')},"
                               f" message={condition.get('message')}",
                        failed=frozenset({result_id(result)}))
        if entry is None or not all(_condition_true(entry, kind)
                                    for kind in result["bindingConditions"]):
            pending.append(result_id(result))
    return BindingStatus(not pending, pending=frozenset(pending))


def needs_binding_conditions(claim: Mapping[str, Any]) -> bool:
    return any(r.get("bindingConditions") for r in allocation_results(claim))


def binding_deadline(claim: Mapping[str, Any], timeout_s: float,
                     exact_times: Mapping[tuple[str, str], float] | None = None) -> float | None:
    """allocationTimestamp + timeout. ``exact_times`` maps (claim uid, timestamp) pairs this
    scheduler wrote to the exact clock value (Simulator: metav1.Time has second precision,
    which would make sub-second test timeouts fire early). None without a timestamp."""
    stamp = (status(claim).get("allocation") or {}).get("allocationTimestamp")
    if not stamp:
        return None
    started = (exact_times or {}).get((str(meta(claim).get("uid")), str(stamp)))
    if started is None:
        started = parse_rfc3339(stamp)
    return None if started is None else started + timeout_s


# --------------------------------------------------------------------------------------------
# Pod claims (the resourceclaim controller's template handling)


def owning_pod_uid(claim: Mapping[str, Any]) -> str | None:
    """UID of the pod a claim was generated for (controller owner reference + annotation)."""
    if POD_CLAIM_NAME_ANNOTATION not in (meta(claim).get("annotations") or {}):
        return None
    for ref in meta(claim).get("ownerReferences") or []:
        if ref.get("kind") == "Pod" and ref.get("controller"):
            return str(ref.get("uid"))
    return None


def _find_generated(api: KubeAPI, pod: Mapping[str, Any], pod_claim: str) -> Obj | None:
    uid = meta(pod).get("uid")
    for claim in api.list("resourceclaims", meta(pod).get("namespace")):
        annotations = meta(claim).get("annotations") or {}
        if owning_pod_uid(claim) == uid and annotations.get(
                POD_CLAIM_NAME_ANNOTATION) == pod_claim:
            return claim
    return None


def _claim_from_template(api: KubeAPI, pod: Mapping[str, Any], pod_claim: str,
                         template_name: str) -> Obj:
    namespace = meta(pod).get("namespace")
    template = api.get("resourceclaimtemplates", template_name, namespace)
    if template is None:
        raise Unschedulable(f'resourceclaimtemplate "{template_name}" not found')
    template_meta = spec(template).get("metadata") or {}
    body = {
        "apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
        "metadata": {
            "generateName": f"{str(meta(pod).get('name'))[:28]}-{pod_claim[:28]}-",
            "namespace": namespace,
            "labels": dict(template_meta.get("labels") or {}),
            "annotations": {**(template_meta.get("annotations") or {}),
                            POD_CLAIM_NAME_ANNOTATION: pod_claim},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Pod",
                                 "name": meta(pod).get("name"), "uid": meta(pod).get("uid"),
                                 "controller": True, "blockOwnerDeletion": True}],
        },
        "spec": copy.deepcopy(spec(template).get("spec") or {}),
    }
    return api.create("resourceclaims", body)


def _record_claim_status(api: KubeAPI, pod: Mapping[str, Any], pod_claim: str,
                         claim_name: str) -> None:
    def mutate(obj: Obj) -> bool:
        statuses = obj.setdefault("status", {}).setdefault("resourceClaimStatuses", [])
        if any(s.get("name") == pod_claim for s in statuses):
            return False
        statuses.append({"name": pod_claim, "resourceClaimName": claim_name})
        return True

    with contextlib.suppress(Gone):
        update_with_retry(api, "pods", str(meta(pod).get("name")), meta(pod).get("namespace"),
                          mutate, subresource="status")


def _generated_claim(api: KubeAPI, pod: Mapping[str, Any], pod_claim: str,
                     template_name: str) -> Obj:
    namespace = meta(pod).get("namespace")
    recorded = {s.get("name"): s.get("resourceClaimName")
                for s in status(pod).get("resourceClaimStatuses") or []}
    claim: Obj | None
    if recorded.get(pod_claim):
        claim = api.get("resourceclaims", str(recorded[pod_claim]), namespace)
        if claim is None:
            raise Unschedulable(f'resourceclaim "{recorded[pod_claim]}" not found')
        if owning_pod_uid(claim) != meta(pod).get("uid"):
            raise Unschedulable(f'resourceclaim "{recorded[pod_claim]}" was not created for '
                                f'the pod')
        return claim
    claim = _find_generated(api, pod, pod_claim) or _claim_from_template(
        api, pod, pod_claim, template_name)
    _record_claim_status(api, pod, pod_claim, str(meta(claim).get("name")))
    return claim


def ensure_pod_claims(api: KubeAPI, pod: Mapping[str, Any]) -> list[Obj]:
    """The pod's claims in ``spec.resourceClaims`` order, generating template claims
    (owner reference to the pod, pod-claim-name annotation, recorded in
    ``status.resourceClaimStatuses``). Raises Unschedulable when one is missing."""
    claims: list[Obj] = []
    for entry in spec(pod).get("resourceClaims") or []:
        if entry.get("resourceClaimName"):
            name = str(entry["resourceClaimName"])
            claim = api.get("resourceclaims", name, meta(pod).get("namespace"))
            if claim is None:
                raise Unschedulable(f'resourceclaim "{name}" not found')
        elif entry.get("resourceClaimTemplateName"):
            claim = _generated_claim(api, pod, str(entry.get("name")),
                                     str(entry["resourceClaimTemplateName"]))
        else:
            raise Unschedulable(f"pod claim {entry.get('name')} names neither a claim nor a "
                                "template")
        if meta(claim).get("deletionTimestamp"):
            raise Unschedulable(f'resourceclaim "{meta(claim).get("name")}" is being deleted')
        claims.append(claim)
    return claims


# --------------------------------------------------------------------------------------------
# Claim status writes shared by the scheduler and the controller


def _add_finalizer(obj: Obj) -> bool:
    finalizers = obj.setdefault("metadata", {}).setdefault("finalizers", [])
    if FINALIZER in finalizers:
        return False
    finalizers.append(FINALIZER)
    return True


def _remove_finalizer(obj: Obj) -> bool:
    finalizers = obj.get("metadata", {}).get("finalizers") or []
    if FINALIZER not in finalizers or (obj.get("status") or {}).get("allocation"):
        return False
    obj["metadata"]["finalizers"] = [f for f in finalizers if f != FINALIZER]
    return True


def release_claim(api: KubeAPI, namespace: str, name: str, drop: Collection[str]) -> bool:
    """Remove the consumers with UIDs in ``drop`` from ``reservedFor``; when nobody is left,
    clear allocation, reservedFor and devices in one status update, then remove the
    finalizer. Returns True when the claim was deallocated."""
    deallocated = False

    def mutate(obj: Obj) -> bool:
        nonlocal deallocated
        body = obj.setdefault("status", {})
        refs = body.get("reservedFor") or []
        keep = [r for r in refs if r.get("uid") not in drop]
        deallocated = bool(body.get("allocation")) and not keep
        if not deallocated and len(keep) == len(refs):
            return False
        for key in ("reservedFor", *(("allocation", "devices") if deallocated else ())):
            body.pop(key, None)
        if keep:
            body["reservedFor"] = keep
        return True

    try:
        update_with_retry(api, "resourceclaims", name, namespace, mutate, subresource="status")
        update_with_retry(api, "resourceclaims", name, namespace, _remove_finalizer)
    except Gone:
        return False
    return deallocated


# --------------------------------------------------------------------------------------------
# Scheduler


@dataclass
class Plan:
    node: str
    claims: list[str]                 # all the pod's claims, in order
    allocations: dict[str, Obj]       # claims to allocate now
    allocated_at: float = 0.0


@dataclass
class _Verdict:
    ok: bool
    message: str = ""
    kind: Literal["success", "failure", "timeout", "aborted"] = "success"
    devices: frozenset[DeviceID] = frozenset()


class SchedulerSimulator:
    """kube-scheduler's DynamicResources plugin, enough of it for KEP-5007."""

    def __init__(self, api: KubeAPI, *, poll_s: float = 0.05, binding_timeout_s: float = 10.0,
                 max_attempts: int = 5, clock: Callable[[], float] = time.time,
                 backoff_s: float = 0.2, max_backoff_s: float = 2.0,
                 cel_runtime_errors: Literal["abort", "nomatch"] = "abort") -> None:
        self.api = api
        self.poll_s = poll_s
        self.binding_timeout_s = binding_timeout_s
        self.max_attempts = max_attempts
        self.clock = clock
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.allocator = Allocator(cel_runtime_errors=cel_runtime_errors)
        self.metrics: dict[str, int] = dict.fromkeys(METRIC_KEYS, 0)
        self._inflight: dict[tuple[str, str], asyncio.Future[ScheduleResult]] = {}
        self._assumed: dict[tuple[str, str], str] = {}    # pod being scheduled -> node
        self._exact_times: dict[tuple[str, str], float] = {}  # (uid, timestamp) -> clock()

    # ---- public API

    async def schedule(self, namespace: str, pod_name: str) -> ScheduleResult:
        """Schedule one pod (a second call for a pod in flight waits for the first)."""
        key = (namespace, pod_name)
        running = self._inflight.get(key)
        if running is not None:
            return await asyncio.shield(running)
        future: asyncio.Future[ScheduleResult] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            result = await self._schedule(namespace, pod_name)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()          # retrieved: waiters re-raise it
            raise
        finally:
            self._inflight.pop(key, None)
            self._assumed.pop(key, None)
        future.set_result(result)
        return result

    async def run(self) -> None:
        """Schedule every pending pod concurrently until cancelled; unschedulable pods are
        retried with exponential backoff (``backoff_s`` .. ``max_backoff_s``)."""
        queue = self.api.subscribe()
        tasks: set[asyncio.Task[None]] = set()
        backoff: dict[tuple[str, str], tuple[float, int]] = {}
        try:
            while True:
                self._start_pending(tasks, backoff)
                await _wait_for_events(queue, WATCHED_BY_SCHEDULER,
                                       _next_wakeup(backoff, self.backoff_s))
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    # ---- background loop

    def _pending_pods(self) -> list[tuple[str, str]]:
        pending = []
        for pod in self.api.list("pods"):
            key = (str(meta(pod).get("namespace")), str(meta(pod).get("name")))
            if (spec(pod).get("nodeName") or pod_is_done(pod)
                    or meta(pod).get("deletionTimestamp") or spec(pod).get("schedulingGates")
                    or key in self._inflight):
                continue
            pending.append(key)
        return pending

    def _start_pending(self, tasks: set[asyncio.Task[None]],
                       backoff: dict[tuple[str, str], tuple[float, int]]) -> None:
        now = time.monotonic()
        for key in self._pending_pods():
            if backoff.get(key, (0.0, 0))[0] > now:
                continue
            task = asyncio.create_task(self._schedule_in_background(key, backoff))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    async def _schedule_in_background(self, key: tuple[str, str],
                                      backoff: dict[tuple[str, str], tuple[float, int]]) -> None:
        try:
            result = await self.schedule(*key)
        except Exception:
            log.exception("scheduling %s/%s failed", *key)
            result = ScheduleResult(None, 0)
        if result.node is not None:
            backoff.pop(key, None)
            return
        failures = backoff.get(key, (0.0, 0))[1] + 1
        delay = min(self.max_backoff_s, self.backoff_s * 2 ** (failures - 1))
        backoff[key] = (time.monotonic() + delay, failures)

    # ---- one pod

    async def _schedule(self, namespace: str, name: str) -> ScheduleResult:
        failures: list[str] = []
        failed: set[DeviceID] = set()
        attempts = 0
        while attempts < self.max_attempts:
            pod = self.api.get("pods", name, namespace)
            if pod is None:
                failures.append(f"pod {namespace}/{name} not found")
                break
            if spec(pod).get("nodeName"):
                return ScheduleResult(str(spec(pod)["nodeName"]), attempts, failures)
            if pod_is_done(pod) or meta(pod).get("deletionTimestamp"):
                failures.append(f"pod {namespace}/{name} is terminating or terminated")
                break
            attempts += 1
            self.metrics["schedule_attempts"] += 1
            verdict, node = await self._attempt(pod, failed)
            if node is not None:
                return ScheduleResult(node, attempts, failures)
            failures.append(verdict.message)
            failed |= verdict.devices
            if verdict.kind not in ("failure", "timeout"):
                break
        return ScheduleResult(None, attempts, failures)

    async def _attempt(self, pod: Obj, failed: set[DeviceID]) -> tuple[_Verdict, str | None]:
        key = (str(meta(pod).get("namespace")), str(meta(pod).get("name")))
        try:
            claims = ensure_pod_claims(self.api, pod)
            plan = self._plan(pod, claims, failed)
            self._assumed[key] = plan.node
            self._reserve(pod, claims, plan)
        except Unschedulable as exc:
            self._assumed.pop(key, None)
            self.metrics["unschedulable"] += 1
            return _Verdict(False, str(exc), "failure" if exc.retry else "aborted"), None
        verdict = await self._prebind(pod, plan)
        if verdict.ok and self._bind_pod(pod, plan.node):
            self.metrics["pods_bound"] += 1
            return verdict, plan.node
        if verdict.ok:
            verdict = _Verdict(False, f"pod {key[0]}/{key[1]} was deleted before binding",
                               "aborted")
        self._unreserve(pod, plan)
        self._assumed.pop(key, None)
        return verdict, None

    # ---- Filter / Score / Reserve

    def _node_load(self, pods: Iterable[Mapping[str, Any]],
                   exclude: tuple[str, str]) -> dict[str, int]:
        load: dict[str, int] = {}
        for pod in pods:
            node = spec(pod).get("nodeName")
            if node and status(pod).get("phase") not in TERMINAL_PHASES:
                load[node] = load.get(node, 0) + 1
        for key, node in self._assumed.items():
            if key != exclude:
                load[node] = load.get(node, 0) + 1
        return load

    def _plan(self, pod: Obj, claims: list[Obj], failed: set[DeviceID]) -> Plan:
        """Pick the least loaded feasible node (ties by name) and the devices there."""
        key = (str(meta(pod).get("namespace")), str(meta(pod).get("name")))
        nodes = self.api.list("nodes")
        load = self._node_load(self.api.list("pods"), key)
        slices = self.api.list("resourceslices")
        classes = {str(meta(c).get("name")): c for c in self.api.list("deviceclasses")}
        unavailable = allocated_devices(self.api.list("resourceclaims")) | failed
        shared = [c for c in claims if status(c).get("allocation")]
        for claim in shared:
            if not is_reserved_for(claim, pod) and len(
                    status(claim).get("reservedFor") or []) >= MAX_RESERVED_FOR:
                raise Unschedulable(f"resourceclaim {meta(claim).get('name')} is in use by "
                                    f"{MAX_RESERVED_FOR} consumers")
        to_allocate = [c for c in claims if not status(c).get("allocation")]
        reasons: dict[str, int] = {}
        order = sorted(nodes, key=lambda n: (load.get(meta(n).get("name"), 0),
                                             str(meta(n).get("name"))))
        for node in order:
            reason = self._node_unfit(pod, node, shared)
            if reason is None:
                try:
                    allocations = self.allocator.allocate(to_allocate, node,
                                                          gather_pools(slices, node),
                                                          classes, unavailable)
                except AllocationError as exc:
                    raise Unschedulable(str(exc)) from None
                if allocations is not None:
                    return Plan(str(meta(node).get("name")),
                                [str(meta(c).get("name")) for c in claims], allocations)
                reason = "cannot allocate all claims"
            reasons[reason] = reasons.get(reason, 0) + 1
        summary = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items()))
        raise Unschedulable(f"0/{len(nodes)} nodes are available" + (
            f": {summary}." if summary else "."))

    @staticmethod
    def _node_unfit(pod: Obj, node: Obj, shared: list[Obj]) -> str | None:
        if not pod_fits_node(pod, node):
            return "node(s) didn't match Pod's node affinity/selector"
        for claim in shared:
            selector = (status(claim).get("allocation") or {}).get("nodeSelector")
            if not node_selector_matches(selector, node):
                return "node(s) didn't match the allocated claim's node selector"
        return None

    def _reserve(self, pod: Obj, claims: list[Obj], plan: Plan) -> None:
        """PreBind's bindClaim for new allocations; reservedFor for shared ones. The
        whole plan is written without awaiting, so concurrent schedule() calls in this
        event loop cannot interleave between the availability check and the write."""
        plan.allocated_at = self.clock()
        stamp = now_rfc3339(plan.allocated_at)
        written: list[str] = []
        try:
            for claim in claims:
                name = str(meta(claim).get("name"))
                allocation = plan.allocations.get(name)
                if allocation is not None:
                    self._exact_times[(str(meta(claim).get("uid")), stamp)] = plan.allocated_at
                    self._bind_claim(pod, claim, {**allocation, "allocationTimestamp": stamp})
                    written.append(name)
                elif not is_reserved_for(claim, pod):
                    self._add_consumer(pod, claim)
                    written.append(name)
        except Exception as exc:
            self._unreserve(pod, Plan(plan.node, written, {}))
            if isinstance(exc, Unschedulable):
                raise
            if isinstance(exc, Gone):
                raise Unschedulable(str(exc), retry=True) from None
            raise Unschedulable(f"binding claims failed: {exc}") from exc

    def _bind_claim(self, pod: Obj, claim: Obj, allocation: Obj) -> None:
        namespace, name = meta(claim).get("namespace"), str(meta(claim).get("name"))
        ours = {result_id(r) for r in allocation["devices"]["results"]}

        def mutate(obj: Obj) -> bool:
            body = obj.setdefault("status", {})
            if body.get("allocation"):
                raise Unschedulable(f"claim {name} was allocated concurrently", retry=True)
            others = [c for c in self.api.list("resourceclaims")
                      if meta(c).get("uid") != meta(obj).get("uid")]
            clash = ours & allocated_devices(others)
            if clash:
                raise Unschedulable(f"device {min(clash)} was allocated concurrently",
                                    retry=True)
            body["allocation"] = copy.deepcopy(allocation)
            body["reservedFor"] = [pod_ref(pod)]
            return True

        update_with_retry(self.api, "resourceclaims", name, namespace, _add_finalizer)
        update_with_retry(self.api, "resourceclaims", name, namespace, mutate,
                          subresource="status")

    def _add_consumer(self, pod: Obj, claim: Obj) -> None:
        def mutate(obj: Obj) -> bool:
            body = obj.setdefault("status", {})
            if not body.get("allocation"):
                raise Unschedulable(f"claim {meta(obj).get('name')} was deallocated",
                                    retry=True)
            if is_reserved_for(obj, pod):
                return False
            body["reservedFor"] = [*(body.get("reservedFor") or []), pod_ref(pod)]
            return True

        update_with_retry(self.api, "resourceclaims", str(meta(claim).get("name")),
                          meta(claim).get("namespace"), mutate, subresource="status")

    def _unreserve(self, pod: Obj, plan: Plan) -> None:
        """Unreserve (drop the pod from reservedFor) + PostFilter (deallocate claims that
        nobody else holds)."""
        namespace = str(meta(pod).get("namespace"))
        for name in plan.claims:
            if release_claim(self.api, namespace, name, {str(meta(pod).get("uid"))}):
                self.metrics["deallocations"] += 1

    # ---- PreBind wait and Bind

    async def _prebind(self, pod: Obj, plan: Plan) -> _Verdict:
        namespace = str(meta(pod).get("namespace"))
        claims = [self.api.get("resourceclaims", n, namespace) for n in plan.claims]
        if not any(c is not None and needs_binding_conditions(c) for c in claims):
            return _Verdict(True)
        self.metrics["prebind_waits"] += 1
        give_up = self.clock() + self.binding_timeout_s
        while True:
            verdict = self._check_claims(pod, plan, give_up)
            if verdict is None and self._pod_gone(pod):
                verdict = _Verdict(False, f"pod {namespace}/{meta(pod).get('name')} was "
                                          "deleted while waiting for binding conditions",
                                   "aborted")
            if verdict is not None:
                if verdict.kind != "aborted":
                    self.metrics[f"allocations_{verdict.kind}"] += 1
                return verdict
            await asyncio.sleep(self.poll_s)

    def _check_claims(self, pod: Obj, plan: Plan, give_up: float) -> _Verdict | None:
        """isPodReadyForBinding: None while waiting."""
        namespace = str(meta(pod).get("namespace"))
        now = self.clock()
        for name in plan.claims:
            claim = self.api.get("resourceclaims", name, namespace)
            if claim is None or not status(claim).get("allocation"):
                # Simulator: the real scheduler would keep polling until its timeout.
                return _Verdict(False, f"claim {name} was deallocated or deleted while "
                                       "waiting for binding conditions", "aborted")
            state = claim_binding_status(claim)
            if state.failure:
                return _Verdict(False, state.failure, "failure", state.failed)
            if state.ready:
                continue
            deadline = binding_deadline(claim, self.binding_timeout_s, self._exact_times)
            if now > min(give_up, deadline if deadline is not None else give_up):
                return _Verdict(False, f"claim {name} binding timeout", "timeout",
                                state.pending)
            return None
        return _Verdict(True)

    def _pod_gone(self, pod: Obj) -> bool:
        current = self.api.get("pods", str(meta(pod).get("name")), meta(pod).get("namespace"))
        return current is None or meta(current).get("uid") != meta(pod).get("uid") or bool(
            meta(current).get("deletionTimestamp"))

    def _bind_pod(self, pod: Obj, node: str) -> bool:
        """Bind: POST pods/{name}/binding (the fake's ``create("bindings", ...)``)."""
        name, namespace = str(meta(pod).get("name")), str(meta(pod).get("namespace"))
        if self._pod_gone(pod):
            return False
        binding = {"apiVersion": "v1", "kind": "Binding",
                   "metadata": {"name": name, "namespace": namespace,
                                "uid": meta(pod).get("uid")},
                   "target": {"apiVersion": "v1", "kind": "Node", "name": node}}
        try:
            self.api.create("bindings", binding)
        except Exception as exc:
            if api_status(exc) not in (404, 409):
                raise
            log.info("binding %s/%s to %s failed: %s", namespace, name, node, exc)
        current = self.api.get("pods", name, namespace)
        return current is not None and spec(current).get("nodeName") == node


# --------------------------------------------------------------------------------------------
# Claim controller


class ClaimController:
    """kube-controller-manager's resourceclaim controller, the parts DRA drivers see."""

    def __init__(self, api: KubeAPI, *, resync_s: float = 1.0) -> None:
        self.api = api
        self.resync_s = resync_s
        self.metrics: dict[str, int] = dict.fromkeys(
            ("reservations_removed", "deallocations", "claims_deleted"), 0)

    async def reconcile_once(self) -> None:
        pods = self.api.list("pods")
        by_uid = {str(meta(p).get("uid")): p for p in pods}
        for pod in pods:
            self._ensure_claims(pod)
        for claim in self.api.list("resourceclaims"):
            try:
                self._sync_claim(claim, by_uid)
            except Exception as exc:
                if api_status(exc) not in (404, 409):
                    raise
                log.debug("claim %s: %s (next round)", meta(claim).get("name"), exc)

    async def run(self) -> None:
        """Reconcile on every pod/claim change (and every ``resync_s``) until cancelled."""
        queue = self.api.subscribe()
        while True:
            try:
                await self.reconcile_once()
            except Exception:
                log.exception("claim controller reconcile failed")
            await _wait_for_events(queue, WATCHED_BY_CONTROLLER, self.resync_s)

    def _ensure_claims(self, pod: Obj) -> None:
        if pod_is_done(pod) or meta(pod).get("deletionTimestamp") or not any(
                e.get("resourceClaimTemplateName") for e in spec(pod).get("resourceClaims") or []):
            return
        with contextlib.suppress(Unschedulable, Gone):
            ensure_pod_claims(self.api, pod)

    def _sync_claim(self, claim: Obj, pods: Mapping[str, Obj]) -> None:
        """Drop finished consumers; deallocate (and drop the finalizer) when none is left;
        delete a generated claim whose pod is gone or done."""
        namespace, name = str(meta(claim).get("namespace")), str(meta(claim).get("name"))
        refs = status(claim).get("reservedFor") or []
        done = {str(r.get("uid")) for r in refs if _consumer_done(r, pods)}
        ours = FINALIZER in (meta(claim).get("finalizers") or [])
        unused = len(done) == len(refs)
        if done or (unused and ours):
            self.metrics["reservations_removed"] += len(done)
            if release_claim(self.api, namespace, name, done):
                self.metrics["deallocations"] += 1
        if unused and self._owner_gone(claim, pods) and not meta(claim).get(
                "deletionTimestamp"):
            self.api.delete("resourceclaims", name, namespace)
            self.metrics["claims_deleted"] += 1

    @staticmethod
    def _owner_gone(claim: Obj, pods: Mapping[str, Obj]) -> bool:
        uid = owning_pod_uid(claim)
        if uid is None:
            return False
        pod = pods.get(uid)
        return pod is None or pod_is_done(pod)


def _consumer_done(ref: Mapping[str, Any], pods: Mapping[str, Obj]) -> bool:
    if ref.get("resource") != "pods" or ref.get("apiGroup"):
        return False
    pod = pods.get(str(ref.get("uid")))
    return pod is None or pod_is_done(pod)


# --------------------------------------------------------------------------------------------
# Event waiting


def _next_wakeup(backoff: Mapping[Any, tuple[float, int]], ceiling: float) -> float:
    now = time.monotonic()
    upcoming = [until - now for until, _ in backoff.values() if until > now]
    return max(0.01, min([ceiling, *upcoming]))


async def _wait_for_events(queue: asyncio.Queue, resources: frozenset[str],
                           wait_s: float) -> None:
    """Wait up to ``wait_s`` for an event on one of ``resources``, then drain the queue."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    relevant = False
    while not relevant:
        remaining = deadline - loop.time()
        if remaining <= 0:
            return
        try:
            event = await asyncio.wait_for(queue.get(), remaining)
        except TimeoutError:
            return
        relevant = _event_resource(event) in resources
    while not queue.empty():
        queue.get_nowait()


def _event_resource(event: Any) -> str | None:
    if isinstance(event, tuple | list) and len(event) >= 2:
        return str(event[1])
    if isinstance(event, Mapping):
        return str(event.get("resource"))
    return None
