"""Host servers from the drivers' inventory, as ComputerSystems and Chassis.

Reconciliation is level-triggered: the documents are made to match what the drivers
report now; hosts that disappeared are removed. Properties a client may write
(``AssetTag``) are kept across reconciliations.
"""

from __future__ import annotations

import logging
from typing import Any

from ..composition import planner
from ..composition.batch import View
from ..composition.messages import COMPOSITION
from ..drivers.contract import Host, Inventory
from ..protocol.errors import RedfishError
from ..protocol.fields import Str, apply_patch, shown_value
from ..protocol.messages import message
from ..store import Store
from . import host_view, uris
from .context import Ctx
from .kind import ActionResult, Created, Kind, checked_entry
from .registration import unregistered

log = logging.getLogger("redfish_service.composition")

SYSTEM_TYPE = "#ComputerSystem.v1_27_0.ComputerSystem"
CHASSIS_TYPE = "#Chassis.v1_28_0.Chassis"
SOURCE = {"source": "inventory"}
CLIENT_OWNED = ("AssetTag",)


def system_doc(host: Host, registered: bool = True) -> dict[str, Any]:
    """A host server's system: expandable through its ComputerSystem block while it is
    registered with the CompositionService, ``ResourceBlockCapable`` otherwise."""
    doc = {
        "@odata.id": f"{uris.SYSTEMS}/{host.id}",
        "@odata.type": SYSTEM_TYPE,
        "Id": host.id,
        "Name": f"Host server {host.id}",
        "SystemType": "Physical",
        "UUID": host.uuid,
        "SerialNumber": host.serial,
        "Manufacturer": host.manufacturer,
        "Model": host.model,
        "AssetTag": None,
        "PowerState": "On",
        "Status": {"State": "Enabled", "Health": "OK"},
        "ProcessorSummary": {
            "Count": host.cpu_count,
            "CoreCount": host.cpu_count * host.cores,
            "Model": host.cpu_model,
        },
        "MemorySummary": {"TotalSystemMemoryGiB": host.memory_gib},
        "Composition": {"UseCases": ["ExpandableSystem"]},
        "Actions": {
            f"#ComputerSystem.{name}": {
                "target": f"{uris.SYSTEMS}/{host.id}/Actions/ComputerSystem.{name}"
            }
            for name in ("AddResourceBlock", "RemoveResourceBlock")
        },
        "Links": {
            "Chassis": [{"@odata.id": f"{uris.CHASSIS}/{host.id}"}],
            "ManagedBy": [{"@odata.id": uris.MANAGER}],
            "ResourceBlocks": [
                {"@odata.id": f"{uris.RESOURCE_BLOCKS}/{uris.host_block_id(host.id)}"}
            ],
        },
    }
    if not registered:
        doc["Composition"] = {"UseCases": ["ResourceBlockCapable"]}
        doc["Links"]["ResourceBlocks"] = []
        del doc["Actions"]
    return doc


def registered_system(doc: dict[str, Any], block_uri: str) -> dict[str, Any]:
    """A host's system once registered: expandable through ``block_uri``."""
    uri = doc["@odata.id"]
    doc["Composition"] = {"UseCases": ["ExpandableSystem"]}
    doc["Actions"] = {f"#ComputerSystem.{name}": {
        "target": f"{uri}/Actions/ComputerSystem.{name}"}
        for name in ("AddResourceBlock", "RemoveResourceBlock")}
    doc["Links"] = {**planner.links_of(doc), "ResourceBlocks": [{"@odata.id": block_uri}]}
    return doc


def unregistered_system(doc: dict[str, Any]) -> dict[str, Any]:
    """A host's system after its registration block was deleted."""
    doc["Composition"] = {"UseCases": ["ResourceBlockCapable"]}
    doc.pop("Actions", None)
    doc["Links"] = {**planner.links_of(doc), "ResourceBlocks": []}
    return doc


def chassis_doc(host: Host) -> dict[str, Any]:
    return {
        "@odata.id": f"{uris.CHASSIS}/{host.id}",
        "@odata.type": CHASSIS_TYPE,
        "Id": host.id,
        "Name": f"Chassis of host server {host.id}",
        "ChassisType": "RackMount",
        "Manufacturer": host.manufacturer,
        "Model": host.model,
        "SerialNumber": host.serial,
        "PowerState": "On",
        "Status": {"State": "Enabled", "Health": "OK"},
        "Links": {
            "ComputerSystems": [{"@odata.id": f"{uris.SYSTEMS}/{host.id}"}],
            "ManagedBy": [{"@odata.id": uris.MANAGER}],
        },
    }


