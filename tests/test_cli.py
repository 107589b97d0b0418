"""``python -m redfish_service serve``: failing clearly, starting, stopping, TLS, secrets."""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from cryptography import x509

from .support.service import ADMIN_PASSWORD, ServiceProcess, free_port, insecure_context

pytestmark = pytest.mark.slow

ERROR_PREFIX = "redfish-composer: error: "
QUICK = 15.0  # seconds a failing start may take
SERVE_FLAGS = ["--config", "--bind", "--port", "--state-dir", "--admin-password",
               "--insecure-http", "--allow-insecure-remote", "--tls-cert", "--tls-key",
               "--log-level"]


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("REDFISH_COMPOSER_")}


def cli(*args: str, cwd: Path, timeout: float = 60) -> tuple[subprocess.CompletedProcess, float]:
    """Run the CLI to its end; returns the result and how long it took."""
    start = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, "-m", "redfish_service", *args], cwd=cwd,
                              env=clean_env(), capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"redfish-composer {' '.join(args)} still running after "
                             f"{timeout}s; stderr: {e.stderr!r}") from None
    return proc, time.monotonic() - start


def is_json_log(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def assert_clean_failure(proc: subprocess.CompletedProcess, took: float, *mentions: str) -> str:
    """Non-zero, quick, one ``redfish-composer: error:`` line, nothing else but JSON logs."""
    report = (f"exit {proc.returncode} after {took:.1f}s\n"
              f"stderr:\n{proc.stderr}\nstdout:\n{proc.stdout}")
    assert proc.returncode != 0, report
    assert took < QUICK, report
    assert "Traceback" not in proc.stderr + proc.stdout, report
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(ERROR_PREFIX)]
    others = [line for line in lines
              if not line.startswith(ERROR_PREFIX) and not is_json_log(line)]
    assert len(errors) == 1, f"expected exactly one error line\n{report}"
    assert not others, \
        f"stderr has lines besides the one error line (and JSON logs): {others}\n{report}"
    assert lines[-1] == errors[0], f"the error line should be the last word\n{report}"
    for text in mentions:
        assert text in errors[0], f"the error line does not mention {text!r}\n{report}"
    return errors[0]


# --------------------------------------------------------------------------------------
# failing clearly
# --------------------------------------------------------------------------------------
BAD_CONFIGS = {
    # name: (file content, what the error line must name)
    "unknown-key": ("port: 8443\nno_such_setting: 1\n", "no_such_setting"),
    "invalid-yaml": ("port: [1, 2\nbind: 127.0.0.1\n", "invalid-yaml.yaml"),
    "wrong-type": ("max_sessions: lots\n", "max_sessions"),
    "wrong-nested-type": ("accounts:\n  lockout_threshold: many\n", "lockout_threshold"),
    "not-a-mapping": ("- port\n- 8443\n", "not-a-mapping.yaml"),
}


@pytest.mark.parametrize("name", sorted(BAD_CONFIGS))
def test_bad_config_file(tmp_path, name):
    content, mention = BAD_CONFIGS[name]
    config = tmp_path / f"{name}.yaml"
    config.write_text(content)
    proc, took = cli("serve", "--config", str(config), "--state-dir", str(tmp_path / "state"),
                     "--port", str(free_port()), "--admin-password", ADMIN_PASSWORD,
                     cwd=tmp_path)
    assert_clean_failure(proc, took, mention)


def test_missing_config_file(tmp_path):
    proc, took = cli("serve", "--config", str(tmp_path / "absent.yaml"),
                     "--state-dir", str(tmp_path / "state"), "--port", str(free_port()),
                     cwd=tmp_path)
    assert_clean_failure(proc, took, "absent.yaml")


