"""Test helper: a real HTTP server on 127.0.0.1 that records every path it is asked for
(`/redirect-out` redirects to `localhost`'s `/hello`, `/big` is 5000 bytes)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class LocalSite:
    def __init__(self, server: ThreadingHTTPServer) -> None:
        self.server = server
        self.port = server.server_address[1]
        self.requests: list[str] = []

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@contextmanager
def local_site() -> Iterator[LocalSite]:
    holder: list[LocalSite] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            holder[0].requests.append(self.path)
            if self.path == "/redirect-out":
                self.send_response(302)
                self.send_header("Location", f"http://localhost:{holder[0].port}/hello")
                self.end_headers()
                return
            body = b"z" * 5000 if self.path == "/big" else b"hello from the test site"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    holder.append(LocalSite(server))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield holder[0]
    finally:
        server.shutdown()
        server.server_close()
