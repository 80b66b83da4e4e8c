#!/usr/bin/env python3
"""SMTP intake for bench/scan.sh, timed, with the scan queue watched once a second.

  scan_load.py --port P --duration D (--full --smtp-source PATH | --rate R) [...]

Sends 10 KB messages (--bytes) to 127.0.0.1:P for D seconds, either
  --full: as fast as the server takes them, with Postfix's smtp-source (SESSIONS persistent
          connections, -d), stopped with SIGTERM at the end; or
  --rate R: paced at R messages/s by an asyncio client (SESSIONS persistent connections, each
          message in a slot of a schedule; a client behind schedule catches up at most 1 s).
What was taken is counted on the server: the worker's mailsensor_smtp_messages_total
{outcome="stored"} (--worker-metrics URL) or, for Postfix, the `status=sent` lines of its log
(--maillog FILE). With --api-metrics URL, mailsensor_scan_queue_depth and
mailsensor_messages_scanned_total are sampled every second during the run, then every 0.5 s after
it until the depth is 0 and every message taken has been scanned (at most --drain-max seconds).
With --api-readyz URL, each sample also asks the API's /readyz, as a probe would.
Prints one JSON object.
"""
import argparse
import asyncio
import collections
import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request


def metric_sum(text, name, labels=""):
    total, seen = 0.0, False
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        m = re.match(rf"^{re.escape(name)}(\{{[^}}]*\}})? ([0-9.eE+-]+|NaN)$", line)
        if m and labels in (m.group(1) or ""):
            total += float(m.group(2)) if m.group(2) != "NaN" else 0.0
            seen = True
    return total if seen else None


