"""A tiny forwarding HTTP proxy on 127.0.0.1 for tests: plain ``http://`` requests only, no CONNECT.

It reads one request in absolute form (``GET http://127.0.0.1:PORT/v1/account HTTP/1.1``), records
it, sends it on to its loopback origin with ``Connection: close`` and copies the whole reply back,
then closes the client's connection. Anything it will not forward (CONNECT, another host, a
chunked body) gets an error reply. With ``credentials`` set it wants ``Proxy-Authorization: Basic``
and answers 407 without it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from dataclasses import dataclass, field
from urllib.parse import urlsplit

HOP_BY_HOP = ("connection", "keep-alive", "proxy-authorization", "proxy-connection", "te", "trailer", "upgrade")


@dataclass
class Forwarded:
    """One request the proxy saw."""

    method: str
    target: str
    headers: dict[str, str]


@dataclass
class LoopbackProxy:
    """Start with ``await proxy.start()``; ``proxy.url`` is ``http://127.0.0.1:PORT``."""

    credentials: tuple[str, str] | None = None
    seen: list[Forwarded] = field(default_factory=list)
    _server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "proxy not started"
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    async def start(self) -> LoopbackProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._forward(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        request_line, *header_lines = [line for line in head.split("\r\n") if line]
        method, target, _version = request_line.split(" ", 2)
        headers: dict[str, str] = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        self.seen.append(Forwarded(method, target, headers))
        url = urlsplit(target)
        if method == "CONNECT" or url.scheme != "http" or url.hostname != "127.0.0.1" or url.port is None:
            writer.write(_reply(501, "this test proxy forwards http://127.0.0.1 requests only"))
            return
        if "chunked" in headers.get("transfer-encoding", ""):
            writer.write(_reply(501, "this test proxy does not forward chunked bodies"))
            return
        if self.credentials is not None:
            expected = base64.b64encode(":".join(self.credentials).encode()).decode()
            if headers.get("proxy-authorization") != f"Basic {expected}":
                writer.write(_reply(407, "proxy credentials needed", {"Proxy-Authenticate": 'Basic realm="test"'}))
                return
        body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", url.port)
        try:
            path = (url.path or "/") + (f"?{url.query}" if url.query else "")
            kept = [f"{name}: {value}" for name, value in headers.items() if name not in HOP_BY_HOP]
            upstream_writer.write(
                f"{method} {path} HTTP/1.1\r\n{''.join(h + chr(13) + chr(10) for h in kept)}Connection: close\r\n\r\n"
                .encode("latin-1") + body
            )  # fmt: skip
            await upstream_writer.drain()
            writer.write(await upstream_reader.read())
            await writer.drain()
        finally:
            upstream_writer.close()
            with contextlib.suppress(ConnectionError):
                await upstream_writer.wait_closed()


def _reply(status: int, text: str, headers: dict[str, str] | None = None) -> bytes:
    lines = [f"HTTP/1.1 {status} Test Proxy", "Content-Type: text/plain", f"Content-Length: {len(text)}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n" + text).encode("latin-1")
