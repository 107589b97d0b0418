"""The Registries and JsonSchemas collections: pointers to DMTF's published files for
every message registry the service emits and every schema it serves."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..protocol.messages import Registry
from ..protocol.render import SCHEMA_BASE, schema_file
from ..store import Transaction
from . import uris
from .kind import Kind

REGISTRY_FILE_TYPE = "#MessageRegistryFile.v1_1_5.MessageRegistryFile"
SCHEMA_FILE_TYPE = "#JsonSchemaFile.v1_1_5.JsonSchemaFile"


def registry_file_doc(registry: Registry) -> dict[str, Any]:
    return {
        "@odata.id": f"{uris.REGISTRIES}/{registry.prefix}",
        "@odata.type": REGISTRY_FILE_TYPE,
        "Id": registry.prefix,
        "Name": f"{registry.prefix} message registry",
        "Languages": ["en"],
        "Registry": registry.registry_id,
        "Location": [{"Language": "en", "PublicationUri": registry.publication_uri}],
    }


def schema_file_doc(odata_type: str) -> dict[str, Any] | None:
    name = schema_file(odata_type)
    if name is None:
        return None
    stem = name[: -len(".json")]
    return {
        "@odata.id": f"{uris.JSON_SCHEMAS}/{stem}",
        "@odata.type": SCHEMA_FILE_TYPE,
        "Id": stem,
        "Name": f"{stem.split('.')[0]} schema",
        "Languages": ["en"],
        "Schema": odata_type,
        "Location": [{"Language": "en", "PublicationUri": SCHEMA_BASE + name}],
    }


def ensure_schema_files(tx: Transaction, odata_types: Iterable[str]) -> None:
    """Add a JsonSchemaFile for each type not listed yet."""
    for odata_type in sorted(set(odata_types)):
        doc = schema_file_doc(odata_type)
        if doc is not None and not tx.exists(doc["@odata.id"]):
            tx.create(doc["@odata.id"], doc)


def ensure_registry_files(tx: Transaction, registries: Iterable[Registry]) -> None:
    for registry in registries:
        doc = registry_file_doc(registry)
        current = tx.get(doc["@odata.id"])
        if current != doc:
            tx.put(doc["@odata.id"], doc)


class RegistryFileKind(Kind):
    entity = "MessageRegistryFile"


class SchemaFileKind(Kind):
    entity = "JsonSchemaFile"


KINDS = [RegistryFileKind(), SchemaFileKind()]
