"""``$metadata`` (CSDL references for every type the service shows) and the OData
service document, both derived from the store so they always match what is served."""

from __future__ import annotations

from typing import Any
from xml.sax.saxutils import quoteattr

from ..store import Store

DMTF_CSDL = "http://redfish.dmtf.org/schemas/v1/"
SWORDFISH_CSDL = "http://redfish.dmtf.org/schemas/swordfish/v1/"
# Namespaces SNIA owns; their CSDL lives in the Swordfish tree.
SWORDFISH_NAMESPACES = frozenset({
    "StorageService", "StorageServiceCollection", "StoragePool", "StoragePoolCollection",
    "ClassOfService", "ClassOfServiceCollection", "LineOfService", "NVMeDomain",
    "NVMeDomainCollection", "DataProtectionLoSCapabilities", "DataStorageLoSCapabilities",
    "IOConnectivityLoSCapabilities", "IOPerformanceLoSCapabilities", "FeaturesRegistry",
    "StorageSystemCollection", "SpareResourceSet", "EndpointGroup", "EndpointGroupCollection",
    "ConsistencyGroup", "ConsistencyGroupCollection", "FileSystem", "FileSystemCollection",
    "FileShare", "FileShareCollection",
})
# Always referenced: the service container and the types embedded in every service.
BASE_NAMESPACES = {"ServiceRoot": {"ServiceRoot", "ServiceRoot.v1_20_0"}}
SERVICE_ROOT_CONTAINER = "ServiceRoot.v1_20_0.ServiceContainer"

def _namespaces(store: Store) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {k: set(v) for k, v in BASE_NAMESPACES.items()}
    for uri in store.uris():
        doc = store.doc(uri)
        odata_type = (doc or {}).get("@odata.type", "")
        if not odata_type.startswith("#"):
            continue
        parts = odata_type[1:].split(".")
        found.setdefault(parts[0], set()).add(parts[0])
        if len(parts) == 3:
            found[parts[0]].add(f"{parts[0]}.{parts[1]}")
    return found


def metadata_xml(store: Store) -> bytes:
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<edmx:Edmx xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx" Version="4.0">',
    ]
    for file, namespaces in sorted(_namespaces(store).items()):
        base = SWORDFISH_CSDL if file in SWORDFISH_NAMESPACES else DMTF_CSDL
        lines.append(f"  <edmx:Reference Uri={quoteattr(base + file + '_v1.xml')}>")
        for ns in sorted(namespaces):
            lines.append(f"    <edmx:Include Namespace={quoteattr(ns)}/>")
        lines.append("  </edmx:Reference>")
    lines += [
        f'  <edmx:Reference Uri="{DMTF_CSDL}RedfishExtensions_v1.xml">',
        '    <edmx:Include Namespace="RedfishExtensions.v1_0_0" Alias="Redfish"/>',
        "  </edmx:Reference>",
        "  <edmx:DataServices>",
        '    <Schema xmlns="http://docs.oasis-open.org/odata/ns/edm" Namespace="Service">',
        f'      <EntityContainer Name="Service" Extends="{SERVICE_ROOT_CONTAINER}"/>',
        "    </Schema>",
        "  </edmx:DataServices>",
        "</edmx:Edmx>",
        "",
    ]
    return "\n".join(lines).encode()


def service_document(store: Store) -> dict[str, Any]:
    root = store.doc("/redfish/v1/") or {}
    value = [{"name": "Service", "kind": "Singleton", "url": "/redfish/v1/"}]
    for name, link in root.items():
        if isinstance(link, dict) and set(link) == {"@odata.id"}:
            value.append({"name": name, "kind": "Singleton", "url": link["@odata.id"]})
    return {"@odata.context": "/redfish/v1/$metadata", "value": value}
