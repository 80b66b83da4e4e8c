"""A webhook receiver for the alert tests, verifying with the `standardwebhooks` library (PyPI).

    python3 webhook.py PORT DIR

DIR/secrets.json: the secrets to verify with (a list; each is tried on its own, so a test sees
which of them signed). DIR/control.json: how to answer ({"status": 200, "retry_after": null,
"delay": 0}), read on every request. Each request is appended to DIR/received.jsonl.
"""
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook

port, folder = int(sys.argv[1]), sys.argv[2]


def read(name, default):
    try:
        with open(os.path.join(folder, name)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


class Handler(BaseHTTPRequestHandler):
    # Keep-alive, as a production receiver would, and answers not held back by Nagle.
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        control = read("control.json", {})
        headers = {k.lower(): v for k, v in self.headers.items()}
        verified = []
        for secret in read("secrets.json", []):
            try:
                Webhook(secret).verify(body, headers)
                verified.append(True)
            except Exception:
                verified.append(False)
        status = control.get("status", 200)
        record = {
            "received_at": time.time(),
            "id": headers.get("webhook-id"),
            "timestamp": headers.get("webhook-timestamp"),
            "signatures": headers.get("webhook-signature", "").split(" "),
            "verified": verified,
            "answered": status,
            "event": json.loads(body or b"null"),
        }
        # Recorded on arrival, before any delay: a test sees a request in flight.
        with open(os.path.join(folder, "received.jsonl"), "a") as f:
            f.write(json.dumps(record) + "\n")
        time.sleep(control.get("delay", 0))
        self.send_response(status)
        if control.get("retry_after") is not None:
            self.send_header("Retry-After", str(control["retry_after"]))
        answer = b"received" if status < 300 else b"not now"
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
