"""The ShopMonkey v3 API on loopback for end-to-end tests: a real HTTP server in a
thread of the test process that records every request.

Serves the recorded fixtures (tests/fixtures/shopmonkey) for customers,
vehicles and orders, an empty order list (polling), and the appointment
endpoints: ``POST /v3/appointment`` answers the fixture's created appointment
with a fresh id and the dates that were sent; ``PUT``/``DELETE`` answer success.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "shopmonkey"
RECORD = re.compile(r"^/v3/(customer|vehicle|order)/([^/]+)$")
APPOINTMENT = re.compile(r"^/v3/appointment(?:/([^/]+))?$")


def _fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())["data"]


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


class ShopMonkeyAPI:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: list[Call] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="shopmonkey-api",
            daemon=True,
        )

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def calls(self, method: str | None = None, path: str | None = None) -> list[Call]:
        with self._lock:
            return [
                call
                for call in self._calls
                if (method is None or call.method == method)
                and (path is None or call.path == path)
            ]

    def start(self) -> ShopMonkeyAPI:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=5)
        self._server.server_close()

    def answer(self, call: Call) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self._calls.append(call)
        path = call.path.split("?", 1)[0]
        if call.method == "GET" and path == "/v3/order":
            return 200, {"success": True, "data": [], "meta": {"hasMore": False}}
        record = RECORD.match(path)
        if call.method == "GET" and record:
            kind, record_id = record.groups()
            name = "order_website_lead.json" if kind == "order" else f"{kind}.json"
            return 200, {"success": True, "data": {**_fixture(name), "id": record_id}}
        appointment = APPOINTMENT.match(path)
        if appointment and call.method == "POST" and appointment.group(1) is None:
            data = copy.deepcopy(_fixture("appointment_created.json"))
            body = call.body if isinstance(call.body, dict) else {}
            data.update({k: v for k, v in body.items() if k in data})
            data["id"] = str(uuid.uuid4())
            return 200, {"success": True, "data": data}
        if appointment and call.method in {"PUT", "DELETE"} and appointment.group(1):
            return 200, {"success": True, "data": {"id": appointment.group(1)}}
        return 404, {"success": False, "message": "Not found", "code": "NF"}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode(errors="replace")
                call = Call(
                    method=self.command,
                    path=self.path,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
                status, answer = api.answer(call)
                out = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_POST = do_PUT = do_DELETE = _serve  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


@contextmanager
def shopmonkey_api() -> Iterator[ShopMonkeyAPI]:
    api = ShopMonkeyAPI().start()
    try:
        yield api
    finally:
        api.stop()
