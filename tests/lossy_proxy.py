"""An HTTP proxy on 127.0.0.1 that forwards to moto's server but loses responses on purpose.

For each DynamoDB operation named in ``drop`` (by its X-Amz-Target, e.g. "TransactWriteItems"), the first
``drop[op]`` requests are forwarded and *applied* by moto, then the connection is closed without an answer:
the client sees a lost response (botocore: ConnectionClosedError) and resends, exactly as on a network blip
after DynamoDB committed. For each operation named in ``throttle``, the first ``throttle[op]`` requests are
not forwarded at all and get DynamoDB's throttling answer instead, shaped exactly as the API documents it
(HTTP 400, ``__type`` ...#ThrottlingException): what a hot partition or an on-demand table past its
previous peak answers, and what moto cannot produce. Stops with ``stop()``.
"""

from __future__ import annotations

import http.client
import http.server
import json
import threading
from urllib.parse import urlsplit


class LossyProxy:
    THROTTLED = json.dumps({"__type": "com.amazonaws.dynamodb.v20120810#ThrottlingException",
                            "message": "Rate of requests exceeds the allowed throughput."}).encode()

    def __init__(self, upstream: str, drop: dict[str, int] | None = None, throttle: dict[str, int] | None = None):
        self.drop = dict(drop or {})
        self.throttle = dict(throttle or {})
        self.lock = threading.Lock()
        self.seen: list[str] = []  # operations in the order they arrived, "!" appended when dropped
        self.refused: list[str] = []  # operations the upstream answered with an error (4xx/5xx), in order
        target = urlsplit(upstream)
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                op = (self.headers.get("X-Amz-Target") or "").rpartition(".")[2]
                with proxy.lock:
                    throttled = proxy.throttle.get(op, 0) > 0
                    if throttled:
                        proxy.throttle[op] -= 1
                        proxy.seen.append(op + "~")
                if throttled:
                    self.send_response(400)
                    self.send_header("Content-Type", "application/x-amz-json-1.0")
                    self.send_header("x-amzn-RequestId", "THROTTLED0000000000000000000000000000000000000000000")
                    self.send_header("Content-Length", str(len(proxy.THROTTLED)))
                    self.end_headers()
                    self.wfile.write(proxy.THROTTLED)
                    return
                conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                conn.request("POST", self.path, body=body, headers=headers)
                answer = conn.getresponse()
                data = answer.read()
                conn.close()
                with proxy.lock:
                    lose = proxy.drop.get(op, 0) > 0
                    if lose:
                        proxy.drop[op] -= 1
                    proxy.seen.append(op + ("!" if lose else ""))
                    if answer.status >= 400:
                        proxy.refused.append(op)
                if lose:
                    self.close_connection = True  # applied upstream; the caller never hears of it
                    return
                self.send_response(answer.status)
                for k, v in answer.getheaders():
                    if k.lower() not in ("content-length", "connection", "transfer-encoding", "date", "server"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
