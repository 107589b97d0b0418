"""Our own mockups, generated from simulated racks.

``python -m redfish_service.mockups.generate OUT [NAME...]`` writes them under ``OUT``.

Each mockup is a simulated rack (:class:`RackSpec`) served in process on an in-memory
store, brought into a state worth showing through the ordinary API (a composed system, an
expanded host, memory bound over CXL), then written by :func:`export.write` — the same code
as ``redfish-composer mockup export``. The output is deterministic so that the committed
``mockups/`` folder can be compared byte for byte with a fresh run:

* UUIDs come from a seeded generator (``uuid.uuid4`` is replaced while generating), so
  the service UUID, the composed systems' ids and the hosts' UUIDs are the same each run;
* the product version is fixed (:data:`PRODUCT_VERSION`) rather than the installed one;
* the port is fixed (:data:`PORT`, ``NetworkProtocol`` records it; a service serving the
  mockup rewrites it with its own);
* no document the export writes carries a clock (sessions and tasks are left out);
* the simulator's fault-injection ActionInfos are removed (a service serving the mockup
  cannot inject faults).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import random
import shutil
import sys
import tempfile
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

from aiohttp.test_utils import TestClient, TestServer

from .. import app as app_module
from .. import services
from ..config import Settings
from ..drivers.simulated import (
    CXL_MEMORY,
    GPU,
    NVME,
    DeviceGroup,
    HostSpec,
    RackSpec,
    SimulatedDriver,
    SledSpec,
    SwitchSpec,
    default_rack,
)
from ..resources import managers
from ..store import MemoryBackend
from . import export

PRODUCT_VERSION = "1.0.0"
PORT = 8443
PASSWORD = "mockup-generator-only"
SYSTEMS = "/redfish/v1/Systems"
BLOCKS = "/redfish/v1/CompositionService/ResourceBlocks"
ADD = "/redfish/v1/Systems/{}/Actions/ComputerSystem.AddResourceBlock"

Scenario = Callable[[TestClient], Awaitable[None]]


class GenerationError(Exception):
    pass


def cxl_pool() -> RackSpec:
    """Four hosts and two sleds on one CXL switch, eight Type-3 memory devices they share.

