"""The driver contract: what a switch driver tells the service and does for it.

Small and async, one ABC per capability (ironic style): inventory and binding, which every
driver has; and the optional ``EventSource`` (device failure, surprise removal, link state)
and ``FaultInjector`` (a simulator's or lab fabric's way to provoke faults on purpose).
"""

from __future__ import annotations

import abc
import enum
from collections.abc import AsyncIterator
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Host:
    """A host server the fabric reaches: becomes a ComputerSystem and its Chassis."""

    id: str
    uuid: str  # what the host's firmware (and a Kubernetes node) reports
    serial: str
    manufacturer: str
    model: str
    cpu_model: str
    cpu_count: int
    cores: int
    memory_gib: int
    host_ports: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Switch:
    """A PCIe or CXL switch and the hosts (or compute sleds) its upstream ports reach.

    ``upstream``: in a two-level fabric, the switch (of the same protocol) one of whose
    downstream ports this one's upstream port is cabled to. The hosts of the switch above
    reach the devices below through it: both are one tree, one resource zone."""

    id: str
    protocol: str  # "PCIe" or "CXL"
    hosts: tuple[str, ...]
    manufacturer: str = ""
    model: str = ""
    upstream: str | None = None


@dataclass(frozen=True)
class Device:
    """A pooled device behind a switch: becomes a ResourceBlock."""

    id: str
    kind: str  # "GPU", "NVMe", "CXLMemory", "DPU", "NIC"
    switch: str
    manufacturer: str
    model: str
    serial: str
    vendor_id: str  # PCI ids, "0x10de"
    device_id: str
    memory_mib: int = 0  # GPU memory or CXL capacity
    capacity_bytes: int = 0  # NVMe
    port_gbps: int = 0  # NIC / DPU
    cores: int = 0  # DPU: the cores of its own processor (a DPU is a NIC with a CPU)


@dataclass(frozen=True)
class Sled:
    """A bare compute sled (CPUs and memory, no OS yet): a Compute ResourceBlock."""

    id: str
    switch: str
    manufacturer: str
    model: str
    serial: str
    cpu_model: str
    cpu_count: int
    cores: int
    memory_gib: int


@dataclass(frozen=True)
class Inventory:
    hosts: tuple[Host, ...]
    switches: tuple[Switch, ...] = ()
    devices: tuple[Device, ...] = ()
    sleds: tuple[Sled, ...] = ()

    def top_switches(self) -> dict[str, str]:
        """Switch id -> the switch at the top of its tree (itself, unless it hangs below
        another): what shares a top switch is reachable from every host of the tree."""
        upstream = {s.id: s.upstream for s in self.switches}
        out: dict[str, str] = {}
        for switch in self.switches:
            top, seen = switch.id, {switch.id}
            while (up := upstream.get(top)) is not None and up not in seen:
                top = up
                seen.add(up)
            out[switch.id] = top
        return out


class InventoryDriver(abc.ABC):
    """Tells what exists behind the fabric."""

    @abc.abstractmethod
    async def discover(self) -> Inventory:
        """The current inventory; called at start and whenever the service reconciles."""


class DriverError(Exception):
    """Base of the typed driver errors. ``transient`` errors may succeed if retried."""

    transient = False


class DeviceBusy(DriverError):
    """The device is bound to another host."""


class DeviceNotFound(DriverError):
    """The driver knows no such device or host."""


class LinkDown(DriverError):
    """The path between the device and the host is down."""

    transient = True


class DriverTimeout(DriverError):
    """The operation did not finish in time; the driver undid what it could."""

    transient = True


class DeviceFailed(DriverError):
    """The device is out of order: retrying will not help until it is repaired."""


class BindingDriver(abc.ABC):
    """Attaches pooled devices to hosts. Both operations are idempotent: binding a
    device already bound to that host, or unbinding one that is not bound, succeeds."""

    @abc.abstractmethod
    async def bind(self, device_id: str, host_id: str) -> None:
        """Attach ``device_id`` to ``host_id`` (hot-plug it into the host's hierarchy)."""

    @abc.abstractmethod
    async def unbind(self, device_id: str, host_id: str) -> None:
        """Detach ``device_id`` from ``host_id``."""

    async def bound(self) -> dict[str, str] | None:
        """The bindings the fabric holds now, device id -> host id, or None if the driver
        cannot tell. At start the service undoes bindings that no document records (an
        attach cut short before its intent was written), so a driver that can answer
        should."""
        return None


# -- events (optional capability) ---------------------------------------------------------


