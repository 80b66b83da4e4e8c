#!/usr/bin/env python3
"""The load and the watching of bench/retrohunt.sh (issue 17).

  retrohunt_measure.py load --port P --corpus DIR --messages N --sessions S --api-metrics URL
                            --worker-metrics URL [--drain-max S] --out JSON
      N messages through SMTP as fast as the worker takes them (S persistent connections): the
      corpus's .eml files in turn, each sent with a header of its own (X-Bench-Seq) so no two are
      the same bytes (the API would store a repeat once). Line ends made CRLF, dot-stuffed. Samples
      the API's /metrics once a second (mailsensor_messages_scanned_total,
      mailsensor_scan_queue_depth) during the load and after it, until every message taken is
      scanned (at most --drain-max s). Live-scan rates: during the load, after it (the scan queue
      working off its backlog with no intake: the scan workers' full pace), and overall.
  retrohunt_measure.py hunt --api URL --tenant T --rules FILE --since ISO --until ISO
                            [--match-cap N] [--max S] [--abort-after-s S] --out JSON   (token: $HUNT_TOKEN)
      Starts a retro-hunt with the rules as its inline source and follows it once a second
      (GET …/retrohunts/{id}) until it ends (or --max s); with --abort-after-s, aborts it then.
      Rate: progress.scanned / (finished_at - started_at), and scanned per second over time.
  retrohunt_measure.py start / follow: the same in two steps (bench/retrohunt.sh runs intake
      between them): `start` prints the hunt's id once it runs; `follow --id ID` goes on from there.
"""
import argparse
import asyncio
import datetime as dt
import json
import os
import re
import sys
import time
import urllib.error
import urllib.request

SENDER = "bench-sender@bench.example.net"
RCPT = "bench-rcpt@example.com"
CLK = os.sysconf("SC_CLK_TCK")


def fetch(url, timeout=5):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.read().decode("utf-8", "replace")
    except Exception:
        return None


def metric_sum(text, name, labels=()):
    total, seen = 0.0, False
    for line in (text or "").splitlines():
        if not line.startswith(name):
            continue
        m = re.match(rf"^{re.escape(name)}(\{{[^}}]*\}})? ([0-9.eE+-]+|NaN)$", line)
        if m and all(lab in (m.group(1) or "") for lab in labels):
            total += float(m.group(2)) if m.group(2) != "NaN" else 0.0
            seen = True
    return total if seen else None


def api(method, url, token, body=None, timeout=60):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")


def parse_time(s):
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp() if s else None


# ---------------------------------------------------------------- load
def smtp_ready(raw):
    """CRLF line ends, dot-stuffed, ended with <CRLF>.<CRLF>."""
    lines = raw.replace(b"\r\n", b"\n").split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    out = b"\r\n".join((b"." + ln) if ln.startswith(b".") else ln for ln in lines)
    return out + b"\r\n.\r\n"


async def reply(reader):
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("closed by the server")
        if len(line) < 4 or line[3:4] != b"-":
            try:
                return int(line[:3]), line.decode("utf-8", "replace").strip()
            except ValueError:
                return 0, line.decode("utf-8", "replace").strip()


