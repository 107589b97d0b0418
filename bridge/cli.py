"""``redfish-dra-bridge``: run the Kubernetes DRA bridge in front of a Redfish manager."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from aiohttp import web
from kubernetes.aio import config as kconfig

from redfish_service import logs
from redfish_service.config import ConfigError

from .config import ENV_PREFIX, Settings, load_settings
from .controller import Bridge
from .kube import Kube
from .observe import probe_app
from .redfish import Redfish, ssl_context

log = logging.getLogger("bridge")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="redfish-dra-bridge",
        description="Publish the free devices of a Redfish composability manager as "
        "Kubernetes DRA ResourceSlices, attach each allocated device to its node through "
        "standard Redfish before the Pod binds, and detach it when the claim lets go. "
        "Every setting comes from the YAML --config file, an environment variable "
        f"{ENV_PREFIX}<SETTING> (e.g. {ENV_PREFIX}REDFISH_URL) or a flag; flags win over "
        "the environment, which wins over the file. Settings: "
        + ", ".join(Settings.model_fields) + ".")
    p.add_argument("--config", type=Path, help="YAML configuration file")
    p.add_argument("--redfish-url", help="base URL of the Redfish manager (https://...)")
    p.add_argument("--redfish-username")
    p.add_argument("--redfish-password-file", type=Path,
                   help="file holding the Redfish password (mounted from a Secret)")
    p.add_argument("--redfish-ca-bundle", type=Path,
                   help="PEM bundle of the CA that signs the manager's certificate")
    p.add_argument("--kubeconfig", type=Path,
                   help="kubeconfig (default: in-cluster, then ~/.kube/config)")
    p.add_argument("--driver-name", help="DRA driver name, a DNS subdomain you own")
    p.add_argument("--namespace", help="namespace of the Lease and of this bridge")
    p.add_argument("--http-port", type=int, help="port of /metrics, /healthz, /readyz")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    return p


async def serve(settings: Settings) -> None:
    kube = await Kube.connect(settings.kubeconfig)
    rf = Redfish(settings.redfish_url, settings.redfish_username, settings.password(),
                 ssl_ctx=ssl_context(settings.redfish_verify_tls, settings.redfish_ca_bundle),
                 timeout_s=settings.redfish_timeout_s,
                 connections=settings.attach_concurrency + 4)  # the pool reads and SSE too
    bridge = Bridge(settings, kube, rf)
    runner = web.AppRunner(probe_app(bridge.metrics, bridge.ready), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.http_bind, settings.http_port).start()
    log.info("bridge started", extra={"driver": settings.driver_name,
                                      "redfish": settings.redfish_url,
                                      "identity": settings.identity})
    try:
        await bridge.run()
    finally:
        await runner.cleanup()
        await bridge.recorder.drain()
        await rf.close()
        await kube.close()


def main(argv: list[str] | None = None) -> int:
    args = vars(parser().parse_args(argv))
    config = args.pop("config")
    try:
        settings = load_settings(config, args)
        settings.password()  # fail now, not at the first attach
    except ConfigError as e:
        print(f"redfish-dra-bridge: {e}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level)

    async def run() -> int:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        try:
            await serve(settings)
        except asyncio.CancelledError:
            log.info("bridge stopped")
        except (OSError, ConfigError, kconfig.ConfigException) as e:
            log.error("bridge cannot start: %s", e)
            return 1
        return 0

    return asyncio.run(run())


if __name__ == "__main__":
    sys.exit(main())