CAPABILITIES = f"{uris.SYSTEMS}/Capabilities"


def capabilities_doc() -> dict[str, Any]:
    """What a POST to /redfish/v1/Systems takes (specific composition)."""
    return {
        "@odata.id": CAPABILITIES,
        "@odata.type": SYSTEM_TYPE,
        "Id": "Capabilities",
        "Name": "Capabilities for composing a new system",
        "Name@Redfish.RequiredOnCreate": True,
        "Name@Redfish.SetOnlyOnCreate": True,
        "Links": {
            "ResourceBlocks@Redfish.RequiredOnCreate": True,
            "ResourceBlocks@Redfish.UpdatableAfterCreate": True,
        },
        "@Redfish.ResourceBlockLimits": {
            "MinCompute": 1, "MaxCompute": 1, "MinComputerSystem": 0, "MaxComputerSystem": 0,
        },
    }


CONSTRAINED_CAPABILITIES = f"{uris.SYSTEMS}/ConstrainedCompositionCapabilities"


def constrained_capabilities_doc() -> dict[str, Any]:
    """What a POST to /redfish/v1/Systems takes when it describes resources instead of
    naming blocks (constrained composition); mixing both is allowed. The collections a
    request may describe are annotated; their members take ``@Redfish.RequestedCount`` and
    the resource's own properties (see docs/architecture.md)."""
    doc: dict[str, Any] = {
        "@odata.id": CONSTRAINED_CAPABILITIES,
        "@odata.type": SYSTEM_TYPE,
        "Id": "ConstrainedCompositionCapabilities",
        "Name": "Capabilities for composing a system from a description of its resources",
        "Name@Redfish.RequiredOnCreate": True,
        "Name@Redfish.SetOnlyOnCreate": True,
        "Description@Redfish.OptionalOnCreate": True,
        "Links": {"ResourceBlocks@Redfish.OptionalOnCreate": True},
        "@Redfish.ResourceBlockLimits": {"MinCompute": 1, "MaxCompute": 1},
    }
    for collection in ("Processors", "Memory", "Storage", "NetworkInterfaces",
                       "EthernetInterfaces"):
        doc[f"{collection}@Redfish.OptionalOnCreate"] = True
    return doc


def collection_capabilities(zones: list[str]) -> dict[str, Any]:
    related = [{"@odata.id": z} for z in zones]
    return {
        "@odata.type": "#CollectionCapabilities.v1_4_1.CollectionCapabilities",
        "Capabilities": [{
            "CapabilitiesObject": {"@odata.id": capabilities},
            "UseCase": use_case,
            "Links": {"TargetCollection": {"@odata.id": uris.SYSTEMS}, "RelatedItem": related},
        } for capabilities, use_case in (
            (CAPABILITIES, "ComputerSystemComposition"),
            (CONSTRAINED_CAPABILITIES, "ComputerSystemConstrainedComposition"),
        )],
    }


async def reconcile(store: Store, inventory: Inventory) -> None:
    wanted: dict[str, dict[str, Any]] = {}
    off = unregistered(store)
    for host in inventory.hosts:
        for doc in (system_doc(host, host.id not in off), chassis_doc(host)):
            wanted[doc["@odata.id"]] = doc
    async with store.transaction("service") as tx:
        for uri in store.members(uris.SYSTEMS) + store.members(uris.CHASSIS):
            entry = store.get(uri)
            if uri not in wanted and entry and entry.private == SOURCE:
                tx.delete(uri)
        for uri, doc in wanted.items():
            current = tx.get(uri)
            if current is not None:
                for key in CLIENT_OWNED:
                    if key in current:
                        doc[key] = current[key]
                # Blocks attached to a host belong to the composition, not the inventory.
                attached = current.get("Links", {}).get("ResourceBlocks")
                if attached and "ResourceBlocks" in doc["Links"]:
                    own = doc["Links"]["ResourceBlocks"]
                    doc["Links"]["ResourceBlocks"] = own + [b for b in attached if b not in own]
                # So do the devices it shows (fabrics.sync_zones keeps them).
                for key in host_view.OWNED:
                    if key in current and doc["@odata.type"] == SYSTEM_TYPE:
                        doc[key] = current[key]
                current.pop("@odata.etag", None)
                if current == doc:
                    continue
            tx.put(uri, doc, dict(SOURCE))
        manager = tx.get(uris.MANAGER)
        if manager is not None:
            manager["Links"] = {
                "ManagerForServers": [
                    {"@odata.id": u} for u in wanted if u.startswith(uris.SYSTEMS + "/")
                ],
                "ManagerForChassis": [
                    {"@odata.id": u} for u in wanted if u.startswith(uris.CHASSIS + "/")
                ],
            }
            tx.put(uris.MANAGER, manager)


