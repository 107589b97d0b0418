"""The push delivery client: POSTs one subscription's Events over a kept-alive HTTP/1.1
connection of its own.

Delivery makes many small POSTs to the same few receivers, one at a time per receiver. A
general-purpose client (aiohttp's ClientSession) spends most of each one on what delivery
never uses (cookies, redirects, proxies, a shared pool, tracing): under a burst that was
the larger part of the fan-out's cost to the service. This client writes a request head
made once per destination and reads the response only as far as its status and its end.

* One connection per destination, reused while the receiver keeps it open; closed after
  ``idle_s`` unused (shorter than the usual keep-alive timeouts of servers), on any error,
  and when the response says ``Connection: close`` or ends with the connection.
* A POST on a reused connection that the receiver had closed meanwhile (no byte of a
  response) is made once more on a new connection; any other failure is reported to the
  caller, whose retry policy applies.
* Redirects are not followed: a 3xx is a failed delivery, like any status outside 2xx.
* ``HttpHeaders`` were checked when the subscription was made (token names, none of the
  reserved ones, no CR/LF in values) and are written as they are.
"""

from __future__ import annotations

import asyncio
import ssl
from urllib.parse import quote, urlsplit

MAX_HEAD = 16 * 1024  # a response's status line and headers
MAX_BODY = 64 * 1024  # a response body read to keep the connection; a longer one closes it
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"
_QUERY_SAFE = _PATH_SAFE + "?"


class Unusable(Exception):
    """The response cannot be read as HTTP/1.x."""


class _Stale(Exception):
    """A reused connection was closed by the receiver before any response arrived."""


class Client:
    """POSTs to one ``destination``; not for concurrent use (one POST at a time)."""

    def __init__(self, destination: str, headers: dict[str, str], *,
                 tls: ssl.SSLContext | None, timeout_s: float, idle_s: float = 10.0) -> None:
        parts = urlsplit(destination)
        self.secure = parts.scheme == "https"
        self.host = (parts.hostname or "").encode("idna").decode("ascii")
        self.port = parts.port or (443 if self.secure else 80)
        self.tls = tls if self.secure else None
        self.timeout_s = timeout_s
        self.idle_s = idle_s
        target = quote(parts.path or "/", safe=_PATH_SAFE)
        if parts.query:
            target += "?" + quote(parts.query, safe=_QUERY_SAFE)
        authority = f"[{self.host}]" if ":" in self.host else self.host
        if parts.port is not None:
            authority += f":{self.port}"
        lines = [f"POST {target} HTTP/1.1", f"Host: {authority}",
                 "Content-Type: application/json", "Accept: */*"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self._head = ("\r\n".join(lines) + "\r\nContent-Length: ").encode("utf-8")
        self._conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._last_used = 0.0

    async def post(self, body: bytes) -> int:
        """POST ``body``; the response's status. Raises ``OSError``, ``TimeoutError``,
        ``asyncio.IncompleteReadError``, ``asyncio.LimitOverrunError`` or ``Unusable``
        when there is none (the connection is closed then)."""
        request = self._head + str(len(body)).encode() + b"\r\n\r\n" + body
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.timeout_s):
                if self._conn is not None and (loop.time() - self._last_used > self.idle_s
                                               or self._conn[0].at_eof()):
                    self.close()
                try:
                    status, keep = await self._exchange(request)
                except _Stale:  # closed by the receiver while idle: once more, anew
                    self.close()
                    status, keep = await self._exchange(request)
        except BaseException:
            self.close()
            raise
        if keep:
            self._last_used = loop.time()
        else:
            self.close()
        return status

    def close(self) -> None:
        if self._conn is not None:
            self._conn[1].close()
            self._conn = None

    async def _exchange(self, request: bytes) -> tuple[int, bool]:
        """Send ``request`` (on a new connection if there is none) and read its response:
        (status, connection reusable)."""
        reused = self._conn is not None
        if self._conn is None:
            self._conn = await asyncio.open_connection(
                self.host, self.port, ssl=self.tls,
                server_hostname=self.host if self.tls else None, limit=MAX_HEAD)
        reader, writer = self._conn
        writer.write(request)
        try:
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionResetError, BrokenPipeError) as e:
            nothing = not isinstance(e, asyncio.IncompleteReadError) or not e.partial
            if reused and nothing:
                raise _Stale from e
            raise
        status, version, fields = _parse_head(head)
        while 100 <= status < 200:  # interim responses (100 Continue, 103 Early Hints)
            status, version, fields = _parse_head(await reader.readuntil(b"\r\n\r\n"))
        connection = fields.get(b"connection", b"")
        keep = (b"keep-alive" in connection if version == b"HTTP/1.0"
                else b"close" not in connection)
        if status in (204, 304):
            return status, keep
        if b"chunked" in fields.get(b"transfer-encoding", b""):
            read = 0
            while True:
                size_line = await reader.readuntil(b"\r\n")
                try:
                    size = int(size_line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise Unusable("bad chunk size") from None
                if size == 0:
                    while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                        pass
                    return status, keep
                read += size
                if read > MAX_BODY:
                    return status, False  # not worth reading: the connection is dropped
                await reader.readexactly(size + 2)
        if b"content-length" in fields:
            try:
                length = int(fields[b"content-length"])
            except ValueError:
                raise Unusable("bad Content-Length") from None
            if length > MAX_BODY or length < 0:
                return status, False
            if length:
                await reader.readexactly(length)
            return status, keep
        return status, False  # a body delimited by the end of the connection


def _parse_head(head: bytes) -> tuple[int, bytes, dict[bytes, bytes]]:
    lines = head[:-4].split(b"\r\n")
    version, _, rest = lines[0].partition(b" ")
    if version not in (b"HTTP/1.1", b"HTTP/1.0") or not rest[:3].isdigit():
        raise Unusable("not an HTTP/1.x response")
    fields: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            raise Unusable("bad header line")
        key = name.strip().lower()
        value = value.strip().lower()
        fields[key] = fields[key] + b"," + value if key in fields else value
    return int(rest[:3]), version, fields
