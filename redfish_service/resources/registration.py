"""Registering host servers with the CompositionService (``RegisterResourceBlock``).

Every host the fabric reaches is registered when discovered: a ``ComputerSystem``
ResourceBlock stands for it in the zones of its switches, and its system is an
``ExpandableSystem``. Deleting that block unregisters the host (it must hold no pooled
device): the system becomes ``ResourceBlockCapable`` and loses the Add/RemoveResourceBlock
actions. ``POST /redfish/v1/CompositionService/ResourceBlocks`` with ``ComputerSystems``
(and optionally ``Links.Zones``, a subset of the zones it was in) registers it again.

Which hosts are unregistered, and the zones each was in, is kept in the
CompositionService's private data, so reconciliation leaves them as the client set them.
"""

from __future__ import annotations

from typing import Any

from ..composition import planner
from ..composition.batch import View
from ..composition.messages import COMPOSITION
from ..protocol.errors import RedfishError
from ..protocol.fields import shown_value
from ..protocol.messages import message
from ..store import Store, Transaction
from . import uris
from .context import Ctx
from .kind import Created

BLOCKS = uris.RESOURCE_BLOCKS
CAPABILITIES = f"{BLOCKS}/Capabilities"
BLOCK_TYPE = "#ResourceBlock.v1_4_3.ResourceBlock"


def _state(store: Store) -> dict[str, list[str]]:
    entry = store.get(uris.COMPOSITION_SERVICE)
    return dict(((entry.private or {}).get("unregistered") or {}) if entry else {})


def unregistered(store: Store) -> frozenset[str]:
    """Ids of the hosts a client unregistered."""
    return frozenset(_state(store))


def _members(tx: Transaction) -> list[str]:
    """The blocks as this transaction sees them (it adds or removes one)."""
    return planner.link_ids((tx.get(BLOCKS) or {}).get("Members"))


def _save(tx: Transaction, state: dict[str, list[str]]) -> None:
    private = tx.private(uris.COMPOSITION_SERVICE) or {}
    private["unregistered"] = state
    tx.set_private(uris.COMPOSITION_SERVICE, private)


def capabilities_doc() -> dict[str, Any]:
    return {
        "@odata.id": CAPABILITIES,
        "@odata.type": BLOCK_TYPE,
        "Id": "Capabilities",
        "Name": "Capabilities for registering a host server",
        # what a registration makes (the schema requires both of any ResourceBlock)
        "ResourceBlockType": ["ComputerSystem"],
        "CompositionStatus": {"CompositionState": "Unused"},
        "Name@Redfish.OptionalOnCreate": True,
        "ComputerSystems@Redfish.RequiredOnCreate": True,
        "Links": {"Zones@Redfish.OptionalOnCreate": True},
    }


def collection_capabilities(zones: list[str]) -> dict[str, Any]:
    return {
        "@odata.type": "#CollectionCapabilities.v1_4_1.CollectionCapabilities",
        "Capabilities": [{
            "CapabilitiesObject": {"@odata.id": CAPABILITIES},
            "UseCase": "RegisterResourceBlock",
            "Links": {"TargetCollection": {"@odata.id": BLOCKS},
                      "RelatedItem": [{"@odata.id": z} for z in zones]},
        }],
    }


def advertised(store: Store) -> list[str]:
    """The zones the ResourceBlocks collection offers for ``RegisterResourceBlock``."""
    capabilities = (store.doc(BLOCKS) or {}).get("@Redfish.CollectionCapabilities")
    out: list[str] = []
    for cap in (capabilities or {}).get("Capabilities") or []:
        if isinstance(cap, dict) and cap.get("UseCase") == "RegisterResourceBlock":
            out += [z.rstrip("/") for z in planner.link_ids(
                (cap.get("Links") or {}).get("RelatedItem"))]
    return out


def advertise(tx: Transaction, zones: list[str]) -> None:
    collection = tx.get(BLOCKS)
    if collection is not None:
        collection["@Redfish.CollectionCapabilities"] = collection_capabilities(zones)
        tx.put(BLOCKS, collection)
    if tx.exists(CAPABILITIES):
        tx.put(CAPABILITIES, capabilities_doc())
    else:
        tx.create(CAPABILITIES, capabilities_doc(), member=False)


def _system_uri(body: Any) -> tuple[str, list[str] | None]:
    """The system and the zones (None: all it can be in) of a registration request."""
    if not isinstance(body, dict):
        raise RedfishError.of(400, "MalformedJSON")
    errors = [message("PropertyUnknown", k, related=[f"/{k}"]) for k in body
              if k not in ("Name", "Description", "ComputerSystems", "Links")
              and not k.startswith("@")]
    systems = body.get("ComputerSystems")
    if systems is None:
        errors.append(message("PropertyMissing", "ComputerSystems",
                              related=["/ComputerSystems"]))
    elif not (isinstance(systems, list) and len(systems) == 1 and isinstance(systems[0], dict)
              and isinstance(systems[0].get("@odata.id"), str)):
        errors.append(message("PropertyValueTypeError", shown_value(systems),
                              "ComputerSystems", related=["/ComputerSystems"]))
    links = body.get("Links", {})
    zones = links.get("Zones") if isinstance(links, dict) else None
    if not isinstance(links, dict) or set(links) - {"Zones"} or (
            zones is not None and not (isinstance(zones, list) and all(
                isinstance(z, dict) and isinstance(z.get("@odata.id"), str) for z in zones))):
        errors.append(message("PropertyValueTypeError", shown_value(links), "Links",
                              related=["/Links"]))
    if errors:
        raise RedfishError(400, errors)
    return (systems[0]["@odata.id"].rstrip("/"),
            None if zones is None else [z["@odata.id"].rstrip("/") for z in zones])


