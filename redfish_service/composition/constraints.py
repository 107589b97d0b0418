"""Constrained composition: what a request body asks for, and which blocks give it.

A constrained (or mixed) ComputerSystem request describes resources instead of naming
blocks::

    {"Name": "gpu-box", "@Redfish.ZoneAffinity": "pcie1",
     "Processors": {"Members": [{"@Redfish.RequestedCount": 2, "ProcessorType": "GPU"}]},
     "Storage": {"Members": [{"Drives": [{"@Redfish.RequestedCount": 1,
                                          "CapacityBytes": 3840755982336}]}]}}

Each member becomes a :class:`Need`: so many resources of one collection whose
properties match. A resource matches when every requested property is equal, except
numbers, which may be larger when overprovisioning is allowed (``@Redfish.
AllowOverprovisioning`` on the member or at the root, and ``AllowOverprovisioning`` on the
CompositionService). Without it the counts must be met exactly as well.

How blocks are chosen, deterministically: zone by zone (only the ``@Redfish.ZoneAffinity``
zone when given), every system gets one compute block; what the named blocks and the
compute block hold counts first, device blocks are added, in zone order, for the rest.
Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..protocol.errors import RedfishError
from ..protocol.fields import shown_value
from ..protocol.messages import message

# request collection -> (block property holding such resources, type name for messages)
COLLECTIONS = {
    "Processors": ("Processors", "Processor"),
    "Memory": ("Memory", "Memory"),
    "NetworkInterfaces": ("NetworkInterfaces", "NetworkInterface"),
    "EthernetInterfaces": ("NetworkInterfaces", "NetworkInterface"),
    "Storage": ("Drives", "Drive"),  # Storage members are satisfied by drives
}
# where else a block may hold such resources: DMTF's mockups give network blocks
# EthernetInterfaces, ours give NetworkInterfaces
ALSO_HELD_IN = {"NetworkInterfaces": ("EthernetInterfaces",)}
COUNT = "@Redfish.RequestedCount"
OVER = "@Redfish.AllowOverprovisioning"
AFFINITY = "@Redfish.ZoneAffinity"

# what the contained resources of one block are: block property -> documents
Contents = dict[str, list[dict[str, Any]]]


@dataclass(frozen=True, slots=True, eq=False)
class Need:
    holder: str  # block property: "Processors", "Memory", "Drives", "NetworkInterfaces"
    type_name: str
    count: int
    props: tuple[tuple[str, Any], ...]
    overprovision: bool
    path: str  # where in the request, for error messages

    def matches(self, resource: dict[str, Any]) -> bool:
        return all(_matches(want, resource.get(key), self.overprovision)
                   for key, want in self.props)


@dataclass(frozen=True, slots=True)
class Request:
    needs: tuple[Need, ...]
    zone: str | None  # @Redfish.ZoneAffinity

    @property
    def constrained(self) -> bool:
        return bool(self.needs)


def _matches(want: Any, have: Any, over: bool) -> bool:
    if isinstance(want, dict):
        return isinstance(have, dict) and all(
            _matches(v, have.get(k), over) for k, v in want.items() if not k.startswith("@"))
    if isinstance(want, list):
        return isinstance(have, list) and all(
            any(_matches(w, h, over) for h in have) for w in want)
    if isinstance(want, (int, float)) and not isinstance(want, bool):
        if isinstance(have, bool) or not isinstance(have, (int, float)):
            return False
        return have == want or (over and have > want)
    return want == have


def _count(member: dict[str, Any], path: str, errors: list[dict[str, Any]]) -> int:
    value = member.get(COUNT, 1)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        errors.append(message("PropertyValueIncorrect", COUNT, shown_value(value),
                              related=[f"{path}/{COUNT}"]))
        return 0
    return value


def _flag(obj: dict[str, Any], path: str, errors: list[dict[str, Any]]) -> bool | None:
    value = obj.get(OVER)
    if value is not None and not isinstance(value, bool):
        errors.append(message("PropertyValueTypeError", shown_value(value), OVER,
                              related=[f"{path}/{OVER}"]))
        return None
    return value


def parse(body: dict[str, Any], *, service_overprovisioning: bool,
          zone_affinity_allowed: bool, zone_ids: list[str]) -> Request:
    """The constraints of a ComputerSystem request body; RedfishError 400 listing every
    problem if it is malformed."""
    errors: list[dict[str, Any]] = []
    root_over = _flag(body, "", errors)
    zone = body.get(AFFINITY)
    if zone is not None:
        if not zone_affinity_allowed:
            errors.append(message("PropertyNotWritable", AFFINITY, related=[f"/{AFFINITY}"]))
        elif not isinstance(zone, str) or zone not in zone_ids:
            errors.append(message("PropertyValueNotInList", shown_value(zone), AFFINITY,
                                  related=[f"/{AFFINITY}"]))
    needs: list[Need] = []

    def add(member: Any, collection: str, path: str) -> None:
        if not isinstance(member, dict):
            errors.append(message("PropertyValueTypeError", shown_value(member), path[1:],
                                  related=[path]))
            return
        count = _count(member, path, errors)
        over = _flag(member, path, errors)
        holder, type_name = COLLECTIONS[collection]
        props = tuple(sorted((k, v) for k, v in member.items() if not k.startswith("@")))
        allowed = service_overprovisioning and bool(over if over is not None else root_over)
        if count:
            needs.append(Need(holder, type_name, count, props, allowed, path))

    for collection in COLLECTIONS:
        if collection not in body:
            continue
        value = body[collection]
        members = value.get("Members") if isinstance(value, dict) else None
        if not isinstance(members, list):
            errors.append(message("PropertyValueTypeError", shown_value(value), collection,
                                  related=[f"/{collection}"]))
            continue
        for i, member in enumerate(members):
            path = f"/{collection}/Members/{i}"
            if collection != "Storage":
                add(member, collection, path)
                continue
            drives = member.get("Drives") if isinstance(member, dict) else None
            if drives is None:
                add({k: v for k, v in member.items() if k.startswith("@")}
                    if isinstance(member, dict) else member, collection, path)
            elif not isinstance(drives, list):
                errors.append(message("PropertyValueTypeError", shown_value(drives),
                                      f"{path[1:]}/Drives", related=[f"{path}/Drives"]))
            else:
                for j, drive in enumerate(drives):
                    add(drive, collection, f"{path}/Drives/{j}")
    if errors:
        raise RedfishError(400, errors)
    return Request(tuple(needs), zone)


def provided(need: Need, contents: Contents) -> int:
    """How many of the resources a block holds satisfy ``need``."""
    return sum(1 for holder in (need.holder, *ALSO_HELD_IN.get(need.holder, ()))
               for r in contents.get(holder, ()) if need.matches(r))


def choose(request: Request, fixed: list[str], compute_candidates: list[str],
           devices: list[str], contents: Callable[[str], Contents]) -> list[str] | Need:
    """Blocks for one zone: ``fixed`` (named in the request, compute included if any),
    one of ``compute_candidates`` unless a fixed block is one, and device blocks from
    ``devices`` (free, in zone order). Returns the chosen block URIs, or the first need
    that could not be met."""
    failed: Need | None = None
    needs = request.needs
    for compute in compute_candidates or [None]:
        chosen = list(fixed) + ([compute] if compute else [])
        totals = [sum(provided(n, contents(u)) for u in chosen) for n in needs]
        for i, need in enumerate(needs):
            for uri in devices:
                if totals[i] >= need.count:
                    break
                if uri in chosen:
                    continue
                got = provided(need, contents(uri))
                if not got or (totals[i] + got > need.count and not need.overprovision):
                    continue
                chosen.append(uri)
                for j, other in enumerate(needs):
                    totals[j] += provided(other, contents(uri))
        short = next((n for n, total in zip(needs, totals, strict=True)
                      if total < n.count or (total > n.count and not n.overprovision)), None)
        if short is None:
            return chosen
        failed = failed or short
    assert failed is not None  # the loop ran at least once and did not return
    return failed
