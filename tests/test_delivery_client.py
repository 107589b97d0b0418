"""The push delivery client against scripted HTTP/1.x servers on loopback: what it sends,
how it reads each kind of response, when it keeps or drops its connection, and how it
fails."""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass, field

import pytest

from redfish_service.events.delivery import MAX_BODY, Client, Unusable
from redfish_service.security.tls import client_context, ensure_self_signed, server_context

pytestmark = pytest.mark.timeout(30)

NO_CONTENT = b"HTTP/1.1 204 No Content\r\n\r\n"


@dataclass
class Reply:
    data: bytes | None  # None: never answer
    close: bool = False  # close the connection after writing (without saying so)


@dataclass
class Request:
    head: list[str]
    body: bytes
    connection: int

    def header(self, name: str) -> str | None:
        for line in self.head[1:]:
            key, _, value = line.partition(":")
            if key.lower() == name.lower():
                return value.strip()
        return None


@dataclass
class Scripted:
    """A server answering the n-th request with ``replies[n]``; it records every request
    and counts connections."""

    replies: list[Reply]
    tls: ssl.SSLContext | None = None
    host: str = "127.0.0.1"
    requests: list[Request] = field(default_factory=list)
    connections: int = 0
    server: asyncio.Server | None = None

    async def start(self) -> Scripted:
        self.server = await asyncio.start_server(self._serve, self.host, 0, ssl=self.tls)
        return self

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.sockets[0].getsockname()[1]

    def url(self, path: str = "/events") -> str:
        scheme = "https" if self.tls else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}{path}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                lines = head.decode().split("\r\n")[:-2]
                length = next((int(x.split(":")[1]) for x in lines
                               if x.lower().startswith("content-length:")), 0)
                self.requests.append(Request(lines, await reader.readexactly(length), number))
                reply = self.replies[len(self.requests) - 1]
                if reply.data is None:
                    await asyncio.sleep(3600)
                writer.write(reply.data)
                await writer.drain()
                if reply.close:
                    return
        finally:
            writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()


@pytest.fixture
async def scripted():
    servers: list[Scripted] = []
    clients: list[Client] = []

    async def make(*replies: Reply, tls: ssl.SSLContext | None = None, host="127.0.0.1",
                   path="/events", headers=None, verify=False, timeout_s=5.0, idle_s=10.0):
        server = await Scripted(list(replies), tls, host).start()
        servers.append(server)
        client = Client(server.url(path), headers or {}, tls=client_context(verify),
                        timeout_s=timeout_s, idle_s=idle_s)
        clients.append(client)
        return server, client

    yield make
    for client in clients:
        client.close()
    for server in servers:
        await server.stop()


