"""Planning whole operations: a composition, a decomposition, an expansion, a manifest.

A :class:`View` is a working copy of the composition state. Each operation asked of it
(``compose``, ``decompose``, ``attach``, ``detach``) is checked against the copy as the
earlier ones left it, so the operations of one manifest never claim the same block, and
records its effects in a :class:`Batch`: the driver steps in order, the blocks before and
after, the systems to create or delete, the links to add or drop. The composer then
carries out a batch all or nothing. Pure: no I/O; a refusal is a RedfishError and the
caller's documents are untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..protocol.errors import RedfishError
from . import constraints, planner
from .planner import BlockView, Step, block_types, doc_id, link_ids, links_of, refuse

Doc = dict[str, Any]
# (system uri, compute block doc, block uris, name, extra properties) -> system document
SystemBuilder = Callable[[str, Doc, list[str], str], Doc]


@dataclass
class Batch:
    steps: list[Step] = field(default_factory=list)
    before: dict[str, Doc] = field(default_factory=dict)  # block uri -> as found
    after: dict[str, Doc] = field(default_factory=dict)  # block uri -> when done
    intents: dict[str, dict[str, Any]] = field(default_factory=dict)  # for recovery
    created: dict[str, Doc] = field(default_factory=dict)  # new systems
    deleted: list[str] = field(default_factory=list)  # decomposed systems
    links: dict[str, list[tuple[str, bool]]] = field(default_factory=dict)  # system ->
    # (block uri, add) edits applied to the system as it is at commit time
    created_blocks: dict[str, Doc] = field(default_factory=dict)  # Expansion blocks made
    deleted_blocks: list[str] = field(default_factory=list)  # Expansion blocks dissolved
    zone_edits: list[tuple[str, str, bool]] = field(default_factory=list)  # (zone, block, add)

    @property
    def empty(self) -> bool:
        return not (self.before or self.created or self.deleted or self.created_blocks
                    or self.deleted_blocks)


class View:
    def __init__(self, blocks: dict[str, Doc], system: Callable[[str], Doc | None], *,
                 zones: list[tuple[str, list[str]]],
                 contents: Callable[[str], constraints.Contents],
                 reserved_by: dict[str, str] | None = None,
                 mine: frozenset[str] = frozenset(),
                 overprovisioning: bool = True, zone_affinity: bool = True) -> None:
        self.blocks = dict(blocks)
        self._system = system
        self.zones = zones  # (zone uri, member block uris) in collection order
        self.contents = contents
        self.reserved_by = reserved_by or {}
        self.mine = mine  # reserved blocks the caller may use (the reservation applied)
        self.overprovisioning = overprovisioning
        self.zone_affinity = zone_affinity
        self.batch = Batch()

    # -- state of the copy ------------------------------------------------------------

    def system(self, uri: str) -> Doc | None:
        if uri in self.batch.deleted:
            return None
        return self.batch.created.get(uri) or self._system(uri)

    def _available(self, view: BlockView, system_uri: str | None = None) -> bool:
        """Free (or shared with room left), reservations aside, and not taken by this
        batch. A free block that still names an existing system (a mockup may say so)
        is that system's, not free."""
        if view.uri in self.batch.before or not view.can_join(system_uri):
            return False
        return view.state not in planner.FREE_STATES or not any(
            self.system(s) is not None for s in view.systems)

    def _free(self, uri: str) -> bool:
        view = BlockView.of(self.blocks[uri])
        return self._available(view) and (not view.reserved or uri in self.mine)

    def _check_free(self, view: BlockView, system_uri: str | None = None) -> None:
        if not self._available(view, system_uri):
            raise refuse(409, "ResourceBlockInUse", view.id)
        if view.reserved and view.uri not in self.mine:
            reservation = self.reserved_by.get(view.uri)
            if reservation:
                raise refuse(409, "SpecifiedResourceAlreadyReserved", view.id, reservation)
            raise refuse(409, "ResourceBlockInUse", view.id)

    def _take(self, uri: str, after: Doc, intent: dict[str, Any]) -> None:
        self.batch.before[uri] = self.blocks[uri]
        self.batch.after[uri] = after
        self.batch.intents[uri] = intent
        self.blocks[uri] = after

    # -- operations --------------------------------------------------------------------

    def compose(self, system_uri: str, body: Doc, build: SystemBuilder) -> Doc:
        """A new system from the request ``body`` (specific, constrained or mixed);
        returns its document."""
        zone_ids = [z.rsplit("/", 1)[1] for z, _ in self.zones]
        request = constraints.parse(body, service_overprovisioning=self.overprovisioning,
                                    zone_affinity_allowed=self.zone_affinity,
                                    zone_ids=zone_ids)
        named = list(dict.fromkeys(link_ids(links_of(body).get("ResourceBlocks"))))
        if not request.constrained:
            compute, devices = self._specific(named)
            chosen = [compute.uri, *(d.uri for d in devices)]
        else:
            chosen = self._constrained(request, named)
            compute = next(BlockView.of(self.blocks[u]) for u in chosen
                           if "Compute" in block_types(self.blocks[u]))
            devices = [BlockView.of(self.blocks[u]) for u in chosen if u != compute.uri]
        compute_doc = self.blocks[compute.uri]
        name = body.get("Name") if isinstance(body.get("Name"), str) and body["Name"] \
            else f"Composed system {system_uri.rsplit('/', 1)[1]}"
        doc = build(system_uri, compute_doc, chosen, name)
        intent = {"host": compute.id, "attach": True, "system": system_uri}
        self._take(compute.uri, planner.composed(compute_doc, system_uri), intent)
        for device in devices:
            self._join(device.uri, system_uri, compute.id, True, intent)
        self.batch.created[system_uri] = doc
        return doc

    def _join(self, uri: str, system_uri: str, host_id: str, attach: bool,
              intent: dict[str, Any]) -> None:
        """A device block (or an Expansion block and the devices it holds) joins or
        leaves a system: the block states and the driver steps."""
        doc = self.blocks[uri]
        after = planner.composed(doc, system_uri) if attach \
            else planner.released(doc, system_uri)
        self._take(uri, after, intent)
        inside = [s for s in planner.suppliers(doc) if s in self.blocks]
        if not inside:
            self.batch.steps.append(Step(attach, uri, doc_id(doc), system_uri, host_id))
        for supplier in inside:
            sdoc = self.blocks[supplier]
            self._take(supplier, planner.supplying(sdoc, uri, system_uri if attach else None),
                       intent)
            self.batch.steps.append(Step(attach, supplier, doc_id(sdoc), system_uri, host_id))

    def _specific(self, named: list[str]) -> tuple[BlockView, list[BlockView]]:
        compute, devices = planner.plan_compose(named, self.blocks, check_state=False)
        for view in (compute, *devices):
            self._check_free(view)
        return compute, devices

    def _constrained(self, request: constraints.Request, named: list[str]) -> list[str]:
        for uri in named:
            doc = self.blocks.get(uri)
            if doc is None:
                raise refuse(400, "ResourceBlockNotFound", uri.rsplit("/", 1)[-1])
            view = BlockView.of(doc)
            if not view.types <= planner.EXPANSION_TYPES | {"Compute"}:
                raise refuse(400, "ResourceBlockInvalid", view.id)
            self._check_free(view)
        named_computes = [u for u in named if "Compute" in block_types(self.blocks[u])]
        if len(named_computes) > 1:
            raise refuse(400, "ResourceBlockInvalid", named_computes[1].rsplit("/", 1)[1])
        zones = [(z, m) for z, m in self.zones
                 if request.zone is None or z.rsplit("/", 1)[1] == request.zone]
        zones = [(z, m) for z, m in zones if set(named) <= set(m)]
        if not zones:
            raise refuse(400, "IncompatibleZone")

        def attempt(free: Callable[[str], bool]) -> list[str] | constraints.Need:
            short: constraints.Need | None = None
            for _, members in zones:
                computes = [] if named_computes else [
                    u for u in members if free(u) and "Compute" in block_types(self.blocks[u])]
                if not named_computes and not computes:
                    continue
                devices = [u for u in members if free(u) and u not in named
                           and block_types(self.blocks[u]) <= planner.EXPANSION_TYPES]
                got = constraints.choose(request, named, computes, devices, self.contents)
                if isinstance(got, list):
                    return got
                short = short or got
            if short is None:
                return constraints.Need("Compute", "Compute", 1, (), False, "/")
            return short

        got = attempt(self._free)
        if isinstance(got, list):
            return got
        # Would it have worked with other clients' reservations? Then say so.
        with_reserved = attempt(lambda u: self._available(BlockView.of(self.blocks[u])))
        if isinstance(with_reserved, list):
            holder = next((self.reserved_by[u] for u in with_reserved
                           if u in self.reserved_by and u not in self.mine), "")
            raise refuse(409, "ConstrainedResourceAlreadyReserved", holder)
        raise refuse(409, "NoResourceMatch", got.type_name)

    def _existing(self, system_uri: str) -> Doc:
        """A system that exists before this batch (not one it creates)."""
        if system_uri in self.batch.created:
            raise refuse(400, "ResourceBlockInvalid", system_uri.rsplit("/", 1)[-1])
        system = self.system(system_uri)
        if system is None:
            raise RedfishError.of(404, "ResourceMissingAtURI", system_uri)
        return system

    def decompose(self, system_uri: str) -> None:
        system = self._existing(system_uri)
        if system.get("SystemType") != "Composed":
            raise refuse(400, "ResourceBlockInvalid", doc_id(system))
        host = planner.host_block(system, self.blocks)
        # the blocks that exist and say they are in the system (a mockup's system may
        # name blocks that are absent, or that do not name it back)
        linked = [u for u in dict.fromkeys(link_ids(links_of(system).get("ResourceBlocks")))
                  if u in self.blocks and (u == host.uri or system_uri in BlockView.of(
                      self.blocks[u]).systems)]
        for uri in linked:  # all checked before any is taken: a refusal leaves no trace
            if BlockView.of(self.blocks[uri]).state == "Composing" or uri in self.batch.before:
                raise refuse(409, "ResourceBlockInUse", doc_id(self.blocks[uri]))
        intent = {"host": host.id, "attach": False, "system": system_uri}
        for uri in linked:
            if uri == host.uri:
                self._take(uri, planner.released(self.blocks[uri], system_uri), intent)
            else:
                self._join(uri, system_uri, host.id, False, intent)
        self.batch.deleted.append(system_uri)

    def attach(self, system_uri: str, block_uri: str) -> None:
        self._change(system_uri, block_uri, True)

    def detach(self, system_uri: str, block_uri: str) -> None:
        self._change(system_uri, block_uri, False)

    def _change(self, system_uri: str, block_uri: str, attach: bool) -> None:
        system = self._existing(system_uri)
        plan = planner.plan_add if attach else planner.plan_remove
        step = plan(system, block_uri, self.blocks, check_state=False)
        doc = self.blocks[step.block_uri]
        if attach:
            self._check_free(BlockView.of(doc), system_uri)
        elif step.block_uri in self.batch.before:
            raise refuse(409, "ResourceBlockInUse", step.device_id)
        intent = {"host": step.host_id, "attach": attach, "system": system_uri}
        self._join(step.block_uri, system_uri, step.host_id, attach, intent)
        self.batch.links.setdefault(system_uri, []).append((step.block_uri, attach))

    # -- Expansion blocks (block-of-blocks composition) ----------------------------------

    def compose_resource(self, block_uri: str, request: Doc,
                         build: Callable[[str, str, list[Doc], list[str]], Doc]) -> Doc:
        """A new Expansion block from the free device blocks of
        ``Links.SupplyingResourceBlocks`` (sharing a zone); returns its document."""
        links = request.get("Links")
        named = links.get("SupplyingResourceBlocks") if isinstance(links, dict) else None
        if not isinstance(named, list) or not named or not all(
                isinstance(b, dict) and isinstance(b.get("@odata.id"), str) for b in named):
            raise RedfishError.of(400, "PropertyMissing", "Links/SupplyingResourceBlocks",
                                  related=["/Links/SupplyingResourceBlocks"])
        uris = list(dict.fromkeys(link_ids(named)))
        views = []
        for uri in uris:
            doc = self.blocks.get(uri)
            if doc is None:
                raise refuse(400, "ResourceBlockNotFound", uri.rsplit("/", 1)[-1])
            view = BlockView.of(doc)
            if not view.types or not view.types <= planner.DEVICE_TYPES:
                raise refuse(400, "ResourceBlockInvalid", view.id)
            views.append(view)
        zones = frozenset.intersection(*(v.zones for v in views))
        if not zones:
            raise refuse(400, "IncompatibleZone")
        for view in views:
            self._check_free(view)
        ordered = [z for z, _ in self.zones if z in zones]
        name = request.get("Name") if isinstance(request.get("Name"), str) else None
        doc = build(block_uri, name or f"Expansion {block_uri.rsplit('/', 1)[1]}",
                    [self.blocks[u] for u in uris], ordered)
        intent: dict[str, Any] = {"host": None, "attach": True, "system": None}
        for uri in uris:
            self._take(uri, planner.supplying(self.blocks[uri], block_uri), intent)
        self.batch.created_blocks[block_uri] = doc
        self.batch.zone_edits += [(z, block_uri, True) for z in ordered]
        self.blocks[block_uri] = doc
        self.batch.before.setdefault(block_uri, doc)  # taken: not for another stanza
        return doc

    def dissolve(self, block_uri: str) -> None:
        """A free Expansion block goes; the device blocks it held are free again."""
        doc = self.blocks.get(block_uri)
        if doc is None or "Expansion" not in block_types(doc):
            raise refuse(400, "ResourceBlockInvalid", block_uri.rsplit("/", 1)[-1])
        view = BlockView.of(doc)
        if view.state != "Unused" or block_uri in self.batch.before:
            raise refuse(409, "ResourceBlockInUse", view.id)
        intent: dict[str, Any] = {"host": None, "attach": False, "system": None}
        for uri in planner.suppliers(doc):
            if uri in self.batch.before:
                raise refuse(409, "ResourceBlockInUse", uri.rsplit("/", 1)[-1])
            self._take(uri, planner.unsupplied(self.blocks[uri]), intent)
        self.batch.deleted_blocks.append(block_uri)
        self.batch.zone_edits += [(z, block_uri, False) for z in view.zones]
