"""GET performance of the Redfish service against a trivial aiohttp + orjson baseline.

One run: start the service (fresh state directory, HTTPS, free loopback port), log in and
grow the account collection to --members members; then start the baseline server
(benchmarks/baseline_server.py, same certificate) and one service process per --parser
mode (each on a copy of that state); load them with wrk in alternating rounds (baseline
GET, service root, two member resources); time sequential GETs of the collection with
$expand; print a table with the targets, optionally write JSON (--out).

    python benchmarks/bench_get.py                      # the service as shipped
    python benchmarks/bench_get.py --parser c           # with aiohttp's C parser (llhttp)
    python benchmarks/bench_get.py --parser python      # AIOHTTP_NO_EXTENSIONS=1 (service)
    python benchmarks/bench_get.py --parser all --repeat 3 --out /tmp/bench.json

Everything runs on 127.0.0.1 and stops by itself; the subprocesses are stopped on exit,
error, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import resource
import secrets
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from yarl import URL

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
HOST = "127.0.0.1"

ROOT = "/redfish/v1/"
ACCOUNTS = "/redfish/v1/AccountService/Accounts"
SESSIONS = "/redfish/v1/SessionService/Sessions"
MANAGER = "/redfish/v1/Managers/Composer"
EXPAND = "$expand=.($levels=1)"

TARGET_RATIO = 0.6  # service req/s >= 0.6 x baseline req/s
TARGET_P99_MS = 20.0  # p99 of the loaded GETs
TARGET_EXPAND_P50_MS = 50.0  # p50 of $expand over the whole collection

# wrk prints times as 12.34us / 1.23ms / 1.23s / 1.23m / 1.23h, counts with k/M/G.
_TIME_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_METRIC = {"": 1.0, "k": 1e3, "M": 1e6, "G": 1e9}
_BYTE_UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}


class BenchError(Exception):
    """Something went wrong that makes the figures meaningless; reported as one line."""


# -- wrk --------------------------------------------------------------------------------


def time_ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text.strip())
    if not m:
        raise ValueError(f"not a wrk time: {text!r}")
    return float(m.group(1)) * _TIME_UNITS_MS[m.group(2)]


def metric(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)([kMG]?)", text.strip())
    if not m:
        raise ValueError(f"not a wrk number: {text!r}")
    return float(m.group(1)) * _METRIC[m.group(2)]


def parse_wrk(out: str) -> dict[str, Any]:
    """The figures of one `wrk --latency` report (wrk 4.x text output)."""
    res: dict[str, Any] = {}
    m = re.search(r"(\d+) requests in ([\d.]+(?:us|ms|s|m|h)),\s*([\d.]+)([KMGT]?B) read", out)
    if m:
        res["requests"] = int(m.group(1))
        res["elapsed_s"] = time_ms(m.group(2)) / 1e3
        res["bytes_read"] = int(float(m.group(3)) * _BYTE_UNITS[m.group(4)])
    m = re.search(r"Requests/sec:\s*([\d.]+[kMG]?)", out)
    if m:
        res["rps"] = metric(m.group(1))
    elif res.get("elapsed_s"):
        res["rps"] = res["requests"] / res["elapsed_s"]
    m = re.search(r"^\s*Latency\s+(\S+)\s+(\S+)\s+(\S+)", out, re.M)
    if m:
        with contextlib.suppress(ValueError):
            res["mean_ms"], res["stdev_ms"], res["max_ms"] = (time_ms(g) for g in m.groups())
    for pct, value in re.findall(r"^\s*(\d+(?:\.\d+)?)%\s+([\d.]+(?:us|ms|s|m|h))\s*$", out, re.M):
        res[f"p{float(pct):g}_ms"] = time_ms(value)
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    res["socket_errors"] = dict(zip(("connect", "read", "write", "timeout"),
                                    map(int, m.groups()), strict=True)) if m else {}
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    res["non_2xx"] = int(m.group(1)) if m else 0
    if "rps" not in res or "p50_ms" not in res or "p99_ms" not in res:
        tail = out.strip().splitlines()[-6:]
        raise BenchError("cannot read wrk's report:\n  " + "\n  ".join(tail))
    return res


def run_wrk(wrk: str, url: str, *, seconds: float, connections: int, threads: int,
            headers: dict[str, str]) -> dict[str, Any]:
    cmd = [wrk, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s",
           "--latency", "--timeout", "5s"]
    for name, value in headers.items():
        cmd += ["-H", f"{name}: {value}"]
    cmd.append(url)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30,
                              check=False)
    except subprocess.TimeoutExpired:
        raise BenchError(f"wrk did not finish: {' '.join(cmd[:-1])} {url}") from None
    if proc.returncode != 0:
        raise BenchError(f"wrk failed ({proc.returncode}): {proc.stderr.strip()[:300]}")
    res = parse_wrk(proc.stdout)
    errors = sum(res["socket_errors"].values())
    if res["non_2xx"] or errors:
        res["warning"] = f"{res['non_2xx']} non-2xx responses, {errors} socket errors"
    return res


# -- subprocesses -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@dataclass
class Server:
    name: str
    proc: subprocess.Popen
    base: str
    log_path: Path

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


def spawn(name: str, cmd: list[str], port: int, env: dict[str, str], log_path: Path) -> Server:
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    return Server(name, proc, f"https://{HOST}:{port}", log_path)


def service_env(parser: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("AIOHTTP_NO_EXTENSIONS", None)
    if parser == "python":
        env["AIOHTTP_NO_EXTENSIONS"] = "1"
    return env


def parser_in_use(server: Server) -> str:
    """What service_launcher.py reported: the parser and header writer aiohttp really uses."""
    found = re.findall(r"bench-launcher: parser=(\S+) writer=(\S+)",
                       server.log_path.read_text(errors="replace"))
    if not found:
        return "unknown"
    parser, writer = found[-1]
    kind = "C" if "._http_parser." in parser else "Python"
    wkind = "C" if "_http_writer" in writer else "Python"
    return f"{kind} parser {parser}, {wkind} header writer"


def start_service(state: Path, password: str, parser: str, log_level: str | None,
                  label: str) -> Server:
    """The service through service_launcher.py (``python -m redfish_service`` + a report
    of the parser in use; ``c`` puts the C parser back if the service replaced it)."""
    port = free_port()
    cmd = [sys.executable, str(HERE / "service_launcher.py")]
    if parser == "c":
        cmd.append("--bench-force-c-parser")
    cmd += ["serve", "--state-dir", str(state), "--port", str(port), "--bind", HOST,
            "--admin-password", password]
    if log_level:
        cmd += ["--log-level", log_level]
    return spawn(f"service ({label})", cmd, port, service_env(parser),
                 state.parent / f"service-{label}.log")


def start_baseline(state: Path) -> Server:
    port = free_port()
    cmd = [sys.executable, str(HERE / "baseline_server.py"), "--port", str(port),
           "--cert", str(state / "tls-cert.pem"), "--key", str(state / "tls-key.pem")]
    return spawn("baseline", cmd, port, service_env("c"), state.parent / "baseline.log")


# -- HTTP client work -------------------------------------------------------------------


def client_ssl(cert: Path) -> ssl.SSLContext:
    # The service's self-signed certificate names 127.0.0.1, so it verifies as its own CA.
    return ssl.create_default_context(cafile=str(cert))


def session(ctx: ssl.SSLContext, limit: int = 1) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=ctx, limit=limit),
        timeout=aiohttp.ClientTimeout(total=30),
    )


async def wait_ready(server: Server, ctx: ssl.SSLContext, within_s: float = 30.0) -> None:
    deadline = time.monotonic() + within_s
    async with session(ctx) as http:
        while True:
            if server.proc.poll() is not None:
                raise BenchError(f"{server.name} exited ({server.proc.returncode}):\n"
                                 f"{server.log_tail()}")
            with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                async with http.get(server.base + "/redfish") as r:
                    await r.read()
                    if r.status == 200:
                        return
            if time.monotonic() > deadline:
                raise BenchError(f"{server.name} not ready after {within_s:.0f} s:\n"
                                 f"{server.log_tail()}")
            await asyncio.sleep(0.1)


def wait_for_file(path: Path, server: Server, within_s: float = 30.0) -> None:
    deadline = time.monotonic() + within_s
    while not path.exists():
        if server.proc.poll() is not None or time.monotonic() > deadline:
            raise BenchError(f"{server.name} made no certificate {path}:\n{server.log_tail()}")
        time.sleep(0.1)


async def login(base: str, ctx: ssl.SSLContext, password: str) -> str:
    async with session(ctx) as http:
        body = {"UserName": "admin", "Password": password}
        async with http.post(base + SESSIONS, json=body) as r:
            await r.read()
            token = r.headers.get("X-Auth-Token")
            if r.status != 201 or not token:
                raise BenchError(f"login failed: HTTP {r.status}")
            return token


async def probe(base: str, path: str, ctx: ssl.SSLContext, token: str | None) -> int:
    """GET once; the body size, or an error if the answer is not 200."""
    headers = {"X-Auth-Token": token} if token else {}
    async with session(ctx) as http, http.get(URL(base + path, encoded=True),
                                              headers=headers) as r:
        data = await r.read()
        if r.status != 200:
            raise BenchError(f"GET {path}: HTTP {r.status}: {data[:200]!r}")
        return len(data)


async def member_count(base: str, ctx: ssl.SSLContext, token: str) -> int:
    async with session(ctx) as http, http.get(base + ACCOUNTS,
                                              headers={"X-Auth-Token": token}) as r:
        doc = await r.json()
        return len(doc["Members"])


async def grow_accounts(base: str, ctx: ssl.SSLContext, token: str, want: int,
                        concurrency: int, budget_s: float) -> dict[str, Any]:
    """POST ReadOnly accounts until the collection has ``want`` members or the budget ends."""
    have = await member_count(base, ctx, token)
    todo = max(0, want - have)
    created = 0
    failures: Counter[str] = Counter()
    t0 = time.monotonic()
    deadline = t0 + budget_s
    next_index = iter(range(todo))
    headers = {"X-Auth-Token": token}

    async def worker(http: aiohttp.ClientSession) -> None:
        nonlocal created
        for i in next_index:
            if time.monotonic() > deadline or sum(failures.values()) >= 10:
                return
            body = {"UserName": f"bench{i:05d}", "Password": f"bench-pw-{i:05d}",
                    "RoleId": "ReadOnly"}
            try:
                async with http.post(base + ACCOUNTS, json=body, headers=headers) as r:
                    await r.read()
                    if r.status == 201:
                        created += 1
                        if created % 100 == 0:
                            print(f"  {created}/{todo} accounts "
                                  f"({time.monotonic() - t0:.0f} s)", flush=True)
                    else:
                        failures[f"HTTP {r.status}"] += 1
            except (TimeoutError, aiohttp.ClientError) as e:
                failures[type(e).__name__] += 1

    async with session(ctx, limit=concurrency) as http:
        await asyncio.gather(*(worker(http) for _ in range(max(1, concurrency))))
    elapsed = time.monotonic() - t0
    members = await member_count(base, ctx, token)
    if failures and not created:
        raise BenchError(f"creating accounts failed: {dict(failures)}")
    return {
        "requested_members": want,
        "members": members,
        "created": created,
        "seconds": round(elapsed, 1),
        "per_account_ms": round(1e3 * elapsed / created, 1) if created else None,
        "budget_exhausted": members < want,
        "failures": dict(failures),
    }


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    rank = max(1, -(-len(sorted_values) * pct // 100))
    return sorted_values[int(rank) - 1]


async def sequential_gets(base: str, path: str, ctx: ssl.SSLContext, token: str,
                          count: int, warmup: int, check_expanded: int | None
                          ) -> dict[str, Any]:
    """``count`` GETs one after another on one kept-alive connection, client-timed."""
    url = URL(base + path, encoded=True)
    headers = {"X-Auth-Token": token}
    times: list[float] = []
    size = 0
    async with session(ctx) as http:
        for i in range(warmup + count):
            t0 = time.perf_counter()
            async with http.get(url, headers=headers) as r:
                data = await r.read()
            dt = time.perf_counter() - t0
            if r.status != 200:
                raise BenchError(f"GET {path}: HTTP {r.status}: {data[:200]!r}")
            if i == 0:
                size = len(data)
                if check_expanded is not None:
                    members = json.loads(data)["Members"]
                    expanded = sum(1 for m in members if "UserName" in m)
                    if len(members) != check_expanded or expanded != len(members):
                        raise BenchError(f"GET {path}: {len(members)} members, {expanded} "
                                         f"expanded, expected {check_expanded}")
            if i >= warmup:
                times.append(dt * 1e3)
    times.sort()
    return {
        "requests": count,
        "rps": 1e3 / statistics.fmean(times),
        "p50_ms": percentile(times, 50),
        "p99_ms": percentile(times, 99),
        "mean_ms": statistics.fmean(times),
        "min_ms": times[0],
        "max_ms": times[-1],
        "bytes": size,
    }


# -- profiling (optional) ---------------------------------------------------------------


def _short(frame: str) -> str:
    """``f (/abs/path/site-packages/aiohttp/x.py:12)`` -> ``f (aiohttp/x.py:12)``."""
    name, _, where = frame.partition(" (")
    for prefix in (str(REPO) + "/", *sorted({p + "/" for p in sys.path if p}, key=len,
                                            reverse=True)):
        if where.startswith(prefix):
            where = where[len(prefix):]
            break
    return f"{name} ({where}" if where else name


def summarize_profile(raw: Path, top: int) -> dict[str, Any]:
    """Where the event-loop thread spends its samples, from py-spy's collapsed stacks."""
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    buckets: Counter[str] = Counter()
    total = other_threads = idle = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        frames = [_short(f) for f in stack.split(";")]
        if frames[0].startswith("Thread._bootstrap"):
            other_threads += int(n)  # thread-pool / SQLite threads, mostly parked
            continue
        if frames[-1].startswith(("EpollSelector.select", "BaseSelector.select")):
            idle += int(n)  # waiting for the client (sequential load)
            continue
        total += int(n)
        own[frames[-1]] += int(n)
        for f in set(frames):
            incl[f] += int(n)
        joined = ";".join(frames)
        if "AccessLogger.log" in joined:
            buckets["access log (redfish_service/logs.py + logging)"] += int(n)
        elif "redfish_service/protocol/middleware.py" in joined:
            buckets["service middlewares + handler"] += int(n)
        else:
            buckets["aiohttp, asyncio, TLS, sockets (the rest)"] += int(n)

    def pct(n: int) -> float:
        return round(100 * n / total, 1) if total else 0.0

    skip = ("<module> (", "main (redfish_service/cli.py")
    ours = [(f, pct(n)) for f, n in incl.most_common()
            if "redfish_service/" in f and not f.startswith(skip)]
    return {
        "samples": total,
        "other_thread_samples": other_threads,
        "idle_samples": idle,
        "buckets_pct": [(b, pct(n)) for b, n in buckets.most_common()],
        "self_pct": [(f, pct(n)) for f, n in own.most_common(top)],
        "service_inclusive_pct": ours[:top],
    }


