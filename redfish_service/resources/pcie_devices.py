"""The pooled devices as PCIe hardware: one enclosure Chassis per switch, holding the
switch and a PCIeDevice (with its PCIeFunction) per device behind it.

These describe the hardware, not the composition, and are written when the fabric is
reconciled. A host's view of the devices attached to it is :mod:`.host_view`.
"""

from __future__ import annotations

from typing import Any

from ..drivers.contract import Device, Switch
from . import uris
from .fabric_state import (
    OK,
    downstream_port_id,
    enclosure_uri,
    memory_domain_uri,
    pcie_device_uri,
    port_uri,
    ref,
)
from .ports import DEVICE_LANES

CHASSIS_TYPE = "#Chassis.v1_28_0.Chassis"
PCIE_DEVICE_TYPE = "#PCIeDevice.v1_21_0.PCIeDevice"
PCIE_FUNCTION_TYPE = "#PCIeFunction.v1_7_0.PCIeFunction"
FUNCTION_ID = "0"
# device kind -> (PCI class code, DeviceClass)
CLASSES = {
    "GPU": ("0x030200", "DisplayController"),  # 3D controller
    "NVMe": ("0x010802", "MassStorageController"),  # NVM Express
    "CXLMemory": ("0x050210", "MemoryController"),  # CXL memory device
    "DPU": ("0x020000", "NetworkController"),
    "NIC": ("0x020000", "NetworkController"),
}


def served_resource(device: Device) -> tuple[str, str] | None:
    """What the device's PCIe function serves: (the function's link property, the
    contained resource of the device's block), or None (a NIC, CXL memory)."""
    if device.kind == "GPU":
        return "Processor", "Processors/GPU0"
    if device.kind == "DPU" and device.cores:
        return "Processor", "Processors/DPU0"
    if device.kind == "NVMe":
        return "Drives", "Drives/Drive0"
    return None


def function_uri(device: Device) -> str:
    return f"{pcie_device_uri(device.switch, device.id)}/PCIeFunctions/{FUNCTION_ID}"


def _collection(uri: str, entity: str, name: str) -> dict[str, Any]:
    return {"@odata.id": uri, "@odata.type": f"#{entity}.{entity}", "Name": name,
            "Members": [], "Members@odata.count": 0}


def enclosure_documents(fabric: str, switch: Switch,
                        devices: list[Device]) -> dict[str, dict[str, Any]]:
    """The enclosure chassis of ``switch`` and the PCIe devices behind it."""
    chassis = enclosure_uri(switch.id)
    docs: dict[str, dict[str, Any]] = {}
    doc: dict[str, Any] = {
        "@odata.id": chassis, "@odata.type": CHASSIS_TYPE, "Id": chassis.rsplit("/", 1)[1],
        "Name": f"Enclosure of {switch.protocol} switch {switch.id}",
        "ChassisType": "Enclosure", "Manufacturer": switch.manufacturer,
        "Model": switch.model, "PowerState": "On", "Status": OK,
        "PCIeDevices": ref(f"{chassis}/PCIeDevices"),
        "Links": {"Switches": [ref(f"{fabric}/Switches/{switch.id}")]},
    }
    if any(d.kind == "CXLMemory" for d in devices):
        doc["MemoryDomains"] = ref(f"{chassis}/MemoryDomains")
    docs[chassis] = doc
    docs[f"{chassis}/PCIeDevices"] = _collection(
        f"{chassis}/PCIeDevices", "PCIeDeviceCollection", f"PCIe devices behind {switch.id}")
    for device in devices:
        docs.update(device_documents(fabric, switch, device))
    return docs


def device_documents(fabric: str, switch: Switch, device: Device) -> dict[str, dict[str, Any]]:
    uri = pcie_device_uri(switch.id, device.id)
    block = f"{uris.RESOURCE_BLOCKS}/{device.id}"
    lanes = DEVICE_LANES.get(device.kind, 16)
    cxl = device.kind == "CXLMemory"
    doc: dict[str, Any] = {
        "@odata.id": uri, "@odata.type": PCIE_DEVICE_TYPE, "Id": device.id,
        "Name": f"{device.kind} {device.id}", "Manufacturer": device.manufacturer,
        "Model": device.model, "SerialNumber": device.serial,
        "DeviceType": "SingleFunction", "Status": OK,
        "PCIeInterface": {"PCIeType": "Gen5", "MaxPCIeType": "Gen5",
                          "LanesInUse": lanes, "MaxLanes": lanes},
        "PCIeFunctions": ref(f"{uri}/PCIeFunctions"),
        "Links": {
            "Chassis": [ref(enclosure_uri(switch.id))],
            "Switch": ref(f"{fabric}/Switches/{switch.id}"),
            "ConnectedPCIePorts": [ref(port_uri(fabric, switch.id,
                                                downstream_port_id(device.id)))],
        },
    }
    if cxl:
        doc["CXLDevice"] = {"DeviceType": "Type3", "CurrentProtocolVersion": "CXL2_0",
                            "CapableProtocolVersions": ["CXL1_1", "CXL2_0"],
                            "MaxNumberLogicalDevices": 1}
    if device.kind == "GPU":
        doc["Links"]["Processors"] = [ref(f"{block}/Processors/GPU0")]
    class_code, device_class = CLASSES.get(device.kind, ("0x000000", "Other"))
    function: dict[str, Any] = {
        "@odata.id": function_uri(device), "@odata.type": PCIE_FUNCTION_TYPE, "Id": FUNCTION_ID,
        "Name": f"Function {FUNCTION_ID} of {device.id}", "FunctionId": int(FUNCTION_ID),
        "FunctionType": "Physical", "FunctionProtocol": "CXL" if cxl else "PCIe",
        "DeviceClass": device_class, "ClassCode": class_code,
        "VendorId": device.vendor_id, "DeviceId": device.device_id, "Status": OK,
        "Links": {"PCIeDevice": ref(uri)},
    }
    if (served := served_resource(device)) is not None:
        prop, inner = served
        target = ref(f"{block}/{inner}")
        function["Links"][prop] = target if prop == "Processor" else [target]
    if cxl:
        function["Links"]["MemoryDomains"] = [ref(memory_domain_uri(switch.id, device.id))]
    functions = f"{uri}/PCIeFunctions"
    return {
        uri: doc,
        functions: _collection(functions, "PCIeFunctionCollection",
                               f"PCIe functions of {device.id}"),
        function["@odata.id"]: function,
    }