class EventKind(enum.StrEnum):
    DEVICE_FAILED = "DeviceFailed"
    DEVICE_RESTORED = "DeviceRestored"
    DEVICE_REMOVED = "DeviceRemoved"
    DEVICE_INSERTED = "DeviceInserted"
    LINK_DOWN = "LinkDown"
    LINK_UP = "LinkUp"


@dataclass(frozen=True)
class DeviceCondition:
    """What is wrong with a device, all at once: an event carries the whole condition so
    that applying it is idempotent and a missed or repeated event cannot mislead."""

    present: bool = True
    failed: bool = False
    link_up: bool = True

    @property
    def nominal(self) -> bool:
        return self.present and not self.failed and self.link_up


NOMINAL = DeviceCondition()


@dataclass(frozen=True)
class DriverEvent:
    """Something happened to a device: ``kind`` says what, ``condition`` is its state now."""

    kind: EventKind
    device_id: str
    condition: DeviceCondition


class EventSource(abc.ABC):
    """Tells the service when devices fail, vanish, come back, or lose their link."""

    @abc.abstractmethod
    def events(self) -> AsyncIterator[DriverEvent]:
        """Subscribe: every event raised after this call is delivered, in order, until
        the iterator is closed (``aclose``)."""

    @abc.abstractmethod
    async def conditions(self) -> dict[str, DeviceCondition]:
        """The devices that are not nominal now (absent, failed, link down). The service
        reads it at start, after subscribing, so nothing between the two is lost."""


# -- fault injection (optional capability) -------------------------------------------------

BIND_FAULTS = ("bind_fails", "bind_hangs")
EVENT_FAULTS = ("link_flap", "surprise_removal", "device_failure")
FAULT_KINDS = BIND_FAULTS + EVENT_FAULTS
FAULT_ERRORS = ("LinkDown", "DeviceFailed", "DeviceBusy")  # what a failing bind raises
HANG_S = 86_400.0  # a hung bind sleeps a day: longer than any timeout the service allows
FLAP_S = 1.0  # how long a flapped link stays down unless told otherwise


class InvalidFault(ValueError):
    """A fault description that does not hold together; ``field`` names the culprit and
    ``missing`` says whether it is absent (rather than not applicable or out of range)."""

    def __init__(self, field_name: str, problem: str, *, missing: bool = False) -> None:
        super().__init__(f"{field_name}: {problem}")
        self.field = field_name
        self.missing = missing


@dataclass(frozen=True)
class Fault:
    """A fault to provoke. ``bind_fails``/``bind_hangs`` are rules that wait for a
    matching bind (``device``/``host`` narrow them, ``times`` bounds them, ``probability``
    draws from the driver's seeded generator); the others happen when injected."""

    kind: str
    device: str | None = None
    host: str | None = None
    times: int | None = None
    probability: float = 1.0
    error: str = "LinkDown"
    duration_s: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise InvalidFault("kind", f"must be one of {', '.join(FAULT_KINDS)}")
        if self.kind in EVENT_FAULTS:
            if self.device is None:
                raise InvalidFault("device", f"{self.kind} needs a device", missing=True)
            for name, unset in (("host", self.host is None), ("times", self.times is None),
                                ("probability", self.probability == 1.0)):
                if not unset:
                    raise InvalidFault(name, f"does not apply to {self.kind}")
        if self.kind != "bind_fails" and self.error != "LinkDown":
            raise InvalidFault("error", f"does not apply to {self.kind}")
        if self.kind in ("bind_fails", "surprise_removal", "device_failure") \
                and self.duration_s is not None:
            raise InvalidFault("duration_s", f"does not apply to {self.kind}")
        if self.error not in FAULT_ERRORS:
            raise InvalidFault("error", f"must be one of {', '.join(FAULT_ERRORS)}")
        if self.times is not None and self.times < 1:
            raise InvalidFault("times", "must be at least 1")
        if not 0 < self.probability <= 1:
            raise InvalidFault("probability", "must be above 0 and at most 1")
        if self.duration_s is not None and not 0 <= self.duration_s <= HANG_S:
            raise InvalidFault("duration_s", f"must be between 0 and {HANG_S:g}")


class FaultInjector(abc.ABC):
    """Provokes faults on purpose (a simulator, a lab fabric): for testing the service and
    its clients. Production drivers do not implement it."""

    @abc.abstractmethod
    async def inject(self, fault: Fault) -> None:
        """Arm a bind rule, or raise the event now. Unknown device/host: DeviceNotFound."""

    @abc.abstractmethod
    async def clear(self, device_id: str | None = None) -> None:
        """Disarm the rules (of one device, or all) and bring the device(s) back to
        nominal, raising the events that say so."""

    @abc.abstractmethod
    def reseed(self, seed: int) -> None:
        """Restart the generator ``probability`` draws from, for a repeatable run."""
