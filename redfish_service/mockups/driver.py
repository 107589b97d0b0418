"""The driver of a served mockup: the mockup's documents are the hardware.

There is no inventory to reconcile (the ResourceBlocks, zones and systems are already
documents). What the driver simulates is the switch: which device is attached to which
host. It derives, from the documents as they are when asked,

* the devices: the device blocks (``ResourceBlockType`` within Processor, Storage, Memory,
  Network), by ``Id``; each may be attached to one host at a time, or to up to
  ``MaxCompositions`` hosts if its sharing is enabled;
* the hosts, by the id the composer names them by (``planner.driver_host``): compute
  blocks by their ``Id``, and systems standing on a ComputerSystem block (an expandable
  host) by the system's ``Id``;
* what reaches what: a device can be attached to a host that shares a resource zone with
  it (the zones of the host's block);
* the attachments at start: what the blocks' ``Links.ComputerSystems`` record.

A bind of a device or host the documents do not have fails with ``DeviceNotFound``, one
beyond the device's capacity with ``DeviceBusy``, one across zones with a (permanent)
``DriverError``: no path; bind and unbind are idempotent, as the contract asks.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from ..composition import planner
from ..drivers.contract import (
    BindingDriver,
    DeviceBusy,
    DeviceNotFound,
    DriverError,
    Inventory,
    InventoryDriver,
)
from ..protocol.errors import RedfishError
from ..resources import uris
from ..store import Store


class MockupDriver(InventoryDriver, BindingDriver):
    def __init__(self) -> None:
        self._store: Store | None = None
        self.bindings: defaultdict[str, set[str]] = defaultdict(set)  # device -> hosts

    def attach(self, store: Store) -> None:
        """Serve the mockup in ``store``: its documents say what exists and what is bound.
        Called by the service once the mockup is loaded, before recovery."""
        self._store = store
        self.bindings.clear()
        blocks = self._blocks()
        for block in blocks.values():
            if not self._is_device(block):
                continue
            for system_uri in planner.systems_of(block):
                host = self._host_of_system(system_uri, blocks)
                if host is not None:
                    self.bindings[planner.doc_id(block)].add(host)

    # -- what the documents say -----------------------------------------------------------

    def _blocks(self) -> dict[str, dict[str, Any]]:
        store = self._store
        if store is None:
            return {}
        return {u: d for u in store.members(uris.RESOURCE_BLOCKS)
                if (d := store.doc(u)) is not None}

    @staticmethod
    def _is_device(block: dict[str, Any]) -> bool:
        types = planner.block_types(block)
        return bool(types) and types <= planner.DEVICE_TYPES

    def _host_of_system(self, system_uri: str, blocks: dict[str, dict[str, Any]]) -> str | None:
        system = self._store.doc(system_uri) if self._store is not None else None
        if system is None:
            return None
        try:
            return planner.driver_host(system, planner.host_block(system, blocks))
        except RedfishError:
            return None

    def _device(self, device_id: str, blocks: dict[str, dict[str, Any]]) -> dict[str, Any]:
        for block in blocks.values():
            if planner.doc_id(block) == device_id and self._is_device(block):
                return block
        raise DeviceNotFound(f"the mockup has no device block {device_id}")

    def _host_zones(self, host_id: str, blocks: dict[str, dict[str, Any]]) -> frozenset[str]:
        """The zones of the block a host stands on."""
        for block in blocks.values():
            if "Compute" in planner.block_types(block) and planner.doc_id(block) == host_id:
                return planner.BlockView.of(block).zones
        store = self._store
        for uri in store.members(uris.SYSTEMS) if store is not None else ():
            system = store.doc(uri)
            if system is None or planner.doc_id(system) != host_id:
                continue
            try:
                host = planner.host_block(system, blocks)
            except RedfishError:
                continue
            if "Compute" not in host.types:
                return host.zones
        raise DeviceNotFound(f"the mockup has no host {host_id}")

    # -- the contract -----------------------------------------------------------------------

    async def discover(self) -> Inventory:
        return Inventory(hosts=())

    async def bind(self, device_id: str, host_id: str) -> None:
        blocks = self._blocks()
        block = self._device(device_id, blocks)
        zones = self._host_zones(host_id, blocks)
        hosts = self.bindings[device_id]
        if host_id in hosts:
            return
        if len(hosts) >= planner.capacity(block):
            raise DeviceBusy(f"{device_id} is attached to {', '.join(sorted(hosts))}")
        if not planner.BlockView.of(block).zones & zones:
            raise DriverError(f"no path: {device_id} shares no zone with {host_id}")
        hosts.add(host_id)

    async def unbind(self, device_id: str, host_id: str) -> None:
        self.bindings[device_id].discard(host_id)

    def attached(self, device_id: str) -> frozenset[str]:
        """The hosts ``device_id`` is attached to now."""
        return frozenset(self.bindings.get(device_id, ()))
