"""Validation and defaulting of the resource.k8s.io/v1 kinds (after pkg/apis/resource/validation).

Field paths, limits and message texts follow the Go validation; CEL expressions are only
checked for presence and length (no CEL compiler here).
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from .k8s_errors import (
    forbidden,
    invalid,
    not_supported,
    required,
    too_long,
    too_many,
)
from .k8s_names import (
    is_c_identifier,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_label_value,
    is_qualified_name,
)
from .k8s_resources import ResourceType
from .k8s_validation import (
    CONDITION_SCHEMA,
    NODE_SELECTOR_SCHEMA,
    Errs,
    Obj,
    check_list,
    child,
    dig,
    duplicates,
    index,
    key,
    name_errors,
    validate_annotations,
    validate_conditions,
    validate_labels,
    validate_meta,
    validate_meta_update,
    validate_node_selector,
    validate_raw_object,
)

REQUESTS_MAX = 32
SUBREQUESTS_MAX = 8
SELECTORS_MAX = 32
CONSTRAINTS_MAX = 32
CONFIG_MAX = 32
RESULTS_MAX = 32
CEL_MAX_LEN = 10 * 1024
OPAQUE_MAX = 10 * 1024
RESERVED_FOR_MAX = 256
DEVICE_CONDITIONS_MAX = 8
DEVICE_DATA_MAX = 10 * 1024
SLICE_MAX_DEVICES = 128
SLICE_MAX_DEVICES_TAINTED = 64
ATTRS_AND_CAPACITY_MAX = 32
ATTRIBUTE_VALUE_MAX = 64
BINDING_CONDITIONS_MAX = 4
DEVICE_TAINTS_MAX = 16
COUNTER_SETS_MAX = 8
POOL_NAME_MAX = 253
DEVICE_ID_MAX = 32
TAINT_EFFECTS = ("NoExecute", "NoSchedule", "None")
_SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(-(0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(\.(0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*)?"
    r"(\+[0-9a-zA-Z-]+(\.[0-9a-zA-Z-]+)*)?$"
)

TAINT_SCHEMA = {"key": "str", "value": "str", "effect": "str", "timeAdded": "time"}
TOLERATION_SCHEMA = {"key": "str", "operator": "str", "value": "str", "effect": "str",
                     "tolerationSeconds": "int"}
DEVICE_SCHEMA = {
    "name": "str",
    "attributes": {"*": {"int": "int", "bool": "bool", "string": "str", "version": "str"}},
    "capacity": {"*": {"value": "quantity", "requestPolicy": "object"}},
    "bindsToNode": "bool", "bindingConditions": "[]str", "bindingFailureConditions": "[]str",
    "allNodes": "bool", "nodeName": "str", "nodeSelector": NODE_SELECTOR_SCHEMA,
    "taints": [TAINT_SCHEMA], "allowMultipleAllocations": "bool", "consumesCounters": "list",
}
SLICE_SCHEMA = {"spec": {
    "driver": "str",
    "pool": {"name": "str", "generation": "int", "resourceSliceCount": "int"},
    "nodeName": "str", "nodeSelector": NODE_SELECTOR_SCHEMA, "allNodes": "bool",
    "perDeviceNodeSelection": "bool", "devices": [DEVICE_SCHEMA], "sharedCounters": "list",
}}
_REQUEST_BODY = {
    "deviceClassName": "str", "selectors": [{"cel": {"expression": "str"}}],
    "allocationMode": "str", "count": "int", "adminAccess": "bool",
    "tolerations": [TOLERATION_SCHEMA],
}
CLAIM_SPEC_SCHEMA = {"devices": {
    "requests": [{"name": "str", "exactly": _REQUEST_BODY,
                  "firstAvailable": [{"name": "str", **_REQUEST_BODY}]}],
    "constraints": [{"requests": "[]str", "matchAttribute": "str", "distinctAttribute": "str"}],
    "config": [{"requests": "[]str", "opaque": {"driver": "str"}}],
}}
RESULT_SCHEMA = {
    "request": "str", "driver": "str", "pool": "str", "device": "str", "adminAccess": "bool",
    "bindingConditions": "[]str", "bindingFailureConditions": "[]str", "shareID": "str",
    "tolerations": [TOLERATION_SCHEMA],
}
CLAIM_SCHEMA = {
    "spec": CLAIM_SPEC_SCHEMA,
    "status": {
        "allocation": {
            "devices": {"results": [RESULT_SCHEMA], "config": "list"},
            "nodeSelector": NODE_SELECTOR_SCHEMA, "allocationTimestamp": "time",
        },
        "reservedFor": [{"apiGroup": "str", "resource": "str", "name": "str", "uid": "str"}],
        "devices": [{
            "driver": "str", "pool": "str", "device": "str", "shareID": "str",
            "conditions": [CONDITION_SCHEMA], "data": "object",
            "networkData": {"interfaceName": "str", "ips": "[]str", "hardwareAddress": "str"},
        }],
    },
}
CLAIM_TEMPLATE_SCHEMA = {"spec": {"spec": CLAIM_SPEC_SCHEMA}}
DEVICE_CLASS_SCHEMA = {"spec": {"selectors": [{"cel": {"expression": "str"}}],
                                "config": [{"opaque": {"driver": "str"}}],
                                "extendedResourceName": "str"}}
TAINT_RULE_SCHEMA = {"spec": {"deviceSelector": {"driver": "str", "pool": "str", "device": "str"},
                              "taint": TAINT_SCHEMA},
                     "status": {"conditions": [CONDITION_SCHEMA]}}


# -- names ------------------------------------------------------------------------------------


def validate_driver_name(name: str, path: str) -> Errs:
    """``ValidateCSIDriverName``: required, <= 63, DNS subdomain (case-insensitive)."""
    errs: Errs = []
    if not name:
        errs.append(required(path))
    if len(name) > 63:
        errs.append(too_long(path, 63))
    errs += [invalid(path, name, m) for m in is_dns1123_subdomain(name.lower())]
    return errs


def validate_pool_name(name: str, path: str) -> Errs:
    if not name:
        return [required(path)]
    errs: Errs = []
    if len(name) > POOL_NAME_MAX:
        errs.append(too_long(path, POOL_NAME_MAX))
    for part in name.split("/"):
        errs += [invalid(path, part, m) for m in is_dns1123_subdomain(part)]
    return errs


def validate_dns_label(name: str, path: str) -> Errs:
    return name_errors(path, name, is_dns1123_label)


def validate_label_name(name: str, path: str) -> Errs:
    return [invalid(path, name, m) for m in is_qualified_name(name)]


def validate_uid(uid: str, path: str) -> Errs:
    try:
        parsed = uuid.UUID(uid)
    except ValueError as err:
        return [invalid(path, uid, f"error validating uid: {err}")]
    if len(uid) != 36 or uid != str(parsed):
        return [invalid(path, uid, "uid must be in RFC 4122 normalized form, "
                                   "`xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` with lowercase "
                                   "hexadecimal characters")]
    return []


def validate_attribute_name(name: str, path: str) -> Errs:
    """``validateQualifiedName`` for attribute/capacity keys: C identifier, optional domain."""
    parts = name.split("/")
    errs: Errs = []
    if len(parts) == 2:
        domain, ident = parts
        if not domain:
            errs.append(invalid(path, "", "the domain must not be empty"))
        else:
            errs += validate_driver_name(domain, path)
        if not ident:
            errs.append(invalid(path, "", "the name must not be empty"))
            return errs
    else:
        ident = parts[0]
    if len(ident) > DEVICE_ID_MAX:
        errs.append(too_long(path, DEVICE_ID_MAX))
    errs += [invalid(path, ident, m) for m in is_c_identifier(ident)]
    return errs


# -- binding conditions, taints, tolerations ---------------------------------------------------


def validate_binding_parameters(conds: list[str], failures: list[str], path: str) -> Errs:
    """``validateDeviceBindingParameters``."""
    errs: Errs = []
    cpath, fpath = child(path, "bindingConditions"), child(path, "bindingFailureConditions")
    size = check_list(conds, BINDING_CONDITIONS_MAX, cpath)
    errs += size or [
        e for i, c in enumerate(conds) for e in validate_label_name(c, index(cpath, i))
    ]
    size = check_list(failures, BINDING_CONDITIONS_MAX, fpath)
    errs += size or [
        e for i, c in enumerate(failures) for e in validate_label_name(c, index(fpath, i))
    ]
    errs += duplicates(conds, lambda c: c, cpath)
    errs += duplicates(failures, lambda c: c, fpath)
    for i, cond in enumerate(failures):
        if cond in conds:
            errs.append(invalid(index(fpath, i), cond,
                                "bindingFailureConditions must not overlap with bindingConditions"))
    if not conds and failures:
        errs.append(invalid(cpath, conds, "bindingConditions are required to use "
                                          "bindingFailureConditions"))
    if conds and not failures:
        errs.append(invalid(fpath, failures, "bindingFailureConditions are required to use "
                                             "bindingConditions"))
    return errs


def validate_taint(taint: Obj, path: str) -> Errs:
    k = taint.get("key") or ""
    errs = validate_label_name(k, child(path, "key"))
    value = taint.get("value") or ""
    if value:
        errs += [invalid(child(path, "value"), value, m) for m in is_label_value(value)]
    effect = taint.get("effect") or ""
    if not effect:
        errs.append(required(child(path, "effect")))
    elif effect not in TAINT_EFFECTS:
        errs.append(not_supported(child(path, "effect"), effect, list(TAINT_EFFECTS)))
    return errs


def validate_toleration(tol: Obj, path: str) -> Errs:
    errs: Errs = []
    if tol.get("key"):
        errs += validate_label_name(tol["key"], child(path, "key"))
    op = tol.get("operator") or ""
    value = tol.get("value") or ""
    if op == "Exists" and value:
        errs.append(invalid(child(path, "value"), value, "must be empty for operator `Exists`"))
    elif op == "Equal":
        errs += [invalid(child(path, "value"), value, m) for m in is_label_value(value)]
    elif op == "":
        errs.append(required(child(path, "operator")))
    elif op not in ("Exists", "Equal"):
        errs.append(not_supported(child(path, "operator"), op, ["Equal", "Exists"]))
    effect = tol.get("effect") or ""
    if effect and effect not in TAINT_EFFECTS:
        errs.append(not_supported(child(path, "effect"), effect, list(TAINT_EFFECTS)))
    return errs


# -- DeviceClass / opaque config / selectors ---------------------------------------------------


def validate_selectors(selectors: Any, path: str) -> Errs:
    selectors = selectors or []
    size = check_list(selectors, SELECTORS_MAX, path)
    if size:
        return size
    errs: Errs = []
    for i, selector in enumerate(selectors):
        cel = (selector or {}).get("cel")
        p = index(path, i)
        if cel is None:
            errs.append(required(child(p, "cel")))
            continue
        expression = cel.get("expression") or ""
        if len(expression) > CEL_MAX_LEN:
            errs.append(too_long(child(child(p, "cel"), "expression"), CEL_MAX_LEN))
        elif not expression.strip():
            errs.append(required(child(child(p, "cel"), "expression"),
                                 "compilation failed: expression must not be empty"))
    return errs


def validate_opaque(config: Obj, path: str) -> Errs:
    opaque = config.get("opaque")
    if opaque is None:
        return [required(child(path, "opaque"))]
    opath = child(path, "opaque")
    errs = validate_driver_name(opaque.get("driver") or "", child(opath, "driver"))
    errs += validate_raw_object(opaque.get("parameters"), child(opath, "parameters"), OPAQUE_MAX)
    return errs


def validate_device_class(obj: Obj, rt: ResourceType) -> Errs:
    errs = validate_meta(obj.get("metadata") or {}, rt, is_dns1123_subdomain)
    spec = obj.get("spec") or {}
    errs += validate_selectors(spec.get("selectors"), "spec.selectors")
    configs = spec.get("config") or []
    errs += check_list(configs, CONFIG_MAX, "spec.config") or [
        e for i, c in enumerate(configs) for e in validate_opaque(c, index("spec.config", i))
    ]
    ext = spec.get("extendedResourceName")
    if ext is not None and ("/" not in ext or is_qualified_name(ext)
                            or ext.startswith(("kubernetes.io/", "requests."))):
        errs.append(invalid("spec.extendedResourceName", ext,
                            "must be a valid extended resource name"))
    return errs


def validate_device_class_update(new: Obj, old: Obj, rt: ResourceType) -> Errs:
    return validate_meta_update(new.get("metadata") or {}, old.get("metadata") or {}) + \
        validate_device_class(new, rt)


# -- ResourceClaim spec -------------------------------------------------------------------------


def default_claim_spec(spec: Obj) -> None:
    """Defaulting of ``spec.devices.requests``: allocationMode, count, toleration operator."""
    for request in dig(spec, "devices", "requests") or []:
        bodies = [request.get("exactly"), *(request.get("firstAvailable") or [])]
        for body in bodies:
            if not isinstance(body, dict):
                continue
            body.setdefault("allocationMode", "ExactCount")
            if body["allocationMode"] == "ExactCount":
                body.setdefault("count", 1)
            for tol in body.get("tolerations") or []:
                tol.setdefault("operator", "Equal")


def request_names(spec: Obj) -> dict[str, set[str] | None]:
    names: dict[str, set[str] | None] = {}
    for request in dig(spec, "devices", "requests") or []:
        subs = request.get("firstAvailable")
        names[request.get("name") or ""] = {s.get("name") for s in subs} if subs else None
    return names


def _has_request(names: dict[str, set[str] | None], ref: str) -> bool:
    parts = ref.split("/")
    if len(parts) > 2 or parts[0] not in names:
        return False
    subs = names[parts[0]]
    return len(parts) == 1 or (subs is not None and parts[1] in subs)


def validate_request_ref(ref: str, path: str, names: dict[str, set[str] | None]) -> Errs:
    msg = ("must be the name of a request in the claim or the name of a request and a "
           "subrequest separated by '/'")
    parts = ref.split("/")
    if len(parts) > 2:
        return [invalid(path, ref, msg)]
    errs = [e for part in parts for e in validate_dns_label(part, path)]
    if not _has_request(names, ref):
        errs.append(invalid(path, ref, msg))
    return errs


def _validate_request_body(body: Obj, path: str) -> Errs:
    cls = body.get("deviceClassName") or ""
    errs = [required(child(path, "deviceClassName"))] if not cls else name_errors(
        child(path, "deviceClassName"), cls, is_dns1123_subdomain)
    errs += validate_selectors(body.get("selectors"), child(path, "selectors"))
    mode = body.get("allocationMode") or ""
    count = body.get("count") or 0
    if mode == "All" and count != 0:
        errs.append(invalid(child(path, "count"), count,
                            "must not be specified when allocationMode is 'All'"))
    elif mode == "ExactCount" and count <= 0:
        errs.append(invalid(child(path, "count"), count, "must be greater than zero"))
    elif mode not in ("All", "ExactCount"):
        errs.append(not_supported(child(path, "allocationMode"), mode, ["All", "ExactCount"]))
    for i, tol in enumerate(body.get("tolerations") or []):
        errs += validate_toleration(tol, index(child(path, "tolerations"), i))
    return errs


def _validate_request(request: Obj, path: str) -> Errs:
    errs = validate_dns_label(request.get("name") or "", child(path, "name"))
    exactly, first = request.get("exactly"), request.get("firstAvailable") or []
    if exactly is None and not first:
        errs.append(required(path, "exactly one of `exactly` or `firstAvailable` is required"))
    elif exactly is not None and first:
        errs.append(invalid(path, None, "exactly one of `exactly` or `firstAvailable` is "
                                        "required, but multiple fields are set"))
    elif exactly is not None:
        errs += _validate_request_body(exactly, child(path, "exactly"))
    else:
        fpath = child(path, "firstAvailable")
        size = check_list(first, SUBREQUESTS_MAX, fpath)
        if size:
            return errs + size
        for i, sub in enumerate(first):
            errs += validate_dns_label(sub.get("name") or "", child(index(fpath, i), "name"))
            errs += _validate_request_body(sub, index(fpath, i))
        errs += duplicates(first, lambda s: s.get("name"), fpath)
    return errs


def validate_claim_spec(spec: Obj, path: str) -> Errs:
    devices = spec.get("devices") or {}
    dpath = child(path, "devices")
    names = request_names(spec)
    requests = devices.get("requests") or []
    rpath = child(dpath, "requests")
    errs = check_list(requests, REQUESTS_MAX, rpath) or [
        e for i, r in enumerate(requests) for e in _validate_request(r, index(rpath, i))
    ]
    errs += duplicates(requests, lambda r: r.get("name"), rpath)
    for i, constraint in enumerate(devices.get("constraints") or []):
        cpath = index(child(dpath, "constraints"), i)
        for j, ref in enumerate(constraint.get("requests") or []):
            errs += validate_request_ref(ref, index(child(cpath, "requests"), j), names)
        attr = constraint.get("matchAttribute") or constraint.get("distinctAttribute")
        fld = "matchAttribute" if constraint.get("matchAttribute") else "distinctAttribute"
        if attr is None:
            errs.append(required(child(cpath, "matchAttribute")))
        else:
            errs += validate_attribute_name(attr, child(cpath, fld))
            if "/" not in attr:
                errs.append(invalid(child(cpath, fld), attr, "a fully qualified name must be "
                                                             "a domain and a name separated by a "
                                                             "slash"))
    for i, config in enumerate(devices.get("config") or []):
        cpath = index(child(dpath, "config"), i)
        for j, ref in enumerate(config.get("requests") or []):
            errs += validate_request_ref(ref, index(child(cpath, "requests"), j), names)
        errs += validate_opaque(config, cpath)
    return errs


def validate_claim(obj: Obj, rt: ResourceType) -> Errs:
    errs = validate_meta(obj.get("metadata") or {}, rt, is_dns1123_subdomain)
    return errs + validate_claim_spec(obj.get("spec") or {}, "spec")


def validate_claim_update(new: Obj, old: Obj, rt: ResourceType) -> Errs:
    errs = validate_meta(new.get("metadata") or {}, rt, is_dns1123_subdomain)
    errs += validate_meta_update(new.get("metadata") or {}, old.get("metadata") or {})
    if (new.get("spec") or {}) != (old.get("spec") or {}):
        errs.append(invalid("spec", None, "field is immutable"))
    return errs


def validate_claim_template(obj: Obj, rt: ResourceType) -> Errs:
    errs = validate_meta(obj.get("metadata") or {}, rt, is_dns1123_subdomain)
    spec = obj.get("spec") or {}
    meta = spec.get("metadata") or {}
    errs += validate_labels(meta.get("labels"), "spec.metadata.labels")
    errs += validate_annotations(meta.get("annotations"), "spec.metadata.annotations")
    return errs + validate_claim_spec(spec.get("spec") or {}, "spec.spec")


def validate_claim_template_update(new: Obj, old: Obj, rt: ResourceType) -> Errs:
    del rt
    errs = validate_meta_update(new.get("metadata") or {}, old.get("metadata") or {})
    if (new.get("spec") or {}) != (old.get("spec") or {}):
        errs.append(invalid("spec", None, "field is immutable"))
    return errs


# -- ResourceClaim status -----------------------------------------------------------------------


def device_id(entry: Obj) -> str:
    """``structured.SharedDeviceID`` string: driver/pool/device[/shareID]."""
    ident = f"{entry.get('driver') or ''}/{entry.get('pool') or ''}/{entry.get('device') or ''}"
    share = entry.get("shareID")
    return f"{ident}/{share}" if share else ident


def allocated_ids(status: Obj) -> set[str]:
    return {device_id(r) for r in dig(status, "allocation", "devices", "results") or []}


def _validate_device_status(entry: Obj, path: str, allocated: set[str]) -> Errs:
    errs = validate_driver_name(entry.get("driver") or "", child(path, "driver"))
    errs += validate_pool_name(entry.get("pool") or "", child(path, "pool"))
    errs += validate_dns_label(entry.get("device") or "", child(path, "device"))
    if entry.get("shareID") is not None:
        errs += validate_uid(entry["shareID"], child(path, "shareID"))
    if device_id(entry) not in allocated:
        errs.append(invalid(path, device_id(entry), "must be an allocated device in the claim"))
    conditions = entry.get("conditions") or []
    cpath = child(path, "conditions")
    if len(conditions) > DEVICE_CONDITIONS_MAX:
        errs.append(too_many(cpath, len(conditions), DEVICE_CONDITIONS_MAX))
    errs += validate_conditions(conditions, cpath)
    if "data" in entry:
        errs += validate_raw_object(entry["data"], child(path, "data"), DEVICE_DATA_MAX)
    network = entry.get("networkData") or {}
    npath = child(path, "networkData")
    if len(network.get("interfaceName") or "") > 256:
        errs.append(too_long(child(npath, "interfaceName"), 256))
    if len(network.get("hardwareAddress") or "") > 128:
        errs.append(too_long(child(npath, "hardwareAddress"), 128))
    errs += check_list(network.get("ips"), 16, child(npath, "ips"))
    return errs


def _validate_result(result: Obj, path: str, names: dict[str, set[str] | None]) -> Errs:
    errs = validate_request_ref(result.get("request") or "", child(path, "request"), names)
    errs += validate_driver_name(result.get("driver") or "", child(path, "driver"))
    errs += validate_pool_name(result.get("pool") or "", child(path, "pool"))
    errs += validate_dns_label(result.get("device") or "", child(path, "device"))
    errs += validate_binding_parameters(result.get("bindingConditions") or [],
                                        result.get("bindingFailureConditions") or [], path)
    if result.get("shareID") is not None:
        errs += validate_uid(result["shareID"], child(path, "shareID"))
    return errs


def _validate_allocation(allocation: Obj, path: str, names: dict[str, set[str] | None]) -> Errs:
    devices = allocation.get("devices") or {}
    rpath = child(child(path, "devices"), "results")
    results = devices.get("results") or []
    errs = check_list(results, RESULTS_MAX, rpath) or [
        e for i, r in enumerate(results) for e in _validate_result(r, index(rpath, i), names)
    ]
    cpath = child(child(path, "devices"), "config")
    for i, config in enumerate(devices.get("config") or []):
        p = index(cpath, i)
        source = config.get("source") or ""
        if not source:
            errs.append(required(child(p, "source")))
        elif source not in ("FromClaim", "FromClass"):
            errs.append(not_supported(child(p, "source"), source, ["FromClaim", "FromClass"]))
        for j, ref in enumerate(config.get("requests") or []):
            errs += validate_request_ref(ref, index(child(p, "requests"), j), names)
        errs += validate_opaque(config, p)
    if allocation.get("nodeSelector") is not None:
        errs += validate_node_selector(allocation["nodeSelector"], child(path, "nodeSelector"))
    return errs


def _validate_reserved_for(reserved: list[Obj]) -> Errs:
    path = "status.reservedFor"
    size = check_list(reserved, RESERVED_FOR_MAX, path)
    if size:
        return size
    errs: Errs = []
    for i, ref in enumerate(reserved):
        for fld in ("resource", "name", "uid"):
            if not ref.get(fld):
                errs.append(required(child(index(path, i), fld)))
    return errs + duplicates(reserved, lambda r: r.get("uid"), path)


def validate_claim_status_update(new: Obj, old: Obj, rt: ResourceType) -> Errs:
    """``ValidateResourceClaimStatusUpdate``."""
    del rt
    errs = validate_meta_update(new.get("metadata") or {}, old.get("metadata") or {})
    status, old_status = new.get("status") or {}, old.get("status") or {}
    reserved = status.get("reservedFor") or []
    errs += _validate_reserved_for(reserved)
    allocated = allocated_ids(status)
    devices = status.get("devices") or []
    for i, entry in enumerate(devices):
        errs += _validate_device_status(entry, index("status.devices", i), allocated)
    errs += duplicates(devices, device_id, "status.devices")
    allocation, old_allocation = status.get("allocation"), old_status.get("allocation")
    if reserved and allocation is None:
        errs.append(forbidden("status.reservedFor", "may not be specified when `allocated` is "
                                                    "not set"))
    elif reserved and dig(new, "metadata", "deletionTimestamp"):
        old_uids = {r.get("uid") for r in old_status.get("reservedFor") or []}
        if any(r.get("uid") not in old_uids for r in reserved):
            errs.append(forbidden("status.reservedFor", "new entries may not be added while "
                                                        "`deallocationRequested` or "
                                                        "`deletionTimestamp` are set"))
    if old_allocation is not None and allocation is not None:
        if allocation != old_allocation:
            errs.append(invalid("status.allocation", None, "field is immutable"))
    elif allocation is not None:
        errs += _validate_allocation(allocation, "status.allocation",
                                     request_names(new.get("spec") or {}))
    return errs


def drop_deallocated_devices(new: Obj, old: Obj) -> None:
    """Apiserver strategy ``dropDeallocatedStatusDevices``."""
    status = new.get("status")
    if not isinstance(status, dict) or not status.get("devices"):
        return
    gone = allocated_ids(old.get("status") or {}) - allocated_ids(status)
    if not gone:
        return
    kept = [d for d in status["devices"] if device_id(d) not in gone]
    if kept:
        status["devices"] = kept
    else:
        status.pop("devices", None)


# -- ResourceSlice --------------------------------------------------------------------------


def _attr_errors(name: str, attr: Any, path: str) -> Errs:
    errs = validate_attribute_name(name, path)
    attr = attr or {}
    present = [k for k in ("bool", "int", "string", "version") if attr.get(k) is not None]
    if "string" in present and len(attr["string"]) > ATTRIBUTE_VALUE_MAX:
        errs.append(too_long(child(path, "string"), ATTRIBUTE_VALUE_MAX))
    if "version" in present:
        version = attr["version"]
        if not _SEMVER.match(version):
            errs.append(invalid(child(path, "version"), version,
                                "must be a string compatible with semver.org spec 2.0.0"))
        if len(version) > ATTRIBUTE_VALUE_MAX:
            errs.append(too_long(child(path, "version"), ATTRIBUTE_VALUE_MAX))
    if not present:
        errs.append(invalid(path, "", "exactly one value must be specified"))
    elif len(present) > 1:
        errs.append(invalid(path, attr, "exactly one value must be specified"))
    return errs


def _device_node_selection(device: Obj, path: str, per_device: bool) -> Errs:
    fields = [f for f in ("nodeName", "nodeSelector", "allNodes") if device.get(f) is not None]
    if not per_device:
        if fields:
            return [invalid(path, None, "`nodeName`, `nodeSelector` and `allNodes` can only be "
                                        "set if `perDeviceNodeSelection` is set to true in the "
                                        "ResourceSlice spec")]
        return []
    errs: Errs = []
    chosen: list[str] = []
    if device.get("nodeName") is not None:
        if device["nodeName"]:
            chosen.append("`nodeName`")
            errs += name_errors(child(path, "nodeName"), device["nodeName"], is_dns1123_subdomain)
        else:
            errs.append(invalid(child(path, "nodeName"), "", "must not be empty"))
    if device.get("nodeSelector") is not None:
        chosen.append("`nodeSelector`")
        errs += validate_node_selector(device["nodeSelector"], child(path, "nodeSelector"))
    if device.get("allNodes") is not None:
        if device["allNodes"]:
            chosen.append("`allNodes`")
        else:
            errs.append(invalid(child(path, "allNodes"), False, "must be either unset or set to "
                                                                "true"))
    msg = ("exactly one of `nodeName`, `nodeSelector`, or `allNodes` is required when "
           "`perDeviceNodeSelection` is set to true in the ResourceSlice spec")
    if not chosen:
        errs.append(required(path, msg))
    elif len(chosen) > 1:
        errs.append(invalid(path, "{" + ", ".join(chosen) + "}", msg))
    return errs


def _validate_device(device: Obj, path: str, per_device: bool) -> Errs:
    errs = validate_dns_label(device.get("name") or "", child(path, "name"))
    attrs, capacity = device.get("attributes") or {}, device.get("capacity") or {}
    total = len(attrs) + len(capacity)
    if total > ATTRS_AND_CAPACITY_MAX:
        errs.append(invalid(path, total, "the total number of attributes and capacities must "
                                         f"not exceed {ATTRS_AND_CAPACITY_MAX}"))
    for name, attr in attrs.items():
        errs += _attr_errors(name, attr, key(child(path, "attributes"), name))
    multi = bool(device.get("allowMultipleAllocations"))
    for name, cap in capacity.items():
        cpath = key(child(path, "capacity"), name)
        errs += validate_attribute_name(name, cpath)
        if (cap or {}).get("requestPolicy") is not None and not multi:
            errs.append(forbidden(child(cpath, "requestPolicy"),
                                  "allowMultipleAllocations must be true"))
    taints = device.get("taints") or []
    tpath = child(path, "taints")
    errs += check_list(taints, DEVICE_TAINTS_MAX, tpath) or [
        e for i, t in enumerate(taints) for e in validate_taint(t, index(tpath, i))
    ]
    errs += _device_node_selection(device, path, per_device)
    errs += validate_binding_parameters(device.get("bindingConditions") or [],
                                        device.get("bindingFailureConditions") or [], path)
    return errs


def _node_selection(spec: Obj) -> Errs:
    errs: Errs = []
    chosen: list[str] = []
    node_name = spec.get("nodeName")
    if node_name is not None:
        if node_name:
            chosen.append("`nodeName`")
            errs += name_errors("spec.nodeName", node_name, is_dns1123_subdomain)
        else:
            errs.append(invalid("spec.nodeName", "", "must be either unset or set to a non-empty "
                                                     "string"))
    selector = spec.get("nodeSelector")
    if selector is not None:
        chosen.append("`nodeSelector`")
        errs += validate_node_selector(selector, "spec.nodeSelector")
        terms = selector.get("nodeSelectorTerms") or []
        if len(terms) != 1:
            errs.append(invalid("spec.nodeSelector.nodeSelectorTerms", terms,
                                "must have exactly one node selector term"))
    for fld in ("allNodes", "perDeviceNodeSelection"):
        if spec.get(fld) is not None:
            if spec[fld]:
                chosen.append(f"`{fld}`")
            else:
                errs.append(invalid(f"spec.{fld}", False, "must be either unset or set to true"))
    msg = "exactly one of `nodeName`, `nodeSelector`, `allNodes`, `perDeviceNodeSelection` is " \
          "required"
    if not chosen:
        errs.append(required("spec", msg))
    elif len(chosen) > 1:
        errs.append(invalid("spec", "{" + ", ".join(chosen) + "}",
                            msg + ", but multiple fields are set"))
    return errs


def _validate_slice_spec(spec: Obj, old_spec: Obj | None) -> Errs:
    errs = validate_driver_name(spec.get("driver") or "", "spec.driver")
    pool = spec.get("pool") or {}
    errs += validate_pool_name(pool.get("name") or "", "spec.pool.name")
    if (pool.get("resourceSliceCount") or 0) <= 0:
        errs.append(invalid("spec.pool.resourceSliceCount", pool.get("resourceSliceCount") or 0,
                            "must be greater than zero"))
    if (pool.get("generation") or 0) < 0:
        errs.append(invalid("spec.pool.generation", pool["generation"],
                            "must be greater than or equal to zero"))
    if old_spec is not None:
        for path, new_v, old_v in (
            ("spec.pool.name", pool.get("name"), dig(old_spec, "pool", "name")),
            ("spec.driver", spec.get("driver"), old_spec.get("driver")),
            ("spec.nodeName", spec.get("nodeName"), old_spec.get("nodeName")),
        ):
            if new_v != old_v:
                errs.append(invalid(path, new_v, "field is immutable"))
    errs += _node_selection(spec)
    devices = spec.get("devices") or []
    if spec.get("sharedCounters") is not None and spec.get("devices") is not None:
        errs.append(invalid("spec", "", "only one of `sharedCounters` or `devices` is allowed"))
    tainted = any(d.get("taints") or d.get("consumesCounters") for d in devices)
    limit = SLICE_MAX_DEVICES_TAINTED if tainted else SLICE_MAX_DEVICES
    size = check_list(devices, limit, "spec.devices")
    if size:
        errs += size
    else:
        per_device = bool(spec.get("perDeviceNodeSelection"))
        for i, device in enumerate(devices):
            errs += _validate_device(device, index("spec.devices", i), per_device)
        errs += duplicates(devices, lambda d: d.get("name"), "spec.devices")
    errs += check_list(spec.get("sharedCounters"), COUNTER_SETS_MAX, "spec.sharedCounters")
    return errs


def validate_slice(obj: Obj, rt: ResourceType) -> Errs:
    errs = validate_meta(obj.get("metadata") or {}, rt, is_dns1123_subdomain)
    return errs + _validate_slice_spec(obj.get("spec") or {}, None)


def validate_slice_update(new: Obj, old: Obj, rt: ResourceType) -> Errs:
    del rt
    errs = validate_meta_update(new.get("metadata") or {}, old.get("metadata") or {})
    return errs + _validate_slice_spec(new.get("spec") or {}, old.get("spec") or {})


# -- DeviceTaintRule ---------------------------------------------------------------------------


def validate_taint_rule(obj: Obj, rt: ResourceType) -> Errs:
    errs = validate_meta(obj.get("metadata") or {}, rt, is_dns1123_subdomain)
    spec = obj.get("spec") or {}
    selector = spec.get("deviceSelector") or {}
    spath = "spec.deviceSelector"
    if selector.get("driver") is not None:
        errs += validate_driver_name(selector["driver"], child(spath, "driver"))
    if selector.get("pool") is not None:
        errs += validate_pool_name(selector["pool"], child(spath, "pool"))
    if selector.get("device") is not None:
        errs += validate_dns_label(selector["device"], child(spath, "device"))
    return errs + validate_taint(spec.get("taint") or {}, "spec.taint")


def validate_taint_rule_update(new: Obj, old: Obj, rt: ResourceType) -> Errs:
    return validate_meta_update(new.get("metadata") or {}, old.get("metadata") or {}) + \
        validate_taint_rule(new, rt)


def validate_taint_rule_status(new: Obj, old: Obj, rt: ResourceType) -> Errs:
    del rt
    errs = validate_meta_update(new.get("metadata") or {}, old.get("metadata") or {})
    conditions = dig(new, "status", "conditions") or []
    errs += validate_conditions(conditions, "status.conditions")
    if len(conditions) > DEVICE_CONDITIONS_MAX:
        errs.append(too_many("status.conditions", len(conditions), DEVICE_CONDITIONS_MAX))
    return errs

