"""``redfish-composer``: the command line."""

from __future__ import annotations

import argparse
import asyncio
import errno
import ipaddress
import logging
import os
import signal
import socket
import sys
from pathlib import Path

from aiohttp import web
from pydantic import ValidationError

from . import logs
from .app import create_app
from .config import ENV_PREFIX, ConfigError, Settings, load_settings, load_yaml_mapping
from .drivers.simulated import RackSpec, SimulatedDriver
from .mockups import cli as mockup_cli
from .mockups.driver import MockupDriver
from .mockups.loader import NotAMockup, mockup_root
from .security.tls import ensure_self_signed, server_context

log = logging.getLogger("redfish_service")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="redfish-composer",
        description="An async Redfish composability manager.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser(
        "serve",
        help="run the Redfish service",
        description=(
            "Run the Redfish service (HTTPS on 127.0.0.1:8443 by default, a self-signed "
            "certificate made on first start, state in SQLite under the state directory). "
            f"Every setting can also come from the YAML --config file or from an "
            f"environment variable {ENV_PREFIX}<SETTING>, e.g. {ENV_PREFIX}ADMIN_PASSWORD; "
            "flags win over the environment, which wins over the file."
        ),
    )
    serve.add_argument("--config", type=Path, help="YAML configuration file")
    serve.add_argument("--bind", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8443)")
    serve.add_argument("--state-dir", type=Path,
                       help="directory for the SQLite state and the TLS certificate "
                            "(default $XDG_STATE_HOME/redfish-composer)")
    serve.add_argument("--admin-password",
                       help="password of the 'admin' account when it is first created "
                            f"(or {ENV_PREFIX}ADMIN_PASSWORD); without it one is generated "
                            "and printed once")
    serve.add_argument("--insecure-http", action="store_true", default=None,
                       help="serve plain HTTP (development on loopback only)")
    serve.add_argument("--allow-insecure-remote", action="store_true", default=None,
                       help="permit --insecure-http on a non-loopback address")
    serve.add_argument("--tls-cert", type=Path, help="PEM certificate (default: self-signed)")
    serve.add_argument("--tls-key", type=Path, help="PEM private key for --tls-cert")
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    serve.add_argument("--rack", type=Path,
                       help="YAML description of the simulated rack (hosts, switches, device "
                            "groups, sleds, bind_latency_s); default: the built-in rack")
    serve.add_argument("--mockup", type=Path,
                       help="serve a DSP2043 mockup folder live instead of the simulated rack "
                            "(loaded into an empty state directory at first start)")
    mockup_cli.add_parser(sub)
    return parser


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(256)
    except OSError:
        sock.close()
        raise
    return sock


def _fail(message: str) -> int:
    print(f"redfish-composer: error: {message}", file=sys.stderr)
    return 2


def _prepare_state_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as e:
        raise ConfigError(f"cannot create state directory {path}: {e.strerror}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"state directory {path} is not writable")


def _print_admin_password(password: str) -> None:
    # Printed once, on the terminal, never into the logs.
    print(
        f"redfish-composer: created account 'admin' with password: {password}\n"
        "redfish-composer: this is shown only once; change it with a PATCH of "
        "/redfish/v1/AccountService/Accounts/1",
        file=sys.stderr,
        flush=True,
    )


def _driver(settings: Settings) -> SimulatedDriver:
    if settings.rack is None:
        return SimulatedDriver()
    rack = load_yaml_mapping(settings.rack, "rack file")
    try:
        return SimulatedDriver(RackSpec.model_validate(rack))
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "rack"
        raise ConfigError(f"invalid rack file {settings.rack}: {where}: {first['msg']}") from None


async def _serve(settings: Settings, driver: SimulatedDriver | MockupDriver) -> int:
    ssl_context = None
    if not settings.insecure_http:
        cert = settings.tls_cert or settings.state_dir / "tls-cert.pem"
        key = settings.tls_key or settings.state_dir / "tls-key.pem"
        if settings.tls_cert is None and ensure_self_signed(cert, key, [settings.bind]):
            log.info("created a self-signed certificate", extra={"cert": str(cert)})
        try:
            ssl_context = server_context(cert, key)
        except (OSError, ValueError) as e:
            return _fail(f"cannot load TLS certificate {cert}: {e}")
    # Bind before the application starts, so a busy port fails before anything (the
    # first-start admin password, for one) is created.
    try:
        sock = _listen(settings.bind, settings.port)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            return _fail(f"port {settings.port} on {settings.bind} is already in use")
        return _fail(f"cannot listen on {settings.bind}:{settings.port}: {e.strerror}")
    app = create_app(settings, on_admin_password=_print_admin_password, driver=driver)
    runner = web.AppRunner(
        app,
        access_log_class=logs.AccessLogger,
        max_line_size=16384,
        max_field_size=16384,
        handle_signals=False,
    )
    await runner.setup()
    site = web.SockSite(runner, sock, ssl_context=ssl_context)
    await site.start()
    host, port = sock.getsockname()[:2]
    log.info("listening", extra={"url": f"{settings.scheme}://{host}:{port}"})
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    await runner.cleanup()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        flags = {
            "bind": args.bind,
            "port": args.port,
            "state_dir": args.state_dir,
            "admin_password": args.admin_password,
            "insecure_http": args.insecure_http,
            "allow_insecure_remote": args.allow_insecure_remote,
            "tls_cert": args.tls_cert,
            "tls_key": args.tls_key,
            "log_level": args.log_level,
            "rack": args.rack,
            "mockup": args.mockup,
        }
        try:
            settings = load_settings(args.config, flags)
            if settings.insecure_http and not _is_loopback(settings.bind) \
                    and not settings.allow_insecure_remote:
                raise ConfigError(
                    f"--insecure-http refuses to listen on non-loopback {settings.bind}; "
                    "add --allow-insecure-remote to force it"
                )
            _prepare_state_dir(settings.state_dir)
            if settings.mockup is not None:
                if settings.rack is not None:
                    raise ConfigError("--mockup and --rack exclude each other")
                try:
                    mockup_root(settings.mockup)
                except NotAMockup as e:
                    raise ConfigError(f"--mockup: {e}") from None
                driver = MockupDriver()
            else:
                driver = _driver(settings)
        except ConfigError as e:
            return _fail(str(e))
        logs.configure(settings.log_level)
        try:
            return asyncio.run(_serve(settings, driver))
        except KeyboardInterrupt:
            return 0
    if args.command == "mockup":
        return mockup_cli.run(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
