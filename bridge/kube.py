"""Kubernetes API access on raw JSON, through the official client's asyncio flavour.

The ``kubernetes.aio`` client supplies configuration (in-cluster or kubeconfig), TLS and
authentication; requests and answers stay plain dicts so no field a typed model does not
know is ever dropped on a read-modify-write (a typed status write would "change"
``status.allocation`` and be refused).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
from kubernetes.aio import client as kclient
from kubernetes.aio import config as kconfig

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"


class KubeError(Exception):
    """A Kubernetes API error: the HTTP status and the ``Status`` object it carried."""

    def __init__(self, status: int, body: dict[str, Any] | None = None) -> None:
        self.status = status
        self.body = body or {}
        self.reason = self.body.get("reason", "")
        super().__init__(f"{status} {self.reason}: {self.body.get('message', '')}")

    @property
    def causes(self) -> list[dict[str, Any]]:
        return list((self.body.get("details") or {}).get("causes") or [])


def _decode(raw: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(raw) if raw else {}
    except ValueError:
        return {"message": raw[:200].decode(errors="replace")}
    return value if isinstance(value, dict) else {}


class Kube:
    """Raw-JSON requests and watch streams over one ``ApiClient``."""

    def __init__(self, api: kclient.ApiClient, *, timeout_s: float = 30.0) -> None:
        self.api = api
        self.timeout_s = timeout_s

    @classmethod
    async def connect(cls, kubeconfig: Path | None = None) -> Kube:
        """In-cluster credentials when running in a Pod, else the kubeconfig."""
        cfg = kclient.Configuration()
        if kubeconfig is None:
            try:
                kconfig.load_incluster_config(client_configuration=cfg)
                return cls(kclient.ApiClient(cfg))
            except kconfig.ConfigException:
                pass
        await kconfig.load_kube_config(
            config_file=str(kubeconfig) if kubeconfig else None, client_configuration=cfg)
        return cls(kclient.ApiClient(cfg))

    @classmethod
    def for_url(cls, url: str, token: str | None = None) -> Kube:
        """A client for an API server at ``url`` (tests, the benchmark)."""
        cfg = kclient.Configuration(host=url)
        if token:
            cfg.api_key = {"BearerToken": token}
            cfg.api_key_prefix = {"BearerToken": "Bearer"}
        return cls(kclient.ApiClient(cfg))

    async def close(self) -> None:
        await self.api.close()

    async def _send(self, method: str, path: str, query: dict[str, Any] | None,
                    body: Any, content_type: str | None, limit_s: float):
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        params = [(k, v) for k, v in (query or {}).items() if v is not None]
        _, url, headers, body, _ = await self.api.param_serialize(
            method, path, query_params=params, header_params=headers, body=body,
            auth_settings=["BearerToken"])
        return await self.api.call_api(method, url, headers, body, _request_timeout=limit_s)

    async def request(self, method: str, path: str, *, query: dict[str, Any] | None = None,
                      body: Any = None, content_type: str | None = None) -> dict[str, Any]:
        resp = await self._send(method, path, query, body, content_type, self.timeout_s)
        raw = await resp.read()
        if resp.status >= 400:
            raise KubeError(resp.status, _decode(raw))
        return _decode(raw)

    async def get(self, path: str, **query: Any) -> dict[str, Any] | None:
        """The object at ``path``, or None when it does not exist."""
        try:
            return await self.request("GET", path, query=query)
        except KubeError as e:
            if e.status == 404:
                return None
            raise

    async def watch(self, path: str, query: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """The events of one watch request, as dicts, until the server ends the stream."""
        seconds = float(query.get("timeoutSeconds") or 300)
        resp = await self._send("GET", path, {**query, "watch": "true"}, None, None,
                                seconds + 30)
        try:
            if resp.status >= 400:
                raise KubeError(resp.status, _decode(await resp.read()))
            content = resp.response.content
            while True:
                line = await content.readline()
                if not line:
                    return
                if line.strip():
                    event = orjson.loads(line)
                    if isinstance(event, dict):
                        yield event
        finally:
            resp.response.release()


async def retry_conflicts(op, *, attempts: int = 8) -> Any:
    """Run ``op`` again (re-reading inside it) while it ends in 409 Conflict."""
    for n in range(attempts):
        try:
            return await op()
        except KubeError as e:
            if e.status != 409 or n == attempts - 1:
                raise
            await asyncio.sleep(min(0.01 * 2 ** n, 0.5))
    raise AssertionError("unreachable")
