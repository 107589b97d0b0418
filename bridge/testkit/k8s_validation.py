"""Validation shared by all kinds (ObjectMeta, JSON typing) and of the core/v1-ish kinds.

Each ``validate_*`` returns a list of ``FieldError``; the store turns a non-empty list into
a 422 ``Invalid`` Status. ``check_types`` raises ``DecodeError`` for values that would not
decode into the Go types at all (the apiserver answers those with 400, or 422 for patches).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from .k8s_errors import (
    FieldError,
    duplicate,
    forbidden,
    go_quote,
    invalid,
    not_supported,
    required,
    too_long,
    too_many,
)
from .k8s_names import (
    is_dns1123_label,
    is_dns1123_subdomain,
    is_label_value,
    is_qualified_name,
    regex_error,
)
from .k8s_resources import ResourceType

Errs = list[FieldError]
Obj = dict[str, Any]
NameCheck = Callable[[str], list[str]]

STANDARD_FINALIZERS = ("kubernetes", "orphan", "foregroundDeletion")
ANNOTATIONS_MAX_BYTES = 256 * 1024
_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})$"
)
_RFC3339_MICRO = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})\.\d{6}(Z|[+-]\d{2}:\d{2})$"
)
_QUANTITY = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)(([KMGTPE]i)|[numkMGTPE]|[eE][+-]?\d+)?$")
_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")


class DecodeError(Exception):
    """The body does not decode into the Go type (wrong JSON type, unparsable time...)."""


# -- paths ------------------------------------------------------------------------------------


def child(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def index(path: str, i: int) -> str:
    return f"{path}[{i}]"


def key(path: str, k: str) -> str:
    return f"{path}[{k}]"


def dig(obj: Any, *parts: str) -> Any:
    for part in parts:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj


# -- JSON typing ------------------------------------------------------------------------------

TIME_LAYOUT = "2006-01-02T15:04:05Z07:00"
MICRO_LAYOUT = "2006-01-02T15:04:05.000000Z07:00"


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _type_error(value: Any, path: str, gotype: str) -> DecodeError:
    return DecodeError(
        f"json: cannot unmarshal {_json_type(value)} into Go struct field {path} of type {gotype}"
    )


def _valid_date(match: re.Match[str]) -> bool:
    try:
        datetime(*(int(match.group(i)) for i in range(1, 7)))
    except ValueError:
        return False
    return True


def _check_time(value: Any, path: str, micro: bool) -> None:
    if not isinstance(value, str):
        raise _type_error(value, path, "string")
    pattern, layout = (_RFC3339_MICRO, MICRO_LAYOUT) if micro else (_RFC3339, TIME_LAYOUT)
    match = pattern.match(value)
    if not match or not _valid_date(match):
        raise DecodeError(f"parsing time {go_quote(value)} as {go_quote(layout)}: cannot parse")


def _check_scalar(value: Any, kind: str, path: str) -> None:
    if kind == "str" and not isinstance(value, str):
        raise _type_error(value, path, "string")
    if kind == "int" and (isinstance(value, bool) or not isinstance(value, int)):
        raise _type_error(value, path, "int64")
    if kind == "bool" and not isinstance(value, bool):
        raise _type_error(value, path, "bool")
    if kind in ("time", "microtime"):
        _check_time(value, path, kind == "microtime")
    if kind == "quantity" and (
        isinstance(value, bool)
        or not isinstance(value, str | int | float)
        or not _QUANTITY.match(str(value).strip())
    ):
        raise DecodeError(
            "quantities must match the regular expression "
            "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
        )
    if kind == "object" and not isinstance(value, dict):
        raise _type_error(value, path, "struct")
    if kind == "list" and not isinstance(value, list):
        raise _type_error(value, path, "slice")


def check_types(value: Any, schema: Any, path: str) -> None:
    """Walk ``value`` along ``schema`` (dict = struct, {"*": s} = map, [s] = list, str = scalar)."""
    if value is None:
        return
    if isinstance(schema, str):
        if schema.startswith("map["):
            _check_str_map(value, path)
        elif schema == "[]str":
            _check_str_list(value, path)
        else:
            _check_scalar(value, schema, path)
        return
    if isinstance(schema, list):
        if not isinstance(value, list):
            raise _type_error(value, path, "slice")
        for i, item in enumerate(value):
            check_types(item, schema[0], index(path, i))
        return
    if not isinstance(value, dict):
        raise _type_error(value, path, "struct")
    if "*" in schema:
        for k, item in value.items():
            check_types(item, schema["*"], key(path, k))
        return
    for name, sub in schema.items():
        if name in value:
            check_types(value[name], sub, child(path, name))


def _check_str_map(value: Any, path: str) -> None:
    if not isinstance(value, dict):
        raise _type_error(value, path, "map[string]string")
    for k, item in value.items():
        if item is not None and not isinstance(item, str):
            raise _type_error(item, key(path, k), "string")


def _check_str_list(value: Any, path: str) -> None:
    if not isinstance(value, list):
        raise _type_error(value, path, "[]string")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise _type_error(item, index(path, i), "string")


OWNER_REF = {
    "apiVersion": "str", "kind": "str", "name": "str", "uid": "str",
    "controller": "bool", "blockOwnerDeletion": "bool",
}
META_SCHEMA = {
    "name": "str", "generateName": "str", "namespace": "str", "uid": "str",
    "resourceVersion": "str", "generation": "int", "creationTimestamp": "time",
    "deletionTimestamp": "time", "deletionGracePeriodSeconds": "int",
    "labels": "map[str]str", "annotations": "map[str]str", "finalizers": "[]str",
    "ownerReferences": [OWNER_REF],
}
CONDITION_SCHEMA = {
    "type": "str", "status": "str", "reason": "str", "message": "str",
    "lastTransitionTime": "time", "observedGeneration": "int",
}
NODE_SELECTOR_REQ = {"key": "str", "operator": "str", "values": "[]str"}
NODE_SELECTOR_SCHEMA = {
    "nodeSelectorTerms": [{"matchExpressions": [NODE_SELECTOR_REQ],
                           "matchFields": [NODE_SELECTOR_REQ]}],
}
LEASE_SCHEMA = {"spec": {
    "holderIdentity": "str", "leaseDurationSeconds": "int", "acquireTime": "microtime",
    "renewTime": "microtime", "leaseTransitions": "int", "strategy": "str",
    "preferredHolder": "str",
}}
POD_SCHEMA = {
    "spec": {"nodeName": "str", "containers": [{"name": "str", "image": "str"}],
             "schedulingGates": [{"name": "str"}]},
    "status": {"phase": "str", "conditions": [{"type": "str", "status": "str",
                                               "lastTransitionTime": "time"}]},
}
CORE_EVENT_SCHEMA = {
    "involvedObject": {"kind": "str", "namespace": "str", "name": "str", "uid": "str"},
    "reason": "str", "message": "str", "type": "str", "count": "int",
    "firstTimestamp": "time", "lastTimestamp": "time", "eventTime": "microtime",
}
EVENTS_V1_SCHEMA = {
    "eventTime": "microtime", "reportingController": "str", "reportingInstance": "str",
    "action": "str", "reason": "str", "note": "str", "type": "str",
    "regarding": {"kind": "str", "namespace": "str", "name": "str", "uid": "str"},
    "deprecatedFirstTimestamp": "time", "deprecatedLastTimestamp": "time",
}


# -- ObjectMeta -------------------------------------------------------------------------------


def name_errors(path: str, name: str, check: NameCheck) -> Errs:
    return [invalid(path, name, msg) for msg in check(name)]


def validate_labels(labels: Any, path: str) -> Errs:
    errs: Errs = []
    for k, v in (labels or {}).items():
        errs += [invalid(path, k, msg) for msg in is_qualified_name(k)]
        errs += [invalid(path, v, msg) for msg in is_label_value(v or "")]
    return errs


def validate_annotations(annotations: Any, path: str) -> Errs:
    errs: Errs = []
    total = 0
    for k, v in (annotations or {}).items():
        errs += [invalid(path, k, msg) for msg in is_qualified_name(k.lower())]
        total += len(k) + len(v or "")
    if total > ANNOTATIONS_MAX_BYTES:
        errs.append(too_long(path, ANNOTATIONS_MAX_BYTES))
    return errs


def validate_finalizers(finalizers: Any, path: str) -> Errs:
    errs: Errs = []
    for i, name in enumerate(finalizers or []):
        p = index(path, i)
        msgs = is_qualified_name(name)
        errs += [invalid(p, name, msg) for msg in msgs]
        if not msgs and "/" not in name and name not in STANDARD_FINALIZERS:
            errs.append(invalid(p, name, "name is neither a standard finalizer name nor is it "
                                         "fully qualified"))
    return errs


def validate_owner_references(refs: Any, path: str) -> Errs:
    errs: Errs = []
    controllers = 0
    for i, ref in enumerate(refs or []):
        p = index(path, i)
        for fld in ("apiVersion", "kind", "name", "uid"):
            if not ref.get(fld):
                errs.append(invalid(child(p, fld), "", f"{fld} must not be empty")
                            if fld in ("apiVersion", "kind") else required(child(p, fld)))
        controllers += 1 if ref.get("controller") else 0
    if controllers > 1:
        errs.append(invalid(path, refs, "Only one reference can have Controller set to true"))
    return errs


def validate_meta(meta: Obj, rt: ResourceType, check: NameCheck) -> Errs:
    """``ValidateObjectMeta``: name/generateName, namespace, labels, annotations, finalizers."""
    errs: Errs = []
    name = meta.get("name") or ""
    if not name:
        errs.append(required("metadata.name", "name or generateName is required"))
    else:
        errs += name_errors("metadata.name", name, check)
    namespace = meta.get("namespace") or ""
    if rt.namespaced:
        if not namespace:
            errs.append(required("metadata.namespace"))
        else:
            errs += name_errors("metadata.namespace", namespace, is_dns1123_label)
    elif namespace:
        errs.append(forbidden("metadata.namespace", "not allowed on this type"))
    errs += validate_labels(meta.get("labels"), "metadata.labels")
    errs += validate_annotations(meta.get("annotations"), "metadata.annotations")
    errs += validate_finalizers(meta.get("finalizers"), "metadata.finalizers")
    errs += validate_owner_references(meta.get("ownerReferences"), "metadata.ownerReferences")
    return errs


def validate_meta_update(new: Obj, old: Obj) -> Errs:
    """``ValidateObjectMetaUpdate``: immutable identity, no new finalizers while deleting."""
    errs: Errs = []
    for fld in ("name", "namespace"):
        if (new.get(fld) or "") != (old.get(fld) or ""):
            errs.append(invalid(f"metadata.{fld}", new.get(fld) or "", "field is immutable"))
    if old.get("deletionTimestamp"):
        extra = sorted(set(new.get("finalizers") or []) - set(old.get("finalizers") or []))
        if extra:
            shown = "[]string{" + ", ".join(go_quote(f) for f in extra) + "}"
            errs.append(forbidden(
                "metadata.finalizers",
                f"no new finalizers can be added if the object is being deleted, "
                f"found new finalizers {shown}",
            ))
    return errs


# -- generic helpers for kind validators -----------------------------------------------------


def check_list(items: Any, max_items: int, path: str) -> Errs:
    """Size limit of ``validateSlice``: one TooMany error short-circuits item validation."""
    if max_items >= 0 and len(items or []) > max_items:
        return [too_many(path, len(items), max_items)]
    return []


def duplicates(items: list[Any], keyfn: Callable[[Any], Any], path: str) -> Errs:
    seen: set[Any] = set()
    errs: Errs = []
    for i, item in enumerate(items):
        k = keyfn(item)
        if k in seen:
            errs.append(duplicate(index(path, i), k))
        else:
            seen.add(k)
    return errs


def validate_conditions(conditions: Any, path: str) -> Errs:
    """``metav1validation.ValidateConditions``."""
    errs: Errs = []
    types: set[str] = set()
    for i, cond in enumerate(conditions or []):
        p = index(path, i)
        ctype = cond.get("type") or ""
        if ctype in types:
            errs.append(duplicate(child(p, "type"), ctype))
        types.add(ctype)
        errs += [invalid(child(p, "type"), ctype, m) for m in is_qualified_name(ctype)]
        status = cond.get("status") or ""
        if status not in ("True", "False", "Unknown"):
            errs.append(not_supported(child(p, "status"), status, ["False", "True", "Unknown"]))
        if (cond.get("observedGeneration") or 0) < 0:
            errs.append(invalid(child(p, "observedGeneration"), cond["observedGeneration"],
                                "must be greater than or equal to zero"))
        if not cond.get("lastTransitionTime"):
            errs.append(required(child(p, "lastTransitionTime"), "must be set"))
        errs += _condition_reason(cond.get("reason") or "", child(p, "reason"))
        if len(cond.get("message") or "") > 32 * 1024:
            errs.append(too_long(child(p, "message"), 32 * 1024))
    return errs


_REASON_FMT = "[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?"
_REASON_RE = re.compile("^" + _REASON_FMT + "$")
_REASON_MSG = (
    "a condition reason must start with alphabetic character, optionally followed by a string "
    "of alphanumeric characters or '_,:', and must end with an alphanumeric character or '_'"
)


def _condition_reason(reason: str, path: str) -> Errs:
    if not reason:
        return [required(path, "must be set")]
    errs: Errs = []
    if not _REASON_RE.match(reason):
        errs.append(invalid(path, reason, regex_error(
            _REASON_MSG, _REASON_FMT, "my_name", "MY_NAME", "MyName", "ReasonA,ReasonB",
            "ReasonA:ReasonB")))
    if len(reason) > 1024:
        errs.append(too_long(path, 1024))
    return errs


def validate_node_selector(selector: Any, path: str) -> Errs:
    """``corevalidation.ValidateNodeSelector`` (terms, expressions, field requirements)."""
    errs: Errs = []
    terms = (selector or {}).get("nodeSelectorTerms") or []
    tpath = child(path, "nodeSelectorTerms")
    if not terms:
        return [required(tpath, "must have at least one node selector term")]
    for i, term in enumerate(terms):
        p = index(tpath, i)
        for j, req in enumerate(term.get("matchExpressions") or []):
            errs += _node_expression(req, index(child(p, "matchExpressions"), j))
        for j, req in enumerate(term.get("matchFields") or []):
            errs += _node_field(req, index(child(p, "matchFields"), j))
    return errs


def _node_expression(req: Obj, path: str) -> Errs:
    errs: Errs = []
    op = req.get("operator") or ""
    values = req.get("values") or []
    if op in ("In", "NotIn"):
        if not values:
            errs.append(required(child(path, "values"),
                                 "must be specified when `operator` is 'In' or 'NotIn'"))
    elif op in ("Exists", "DoesNotExist"):
        if values:
            errs.append(forbidden(child(path, "values"),
                                  "may not be specified when `operator` is 'Exists' or "
                                  "'DoesNotExist'"))
    elif op in ("Gt", "Lt"):
        if len(values) != 1:
            errs.append(required(child(path, "values"),
                                 "must be specified single value when `operator` is 'Lt' or 'Gt'"))
    else:
        errs.append(invalid(child(path, "operator"), op, "not a valid selector operator"))
    k = req.get("key") or ""
    errs += [invalid(child(path, "key"), k, m) for m in is_qualified_name(k)]
    return errs


def _node_field(req: Obj, path: str) -> Errs:
    errs: Errs = []
    if req.get("key") != "metadata.name":
        errs.append(invalid(child(path, "key"), req.get("key") or "",
                            "not a valid field selector key"))
    op = req.get("operator") or ""
    if op not in ("In", "NotIn"):
        errs.append(invalid(child(path, "operator"), op, "not a valid selector operator"))
    elif len(req.get("values") or []) != 1:
        errs.append(required(child(path, "values"),
                             "must be only one value when `operator` is 'In' or 'NotIn' for node "
                             "field selector"))
    for j, value in enumerate(req.get("values") or []):
        errs += [invalid(index(child(path, "values"), j), value, m)
                 for m in is_dns1123_subdomain(value)]
    return errs


def validate_raw_object(value: Any, path: str, max_len: int) -> Errs:
    """``validateRawExtension``: required, size limit, must be a JSON object."""
    if value is None:
        return [required(path)]
    if len(json.dumps(value, separators=(",", ":"))) > max_len:
        return [too_long(path, max_len)]
    if not isinstance(value, dict):
        return [invalid(path, "<value omitted>", "must be a valid JSON object")]
    return []


# -- core kinds -------------------------------------------------------------------------------


def validate_namespace(obj: Obj, rt: ResourceType) -> Errs:
    return validate_meta(obj.get("metadata") or {}, rt, is_dns1123_label)


def validate_node(obj: Obj, rt: ResourceType) -> Errs:
    return validate_meta(obj.get("metadata") or {}, rt, is_dns1123_subdomain)


def validate_pod(obj: Obj, rt: ResourceType) -> Errs:
    errs = validate_meta(obj.get("metadata") or {}, rt, is_dns1123_subdomain)
    containers = dig(obj, "spec", "containers") or []
    if not containers:
        errs.append(required("spec.containers"))
    names: set[str] = set()
    for i, container in enumerate(containers):
        p = index("spec.containers", i)
        name = container.get("name") or ""
        if not name:
            errs.append(required(child(p, "name")))
        else:
            errs += name_errors(child(p, "name"), name, is_dns1123_label)
            if name in names:
                errs.append(duplicate(child(p, "name"), name))
            names.add(name)
        if not container.get("image"):
            errs.append(required(child(p, "image")))
    return errs


_POD_UPDATABLE = (
    "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,"
    "`spec.tolerations` (only additions to existing tolerations),"
    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)"
)


def _munge_pod_spec(new: Obj, old: Obj) -> Obj:
    munged = {k: v for k, v in new.items()}
    for kind in ("containers", "initContainers"):
        new_list = [dict(c) for c in new.get(kind) or []]
        old_list = old.get(kind) or []
        for i, container in enumerate(new_list):
            if i < len(old_list) and "image" in old_list[i]:
                container["image"] = old_list[i]["image"]
        if kind in new:
            munged[kind] = new_list
    for fld in ("activeDeadlineSeconds", "terminationGracePeriodSeconds"):
        if fld in old:
            munged[fld] = old[fld]
        else:
            munged.pop(fld, None)
    old_tol = old.get("tolerations") or []
    new_tol = new.get("tolerations") or []
    if new_tol[: len(old_tol)] == old_tol:
        if old_tol:
            munged["tolerations"] = old_tol
        else:
            munged.pop("tolerations", None)
    old_gates = old.get("schedulingGates") or []
    new_gates = new.get("schedulingGates") or []
    if all(g in old_gates for g in new_gates):
        if old_gates:
            munged["schedulingGates"] = old_gates
        else:
            munged.pop("schedulingGates", None)
    return munged


def validate_pod_update(new: Obj, old: Obj, rt: ResourceType) -> Errs:
    errs = validate_meta_update(new.get("metadata") or {}, old.get("metadata") or {})
    errs += validate_pod(new, rt)
    new_spec, old_spec = new.get("spec") or {}, old.get("spec") or {}
    for j, gate in enumerate(new_spec.get("schedulingGates") or []):
        if gate not in (old_spec.get("schedulingGates") or []):
            errs.append(forbidden(index("spec.schedulingGates", j),
                                  f"only deletion is allowed, but found new scheduling gate "
                                  f"'{gate.get('name')}'"))
    if _munge_pod_spec(new_spec, old_spec) != old_spec:
        changed = sorted(k for k in set(new_spec) | set(old_spec)
                         if new_spec.get(k) != old_spec.get(k))
        errs.append(forbidden("spec", f"pod updates may not change fields other than "
                                      f"{_POD_UPDATABLE}\n  changed: {', '.join(changed)}"))
    return errs


def validate_configmap(obj: Obj, rt: ResourceType) -> Errs:
    errs = validate_meta(obj.get("metadata") or {}, rt, is_dns1123_subdomain)
    for fld in ("data", "binaryData"):
        for k in obj.get(fld) or {}:
            if not _CONFIG_KEY.match(k) or len(k) > 253:
                errs.append(invalid(key(fld, k), k, "a valid config key must consist of "
                                                     "alphanumeric characters, '-', '_' or '.'"))
    return errs


def validate_core_event(obj: Obj, rt: ResourceType) -> Errs:
    errs = validate_meta(obj.get("metadata") or {}, rt, is_dns1123_subdomain)
    involved_ns = dig(obj, "involvedObject", "namespace") or ""
    meta_ns = dig(obj, "metadata", "namespace") or ""
    if involved_ns and involved_ns != meta_ns:
        errs.append(invalid("involvedObject.namespace", involved_ns,
                            "does not match event.namespace"))
    return errs


def validate_events_v1(obj: Obj, rt: ResourceType) -> Errs:
    errs = validate_meta(obj.get("metadata") or {}, rt, is_dns1123_subdomain)
    for fld in ("eventTime", "reportingController", "reportingInstance", "action", "reason"):
        if not obj.get(fld):
            errs.append(required(fld))
    if obj.get("type") not in (None, "Normal", "Warning"):
        errs.append(not_supported("type", obj.get("type"), ["Normal", "Warning"]))
    regarding_ns = dig(obj, "regarding", "namespace") or ""
    meta_ns = dig(obj, "metadata", "namespace") or ""
    if regarding_ns and regarding_ns != meta_ns:
        errs.append(invalid("regarding.namespace", regarding_ns, "does not match event.namespace"))
    return errs


def validate_lease(obj: Obj, rt: ResourceType) -> Errs:
    errs = validate_meta(obj.get("metadata") or {}, rt, is_dns1123_subdomain)
    spec = obj.get("spec") or {}
    duration = spec.get("leaseDurationSeconds")
    if duration is not None and duration <= 0:
        errs.append(invalid("spec.leaseDurationSeconds", duration, "must be greater than 0"))
    transitions = spec.get("leaseTransitions")
    if transitions is not None and transitions < 0:
        errs.append(invalid("spec.leaseTransitions", transitions,
                            "must be greater than or equal to 0"))
    return errs


def validate_generic(obj: Obj, rt: ResourceType) -> Errs:
    return validate_meta(obj.get("metadata") or {}, rt, is_dns1123_subdomain)
