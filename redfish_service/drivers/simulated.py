"""The simulated fabric driver: a rack described in data, the embedded default.

The default rack: 4 host servers; PCIe switches ``pcie1`` (hosts 1-2) and ``pcie2``
(hosts 3-4), each with 8 GPUs, 4 NVMe drives, a DPU, a NIC and a bare compute sled behind
it; and a CXL switch ``cxl1`` reaching all four hosts and both sleds, with 4 CXL Type-3
memory devices.
A rack of one's own is the same structure in YAML (``RackSpec``).
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .contract import (
    BindingDriver,
    Device,
    DeviceBusy,
    DeviceNotFound,
    Host,
    Inventory,
    InventoryDriver,
    Sled,
    Switch,
)

# UUIDs and serials derive from the rack name and ids: stable across restarts and
# machines, as real firmware identities are.
_NAMESPACE = uuid.UUID("6f1c2d4e-1b7a-4c59-9a0e-2f3c4d5e6f70")


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HostSpec(_Spec):
    id: str
    manufacturer: str = "Contoso Systems"
    model: str = "CS-2200 Compute Node"
    cpu_model: str = "Xeon-class 32-core CPU"
    cpu_count: int = Field(2, ge=1)
    cores: int = Field(32, ge=1)
    memory_gib: int = Field(512, ge=1)


class SwitchSpec(_Spec):
    id: str
    protocol: Literal["PCIe", "CXL"]
    hosts: list[str]
    manufacturer: str = "Contoso Fabrics"
    model: str = "CF-144 Switch"


class DeviceModel(_Spec):
    kind: Literal["GPU", "NVMe", "CXLMemory", "DPU", "NIC"]
    manufacturer: str
    model: str
    vendor_id: str
    device_id: str
    memory_mib: int = 0
    capacity_bytes: int = 0
    port_gbps: int = 0


class DeviceGroup(_Spec):
    """``count`` devices of one model behind one switch, named ``<prefix><n>``."""

    switch: str
    prefix: str
    count: int = Field(1, ge=1)
    model: DeviceModel


class SledSpec(_Spec):
    id: str
    switch: str
    manufacturer: str = "Contoso Systems"
    model: str = "CS-1100 Compute Sled"
    cpu_model: str = "Xeon-class 16-core CPU"
    cpu_count: int = Field(1, ge=1)
    cores: int = Field(16, ge=1)
    memory_gib: int = Field(256, ge=1)


class RackSpec(_Spec):
    name: str = "rack1"
    bind_latency_s: float = Field(0.002, ge=0, le=60)
    hosts: list[HostSpec]
    switches: list[SwitchSpec] = []
    devices: list[DeviceGroup] = []
    sleds: list[SledSpec] = []


GPU = DeviceModel(kind="GPU", manufacturer="NVIDIA", model="H100 PCIe 80GB",
                  vendor_id="0x10de", device_id="0x2331", memory_mib=81920)
NVME = DeviceModel(kind="NVMe", manufacturer="Samsung", model="PM1733 3.84TB",
                   vendor_id="0x144d", device_id="0xa824", capacity_bytes=3_840_755_982_336)
CXL_MEMORY = DeviceModel(kind="CXLMemory", manufacturer="Samsung", model="CMM-D 256GB",
                         vendor_id="0x144d", device_id="0xa800", memory_mib=262144)
DPU = DeviceModel(kind="DPU", manufacturer="NVIDIA", model="BlueField-3 B3220",
                  vendor_id="0x15b3", device_id="0xa2dc", port_gbps=200)
NIC = DeviceModel(kind="NIC", manufacturer="NVIDIA", model="ConnectX-7 400GbE",
                  vendor_id="0x15b3", device_id="0x1021", port_gbps=400)


def default_rack() -> RackSpec:
    devices: list[DeviceGroup] = []
    for n, switch in ((1, "pcie1"), (2, "pcie2")):
        devices += [
            DeviceGroup(switch=switch, prefix=f"gpu{n}-", count=8, model=GPU),
            DeviceGroup(switch=switch, prefix=f"nvme{n}-", count=4, model=NVME),
            DeviceGroup(switch=switch, prefix=f"dpu{n}-", count=1, model=DPU),
            DeviceGroup(switch=switch, prefix=f"nic{n}-", count=1, model=NIC),
        ]
    devices.append(DeviceGroup(switch="cxl1", prefix="cxlmem", count=4, model=CXL_MEMORY))
    return RackSpec(
        hosts=[HostSpec(id=f"host{i}") for i in range(1, 5)],
        switches=[
            SwitchSpec(id="pcie1", protocol="PCIe", hosts=["host1", "host2"]),
            SwitchSpec(id="pcie2", protocol="PCIe", hosts=["host3", "host4"]),
            SwitchSpec(id="cxl1", protocol="CXL",
                       hosts=[f"host{i}" for i in range(1, 5)] + ["sled1", "sled2"],
                       model="CF-CXL32 Switch"),
        ],
        devices=devices,
        sleds=[SledSpec(id="sled1", switch="pcie1"), SledSpec(id="sled2", switch="pcie2")],
    )


class SimulatedDriver(InventoryDriver, BindingDriver):
    def __init__(self, rack: RackSpec | dict[str, Any] | None = None) -> None:
        if isinstance(rack, dict):
            rack = RackSpec.model_validate(rack)
        self.rack = rack or default_rack()
        self.bindings: dict[str, str] = {}  # device id -> host id, the fabric's state
        # A device's port changes one operation at a time, as on a real switch.
        self._ports: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    def _check(self, device_id: str, host_id: str) -> None:
        devices = {g.prefix + str(i) for g in self.rack.devices for i in range(1, g.count + 1)}
        if device_id not in devices:
            raise DeviceNotFound(f"no device {device_id}")
        # Hosts and compute sleds both have root ports devices can be bound to.
        if host_id not in {h.id for h in self.rack.hosts} | {s.id for s in self.rack.sleds}:
            raise DeviceNotFound(f"no host {host_id}")

    async def bind(self, device_id: str, host_id: str) -> None:
        self._check(device_id, host_id)
        async with self._ports[device_id]:
            current = self.bindings.get(device_id)
            if current == host_id:
                return
            if current is not None:
                raise DeviceBusy(f"{device_id} is bound to {current}")
            await asyncio.sleep(self.rack.bind_latency_s)  # link training, enumeration
            self.bindings[device_id] = host_id

    async def unbind(self, device_id: str, host_id: str) -> None:
        self._check(device_id, host_id)
        async with self._ports[device_id]:
            if self.bindings.get(device_id) != host_id:
                return
            await asyncio.sleep(self.rack.bind_latency_s)
            del self.bindings[device_id]

    def _serial(self, kind: str, n: int) -> str:
        return f"SIM-{self.rack.name.upper()}-{kind}-{n:04d}"

    async def discover(self) -> Inventory:
        rack = self.rack
        hosts = tuple(
            Host(
                id=spec.id,
                uuid=str(uuid.uuid5(_NAMESPACE, f"{rack.name}/{spec.id}")),
                serial=self._serial("HOST", n),
                manufacturer=spec.manufacturer,
                model=spec.model,
                cpu_model=spec.cpu_model,
                cpu_count=spec.cpu_count,
                cores=spec.cores,
                memory_gib=spec.memory_gib,
                host_ports=(f"{spec.id}-pcie0",),
            )
            for n, spec in enumerate(rack.hosts, start=1)
        )
        switches = tuple(
            Switch(id=s.id, protocol=s.protocol, hosts=tuple(s.hosts),
                   manufacturer=s.manufacturer, model=s.model)
            for s in rack.switches
        )
        devices = []
        for group in rack.devices:
            m = group.model
            for i in range(1, group.count + 1):
                devices.append(Device(
                    id=f"{group.prefix}{i}", kind=m.kind, switch=group.switch,
                    manufacturer=m.manufacturer, model=m.model,
                    serial=self._serial(m.kind.upper(), len(devices) + 1),
                    vendor_id=m.vendor_id, device_id=m.device_id,
                    memory_mib=m.memory_mib, capacity_bytes=m.capacity_bytes,
                    port_gbps=m.port_gbps,
                ))
        sleds = tuple(
            Sled(id=s.id, switch=s.switch, manufacturer=s.manufacturer, model=s.model,
                 serial=self._serial("SLED", n), cpu_model=s.cpu_model,
                 cpu_count=s.cpu_count, cores=s.cores, memory_gib=s.memory_gib)
            for n, s in enumerate(rack.sleds, start=1)
        )
        return Inventory(hosts=hosts, switches=switches, devices=tuple(devices), sleds=sleds)
