"""The throughput anchor for bench_get.py: the least an aiohttp + orjson server can do.

One handler for every path, answering ~1 KB of Redfish-looking JSON serialized with
orjson on each request (as a real service renders a resource), no middleware, no access
log. HTTPS with the certificate given on the command line (bench_get.py passes the one the
service made), loopback only.

    python benchmarks/baseline_server.py --port 9443 --cert DIR/tls-cert.pem \
        --key DIR/tls-key.pem
"""

from __future__ import annotations

import argparse
import ipaddress
import ssl
import sys
from typing import Any

import orjson
from aiohttp import web


def payload() -> dict[str, Any]:
    """A ComputerSystem-like document of about 1 KB once serialized."""
    system = "/redfish/v1/Systems/Baseline"
    return {
        "@odata.id": system,
        "@odata.type": "#ComputerSystem.v1_22_0.ComputerSystem",
        "Id": "Baseline",
        "Name": "Baseline system",
        "Description": "Reference payload of the benchmark's trivial server",
        "SystemType": "Composed",
        "Manufacturer": "redfish-composer",
        "Model": "Baseline",
        "SerialNumber": "BENCH-0001",
        "UUID": "0f6b1c8e-51a4-4bd3-9a43-3b2f7d0c5a11",
        "PowerState": "On",
        "Status": {"State": "Enabled", "Health": "OK", "HealthRollup": "OK"},
        "ProcessorSummary": {"Count": 2, "CoreCount": 64, "Model": "Generic CPU"},
        "MemorySummary": {"TotalSystemMemoryGiB": 512},
        "Boot": {"BootSourceOverrideEnabled": "Disabled", "BootSourceOverrideTarget": "None"},
        "Processors": {"@odata.id": f"{system}/Processors"},
        "Memory": {"@odata.id": f"{system}/Memory"},
        "Links": {
            "ResourceBlocks": [
                {"@odata.id": f"/redfish/v1/CompositionService/ResourceBlocks/Block{i}"}
                for i in range(1, 4)
            ],
            "Chassis": [{"@odata.id": "/redfish/v1/Chassis/Enclosure"}],
        },
        "Actions": {
            "#ComputerSystem.Reset": {
                "target": f"{system}/Actions/ComputerSystem.Reset",
                "ResetType@Redfish.AllowableValues": ["On", "ForceOff", "GracefulRestart"],
            }
        },
    }


def make_app() -> web.Application:
    doc = payload()

    async def get(request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(doc), content_type="application/json")

    app = web.Application()
    app.router.add_get("/{tail:.*}", get)
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", required=True, help="PEM certificate")
    parser.add_argument("--key", required=True, help="PEM private key")
    args = parser.parse_args(argv)
    if not ipaddress.ip_address(args.host).is_loopback:
        parser.error("the baseline server listens on loopback only")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(args.cert, args.key)
    print(f"baseline: {len(orjson.dumps(payload()))} B of JSON on "
          f"https://{args.host}:{args.port}/", file=sys.stderr, flush=True)
    web.run_app(make_app(), host=args.host, port=args.port, ssl_context=ctx,
                access_log=None, print=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
