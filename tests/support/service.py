"""A real ``redfish-composer serve`` subprocess on loopback, for tests that need one."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ADMIN_PASSWORD = "Composer-Adm1n-pw"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def insecure_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


@dataclass
class ServiceProcess:
    state_dir: Path
    port: int = field(default_factory=free_port)
    password: str = ADMIN_PASSWORD
    extra_args: list[str] = field(default_factory=list)
    proc: subprocess.Popen | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def cert(self) -> Path:
        return self.state_dir / "tls-cert.pem"

    def start(self, timeout: float = 30) -> ServiceProcess:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.state_dir / "service.log"
        log = open(self.log_path, "ab")
        env = {k: v for k, v in os.environ.items() if not k.startswith("REDFISH_COMPOSER_")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "redfish_service", "serve",
             "--state-dir", str(self.state_dir), "--port", str(self.port),
             "--admin-password", self.password, "--log-level", "warning", *self.extra_args],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"service exited: {self.log_path.read_text()[-2000:]}")
            try:
                self.get("/redfish/v1/", auth=False)
                return self
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.1)
        raise RuntimeError("service did not answer in time")

    def request(self, method: str, path: str, body=None, *, auth=True, headers=None,
                user: str = "admin", password: str | None = None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if auth:
            import base64
            cred = f"{user}:{password or self.password}".encode()
            req.add_header("Authorization", "Basic " + base64.b64encode(cred).decode())
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, context=insecure_context(), timeout=30) as resp:
                raw = resp.read()
                return resp.status, dict(resp.headers), json.loads(raw) if raw else None
        except urllib.error.HTTPError as e:
            raw = e.read()
            return e.code, dict(e.headers), json.loads(raw) if raw else None

    def get(self, path: str, *, auth=True):
        return self.request("GET", path, auth=auth)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> int | None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode if self.proc else None
