"""A raw TCP server for misbehaving HTTP providers: each connection's request is read
and handed, with its socket, to a script that writes whatever it likes (half an
answer, an answer a byte at a time, a body that never ends). `sent` counts the bytes
the script got onto the wire; a script stops when the client hangs up or at teardown."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

Script = Callable[["RawServer", socket.socket], None]


class RawServer:
    def __init__(self, script: Script,
                 bind: tuple[str, int] | tuple[str, int, int, int] = ("127.0.0.1", 0)) -> None:
        """`bind`: where to listen (an IPv6 address as a 4-tuple, its scope id last)."""
        self.script = script
        self.stop = threading.Event()
        self.sent = 0
        self._sock = socket.socket(socket.AF_INET6 if len(bind) == 4 else socket.AF_INET)
        self._sock.bind(bind)
        self._sock.listen()
        self._sock.settimeout(0.05)
        self._threads: list[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept)

    @property
    def port(self) -> int:
        return int(self._sock.getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write(self, conn: socket.socket, data: bytes) -> bool:
        """Send `data`; False once the client is gone or the server is stopping."""
        if self.stop.is_set():
            return False
        try:
            conn.sendall(data)
        except OSError:
            return False
        self.sent += len(data)
        return True

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            thread = threading.Thread(target=self._serve, args=(conn,))
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            data = b""
            try:
                while b"\r\n\r\n" not in data:
                    more = conn.recv(65536)
                    if not more:
                        return
                    data += more
                head, _, body = data.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(body) < length:
                    body += conn.recv(65536)
            except OSError:
                return
            self.script(self, conn)

    def __enter__(self) -> RawServer:
        self._accepting.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self._accepting.join()
        for thread in self._threads:
            thread.join()
        self._sock.close()
