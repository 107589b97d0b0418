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
from .planner import BlockView, Step, refuse

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

    @property
    def empty(self) -> bool:
        return not (self.before or self.created or self.deleted)


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

    def _free(self, uri: str) -> bool:
        view = BlockView.of(self.blocks[uri])
        return (view.state in planner.FREE_STATES and uri not in self.batch.before
                and (not view.reserved or uri in self.mine))

    def _check_free(self, view: BlockView) -> None:
        if view.uri in self.batch.before or view.state not in planner.FREE_STATES:
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
        named = [b["@odata.id"].rstrip("/") for b in
                 (body.get("Links") or {}).get("ResourceBlocks") or []
                 if isinstance(b, dict) and isinstance(b.get("@odata.id"), str)]
        named = list(dict.fromkeys(named))
        if not request.constrained:
            compute, devices = self._specific(named)
            chosen = [compute.uri, *(d.uri for d in devices)]
        else:
            chosen = self._constrained(request, named)
            compute = next(BlockView.of(self.blocks[u]) for u in chosen
                           if "Compute" in self.blocks[u].get("ResourceBlockType", ()))
            devices = [BlockView.of(self.blocks[u]) for u in chosen if u != compute.uri]
        compute_doc = self.blocks[compute.uri]
        name = body.get("Name") or f"Composed system {system_uri.rsplit('/', 1)[1]}"
        doc = build(system_uri, compute_doc, chosen, name)
        intent = {"host": compute.id, "attach": True, "system": system_uri}
        for uri in chosen:
            self._take(uri, planner.composed(self.blocks[uri], system_uri), intent)
        for device in devices:
            self.batch.steps.append(Step(True, device.uri, device.id, system_uri, compute.id))
        self.batch.created[system_uri] = doc
        return doc

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
        named_computes = [u for u in named
                          if "Compute" in self.blocks[u].get("ResourceBlockType", ())]
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
                    u for u in members if free(u)
                    and "Compute" in self.blocks[u].get("ResourceBlockType", ())]
                if not named_computes and not computes:
                    continue
                devices = [u for u in members if free(u) and u not in named
                           and set(self.blocks[u].get("ResourceBlockType", ()))
                           <= planner.EXPANSION_TYPES]
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
        with_reserved = attempt(lambda u: u not in self.batch.before and BlockView.of(
            self.blocks[u]).state in planner.FREE_STATES)
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
            raise refuse(400, "ResourceBlockInvalid", system.get("Id", ""))
        host = planner.host_block(system, self.blocks)
        linked = [b["@odata.id"] for b in system.get("Links", {}).get("ResourceBlocks", [])]
        linked = [u for u in linked if u in self.blocks]
        for uri in linked:  # all checked before any is taken: a refusal leaves no trace
            if BlockView.of(self.blocks[uri]).state == "Composing" or uri in self.batch.before:
                raise refuse(409, "ResourceBlockInUse", self.blocks[uri]["Id"])
        intent = {"host": host.id, "attach": False, "system": system_uri}
        for uri in linked:
            block_id = self.blocks[uri]["Id"]
            self._take(uri, planner.released(self.blocks[uri]), intent)
            if uri != host.uri:
                self.batch.steps.append(Step(False, uri, block_id, system_uri, host.id))
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
            self._check_free(BlockView.of(doc))
        elif step.block_uri in self.batch.before:
            raise refuse(409, "ResourceBlockInUse", step.device_id)
        after = planner.composed(doc, system_uri) if attach else planner.released(doc)
        intent = {"host": step.host_id, "attach": attach, "system": system_uri}
        self._take(step.block_uri, after, intent)
        self.batch.steps.append(step)
        self.batch.links.setdefault(system_uri, []).append((step.block_uri, attach))
