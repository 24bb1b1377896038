"""A "null" S3 server: the least work an S3 endpoint can do for boto3, to measure boto3's ceiling.

Not a benchmark itself: ``storage_throughput.py`` runs it as a child process and sends it the same
``upload_file``/``download_file`` calls as the real endpoints. It verifies nothing and stores
nothing: request bodies are read into one reused buffer and dropped; an object is only its size
(in memory), and reading it returns that many bytes of the file named by ``--serve-file`` (the
bench's source file, in the page cache) with ``os.sendfile``, so a download still has the right
bytes. One blocking thread per connection, loopback only; just enough S3 for boto3:

- ``PUT /bucket`` (CreateBucket), ``PUT /bucket/key`` (PutObject), ``POST ?uploads``
  (CreateMultipartUpload), ``PUT ?partNumber&uploadId`` (UploadPart), ``POST ?uploadId``
  (CompleteMultipartUpload), ``HEAD``/``GET`` of an object (with ``Range: bytes=a-b``),
  ``DELETE``; ``GET /`` answers 200 (readiness). ``Expect: 100-continue`` is honoured.

    python bench/_s3_null_server.py --port 9000 --serve-file /tmp/object.bin
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import threading
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

HOST = "127.0.0.1"
RECV_BUFFER = 1024 * 1024
MAX_HEAD = 64 * 1024
SENDFILE_CHUNK = 64 * 1024 * 1024
ETAG = '"00000000000000000000000000000000"'
DATE = "Mon, 01 Jan 2024 00:00:00 GMT"


class NullStore:
    """Object sizes by path, shared by the connection threads."""

    def __init__(self, serve_file: Path) -> None:
        self.serve_file = serve_file
        self.sizes: dict[str, int] = {}
        self.lock = threading.Lock()


def _reply(conn: socket.socket, status: str, headers: list[tuple[str, str]], body: bytes = b"") -> None:
    lines = [f"HTTP/1.1 {status}", *(f"{name}: {value}" for name, value in headers)]
    if not any(name.lower() == "content-length" for name, _ in headers):
        lines.append(f"Content-Length: {len(body)}")
    conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)


def _xml(root: str, children: list[tuple[str, str]]) -> bytes:
    inner = "".join(f"<{tag}>{value}</{tag}>" for tag, value in children)
    return f'<?xml version="1.0" encoding="UTF-8"?><{root}>{inner}</{root}>'.encode()


def _discard_body(conn: socket.socket, buffered: bytearray, length: int, scratch: memoryview) -> bytearray:
    """Drop ``length`` body bytes (some already in ``buffered``); return what follows them."""
    if len(buffered) >= length:
        return buffered[length:]
    left = length - len(buffered)
    while left > 0:
        got = conn.recv_into(scratch, min(left, len(scratch)))
        if not got:
            raise ConnectionError("the client went away mid-body")
        left -= got
    return bytearray()


def _send_range(conn: socket.socket, path: Path, start: int, length: int) -> None:
    with path.open("rb") as source:
        offset, left = start, length
        while left > 0:
            sent = os.sendfile(conn.fileno(), source.fileno(), offset, min(left, SENDFILE_CHUNK))
            if sent <= 0:
                raise ConnectionError("sendfile made no progress")
            offset += sent
            left -= sent


def _answer(conn: socket.socket, store: NullStore, method: str, target: str, headers: dict[str, str]) -> None:
    url = urlsplit(target)
    query = parse_qs(url.query, keep_blank_values=True)
    path = url.path
    is_object = path.strip("/").count("/") >= 1
    if method == "POST" and "uploads" in query:
        body = _xml("InitiateMultipartUploadResult", [("Bucket", "b"), ("Key", "k"), ("UploadId", "null-upload")])
        _reply(conn, "200 OK", [("Content-Type", "application/xml")], body)
    elif method == "POST" and "uploadId" in query:
        with store.lock:
            store.sizes[path] = store.sizes.pop(f"{path}?parts", 0)
        body = _xml("CompleteMultipartUploadResult", [("Bucket", "b"), ("Key", "k"), ("ETag", ETAG)])
        _reply(conn, "200 OK", [("Content-Type", "application/xml")], body)
    elif method == "PUT" and is_object:
        size = int(headers.get("content-length", "0"))
        with store.lock:
            if "uploadId" in query:
                store.sizes[f"{path}?parts"] = store.sizes.get(f"{path}?parts", 0) + size
            else:
                store.sizes[path] = size
        _reply(conn, "200 OK", [("ETag", ETAG)])
    elif method in ("GET", "HEAD") and is_object:
        with store.lock:
            size = store.sizes.get(path)
        if size is None:
            _reply(conn, "404 Not Found", [("Content-Type", "application/xml")], _xml("Error", [("Code", "NoSuchKey")]))
            return
        start, length, status = 0, size, "200 OK"
        extra: list[tuple[str, str]] = []
        spec = headers.get("range", "")
        if spec.startswith("bytes="):
            first, _, last = spec[len("bytes=") :].partition("-")
            start = int(first)
            end = min(int(last), size - 1) if last else size - 1
            length, status = end - start + 1, "206 Partial Content"
            extra.append(("Content-Range", f"bytes {start}-{end}/{size}"))
        base = [("ETag", ETAG), ("Last-Modified", DATE), ("Content-Type", "binary/octet-stream")]
        _reply(conn, status, [*base, *extra, ("Accept-Ranges", "bytes"), ("Content-Length", str(length))])
        if method == "GET":
            _send_range(conn, store.serve_file, start, length)
    elif method == "DELETE":
        with store.lock:
            store.sizes.pop(path, None)
        _reply(conn, "204 No Content", [])
    else:
        _reply(conn, "200 OK", [])


def serve_connection(conn: socket.socket, store: NullStore) -> None:
    """Answer requests on one keep-alive connection until the client closes it."""
    scratch = memoryview(bytearray(RECV_BUFFER))
    buffered = bytearray()
    with conn:
        while True:
            while (end := buffered.find(b"\r\n\r\n")) < 0:
                if len(buffered) > MAX_HEAD:
                    return
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buffered += chunk
            head = bytes(buffered[:end]).decode("latin-1").split("\r\n")
            buffered = buffered[end + 4 :]
            method, target, _version = head[0].split(" ", 2)
            headers = {}
            for line in head[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            if "transfer-encoding" in headers:
                _reply(conn, "501 Not Implemented", [("Connection", "close")])
                return
            length = int(headers.get("content-length", "0"))
            if length and headers.get("expect", "").lower() == "100-continue" and not buffered:
                conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            buffered = _discard_body(conn, buffered, length, scratch)
            _answer(conn, store, method, target, headers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--serve-file", type=Path, required=True, help="the bytes every object reads as")
    args = parser.parse_args()
    store = NullStore(args.serve_file)
    listener = socket.create_server((HOST, args.port), backlog=64)
    print(f"null S3 server on http://{HOST}:{args.port}", flush=True)
    while True:
        conn, _ = listener.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=_guarded, args=(conn, store), daemon=True).start()


def _guarded(conn: socket.socket, store: NullStore) -> None:
    with contextlib.suppress(OSError, ValueError):
        serve_connection(conn, store)


if __name__ == "__main__":
    main()
