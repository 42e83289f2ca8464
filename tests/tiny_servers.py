"""Tiny misbehaving "nodes" on 127.0.0.1 for the master-side tests of ``HttpRemote``.

- :class:`CannedNode`: an HTTP server answering whatever a function says (garbage, errors,
  redirects) and recording what it was asked;
- :class:`SilentNode`: accepts connections and never answers (a hung node);
- :class:`FullBacklogNode`: a listening socket whose accept queue is full, so a new
  connection is never established (a connect timeout, without leaving loopback);
- :func:`closed_port`: a port nothing listens on (a node that is down).

Each is a context manager that stops its thread and closes its sockets.
"""

from __future__ import annotations

import http.server
import select
import socket
import threading
from collections.abc import Callable
from typing import Any

Answer = tuple[int, dict[str, str], bytes]


def closed_port() -> int:
    """A port on 127.0.0.1 with nothing listening (bound and released at once)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class CannedNode:
    """An HTTP server whose answers come from ``respond(method, path, headers, body)``."""

    def __init__(self, respond: Callable[[str, str, dict[str, str], bytes], Answer]) -> None:
        self.requests: list[dict[str, Any]] = []
        node = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k: v for k, v in self.headers.items()}
                node.requests.append({"method": self.command, "path": self.path, "headers": headers, "body": body})
                status, extra, content = respond(self.command, self.path, headers, body)
                self.send_response(status)
                for key, value in extra.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = do_DELETE = _serve

            def log_message(self, *args: Any) -> None:  # keep pytest output clean
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> CannedNode:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


class SilentNode:
    """Accepts every connection, reads what is sent, and never answers."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.accepted = 0
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            readable, _, _ = select.select([self.listener, *self._conns], [], [], 0.05)
            for sock in readable:
                if sock is self.listener:
                    conn, _ = self.listener.accept()
                    self._conns.append(conn)
                    self.accepted += 1
                else:
                    try:
                        data = sock.recv(65536)
                    except OSError:
                        data = b""
                    if not data:
                        self._conns.remove(sock)
                        sock.close()

    def __enter__(self) -> SilentNode:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._stop.set()
        self.thread.join(timeout=5)
        for conn in self._conns:
            conn.close()
        self.listener.close()


class FullBacklogNode:
    """A listener that never accepts, with its accept queue filled: further connection
    attempts get no answer to their SYN, so they time out while connecting."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(0)
        port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self._fillers: list[socket.socket] = []
        for _ in range(8):  # bounded: the queue holds one or two connections
            filler = socket.socket()
            filler.settimeout(0.3)
            try:
                filler.connect(("127.0.0.1", port))
            except OSError:
                filler.close()
                break  # the queue is full: this attempt got no answer
            self._fillers.append(filler)
        else:
            self.close()
            raise RuntimeError("could not fill the accept queue")

    def close(self) -> None:
        for filler in self._fillers:
            filler.close()
        self.listener.close()

    def __enter__(self) -> FullBacklogNode:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


class FlakyNode:
    """Drops the first ``drop`` connections without answering (the connection is closed
    as soon as the request arrives), then answers every request with ``answer``."""

    def __init__(self, drop: int, answer: Answer) -> None:
        self.drop = drop
        self.answer = answer
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.listener.settimeout(0.05)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.accepted = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            with conn:
                conn.settimeout(2)
                try:
                    conn.recv(65536)
                except OSError:
                    continue
                if self.accepted <= self.drop:
                    continue  # closed without a word
                status, headers, body = self.answer
                lines = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}", "Connection: close"]
                lines += [f"{k}: {v}" for k, v in headers.items()]
                try:
                    conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
                except OSError:
                    continue

    def __enter__(self) -> FlakyNode:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._stop.set()
        self.thread.join(timeout=5)
        self.listener.close()
