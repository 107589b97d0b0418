"""Running third-party Redfish tools (redfishtool, the DMTF validators) as subprocesses."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def tool_path(name: str) -> str:
    """The console script of this interpreter's environment, else the one on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise AssertionError(f"{name} is not installed: run  python -m pip install -e '.[test]'")
    return found


def tool_env() -> dict[str, str]:
    """The environment for the tools.

    ``requests`` lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override ``verify=False``, which
    would turn every request to the self-signed test service into a certificate error.
    """
    drop = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
    return {k: v for k, v in os.environ.items()
            if k not in drop and not k.startswith("REDFISH_COMPOSER_")}


@dataclass
class ToolRun:
    cmd: list[str]
    returncode: int
    stdout: str
    stderr: str

    def describe(self, secret: str | None = None) -> str:
        shown = " ".join("***" if secret and c == secret else c for c in self.cmd)
        return (f"$ {shown}\nexit {self.returncode}\n--- stdout (tail)\n{self.stdout[-3000:]}"
                f"\n--- stderr (tail)\n{self.stderr[-3000:]}")


def run_tool(cmd: list[str], *, timeout: float, cwd: Path | None = None) -> ToolRun:
    """Run a tool to its end; a tool still running after ``timeout`` seconds is killed."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace",
                              timeout=timeout, cwd=cwd, env=tool_env(), stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else e.stdout
        raise AssertionError(
            f"{Path(cmd[0]).name} did not finish within {timeout}s; output so far:\n"
            f"{(out or '')[-3000:]}"
        ) from None
    return ToolRun(cmd, proc.returncode, ANSI.sub("", proc.stdout), ANSI.sub("", proc.stderr))
