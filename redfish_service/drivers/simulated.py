"""The simulated fabric driver: a rack described in data, the embedded default.

The default rack: 4 host servers; PCIe switches ``pcie1`` (hosts 1-2) and ``pcie2``
(hosts 3-4), each with 8 GPUs, 4 NVMe drives, a DPU, a NIC and a bare compute sled behind
it; and a CXL switch ``cxl1`` reaching all four hosts and both sleds, with 4 CXL Type-3
memory devices.
A rack of one's own is the same structure in YAML (``RackSpec``).

Faults can be injected, deterministically: the rack's ``faults`` section (a seed and
rules) or :meth:`SimulatedDriver.inject` at run time (the Manager's OEM action). Bind rules
wait for a matching bind; link flaps, surprise removals and device failures are events,
raised when injected (those in the rack file when the service starts listening).
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .contract import (
    EVENT_FAULTS,
    FLAP_S,
    HANG_S,
    NOMINAL,
    BindingDriver,
    Device,
    DeviceBusy,
    DeviceCondition,
    DeviceFailed,
    DeviceNotFound,
    DriverEvent,
    DriverTimeout,
    EventKind,
    EventSource,
    Fault,
    FaultInjector,
    Host,
    InvalidFault,
    Inventory,
    InventoryDriver,
    LinkDown,
    Sled,
    Switch,
)

log = logging.getLogger("redfish_service.drivers.simulated")

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
    hosts: list[str] = []
    manufacturer: str = "Contoso Fabrics"
    model: str = "CF-144 Switch"
    # a leaf switch of a two-level fabric: the spine switch its upstream port is cabled to
    upstream: str | None = None


class DeviceModel(_Spec):
    kind: Literal["GPU", "NVMe", "CXLMemory", "DPU", "NIC"]
    manufacturer: str
    model: str
    vendor_id: str
    device_id: str
    memory_mib: int = 0
    capacity_bytes: int = 0
    port_gbps: int = 0
    cores: int = 0  # DPU: its processor's cores


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


class FaultRule(_Spec):
    """One fault of the rack file, e.g. ``{kind: bind_fails, device: gpu1-3, times: 1}``;
    the fields and their rules are those of :class:`~.contract.Fault`."""

    kind: Literal["bind_fails", "bind_hangs", "link_flap", "surprise_removal",
                  "device_failure"]
    device: str | None = None
    host: str | None = None
    times: int | None = None
    probability: float = 1.0
    error: Literal["LinkDown", "DeviceFailed", "DeviceBusy"] = "LinkDown"
    duration_s: float | None = None

    @model_validator(mode="after")
    def _holds_together(self) -> FaultRule:
        self.fault()
        return self

    def fault(self) -> Fault:
        try:
            return Fault(**self.model_dump())
        except InvalidFault as e:
            raise ValueError(str(e)) from None


class FaultsSpec(_Spec):
    seed: int = 0
    rules: list[FaultRule] = []


class RackSpec(_Spec):
    name: str = "rack1"
    bind_latency_s: float = Field(0.002, ge=0, le=60)
    hosts: list[HostSpec]
    switches: list[SwitchSpec] = []
    devices: list[DeviceGroup] = []
    sleds: list[SledSpec] = []
    faults: FaultsSpec = Field(default_factory=FaultsSpec)

    def device_ids(self) -> set[str]:
        return {g.prefix + str(i) for g in self.devices for i in range(1, g.count + 1)}

    def host_ids(self) -> set[str]:
        """Hosts and compute sleds: both have root ports devices can be bound to."""
        return {h.id for h in self.hosts} | {s.id for s in self.sleds}

    @model_validator(mode="after")
    def _switch_links_hold_together(self) -> RackSpec:
        """Two levels at most: a leaf's upstream is a spine of its protocol, which hangs
        below nothing."""
        by_id = {s.id: s for s in self.switches}
        for n, switch in enumerate(self.switches):
            if switch.upstream is None:
                continue
            spine = by_id.get(switch.upstream)
            if spine is None or spine.id == switch.id:
                raise ValueError(f"switches.{n}.upstream: no other switch {switch.upstream}")
            if spine.protocol != switch.protocol:
                raise ValueError(f"switches.{n}.upstream: {spine.id} is a {spine.protocol} "
                                 f"switch, {switch.id} a {switch.protocol} one")
            if spine.upstream is not None:
                raise ValueError(f"switches.{n}.upstream: {spine.id} hangs below "
                                 f"{spine.upstream} itself (two levels at most)")
        return self

    @model_validator(mode="after")
    def _faults_name_known_parts(self) -> RackSpec:
        devices, hosts = self.device_ids(), self.host_ids()
        for n, rule in enumerate(self.faults.rules):
            if rule.device is not None and rule.device not in devices:
                raise ValueError(f"faults.rules.{n}: no device {rule.device}")
            if rule.host is not None and rule.host not in hosts:
                raise ValueError(f"faults.rules.{n}: no host {rule.host}")
        return self


GPU = DeviceModel(kind="GPU", manufacturer="NVIDIA", model="H100 PCIe 80GB",
                  vendor_id="0x10de", device_id="0x2331", memory_mib=81920)
NVME = DeviceModel(kind="NVMe", manufacturer="Samsung", model="PM1733 3.84TB",
                   vendor_id="0x144d", device_id="0xa824", capacity_bytes=3_840_755_982_336)
CXL_MEMORY = DeviceModel(kind="CXLMemory", manufacturer="Samsung", model="CMM-D 256GB",
                         vendor_id="0x144d", device_id="0xa800", memory_mib=262144)
DPU = DeviceModel(kind="DPU", manufacturer="NVIDIA", model="BlueField-3 B3220",
                  vendor_id="0x15b3", device_id="0xa2dc", port_gbps=200, cores=16)
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


_EVENTS = {  # fault kind -> (event raised, condition after)
    "device_failure": (EventKind.DEVICE_FAILED, {"failed": True}),
    "surprise_removal": (EventKind.DEVICE_REMOVED, {"present": False}),
    "link_flap": (EventKind.LINK_DOWN, {"link_up": False}),
}


class _Rule:
    """An armed bind rule and how many more binds it may hit (None: no limit)."""

    def __init__(self, fault: Fault) -> None:
        self.fault = fault
        self.left = fault.times

    def matches(self, device_id: str, host_id: str) -> bool:
        f = self.fault
        return (f.device in (None, device_id)) and (f.host in (None, host_id))


class _Subscription:
    """One consumer's queue of events; it stops receiving when closed."""

    def __init__(self, subscribers: list[asyncio.Queue[DriverEvent]]) -> None:
        self._subscribers = subscribers
        self._queue: asyncio.Queue[DriverEvent] = asyncio.Queue()
        subscribers.append(self._queue)

    def __aiter__(self) -> _Subscription:
        return self

    async def __anext__(self) -> DriverEvent:
        return await self._queue.get()

    async def aclose(self) -> None:
        if self._queue in self._subscribers:
            self._subscribers.remove(self._queue)


