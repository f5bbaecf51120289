"""A local Cloud Storage for tests: ``gcp-storage-emulator`` on a loopback port, plus what it lacks.

The emulator speaks the JSON API the real ``google-cloud-storage`` client uses and serves objects
publicly at ``/<bucket>/<object>``, like ``storage.googleapis.com``. Added here: HEAD (which it
does not answer), a log of every request (method, path, anonymous or not), and fault injection
(answer a matching request with an error status, a number of times), so tests can see what
was sent and make Google's refusals happen.

Usage::

    with GCSEmulator() as gcs:
        gcs.create_bucket("team-images")
        gcs.fail("POST", r"/upload/.*", 503, times=2)
        gcs.url                              # http://127.0.0.1:PORT
"""

from __future__ import annotations

import io
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from http.server import HTTPServer, ThreadingHTTPServer
from typing import Any

from gcp_storage_emulator.server import RequestHandler
from gcp_storage_emulator.storage import Storage


@dataclass
class Fault:
    method: str
    path: re.Pattern[str]
    status: int
    times: int | None  # None: every time
    anonymous_only: bool = False


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    anonymous: bool
    size: int


class _HeadersOnly(io.RawIOBase):
    """Writes a response's status line and headers, drops the body (for HEAD)."""

    def __init__(self, raw: Any):
        self.raw, self.buffer, self.done = raw, b"", False

    def write(self, b: Any) -> int:
        if not self.done:
            self.buffer += bytes(b)
            end = self.buffer.find(b"\r\n\r\n")
            if end >= 0:
                self.raw.write(self.buffer[:end + 4])
                self.done = True
        return len(b)


class _Handler(RequestHandler):
    def __init__(self, storage: Storage, emulator: GCSEmulator, *args: Any, **kwargs: Any):
        self.emulator = emulator
        super().__init__(storage, *args, **kwargs)

    def _intercept(self, method: str) -> bool:
        path = self.path.split("?")[0]
        anonymous = "authorization" not in {k.lower() for k in self.headers}
        size = int(self.headers.get("content-length") or 0)
        self.emulator._note(Seen(method, path, anonymous, size))
        if self.emulator.latency:
            time.sleep(self.emulator.latency)  # the network's round trip, before the work
        fault = self.emulator._fault(method, path, anonymous)
        if fault is None:
            return False
        body = json.dumps({"error": {"code": fault, "message": f"injected {fault}",
                                     "errors": [{"message": f"injected {fault}"}]}}).encode()
        if size:
            self.rfile.read(size)
        self.send_response(fault)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(body)
        return True

    def do_GET(self) -> None:
        if not self._intercept("GET"):
            with self.emulator.storage_lock:
                super().do_GET()

    def do_HEAD(self) -> None:
        if not self._intercept("HEAD"):
            real, self.wfile = self.wfile, _HeadersOnly(self.wfile)  # type: ignore[assignment]
            try:
                with self.emulator.storage_lock:
                    super().do_GET()
            finally:
                self.wfile = real

    def do_POST(self) -> None:
        if not self._intercept("POST"):
            with self.emulator.storage_lock:
                super().do_POST()

    def do_PUT(self) -> None:
        if not self._intercept("PUT"):
            with self.emulator.storage_lock:
                super().do_PUT()

    def do_DELETE(self) -> None:
        if not self._intercept("DELETE"):
            with self.emulator.storage_lock:
                super().do_DELETE()

    def do_PATCH(self) -> None:
        if not self._intercept("PATCH"):
            with self.emulator.storage_lock:
                super().do_PATCH()


class _MemoryStorage(Storage):
    """The emulator's in-memory storage without its metadata snapshot.

    After every write the emulator serialises the metadata of *all* objects to a ``.meta``
    file, read back only when a disk-backed emulator restarts: in memory it is dead weight
    that makes n uploads cost O(n^2) (minutes for the 2,880 competition images).
    """

    def _write_config_to_file(self) -> None:
        pass


class GCSEmulator:
    """``latency`` (seconds) delays every answer like a network round trip would; then requests
    are served concurrently (the storage itself still one at a time), as by Google."""

    def __init__(self, latency: float = 0.0) -> None:
        self.latency = latency
        self.storage_lock = threading.Lock()
        self.storage = _MemoryStorage(use_memory_fs=True)
        self.seen: list[Seen] = []
        self.faults: list[Fault] = []
        self.on_request: Callable[[Seen], None] | None = None
        self._lock = threading.Lock()
        self._httpd: HTTPServer | None = None

    def __enter__(self) -> GCSEmulator:
        # Without latency one request at a time, like the emulator's own server.
        server = ThreadingHTTPServer if self.latency else HTTPServer
        self._httpd = server(("127.0.0.1", 0), partial(_Handler, self.storage, self))
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._httpd is not None
        self._httpd.shutdown()
        self._httpd.server_close()

    @property
    def url(self) -> str:
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def create_bucket(self, name: str) -> None:
        import requests

        r = requests.post(f"{self.url}/storage/v1/b", params={"project": "test"}, json={"name": name},
                          timeout=10)
        r.raise_for_status()

    def fail(self, method: str, path: str, status: int, times: int | None = None,
             anonymous_only: bool = False) -> None:
        self.faults.append(Fault(method, re.compile(path), status, times, anonymous_only))

    def uploads(self) -> list[Seen]:
        return [s for s in self.seen if s.method == "POST" and s.path.startswith("/upload/")]

    def objects(self, bucket: str) -> dict[str, bytes]:
        import requests

        out: dict[str, bytes] = {}
        token = None
        while True:
            r = requests.get(f"{self.url}/storage/v1/b/{bucket}/o",
                             params={"pageToken": token} if token else {}, timeout=10).json()
            for item in r.get("items", []):
                out[item["name"]] = requests.get(f"{self.url}/{bucket}/{item['name']}",
                                                 timeout=10).content
            token = r.get("nextPageToken")
            if not token:
                return out

    def reset_log(self) -> None:
        with self._lock:
            self.seen.clear()

    def _note(self, seen: Seen) -> None:
        with self._lock:
            self.seen.append(seen)
        if self.on_request is not None:
            self.on_request(seen)

    def _fault(self, method: str, path: str, anonymous: bool) -> int | None:
        with self._lock:
            for f in self.faults:
                if f.method == method and f.path.fullmatch(path) and (anonymous or not f.anonymous_only):
                    if f.times is not None:
                        if f.times <= 0:
                            continue
                        f.times -= 1
                    return f.status
        return None
