"""Query parameters (DSP0266 §7.3): parsing and applying them to a document.

Supported, and advertised as such in ``ProtocolFeaturesSupported``: ``$expand`` (``*``,
``.``, ``~`` with ``$levels``), ``$select``, ``$filter``, ``$top``, ``$skip``, ``only``,
``excerpt``. Any other ``$`` parameter is refused with 501; other unknown parameters are
ignored. Evaluation order: $filter, $skip, $top, $expand, excerpt, $select.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from . import filter as filter_lang
from .errors import RedfishError

MAX_EXPAND_LEVELS = 6

SUPPORTED_FEATURES: dict[str, Any] = {
    "ExpandQuery": {
        "ExpandAll": True,
        "Levels": True,
        "Links": True,
        "NoLinks": True,
        "MaxLevels": MAX_EXPAND_LEVELS,
    },
    "SelectQuery": True,
    "FilterQuery": True,
    "FilterQueryComparisonOperations": True,
    "FilterQueryCompoundOperations": True,
    "TopSkipQuery": True,
    "OnlyMemberQuery": True,
    "ExcerptQuery": True,
    "IncludeOriginOfConditionQuery": False,
    "DeepOperations": {"DeepPATCH": False, "DeepPOST": False},
    "MultipleHTTPRequests": True,
}

_KNOWN = {"$expand", "$select", "$filter", "$top", "$skip", "only", "excerpt"}
_EXPAND = re.compile(r"^(?P<kind>[*.~])(?:\(\$levels=(?P<levels>\d+)\))?$")
_SELECT_ITEM = re.compile(r"^[A-Za-z_@#][A-Za-z0-9_@#.]*(?:/[A-Za-z_@#][A-Za-z0-9_@#.]*)*$")


def _value_error(value: str, name: str) -> RedfishError:
    return RedfishError.of(400, "QueryParameterValueFormatError", value, name)


@dataclass
class Query:
    expand: str | None = None  # '*', '.', '~'
    levels: int = 1
    select: list[list[str]] | None = None
    filter: filter_lang.Predicate | None = None
    top: int | None = None
    skip: int | None = None
    only: bool = False
    excerpt: bool = False
    raw: dict[str, str] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not self.raw


def parse(pairs: list[tuple[str, str]], *, bare: set[str]) -> Query:
    """Parse query pairs; ``bare`` names the parameters given without ``=``."""
    q = Query()
    for name, value in pairs:
        if name not in _KNOWN:
            if name.startswith("$"):
                raise RedfishError.of(501, "QueryParameterUnsupported", name)
            continue  # unknown plain parameters are ignored
        if name in q.raw:
            raise RedfishError.of(400, "QueryParameterValueError", name)
        q.raw[name] = value
        if name == "only" or name == "excerpt":
            if value or name not in bare:
                raise _value_error(value, name)
            setattr(q, name, True)
        elif name == "$expand":
            m = _EXPAND.match(value)
            if not m:
                raise _value_error(value, name)
            q.expand = m.group("kind")
            if m.group("levels") is not None:
                levels = int(m.group("levels"))
                if not 1 <= levels <= MAX_EXPAND_LEVELS:
                    raise RedfishError.of(
                        400, "QueryParameterOutOfRange", value, name,
                        f"$levels 1 to {MAX_EXPAND_LEVELS}",
                    )
                q.levels = levels
        elif name == "$select":
            items = [s.strip() for s in value.split(",")]
            if not items or not all(_SELECT_ITEM.match(s) for s in items):
                raise _value_error(value, name)
            q.select = [s.split("/") for s in items]
        elif name == "$filter":
            try:
                q.filter = filter_lang.parse(value)
            except filter_lang.FilterSyntaxError:
                raise _value_error(value, name) from None
        elif name in ("$top", "$skip"):
            if not value.isdigit():
                raise _value_error(value, name)
            setattr(q, name[1:], int(value))
    if q.only and len(q.raw) > 1:
        raise RedfishError.of(400, "QueryCombinationInvalid")
    return q


# -- applying ---------------------------------------------------------------------------

Resolver = Callable[[str], dict[str, Any] | None]
"""Returns the (rendered, readable by this client) document at a URI, or None."""


def _is_ref(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and "@odata.id" in value


def expand(doc: dict[str, Any], kind: str, levels: int, resolve: Resolver) -> dict[str, Any]:
    def walk(value: Any, in_links: bool, depth: int) -> Any:
        if isinstance(value, dict):
            if _is_ref(value):
                wanted = kind == "*" or (kind == "." and not in_links) or (
                    kind == "~" and in_links
                )
                if wanted and depth > 0:
                    target = resolve(value["@odata.id"])
                    if target is not None:
                        return walk_doc(target, depth - 1)
                return value
            return {
                k: walk(v, in_links or k == "Links", depth) for k, v in value.items()
            }
        if isinstance(value, list):
            return [walk(v, in_links, depth) for v in value]
        return value

    def walk_doc(d: dict[str, Any], depth: int) -> dict[str, Any]:
        if depth == 0:
            return d
        return {k: walk(v, k == "Links", depth) for k, v in d.items()}

    return walk_doc(doc, levels)


_ALWAYS = ("@odata.id", "@odata.type", "@odata.context", "@odata.etag")


def select(doc: dict[str, Any], paths: list[list[str]]) -> dict[str, Any]:
    out = {k: doc[k] for k in _ALWAYS if k in doc}
    for path in paths:
        src: Any = doc
        dst = out
        for i, part in enumerate(path):
            if not isinstance(src, dict) or part not in src:
                break
            if i == len(path) - 1:
                dst[part] = src[part]
            else:
                src = src[part]
                dst = dst.setdefault(part, {})
    return out


def page(
    doc: dict[str, Any], uri: str, q: Query, resolve: Resolver
) -> dict[str, Any]:
    """Apply $filter, $skip and $top to a collection's Members."""
    members = doc.get("Members")
    if not isinstance(members, list):
        return doc
    out = dict(doc)
    if q.filter is not None:
        kept = []
        for ref in members:
            link = ref.get("@odata.id") if isinstance(ref, dict) else None
            target = resolve(link) if isinstance(link, str) else None
            if target is not None and q.filter(target):
                kept.append(ref)
        members = kept
        out["Members@odata.count"] = len(members)
    total = len(members)
    start = q.skip or 0
    end = total if q.top is None else start + q.top
    out["Members"] = members[start:end]
    if end < total and q.top != 0:  # $top=0 asks for no members, not for pages of none
        params = {k: v for k, v in q.raw.items() if k not in ("$skip", "$top")}
        params["$skip"] = str(end)
        if q.top is not None:
            params["$top"] = str(q.top)
        query = "&".join(f"{k}={quote(v, safe='*.~()=$,/')}" for k, v in params.items())
        out["Members@odata.nextLink"] = f"{uri}?{query}"
    return out
