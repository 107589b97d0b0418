"""Validating payloads against the published DMTF (and SNIA Swordfish) JSON Schemas, offline.

Every ``$ref`` to ``http://redfish.dmtf.org/schemas/v1/X.json`` is read from the local
DSP8010 ``json-schema`` folder and every ``.../schemas/swordfish/v1/X.json`` from the local
Swordfish one; nothing is fetched from the network (a ref that has no local file is an
error, reported as such).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jsonschema import Draft4Validator, Draft7Validator
from jsonschema.exceptions import ValidationError, best_match
from referencing import Registry, Resource
from referencing.exceptions import NoSuchResource
from referencing.jsonschema import DRAFT4, DRAFT7

_REF = re.compile(r"^https?://redfish\.dmtf\.org/schemas/(?P<sf>swordfish/)?v1/(?P<file>[^/#]+)$",
                  re.IGNORECASE)
_VERSIONED = re.compile(r"^(?P<name>[A-Za-z0-9]+)\.v(?P<major>\d+)_(?P<minor>\d+)_(?P<errata>\d+)$")


class SchemaNotFound(LookupError):
    pass


@dataclass(frozen=True)
class SchemaChoice:
    path: Path
    note: str | None = None  # set when a newer errata of the same minor version was used


class Schemas:
    def __init__(self, redfish_dir: Path, swordfish_dir: Path | None = None) -> None:
        self.redfish_dir = redfish_dir
        self.swordfish_dir = swordfish_dir
        self._files: dict[Path, dict[str, Any]] = {}
        self.registry: Registry = Registry(retrieve=self._retrieve)

    @staticmethod
    def swordfish_dir_for(redfish_dir: Path) -> Path | None:
        """``<shared>/swordfish/json-schema`` next to ``<shared>/redfish/json-schema``."""
        candidate = redfish_dir.resolve().parent.parent / "swordfish" / "json-schema"
        return candidate if candidate.is_dir() else None

    # -- files --------------------------------------------------------------------------
    def local_file(self, uri: str) -> Path | None:
        m = _REF.match(uri.split("#", 1)[0])
        if not m:
            return None
        folder = self.swordfish_dir if m["sf"] else self.redfish_dir
        return folder / m["file"] if folder is not None else None

    def _load(self, path: Path) -> dict[str, Any]:
        if path not in self._files:
            self._files[path] = json.loads(path.read_text())
        return self._files[path]

    def _retrieve(self, uri: str) -> Resource:
        path = self.local_file(uri)
        if path is None or not path.is_file():
            raise NoSuchResource(ref=uri)
        contents = self._load(path)
        spec = DRAFT4 if "draft-04" in str(contents.get("$schema", "")) else DRAFT7
        return spec.create_resource(contents)

    def schema_for_type(self, odata_type: str) -> SchemaChoice:
        """The schema file of ``#Namespace.Entity``.

        ``#ManagerAccount.v1_14_1.ManagerAccount`` -> ``ManagerAccount.v1_14_1.json``;
        ``#RoleCollection.RoleCollection`` -> ``RoleCollection.json``. The local folder keeps
        only the newest errata of each minor version, so a missing ``v1_14_0`` is read as the
        newest ``v1_14_x`` (errata do not change what a payload may hold).
        """
        namespace = odata_type.lstrip("#").rsplit(".", 1)[0]
        for folder in (self.redfish_dir, self.swordfish_dir):
            if folder is not None and (folder / f"{namespace}.json").is_file():
                return SchemaChoice(folder / f"{namespace}.json")
        m = _VERSIONED.match(namespace)
        if m:
            for folder in (self.redfish_dir, self.swordfish_dir):
                if folder is None:
                    continue
                prefix = f"{m['name']}.v{m['major']}_{m['minor']}_"
                errata = []
                for f in folder.glob(prefix + "*.json"):
                    tail = f.name[len(prefix):-len(".json")]
                    if tail.isdigit() and int(tail) >= int(m["errata"]):
                        errata.append((int(tail), f))
                if errata:
                    chosen = max(errata)[1]
                    return SchemaChoice(chosen, f"{namespace} read as {chosen.stem}")
        raise SchemaNotFound(f"no schema file for {odata_type} ({namespace}.json)")

    # -- validation ---------------------------------------------------------------------
    def errors(self, instance: Any, schema_path: Path) -> list[str]:
        """Every validation error of ``instance`` against a schema file, one line each."""
        schema = self._load(schema_path)
        cls = Draft4Validator if "draft-04" in str(schema.get("$schema", "")) else Draft7Validator
        validator = cls(schema, registry=self.registry,
                        format_checker=cls.FORMAT_CHECKER)
        out = []
        try:
            found = sorted(validator.iter_errors(instance), key=lambda e: list(e.path))
        except Exception as e:  # an unresolvable $ref, a bad pattern in a schema
            return [f"cannot validate against {schema_path.name}: {type(e).__name__}: {e}"]
        for error in found:
            for leaf in _leaves(error):
                where = "/" + "/".join(str(p) for p in leaf.absolute_path)
                out.append(f"{where}: {leaf.message[:300]}")
        return out


def _is_idref(schema: Any) -> bool:
    return (isinstance(schema, dict) and schema.get("additionalProperties") is False
            and set(schema.get("properties", {})) == {"@odata.id"})


def _leaves(error: ValidationError) -> list[ValidationError]:
    """The errors that say what is wrong, rather than "not valid under any of the schemas".

    An ``anyOf`` (a reference or the full object; one of the versions) fails in every
    branch: show the branch that came closest (fewest errors), never the bare-reference one.
    """
    if not error.context:
        return [error]
    branches: dict[Any, list[ValidationError]] = {}
    for e in error.context:
        branches.setdefault(e.relative_schema_path[0], []).append(e)
    best: list[ValidationError] | None = None
    for errs in branches.values():
        if any(_is_idref(e.schema) for e in errs):
            continue
        leaves = [leaf for e in errs for leaf in _leaves(e)]
        if best is None or len(leaves) < len(best):
            best = leaves
    return best or [best_match([error]) or error]
