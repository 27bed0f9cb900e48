"""Loopback stand-ins for the outside world, each a real server the product talks to.

- :class:`ShopMonkeyApi`: the v3 API's records (customer, vehicle, order, built
  by ``bench/_shopmonkey_mock.py``) and its order list (``where`` on
  ``updatedDate``, ``orderby``, ``limit``/``skip``, ``meta.hasMore``), with an
  outage switch: ``up``, ``503`` (every call answered 503) or ``refuse`` (the
  port closed: connections refused).
- :class:`TwilioStub`: the Messages API of Twilio; every accepted message is
  written to its ledger (what the provider received, whatever the product
  recorded).
- :class:`HangingServer`: an AI provider that accepts connections and then never
  answers (``silent``), or answers the headers and the first event of a
  stream and then nothing more (``stall``).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import socket
import threading
import time
import urllib.parse
import uuid
from collections import Counter
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.faults.harness import LOOPBACK, REPO_ROOT


@functools.cache
def bench_module(name: str) -> Any:
    """A helper module of bench/ (not a package), imported by path on first use (not
    when ``make test`` collects these modules)."""
    path = REPO_ROOT / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"faults_{name}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sm_records() -> Any:
    """bench/_shopmonkey_mock.py: customer, vehicle and order records built from ids."""
    return bench_module("_shopmonkey_mock")


def iso(moment: datetime) -> str:
    return (
        moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        + f"{moment.microsecond // 1000:03d}Z"
    )


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


class _LoopbackService:
    """A ThreadingHTTPServer on a fixed loopback port that can be closed and reopened."""

    def __init__(self) -> None:
        self.port = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def handler(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def open(self) -> None:
        self._server = _Server((LOOPBACK, self.port), self.handler())
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            daemon=True,
        )
        self._thread.start()

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            if self._thread is not None:
                self._thread.join(timeout=5)
        self._server, self._thread = None, None

    def __enter__(self) -> _LoopbackService:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _json_handler(service: Any) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _reply(self, status: int, body: dict[str, Any]) -> None:
            raw = json.dumps(body, separators=(",", ":")).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def do_GET(self) -> None:
            self._handle("GET", b"")

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self._handle("POST", self.rfile.read(length))

        def _handle(self, method: str, body: bytes) -> None:
            answer = service.answer(method, self.path, body)
            if answer is None:  # refusing: drop a kept-alive connection unanswered
                self.close_connection = True
                return
            self._reply(*answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


class ShopMonkeyApi(_LoopbackService):
    def __init__(self, *, location_id: str, workflow_status_id: str) -> None:
        super().__init__()
        self.location_id = location_id
        self.workflow_status_id = workflow_status_id
        self.mode = "up"
        self.delay = 0.0  # seconds each record call waits before its answer
        self.orders: dict[str, dict[str, Any]] = {}
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()

    def handler(self) -> type[BaseHTTPRequestHandler]:
        return _json_handler(self)

    def set_mode(self, mode: str) -> None:
        """``up``, ``503`` or ``refuse``."""
        if mode == self.mode:
            return
        if mode == "refuse":
            self.close()
        elif self.mode == "refuse":
            self.open()
        self.mode = mode

    def add_order(self, number: int) -> str:
        """A new website-lead order, updated now, visible in the list."""
        order_id = str(uuid.uuid4())
        record = self.order(order_id, number=number)
        now = iso(datetime.now(UTC))
        record.update(createdDate=now, orderCreatedDate=now, updatedDate=now)
        with self._lock:
            self.orders[order_id] = record
        return order_id

    def order(self, order_id: str, *, number: int | None = None) -> dict[str, Any]:
        record = sm_records().order_record(
            order_id,
            location_id=self.location_id,
            workflow_status_id=self.workflow_status_id,
            number=number,
        )
        record["name"] = f"New Quote - fault order {record['number']}"
        return record

    def answer(
        self, method: str, path: str, body: bytes
    ) -> tuple[int, dict[str, Any]] | None:
        url = urllib.parse.urlsplit(path)
        parts = url.path.strip("/").split("/")
        kind = parts[1] if len(parts) >= 2 and parts[0] == "v3" else "other"
        kind = f"{kind}-list" if len(parts) == 2 else kind
        with self._lock:
            self.calls[f"{self.mode}:{kind}"] += 1
        if self.mode == "refuse":
            # The port is closed; a connection opened before is cut without an answer.
            return None
        if self.mode == "503":
            return 503, {
                "success": False,
                "message": "Service Unavailable",
                "code": "E503",
            }
        if kind == "order-list":
            return 200, self._list(urllib.parse.parse_qs(url.query))
        if len(parts) != 3 or kind not in {"customer", "vehicle", "order"}:
            return 404, {"success": False, "message": "Not found", "code": "NF"}
        record_id = parts[2]
        if self.delay:
            time.sleep(self.delay)
        if kind == "customer":
            data = sm_records().customer_record(record_id)
        elif kind == "vehicle":
            data = sm_records().vehicle_record(record_id)
        else:
            with self._lock:
                data = self.orders.get(record_id) or self.order(record_id)
        return 200, {"success": True, "data": data}

    def _list(self, query: dict[str, list[str]]) -> dict[str, Any]:
        limit = min(100, int(query.get("limit", ["100"])[0]))
        skip = int(query.get("skip", ["0"])[0])
        where = json.loads(query.get("where", ["{}"])[0])
        since = where.get("updatedDate", {}).get("gte")
        with self._lock:
            rows = list(self.orders.values())
        if since:
            rows = [r for r in rows if r["updatedDate"] >= since]
        rows.sort(key=lambda r: (r["updatedDate"], r["id"]))
        page = rows[skip : skip + limit]
        return {
            "success": True,
            "data": page,
            "meta": {"total": len(rows), "hasMore": skip + len(page) < len(rows)},
        }


class TwilioStub(_LoopbackService):
    """POST /2010-04-01/Accounts/<sid>/Messages.json: 201 and a ledger entry, after ``delay`` s."""

    def __init__(self, *, delay: float = 0.0) -> None:
        super().__init__()
        self.delay = delay
        self.ledger: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def handler(self) -> type[BaseHTTPRequestHandler]:
        return _json_handler(self)

    def answer(self, method: str, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        if method != "POST" or not path.split("?")[0].endswith("/Messages.json"):
            return 404, {"code": 20404, "message": "Not found", "status": 404}
        form = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode()).items()}
        if self.delay:
            time.sleep(self.delay)
        with self._lock:
            sid = f"SM{len(self.ledger) + 1:032d}"
            self.ledger.append(
                {"sid": sid, "to": form.get("To", ""), "at": time.time()}
            )
        return 201, {
            "sid": sid,
            "status": "queued",
            "to": form.get("To"),
            "from": form.get("From"),
            "body": form.get("Body"),
            "num_segments": "1",
            "date_created": None,
        }

    def received(self) -> Counter[str]:
        with self._lock:
            return Counter(entry["to"] for entry in self.ledger)


class HangingServer:
    """Accepts connections and reads requests; ``silent`` never answers, ``stall`` answers
    the response head and a stream's first events, then nothing."""

    STALL_HEAD = (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
        b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n"
    )

    def __init__(self, *, mode: str = "silent") -> None:
        self.mode = mode
        self.accepted = 0
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((LOOPBACK, 0))
        self._sock.listen(64)
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self._clients: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def __enter__(self) -> HangingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for client in self._clients:
            with contextlib.suppress(OSError):
                client.close()
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            self._clients.append(client)
            if self.mode == "stall":
                threading.Thread(
                    target=self._stall, args=(client,), daemon=True
                ).start()

    def _stall(self, client: socket.socket) -> None:
        client.settimeout(5)
        data = b""
        with contextlib.suppress(OSError):
            while b"\r\n\r\n" not in data:
                chunk = client.recv(65536)
                if not chunk:
                    return
                data += chunk
            start = {
                "type": "message_start",
                "message": {
                    "id": "msg_stall",
                    "type": "message",
                    "role": "assistant",
                    "model": "claude-stall",
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": 10, "output_tokens": 1},
                },
            }
            events = (
                f"event: message_start\ndata: {json.dumps(start)}\n\n"
                'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
                '"content_block":{"type":"text","text":""}}\n\n'
                'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
                '"delta":{"type":"text_delta","text":"Let me check "}}\n\n'
            ).encode()
            client.sendall(
                self.STALL_HEAD + f"{len(events):x}\r\n".encode() + events + b"\r\n"
            )
