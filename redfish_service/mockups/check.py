"""Checking a mockup: dangling links, collection counts, action targets, and (with the
DMTF JSON Schemas at hand) schema violations, each with the URI of its document.

Schemas are read from a local DSP8010 ``json-schema`` folder (``--schemas`` or
``REDFISH_JSON_SCHEMA_DIR``) and, for SNIA types, the Swordfish one beside it; nothing is
fetched. ``jsonschema`` is needed only for the schema part.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import orjson

from ..resources.uris import SERVICE_ROOT as ROOT
from .loader import Mockup, Problem, link_target

SCHEMA_DIR_ENV = "REDFISH_JSON_SCHEMA_DIR"
_REF = re.compile(r"^https?://redfish\.dmtf\.org/schemas/(swordfish/)?v1/([^/#]+)$")
_VERSIONED = re.compile(r"^(\w+)\.v(\d+)_(\d+)_(\d+)$")
_NOT_DOCUMENTS = ("/redfish/v1/$metadata", "/redfish/v1/odata")


def _links(value: Any, top: bool = True) -> Iterator[tuple[str, str]]:
    """(property, URI) of every link: ``@odata.id`` of nested objects, and the URI-valued
    properties clients follow too (``DataSourceUri``, a registry's ``Location.Uri``)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, str):
                if (key == "@odata.id" and not top) or (
                        key.endswith("Uri") and item.startswith("/redfish/v1")
                        and key != "ServerSentEventUri"):  # a stream, not a document
                    yield key, item
            elif isinstance(item, (dict, list)):
                yield from _links(item, top=False)
    elif isinstance(value, list):
        for item in value:
            yield from _links(item, top=False)


def structural(mockup: Mockup) -> list[Problem]:
    """Dangling links, ``Id`` that is not the last segment of the URI (the service root's
    aside), ``Members@odata.count`` that disagrees, misplaced action targets."""
    out: list[Problem] = []
    docs = mockup.documents
    for uri, doc in docs.items():
        seen: set[str] = set()
        for prop, ref in _links(doc):
            target = link_target(ref)
            if target in docs or target in seen or not ref.startswith("/redfish/v1") \
                    or target.startswith(_NOT_DOCUMENTS):
                continue
            seen.add(target)
            out.append(Problem(uri, "link", f"{prop} {ref} does not exist"))
        ident = doc.get("Id")
        last = unquote(uri.rstrip("/").rsplit("/", 1)[-1])
        if isinstance(ident, str) and ident != last and uri != ROOT:
            out.append(Problem(uri, "identifier", f"Id {ident!r} is not the last segment of "
                                                  "the URI"))
        members = doc.get("Members")
        count = doc.get("Members@odata.count")
        if isinstance(members, list) and count is not None and (
                type(count) is not int or count != len(members)):
            out.append(Problem(uri, "count", f"Members@odata.count is {count!r} "
                                             f"with {len(members)} members"))
        actions = doc.get("Actions")
        if isinstance(actions, dict):
            base = uri.rstrip("/") + "/Actions/"
            for name, action in actions.items():
                if not name.startswith("#") or not isinstance(action, dict):
                    continue
                target = action.get("target")
                if isinstance(target, str) and target != base + name[1:]:
                    out.append(Problem(uri, "action", f"{name} target {target} is not "
                                                      f"{base + name[1:]}"))
    return out


class SchemaSet:
    """The DMTF (and Swordfish) JSON Schemas in local folders."""

    def __init__(self, redfish_dir: Path, swordfish_dir: Path | None = None) -> None:
        try:
            from jsonschema import Draft7Validator  # noqa: F401
        except ImportError:
            raise RuntimeError("checking schemas needs the jsonschema package "
                               "(pip install jsonschema)") from None
        if not redfish_dir.is_dir():
            raise RuntimeError(f"schema folder {redfish_dir} does not exist")
        self.redfish_dir = redfish_dir
        if swordfish_dir is None:
            beside = redfish_dir.resolve().parent.parent / "swordfish" / "json-schema"
            swordfish_dir = beside if beside.is_dir() else None
        self.swordfish_dir = swordfish_dir

    @classmethod
    def from_env(cls, explicit: Path | None = None) -> SchemaSet | None:
        if explicit is not None:
            return cls(explicit)
        value = os.environ.get(SCHEMA_DIR_ENV)
        return cls(Path(value)) if value else None

    def _folders(self) -> list[tuple[str, Path]]:
        out = [("http://redfish.dmtf.org/schemas/v1/", self.redfish_dir)]
        if self.swordfish_dir is not None:
            out.append(("http://redfish.dmtf.org/schemas/swordfish/v1/", self.swordfish_dir))
        return out

    @functools.cache  # noqa: B019 - one SchemaSet per check
    def _contents(self, uri: str) -> Any:
        m = _REF.match(uri)
        folder = self.swordfish_dir if m and m[1] else self.redfish_dir
        if m is None or folder is None or not (folder / m[2]).is_file():
            from referencing.exceptions import NoSuchResource
            raise NoSuchResource(ref=uri)
        return orjson.loads((folder / m[2]).read_bytes())

    @functools.cached_property
    def _registry(self):
        from referencing import Registry, Resource
        from referencing.jsonschema import DRAFT7

        def retrieve(uri: str) -> Resource:
            return Resource.from_contents(self._contents(uri), default_specification=DRAFT7)

        return Registry(retrieve=retrieve)

    def schema_uri(self, odata_type: str) -> str | None:
        """``#Port.v1_6_1.Port`` -> the URI of ``Port.v1_6_1.json`` (or the newest errata
        of v1_6 held locally) ``#/definitions/Port``; None if no file is found."""
        parts = odata_type.lstrip("#").split(".")
        entity, namespace = parts[-1], ".".join(parts[:-1])
        for base, folder in self._folders():
            if (folder / f"{namespace}.json").is_file():
                return f"{base}{namespace}.json#/definitions/{entity}"
        m = _VERSIONED.match(namespace)
        if m:
            for base, folder in self._folders():
                prefix = f"{m[1]}.v{m[2]}_{m[3]}_"
                errata = sorted((int(f.name[len(prefix):-5]), f.name)
                                for f in folder.glob(prefix + "*.json")
                                if f.name[len(prefix):-5].isdigit())
                if errata:
                    return f"{base}{errata[-1][1]}#/definitions/{entity}"
        return None

    def problems(self, uri: str, doc: dict[str, Any]) -> list[Problem]:
        from jsonschema import Draft7Validator

        odata_type = doc.get("@odata.type")
        if not isinstance(odata_type, str):
            return [Problem(uri, "schema", "no @odata.type")]
        ref = self.schema_uri(odata_type)
        if ref is None:
            return [Problem(uri, "schema", f"no schema file for {odata_type}")]
        # formats too: a date-time without seconds or offset is as wrong as a bad enum
        validator = Draft7Validator({"$ref": ref}, registry=self._registry,
                                    format_checker=Draft7Validator.FORMAT_CHECKER)
        out = []
        try:
            errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
        except Exception as e:  # an unresolvable $ref inside the schemas
            return [Problem(uri, "schema", f"cannot validate: {type(e).__name__}: {e}")]
        for error in errors:
            leaf = _closest(error)
            where = "/" + "/".join(str(p) for p in leaf.absolute_path)
            out.append(Problem(uri, "schema", f"{where}: {leaf.message[:200]}"))
        return out


def _closest(error):
    """An anyOf (reference or object, one version or another) fails in every branch: the
    error of the branch with the fewest errors says what is wrong."""
    if not error.context:
        return error
    branches: dict[Any, list] = {}
    for e in error.context:
        branches.setdefault(e.relative_schema_path[0], []).append(e)
    best = min(branches.values(), key=len)
    return _closest(best[0])


def check(mockup: Mockup, schemas: SchemaSet | None = None) -> list[Problem]:
    """Every problem of the mockup: loading, structure, and schemas when given."""
    out = list(mockup.problems) + structural(mockup)
    if schemas is not None:
        for uri in sorted(mockup.documents):
            out.extend(schemas.problems(uri, mockup.documents[uri]))
    return out


def summary(problems: list[Problem]) -> str:
    if not problems:
        return "no problems"
    counts: dict[str, int] = {}
    for p in problems:
        counts[p.kind] = counts.get(p.kind, 0) + 1
    return f"{len(problems)} problems (" + ", ".join(
        f"{n} {kind}" for kind, n in sorted(counts.items())) + ")"
