"""Driver discovery through the ``redfish_composer.drivers`` entry-point group."""

from __future__ import annotations

from importlib.metadata import entry_points

from .contract import DriverError, InventoryDriver

GROUP = "redfish_composer.drivers"


def available() -> list[str]:
    return sorted(ep.name for ep in entry_points(group=GROUP))


def load(name: str, **settings) -> InventoryDriver:
    for ep in entry_points(group=GROUP):
        if ep.name == name:
            return ep.load()(**settings)
    raise DriverError(f"no driver named {name!r}; installed: {', '.join(available()) or 'none'}")
