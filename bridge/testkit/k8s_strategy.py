"""Per-kind REST strategies: create/update preparation, status isolation, validation dispatch.

Mirrors the ``PrepareForCreate`` / ``PrepareForUpdate`` / ``Validate*`` methods of the
apiserver's registry strategies for the kinds the fake serves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import k8s_dra_validation as dra
from . import k8s_validation as core
from .k8s_resources import ResourceType
from .k8s_validation import Errs, Obj

CreateCheck = Callable[[Obj, ResourceType], Errs]
UpdateCheck = Callable[[Obj, Obj, ResourceType], Errs]


def _meta_update_only(new: Obj, old: Obj, rt: ResourceType) -> Errs:
    del rt
    return core.validate_meta_update(new.get("metadata") or {}, old.get("metadata") or {})


def _generic_update(create: CreateCheck) -> UpdateCheck:
    def check(new: Obj, old: Obj, rt: ResourceType) -> Errs:
        return _meta_update_only(new, old, rt) + create(new, rt)

    return check


def _claim_create(obj: Obj) -> None:
    obj["status"] = {}
    dra.default_claim_spec(obj.get("spec") or {})


def _claim_template_create(obj: Obj) -> None:
    dra.default_claim_spec(core.dig(obj, "spec", "spec") or {})


def _qos_class(spec: Obj) -> str:
    containers = list(spec.get("containers") or []) + list(spec.get("initContainers") or [])
    resources = [c.get("resources") or {} for c in containers]
    if not any(r.get("requests") or r.get("limits") for r in resources):
        return "BestEffort"
    for res in resources:
        limits, requests = res.get("limits") or {}, res.get("requests") or {}
        for name in ("cpu", "memory"):
            if name not in limits or requests.get(name, limits[name]) != limits[name]:
                return "Burstable"
    return "Guaranteed"


def _pod_create(obj: Obj) -> None:
    obj["status"] = {"phase": "Pending", "qosClass": _qos_class(obj.get("spec") or {})}


def _namespace_create(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("finalizers", ["kubernetes"])
    obj["status"] = {"phase": "Active"}


def _drop_status(obj: Obj) -> None:
    obj.pop("status", None)


def _keep(obj: Obj) -> None:
    del obj


@dataclass(frozen=True)
class Strategy:
    validate: CreateCheck = core.validate_generic
    validate_update: UpdateCheck | None = None
    validate_status: UpdateCheck = _meta_update_only
    prepare_create: Callable[[Obj], None] = _keep
    schema: dict[str, Any] = field(default_factory=dict)

    def check_update(self, new: Obj, old: Obj, rt: ResourceType) -> Errs:
        check = self.validate_update or _generic_update(self.validate)
        return check(new, old, rt)


def strategy_for(rt: ResourceType) -> Strategy:
    """The strategy of one resource type (unknown kinds get metadata-only validation)."""
    table: dict[tuple[str, str], Strategy] = {
        ("", "namespaces"): Strategy(core.validate_namespace, prepare_create=_namespace_create),
        ("", "nodes"): Strategy(core.validate_node),
        ("", "pods"): Strategy(core.validate_pod, core.validate_pod_update,
                               prepare_create=_pod_create, schema=core.POD_SCHEMA),
        ("", "events"): Strategy(core.validate_core_event, schema=core.CORE_EVENT_SCHEMA),
        ("", "configmaps"): Strategy(core.validate_configmap),
        ("events.k8s.io", "events"): Strategy(core.validate_events_v1,
                                              schema=core.EVENTS_V1_SCHEMA),
        ("coordination.k8s.io", "leases"): Strategy(core.validate_lease,
                                                    schema=core.LEASE_SCHEMA),
        ("resource.k8s.io", "resourceslices"): Strategy(
            dra.validate_slice, dra.validate_slice_update, schema=dra.SLICE_SCHEMA),
        ("resource.k8s.io", "deviceclasses"): Strategy(
            dra.validate_device_class, dra.validate_device_class_update,
            schema=dra.DEVICE_CLASS_SCHEMA),
        ("resource.k8s.io", "devicetaintrules"): Strategy(
            dra.validate_taint_rule, dra.validate_taint_rule_update, dra.validate_taint_rule_status,
            prepare_create=_drop_status, schema=dra.TAINT_RULE_SCHEMA),
        ("resource.k8s.io", "resourceclaims"): Strategy(
            dra.validate_claim, dra.validate_claim_update, dra.validate_claim_status_update,
            prepare_create=_claim_create, schema=dra.CLAIM_SCHEMA),
        ("resource.k8s.io", "resourceclaimtemplates"): Strategy(
            dra.validate_claim_template, dra.validate_claim_template_update,
            prepare_create=_claim_template_create, schema=dra.CLAIM_TEMPLATE_SCHEMA),
    }
    return table.get((rt.group, rt.plural), Strategy())


def full_schema(strategy: Strategy) -> dict[str, Any]:
    return {"metadata": core.META_SCHEMA, **strategy.schema}


def prepare_update(rt: ResourceType, new: Obj, old: Obj) -> None:
    """Main-resource PUT/PATCH: the status of kinds with a status subresource is kept."""
    if not rt.status:
        return
    if "status" in old:
        new["status"] = old["status"]
    else:
        new.pop("status", None)


_RESET_FOR_STATUS = ("labels", "annotations", "finalizers", "ownerReferences")


def prepare_status_update(rt: ResourceType, new: Obj, old: Obj) -> None:
    """/status PUT/PATCH: spec (and, per kind, most metadata) is taken from the stored object."""
    for part in ("spec",):
        if part in old:
            new[part] = old[part]
        else:
            new.pop(part, None)
    meta, old_meta = new.setdefault("metadata", {}), old.get("metadata") or {}
    reset: tuple[str, ...] = ()
    if rt.status_resets_meta:
        reset = _RESET_FOR_STATUS
    elif rt.plural == "pods":
        reset = ("ownerReferences",)
    for name in reset:
        if name in old_meta:
            meta[name] = old_meta[name]
        else:
            meta.pop(name, None)
    if rt.group == "resource.k8s.io" and rt.plural == "resourceclaims":
        dra.drop_deallocated_devices(new, old)
