"""The service root."""

from __future__ import annotations

from typing import Any

from ..protocol.query import SUPPORTED_FEATURES
from . import uris
from .kind import Kind

SERVICE_ROOT_TYPE = "#ServiceRoot.v1_20_0.ServiceRoot"
REDFISH_VERSION = "1.20.0"


def service_root_doc(service_uuid: str, product_version: str) -> dict[str, Any]:
    return {
        "@odata.id": uris.SERVICE_ROOT,
        "@odata.type": SERVICE_ROOT_TYPE,
        "Id": "RootService",
        "Name": "redfish-composer",
        "RedfishVersion": REDFISH_VERSION,
        "UUID": service_uuid,
        "Product": "redfish-composer",
        "Vendor": "redfish-composer",
        "ServiceIdentification": f"redfish-composer {product_version}",
        "ProtocolFeaturesSupported": SUPPORTED_FEATURES,
        "AccountService": {"@odata.id": uris.ACCOUNT_SERVICE},
        "SessionService": {"@odata.id": uris.SESSION_SERVICE},
        "Managers": {"@odata.id": uris.MANAGERS},
        "Systems": {"@odata.id": uris.SYSTEMS},
        "Chassis": {"@odata.id": uris.CHASSIS},
        "Tasks": {"@odata.id": uris.TASK_SERVICE},
        "EventService": {"@odata.id": "/redfish/v1/EventService"},
        "CompositionService": {"@odata.id": uris.COMPOSITION_SERVICE},
        "Fabrics": {"@odata.id": "/redfish/v1/Fabrics"},
        "Registries": {"@odata.id": uris.REGISTRIES},
        "JsonSchemas": {"@odata.id": uris.JSON_SCHEMAS},
        "Links": {"Sessions": {"@odata.id": uris.SESSIONS}},
    }


class ServiceRootKind(Kind):
    entity = "ServiceRoot"


KINDS = [ServiceRootKind()]
