"""The DMTF Service Validator against served DMTF mockups: ``public-composability`` (after
compositions done through the service) and ``public-cxl`` (``public-rackmount1``:
``test_mockups.py``).

The validator must report no failure the service introduced. A failure the mockup itself
causes is excluded only if it is listed below, matched exactly by URI and property, with
its reason, and ``mockup check`` reports that mistake too (checked without the validator,
by the fast test at the end). A listed failure the validator no longer reports fails the
test as well, so the lists cannot go stale.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from redfish_service.mockups import check, loader

from .conftest import json_schema_dir
from .support.service import ServiceProcess
from .support.tools import run_tool, tool_path
from .test_mockups import mockup
from .test_validators import require_csdl, service_validator_counts, service_validator_findings

SYSTEMS = "/redfish/v1/Systems"
BLOCKS = "/redfish/v1/CompositionService/ResourceBlocks"


@dataclass(frozen=True)
class MockupMistake:
    reason: str
    kind: str  # the kind of problem ``mockup check`` reports it as
    at: str | None = None  # where mockup check reports it, when not at the failing URI


# --------------------------------------------------------------------------------------
# what each mockup gets wrong: (URI, property) -> why
# --------------------------------------------------------------------------------------
_ID = "Id is not the last segment of the URI"
COMPOSABILITY = {
    **{(f"{SYSTEMS}/{system}/Memory/DIMM0", "/Id"):
       MockupMistake(f"{_ID} (Id 'Block1DIMM0')", "identifier")
       for system in ("SystemPreResourceBlock", "SystemAfterResourceBlock",
                      "SystemAfterAddResourceAction")},
    **{(f"{SYSTEMS}/{system}/Storage/NVMe/Drives/Drive0", "/Id"):
       MockupMistake(f"{_ID} (Id 'Drive 0')", "identifier")
       for system in ("SystemPreResourceBlock", "SystemAfterResourceBlock",
                      "SystemAfterAddResourceAction")},
}

_CXL_LD_ACTIONS = ("DisablePassphrase", "FreezeSecurityState", "PassphraseSecureErase",
                   "SetPassphrase", "Unlock")
_LOG_ENTRY = "/redfish/v1/Chassis/CXL-Chassis/LogServices/LocalLog1/Entries/1"
CXL = {
    # every logical device's security actions target PooledCXLType3's logical device
    **{(f"/redfish/v1/Chassis/{chassis}/PCIeDevices/1/CXLLogicalDevices/1",
        f"/Actions/#CXLLogicalDevice.{action}/target"):
       MockupMistake("action target is PooledCXLType3's logical device", "action")
       for chassis in ("CXLType1", "CXLType2", "CXLType3", "PooledCXLType1", "PooledCXLType2")
       for action in _CXL_LD_ACTIONS},
    # redfish-spec-notes §7: Port.ResetPPB target is .../Action/Port.Reset
    **{(f"/redfish/v1/Fabrics/CXL/Switches/CXL/Ports/{port}", "/Actions/#Port.ResetPPB/target"):
       MockupMistake("action target .../Action/Port.Reset, not .../Actions/Port.ResetPPB",
                     "action")
       for port in ("D1", "D2", "D3", "D4", "U1", "U2", "U3")},
    ("/redfish/v1/Systems/CXL-System/Memory/CXL2", "/Id"):
        MockupMistake(f"{_ID} (Id 'CXLType2')", "identifier"),
    ("/redfish/v1/Systems/CXL-System/Memory/CXL3", "/Id"):
        MockupMistake(f"{_ID} (Id 'CXLType3')", "identifier"),
    ("/redfish/v1/Chassis/CXL-Chassis/Thermal", "/Fans/0/ReadingRPM"):
        MockupMistake("ReadingRPM is not in Thermal.v1_0_0 (the type the mockup names)",
                      "schema"),
    ("/redfish/v1/Chassis/CXL-Chassis/Thermal", "/Fans/1/ReadingRPM"):
        MockupMistake("ReadingRPM is not in Thermal.v1_0_0 (the type the mockup names)",
                      "schema"),
    ("/redfish/v1/Chassis/CXL-Chassis/Thermal", "/Redundancy/0/Mode"):
        MockupMistake("Redundancy Mode 'N+1' is not an allowed value (N+m)", "schema"),
    (_LOG_ENTRY, "/Created"):
        MockupMistake("Created '2012-03-07T14:44' has no seconds and no offset", "schema"),
    (_LOG_ENTRY.rsplit("/", 1)[0], "/Members/0/Created"):
        MockupMistake("the same log entry, expanded in its collection", "schema",
                      at=_LOG_ENTRY),
}

MISTAKES = {"public-composability": COMPOSABILITY, "public-cxl": CXL}

_FAILURE = re.compile(r"^(?P<uri>\S+): FAIL - (?P<prop>/\S*) \(")


def failure_key(line: str) -> tuple[str, str] | None:
    """(URI, property) of a validator failure line, None if it names no property."""
    m = _FAILURE.match(line)
    return (m["uri"], m["prop"]) if m else None


def run_validator(svc: ServiceProcess, tmp_path: Path, name: str):
    logdir = tmp_path / "validator"
    run = run_tool([tool_path("rf_service_validator"), "--rhost", svc.url, "-u", "admin",
                    "-p", svc.password, "--authtype", "Session", "--skipschema",
                    "--schema_directory", str(require_csdl()), "--logdir", str(logdir),
                    "--timeout", "30"], timeout=300, cwd=tmp_path)
    counts = service_validator_counts(run.stdout)
    failures, warnings, validated = service_validator_findings(logdir)
    assert counts is not None, run.describe(svc.password)
    print(f"rf_service_validator on served {name}: {counts}, {len(validated)} URIs, "
          f"{len(warnings)} warnings")
    return counts, failures, validated


def assert_only_mockup_mistakes(name: str, counts: dict, failures: list[str]) -> None:
    mistakes = MISTAKES[name]
    ours = [line for line in failures if failure_key(line) not in mistakes]
    assert not ours, "failures the mockup does not explain:\n  " + "\n  ".join(ours)
    seen = {failure_key(line) for line in failures}
    stale = sorted(k for k in mistakes if k not in seen)
    assert not stale, f"listed mockup mistakes the validator no longer reports: {stale}"
    assert counts["fail"] == len(failures) == len(mistakes), (counts, len(failures))


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_service_validator_on_served_public_composability(tmp_path):
    """After compositions through the service: a mockup system decomposed, a new one
    composed (a shared drive included) and grown; the service's documents pass."""
    svc = ServiceProcess(tmp_path / "state", extra_args=[
        "--mockup", str(mockup("public-composability"))]).start()
    try:
        status, _, body = svc.request("DELETE", f"{SYSTEMS}/ComposedSystem2")
        assert status == 204, body
        status, _, body = svc.request("POST", SYSTEMS, {
            "Name": "validated", "Links": {"ResourceBlocks": [
                {"@odata.id": f"{BLOCKS}/{n}"} for n in ("ComputeBlock2", "DriveBlock3",
                                                          "OffloadBlock9")]}})
        assert status == 201, body
        status, _, body = svc.request(
            "POST", f"{body['@odata.id']}/Actions/ComputerSystem.AddResourceBlock",
            {"ResourceBlock": {"@odata.id": f"{BLOCKS}/NetworkBlock8"}})
        assert status == 204, body
        counts, failures, validated = run_validator(svc, tmp_path, "public-composability")
    finally:
        svc.stop()
    assert counts["pass"] > 3000 and len(validated) > 150, (counts, len(validated))
    assert any(u.startswith(f"{SYSTEMS}/composed-") for u in validated), "new system unseen"
    assert_only_mockup_mistakes("public-composability", counts, failures)


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_service_validator_on_served_public_cxl(tmp_path):
    svc = ServiceProcess(tmp_path / "state", extra_args=[
        "--mockup", str(mockup("public-cxl"))]).start()
    try:
        counts, failures, validated = run_validator(svc, tmp_path, "public-cxl")
    finally:
        svc.stop()
    assert counts["pass"] > 5000 and len(validated) > 250, (counts, len(validated))
    assert "/redfish/v1/Fabrics/CXL/Connections" in validated
    assert_only_mockup_mistakes("public-cxl", counts, failures)


@pytest.mark.parametrize("name", sorted(MISTAKES))
def test_mockup_check_lists_every_excluded_validator_failure(name):
    schemas = json_schema_dir()
    if schemas is None:
        pytest.skip("set REDFISH_JSON_SCHEMA_DIR (e.g. ../shared/redfish/json-schema)")
    problems = check.check(loader.load(mockup(name)), check.SchemaSet(schemas))
    reported = {(p.uri, p.kind) for p in problems}
    missing = [f"{uri} {prop}: {m.reason}" for (uri, prop), m in MISTAKES[name].items()
               if (m.at or uri, m.kind) not in reported]
    assert not missing, "mockup check does not report:\n  " + "\n  ".join(missing)
    # the property is named in the report too (schema and action problems)
    for (uri, prop), m in MISTAKES[name].items():
        if m.kind in ("schema", "action") and m.at is None:
            leaf = prop.rsplit("/", 1)[1] if m.kind == "schema" else prop.split("/")[2]
            assert any(p.uri == uri and p.kind == m.kind and leaf in p.message
                       for p in problems), (uri, prop)