def profile_run(py_spy: str, server: Server, out_dir: Path, label: str, seconds: float,
                drive: Callable[[float], object]) -> dict[str, Any]:
    """Record ``server`` with py-spy while ``drive(duration_s)`` loads it."""
    raw = out_dir / f"{label}.txt"
    spy = subprocess.Popen(
        [py_spy, "record", "-p", str(server.proc.pid), "-d", str(max(1, round(seconds))),
         "-r", "250", "--function", "--full-filenames", "-f", "raw", "-o", str(raw)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        drive(round(seconds) + 2)
    finally:
        try:
            spy.wait(timeout=seconds + 30)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait()
    if not raw.exists():
        return {"error": "py-spy wrote nothing (ptrace not permitted?)"}
    return {"raw": str(raw), **summarize_profile(raw, 15)}


def wrk_driver(cfg: Config, url: str, token: str | None) -> Callable[[float], object]:
    headers = {"X-Auth-Token": token} if token else {}
    return lambda s: run_wrk(cfg.wrk, url, seconds=s, connections=cfg.connections,
                             threads=cfg.threads, headers=headers)


async def sequential_for(base: str, path: str, ctx: ssl.SSLContext, token: str,
                         seconds: float) -> None:
    url = URL(base + path, encoded=True)
    end = time.monotonic() + seconds
    async with session(ctx) as http:
        while time.monotonic() < end:
            async with http.get(url, headers={"X-Auth-Token": token}) as r:
                await r.read()


# -- the run ----------------------------------------------------------------------------


@dataclass
class Config:
    members: int
    duration: float
    repeat: int
    warmup: float
    connections: int
    threads: int
    expand_requests: int
    create_concurrency: int
    create_budget: float
    log_level: str | None
    wrk: str
    py_spy: str | None
    profile_dir: Path | None
    profile_seconds: float


@dataclass
class Results:
    meta: dict[str, Any] = field(default_factory=dict)
    setup: dict[str, Any] = field(default_factory=dict)
    baseline: dict[str, Any] = field(default_factory=dict)
    modes: dict[str, dict[str, Any]] = field(default_factory=dict)


def cpu_seconds(pid: int) -> tuple[float, float, float, float]:
    """CPU seconds so far: busy (whole machine), process ``pid``, our waited children
    (wrk), and stolen by the hypervisor."""
    tick = os.sysconf("SC_CLK_TCK")
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal ...
    busy = sum(fields[:3]) + sum(fields[5:7])
    steal = fields[7] if len(fields) > 7 else 0
    with open(f"/proc/{pid}/stat") as f:
        after_comm = f.read().rsplit(")", 1)[1].split()
    proc = int(after_comm[11]) + int(after_comm[12])  # utime, stime
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return busy / tick, proc / tick, children.ru_utime + children.ru_stime, steal / tick


def measure_once(cfg: Config, url: str, token: str | None, server: Server) -> dict[str, Any]:
    """One measured wrk run, with the CPU shares of the server, wrk and everything else."""
    headers = {"X-Auth-Token": token} if token else {}
    t0, before = time.monotonic(), cpu_seconds(server.proc.pid)
    res = run_wrk(cfg.wrk, url, seconds=cfg.duration, connections=cfg.connections,
                  threads=cfg.threads, headers=headers)
    wall, after = time.monotonic() - t0, cpu_seconds(server.proc.pid)
    busy, srv, wrk, steal = (x - y for x, y in zip(after, before, strict=True))
    cpus = os.cpu_count() or 1
    res["server_cpu_pct"] = round(100 * srv / wall, 1)
    res["wrk_cpu_pct"] = round(100 * wrk / wall, 1)
    # CPU time neither the server nor wrk used: other processes on the machine.
    res["other_cpu_pct"] = round(max(0.0, 100 * (busy - srv - wrk) / (wall * cpus)), 1)
    res["steal_pct"] = round(100 * steal / (wall * cpus), 1)
    return res


def warm(cfg: Config, url: str, token: str | None) -> None:
    if cfg.warmup > 0:
        run_wrk(cfg.wrk, url, seconds=cfg.warmup, connections=cfg.connections,
                threads=cfg.threads, headers={"X-Auth-Token": token} if token else {})


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median req/s (the lower middle one of an even count); all kept."""
    median = sorted(runs, key=lambda r: r["rps"])[(len(runs) - 1) // 2]
    return {**median, "runs": runs} if len(runs) > 1 else median


def sequential_rows(cfg: Config, mode: str, svc: Server, ctx: ssl.SSLContext, token: str,
                    members: int) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for key, path, check in (("expand", f"{ACCOUNTS}?{EXPAND}", members),
                             ("collection", ACCOUNTS, None)):
        print(f"  {mode}: {cfg.expand_requests} sequential GET {path}", flush=True)
        rows[key] = {"path": path, **asyncio.run(sequential_gets(
            svc.base, path, ctx, token, cfg.expand_requests, 3, check))}
    return rows


def verdicts(rows: dict[str, Any], baseline_rps: float) -> None:
    """Targets met or not; a run with non-2xx answers or socket errors meets none."""
    for key in ("root", "account", "manager"):
        row = rows[key]
        valid = not any(r.get("warning") for r in row.get("runs", [row]))
        row["ratio"] = row["rps"] / baseline_rps if baseline_rps else None
        row["meets_ratio"] = valid and row["ratio"] is not None and row["ratio"] >= TARGET_RATIO
        row["meets_p99"] = valid and row["p99_ms"] < TARGET_P99_MS
    rows["expand"]["meets_p50"] = rows["expand"]["p50_ms"] < TARGET_EXPAND_P50_MS


def table(res: Results) -> str:
    base = res.baseline
    members = res.setup.get("members")
    head = (f"  {'GET':<42}{'bytes':>7}{'req/s':>8}{'p50 ms':>8}{'p99 ms':>8}{'x base':>7}"
            f"{'srv%':>6}{'oth%':>6}  targets")
    lines = [head, "  " + "-" * (len(head) + 30)]

    def fmt(label: str, row: dict[str, Any], ratio: str, target: str) -> str:
        cpu = "".join(f"{row[k]:>6.0f}" if k in row else f"{'':>6}"
                      for k in ("server_cpu_pct", "other_cpu_pct"))
        return (f"  {label:<42}{row.get('bytes', 0):>7}{row['rps']:>8.0f}"
                f"{row['p50_ms']:>8.2f}{row['p99_ms']:>8.2f}{ratio:>7}{cpu}  {target}")

    ok = {True: "ok", False: "MISSED"}
    lines.append(fmt("baseline aiohttp+orjson, wrk", base, "1.00", ""))
    for mode, rows in res.modes.items():
        lines.append(f"  -- service, --parser {mode}: {rows['parser_class']}")
        names = {"root": "/redfish/v1/, wrk", "account": "Accounts/1, wrk (stored bytes)",
                 "manager": "Managers/Composer, wrk (live render)"}
        for key, label in names.items():
            row = rows[key]
            target = (f">={TARGET_RATIO}x {ok[row['meets_ratio']]}, "
                      f"p99<{TARGET_P99_MS:g} {ok[row['meets_p99']]}")
            if row.get("warning"):
                target += f"  [{row['warning']}]"
            lines.append(fmt(label, row, f"{row['ratio']:.2f}", target))
        row = rows["expand"]
        lines.append(fmt(f"Accounts?{EXPAND}, {members}, seq.", row, "",
                         f"p50<{TARGET_EXPAND_P50_MS:g} {ok[row['meets_p50']]}"))
        lines.append(fmt(f"Accounts (no $expand), {members}, seq.", rows["collection"], "",
                         "(reference)"))
    lines.append("  srv% = the server's CPU (100 = one core); oth% = share of all CPUs used by "
                 "other processes (noise); seq. = sequential requests on one connection, "
                 "client-timed (p99 of 50 is their maximum)")
    return "\n".join(lines)


def print_profiles(res: Results) -> None:
    found = [("baseline", "/", res.baseline.get("profile"))]
    for mode, rows in res.modes.items():
        found += [(f"service --parser {mode}", rows[k]["path"], rows[k].get("profile"))
                  for k in ("root", "account", "manager", "expand")]
    for label, path, prof in found:
        if not prof:
            continue
        print(f"\nprofile, {label}, GET {path} ({prof.get('samples', 0)} busy event-loop samples): "
              f"{prof.get('raw', prof.get('error'))}")
        for b, pct in prof.get("buckets_pct", []):
            print(f"  {pct:5.1f}%  {b}")
        for f, pct in prof.get("self_pct", [])[:10]:
            print(f"  self {pct:5.1f}%  {f}")
        for f, pct in prof.get("service_inclusive_pct", [])[:10]:
            print(f"  incl {pct:5.1f}%  {f}")


WRK_TARGETS = {"root": ROOT, "account": ACCOUNTS + "/1", "manager": MANAGER}


def run(cfg: Config, modes: list[str], res: Results) -> None:
    servers: list[Server] = []
    with tempfile.TemporaryDirectory(prefix="bench-get-") as tmp:
        setup_state = Path(tmp) / "state-setup"
        password = "bench-" + secrets.token_urlsafe(12)
        try:
            # 1. one service makes the certificate and the accounts, then stops.
            setup = start_service(setup_state, password, "shipped", cfg.log_level, "setup")
            servers.append(setup)
            cert = setup_state / "tls-cert.pem"
            wait_for_file(setup_state / "tls-key.pem", setup)
            wait_for_file(cert, setup)
            ctx = client_ssl(cert)
            asyncio.run(wait_ready(setup, ctx))
            token = asyncio.run(login(setup.base, ctx, password))
            print(f"growing {ACCOUNTS} to {cfg.members} members "
                  f"(concurrency {cfg.create_concurrency}, budget {cfg.create_budget:.0f} s)",
                  flush=True)
            res.setup = asyncio.run(grow_accounts(setup.base, ctx, token, cfg.members,
                                                  cfg.create_concurrency, cfg.create_budget))
            members = res.setup["members"]
            print(f"  {members} members, {res.setup['created']} created in "
                  f"{res.setup['seconds']} s", flush=True)
            if res.setup["budget_exhausted"]:
                print(f"  WARNING: the budget ran out; measuring {members} members", flush=True)
            setup.stop()

            # 2. the baseline, and one service per parser mode on its own copy of the state,
            #    all up at once so that the measured runs can alternate between them.
            baseline = start_baseline(setup_state)
            servers.append(baseline)
            services: dict[str, Server] = {}
            for mode in modes:
                state = Path(tmp) / f"state-{mode}"
                shutil.copytree(setup_state, state)
                services[mode] = start_service(state, password, mode, cfg.log_level, mode)
                servers.append(services[mode])
            asyncio.run(wait_ready(baseline, ctx))
            tokens: dict[str, str] = {}
            for mode, svc in services.items():
                asyncio.run(wait_ready(svc, ctx))
                tokens[mode] = asyncio.run(login(svc.base, ctx, password))

            # 3. wrk: warm every (server, path) up, then rounds that alternate between them.
            plan: list[tuple[str, str, Server, str | None]] = [("baseline", "/", baseline, None)]
            plan += [(f"{mode}/{key}", path, services[mode], tokens[mode])
                     for key, path in WRK_TARGETS.items() for mode in modes]
            sizes = {label: asyncio.run(probe(srv.base, path, ctx, tok))
                     for label, path, srv, tok in plan}
            print(f"warming up ({len(plan)} x {cfg.warmup:g} s)", flush=True)
            for _, path, srv, tok in plan:
                warm(cfg, srv.base + path, tok)
            runs: dict[str, list[dict[str, Any]]] = {label: [] for label, *_ in plan}
            for r in range(cfg.repeat):
                print(f"round {r + 1}/{cfg.repeat}: {len(plan)} wrk runs of "
                      f"{cfg.duration:g} s", flush=True)
                for label, path, srv, tok in plan:
                    runs[label].append(measure_once(cfg, srv.base + path, tok, srv))
                    last = runs[label][-1]
                    print(f"  {label:<18} {path:<42} {last['rps']:>8.0f} req/s "
                          f"p99 {last['p99_ms']:.2f} ms", flush=True)
            res.baseline = {"bytes": sizes["baseline"], **median_run(runs["baseline"])}
            for mode in modes:
                rows: dict[str, Any] = {"parser_class": parser_in_use(services[mode])}
                for key, path in WRK_TARGETS.items():
                    label = f"{mode}/{key}"
                    rows[key] = {"path": path, "bytes": sizes[label], **median_run(runs[label])}
                res.modes[mode] = rows

            # 4. sequential $expand of the whole collection (and the plain collection).
            for mode, svc in services.items():
                res.modes[mode].update(
                    sequential_rows(cfg, mode, svc, ctx, tokens[mode], members))
                verdicts(res.modes[mode], res.baseline["rps"])

            # 5. optional profiles, after (and never during) the measurements.
            if cfg.profile_dir and cfg.py_spy:
                print(f"profiling ({cfg.profile_seconds:g} s each)", flush=True)
                res.baseline["profile"] = profile_run(
                    cfg.py_spy, baseline, cfg.profile_dir, "baseline", cfg.profile_seconds,
                    wrk_driver(cfg, baseline.base + "/", None))
                for mode, svc in services.items():
                    tok = tokens[mode]
                    for key, path in WRK_TARGETS.items():
                        res.modes[mode][key]["profile"] = profile_run(
                            cfg.py_spy, svc, cfg.profile_dir, f"{mode}-{key}",
                            cfg.profile_seconds, wrk_driver(cfg, svc.base + path, tok))
                    path = res.modes[mode]["expand"]["path"]
                    res.modes[mode]["expand"]["profile"] = profile_run(
                        cfg.py_spy, svc, cfg.profile_dir, f"{mode}-expand", cfg.profile_seconds,
                        lambda s, b=svc.base, p=path, t=tok: asyncio.run(
                            sequential_for(b, p, ctx, t, s)))
        except (BenchError, aiohttp.ClientError, OSError):
            keep = Path(tempfile.mkdtemp(prefix="bench-get-logs-"))
            for s in servers:
                status = "running" if s.proc.poll() is None else f"exit {s.proc.returncode}"
                print(f"--- {s.name} (pid {s.proc.pid}, {status}), end of its log ---\n"
                      f"{s.log_tail()}", file=sys.stderr)
                with contextlib.suppress(OSError):
                    shutil.copy(s.log_path, keep)
            print(f"--- server logs kept in {keep}", file=sys.stderr)
            raise
        finally:
            for s in reversed(servers):
                s.stop()


MODES = ("shipped", "c", "python")


def parser_modes(text: str) -> list[str]:
    aliases = {"both": ["c", "python"], "all": list(MODES)}
    modes: list[str] = []
    for part in text.split(","):
        for mode in aliases.get(part.strip(), [part.strip()]):
            if mode not in MODES:
                raise argparse.ArgumentTypeError(f"unknown parser mode {mode!r}")
            if mode not in modes:
                modes.append(mode)
    return modes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parser", default="shipped", type=parser_modes, metavar="MODES",
                    help="HTTP parser of the SERVICE, a comma list of: shipped (as the "
                         "service sets it up), c (aiohttp's C parser, llhttp, even if the "
                         "service replaced it), python (AIOHTTP_NO_EXTENSIONS=1: pure-Python "
                         "parser and header writer); 'both' = c,python, 'all' = "
                         "shipped,c,python. Each mode is its own service process on a copy "
                         "of the same state; the wrk runs alternate between them. Default "
                         "shipped. The baseline always uses aiohttp's C extensions.")
    ap.add_argument("--members", type=int, default=1000,
                    help="members of the account collection for $expand (default 1000)")
    ap.add_argument("--duration", type=float, default=10, help="seconds per wrk run (10)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="measured wrk runs per target; the median (by req/s) is shown (1)")
    ap.add_argument("--warmup", type=float, default=2,
                    help="seconds of unmeasured wrk load before each run (2; 0 = none)")
    ap.add_argument("--connections", type=int, default=32, help="wrk connections (32)")
    ap.add_argument("--threads", type=int, default=2, help="wrk threads (2)")
    ap.add_argument("--expand-requests", type=int, default=50,
                    help="sequential $expand GETs timed (50)")
    ap.add_argument("--create-concurrency", type=int, default=4,
                    help="concurrent account POSTs (4)")
    ap.add_argument("--create-budget", type=float, default=120,
                    help="seconds allowed for creating accounts (120); the run goes on "
                         "with whatever count it reached")
    ap.add_argument("--service-log-level", choices=["debug", "info", "warning", "error"],
                    help="the service's --log-level (default: the service's own, info, "
                         "which writes an access-log line per request)")
    ap.add_argument("--profile", type=Path, metavar="DIR",
                    help="also record py-spy profiles of the servers into DIR, in extra "
                         "loaded runs after each measured one (figures are not affected)")
    ap.add_argument("--profile-seconds", type=float, default=5)
    ap.add_argument("--out", type=Path, help="also write the results as JSON to this file")
    ap.add_argument("--wrk", default=shutil.which("wrk") or "/usr/bin/wrk")
    a = ap.parse_args(argv)

    if not (1 <= a.duration <= 120 and 0 <= a.warmup <= 30 and 1 <= a.repeat <= 10):
        ap.error("--duration must be 1..120 s, --warmup 0..30 s, --repeat 1..10")
    if not (1 <= a.connections <= 512 and 1 <= a.threads <= a.connections):
        ap.error("--connections must be 1..512 and --threads 1..connections")
    if not (1 <= a.members <= 100_000 and 1 <= a.expand_requests <= 10_000):
        ap.error("--members must be 1..100000 and --expand-requests 1..10000")
    if not Path(a.wrk).exists():
        ap.error(f"wrk not found ({a.wrk}); apt-get install wrk")
    py_spy = shutil.which("py-spy") if a.profile else None
    if a.profile:
        if not py_spy:
            ap.error("--profile needs py-spy (pip install py-spy)")
        a.profile.mkdir(parents=True, exist_ok=True)

    cfg = Config(
        members=a.members, duration=a.duration, repeat=a.repeat, warmup=a.warmup,
        connections=a.connections, threads=a.threads, expand_requests=a.expand_requests,
        create_concurrency=max(1, a.create_concurrency), create_budget=a.create_budget,
        log_level=a.service_log_level, wrk=a.wrk, py_spy=py_spy, profile_dir=a.profile,
        profile_seconds=a.profile_seconds,
    )
    wrk_version = subprocess.run([a.wrk, "-v"], capture_output=True, text=True,
                                 check=False).stdout.splitlines()[:1]
    res = Results(meta={
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "loadavg_before": os.getloadavg(),
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "wrk": wrk_version[0] if wrk_version else "",
        "connections": a.connections,
        "threads": a.threads,
        "duration_s": a.duration,
        "repeat": a.repeat,
        "service_log_level": a.service_log_level or "info (default)",
        "targets": {"ratio": TARGET_RATIO, "p99_ms": TARGET_P99_MS,
                    "expand_p50_ms": TARGET_EXPAND_P50_MS},
    })
    parsers = a.parser

    # SIGTERM unwinds like Ctrl-C, so the finally clauses stop the servers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        run(cfg, parsers, res)
    except (BenchError, aiohttp.ClientError, OSError) as e:
        print(f"bench_get: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench_get: interrupted", file=sys.stderr)
        return 130

    res.meta["loadavg_after"] = os.getloadavg()
    print()
    print(f"wrk -t{a.threads} -c{a.connections} -d{a.duration:g}s (median of {a.repeat}) "
          f"over HTTPS on {HOST}; "
          f"{os.cpu_count()} CPUs shared by wrk and the server; loadavg before "
          f"{res.meta['loadavg_before'][0]:.2f}; service log level "
          f"{res.meta['service_log_level']}")
    print(table(res))
    print_profiles(res)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(
            {"meta": res.meta, "setup": res.setup, "baseline": res.baseline,
             "modes": res.modes}, indent=2, default=str) + "\n")
        print(f"\nwrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
