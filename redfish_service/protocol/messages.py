"""Message registries the service emits, with message texts in our own words.

MessageIds, argument counts and severities are the DMTF facts; the texts are ours.
A message is rendered into a Redfish ``Message`` object by :func:`message`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MESSAGE_TYPE = "#Message.v1_3_0.Message"


@dataclass(frozen=True, slots=True)
class MessageDef:
    nargs: int
    severity: str
    text: str
    resolution: str


@dataclass(frozen=True, slots=True)
class Registry:
    prefix: str
    version: str  # full version, e.g. "1.22.1"
    messages: dict[str, MessageDef]

    @property
    def id_prefix(self) -> str:
        major, minor, _ = self.version.split(".")
        return f"{self.prefix}.{major}.{minor}"

    @property
    def registry_id(self) -> str:
        return f"{self.prefix}.{self.version}"

    @property
    def publication_uri(self) -> str:
        return f"https://redfish.dmtf.org/registries/{self.registry_id}.json"


def _m(nargs: int, severity: str, text: str, resolution: str = "None.") -> MessageDef:
    return MessageDef(nargs, severity, text, resolution)


BASE = Registry(
    "Base",
    "1.22.1",
    {
        "Success": _m(0, "OK", "The request was carried out."),
        "Created": _m(0, "OK", "The resource was created."),
        "AccountModified": _m(0, "OK", "The account was changed."),
        "AccountRemoved": _m(0, "OK", "The account was deleted."),
        "SessionTerminated": _m(0, "OK", "The session was ended."),
        "GeneralError": _m(
            0, "Critical", "The request failed; the extended information says why.",
            "Read the messages in @Message.ExtendedInfo.",
        ),
        "InternalError": _m(
            0, "Critical", "The service hit an internal fault; it is still running.",
            "Retry the request; report it if it keeps failing.",
        ),
        "MalformedJSON": _m(
            0, "Critical", "The request body is not valid JSON.",
            "Send a well-formed JSON body.",
        ),
        "EmptyJSON": _m(
            0, "Warning", "The request body is an empty JSON object; nothing to do.",
            "Put the properties to change in the body.",
        ),
        "NoOperation": _m(
            0, "Warning", "The request body holds nothing to act on; nothing was changed.",
            "Put the properties to change in the body.",
        ),
        "PropertyUnknown": _m(
            1, "Warning", "Property %1 is not a property of this resource.",
            "Remove the property from the request.",
        ),
        "PropertyNotWritable": _m(
            1, "Warning", "Property %1 is read-only.",
            "Remove the property from the request.",
        ),
        "PropertyValueTypeError": _m(
            2, "Warning", "Value '%1' has the wrong type for property %2.",
            "Send a value of the type the schema gives for the property.",
        ),
        "PropertyValueNotInList": _m(
            2, "Warning", "Value '%1' is not one of the values property %2 accepts.",
            "Send one of the allowed values.",
        ),
        "PropertyValueFormatError": _m(
            2, "Warning", "Value '%1' is not in a format property %2 accepts.",
            "Correct the value's format.",
        ),
        "PropertyValueOutOfRange": _m(
            2, "Warning", "Value '%1' is outside the range property %2 accepts.",
            "Send a value within the allowed range.",
        ),
        "PropertyValueConflict": _m(
            2, "Warning", "Property %1 cannot be set: it conflicts with property %2.",
            "Change one of the two properties, not both.",
        ),
        "PropertyValueIncorrect": _m(
            2, "Warning", "Property %1 cannot take the value '%2'.",
            "Send a value the service accepts.",
        ),
        "PropertyMissing": _m(
            1, "Warning", "Property %1 is required and missing from the request.",
            "Add the property to the request.",
        ),
        "StringValueTooShort": _m(
            2, "Warning", "The string '%1' is shorter than the minimum length %2.",
            "Send a longer string.",
        ),
        "StringValueTooLong": _m(
            2, "Warning", "The string '%1' is longer than the maximum length %2.",
            "Send a shorter string.",
        ),
        "ArraySizeTooLong": _m(
            2, "Warning", "The array in property %1 has more than %2 elements.",
            "Send a shorter array.",
        ),
        "ActionNotSupported": _m(
            1, "Critical", "This resource does not support the action %1.",
            "Use an action listed in the resource's Actions.",
        ),
        "ActionParameterMissing": _m(
            2, "Critical", "Action %1 needs the parameter %2.",
            "Add the parameter to the request.",
        ),
        "ActionParameterUnknown": _m(
            2, "Warning", "Action %1 has no parameter %2.",
            "Remove the parameter from the request.",
        ),
        "ActionParameterValueTypeError": _m(
            3, "Warning", "Value '%1' of parameter %2 of action %3 has the wrong type.",
            "Send a value of the right type.",
        ),
        "ActionParameterValueNotInList": _m(
            3, "Warning", "Value '%1' of parameter %2 of action %3 is not an allowed value.",
            "Send one of the allowed values.",
        ),
        "ActionParameterValueFormatError": _m(
            3, "Warning", "Value '%1' of parameter %2 of action %3 has the wrong format.",
            "Correct the value's format.",
        ),
        "ActionParameterValueError": _m(
            2, "Warning", "The value of parameter %1 of action %2 is not valid.",
            "Send a valid value.",
        ),
        "QueryParameterUnsupported": _m(
            1, "Warning", "Query parameter '%1' is not supported by this service.",
            "Leave the parameter out; ProtocolFeaturesSupported lists what is supported.",
        ),
        "QueryParameterValueFormatError": _m(
            2, "Warning", "Value '%1' of query parameter %2 has the wrong format.",
            "Correct the value of the query parameter.",
        ),
        "QueryParameterValueError": _m(
            1, "Warning", "The value of query parameter %1 is not valid.",
            "Correct the value of the query parameter.",
        ),
        "QueryParameterOutOfRange": _m(
            3, "Warning", "Value '%1' of query parameter %2 is outside the range %3.",
            "Send a value inside the range.",
        ),
        "QueryNotSupportedOnResource": _m(
            0, "Warning", "This resource does not support that query.",
            "Leave the query parameter out for this resource.",
        ),
        "QueryCombinationInvalid": _m(
            0, "Warning", "These query parameters cannot be combined.",
            "Send the query parameters in separate requests.",
        ),
        "ResourceNotFound": _m(
            2, "Critical", "There is no resource of type %1 named '%2'.",
            "Check the URI or the link.",
        ),
        "ResourceMissingAtURI": _m(
            1, "Critical", "No resource exists at '%1'.",
            "Check the URI.",
        ),
        "ResourceAlreadyExists": _m(
            3, "Critical", "A resource of type %1 whose property %2 is '%3' already exists.",
            "Choose another value for the property.",
        ),
        "ResourceInUse": _m(
            0, "Warning", "The resource is in use or changing state; the change was refused.",
            "Retry once the resource is free.",
        ),
        "ResourceCannotBeDeleted": _m(
            0, "Critical", "This resource cannot be deleted.",
            "Do not delete this resource.",
        ),
        "OperationNotAllowed": _m(
            0, "Critical", "This HTTP method is not allowed on this resource.",
            "Use a method listed in the Allow header.",
        ),
        "InsufficientPrivilege": _m(
            0, "Critical", "Your account lacks the privilege this request needs.",
            "Use an account whose role grants the privilege.",
        ),
        "NoValidSession": _m(
            0, "Critical", "The request carries no valid credentials or session.",
            "Log in with a session or send Basic credentials.",
        ),
        "AccessUnauthorized": _m(
            0, "Critical", "Authentication failed.",
            "Send valid credentials.",
        ),
        "PreconditionFailed": _m(
            0, "Critical", "The ETag in the request does not match the resource's current ETag.",
            "GET the resource again and retry with its current ETag.",
        ),
        "PreconditionRequired": _m(
            0, "Critical", "This change needs an ETag precondition.",
            "Send If-Match (or the ETag parameter) with the resource's current ETag.",
        ),
        "SessionLimitExceeded": _m(
            0, "Critical", "The service already holds as many sessions as it allows.",
            "Log out of unused sessions and retry.",
        ),
        "CreateLimitReachedForResource": _m(
            0, "Critical", "This collection cannot hold more members.",
            "Delete members that are no longer needed.",
        ),
        "PasswordChangeRequired": _m(
            1, "Critical", "The account's password must be changed before anything else.",
            "PATCH a new Password to the account at %1.",
        ),
        "HeaderInvalid": _m(
            1, "Critical", "The header '%1' has a value the service cannot accept.",
            "Correct the header.",
        ),
        "HeaderMissing": _m(
            1, "Critical", "The required header '%1' is missing.",
            "Add the header.",
        ),
        "PayloadTooLarge": _m(
            0, "Critical", "The request body is larger than the service accepts.",
            "Send a smaller body.",
        ),
        "InvalidURI": _m(
            1, "Critical", "The URI %1 is not valid here.",
            "Check the URI.",
        ),
        "ServiceTemporarilyUnavailable": _m(
            1, "Critical", "The service is busy; retry in %1 seconds.",
            "Wait and retry.",
        ),
        "ServiceShuttingDown": _m(
            0, "Critical", "The service is shutting down and takes no new requests.",
            "Retry once the service is back.",
        ),
        # events
        "ServiceDisabled": _m(
            1, "Warning", "The service at %1 is disabled.",
            "Enable the service (ServiceEnabled) and retry.",
        ),
        "EventSubscriptionLimitExceeded": _m(
            0, "Critical", "The service already holds as many event subscriptions as it allows.",
            "Delete subscriptions that are no longer needed.",
        ),
        "SubscriptionTerminated": _m(0, "OK", "The event subscription was ended."),
        "EventBufferExceeded": _m(
            0, "Warning", "Events were dropped because the receiver fell too far behind.",
            "Read the current state of the resources of interest.",
        ),
    },
)

REGISTRIES: dict[str, Registry] = {BASE.prefix: BASE}


def register(registry: Registry) -> None:
    """Make another registry (Composition, Fabric, ...) available to :func:`message`."""
    REGISTRIES[registry.prefix] = registry


def message(
    key: str,
    *args: Any,
    registry: Registry = BASE,
    related: list[str] | None = None,
) -> dict[str, Any]:
    """A Redfish Message object for ``registry``'s message ``key`` with ``args``."""
    definition = registry.messages[key]
    if len(args) != definition.nargs:
        raise ValueError(f"{registry.prefix}.{key} takes {definition.nargs} args, got {len(args)}")
    str_args = [str(a) for a in args]
    text = definition.text
    resolution = definition.resolution
    # Substitute from the highest index down so %1 does not eat %10.
    for i in range(len(str_args), 0, -1):
        text = text.replace(f"%{i}", str_args[i - 1])
        resolution = resolution.replace(f"%{i}", str_args[i - 1])
    out: dict[str, Any] = {
        "@odata.type": MESSAGE_TYPE,
        "MessageId": f"{registry.id_prefix}.{key}",
        "Message": text,
        "MessageArgs": str_args,
        "MessageSeverity": definition.severity,
        "Resolution": resolution,
    }
    if related:
        out["RelatedProperties"] = related
    return out