class SimulatedDriver(InventoryDriver, BindingDriver, EventSource, FaultInjector):
    def __init__(self, rack: RackSpec | dict[str, Any] | None = None) -> None:
        if isinstance(rack, dict):
            rack = RackSpec.model_validate(rack)
        self.rack = rack or default_rack()
        self.bindings: dict[str, str] = {}  # device id -> host id, the fabric's state
        # A device's port changes one operation at a time, as on a real switch.
        self._ports: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._random = random.Random(self.rack.faults.seed)
        self._rules: list[_Rule] = []
        self._conditions: dict[str, DeviceCondition] = {}  # only devices not nominal
        self._subscribers: list[asyncio.Queue[DriverEvent]] = []
        self._link_timers: dict[str, asyncio.TimerHandle] = {}
        # Event faults of the rack file wait for the first listener (and a running loop).
        self._pending = [r.fault() for r in self.rack.faults.rules if r.kind in EVENT_FAULTS]
        for rule in self.rack.faults.rules:
            if rule.kind not in EVENT_FAULTS:
                self._rules.append(_Rule(rule.fault()))

    def _check(self, device_id: str, host_id: str) -> None:
        if device_id not in self.rack.device_ids():
            raise DeviceNotFound(f"no device {device_id}")
        if host_id not in self.rack.host_ids():
            raise DeviceNotFound(f"no host {host_id}")

    def _refuse_unwell(self, device_id: str) -> None:
        """A device that is gone, broken or unreachable cannot be bound."""
        condition = self._conditions.get(device_id, NOMINAL)
        if not condition.present:
            raise DeviceNotFound(f"{device_id} has been removed")
        if condition.failed:
            raise DeviceFailed(f"{device_id} has failed")
        if not condition.link_up:
            raise LinkDown(f"link to {device_id} is down")

    def _armed(self, device_id: str, host_id: str) -> Fault | None:
        """The first rule this bind hits, counted; probability draws are made in rule
        order, one per matching rule, so a seed gives the same run every time."""
        for rule in self._rules:
            if not rule.matches(device_id, host_id):
                continue
            if rule.fault.probability < 1 and self._random.random() >= rule.fault.probability:
                continue
            if rule.left is not None:
                rule.left -= 1
                if rule.left == 0:
                    self._rules.remove(rule)
            return rule.fault
        return None

    async def bind(self, device_id: str, host_id: str) -> None:
        self._check(device_id, host_id)
        async with self._ports[device_id]:
            self._refuse_unwell(device_id)
            current = self.bindings.get(device_id)
            if current == host_id:
                return
            if current is not None:
                raise DeviceBusy(f"{device_id} is bound to {current}")
            fault = self._armed(device_id, host_id)
            if fault is not None and fault.kind == "bind_hangs":
                # Whoever waits gives up (and cancels this) long before the sleep ends.
                await asyncio.sleep(HANG_S if fault.duration_s is None else fault.duration_s)
                raise DriverTimeout(f"bind of {device_id} to {host_id} hung (injected)")
            await asyncio.sleep(self.rack.bind_latency_s)  # link training, enumeration
            if fault is not None:
                error = {"LinkDown": LinkDown, "DeviceFailed": DeviceFailed,
                         "DeviceBusy": DeviceBusy}[fault.error]
                raise error(f"bind of {device_id} to {host_id} failed (injected)")
            self.bindings[device_id] = host_id

    async def bound(self) -> dict[str, str]:
        return dict(self.bindings)

    async def unbind(self, device_id: str, host_id: str) -> None:
        """Always possible, even for a failed, removed or unreachable device: the switch
        port is configured whatever sits behind it, and the admin must be able to
        decompose a system that lost a device."""
        self._check(device_id, host_id)
        async with self._ports[device_id]:
            if self.bindings.get(device_id) != host_id:
                return
            await asyncio.sleep(self.rack.bind_latency_s)
            del self.bindings[device_id]

    # -- events -------------------------------------------------------------------------

    def events(self) -> AsyncIterator[DriverEvent]:
        subscription = _Subscription(self._subscribers)
        pending, self._pending = self._pending, []
        for fault in pending:
            self._raise(fault)
        return subscription

    async def conditions(self) -> dict[str, DeviceCondition]:
        return dict(self._conditions)

    def _set(self, device_id: str, kind: EventKind, **change: bool) -> None:
        """Change a device's condition and tell every listener, if anything changed."""
        before = self._conditions.get(device_id, NOMINAL)
        after = replace(before, **change)
        if after == before:
            return
        if after.nominal:
            self._conditions.pop(device_id, None)
        else:
            self._conditions[device_id] = after
        log.info("device event", extra={"device": device_id, "event": str(kind)})
        event = DriverEvent(kind, device_id, after)
        for queue in self._subscribers:
            queue.put_nowait(event)

    def _raise(self, fault: Fault) -> None:
        assert fault.device is not None
        kind, change = _EVENTS[fault.kind]
        self._set(fault.device, kind, **change)
        if fault.kind == "link_flap":
            timer = self._link_timers.pop(fault.device, None)
            if timer is not None:
                timer.cancel()
            delay = FLAP_S if fault.duration_s is None else fault.duration_s
            self._link_timers[fault.device] = asyncio.get_running_loop().call_later(
                delay, self._link_up, fault.device)

    def _link_up(self, device_id: str) -> None:
        self._link_timers.pop(device_id, None)
        self._set(device_id, EventKind.LINK_UP, link_up=True)

    # -- fault injection ----------------------------------------------------------------

    async def inject(self, fault: Fault) -> None:
        if fault.device is not None and fault.device not in self.rack.device_ids():
            raise DeviceNotFound(f"no device {fault.device}")
        if fault.host is not None and fault.host not in self.rack.host_ids():
            raise DeviceNotFound(f"no host {fault.host}")
        if fault.kind in EVENT_FAULTS:
            self._raise(fault)
        else:
            self._rules.append(_Rule(fault))

    async def clear(self, device_id: str | None = None) -> None:
        if device_id is not None and device_id not in self.rack.device_ids():
            raise DeviceNotFound(f"no device {device_id}")
        self._rules = [r for r in self._rules
                       if device_id is not None and r.fault.device != device_id]
        self._pending = [f for f in self._pending
                         if device_id is not None and f.device != device_id]
        for device in [device_id] if device_id is not None else sorted(self._conditions):
            timer = self._link_timers.pop(device, None)
            if timer is not None:
                timer.cancel()
            self._set(device, EventKind.DEVICE_INSERTED, present=True)
            self._set(device, EventKind.DEVICE_RESTORED, failed=False)
            self._set(device, EventKind.LINK_UP, link_up=True)

    def reseed(self, seed: int) -> None:
        self._random.seed(seed)

    def faults(self) -> list[Fault]:
        """The bind rules still armed (for tests and diagnostics)."""
        return [r.fault for r in self._rules]

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
                   manufacturer=s.manufacturer, model=s.model, upstream=s.upstream)
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
                    port_gbps=m.port_gbps, cores=m.cores,
                ))
        sleds = tuple(
            Sled(id=s.id, switch=s.switch, manufacturer=s.manufacturer, model=s.model,
                 serial=self._serial("SLED", n), cpu_model=s.cpu_model,
                 cpu_count=s.cpu_count, cores=s.cores, memory_gib=s.memory_gib)
            for n, s in enumerate(rack.sleds, start=1)
        )
        return Inventory(hosts=hosts, switches=switches, devices=tuple(devices), sleds=sleds)