def test_busy_port(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        proc, took = cli("serve", "--state-dir", str(tmp_path / "state"), "--port", str(port),
                         "--admin-password", ADMIN_PASSWORD, cwd=tmp_path)
    assert_clean_failure(proc, took, str(port))


def test_busy_port_on_first_start_does_not_spend_the_generated_password(tmp_path):
    """A start that fails must not be the one that shows the one-time admin password."""
    state = tmp_path / "state"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        proc, took = cli("serve", "--state-dir", str(state), "--port", str(port), cwd=tmp_path)
    assert_clean_failure(proc, took, str(port))
    # the start that works shows it, and it logs in
    svc = Running(tmp_path, "--state-dir", str(state))
    try:
        svc.wait_ready()
        shown = re.findall(r"password:\s*(\S+)", svc.stderr())
        assert len(shown) == 1, f"no generated password on the first real start:\n{svc.stderr()}"
        assert login(svc, shown[0]) == 201
    finally:
        svc.kill()


def test_unwritable_state_dir(tmp_path):
    regular = tmp_path / "regular-file"
    regular.write_text("not a directory\n")
    state = regular / "state"
    proc, took = cli("serve", "--state-dir", str(state), "--port", str(free_port()),
                     "--admin-password", ADMIN_PASSWORD, cwd=tmp_path)
    assert_clean_failure(proc, took, str(state))


def test_insecure_http_refuses_non_loopback(tmp_path):
    proc, took = cli("serve", "--insecure-http", "--bind", "0.0.0.0",
                     "--state-dir", str(tmp_path / "state"), "--port", str(free_port()),
                     "--admin-password", ADMIN_PASSWORD, cwd=tmp_path)
    assert_clean_failure(proc, took, "--allow-insecure-remote")
    assert not (tmp_path / "state" / "state.sqlite3").exists(), "it started anyway"


def test_help_mentions_every_flag(tmp_path):
    proc, _ = cli("serve", "--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    missing = [flag for flag in SERVE_FLAGS if flag not in proc.stdout]
    assert not missing, f"serve --help does not mention {missing}:\n{proc.stdout}"
    top, _ = cli("--help", cwd=tmp_path)
    assert top.returncode == 0 and "serve" in top.stdout, top.stdout + top.stderr


# --------------------------------------------------------------------------------------
# a running service
# --------------------------------------------------------------------------------------
class Running:
    """``serve`` in the background, stderr to a file."""

    def __init__(self, tmp_path: Path, *args: str, scheme: str = "https") -> None:
        self.port = free_port()
        self.scheme = scheme
        self.stderr_path = tmp_path / f"stderr-{self.port}.log"
        self._stderr = self.stderr_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "redfish_service", "serve", "--port", str(self.port), *args],
            cwd=tmp_path, env=clean_env(), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=self._stderr,
        )

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def stderr(self) -> str:
        self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")

    def request(self, method: str, path: str, body=None, headers=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json",
                                              **(headers or {})})
        ctx = insecure_context() if self.scheme == "https" else None
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
                return resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited {self.proc.returncode}:\n{self.stderr()}")
            try:
                if self.request("GET", "/redfish/v1/")[0] == 200:
                    return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise AssertionError(f"serve did not answer within {timeout}s:\n{self.stderr()}")

    def terminate(self, timeout: float = 10) -> tuple[int, float]:
        start = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"no exit within {timeout}s of SIGTERM:\n{self.stderr()}") \
                from None
        return code, time.monotonic() - start

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._stderr.close()


@pytest.fixture
def running(tmp_path):
    started: list[Running] = []

    def start(*args: str, scheme: str = "https") -> Running:
        svc = Running(tmp_path, *args, scheme=scheme)
        started.append(svc)
        svc.wait_ready()
        return svc

    yield start
    for svc in started:
        svc.kill()


def test_sigterm_exits_zero_promptly(tmp_path, running):
    svc = running("--state-dir", str(tmp_path / "state"), "--admin-password", ADMIN_PASSWORD)
    code, took = svc.terminate()
    assert code == 0, svc.stderr()
    assert took < 5, f"SIGTERM took {took:.1f}s"
    assert "Traceback" not in svc.stderr()


def login(svc: Running, password: str) -> int:
    status, _, _ = svc.request("POST", "/redfish/v1/SessionService/Sessions",
                               {"UserName": "admin", "Password": password})
    return status


def test_generated_admin_password_shown_once_never_logged(tmp_path, running):
    state = tmp_path / "state"
    svc = running("--state-dir", str(state), "--log-level", "debug")
    text = svc.stderr()
    shown = re.findall(r"password:\s*(\S+)", text)
    assert len(shown) == 1, f"expected the generated password printed once:\n{text}"
    password = shown[0]
    assert login(svc, password) == 201
    assert login(svc, password + "x") == 401
    token = base64.b64encode(f"admin:{password}".encode()).decode()
    assert svc.request("GET", "/redfish/v1/AccountService",
                       headers={"Authorization": f"Basic {token}"})[0] == 200
    code, _ = svc.terminate()
    assert code == 0
    text = svc.stderr()
    json_lines = [line for line in text.splitlines() if is_json_log(line)]
    assert json_lines, f"no structured log lines at --log-level debug:\n{text}"
    leaking = [line for line in json_lines if password in line]
    assert not leaking, f"the admin password is in the structured logs: {leaking}"
    assert text.count(password) == 1, "the password is printed more than once"
    non_json = [line for line in text.splitlines() if line.strip() and not is_json_log(line)]
    assert all(line.startswith("redfish-composer: ") for line in non_json), non_json

    # second start on the same state: nothing printed, the password still works
    again = running("--state-dir", str(state), "--log-level", "debug")
    assert login(again, password) == 201
    code, _ = again.terminate()
    assert code == 0
    text = again.stderr()
    assert password not in text
    assert not re.search(r"password:\s*\S", text), f"a password was printed again:\n{text}"


