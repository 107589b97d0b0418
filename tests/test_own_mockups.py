"""Our own mockups in ``mockups/``: generated from simulated racks, clean, served, validated."""

from __future__ import annotations

import pytest

from redfish_service import services
from redfish_service.app import create_app
from redfish_service.config import Settings
from redfish_service.mockups import check, generate, loader
from redfish_service.mockups.service import service_owned
from redfish_service.store import MemoryBackend

from .conftest import ROOT, json_schema_dir
from .support.service import ADMIN_PASSWORD, ServiceProcess
from .test_mockups import AUTH

MOCKUPS = ROOT / "mockups"
NAMES = list(generate.MOCKUPS)


def _files(folder) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_every_generated_mockup_is_committed():
    assert sorted(d.name for d in MOCKUPS.iterdir() if d.is_dir()) == sorted(NAMES)
    total = sum(len(raw) for name in NAMES for raw in _files(MOCKUPS / name).values())
    assert total < 3_000_000, f"our mockups hold {total} bytes"


@pytest.mark.parametrize("name", NAMES)
def test_the_generator_reproduces_the_committed_mockup(name, tmp_path):
    """Byte for byte: a change to the service that changes a mockup must regenerate it
    (``python -m redfish_service.mockups.generate mockups``)."""
    generate.generate(name, tmp_path / name)
    fresh, committed = _files(tmp_path / name), _files(MOCKUPS / name)
    assert sorted(fresh) == sorted(committed), (
        f"missing: {sorted(set(fresh) - set(committed))[:5]}, "
        f"stale: {sorted(set(committed) - set(fresh))[:5]}")
    differ = [f for f in fresh if fresh[f] != committed[f]]
    assert not differ, f"{len(differ)} files differ, first: {differ[:5]}; regenerate with " \
                       "python -m redfish_service.mockups.generate mockups"


@pytest.mark.parametrize("name", NAMES)
def test_mockup_check_finds_no_problem(name):
    mockup = loader.load(MOCKUPS / name)
    schemas = check.SchemaSet.from_env(json_schema_dir())
    problems = check.check(mockup, schemas)
    assert not problems, "\n".join(map(str, problems))


@pytest.mark.parametrize("name", NAMES)
async def test_our_mockup_loads_and_serves(aiohttp_client, tmp_path, name):
    folder = MOCKUPS / name
    settings = Settings(state_dir=tmp_path, admin_password=ADMIN_PASSWORD, mockup=folder)
    app = create_app(settings, backend=MemoryBackend())
    client = await aiohttp_client(app)
    m = loader.load(folder)
    store = app[services.STORE]
    failures = []
    for uri in sorted(m.documents):
        resp = await client.get(uri, headers=AUTH)
        if service_owned(uri) and uri not in store:
            continue  # replaced by the service's own
        if resp.status != 200:
            failures.append(f"GET {uri} -> {resp.status}")
    assert not failures, "\n".join(failures)
    # composition state shows as exported
    if name == "default-rack":
        body = await (await client.get("/redfish/v1/Systems", headers=AUTH)).json()
        assert any("/composed-" in s["@odata.id"] for s in body["Members"])
        gpu = await (await client.get("/redfish/v1/CompositionService/ResourceBlocks/gpu1-2",
                                      headers=AUTH)).json()
        assert gpu["CompositionStatus"]["CompositionState"] == "Composed"
        assert gpu["Links"]["ComputerSystems"] == [{"@odata.id": "/redfish/v1/Systems/host1"}]


# what each mockup must show the validator at least: (PASS checks, URIs, a fabric URI)
VALIDATED = {"default-rack": (3000, 300, "/redfish/v1/Fabrics/CXL"),
             "cxl-pool": (5000, 250, "/redfish/v1/Fabrics/CXL/Connections"),
             "pcie-64gpu": (10000, 600, "/redfish/v1/Fabrics/PCIe/Switches/pcie0/Ports/down-pcie4")}


@pytest.mark.slow
@pytest.mark.timeout(400)
@pytest.mark.parametrize("name", NAMES)
def test_service_validator_on_our_mockups(tmp_path, name):
    from .support.tools import run_tool, tool_path
    from .test_validators import (
        require_csdl,
        service_validator_counts,
        service_validator_findings,
    )

    schemas = require_csdl()
    svc = ServiceProcess(tmp_path / "state",
                         extra_args=["--mockup", str(MOCKUPS / name)]).start()
    try:
        logdir = tmp_path / "validator"
        run = run_tool([tool_path("rf_service_validator"), "--rhost", svc.url, "-u", "admin",
                        "-p", svc.password, "--authtype", "Session", "--skipschema",
                        "--schema_directory", str(schemas), "--logdir", str(logdir),
                        "--timeout", "30"], timeout=300, cwd=tmp_path)
    finally:
        svc.stop()
    counts = service_validator_counts(run.stdout)
    failures, _, validated = service_validator_findings(logdir)
    assert counts is not None, run.describe(svc.password)
    print(f"rf_service_validator on mockups/{name}: {counts}, {len(validated)} URIs")
    assert not failures and counts["fail"] == 0, "\n  ".join(failures)
    passes, uris, fabric = VALIDATED[name]
    assert counts["pass"] > passes and len(validated) > uris, (counts, len(validated))
    assert fabric in validated