async def test_one_kept_alive_connection_and_the_request_it_sends(scripted):
    server, client = await scripted(
        Reply(NO_CONTENT), Reply(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
        Reply(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n"),
        headers={"X-Auth": "s3cret", "X-Other": "1"})
    statuses = [await client.post(b'{"n": %d}' % n) for n in range(3)]
    assert statuses == [204, 200, 202]
    assert server.connections == 1
    assert [r.body for r in server.requests] == [b'{"n": 0}', b'{"n": 1}', b'{"n": 2}']
    first = server.requests[0]
    assert first.head[0] == "POST /events HTTP/1.1"
    assert first.header("Host") == f"127.0.0.1:{server.port}"
    assert first.header("Content-Type") == "application/json"
    assert first.header("Content-Length") == "8"
    assert first.header("X-Auth") == "s3cret" and first.header("X-Other") == "1"


async def test_a_chunked_body_with_trailers_is_read_and_the_connection_kept(scripted):
    chunked = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n")
    server, client = await scripted(Reply(chunked), Reply(NO_CONTENT))
    assert await client.post(b"{}") == 200
    assert await client.post(b"{}") == 204
    assert server.connections == 1


@pytest.mark.parametrize("first", [
    b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n",  # 1.0 without keep-alive
    b"HTTP/1.1 200 OK\r\n\r\nthe body ends with the connection",
    b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY + 1),  # not worth reading
], ids=["connection-close", "http-1.0", "body-until-close", "long-body"])
async def test_a_response_that_ends_the_connection_gets_a_new_one(scripted, first):
    server, client = await scripted(Reply(first, close=True), Reply(NO_CONTENT))
    assert await client.post(b"{}") == 200
    assert await client.post(b"{}") == 204
    assert server.connections == 2 and len(server.requests) == 2


async def test_http_1_0_keep_alive_is_honoured(scripted):
    server, client = await scripted(
        Reply(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n"),
        Reply(NO_CONTENT))
    assert [await client.post(b"{}"), await client.post(b"{}")] == [200, 204]
    assert server.connections == 1


async def test_interim_responses_are_skipped(scripted):
    _, client = await scripted(
        Reply(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n"
              + NO_CONTENT))
    assert await client.post(b"{}") == 204


async def test_a_connection_the_receiver_closed_while_idle_is_replaced_once(scripted):
    """The receiver drops the kept-alive connection without saying so: the next POST goes
    on a new connection, and the receiver gets it exactly once."""
    server, client = await scripted(Reply(NO_CONTENT, close=True), Reply(NO_CONTENT))
    assert await client.post(b'{"n": 1}') == 204
    await asyncio.sleep(0.05)
    assert await client.post(b'{"n": 2}') == 204
    assert [r.body for r in server.requests] == [b'{"n": 1}', b'{"n": 2}']
    assert [r.connection for r in server.requests] == [1, 2]


async def test_no_response_on_a_new_connection_is_a_failure_not_a_retry(scripted):
    server, client = await scripted(Reply(b"", close=True), Reply(NO_CONTENT))
    with pytest.raises(asyncio.IncompleteReadError):
        await client.post(b"{}")
    assert len(server.requests) == 1  # not sent twice
    assert await client.post(b"{}") == 204  # and the client is usable after


async def test_a_silent_receiver_times_out(scripted):
    server, client = await scripted(Reply(None), Reply(NO_CONTENT), timeout_s=0.3)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await client.post(b"{}")
    assert time.monotonic() - started < 2
    assert await client.post(b"{}") == 204
    assert server.connections == 2


@pytest.mark.parametrize("reply", [
    b"SMTP ready\r\n\r\n", b"HTTP/1.1 OK\r\n\r\n", b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n",
])
async def test_what_is_not_http_is_unusable(scripted, reply):
    _, client = await scripted(Reply(reply, close=True))
    with pytest.raises(Unusable):
        await client.post(b"{}")


async def test_redirects_are_returned_not_followed(scripted):
    server, client = await scripted(
        Reply(b"HTTP/1.1 307 Temporary Redirect\r\nLocation: /elsewhere\r\n"
              b"Content-Length: 0\r\n\r\n"))
    assert await client.post(b"{}") == 307
    assert len(server.requests) == 1


async def test_an_idle_connection_is_not_reused(scripted):
    server, client = await scripted(Reply(NO_CONTENT), Reply(NO_CONTENT), idle_s=0.05)
    await client.post(b"{}")
    await asyncio.sleep(0.15)
    await client.post(b"{}")
    assert server.connections == 2


async def test_the_target_keeps_its_query_and_encodes_what_it_must(scripted):
    server, client = await scripted(Reply(NO_CONTENT), path="/in/caf\u00e9%20x?a=1&b=%2F")
    await client.post(b"{}")
    assert server.requests[0].head[0] == "POST /in/caf%C3%A9%20x?a=1&b=%2F HTTP/1.1"


async def test_ipv6_loopback_host_header(scripted):
    try:
        server, client = await scripted(Reply(NO_CONTENT), host="::1")
    except OSError:
        pytest.skip("no IPv6 loopback here")
    assert await client.post(b"{}") == 204
    assert server.requests[0].header("Host") == f"[::1]:{server.port}"


async def test_https_with_and_without_certificate_verification(scripted, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    ensure_self_signed(cert, key, ["127.0.0.1"])
    tls = server_context(cert, key)
    server, lenient = await scripted(Reply(NO_CONTENT), Reply(NO_CONTENT), tls=tls)
    assert [await lenient.post(b"{}"), await lenient.post(b"{}")] == [204, 204]
    assert server.connections == 1
    strict_server, strict = await scripted(Reply(NO_CONTENT), tls=tls, verify=True)
    with pytest.raises(ssl.SSLCertVerificationError):
        await strict.post(b"{}")
    assert strict_server.requests == []
