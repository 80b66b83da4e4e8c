"""A webhook receiver for the alert tests, verifying with the `standardwebhooks` library (PyPI).

    python3 webhook.py PORT DIR

DIR/secrets.json: the secrets to verify with (a list; each is tried on its own, so a test sees
which of them signed). DIR/control.json: how to answer ({"status": 200, "retry_after": null,
"delay": 0}), read on every request. Each request is appended to DIR/received.jsonl.

Served by aiohttp (PyPI) on one asyncio loop, kept-alive as a production receiver would. The
standard library's ThreadingHTTPServer took a thread per connection: at ~650–950 webhooks/s over
dozens of connections its threads queued for the GIL, an answer took 25–45 ms and the receiver
40–46 % of a core (`bench/alerts.sh`), so the benchmark measured the receiver more than the sender.
"""
import asyncio
import json
import os
import sys
import time

from aiohttp import web
from standardwebhooks.webhooks import Webhook

port, folder = int(sys.argv[1]), sys.argv[2]
# Line-buffered: each record is in the file as soon as it is written (the tests read it).
log = open(os.path.join(folder, "received.jsonl"), "a", buffering=1)


def read(name, default):
    try:
        with open(os.path.join(folder, name)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


async def hook(request):
    body = await request.read()
    control = read("control.json", {})
    headers = {k.lower(): v for k, v in request.headers.items()}
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
    log.write(json.dumps(record) + "\n")
    await asyncio.sleep(control.get("delay", 0))
    answer_headers = {}
    if control.get("retry_after") is not None:
        answer_headers["Retry-After"] = str(control["retry_after"])
    text = "received" if status < 300 else "not now"
    return web.Response(status=status, text=text, headers=answer_headers)


app = web.Application(client_max_size=64 * 1024 * 1024)
app.router.add_post("/{path:.*}", hook)
web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)
