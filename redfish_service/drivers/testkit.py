"""The driver test kit: the rules every switch driver must meet, as a pytest suite.

A vendor checks a driver by subclassing :class:`DriverContract` in their own tests and
providing a ``driver`` fixture that returns a fresh driver on a fabric they may change
(a lab switch, or their own simulator)::

    import pytest
    from redfish_service.drivers.testkit import DriverContract

    class TestMyDriver(DriverContract):
        @pytest.fixture
        def driver(self):
            return MyDriver(address="127.0.0.1", ...)

Every test is async (pytest-asyncio or pytest-aiohttp in auto mode). The suite only uses
the contract (``discover``, ``bind``, ``unbind`` and the typed errors), so it passes for
any correct driver, whatever its inventory.
"""

from __future__ import annotations

import asyncio

import pytest

from .contract import (
    BindingDriver,
    DeviceBusy,
    DeviceNotFound,
    DriverError,
    Inventory,
    InventoryDriver,
)


def _reachable(inventory: Inventory) -> list[tuple[str, list[str]]]:
    """(device id, hosts its switch reaches) for every device."""
    switches = {s.id: list(s.hosts) for s in inventory.switches}
    return [(d.id, switches.get(d.switch, [])) for d in inventory.devices]


class DriverContract:
    """Subclass it and provide a ``driver`` fixture."""

    @pytest.fixture
    def driver(self) -> InventoryDriver:  # pragma: no cover - supplied by the subclass
        raise NotImplementedError("provide a `driver` fixture returning a fresh driver")

    # -- inventory ---------------------------------------------------------------------

    async def test_is_an_inventory_and_binding_driver(self, driver):
        assert isinstance(driver, InventoryDriver)
        assert isinstance(driver, BindingDriver)

    async def test_inventory_is_self_consistent(self, driver):
        inventory = await driver.discover()
        assert inventory.hosts, "a fabric without hosts composes nothing"
        host_ids = [h.id for h in inventory.hosts]
        assert len(set(host_ids)) == len(host_ids), "host ids must be unique"
        assert len({h.uuid for h in inventory.hosts}) == len(host_ids), "host UUIDs unique"
        switch_ids = {s.id for s in inventory.switches}
        for switch in inventory.switches:
            assert switch.protocol in ("PCIe", "CXL"), switch
            known = set(host_ids) | {s.id for s in inventory.sleds}
            assert set(switch.hosts) <= known, f"{switch.id} reaches unknown hosts"
        device_ids = [d.id for d in inventory.devices]
        assert len(set(device_ids)) == len(device_ids), "device ids must be unique"
        assert not set(device_ids) & set(host_ids), "device and host ids must differ"
        for device in inventory.devices:
            assert device.switch in switch_ids, f"{device.id} sits behind an unknown switch"
            assert device.kind in ("GPU", "NVMe", "CXLMemory", "DPU", "NIC"), device
            assert device.serial, f"{device.id} has no serial number"
        for sled in inventory.sleds:
            assert sled.switch in switch_ids, f"sled {sled.id} sits behind an unknown switch"

    async def test_inventory_is_stable(self, driver):
        first, second = await driver.discover(), await driver.discover()
        assert [h.uuid for h in first.hosts] == [h.uuid for h in second.hosts]
        assert [d.id for d in first.devices] == [d.id for d in second.devices]

    # -- binding -----------------------------------------------------------------------

    async def _pair(self, driver) -> tuple[str, str, list[str]]:
        for device, hosts in _reachable(await driver.discover()):
            if hosts:
                return device, hosts[0], hosts
        pytest.skip("no device is reachable from any host")

    async def test_bind_and_unbind_are_idempotent(self, driver):
        device, host, _ = await self._pair(driver)
        await driver.bind(device, host)
        await driver.bind(device, host)
        await driver.unbind(device, host)
        await driver.unbind(device, host)
        await driver.bind(device, host)  # and it can be bound again afterwards
        await driver.unbind(device, host)

    async def test_bound_tells_the_bindings_if_it_answers(self, driver):
        device, host, _ = await self._pair(driver)
        before = await driver.bound()
        if before is None:
            pytest.skip("the driver does not report its bindings (bound() is None)")
        await driver.bind(device, host)
        assert (await driver.bound()).get(device) == host
        await driver.unbind(device, host)
        assert device not in await driver.bound()

    async def test_a_device_is_bound_to_one_host_at_a_time(self, driver):
        device, host, hosts = await self._pair(driver)
        others = [h for h in hosts if h != host]
        if not others:
            pytest.skip("no device is reachable from two hosts")
        await driver.bind(device, host)
        try:
            with pytest.raises(DeviceBusy):
                await driver.bind(device, others[0])
            await driver.unbind(device, others[0])  # not bound there: a no-op...
            await driver.bind(device, host)  # ...that left the binding in place
        finally:
            await driver.unbind(device, host)
        await driver.bind(device, others[0])
        await driver.unbind(device, others[0])

    async def test_unknown_ids_are_typed_errors(self, driver):
        device, host, _ = await self._pair(driver)
        with pytest.raises(DeviceNotFound):
            await driver.bind("no-such-device-xyz", host)
        with pytest.raises(DeviceNotFound):
            await driver.bind(device, "no-such-host-xyz")

    async def test_errors_are_driver_errors(self, driver):
        assert issubclass(DeviceBusy, DriverError) and issubclass(DeviceNotFound, DriverError)

    async def test_concurrent_binds_of_one_device_have_one_winner(self, driver):
        device, _, hosts = await self._pair(driver)
        if len(hosts) < 2:
            pytest.skip("no device is reachable from two hosts")
        results = await asyncio.gather(*(driver.bind(device, h) for h in hosts[:2] * 4),
                                       return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        assert all(isinstance(e, DeviceBusy) for e in errors), errors
        winners = {hosts[:2][i % 2] for i, r in enumerate(results) if r is None}
        assert len(winners) == 1, f"both hosts got {device}"
        await driver.unbind(device, winners.pop())
