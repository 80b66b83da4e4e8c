#!/usr/bin/env python3
"""The load, the watching and the report of bench/alerts.sh (issue 18).

  alerts_measure.py warmup --port P --count N --webhook-dir D --syslog-file F --maildir M [--timeout S]
      N malicious messages one after another, then waits until each receiver holds N events.
  alerts_measure.py run --port P --rate R --duration S --sessions N --api-metrics URL
                        --worker-metrics URL --webhook-dir D --syslog-file F --maildir M
                        [--drain-max S] [--cpu NAME=PID[+]]... --out JSON
      R malicious messages/s (EICAR in the body: the built-in checks say `malicious`) for S seconds
      through SMTP, paced by an asyncio client (N persistent connections, commands pipelined, each
      message in a slot of a schedule; a client behind schedule catches up at most 1 s). Once a
      second, during the load and after it: the API's /metrics (mailsensor_alert_outbox_depth,
      mailsensor_scan_queue_depth, scanned, events raised, delivery attempts), the worker's stored
      count, and what each receiver holds. After the load it goes on until every message taken is
      scanned, both queues are empty and every event raised is at every receiver, or --drain-max s.
      CPU of the processes named with --cpu (NAME=PID; NAME=PID+ adds its descendants; NAME=postgres
      takes every process named postgres) and the whole machine's busy time (/proc/stat) at the
      start, the end of the load and the end.
  alerts_measure.py report --run JSON --api URL --tenant T --webhook-dir D --syslog-file F
                           --maildir M [--skip S] [--out JSON]   (token in $ALERTS_TOKEN)
      Reads every event of the tenant from GET /v1/tenants/T/alert-events (id, timestamp) and what
      each receiver got: latency = receipt - the event's timestamp (written in the transaction
      that commits the verdict). Receipt: the webhook receiver's time.time() on arrival, rsyslog's
      %timegenerated% (microseconds), the Maildir file's mtime (Postfix's virtual agent wrote it).
      Prints the tables; an event never received counts as infinitely late in the percentiles.
"""
import argparse
import asyncio
import datetime as dt
import json
import math
import os
import re
import statistics
import sys
import time
import urllib.request

EICAR = r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
SENDER = "bench-sender@bench.example.net"
RCPT = "bench-rcpt@example.com"
UUID_RE = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
STORED_RE = re.compile(rf"<({UUID_RE})> stored")
CS5_RE = re.compile(rf"\bcs5=({UUID_RE})")
RT_RE = re.compile(r"\brt=(\d+)")
# The event ids of an alert mail (one alert, or a digest of those that piled up), folded.
EVENTS_RE = re.compile(rb"^X-Mailsensor-Events:((?:[^\r\n]*)(?:\r?\n[ \t][^\r\n]*)*)", re.I | re.M)
UUID_BYTES_RE = re.compile(UUID_RE.encode())
ALL = ("webhook", "syslog", "email")
DESTS = ALL  # the destinations of this run (--dests)


# ---------------------------------------------------------------- metrics and /proc
def fetch(url, token=None, timeout=5):
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.read().decode("utf-8", "replace")
    except Exception:
        return None


def metric_sum(text, name, labels=()):
    """Sum of the samples of `name` whose labels include every one of `labels`; None if none."""
    total, seen = 0.0, False
    for line in (text or "").splitlines():
        if not line.startswith(name):
            continue
        m = re.match(rf"^{re.escape(name)}(\{{[^}}]*\}})? ([0-9.eE+-]+|NaN)$", line)
        if m and all(lab in (m.group(1) or "") for lab in labels):
            total += float(m.group(2)) if m.group(2) != "NaN" else 0.0
            seen = True
    return total if seen else None


def api_snapshot(text):
    g = lambda *a: metric_sum(text, *a)  # noqa: E731
    snap = {
        "outbox": g("mailsensor_alert_outbox_depth"),
        "scan_depth": g("mailsensor_scan_queue_depth"),
        "scanned": g("mailsensor_messages_scanned_total"),
        "events": g("mailsensor_alert_events_total", ('type="message.detected"',)),
    }
    for kind in ALL:
        snap[f"att_{kind}_ok"] = g("mailsensor_alert_attempts_total", (f'kind="{kind}"', 'outcome="delivered"'))
        snap[f"att_{kind}_all"] = g("mailsensor_alert_attempts_total", (f'kind="{kind}"',))
        snap[f"lat_{kind}_sum"] = g("mailsensor_alert_delivery_latency_seconds_sum", (f'kind="{kind}"',))
        snap[f"lat_{kind}_count"] = g("mailsensor_alert_delivery_latency_seconds_count", (f'kind="{kind}"',))
        snap[f"try_{kind}_sum"] = g("mailsensor_alert_attempt_seconds_sum", (f'kind="{kind}"',))
        snap[f"try_{kind}_count"] = g("mailsensor_alert_attempt_seconds_count", (f'kind="{kind}"',))
    return snap


CLK = os.sysconf("SC_CLK_TCK")


