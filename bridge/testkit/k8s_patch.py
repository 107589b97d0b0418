"""PATCH bodies: JSON merge patch (RFC 7386), JSON patch (RFC 6902), strategic merge patch.

Errors follow the apiserver's mapping: undecodable bodies are 400 BadRequest, failed JSON
patch operations are 422 (``NewGenericServerResponse``), a strategic-merge list item without
its merge key surfaces as a 500 (the apiserver does not map that error either).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from .k8s_errors import ApiError, bad_request, internal_error, unprocessable

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, APPLY_PATCH, STRATEGIC_PATCH)

# Strategic merge schema: path of a list field (dict keys only, list indices skipped) ->
# merge key ("" for a set-like primitive list). Lists not named here are replaced.
Schema = Mapping[tuple[str, ...], str]

COMMON_SCHEMA: dict[tuple[str, ...], str] = {
    ("metadata", "finalizers"): "",
    ("metadata", "ownerReferences"): "uid",
}
_CONTAINER = {"env": "name", "ports": "containerPort", "volumeMounts": "mountPath"}


def _pod_schema() -> dict[tuple[str, ...], str]:
    schema = dict(COMMON_SCHEMA)
    for kind in ("containers", "initContainers", "ephemeralContainers"):
        schema[("spec", kind)] = "name"
        for sub, key in _CONTAINER.items():
            schema[("spec", kind, sub)] = key
    schema.update({
        ("spec", "volumes"): "name",
        ("spec", "imagePullSecrets"): "name",
        ("spec", "resourceClaims"): "name",
        ("spec", "hostAliases"): "ip",
        ("status", "conditions"): "type",
        ("status", "podIPs"): "ip",
        ("status", "resourceClaimStatuses"): "name",
    })
    return schema


def strategic_schema(resource: str, group: str) -> Schema:
    """The patch strategies of the Go types behind ``resource``."""
    if group == "resource.k8s.io" and resource == "resourceclaims":
        # status.devices has no patchStrategy: it is replaced as a whole.
        return {**COMMON_SCHEMA, ("status", "reservedFor"): "uid"}
    if group == "" and resource == "pods":
        return _pod_schema()
    if group == "" and resource == "nodes":
        return {**COMMON_SCHEMA, ("status", "conditions"): "type", ("status", "addresses"): "type"}
    if group == "" and resource == "namespaces":
        return {**COMMON_SCHEMA, ("status", "conditions"): "type"}
    return COMMON_SCHEMA


def decode_patch(raw: bytes | str) -> Any:
    try:
        return json.loads(raw)
    except ValueError as err:
        raise bad_request(f"error decoding patch: {err}") from None


# -- RFC 7386 -------------------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def apply_merge_patch(doc: dict[str, Any], patch: Any) -> dict[str, Any]:
    if not isinstance(patch, dict):
        raise bad_request("json: cannot unmarshal non-object into Go value of type map")
    return merge_patch(doc, patch)


# -- RFC 6902 -------------------------------------------------------------------------------

_MISSING = object()


def _pointer(path: Any) -> list[str]:
    if not isinstance(path, str):
        raise unprocessable("path must be a string")
    if path == "":
        return []
    if not path.startswith("/"):
        raise unprocessable(f"JSON pointer must be empty or start with a \"/\": {path}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _container(doc: Any, tokens: list[str], op: str, path: str) -> Any:
    current = doc
    for token in tokens[:-1]:
        current = _child(current, token)
        if current is _MISSING:
            raise unprocessable(
                f"{op} operation does not apply: doc is missing path: \"{path}\": missing value"
            )
    return current


def _child(value: Any, token: str) -> Any:
    if isinstance(value, dict):
        return value.get(token, _MISSING)
    if isinstance(value, list):
        try:
            idx = int(token)
        except ValueError:
            return _MISSING
        return value[idx] if 0 <= idx < len(value) else _MISSING
    return _MISSING


def _index(token: str, length: int, allow_end: bool) -> int:
    if token == "-" and allow_end:
        return length
    try:
        idx = int(token)
    except ValueError:
        raise unprocessable(
            f"Unable to access invalid index: {token}: invalid index referenced") from None
    limit = length if allow_end else length - 1
    if idx < 0 or idx > limit:
        raise unprocessable(f"Unable to access invalid index: {idx}: invalid index referenced")
    return idx


def _get(doc: Any, path: str) -> Any:
    current = doc
    for token in _pointer(path):
        current = _child(current, token)
        if current is _MISSING:
            return _MISSING
    return current


def _add(doc: Any, path: str, value: Any, op: str = "add") -> Any:
    tokens = _pointer(path)
    if not tokens:
        return copy.deepcopy(value)
    parent = _container(doc, tokens, op, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = copy.deepcopy(value)
    elif isinstance(parent, list):
        parent.insert(_index(last, len(parent), True), copy.deepcopy(value))
    else:
        raise unprocessable(f"{op} operation does not apply: doc is missing path: \"{path}\"")
    return doc


def _remove(doc: Any, path: str, op: str = "remove") -> Any:
    tokens = _pointer(path)
    if not tokens:
        raise unprocessable(f"{op} operation does not apply: cannot remove the root")
    parent = _container(doc, tokens, op, path)
    last = tokens[-1]
    if isinstance(parent, dict) and last in parent:
        del parent[last]
    elif isinstance(parent, list):
        del parent[_index(last, len(parent), False)]
    else:
        raise unprocessable(
            f"{op} operation does not apply: doc is missing path: \"{path}\": missing value"
        )
    return doc


def _json_equal(left: Any, right: Any) -> bool:
    return json.dumps(left, sort_keys=True) == json.dumps(right, sort_keys=True)


def _apply_op(doc: Any, op: Mapping[str, Any]) -> Any:
    kind = op.get("op")
    path = op.get("path")
    if kind == "add":
        return _add(doc, path, op.get("value"))
    if kind == "remove":
        return _remove(doc, path)
    if kind == "replace":
        if _get(doc, path) is _MISSING:
            raise unprocessable(
                f"replace operation does not apply: doc is missing key: {path}: missing value"
            )
        _remove(doc, path, "replace")
        return _add(doc, path, op.get("value"), "replace")
    if kind in ("move", "copy"):
        source = _get(doc, op.get("from"))
        if source is _MISSING:
            raise unprocessable(
                f"{kind} operation does not apply: doc is missing from path: {op.get('from')}: "
                "missing value"
            )
        source = copy.deepcopy(source)
        if kind == "move":
            doc = _remove(doc, op.get("from"), "move")
        return _add(doc, path, source, kind)
    if kind == "test":
        current = _get(doc, path)
        expected = op.get("value")
        if current is _MISSING:
            current = None
        if not _json_equal(current, expected):
            raise unprocessable(f"testing value {path} failed: test failed")
        return doc
    raise unprocessable(f"Unexpected kind: {kind}")


def apply_json_patch(doc: dict[str, Any], ops: Any) -> Any:
    if not isinstance(ops, list) or not all(isinstance(op, dict) for op in ops):
        raise bad_request(
            "json: cannot unmarshal object into Go value of type jsonpatch.Patch"
        )
    result: Any = copy.deepcopy(doc)
    for op in ops:
        result = _apply_op(result, op)
    return result


# -- strategic merge patch ------------------------------------------------------------------

_DELETE = object()


def _strip(value: Any) -> Any:
    """Drop ``$``-directives from a value being inserted as-is."""
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if not k.startswith("$")}
    if isinstance(value, list):
        return [_strip(v) for v in value if not (isinstance(v, dict) and "$patch" in v)]
    return copy.deepcopy(value)


def _smp_map(orig: dict[str, Any], patch: dict[str, Any], path: tuple[str, ...], schema: Schema):
    directive = patch.get("$patch")
    if directive == "replace":
        return _strip(patch)
    if directive == "delete":
        return _DELETE
    result = dict(orig)
    retain = patch.get("$retainKeys")
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain or k in patch}
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        if value is None:
            result.pop(key, None)
            continue
        merged = _smp_value(result.get(key, _MISSING), value, (*path, key), schema)
        if merged is _DELETE:
            result.pop(key, None)
        else:
            result[key] = merged
    _apply_list_directives(result, patch)
    return result


def _smp_value(orig: Any, value: Any, path: tuple[str, ...], schema: Schema) -> Any:
    if isinstance(value, dict):
        base = orig if isinstance(orig, dict) else {}
        return _smp_map(base, value, path, schema)
    if isinstance(value, list):
        strategy = schema.get(path)
        base = orig if isinstance(orig, list) else []
        if strategy is None:
            return _strip(value)
        if strategy == "":
            return base + [v for v in value if v not in base]
        return _smp_keyed_list(base, value, strategy, path, schema)
    return copy.deepcopy(value)


def _smp_keyed_list(
    orig: list[Any], patch: list[Any], key: str, path: tuple[str, ...], schema: Schema
) -> list[Any]:
    if any(isinstance(item, dict) and item.get("$patch") == "replace" for item in patch):
        return [_strip(item) for item in patch if not (isinstance(item, dict) and "$patch" in item)]
    result = [copy.deepcopy(item) for item in orig]
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            raise internal_error(f"map: {item} does not contain declared merge key: {key}")
        matches = [
            i for i, cur in enumerate(result)
            if isinstance(cur, dict) and cur.get(key) == item[key]
        ]
        if item.get("$patch") == "delete":
            result = [cur for i, cur in enumerate(result) if i not in matches]
            continue
        if matches:
            merged = _smp_map(result[matches[0]], item, path, schema)
            result[matches[0]] = merged
        else:
            result.append(_strip(item))
    return result


def _apply_list_directives(result: dict[str, Any], patch: dict[str, Any]) -> None:
    for key, value in patch.items():
        if key.startswith("$deleteFromPrimitiveList/") and isinstance(value, list):
            name = key.split("/", 1)[1]
            if isinstance(result.get(name), list):
                result[name] = [v for v in result[name] if v not in value]
        elif key.startswith("$setElementOrder/") and isinstance(value, list):
            name = key.split("/", 1)[1]
            current = result.get(name)
            if isinstance(current, list):
                result[name] = _reorder(current, value)


def _reorder(items: list[Any], order: list[Any]) -> list[Any]:
    def rank(item: Any) -> int:
        for i, wanted in enumerate(order):
            if item == wanted or (
                isinstance(item, dict) and isinstance(wanted, dict)
                and all(item.get(k) == v for k, v in wanted.items())
            ):
                return i
        return len(order)

    return sorted(items, key=rank)


def apply_strategic_merge_patch(doc: dict[str, Any], patch: Any, schema: Schema) -> Any:
    if not isinstance(patch, dict):
        raise bad_request("json: cannot unmarshal non-object into Go value of type map")
    result = _smp_map(copy.deepcopy(doc), patch, (), schema)
    if result is _DELETE:
        raise bad_request("unable to delete the whole object with a strategic merge patch")
    return result


def apply_patch(doc: dict[str, Any], raw: Any, content_type: str, schema: Schema) -> Any:
    """Apply a decoded patch document of the given media type to ``doc`` (a copy is made)."""
    if content_type == MERGE_PATCH:
        return apply_merge_patch(copy.deepcopy(doc), raw)
    if content_type == JSON_PATCH:
        return apply_json_patch(doc, raw)
    if content_type == STRATEGIC_PATCH:
        return apply_strategic_merge_patch(doc, raw, schema)
    raise ApiError(415, "UnsupportedMediaType", f"unsupported patch type {content_type}")
