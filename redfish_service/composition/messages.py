"""The Composition message registry (facts: ids, argument counts, severities; our text)."""

from __future__ import annotations

from ..protocol.messages import MessageDef, Registry, register

COMPOSITION = Registry(
    "Composition",
    "1.1.3",
    {
        "ResourceBlockChanged": MessageDef(1, "OK", "Resource block '%1' changed.", "None."),
        "ResourceBlockStateChanged": MessageDef(
            1, "OK", "Resource block '%1' changed state.", "None."),
        "ResourceBlockCompositionStateChanged": MessageDef(
            1, "OK", "Resource block '%1' changed composition state.", "None."),
        "ResourceZoneMembershipChanged": MessageDef(
            1, "OK", "The members of resource zone '%1' changed.", "None."),
        "ResourceBlockInUse": MessageDef(
            1, "Warning", "Resource block '%1' is in use and cannot join a new composition.",
            "Choose a free block (see the FreePool) or release this one first."),
        "EmptyManifest": MessageDef(
            0, "Warning", "The manifest, or one of its stanzas, holds no request.",
            "Give every stanza a request."),
        "UnableToProcessStanzaRequest": MessageDef(
            2, "Critical", "The %1 stanza '%2' of the manifest could not be processed.",
            "Correct the stanza's request."),
        "ResourceBlockInvalid": MessageDef(
            1, "Critical", "Resource block '%1' cannot be used for this request.",
            "Choose a block of a type and state the request allows."),
        "ResourceBlockNotFound": MessageDef(
            1, "Critical", "There is no resource block '%1'.",
            "Use a block listed in the ResourceBlocks collection."),
        "NoResourceMatch": MessageDef(
            1, "Critical", "No free resources of type '%1' match the request.",
            "Ask for fewer or different resources, or free some."),
        "IncompatibleZone": MessageDef(
            0, "Critical", "The requested resource blocks are not all in one resource zone.",
            "Choose blocks that share a resource zone."),
        "SpecifiedResourceAlreadyReserved": MessageDef(
            2, "Critical", "Resource block '%1' is reserved under reservation '%2'.",
            "Choose another block or wait for the reservation to end."),
        "ConstrainedResourceAlreadyReserved": MessageDef(
            1, "Critical", "The resources requested are reserved under reservation '%1'.",
            "Ask again once the reservation ends."),
    },
)
register(COMPOSITION)