def _wanted_blocks(value: Any, current: list[str]) -> list[str]:
    """The new ``Links.ResourceBlocks`` with the Redfish array rules: ``null`` drops the
    element at that position, ``{}`` keeps it."""
    path = "Links/ResourceBlocks"
    if not isinstance(value, list):
        raise RedfishError.of(400, "PropertyValueTypeError", shown_value(value), path,
                              related=["/" + path])
    out = []
    for i, item in enumerate(value):
        if item is None:
            continue
        if item == {}:
            if i < len(current):
                out.append(current[i])
            continue
        if not isinstance(item, dict) or set(item) != {"@odata.id"} \
                or not isinstance(item["@odata.id"], str):
            raise RedfishError.of(400, "PropertyValueTypeError", shown_value(item),
                                  f"{path}/{i}", related=[f"/{path}/{i}"])
        out.append(item["@odata.id"].rstrip("/"))
    return out


_BLOCK_PARAMS = ("ResourceBlock", "ResourceBlockETag", "ComputerSystemETag")


def _block_params(action: str, body: dict[str, Any]) -> tuple[str, str | None, str | None]:
    """The ResourceBlock link and the two ETag parameters of Add/RemoveResourceBlock."""
    for key in body:
        if key not in _BLOCK_PARAMS and not key.startswith("@"):
            raise RedfishError.of(400, "ActionParameterUnknown", action, key)
    if "ResourceBlock" not in body:
        raise RedfishError.of(400, "ActionParameterMissing", action, "ResourceBlock")
    link = body["ResourceBlock"]
    if not isinstance(link, dict) or not isinstance(link.get("@odata.id"), str):
        raise RedfishError.of(400, "ActionParameterValueTypeError", shown_value(link),
                              "ResourceBlock", action)
    etags = []
    for key in ("ResourceBlockETag", "ComputerSystemETag"):
        value = body.get(key)
        if value is not None and not isinstance(value, str):
            raise RedfishError.of(400, "ActionParameterValueTypeError", shown_value(value),
                                  key, action)
        etags.append(value)
    return link["@odata.id"].rstrip("/"), etags[0], etags[1]


class SystemKind(Kind):
    entity = "ComputerSystem"
    writable = {"AssetTag": Str(max_length=64, nullable=True)}
    actions = {
        "ComputerSystem.AddResourceBlock": "add_block",
        "ComputerSystem.RemoveResourceBlock": "remove_block",
    }

    async def pre_patch(self, ctx, uri, body, if_match):
        """``Links.ResourceBlocks`` replaces the set of blocks attached to the host: the
        ones dropped are detached, the new ones attached, all or nothing."""
        links = body.get("Links")
        if not isinstance(links, dict) or "ResourceBlocks" not in links:
            return body, False
        entry = ctx.store.get(uri)
        if entry is None:
            raise RedfishError.of(404, "ResourceMissingAtURI", uri)
        rest = {k: v for k, v in body.items() if k != "Links"}
        other_links = {k: v for k, v in links.items() if k != "ResourceBlocks"}
        if other_links:
            rest["Links"] = other_links
        if any(not k.startswith("@") for k in rest):
            apply_patch(self.writable, rest, entry.doc)  # refuse now, before switching

        def plan(view: View) -> None:
            # Under the system's lock: the precondition and the difference are taken
            # from the state the whole change applies to, so two PATCHes serialize.
            entry = checked_entry(ctx, uri, if_match)
            current = planner.link_ids(planner.links_of(entry.doc).get("ResourceBlocks"))
            wanted = _wanted_blocks(links["ResourceBlocks"], current)
            base = planner.host_block(entry.doc, view.blocks)
            if base.uri not in wanted:
                raise RedfishError.of(400, "ResourceBlockInvalid", base.id,
                                      registry=COMPOSITION, related=["/Links/ResourceBlocks"])
            for block in current:
                if block not in wanted:
                    view.detach(uri, block)
            for block in dict.fromkeys(wanted):
                if block not in current:
                    view.attach(uri, block)

        await ctx.composer.run(ctx.actor, plan, lock=[uri])
        return rest, True

    @staticmethod
    def _is_capabilities(doc: dict[str, Any]) -> bool:
        return doc.get("@odata.id") in (CAPABILITIES, CONSTRAINED_CAPABILITIES)

    def allow(self, doc: dict[str, Any]) -> list[str]:
        if self._is_capabilities(doc):
            return ["GET", "HEAD"]
        methods = super().allow(doc)
        return [*methods, "DELETE"] if doc.get("SystemType") == "Composed" else methods

    async def pre_delete(self, ctx, uri, if_match):
        checked_entry(ctx, uri, if_match)
        await ctx.composer.decompose(ctx.actor, uri)
        return True

    async def _change(self, ctx: Ctx, uri: str, body: dict[str, Any], attach: bool,
                      action: str) -> ActionResult:
        block, block_etag, system_etag = _block_params(action, body)
        await ctx.composer.change(ctx.actor, uri, block, attach=attach,
                                  etags={block: block_etag, uri: system_etag})
        return ActionResult(204)

    async def add_block(self, ctx: Ctx, uri: str, body: dict[str, Any]) -> ActionResult:
        return await self._change(ctx, uri, body, True, "ComputerSystem.AddResourceBlock")

    async def remove_block(self, ctx: Ctx, uri: str, body: dict[str, Any]) -> ActionResult:
        return await self._change(ctx, uri, body, False, "ComputerSystem.RemoveResourceBlock")


