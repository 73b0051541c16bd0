"""A scripted local HTTP server for the webhook and SMS channel tests: answers each
request with the next scripted reply (a status, or a Reply with a delay and a body)
and records what it received."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes


@dataclass(frozen=True)
class Reply:
    status: int = 200
    sleep: float = 0.0  # seconds to wait before answering (cut short at teardown)
    body: bytes = b'{"ok":true}'


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def _handle(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        reply = self.server.owner.take(Received(
            self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        if reply.sleep:
            self.server.owner.release.wait(reply.sleep)
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins the handler threads
    owner: ScriptedServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # the client hung up on a slow answer: expected in the timeout tests


class ScriptedServer:
    def __init__(self, default: Reply | None = None) -> None:
        self.script: list[Reply | int] = []
        self.default = default or Reply()
        self.requests: list[Received] = []
        self.release = threading.Event()
        self._lock = threading.Lock()
        self.httpd = _Server(("127.0.0.1", 0), _Handler)
        self.httpd.owner = self
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.01})

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def take(self, received: Received) -> Reply:
        with self._lock:
            self.requests.append(received)
            item = self.script.pop(0) if self.script else self.default
            return item if isinstance(item, Reply) else Reply(item)

    def __enter__(self) -> ScriptedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()