def fetch(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.read().decode("utf-8", "replace")
    except Exception:
        return None


def readiness(url):
    """What /readyz said: ready, degraded, "http <code>" or "no answer" (within 2 s, as a probe)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return json.loads(r.read()).get("status", "?")
    except urllib.error.HTTPError as e:
        return f"http {e.code}"
    except Exception:
        return "no answer"


class Counters:
    def __init__(self, a):
        self.a = a
        self.maillog_offset = 0
        self.maillog_sent = 0

    def taken(self):
        if self.a.maillog:
            with open(self.a.maillog, "rb") as f:
                f.seek(self.maillog_offset)
                chunk = f.read()
            # Only whole lines.
            cut = chunk.rfind(b"\n") + 1
            self.maillog_offset += cut
            self.maillog_sent += chunk[:cut].count(b"status=sent")
            return self.maillog_sent
        text = fetch(self.a.worker_metrics)
        v = metric_sum(text or "", "mailsensor_smtp_messages_total", 'outcome="stored"')
        return int(v or 0)

    def queue(self):
        """(depth, scanned, failures) from the API, None where unknown."""
        if not self.a.api_metrics:
            return None, None, None
        text = fetch(self.a.api_metrics)
        if text is None:
            return None, None, None
        depth = metric_sum(text, "mailsensor_scan_queue_depth")
        scanned = metric_sum(text, "mailsensor_messages_scanned_total")
        failures = metric_sum(text, "mailsensor_scan_failures_total")
        return (None if depth is None else int(depth), int(scanned or 0), int(failures or 0))


def smtp_body(payload_bytes):
    lines, left, i = [], payload_bytes, 0
    while left > 0:
        n = min(80, left)
        text = n - 2 if n >= 3 else 1
        lines.append((str(i % 10) + "X" * (text - 1)).encode() + b"\r\n")
        left -= text + 2
        i += 1
    return b"".join(lines) + b".\r\n"


async def reply(reader):
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("closed by the server")
        if len(line) < 4 or line[3:4] != b"-":
            try:
                return int(line[:3])
            except ValueError:
                return 0


async def paced(a, stop_at, stats):
    body = smtp_body(a.bytes)
    interval = 1.0 / a.rate
    state = {"next": time.monotonic()}

    async def session(n):
        while time.monotonic() < stop_at:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", a.port)
            except OSError:
                stats["errors"] += 1
                await asyncio.sleep(0.1)
                continue
            try:
                if await reply(reader) != 220:
                    stats["errors"] += 1
                    return
                writer.write(b"EHLO bench-client.example.net\r\n")
                if await reply(reader) != 250:
                    stats["errors"] += 1
                    return
                while True:
                    now = time.monotonic()
                    state["next"] = max(state["next"], now - 1.0)  # catch up at most 1 s
                    slot = state["next"]
                    state["next"] += interval
                    if slot > now:
                        await asyncio.sleep(slot - now)
                    if time.monotonic() >= stop_at:
                        break
                    stats["sent"] += 1
                    writer.write(b"MAIL FROM:<bench-sender@bench.example.net>\r\n")
                    if await reply(reader) != 250:
                        writer.write(b"RSET\r\n"); await reply(reader); stats["refused"] += 1
                        continue
                    writer.write(b"RCPT TO:<bench-rcpt@example.com>\r\n")
                    if await reply(reader) // 100 != 2:
                        writer.write(b"RSET\r\n"); await reply(reader); stats["refused"] += 1
                        continue
                    writer.write(b"DATA\r\n")
                    if await reply(reader) != 354:
                        writer.write(b"RSET\r\n"); await reply(reader); stats["refused"] += 1
                        continue
                    head = (f"From: <bench-sender@bench.example.net>\r\nTo: <bench-rcpt@example.com>\r\n"
                            f"Subject: mailsensor scan bench\r\n"
                            f"Message-ID: <{os.getpid()}.{n}.{time.time_ns()}@bench.example.net>\r\n\r\n").encode()
                    writer.write(head + body)
                    await writer.drain()
                    if await reply(reader) == 250:
                        stats["ok"] += 1
                    else:
                        stats["refused"] += 1
                writer.write(b"QUIT\r\n")
                try:
                    await asyncio.wait_for(reply(reader), 2)
                except Exception:
                    pass
                return
            except (OSError, ConnectionError):
                stats["errors"] += 1
            finally:
                writer.close()

    await asyncio.gather(*(session(n) for n in range(a.sessions)))


async def main_async(a):
    c = Counters(a)
    samples = []

    def sample(phase, t0):
        depth, scanned, failures = c.queue()
        s = {"t": round(time.monotonic() - t0, 2), "phase": phase, "taken": c.taken(), "depth": depth,
             "scanned": scanned, "failures": failures}
        if a.api_readyz:
            s["readyz"] = readiness(a.api_readyz)
        samples.append(s)
        return s

    t0 = time.monotonic()
    first = await asyncio.to_thread(sample, "start", t0)
    stats = {"sent": 0, "ok": 0, "refused": 0, "errors": 0}
    proc = None
    stop_at = t0 + a.duration
    if a.full:
        cmd = [a.smtp_source, "-4", "-d", "-s", str(a.sessions), "-m", "100000000", "-l", str(a.bytes),
               "-M", "bench-client.example.net", "-f", "bench-sender@bench.example.net",
               "-t", "bench-rcpt@example.com", f"127.0.0.1:{a.port}"]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        sender = None
    else:
        sender = asyncio.create_task(paced(a, stop_at, stats))
    # During the run: one sample a second.
    k = 1
    while time.monotonic() < stop_at:
        await asyncio.sleep(max(0.0, min(t0 + k, stop_at) - time.monotonic()))
        k += 1
        if time.monotonic() < stop_at - 0.05:
            await asyncio.to_thread(sample, "run", t0)
    smtp_source_rc, smtp_source_err = None, ""
    if proc is not None:
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        smtp_source_rc, smtp_source_err = proc.returncode, err.decode("utf-8", "replace")[:500]
    if sender is not None:
        try:
            await asyncio.wait_for(sender, 15)
        except asyncio.TimeoutError:
            sender.cancel()
    end = await asyncio.to_thread(sample, "end", t0)
    run_secs = end["t"]
    taken = end["taken"] - first["taken"]
    # After the run: until the queue is empty and everything taken is scanned.
    drained_at = all_scanned_at = None
    if a.api_metrics:
        deadline = time.monotonic() + a.drain_max
        while time.monotonic() < deadline:
            s = await asyncio.to_thread(sample, "drain", t0)
            after = round(s["t"] - run_secs, 2)
            if s["depth"] == 0 and drained_at is None:
                drained_at = after
            if s["scanned"] is not None and s["scanned"] - first["scanned"] >= taken and all_scanned_at is None:
                all_scanned_at = after
            if drained_at is not None and all_scanned_at is not None:
                break
            await asyncio.sleep(0.5)
    last = samples[-1]
    run_samples = [s for s in samples if s["phase"] in ("run", "end")]
    depths = [s["depth"] for s in samples if s["depth"] is not None]
    scanned_run = None if end["scanned"] is None else end["scanned"] - first["scanned"]
    scanned_total = None if last["scanned"] is None else last["scanned"] - first["scanned"]
    out = {
        "mode": "full" if a.full else "paced", "target_rate": a.rate, "duration_s": a.duration,
        "run_s": run_secs, "taken": taken, "intake_rate": round(taken / run_secs, 1) if run_secs else None,
        "scanned_during_run": scanned_run,
        "scanned_rate_during_run": None if scanned_run is None else round(scanned_run / run_secs, 1),
        "depth_at_start": first["depth"], "depth_at_end": end["depth"], "depth_last": last["depth"],
        "max_depth": max(depths) if depths else None,
        "drain_s": drained_at, "all_scanned_s": all_scanned_at, "drain_max_s": a.drain_max,
        "scanned_total": scanned_total,
        # The scan rate once intake stopped: what the drain runs at (estimates a drain cut short).
        "scanned_rate_after": (round((last["scanned"] - end["scanned"]) / (last["t"] - run_secs), 1)
                               if last["scanned"] is not None and end["scanned"] is not None
                               and last["t"] > run_secs + 1 else None),
        "scanned_rate_overall": (round(scanned_total / (run_secs + all_scanned_at), 1)
                                 if scanned_total is not None and all_scanned_at is not None else None),
        "scan_failures": None if last["failures"] is None else last["failures"] - (first["failures"] or 0),
        "client": stats if not a.full else None,
        "smtp_source_rc": smtp_source_rc, "smtp_source_stderr": smtp_source_err,
        "depth_per_second": [s["depth"] for s in run_samples],
        # What a readiness probe saw of the API, once a second during the run and every half second
        # of the drain: a daemon starved of CPU, or a database slow to answer, shows here.
        "readyz": {phase: dict(collections.Counter(s["readyz"] for s in samples if s["phase"] in phases))
                   for phase, phases in (("run", ("run", "end")), ("drain", ("drain",)))}
        if a.api_readyz else None,
        "samples": samples,
    }
    print(json.dumps(out))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--duration", type=float, default=60)
    p.add_argument("--full", action="store_true")
    p.add_argument("--smtp-source", default="/usr/sbin/smtp-source")
    p.add_argument("--rate", type=float)
    p.add_argument("--sessions", type=int, default=20)
    p.add_argument("--bytes", type=int, default=10240)
    p.add_argument("--worker-metrics")
    p.add_argument("--maillog")
    p.add_argument("--api-metrics")
    p.add_argument("--api-readyz")
    p.add_argument("--drain-max", type=float, default=120)
    a = p.parse_args()
    if not a.full and not a.rate:
        p.error("--full or --rate R")
    if not a.worker_metrics and not a.maillog:
        p.error("--worker-metrics URL or --maillog FILE")
    asyncio.run(main_async(a))


if __name__ == "__main__":
    main()