Every CXL device is reachable from every host and sled on the switch (each device's
MemoryChunk can be granted to any of them); the simulated driver binds a device to one
host at a time. Two small PCIe switches give the hosts their resource zones (a CXL
device joins the zone of every host it reaches).
"""
    return RackSpec(
        name="cxl-pool",
        hosts=[HostSpec(id=f"host{i}") for i in range(1, 5)],
        switches=[
            SwitchSpec(id="cxl1", protocol="CXL",
                       hosts=[f"host{i}" for i in range(1, 5)] + ["sled1", "sled2"],
                       model="CF-CXL32 Switch"),
            SwitchSpec(id="pcie1", protocol="PCIe", hosts=["host1", "host2"]),
            SwitchSpec(id="pcie2", protocol="PCIe", hosts=["host3", "host4"]),
        ],
        devices=[
            DeviceGroup(switch="cxl1", prefix="cxlmem", count=8, model=CXL_MEMORY),
            DeviceGroup(switch="pcie1", prefix="nvme1-", count=2, model=NVME),
            DeviceGroup(switch="pcie2", prefix="nvme2-", count=2, model=NVME),
        ],
        sleds=[SledSpec(id="sled1", switch="pcie1"), SledSpec(id="sled2", switch="pcie2")],
    )


def pcie_64gpu() -> RackSpec:
    """A two-level PCIe fabric with 64 GPUs: a spine switch ``pcie0`` cabled to eight
    hosts, four leaf switches ``pcie1``…``pcie4`` below it (their upstream ports cabled
    to the spine's downstream ports), 16 GPUs behind each leaf. Every host reaches every
    GPU through the spine: one resource zone."""
    switches = [SwitchSpec(id="pcie0", protocol="PCIe", model="CF-144 Spine Switch",
                           hosts=[f"host{i}" for i in range(1, 9)])]
    switches += [SwitchSpec(id=f"pcie{n}", protocol="PCIe", upstream="pcie0")
                 for n in range(1, 5)]
    devices = [DeviceGroup(switch=f"pcie{n}", prefix=f"gpu{n}-", count=16, model=GPU)
               for n in range(1, 5)]
    return RackSpec(name="pcie-64gpu", hosts=[HostSpec(id=f"host{i}") for i in range(1, 9)],
                    switches=switches, devices=devices)


def _blocks(*names: str) -> dict[str, Any]:
    return {"Links": {"ResourceBlocks": [{"@odata.id": f"{BLOCKS}/{n}"} for n in names]}}


def _block(name: str) -> dict[str, Any]:
    return {"ResourceBlock": {"@odata.id": f"{BLOCKS}/{name}"}}


async def _ok(resp, what: str) -> None:
    if resp.status not in (200, 201, 204):
        raise GenerationError(f"{what}: {resp.status} {await resp.text()}")


async def _compose(client: TestClient, name: str, *blocks: str) -> None:
    resp = await client.post(SYSTEMS, json={"Name": name, **_blocks(*blocks)})
    await _ok(resp, f"composing {name}")


async def _expand(client: TestClient, host: str, block: str) -> None:
    await _ok(await client.post(ADD.format(host), json=_block(block)), f"{block} to {host}")


async def _default_rack_state(client: TestClient) -> None:
    await _compose(client, "composed1", "sled1", "gpu1-1", "nvme1-2", "cxlmem1")
    await _expand(client, "host1", "gpu1-2")


async def _cxl_pool_state(client: TestClient) -> None:
    for host, mem in (("host1", "cxlmem1"), ("host1", "cxlmem2"), ("host2", "cxlmem3"),
                      ("host3", "cxlmem4")):
        await _expand(client, host, mem)
    await _compose(client, "memory-heavy", "sled1", "cxlmem5", "cxlmem6", "nvme1-1")


async def _pcie_64gpu_state(client: TestClient) -> None:
    for n in range(1, 5):  # one GPU of each leaf to a host
        await _expand(client, f"host{2 * n - 1}", f"gpu{n}-1")
    # and one host with GPUs of two leaves: its zone involves both leaves and the spine
    await _expand(client, "host2", "gpu1-2")
    await _expand(client, "host2", "gpu3-2")


MOCKUPS: dict[str, tuple[Callable[[], RackSpec], Scenario]] = {
    "default-rack": (default_rack, _default_rack_state),
    "cxl-pool": (cxl_pool, _cxl_pool_state),
    "pcie-64gpu": (pcie_64gpu, _pcie_64gpu_state),
}


@contextmanager
def _deterministic(seed: str) -> Iterator[None]:
    rng = random.Random(seed)

    def uuid4() -> uuid.UUID:
        return uuid.UUID(int=rng.getrandbits(128), version=4)

    with mock.patch.object(uuid, "uuid4", uuid4), \
            mock.patch.object(app_module, "product_version", lambda: PRODUCT_VERSION):
        yield


async def _generate(name: str, out: Path) -> int:
    rack, scenario = MOCKUPS[name]
    with tempfile.TemporaryDirectory() as state, _deterministic(name):
        settings = Settings(state_dir=Path(state), admin_password=PASSWORD, port=PORT)
        driver = SimulatedDriver(rack().model_copy(update={"bind_latency_s": 0.0}))
        application = app_module.create_app(settings, backend=MemoryBackend(), driver=driver)
        token = base64.b64encode(f"admin:{PASSWORD}".encode()).decode()
        async with TestClient(TestServer(application),
                              headers={"Authorization": f"Basic {token}"}) as client:
            await scenario(client)
            store = application[services.STORE]
            # fault injection is the simulator's, not the rack's: a service serving the
            # mockup cannot inject faults and does not advertise it
            await managers.advertise_faults(store, False)
            return export.write(store, out)


def generate(name: str, out: Path) -> int:
    """Write mockup ``name`` to ``out`` (absent or empty); the document count."""
    return asyncio.run(_generate(name, out))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m redfish_service.mockups.generate",
        description="Write our own mockups (generated from simulated racks) under OUT.")
    parser.add_argument("out", type=Path, help="the folder to write them in (e.g. mockups)")
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"which ones (default all: {', '.join(MOCKUPS)})")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in MOCKUPS]
    if unknown:
        parser.error(f"no mockup {', '.join(unknown)} (known: {', '.join(MOCKUPS)})")
    for name in args.names or list(MOCKUPS):
        target = args.out / name
        if target.exists():
            shutil.rmtree(target)
        count = generate(name, target)
        print(f"{target}: {count} documents", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
