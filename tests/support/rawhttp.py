"""A raw HTTP/1.1 client over asyncio streams, for requests no well-behaved client sends.

httpx (h11) refuses to send a Content-Length that disagrees with the body and
normalises header bytes; hostile-input tests need exactly the bytes they wrote.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def request(host: str, port: int, method: str, path: str, *,
                  headers: Sequence[tuple[bytes, bytes]] = (), body: bytes = b"",
                  content_length: int | None = None, half_close: bool = False,
                  timeout_s: float = 10.0) -> Reply | None:
    """Send one request as raw bytes and read the reply; None when the server sends none.

    ``content_length`` overrides the header (a mismatch with ``body`` is the point);
    ``half_close`` shuts the client's side after the body, so a server waiting for more
    sees EOF (aiohttp then drops the connection, answer or not).
    """
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
    try:
        head = [f"{method} {path} HTTP/1.1".encode(), f"Host: {host}:{port}".encode(),
                b"Connection: close",
                b"Content-Length: " + str(len(body) if content_length is None else content_length).encode()]
        head += [name + b": " + value for name, value in headers]
        writer.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        await writer.drain()
        if half_close and writer.can_write_eof():
            writer.write_eof()
        try:
            raw = await asyncio.wait_for(reader.read(-1), timeout_s)
        except ConnectionResetError:
            return None
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return parse(raw)


def parse(raw: bytes) -> Reply | None:
    """The first response in ``raw`` (a server may answer pipelined garbage after it)."""
    if not raw:
        return None
    head, _, rest = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = headers.get("content-length")
    return Reply(status, headers, rest[:int(length)] if length is not None else rest)
