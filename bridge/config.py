"""Bridge configuration: one YAML file, then environment variables, then flags.

Environment variables are ``REDFISH_DRA_BRIDGE_<FIELD>`` in upper case, e.g.
``REDFISH_DRA_BRIDGE_REDFISH_URL``. Secrets are never given inline in the YAML file of a
Deployment: ``redfish_password_file`` names a file mounted from a Secret.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from redfish_service.config import ConfigError, load_model

ENV_PREFIX = "REDFISH_DRA_BRIDGE_"
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# The device types the bridge knows how to recognise in a ResourceBlock.
DEVICE_TYPES = ("gpu", "nvme", "cxl-memory", "dpu", "nic", "fpga")


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # The Redfish composability manager (any compliant one).
    redfish_url: str = "https://127.0.0.1:8443"
    redfish_username: str = "admin"
    redfish_password: SecretStr | None = None
    redfish_password_file: Path | None = None  # a file mounted from a Secret
    redfish_ca_bundle: Path | None = None       # PEM bundle that signs the manager's cert
    redfish_verify_tls: bool = True
    redfish_timeout_s: float = Field(30.0, gt=0, le=600)
    # Attaches in flight at once (and connections to the manager). A manager that groups
    # concurrent compositions (ours does) gets through a burst faster with more.
    attach_concurrency: int = Field(64, ge=1, le=1024)
    # Kubernetes.
    kubeconfig: Path | None = None  # default: in-cluster, then ~/.kube/config
    driver_name: str = "composable.redfish-composer.io"
    namespace: str = Field(default_factory=lambda: os.environ.get("POD_NAMESPACE", "redfish-dra"))
    identity: str = Field(default_factory=lambda: os.environ.get("POD_NAME", socket.gethostname()))
    device_types: list[str] = Field(default_factory=lambda: ["gpu", "nvme", "cxl-memory", "dpu"])
    # Timing. The attach must end (success or failure) before the scheduler gives up:
    # binding_timeout_s mirrors the scheduler's DynamicResources bindingTimeout.
    attach_timeout_s: float = Field(300.0, gt=0)
    binding_timeout_s: float = Field(600.0, gt=0)
    binding_margin_s: float = Field(30.0, ge=0)
    detach_grace_s: float = Field(30.0, ge=0)
    quarantine_s: float = Field(600.0, ge=0)
    resync_interval_s: float = Field(30.0, gt=0)
    # Redfish events mark blocks and systems (or the whole pool) stale; they are read
    # again at most this often. A freed device reappears in the slices within this time;
    # attaches never wait for it.
    pool_read_min_interval_s: float = Field(1.0, gt=0, le=60)
    # Leader election on a coordination.k8s.io Lease in `namespace`.
    lease_name: str = ""  # default: <driver name with dots as dashes>-bridge
    lease_duration_s: float = Field(15.0, gt=0)
    renew_deadline_s: float = Field(10.0, gt=0)
    retry_period_s: float = Field(2.0, gt=0)
    # Metrics (/metrics) and probes (/healthz, /readyz).
    http_bind: str = "0.0.0.0"
    http_port: int = Field(8080, ge=0, le=65535)
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if len(self.driver_name) > 63 or not DNS_SUBDOMAIN.match(self.driver_name):
            raise ValueError("driver_name must be a lower-case DNS subdomain of at most 63 "
                             "characters")
        unknown = sorted(set(self.device_types) - set(DEVICE_TYPES))
        if unknown:
            raise ValueError(f"unknown device_types {unknown}; known: {list(DEVICE_TYPES)}")
        if not self.renew_deadline_s < self.lease_duration_s:
            raise ValueError("renew_deadline_s must be shorter than lease_duration_s")
        if not self.retry_period_s * 1.2 < self.renew_deadline_s:
            raise ValueError("renew_deadline_s must exceed 1.2 x retry_period_s")
        if not self.lease_name:
            self.lease_name = self.driver_name.replace(".", "-") + "-bridge"
        return self

    def password(self) -> str:
        if self.redfish_password_file is not None:
            try:
                return self.redfish_password_file.read_text().strip()
            except OSError as e:
                raise ConfigError(f"cannot read redfish_password_file: {e.strerror}") from None
        if self.redfish_password is not None:
            return self.redfish_password.get_secret_value()
        raise ConfigError("no Redfish password: set redfish_password_file or "
                          f"{ENV_PREFIX}REDFISH_PASSWORD")


def load_settings(config_file: Path | None, flags: dict[str, Any]) -> Settings:
    return load_model(Settings, ENV_PREFIX, config_file, flags)
