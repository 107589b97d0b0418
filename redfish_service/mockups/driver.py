"""The driver of a served mockup: no inventory to reconcile (the mockup's documents are the
inventory), and binding that always succeeds (the devices are only documents)."""

from __future__ import annotations

from ..drivers.contract import BindingDriver, Inventory, InventoryDriver


class MockupDriver(InventoryDriver, BindingDriver):
    def __init__(self) -> None:
        self.bindings: dict[str, str] = {}

    async def discover(self) -> Inventory:
        return Inventory(hosts=())

    async def bind(self, device_id: str, host_id: str) -> None:
        self.bindings[device_id] = host_id

    async def unbind(self, device_id: str, host_id: str) -> None:
        if self.bindings.get(device_id) == host_id:
            del self.bindings[device_id]
