"""A tiny completion-notice receiver for trying `qsub --notify` (binds 127.0.0.1 only).

    python scripts/notify_listener.py 8765 [COUNT]

Prints each notice's JSON, and whether its X-Hyper-Signature matches HYPER_NOTIFY_SECRET when that is set;
answers 204, and exits after COUNT POSTs (default 1).
"""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import os
import sys


RECEIVED = []


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        RECEIVED.append(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        secret = os.environ.get("HYPER_NOTIFY_SECRET")
        if secret:
            want = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
            ok = hmac.compare_digest(want, self.headers.get("X-Hyper-Signature", ""))
            print(f"signature {'ok' if ok else 'WRONG'}", flush=True)
        print(json.dumps(json.loads(body), indent=1, sort_keys=True), flush=True)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8765
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    server = http.server.HTTPServer(("127.0.0.1", port), Handler)
    while len(RECEIVED) < count:  # (qsub's reachability check connects without a request: not counted)
        server.handle_request()


if __name__ == "__main__":
    main()
