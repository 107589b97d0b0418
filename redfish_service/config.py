"""Service configuration: one YAML file, then environment variables, then flags.

Environment variables are ``REDFISH_COMPOSER_<FIELD>`` in upper case, e.g.
``REDFISH_COMPOSER_ADMIN_PASSWORD`` or ``REDFISH_COMPOSER_PORT``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

ENV_PREFIX = "REDFISH_COMPOSER_"
M = TypeVar("M", bound=BaseModel)


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "redfish-composer"


class AccountPolicy(BaseModel):
    """Initial values of the AccountService policy (PATCHable afterwards, and kept)."""

    model_config = ConfigDict(extra="forbid")

    min_password_length: int = Field(8, ge=1, le=256)
    max_password_length: int = Field(128, ge=1, le=1024)
    lockout_threshold: int = Field(5, ge=0)
    lockout_duration: int = Field(300, ge=0)
    lockout_counter_reset_after: int = Field(300, ge=0)


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bind: str = "127.0.0.1"
    port: int = Field(8443, ge=0, le=65535)
    state_dir: Path = Field(default_factory=default_state_dir)
    insecure_http: bool = False
    allow_insecure_remote: bool = False
    tls_cert: Path | None = None
    tls_key: Path | None = None
    admin_password: SecretStr | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    max_sessions: int = Field(64, ge=1)
    session_timeout: int = Field(1800, ge=30, le=86400)
    max_body_bytes: int = Field(1 << 20, ge=1024)
    accounts: AccountPolicy = Field(default_factory=AccountPolicy)
    rack: Path | None = None  # YAML description of the simulated rack (default: built in)
    # A DSP2043 mockup folder served instead of the simulated rack (seeds an empty state).
    mockup: Path | None = None
    # A driver operation (one bind or unbind) that takes longer is abandoned and undone.
    driver_timeout_s: float = Field(30.0, gt=0, le=3600)
    # An operation (compose, action, ...) still running after this answers 202 with a
    # task monitor; the Task resources kept at most (completed ones are overwritten).
    task_threshold_s: float = Field(0.5, ge=0, le=3600)
    max_tasks: int = Field(100, ge=1, le=10_000)
    # Seconds in one "minute" of an event subscription's HeartbeatIntervalMinutes. A test
    # and diagnostic knob: leave it at 60 in service (tests make heartbeats come quickly).
    heartbeat_unit_s: float = Field(60.0, gt=0, le=3600)
    # Event delivery's send budget: SSE writes plus push POSTs a second, over all
    # receivers. With many receivers each one is sent to less often (with more in each
    # send), so that delivery never takes the service's capacity to answer requests.
    event_sends_per_s: float = Field(2400.0, ge=10, le=1_000_000)

    @property
    def scheme(self) -> str:
        return "http" if self.insecure_http else "https"


class ConfigError(Exception):
    """A configuration problem, reported as one line."""


def _env_overrides(model: type[BaseModel], prefix: str) -> dict[str, Any]:
    """``<prefix><FIELD>`` variables; a list field takes a comma-separated value."""
    out: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        value = os.environ.get(prefix + name.upper())
        if value is None:
            continue
        if field.annotation == list[str]:
            out[name] = [v.strip() for v in value.split(",") if v.strip()]
        else:
            out[name] = value
    return out


def load_model(model: type[M], prefix: str, config_file: Path | None,
               flags: dict[str, Any]) -> M:
    """Settings of ``model`` from a YAML file, then environment variables, then flags;
    a problem is one ConfigError line."""
    data: dict[str, Any] = {}
    if config_file is not None:
        data.update(load_yaml_mapping(config_file, "config file"))
    data.update(_env_overrides(model, prefix))
    data.update({k: v for k, v in flags.items() if v is not None})
    try:
        return model.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "config"
        raise ConfigError(f"invalid setting {where}: {first['msg']}") from None


def load_settings(config_file: Path | None, flags: dict[str, Any]) -> Settings:
    return load_model(Settings, ENV_PREFIX, config_file, flags)


def load_yaml_mapping(path: Path, what: str) -> dict[str, Any]:
    """A YAML file holding a mapping, or a one-line ConfigError."""
    try:
        loaded = yaml.safe_load(path.read_text())
    except OSError as e:
        raise ConfigError(f"cannot read {what} {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or "syntax error"
        raise ConfigError(f"{what} {path} is not valid YAML{where}: {problem}") from None
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"{what} {path} must hold a mapping")
    return loaded or {}
