"""The ResourceEvent message registry (facts: ids, argument counts, severities; our text)."""

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
