"""A fault-injecting HTTP proxy in front of a real S3 server (Garage), for
the reliability suite: Fulcrum's S3 backend points at the proxy, the proxy
forwards every request unchanged (Host header included, so SigV4 still
verifies) and, as the test sets it, answers some with 500, cuts the
connection, or delays them.

    proxy = FaultProxy("http://127.0.0.1:3900").start()
    proxy.set(error_rate=0.5, methods={"PUT"}, delay=0.2)
    ... proxy.endpoint ...
    proxy.stop()
"""

from __future__ import annotations

import http.client
import random
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "trailer"}


class FaultProxy:
    def __init__(self, upstream: str, seed: int = 1):
        u = urllib.parse.urlsplit(upstream)
        self.up_host, self.up_port = u.hostname, u.port or 80
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.error_rate = 0.0
        self.drop_rate = 0.0
        self.delay = 0.0
        self.methods: set[str] | None = None
        self.injected = 0
        self.forwarded = 0
        self.server: ThreadingHTTPServer | None = None

    def set(self, error_rate=0.0, drop_rate=0.0, delay=0.0, methods=None):
        with self.lock:
            self.error_rate, self.drop_rate, self.delay = error_rate, drop_rate, delay
            self.methods = set(methods) if methods else None

    def clear(self):
        self.set()

    def _decide(self, method: str) -> str:
        with self.lock:
            if self.methods is not None and method not in self.methods:
                return "pass"
            r = self.rng.random()
            if r < self.error_rate:
                self.injected += 1
                return "error"
            if r < self.error_rate + self.drop_rate:
                self.injected += 1
                return "drop"
            return "pass"

    @property
    def endpoint(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> "FaultProxy":
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    out = bytearray()
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return bytes(out)
                        out += self.rfile.read(size)
                        self.rfile.readline()
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def _handle(self):
                body = self._body()
                if proxy.delay:
                    time.sleep(proxy.delay)
                action = proxy._decide(self.command)
                if action == "drop":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if action == "error":
                    msg = b"<?xml version=\"1.0\"?><Error><Code>InternalError</Code><Message>injected</Message></Error>"
                    self.send_response(500)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(msg)))
                    self.end_headers()
                    self.wfile.write(msg)
                    return
                conn = http.client.HTTPConnection(proxy.up_host, proxy.up_port, timeout=120)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
                headers["Content-Length"] = str(len(body))
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status, resp.reason)
                for k, v in resp.getheaders():
                    if k.lower() not in HOP and k.lower() != "content-length":
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()
                with proxy.lock:
                    proxy.forwarded += 1

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