def test_self_signed_certificate(tmp_path, running):
    state = tmp_path / "state"
    svc = running("--state-dir", str(state), "--admin-password", ADMIN_PASSWORD)
    cert_file = state / "tls-cert.pem"
    assert cert_file.is_file()
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    assert cert.version == x509.Version.v3
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in san.get_values_for_type(x509.IPAddress)
    # the key is not readable by others
    key_files = [p for p in state.iterdir() if "key" in p.name]
    assert key_files, list(state.iterdir())
    for key in key_files:
        assert key.stat().st_mode & 0o077 == 0, f"{key} mode {oct(key.stat().st_mode)}"
    # it is the certificate the service presents, and it verifies for 127.0.0.1
    served = ssl.get_server_certificate(("127.0.0.1", svc.port), timeout=10)
    assert x509.load_pem_x509_certificate(served.encode()) == cert
    ctx = ssl.create_default_context(cafile=str(cert_file))
    with socket.create_connection(("127.0.0.1", svc.port), timeout=10) as sock, \
            ctx.wrap_socket(sock, server_hostname="127.0.0.1") as tls:
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
    # kept across restarts
    svc.terminate()
    again = running("--state-dir", str(state), "--admin-password", ADMIN_PASSWORD)
    assert x509.load_pem_x509_certificate(cert_file.read_bytes()) == cert
    served = ssl.get_server_certificate(("127.0.0.1", again.port), timeout=10)
    assert x509.load_pem_x509_certificate(served.encode()) == cert


def test_insecure_http_on_loopback_serves_plain_http(tmp_path, running):
    svc = running("--state-dir", str(tmp_path / "state"), "--admin-password", ADMIN_PASSWORD,
                  "--insecure-http", "--bind", "127.0.0.1", scheme="http")
    status, headers, body = svc.request("GET", "/redfish/v1/")
    assert status == 200
    assert json.loads(body)["@odata.id"] == "/redfish/v1/"
    assert headers.get("OData-Version") == "4.0"
    # and it is not TLS
    with pytest.raises((ssl.SSLError, OSError)):
        ssl.get_server_certificate(("127.0.0.1", svc.port), timeout=5)


def test_normal_use_logs_no_warnings(tmp_path, running):
    """A healthy service answering ordinary requests has nothing to warn about."""
    svc = running("--state-dir", str(tmp_path / "state"), "--admin-password", ADMIN_PASSWORD,
                  "--log-level", "info")
    for _ in range(3):  # new connections each time
        status, headers, _ = svc.request("POST", "/redfish/v1/SessionService/Sessions",
                                         {"UserName": "admin", "Password": ADMIN_PASSWORD})
        assert status == 201
        auth = {"X-Auth-Token": headers["X-Auth-Token"]}
        assert svc.request("GET", "/redfish/v1/AccountService", headers=auth)[0] == 200
        assert svc.request("DELETE", headers["Location"], headers=auth)[0] in (200, 204)
    code, _ = svc.terminate()
    assert code == 0
    records = [json.loads(line) for line in svc.stderr().splitlines() if is_json_log(line)]
    assert any(r.get("event") == "request" for r in records), "no access log lines"
    loud = [r for r in records if r.get("level") in ("warning", "error", "critical")]
    assert not loud, "warnings logged during normal use:\n" + "\n".join(map(str, loud[:5]))


RACK = """
name: tiny
bind_latency_s: 0
hosts: [{id: h1}, {id: h2}]
switches: [{id: p1, protocol: PCIe, hosts: [h1, h2]}]
devices:
  - switch: p1
    prefix: gpu
    count: 2
    model: {kind: GPU, manufacturer: Acme, model: A1, vendor_id: "0x10de", device_id: "0x1234"}
sleds: [{id: s1, switch: p1}]
"""


@pytest.mark.slow
def test_rack_file_describes_the_simulated_fabric(tmp_path):
    rack = tmp_path / "rack.yaml"
    rack.write_text(RACK)
    svc = ServiceProcess(tmp_path / "state", extra_args=["--rack", str(rack)]).start()
    try:
        blocks = svc.get("/redfish/v1/CompositionService/ResourceBlocks")[2]
        names = sorted(m["@odata.id"].rsplit("/", 1)[1] for m in blocks["Members"])
        assert names == ["gpu1", "gpu2", "s1", "system-h1", "system-h2"]
        assert svc.get("/redfish/v1/Systems/h2")[0] == 200
    finally:
        svc.stop()
    # --log-level warning (ServiceProcess) silences the per-request access log too
    assert '"request"' not in svc.log_path.read_text()


@pytest.mark.slow
@pytest.mark.parametrize(("content", "mention"), [
    ("hosts: [{idd: 1}]", "hosts.0.id"),
    ("hosts: [{id: h1}]\nbind_latency_s: -1", "bind_latency_s"),
    ("- just\n- a list", "must hold a mapping"),
    ("hosts: [oops", "not valid YAML"),
])
def test_bad_rack_file_is_one_line(tmp_path, content, mention):
    rack = tmp_path / "rack.yaml"
    rack.write_text(content)
    proc, took = cli("serve", "--rack", str(rack), "--state-dir", str(tmp_path / "s"),
                     "--port", str(free_port()), cwd=tmp_path)
    line = assert_clean_failure(proc, took, "rack")
    assert mention in line
