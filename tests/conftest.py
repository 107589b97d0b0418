"""Shared fixtures: an in-process service (pytest-aiohttp) and a real subprocess one."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from redfish_service import services
from redfish_service.app import create_app
from redfish_service.composition.invariants import violations
from redfish_service.config import AccountPolicy, Settings
from redfish_service.drivers.contract import LinkDown
from redfish_service.drivers.simulated import SimulatedDriver
from redfish_service.store import MemoryBackend

from .support.events import Receiver
from .support.service import ADMIN_PASSWORD, ServiceProcess

ROOT = Path(__file__).resolve().parent.parent


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(
        state_dir=tmp_path,
        admin_password=ADMIN_PASSWORD,
        accounts=AccountPolicy(lockout_threshold=3, lockout_duration=2,
                               lockout_counter_reset_after=2),
    )


@pytest.fixture
async def client(aiohttp_client, settings):
    """An in-process service with an in-memory store."""
    app = create_app(settings, backend=MemoryBackend())
    return await aiohttp_client(app)


@pytest.fixture
async def admin(client) -> dict[str, str]:
    """Headers of a logged-in admin session."""
    resp = await client.post(
        "/redfish/v1/SessionService/Sessions",
        json={"UserName": "admin", "Password": ADMIN_PASSWORD},
    )
    assert resp.status == 201, await resp.text()
    return {"X-Auth-Token": resp.headers["X-Auth-Token"]}


@pytest.fixture
def make_user(client, admin):
    """Create an account with a role; returns (headers for Basic auth, account URI)."""

    async def make(username: str, role: str, password: str = "User-passw0rd", **extra):
        resp = await client.post(
            "/redfish/v1/AccountService/Accounts",
            json={"UserName": username, "Password": password, "RoleId": role, **extra},
            headers=admin,
        )
        assert resp.status == 201, await resp.text()
        return basic(username, password), resp.headers["Location"]

    return make


@pytest.fixture
def service(tmp_path):
    """A real service subprocess over HTTPS on a free loopback port."""
    svc = ServiceProcess(tmp_path / "state").start()
    yield svc
    svc.stop()


def csdl_dir() -> Path | None:
    value = os.environ.get("REDFISH_CSDL_DIR")
    return Path(value) if value else None


def json_schema_dir() -> Path | None:
    value = os.environ.get("REDFISH_JSON_SCHEMA_DIR")
    return Path(value) if value else None


class FlakyDriver(SimulatedDriver):
    """The simulated rack with a link that is down for chosen devices."""

    def __init__(self) -> None:
        super().__init__()
        self.down: set[str] = set()

    async def bind(self, device_id: str, host_id: str) -> None:
        if device_id in self.down:
            raise LinkDown(f"link to {device_id} is down")
        await super().bind(device_id, host_id)


@pytest.fixture
def driver():
    """The simulated rack, with links that tests can take down."""
    return FlakyDriver()


@pytest.fixture
async def rf(aiohttp_client, settings, driver):
    """An in-process service on ``driver``; the composition invariants must hold after."""
    app = create_app(settings, backend=MemoryBackend(), driver=driver)
    client = await aiohttp_client(app)
    yield client
    store = app[services.STORE]
    broken = violations(store.doc, store.members)
    assert not broken, "invariants broken after the scenario:\n" + "\n".join(broken)


@pytest.fixture
async def receivers():
    """Makes loopback event receivers (``Receiver``), stopped after the test."""
    made: list[Receiver] = []

    async def make(started: bool = True, tls_dir=None) -> Receiver:
        r = Receiver(tls_dir)
        made.append(r)
        return await r.start() if started else r

    yield make
    for r in made:
        await r.stop()