async def send_corpus(a, messages, stats):
    state = {"next": 0}
    total = a.messages

    async def session(n):
        while state["next"] < total:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", a.port)
            except OSError:
                stats["errors"] += 1
                await asyncio.sleep(0.1)
                continue
            try:
                if (await reply(reader))[0] != 220:
                    stats["errors"] += 1
                    await asyncio.sleep(0.5)
                    continue
                writer.write(b"EHLO bench-client.example.net\r\n")
                if (await reply(reader))[0] != 250:
                    stats["errors"] += 1
                    continue
                while state["next"] < total:
                    i = state["next"]
                    state["next"] += 1
                    writer.write(f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<{RCPT}>\r\nDATA\r\n".encode())
                    codes = [(await reply(reader)) for _ in range(3)]
                    if codes[2][0] != 354:
                        stats["refused"] += 1
                        stats["last_refusal"] = [c[1] for c in codes]
                        writer.write(b"RSET\r\n")
                        await reply(reader)
                        continue
                    body = messages[i % len(messages)]
                    writer.write(f"X-Bench-Seq: {os.getpid()}.{i}\r\n".encode() + body)
                    await writer.drain()
                    code, text = await reply(reader)
                    if code == 250:
                        stats["ok"] += 1
                        stats["bytes"] += len(body)
                    else:
                        stats["refused"] += 1
                        stats["last_refusal"] = text
                writer.write(b"QUIT\r\n")
                try:
                    await asyncio.wait_for(reply(reader), 2)
                except Exception:
                    pass
                return
            except (OSError, ConnectionError) as e:
                stats["errors"] += 1
                stats["last_error"] = str(e)
            finally:
                writer.close()

    await asyncio.gather(*(session(n) for n in range(a.sessions)))


def cpu_ticks(specs):
    """{name: ticks}: NAME=PID or NAME=postgres (every process so named)."""
    out = {}
    procs = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            s = open(f"/proc/{d}/stat").read()
        except OSError:
            continue
        rest = s[s.rindex(")") + 2:].split()
        procs[int(d)] = (s[s.index("(") + 1:s.rindex(")")], int(rest[11]) + int(rest[12]))
    for spec in specs:
        name, _, what = spec.partition("=")
        if what == "postgres":
            out[name] = sum(t for comm, t in procs.values() if comm == "postgres")
        else:
            out[name] = procs.get(int(what), ("", 0))[1]
    return out


async def load_async(a):
    files = sorted(f for f in os.listdir(a.corpus) if f.endswith(".eml"))
    messages = [smtp_ready(open(os.path.join(a.corpus, f), "rb").read()) for f in files]
    samples = []

    def sample(phase):
        text = fetch(a.api_metrics)
        s = {"t": round(time.monotonic() - t0, 2), "phase": phase,
             "taken": metric_sum(fetch(a.worker_metrics) or "", "mailsensor_smtp_messages_total", ('outcome="stored"',)),
             "scanned": metric_sum(text, "mailsensor_messages_scanned_total"),
             "depth": metric_sum(text, "mailsensor_scan_queue_depth"),
             "cpu": cpu_ticks(a.cpu)}
        samples.append(s)
        return s

    t0 = time.monotonic()
    first = await asyncio.to_thread(sample, "start")
    stats = {"ok": 0, "refused": 0, "errors": 0, "bytes": 0}
    sender = asyncio.create_task(send_corpus(a, messages, stats))
    k = 1
    while not sender.done():
        await asyncio.wait([sender], timeout=max(0.0, t0 + k - time.monotonic()))
        k += 1
        if not sender.done():
            await asyncio.to_thread(sample, "load")
    await sender
    end = await asyncio.to_thread(sample, "end")
    taken = (end["taken"] or 0) - (first["taken"] or 0)
    all_scanned_after = None
    deadline = time.monotonic() + a.drain_max
    while time.monotonic() < deadline:
        await asyncio.sleep(1.0)
        s = await asyncio.to_thread(sample, "drain")
        if (s["scanned"] or 0) - (first["scanned"] or 0) >= taken and s["depth"] == 0:
            all_scanned_after = round(s["t"] - end["t"], 2)
            break
    last = samples[-1]
    load_s = end["t"]
    scanned_load = (end["scanned"] or 0) - (first["scanned"] or 0)
    scanned_all = (last["scanned"] or 0) - (first["scanned"] or 0)
    drain_s = last["t"] - end["t"]
    # The drain's pace: from the end of the load until the backlog is gone.
    out = {
        "messages": a.messages, "corpus_files": len(messages), "sessions": a.sessions,
        "client": stats, "taken": taken, "load_s": load_s, "intake_rate": round(taken / load_s, 1),
        "scanned_during_load": scanned_load, "scanned_rate_during_load": round(scanned_load / load_s, 1),
        "backlog_at_end": end["depth"], "drain_s": round(drain_s, 2), "all_scanned_after_s": all_scanned_after,
        "scanned_rate_drain": round((scanned_all - scanned_load) / drain_s, 1) if drain_s > 0 else None,
        "scanned_rate_overall": round(scanned_all / last["t"], 1) if last["t"] > 0 else None,
        "scanned_all": scanned_all, "clk_tck": CLK, "samples": samples,
    }
    with open(a.out, "w") as f:
        json.dump(out, f)
    print(f"load: {taken} taken in {load_s:.1f} s ({out['intake_rate']}/s); scanned {scanned_load} during it, "
          f"{scanned_all} in all; all scanned {all_scanned_after} s after the end", file=sys.stderr)


# ---------------------------------------------------------------- hunts
def start_hunt(a):
    token = os.environ["HUNT_TOKEN"]
    body = {"source": open(a.rules).read(), "since": a.since, "until": a.until, "match_cap": a.match_cap}
    status, created = api("POST", f"{a.api}/v1/tenants/{a.tenant}/retrohunts", token, body)
    if status != 202:
        sys.exit(f"POST retrohunts: HTTP {status}: {str(created)[:2000]}")
    return created["id"]


def follow(a, hid, started_wall, abort_after=None, until_running=False):
    token = os.environ["HUNT_TOKEN"]
    url = f"{a.api}/v1/tenants/{a.tenant}/retrohunts/{hid}"
    samples, h = [], None
    deadline = time.monotonic() + a.max
    t_first = time.monotonic()
    aborted = False
    while True:
        status, h = api("GET", url, token)
        if status != 200:
            sys.exit(f"GET {url}: HTTP {status}: {str(h)[:500]}")
        p = h["progress"]
        samples.append({"t": round(time.time() - started_wall, 2), "state": h["state"], "scanned": p["scanned"],
                        "total": p["total"], "matches": p["matches"], "cpu": cpu_ticks(a.cpu)})
        if until_running and h["state"] == "running" and p["scanned"] > 0:
            break
        if h["state"] in ("finished", "aborted", "failed"):
            break
        if abort_after is not None and not aborted and time.monotonic() - t_first >= abort_after:
            api("POST", f"{url}/abort", token, {})
            aborted = True
        if time.monotonic() > deadline:
            break
        time.sleep(1.0)
    return h, samples


def summarize(h, samples):
    p = h["progress"]
    st, fin = parse_time(h.get("started_at")), parse_time(h.get("finished_at"))
    secs = (fin - st) if st and fin else None
    return {
        "id": h["id"], "state": h["state"], "total": p["total"], "scanned": p["scanned"], "skipped": p["skipped"],
        "bytes": p["bytes"], "matches": p["matches"], "cap_reached": h.get("cap_reached"), "error": h.get("error"),
        "started_at": h.get("started_at"), "finished_at": h.get("finished_at"), "seconds": secs,
        "rate": round(p["scanned"] / secs, 1) if secs else None,
        "mb_per_s": round(p["bytes"] / 1e6 / secs, 2) if secs else None,
        "samples": samples,
    }


def cmd_hunt(a):
    wall = time.time()
    hid = start_hunt(a)
    h, samples = follow(a, hid, wall, abort_after=a.abort_after_s)
    out = summarize(h, samples)
    json.dump(out, open(a.out, "w"))
    print(f"hunt {out['state']}: {out['scanned']}/{out['total']} in {out['seconds']} s = {out['rate']}/s, "
          f"{out['matches']} matches", file=sys.stderr)


def cmd_start(a):
    wall = time.time()
    hid = start_hunt(a)
    h, samples = follow(a, hid, wall, until_running=True)
    json.dump({"id": hid, "wall": wall, "samples": samples}, open(a.out, "w"))
    print(hid)


def cmd_follow(a):
    started = json.load(open(a.started))
    h, samples = follow(a, started["id"], started["wall"], abort_after=a.abort_after_s)
    out = summarize(h, started["samples"] + samples)
    json.dump(out, open(a.out, "w"))
    print(f"hunt {out['state']}: {out['scanned']}/{out['total']}", file=sys.stderr)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    ld = sub.add_parser("load")
    ld.add_argument("--port", type=int, required=True)
    ld.add_argument("--corpus", required=True)
    ld.add_argument("--messages", type=int, required=True)
    ld.add_argument("--sessions", type=int, default=20)
    ld.add_argument("--api-metrics", required=True)
    ld.add_argument("--worker-metrics", required=True)
    ld.add_argument("--drain-max", type=float, default=1800)
    ld.add_argument("--cpu", action="append", default=[])
    ld.add_argument("--out", required=True)
    for name in ("hunt", "start", "follow"):
        h = sub.add_parser(name)
        h.add_argument("--api", required=True)
        h.add_argument("--tenant", required=True)
        h.add_argument("--max", type=float, default=3600)
        h.add_argument("--cpu", action="append", default=[])
        h.add_argument("--out", required=True)
        if name != "follow":
            h.add_argument("--rules", required=True)
            h.add_argument("--since", required=True)
            h.add_argument("--until", required=True)
            h.add_argument("--match-cap", type=int, default=10000)
        if name != "start":
            h.add_argument("--abort-after-s", type=float)
        if name == "follow":
            h.add_argument("--started", required=True)
    a = p.parse_args()
    {"load": lambda a: asyncio.run(load_async(a)), "hunt": cmd_hunt, "start": cmd_start, "follow": cmd_follow}[a.cmd](a)


if __name__ == "__main__":
    main()
