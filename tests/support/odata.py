"""Walking a Redfish tree: the ``@odata.id`` links a document holds."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

# Not resources: the CSDL service document and the OData service document.
NOT_RESOURCES = ("/redfish/v1/$metadata", "/redfish/v1/odata")


def odata_links(value: Any) -> Iterator[str]:
    """Every ``@odata.id`` string anywhere in a JSON value (the document's own included)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "@odata.id" and isinstance(item, str):
                yield item
            else:
                yield from odata_links(item)
    elif isinstance(value, list):
        for item in value:
            yield from odata_links(item)


def resource_path(link: str) -> str | None:
    """The path to GET for a link, or None for links that are not resources of the tree.

    Fragments (``/redfish/v1/X#/Status``) point into a document: the document is fetched.
    """
    path = link.split("#", 1)[0].split("?", 1)[0]
    if not path.startswith("/redfish/v1"):
        return None
    if path.rstrip("/") in NOT_RESOURCES or path.rstrip("/").startswith("/redfish/v1/$metadata"):
        return None
    if path == "/redfish/v1":
        path = "/redfish/v1/"
    return path


def same_uri(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")
