"""The ResourceEvent, HeartbeatEvent and Fabric message registries (facts: ids, argument
counts, severities; our text). Only the messages the service sends are listed."""

from __future__ import annotations

from ..protocol.messages import MessageDef, Registry, register

RESOURCE_EVENT = Registry(
    "ResourceEvent",
    "1.4.3",
    {
        "ResourceCreated": MessageDef(0, "OK", "A resource was created.", "None."),
        "ResourceRemoved": MessageDef(0, "OK", "A resource was deleted.", "None."),
        "ResourceChanged": MessageDef(
            0, "OK", "One or more properties of a resource changed.", "None."),
        "ResourceStatusChangedOK": MessageDef(
            2, "OK", "The health of resource '%1' is now '%2'.", "None."),
        "ResourceStatusChangedWarning": MessageDef(
            2, "Warning", "The health of resource '%1' is now '%2'.",
            "Look at the resource's condition."),
        "ResourceStatusChangedCritical": MessageDef(
            2, "Critical", "The health of resource '%1' is now '%2'.",
            "Look at the resource's condition and repair or replace it."),
        "TestMessage": MessageDef(0, "OK", "A test event sent on request.", "None."),
    },
)
register(RESOURCE_EVENT)

HEARTBEAT_EVENT = Registry(
    "HeartbeatEvent",
    "1.1.1",
    {
        "RedfishServiceFunctional": MessageDef(
            0, "OK", "The service is up and delivering events.", "None."),
    },
)
register(HEARTBEAT_EVENT)

# Args of each: the Id of the zone / connection / endpoint, then the Id of its fabric.
FABRIC = Registry(
    "Fabric",
    "1.0.3",
    {
        "ZoneCreated": MessageDef(2, "OK", "Zone '%1' was created in fabric '%2'.", "None."),
        "ZoneRemoved": MessageDef(2, "OK", "Zone '%1' was deleted from fabric '%2'.", "None."),
        "ZoneModified": MessageDef(2, "OK", "Zone '%1' of fabric '%2' changed.", "None."),
        "ConnectionCreated": MessageDef(
            2, "OK", "Connection '%1' was created in fabric '%2'.", "None."),
        "ConnectionRemoved": MessageDef(
            2, "OK", "Connection '%1' was deleted from fabric '%2'.", "None."),
        "ConnectionModified": MessageDef(
            2, "OK", "Connection '%1' of fabric '%2' changed.", "None."),
        "EndpointCreated": MessageDef(
            2, "OK", "Endpoint '%1' was created in fabric '%2'.", "None."),
        "EndpointRemoved": MessageDef(
            2, "OK", "Endpoint '%1' was deleted from fabric '%2'.", "None."),
        "EndpointModified": MessageDef(2, "OK", "Endpoint '%1' of fabric '%2' changed.", "None."),
    },
)
register(FABRIC)