class ChassisKind(Kind):
    entity = "Chassis"
    writable = {"AssetTag": Str(max_length=64, nullable=True)}


def composed_system_doc(uri: str, compute: dict[str, Any], blocks: list[str],
                        name: str) -> dict[str, Any]:
    system_id = uri.rsplit("/", 1)[1]
    return {
        "@odata.id": uri,
        "@odata.type": SYSTEM_TYPE,
        "Id": system_id,
        "Name": name,
        "SystemType": "Composed",
        "PowerState": "On",
        "Status": {"State": "Enabled", "Health": "OK"},
        "ProcessorSummary": {"Count": len(planner.link_ids(compute.get("Processors")))},
        "Actions": {
            f"#ComputerSystem.{action}": {"target": f"{uri}/Actions/ComputerSystem.{action}"}
            for action in ("AddResourceBlock", "RemoveResourceBlock")
        },
        "Links": {
            "ResourceBlocks": [{"@odata.id": b} for b in blocks],
            "ManagedBy": [{"@odata.id": uris.MANAGER}],
        },
    }


# What a composition request may hold besides annotations: specific blocks, constraints.
REQUEST_PROPERTIES = ("Name", "Description", "Links", "Processors", "Memory", "Storage",
                      "NetworkInterfaces", "EthernetInterfaces")


def system_request(body: Any, *, name_required: bool) -> None:
    """Refuse (400, every problem listed) a ComputerSystem composition request that is
    malformed; what it asks for is checked when planned."""
    if not isinstance(body, dict):
        raise RedfishError.of(400, "MalformedJSON")
    errors = [message("PropertyUnknown", k, related=[f"/{k}"]) for k in body
              if k not in REQUEST_PROPERTIES and not k.startswith("@")]
    if "Name" not in body:
        if name_required:
            errors.append(message("PropertyMissing", "Name", related=["/Name"]))
    elif not isinstance(body["Name"], str) or not body["Name"].strip():
        errors.append(message("PropertyValueTypeError", shown_value(body["Name"]), "Name",
                              related=["/Name"]))
    links = body.get("Links", {})
    constrained = any(k in body for k in REQUEST_PROPERTIES[3:])
    if not isinstance(links, dict):
        errors.append(message("PropertyValueTypeError", shown_value(links), "Links",
                              related=["/Links"]))
    elif "ResourceBlocks" in links:
        try:
            blocks = _wanted_blocks(links["ResourceBlocks"], [])
        except RedfishError as e:
            errors += e.messages
        else:
            if not blocks and not constrained:
                errors.append(message("PropertyMissing", "Links/ResourceBlocks",
                                      related=["/Links/ResourceBlocks"]))
    elif not constrained:
        errors.append(message("PropertyMissing", "Links/ResourceBlocks",
                              related=["/Links/ResourceBlocks"]))
    if errors:
        raise RedfishError(400, errors)


class SystemCollectionKind(Kind):
    """POST /redfish/v1/Systems composes a new system: specific (``Links.ResourceBlocks``),
    constrained (``Processors``, ``Memory``, ``Storage``... with ``@Redfish.RequestedCount``)
    or both."""

    entity = "ComputerSystemCollection"
    insertable = True

    async def create(self, ctx: Ctx, collection_uri: str, body: Any) -> Created:
        system_request(body, name_required=True)
        uri = await ctx.composer.compose(ctx.actor, body, composed_system_doc)
        return Created(uri)


KINDS = [SystemKind(), ChassisKind(), SystemCollectionKind()]