async def register(ctx: Ctx, body: Any) -> Created:
    system_uri, zones = _system_uri(body)
    host_id = system_uri.rsplit("/", 1)[-1]
    block_uri = f"{BLOCKS}/{uris.host_block_id(host_id)}"

    def plan(view: View) -> None:
        system = view.system(system_uri)
        if system is None:
            raise RedfishError.of(400, "ResourceMissingAtURI", system_uri,
                                  related=["/ComputerSystems/0"])
        if system.get("SystemType") != "Physical":  # composed, virtual, a partition...
            raise RedfishError.of(400, "PropertyValueIncorrect", "ComputerSystems",
                                  system_uri, related=["/ComputerSystems/0"])
        if any("ComputerSystem" in planner.block_types(b)
               and system_uri in planner.link_ids(b.get("ComputerSystems"))
               for b in view.blocks.values()):
            raise RedfishError.of(409, "ResourceAlreadyExists", "ResourceBlock",
                                  "ComputerSystems", system_uri)
        # the zones it may join: those it was in when a client unregistered it, else
        # those the collection advertises for registration (a mockup's never-registered
        # host, SystemPreResourceBlock in public-composability)
        state = _state(ctx.store)
        allowed = state[host_id] if host_id in state else advertised(ctx.store)
        wanted = allowed if zones is None else zones
        if not wanted or not set(wanted) <= set(allowed):
            raise RedfishError.of(400, "IncompatibleZone", registry=COMPOSITION)
        chosen["zones"] = wanted

    chosen: dict[str, list[str]] = {}

    def write(tx: Transaction, view: View) -> None:
        from .inventory import registered_system
        from .pool import host_block_doc, refresh_pools

        state = _state(ctx.store)
        if state.pop(host_id, None) is not None:
            _save(tx, state)
        block = host_block_doc(host_id)
        block["ComputerSystems"] = [{"@odata.id": system_uri}]
        if isinstance(body.get("Name"), str) and body["Name"].strip():
            block["Name"] = body["Name"]
        block["Links"]["Zones"] = [{"@odata.id": z} for z in chosen["zones"]]
        tx.create(block_uri, block)
        for zone in chosen["zones"]:
            doc = tx.get(zone)
            if doc is not None:
                doc["Links"]["ResourceBlocks"].append({"@odata.id": block_uri})
                tx.put(zone, doc)
        tx.put(system_uri, registered_system(tx.get(system_uri) or {}, block_uri))
        refresh_pools(tx, _members(tx))

    await ctx.composer.run(ctx.actor, plan, lock=[system_uri], dry_run=True, on_plan=write)
    return Created(block_uri)


async def unregister(ctx: Ctx, block_uri: str) -> None:
    block = ctx.store.doc(block_uri) or {}
    systems = planner.link_ids(block.get("ComputerSystems"))
    system = ctx.store.doc(systems[0]) if len(systems) == 1 else None
    # the registration of a host: its system, in /Systems, stands on this block (a
    # mockup's ComputerSystem block may hold a system of its own instead)
    if "ComputerSystem" not in planner.block_types(block) or system is None \
            or not systems[0].startswith(uris.SYSTEMS + "/") \
            or block_uri not in planner.link_ids(planner.links_of(system).get("ResourceBlocks")):
        raise RedfishError.of(405, "OperationNotAllowed", headers={"Allow": "GET, HEAD"})
    system_uri = systems[0]

    def plan(view: View) -> None:
        system = view.system(system_uri) or {}
        held = [b for b in planner.link_ids(planner.links_of(system).get("ResourceBlocks"))
                if b != block_uri]
        if held:  # devices first: RemoveResourceBlock them
            raise planner.refuse(409, "ResourceBlockInUse", block_uri.rsplit("/", 1)[1])
        if planner.status_of(view.blocks.get(block_uri, {})).get(
                "CompositionState") == "Composing":
            raise planner.refuse(409, "ResourceBlockInUse", block_uri.rsplit("/", 1)[1])

    def write(tx: Transaction, view: View) -> None:
        from .inventory import unregistered_system
        from .pool import refresh_pools

        current = tx.get(block_uri) or {}
        zones = planner.link_ids(planner.links_of(current).get("Zones"))
        state = _state(ctx.store)
        state[system_uri.rsplit("/", 1)[1]] = zones
        _save(tx, state)
        for zone in zones:
            doc = tx.get(zone)
            if doc is not None:
                links = planner.links_of(doc)
                doc["Links"] = {**links, "ResourceBlocks": [
                    {"@odata.id": b} for b in planner.link_ids(links.get("ResourceBlocks"))
                    if b != block_uri]}
                tx.put(zone, doc)
        tx.delete(block_uri)
        system = tx.get(system_uri)
        if system is not None:
            tx.put(system_uri, unregistered_system(system))
        refresh_pools(tx, _members(tx))

    await ctx.composer.run(ctx.actor, plan, lock=[system_uri], dry_run=True, on_plan=write)