def _stat(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    rest = s[s.rindex(")") + 2:].split()
    comm = s[s.index("(") + 1:s.rindex(")")]
    # rest[0] is field 3 (state); ppid is field 4, utime 14, stime 15.
    return comm, int(rest[1]), int(rest[11]) + int(rest[12])


def all_procs():
    out = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = _stat(d)
            if st:
                out[int(d)] = st
    return out


def cpu_ticks(specs):
    """{name: ticks} for `NAME=PID`, `NAME=PID+` (with descendants), `NAME=postgres` (by name)."""
    procs = all_procs()
    children = {}
    for pid, (_, ppid, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    out = {}
    for spec in specs:
        name, _, what = spec.partition("=")
        pids = set()
        if what == "postgres":
            pids = {p for p, (comm, _, _) in procs.items() if comm == "postgres"}
        elif what:
            tree = what.endswith("+")
            root = int(what.rstrip("+"))
            pids = {root}
            stack = [root] if tree else []
            while stack:
                for c in children.get(stack.pop(), []):
                    pids.add(c)
                    stack.append(c)
        out[name] = sum(procs[p][2] for p in pids if p in procs)
    out["machine"] = machine_busy_ticks()
    return out


def machine_busy_ticks():
    """Ticks every CPU spent on anything but idle and I/O wait (/proc/stat): the kernel's own work
    (loopback, softirqs) and processes too short-lived to be sampled are in it."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal (guest time is already in user)
    return sum(fields[:8]) - fields[3] - fields[4]


# ---------------------------------------------------------------- receivers
def parse_time(s):
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


class Receivers:
    """What the three receivers hold, read incrementally: first receipt per event id."""

    def __init__(self, webhook_dir, syslog_file, maildir):
        self.webhook_file = os.path.join(webhook_dir, "received.jsonl")
        self.syslog_file = syslog_file
        self.maildir_new = os.path.join(maildir, "new")
        self.offsets = {"webhook": 0, "syslog": 0}
        self.seen_files = set()
        self.first = {k: {} for k in ALL}  # event id -> receipt time
        self.copies = {k: 0 for k in ALL}  # receipts, duplicates included
        self.webhook_event_ts = {}  # event id -> event timestamp (from the body)
        self.webhook_unverified = 0
        self.syslog_rt = {}  # event id -> rt (ms)
        self.unparsed = {k: 0 for k in ALL}

    def _lines(self, kind, path):
        try:
            with open(path, "rb") as f:
                f.seek(self.offsets[kind])
                chunk = f.read()
        except OSError:
            return []
        cut = chunk.rfind(b"\n") + 1
        self.offsets[kind] += cut
        return chunk[:cut].splitlines()

    def _note(self, kind, eid, at):
        self.copies[kind] += 1
        if eid not in self.first[kind]:
            self.first[kind][eid] = at

    def poll(self):
        for line in self._lines("webhook", self.webhook_file):
            try:
                r = json.loads(line)
                eid = r.get("id") or r["event"]["id"]
                self._note("webhook", eid, float(r["received_at"]))
                ev = r.get("event") or {}
                if ev.get("timestamp") and eid not in self.webhook_event_ts:
                    self.webhook_event_ts[eid] = parse_time(ev["timestamp"])
                if not any(r.get("verified") or []):
                    self.webhook_unverified += 1
            except Exception:
                self.unparsed["webhook"] += 1
        for line in self._lines("syslog", self.syslog_file):
            try:
                text = line.decode("utf-8", "replace")
                stamp, _, msg = text.partition(" ")
                m = CS5_RE.search(msg)
                if not m:
                    self.unparsed["syslog"] += 1
                    continue
                self._note("syslog", m.group(1), parse_time(stamp))
                rt = RT_RE.search(msg)
                if rt:
                    self.syslog_rt.setdefault(m.group(1), int(rt.group(1)) / 1000.0)
            except Exception:
                self.unparsed["syslog"] += 1
        try:
            entries = [e for e in os.scandir(self.maildir_new) if e.name not in self.seen_files]
        except OSError:
            entries = []
        for e in entries:
            try:
                mtime = e.stat().st_mtime
                with open(e.path, "rb") as f:
                    head = f.read(8192)
            except OSError:
                continue  # still being renamed; next poll
            self.seen_files.add(e.name)
            m = EVENTS_RE.search(head)
            ids = UUID_BYTES_RE.findall(m.group(1)) if m else []
            for eid in ids:
                self._note("email", eid.decode(), mtime)
            if not ids:
                self.unparsed["email"] += 1

    def counts(self):
        return {k: len(self.first[k]) for k in ALL}


# ---------------------------------------------------------------- SMTP
async def reply(reader):
    """One SMTP reply (multi-line included): (code, last line)."""
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("closed by the server")
        if len(line) < 4 or line[3:4] != b"-":
            text = line.decode("utf-8", "replace").strip()
            try:
                return int(line[:3]), text
            except ValueError:
                return 0, text


def message(tag):
    return (f"From: <{SENDER}>\r\nTo: <{RCPT}>\r\nSubject: mailsensor alerts bench {tag}\r\n"
            f"Message-ID: <{tag}@bench.example.net>\r\n\r\n{EICAR}\r\n.\r\n").encode()


async def connect(host, port, stats):
    """A connection, or None after counting the error and pausing 0.1 s."""
    try:
        return await asyncio.open_connection(host, port)
    except OSError as e:
        stats["errors"] += 1
        _sample(stats, f"connect: {e}")
        await asyncio.sleep(0.1)
        return None


async def next_slot(state, interval):
    """Waits for the next slot of a schedule of one per `interval` s shared by every session
    (`state["next"]`); a schedule fallen behind catches up at most 1 s."""
    now = time.monotonic()
    state["next"] = max(state["next"], now - 1.0)
    slot = state["next"]
    state["next"] += interval
    if slot > now:
        await asyncio.sleep(slot - now)


async def send_messages(port, sessions, stop_at, stats, ids, interval=None, count=None):
    """SESSIONS connections sending pipelined MAIL/RCPT/DATA + message; paced at one message per
    `interval` s shared by all (None: as fast as answered) until `stop_at` or `count` sent."""
    state = {"next": time.monotonic(), "left": count}
    pid = os.getpid()

    async def session(n):
        seq = 0
        while time.monotonic() < stop_at and (state["left"] is None or state["left"] > 0):
            if (opened := await connect("127.0.0.1", port, stats)) is None:
                continue
            reader, writer = opened
            try:
                code, text = await reply(reader)
                if code != 220:
                    stats["errors"] += 1
                    _sample(stats, f"greeting: {text}")
                    await asyncio.sleep(0.5)
                    continue
                writer.write(b"EHLO bench-client.example.net\r\n")
                if (await reply(reader))[0] != 250:
                    stats["errors"] += 1
                    continue
                while True:
                    if state["left"] is not None:
                        if state["left"] <= 0:
                            break
                        state["left"] -= 1
                    if interval is not None:
                        await next_slot(state, interval)
                    if time.monotonic() >= stop_at:
                        break
                    seq += 1
                    stats["sent"] += 1
                    writer.write(f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<{RCPT}>\r\nDATA\r\n".encode())
                    codes = [(await reply(reader)) for _ in range(3)]
                    if codes[2][0] != 354:
                        stats["refused"] += 1
                        bad = next((t for code, t in codes if code not in (250, 354)), codes[2][1])[:60]
                        r = stats.setdefault("refusals", {})
                        r[bad] = r.get(bad, 0) + 1
                        writer.write(b"RSET\r\n")
                        await reply(reader)
                        continue
                    writer.write(message(f"{pid}.{n}.{seq}.{time.time_ns()}"))
                    await writer.drain()
                    code, text = await reply(reader)
                    if code == 250:
                        stats["ok"] += 1
                        m = STORED_RE.search(text)
                        if m:
                            ids.append(m.group(1))
                    else:
                        stats["refused"] += 1
                        r = stats.setdefault("refusals", {})
                        r[text[:60]] = r.get(text[:60], 0) + 1
                writer.write(b"QUIT\r\n")
                try:
                    await asyncio.wait_for(reply(reader), 2)
                except Exception:
                    pass
                return
            except (OSError, ConnectionError) as e:
                stats["errors"] += 1
                _sample(stats, str(e))
            finally:
                writer.close()

    await asyncio.gather(*(session(n) for n in range(sessions)))


async def rescan_messages(api, tenant, token, ids, sessions, stop_at, stats, interval):
    """SESSIONS kept-alive HTTP/1.1 connections asking `POST …/messages/{id}/rescan` of the stored
    messages `ids` in turn, paced at one request per `interval` s shared by all, until `stop_at`.
    Each rescan puts a message that carries EICAR back into the scan queue: its scan commits a
    `malicious` verdict again, and that raises one `message.detected`."""
    host, port = api.removeprefix("http://").split(":")
    state = {"next": time.monotonic(), "i": 0}

    async def session(n):
        while time.monotonic() < stop_at:
            if (opened := await connect(host, int(port), stats)) is None:
                continue
            reader, writer = opened
            try:
                while True:
                    await next_slot(state, interval)
                    if time.monotonic() >= stop_at:
                        return
                    mid = ids[state["i"] % len(ids)]
                    state["i"] += 1
                    stats["sent"] += 1
                    writer.write((f"POST /v1/tenants/{tenant}/messages/{mid}/rescan HTTP/1.1\r\nHost: {host}\r\n"
                                  f"Authorization: Bearer {token}\r\nContent-Length: 0\r\n\r\n").encode())
                    status = await reader.readline()
                    if not status:
                        raise ConnectionError("closed by the server")
                    length = 0
                    while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                        name, _, value = line.decode("latin-1").partition(":")
                        if name.strip().lower() == "content-length":
                            length = int(value.strip())
                    body = await reader.readexactly(length) if length else b""
                    code = int(status.split()[1])
                    if code == 202:
                        stats["ok"] += 1
                    else:
                        stats["refused"] += 1
                        r = stats.setdefault("refusals", {})
                        key = f"{code} {body[:60].decode('utf-8', 'replace')}"
                        r[key] = r.get(key, 0) + 1
            except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError, IndexError) as e:
                stats["errors"] += 1
                _sample(stats, str(e))
            finally:
                writer.close()

    await asyncio.gather(*(session(n) for n in range(sessions)))


async def requeue_messages(psql, ids, stop_at, stats, interval):
    """Puts the stored messages `ids` back in the scan queue in turn, one per `interval` s, straight
    in PostgreSQL: what `POST …/rescan` does to a message's row (verdict `pending`, attempts and
    back-off cleared), without the HTTP request, the audit entry or the earlier result kept. One
    psql session (`psql` = its connection string), one UPDATE every 10 ms for the messages due;
    a schedule fallen behind catches up at most 1 s, as next_slot's."""
    proc = await asyncio.create_subprocess_exec(
        "psql", psql, "-q", "-X", "-v", "ON_ERROR_STOP=1", stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    start, done, i = time.monotonic(), 0, 0
    try:
        while (now := time.monotonic()) < stop_at:
            due = int((now - start) / interval)
            done = max(done, due - int(1.0 / interval))
            batch = []
            while done < due:
                batch.append(ids[i % len(ids)])
                i, done = i + 1, done + 1
            if batch:
                listed = ",".join(f"'{m}'" for m in batch)
                proc.stdin.write((f"UPDATE messages SET verdict = 'pending', scan_attempts = 0, scan_after = NULL, "
                                  f"scanned_at = NULL WHERE id IN ({listed}) AND verdict <> 'pending';\n").encode())
                await proc.stdin.drain()
                stats["sent"] += len(batch)
                stats["ok"] += len(batch)
            await asyncio.sleep(0.01)
        proc.stdin.close()
    except (BrokenPipeError, ConnectionResetError) as e:
        stats["errors"] += 1
        _sample(stats, f"psql: {e}")
    err = (await proc.stderr.read()).decode(errors="replace").strip()
    if await proc.wait() != 0 or err:
        stats["errors"] += 1
        _sample(stats, f"psql exited {proc.returncode}: {err[:300]}")


def _sample(stats, text):
    samples = stats.setdefault("error_samples", [])
    if len(samples) < 10:
        samples.append(text)


def new_stats():
    return {"sent": 0, "ok": 0, "refused": 0, "errors": 0}


# ---------------------------------------------------------------- warmup
def cmd_warmup(a):
    rec = Receivers(a.webhook_dir, a.syslog_file, a.maildir)
    stats, ids = new_stats(), []
    asyncio.run(send_messages(a.port, 1, time.monotonic() + 60, stats, ids, count=a.count))
    if stats["ok"] != a.count:
        sys.exit(f"warm-up: {stats['ok']} of {a.count} messages accepted: {stats}")
    deadline = time.monotonic() + a.timeout
    while True:
        rec.poll()
        c = rec.counts()
        if all(c[k] >= a.count for k in DESTS):
            print(json.dumps({"accepted": stats["ok"], "received": c}))
            return
        if time.monotonic() > deadline:
            sys.exit(f"warm-up: after {a.timeout} s the receivers hold {c} of {a.count} events each")
        time.sleep(0.25)


def cmd_preload(a):
    """COUNT malicious messages through SMTP as fast as taken, before any destination exists; waits
    until each is scanned; their ids to --ids-out (what the rescan load asks for again)."""
    stats, ids = new_stats(), []
    asyncio.run(send_messages(a.port, a.sessions, time.monotonic() + 3600, stats, ids, count=a.count))
    if len(ids) != a.count:
        sys.exit(f"preload: {len(ids)} of {a.count} messages stored: {stats}")
    deadline = time.monotonic() + a.timeout
    while True:
        snap = api_snapshot(fetch(a.api_metrics) or "")
        if snap.get("scan_depth") == 0 and (snap.get("scanned") or 0) >= a.count:
            break
        if time.monotonic() > deadline:
            sys.exit(f"preload: not every message scanned after {a.timeout} s: {snap}")
        time.sleep(0.5)
    with open(a.ids_out, "w") as f:
        f.write("\n".join(ids) + "\n")
    print(json.dumps({"stored": len(ids)}))


# ---------------------------------------------------------------- run
async def run_async(a):
    rec = Receivers(a.webhook_dir, a.syslog_file, a.maildir)
    samples = []

    def sample(phase, t_wall0, t0):
        text = fetch(a.api_metrics)
        snap = api_snapshot(text) if text else {}
        stored = metric_sum(fetch(a.worker_metrics) or "", "mailsensor_smtp_messages_total", ('outcome="stored"',))
        rec.poll()
        s = {"t": round(time.monotonic() - t0, 3), "wall": time.time(), "phase": phase, "stored": stored,
             "received": rec.counts(), **snap}
        samples.append(s)
        return s

    cpu = {}
    t0 = time.monotonic()
    cpu["start"] = cpu_ticks(a.cpu)
    self0 = os.times()
    first = await asyncio.to_thread(sample, "start", None, t0)
    t0 = time.monotonic()  # the load starts now
    wall0 = time.time()
    stop_at = t0 + a.duration
    stats, ids = new_stats(), []
    if a.source in ("rescan", "requeue"):
        again = [line.strip() for line in open(a.ids) if line.strip()]
    if a.source == "rescan":
        sender = asyncio.create_task(rescan_messages(a.api, a.tenant, os.environ["ALERTS_TOKEN"], again, a.sessions,
                                                     stop_at, stats, 1.0 / a.rate))
    elif a.source == "requeue":
        sender = asyncio.create_task(requeue_messages(a.psql, again, stop_at, stats, 1.0 / a.rate))
    else:
        sender = asyncio.create_task(send_messages(a.port, a.sessions, stop_at, stats, ids, interval=1.0 / a.rate))
    k = 1
    while time.monotonic() < stop_at:
        await asyncio.sleep(max(0.0, min(t0 + k, stop_at) - time.monotonic()))
        k += 1
        if time.monotonic() < stop_at - 0.05:
            await asyncio.to_thread(sample, "run", None, t0)
    try:
        await asyncio.wait_for(sender, 15)
    except asyncio.TimeoutError:
        sender.cancel()
    load_end_wall = time.time()
    end = await asyncio.to_thread(sample, "end", None, t0)
    cpu["end"] = cpu_ticks(a.cpu)
    self1 = os.times()
    # Taken: messages stored (smtp), or put back in the scan queue (rescan, requeue; one still
    # waiting for its scan when asked again stays as it is, so this may count a message twice).
    taken = int((end["stored"] or 0) - (first["stored"] or 0)) if a.source == "smtp" else stats["ok"]
    base_rec = first["received"]
    done_at = None
    deadline = time.monotonic() + a.drain_max
    while time.monotonic() < deadline:
        await asyncio.sleep(1.0)
        s = await asyncio.to_thread(sample, "drain", None, t0)
        events = (s.get("events") or 0) - (first.get("events") or 0)
        scanned = (s.get("scanned") or 0) - (first.get("scanned") or 0)
        if ((scanned >= taken or a.source != "smtp") and s.get("scan_depth") == 0 and s.get("outbox") == 0
                and all(s["received"][k] - base_rec[k] >= events for k in DESTS)):
            done_at = round(s["t"] - end["t"], 2)
            break
    cpu["drain"] = cpu_ticks(a.cpu)
    self2 = os.times()
    out = {
        "source": a.source, "rate": a.rate, "duration": a.duration, "sessions": a.sessions, "drain_max": a.drain_max,
        "t0_wall": wall0, "load_end_wall": load_end_wall, "load_s": end["t"],
        "client": stats, "accepted_ids": len(ids), "taken": taken,
        "all_done_after_s": done_at,
        "cpu": {
            "clk_tck": CLK, "ticks": cpu,
            "load_client_s": {"load": (self1.user + self1.system) - (self0.user + self0.system),
                              "drain": (self2.user + self2.system) - (self1.user + self1.system)},
        },
        "loadavg_end": open("/proc/loadavg").read().split()[:3],
        "samples": samples,
    }
    with open(a.out, "w") as f:
        json.dump(out, f)
    with open(a.out + ".ids", "w") as f:
        f.write("\n".join(ids) + "\n")
    print(f"accepted {stats['ok']} of {stats['sent']} sent ({stats['ok'] / a.duration:.1f}/s), "
          f"refused {stats['refused']}, errors {stats['errors']}; "
          f"all delivered {'after ' + str(done_at) + ' s' if done_at is not None else 'NOT within ' + str(a.drain_max) + ' s'}",
          file=sys.stderr)


def cmd_run(a):
    asyncio.run(run_async(a))


# ---------------------------------------------------------------- report
def pct(sorted_vals, p):
    """Nearest rank; the values may end with inf (never received)."""
    if not sorted_vals:
        return None
    return sorted_vals[max(0, math.ceil(p * len(sorted_vals)) - 1)]


def fmt_s(v):
    if v is None:
        return "-"
    if v == math.inf:
        return "never"
    return f"{v:.3f}"


def api_events(api, tenant, token):
    events, cursor = [], None
    while True:
        url = f"{api}/v1/tenants/{tenant}/alert-events?limit=500" + (f"&cursor={cursor}" if cursor else "")
        text = fetch(url, token, timeout=60)
        if text is None:
            raise RuntimeError(f"GET {url} failed")
        page = json.loads(text)
        events.extend(page["items"])
        cursor = page.get("next_cursor")
        if not cursor:
            return events


def cmd_report(a):
    run = json.load(open(a.run))
    rec = Receivers(a.webhook_dir, a.syslog_file, a.maildir)
    rec.poll()
    t0, dur, skip = run["t0_wall"], run["duration"], a.skip
    load_end = t0 + dur
    try:
        listed = api_events(a.api, a.tenant, os.environ["ALERTS_TOKEN"])
        source = "GET /v1/tenants/{t}/alert-events"
    except Exception as e:  # the webhook's copies of the events instead
        print(f"  (the API's event list could not be read: {e}; event times from the webhook bodies)")
        listed = [{"id": k, "type": "message.detected", "timestamp": None} for k in rec.webhook_event_ts]
        source = "the webhook bodies"
    ts = {}
    for e in listed:
        if e.get("type") != "message.detected":
            continue
        at = parse_time(e["timestamp"]) if e.get("timestamp") else rec.webhook_event_ts.get(e["id"])
        if at is not None and at >= t0:  # the warm-up's events are older than the load
            ts[e["id"]] = at
    raised = len(ts)
    in_load = sum(1 for v in ts.values() if v <= load_end)
    steady_ids = {k for k, v in ts.items() if t0 + skip <= v <= load_end}
    samples = run["samples"]
    first = samples[0]
    end = next(s for s in samples if s["phase"] == "end")
    last = samples[-1]
    c = run["client"]

    def d(s, key):
        return (s.get(key) or 0) - (first.get(key) or 0)

    rows, dest_summary = [], {}
    for kind in DESTS:
        got = rec.first[kind]
        lat_all = sorted((got[k] - v) if k in got else math.inf for k, v in ts.items())
        lat_steady = sorted((got[k] - ts[k]) if k in got else math.inf for k in steady_ids)
        delivered = sum(1 for k in ts if k in got)
        delivered_in_load = sum(1 for k in ts if k in got and got[k] <= load_end)
        neg = sum(1 for v in lat_all if v < 0)
        summary = {
            "delivered": delivered, "undelivered": raised - delivered,
            "p50": pct(lat_all, 0.50), "p99": pct(lat_all, 0.99), "max": lat_all[-1] if lat_all else None,
            "steady_n": len(lat_steady), "steady_undelivered": sum(1 for v in lat_steady if v == math.inf),
            "steady_p50": pct(lat_steady, 0.50), "steady_p99": pct(lat_steady, 0.99),
            "steady_max": lat_steady[-1] if lat_steady else None,
            "delivered_per_s_in_load": delivered_in_load / dur, "negative": neg,
        }
        dest_summary[kind] = summary
        rows.append(kind)

    sessions, rate = run["sessions"], run["rate"]
    if run.get("source") == "rescan":
        print(f"  Load: {rate:g} rescans/s asked for {dur:g} s ({sessions} HTTP connections, POST …/messages/{{id}}/rescan"
              f" of stored messages that carry EICAR in the body, in turn)")
    elif run.get("source") == "requeue":
        print(f"  Load: {rate:g} messages/s put back in the scan queue for {dur:g} s (UPDATE in PostgreSQL through one"
              f" psql session, every 10 ms; stored messages that carry EICAR in the body, in turn)")
    else:
        print(f"  Load: {rate:g} messages/s asked for {dur:g} s ({sessions} SMTP connections, pipelined, EICAR in the body)")
    print(f"  {'':40s} {'count':>9s} {'per s':>9s} {'of RATE':>8s}")

    def line(label, n, per=None):
        n = int(n)
        per = n / dur if per is None else per
        print(f"  {label:40s} {n:9d} {per:9.1f} {per / rate * 100:7.1f}%")

    line("sent by the client", c["sent"])
    taken_label = {"rescan": "rescans accepted (202)", "requeue": "put back in the scan queue"}
    line(taken_label.get(run.get("source"), "accepted (250, the worker's stored count)"), run["taken"])
    line("scanned during the load", int(d(end, "scanned")))
    line("events raised during the load", in_load)
    print(f"  {'events raised in all (message.detected)':40s} {raised:9d}   (after the load: {raised - in_load};"
          f" scanned in all {int(d(last, 'scanned'))})")
    print(f"  client: {c['refused']} refused, {c['errors']} connection errors"
          + (f"; refusals {c.get('refusals')}" if c.get("refusals") else "")
          + (f"; e.g. {c['error_samples'][:2]}" if c.get("error_samples") else ""))
    done = run["all_done_after_s"]
    print(f"  every message scanned and every event at every receiver: "
          + (f"{done} s after the load ended" if done is not None else f"NOT within {run['drain_max']} s of its end"))
    print()
    print(f"  Delivery latency, seconds from the event's timestamp (written with the verdict, {source}) to receipt")
    print(f"  steady state = events raised {skip:g} s after the start of the load until its end; 'never' = not received")
    hdr = (f"  {'destination':12s} {'delivered':>15s} {'p50':>7s} {'p99':>7s} {'max':>7s} | {'steady n':>8s} "
           f"{'p50':>7s} {'p99':>7s} {'max':>7s} {'undeliv':>7s} | {'deliv/s in load':>15s}")
    print(hdr)
    for kind in DESTS:
        s = dest_summary[kind]
        print(f"  {kind:12s} {s['delivered']:7d}/{raised:<7d} {fmt_s(s['p50']):>7s} {fmt_s(s['p99']):>7s} "
              f"{fmt_s(s['max']):>7s} | {s['steady_n']:8d} {fmt_s(s['steady_p50']):>7s} {fmt_s(s['steady_p99']):>7s} "
              f"{fmt_s(s['steady_max']):>7s} {s['steady_undelivered']:7d} | {s['delivered_per_s_in_load']:15.1f}")
    print(f"  receipts incl. duplicates: " + ", ".join(f"{k} {rec.copies[k]}" for k in DESTS)
          + f"; webhooks not verified by standardwebhooks: {rec.webhook_unverified}"
          + f"; unparsed: {rec.unparsed}"
          + "; negative latencies: " + ", ".join(f"{k} {dest_summary[k]['negative']}" for k in DESTS))
    # The product's own view: mailsensor_alert_delivery_latency_seconds (sum / count = mean).
    means = []
    for kind in DESTS:
        n = d(last, f"lat_{kind}_count")
        ssum = d(last, f"lat_{kind}_sum")
        ok, att = d(last, f"att_{kind}_ok"), d(last, f"att_{kind}_all")
        tn, ts_ = d(last, f"try_{kind}_count"), d(last, f"try_{kind}_sum")
        if n:
            means.append(f"{kind} mean {ssum / n:.3f} s over {int(n)}, attempts {int(att)} ({int(att - ok)} not delivered)"
                         + (f", each attempt {1000 * ts_ / tn:.1f} ms on average" if tn else ""))
    if means:
        print("  the API's own mailsensor_alert_delivery_latency_seconds: " + "; ".join(means))
    # Our mean, for that comparison.
    ours = []
    for kind in DESTS:
        got = rec.first[kind]
        v = [got[k] - ts[k] for k in ts if k in got]
        if v:
            ours.append(f"{kind} {statistics.fmean(v):.3f} s")
    print("  measured here, mean: " + ", ".join(ours))
    print()

    # Depth over time.
    def stats_of(vals):
        vals = [v for v in vals if v is not None]
        if not vals:
            return "-"
        return f"min {min(vals):.0f}, median {statistics.median(vals):.0f}, max {max(vals):.0f}"

    in_run = [s for s in samples if s["phase"] in ("run", "end")]
    after = [s for s in samples if s["phase"] == "drain"]
    print("  mailsensor_alert_outbox_depth (deliveries pending; the API refreshes it once a second):")
    print(f"    during the load: {stats_of([s.get('outbox') for s in in_run])}; after it: {stats_of([s.get('outbox') for s in after])}")
    print("  mailsensor_scan_queue_depth:")
    print(f"    during the load: {stats_of([s.get('scan_depth') for s in in_run])}; after it: {stats_of([s.get('scan_depth') for s in after])}")
    print()
    print("  Every 5 s (rates over the 5 s before; depths as sampled at that second; t from the start of the load;")
    print("  p99 s = the latency p99 of the events raised in those 5 s, 'never' counted as infinitely late)")
    print(f"  {'t s':>5s} {'accepted/s':>10s} {'scanned/s':>9s} {'events/s':>8s} {'scan depth':>10s} {'outbox':>7s} "
          f"{'webhook/s':>9s} {'syslog/s':>8s} {'email/s':>7s} | p99 s: {'webhook':>7s} {'syslog':>7s} {'email':>7s}")
    by_time = sorted(ts.items(), key=lambda kv: kv[1])

    def window_p99(kind, lo, hi):
        got = rec.first[kind]
        if kind not in DESTS:
            return "-"
        v = sorted((got[k] - at) if k in got else math.inf for k, at in by_time if lo <= at < hi)
        return fmt_s(pct(v, 0.99)) if v else "-"
    prev = first
    marks = []
    nxt = 5.0
    for s in samples[1:]:
        if s["t"] + 0.3 >= nxt or s is samples[-1] or s is end:
            marks.append(s)
            nxt = (math.floor((s["t"] + 0.3) / 5) + 1) * 5
    for s in marks:
        span = max(s["t"] - prev["t"], 1e-6)
        r = lambda key: ((s.get(key) or 0) - (prev.get(key) or 0)) / span  # noqa: E731
        rr = lambda k: (s["received"][k] - prev["received"][k]) / span  # noqa: E731
        stored = ((s.get("stored") or 0) - (prev.get("stored") or 0)) / span
        print(f"  {s['t']:5.0f} {stored:10.1f} {r('scanned'):9.1f} {r('events'):8.1f} "
              f"{(s.get('scan_depth') if s.get('scan_depth') is not None else -1):10.0f} "
              f"{(s.get('outbox') if s.get('outbox') is not None else -1):7.0f} "
              f"{rr('webhook'):9.1f} {rr('syslog'):8.1f} {rr('email'):7.1f} |        "
              + " ".join(f"{window_p99(k, prev['wall'], s['wall']):>7s}" for k in ALL)
              + ("  <- load ends" if s is end else ""))
        prev = s
    print()
    # CPU.
    cpu = run["cpu"]
    ticks, hz = cpu["ticks"], cpu["clk_tck"]
    load_s = run["load_s"]
    drain_s = max(last["t"] - end["t"], 1e-6)
    parts = []
    for name in [n for n in ticks["start"] if n != "machine"]:
        a_ = (ticks["end"][name] - ticks["start"][name]) / hz
        b_ = (ticks["drain"][name] - ticks["end"][name]) / hz
        parts.append(f"{name} {a_ / load_s * 100:.0f}% / {b_ / drain_s * 100:.0f}%")
    lc = cpu["load_client_s"]
    parts.append(f"load client+watcher {lc['load'] / load_s * 100:.0f}% / {lc['drain'] / drain_s * 100:.0f}%")
    print(f"  CPU, % of one core, during the load / after it ({drain_s:.0f} s): " + ", ".join(parts))
    print(f"  (postgres = every process named postgres on the machine; processes that ended in between are not counted)")
    if "machine" in ticks["start"]:
        cores = os.cpu_count() or 1
        busy = [(ticks[b]["machine"] - ticks[a]["machine"]) / hz / s_ * 100
                for a, b, s_ in (("start", "end", load_s), ("end", "drain", drain_s))]
        print(f"  the whole machine ({cores} cores, /proc/stat: processes and the kernel's own work): busy "
              f"{busy[0]:.0f}% / {busy[1]:.0f}% of one core, of {cores * 100}%")
    print()
    verdicts = []
    for kind in [k for k in ("webhook", "syslog") if k in DESTS]:
        s = dest_summary[kind]
        p99 = s["steady_p99"]
        ok = p99 is not None and p99 < 1.0 and s["steady_n"] > 0
        verdicts.append(f"{kind} p99 {fmt_s(p99)} s -> {'met' if ok else 'NOT met'}")
    print("  Target (issue 18): p99 < 1 s from the verdict's commit to receipt for webhook and syslog at steady state,")
    print(f"  at {rate:g} detections/s asked ({run['taken'] / dur:.1f}/s accepted, {in_load / dur:.1f} events/s raised during the load):")
    print("    " + "; ".join(verdicts))
    if "email" in DESTS:
        s = dest_summary["email"]
        print(f"    (e-mail, no target: steady p99 {fmt_s(s['steady_p99'])} s)")
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"raised": raised, "raised_in_load": in_load, "steady_events": len(steady_ids),
                       "destinations": {k: {kk: (None if vv == math.inf else vv) if isinstance(vv, float) else vv
                                            for kk, vv in v.items()} for k, v in dest_summary.items()}}, f)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)

    def receivers(q):
        q.add_argument("--dests", default=",".join(ALL), help="the destinations of this run, e.g. webhook,syslog")
        q.add_argument("--webhook-dir", required=True)
        q.add_argument("--syslog-file", required=True)
        q.add_argument("--maildir", required=True)

    w = sub.add_parser("warmup")
    w.add_argument("--port", type=int, required=True)
    w.add_argument("--count", type=int, default=5)
    w.add_argument("--timeout", type=float, default=60)
    receivers(w)
    r = sub.add_parser("run")
    r.add_argument("--port", type=int, required=True)
    r.add_argument("--rate", type=float, required=True)
    r.add_argument("--duration", type=float, required=True)
    r.add_argument("--sessions", type=int, default=50)
    r.add_argument("--api-metrics", required=True)
    r.add_argument("--worker-metrics", required=True)
    r.add_argument("--drain-max", type=float, default=120)
    r.add_argument("--cpu", action="append", default=[])
    r.add_argument("--source", choices=("smtp", "rescan", "requeue"), default="smtp")
    r.add_argument("--ids", help="rescan, requeue: the stored messages to ask for again (preload's --ids-out)")
    r.add_argument("--psql", help="requeue: psql's connection string to the API's database")
    r.add_argument("--api", help="rescan: the API's base URL (token in $ALERTS_TOKEN)")
    r.add_argument("--tenant", help="rescan: the messages' tenant")
    r.add_argument("--out", required=True)
    receivers(r)
    pl = sub.add_parser("preload")
    pl.add_argument("--port", type=int, required=True)
    pl.add_argument("--count", type=int, required=True)
    pl.add_argument("--sessions", type=int, default=20)
    pl.add_argument("--api-metrics", required=True)
    pl.add_argument("--timeout", type=float, default=600)
    pl.add_argument("--ids-out", required=True)
    pl.add_argument("--dests", default=",".join(ALL))
    q = sub.add_parser("report")
    q.add_argument("--run", required=True)
    q.add_argument("--api", required=True)
    q.add_argument("--tenant", required=True)
    q.add_argument("--skip", type=float, default=10)
    q.add_argument("--out")
    receivers(q)
    a = p.parse_args()
    global DESTS
    DESTS = tuple(k for k in ALL if k in a.dests.split(","))
    {"warmup": cmd_warmup, "preload": cmd_preload, "run": cmd_run, "report": cmd_report}[a.cmd](a)


if __name__ == "__main__":
    main()
