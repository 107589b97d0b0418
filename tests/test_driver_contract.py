"""The driver test kit, run on our own simulated driver (as a vendor runs it on theirs)."""

import pytest

from redfish_service.drivers.simulated import SimulatedDriver, default_rack
from redfish_service.drivers.testkit import DriverContract


class TestSimulatedDriver(DriverContract):
    @pytest.fixture
    def driver(self):
        return SimulatedDriver()


class TestSimulatedDriverWithoutLatency(DriverContract):
    @pytest.fixture
    def driver(self):
        rack = default_rack()
        rack.bind_latency_s = 0
        return SimulatedDriver(rack)
