#!/usr/bin/env bash
# Benchmark of the SMTP sensor worker (`mailsensor sensor`) end to end: SMTP in on loopback,
# every accepted message handed to the API (`mailsensor serve`, PostgreSQL) before the 250.
# Two references get exactly the same load in the same run: Postfix proper (a private instance
# whose queue is on disk — each message's queue file written and fsynced before the 250, then
# discarded; bench/postfix/main.cf), the anchor the worker is measured against, and Postfix's
# `smtp-sink` (accepts and discards, nothing written), the ceiling of the load generator. Measured:
#   1. throughput with Postfix `smtp-source`, SESSIONS concurrent connections, MSG_BYTES-byte
#      payload, one recipient: once with `-d` (SESSIONS persistent connections, several messages
#      each) and once without (a new connection per message, SESSIONS connections at a time);
#   2. per-message latency (MAIL FROM sent -> 250 after the final dot), p50/p99, and throughput
#      with an asyncio client embedded below (SESSIONS persistent connections, no pipelining,
#      same payload size); smtp-source reports no latencies;
#   3. that the API stored exactly as many messages as the worker answered 250 to (listed through
#      GET /v1/tenants/{t}/messages, following next_cursor), and that every id the asyncio client
#      got in a 250 reply is among them;
#   4. VmRSS of the worker with IDLE_SESSIONS idle sessions (greeting read, EHLO sent, then
#      silent), on the fresh worker before any load and again after the load runs.
# A benchmark, not a test: it fails only when it cannot set up or run, and reports what it saw.
#
# Usage (from anywhere; the script works from the repository root):
#     bench/smtp.sh
#     MESSAGES=500 bench/smtp.sh                 # a quicker run
#     BENCH_REV=HEAD bench/smtp.sh               # the last commit, not the (mid-edit) working tree
#
# Environment:
#   MESSAGES          messages per smtp-source run and per asyncio-client run. Default 2000.
#   SESSIONS          concurrent SMTP connections (smtp-source -s, asyncio client). Default 20.
#   MSG_BYTES         payload bytes per message, headers not included (smtp-source -l). Default 10240.
#   IDLE_SESSIONS     idle sessions for the memory measurement. Default 1000.
#   IDLE_SECS         seconds they stay open before VmRSS is read. Default 5.
#   WARMUP            messages sent with the asyncio client before each target's measured runs
#                     (not in the table; counted in the stored-count check). Default 5 x SESSIONS.
#   CARGO_TARGET_DIR  where the release binary is built. Default target/bench (repository-relative).
#   BENCH_REV         build this commit (e.g. HEAD) from a `git archive` snapshot instead of the
#                     working tree (built in $CARGO_TARGET_DIR/rev, shared with settings-api.sh).
#   PGHOST/PGPORT/PGUSER  PostgreSQL to use. Default 127.0.0.1 / 5432 / postgres (trust auth).
#   MAILSENSOR_DATABASE_MAX_CONNECTIONS, MAILSENSOR_HTTP_WORKERS  passed to the API if set.
#   BENCH_NOTE        free text printed in the summary (e.g. "other builds running").
#
# Needs: cargo, curl, jq, psql, python3, and smtp-source/smtp-sink from Debian's `postfix`
# package, which is apt-get installed when missing (as root; "No configuration", and the Postfix
# daemon is never started). The database mailsensor_smtp_bench is dropped and re-created at start
# and dropped at exit. The JWT secret is random per run and only ever in the environment.
set -euo pipefail
source "$(dirname "$0")/lib.sh"   # cds to the repository root; log, die, build_release, api_call, ...

MESSAGES=${MESSAGES:-2000}
SESSIONS=${SESSIONS:-20}
MSG_BYTES=${MSG_BYTES:-10240}
IDLE_SESSIONS=${IDLE_SESSIONS:-1000}
IDLE_SECS=${IDLE_SECS:-5}
WARMUP=${WARMUP:-$((SESSIONS * 5))}
DB=mailsensor_smtp_bench
TOKEN_TTL=14400
RCPT=bench-rcpt@example.com
SENDER=bench-sender@bench.example.net
HELO=bench-client.example.net

for v in MESSAGES SESSIONS MSG_BYTES IDLE_SESSIONS IDLE_SECS WARMUP; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive whole number, got '${!v}'"
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/mailsensor-smtp-bench.XXXXXX")
declare -A PIDS=()
PF=$WORK/postfix # Postfix proper, the anchor: config, queue and log of its own
POSTFIX=$(command -v postfix 2>/dev/null || echo /usr/sbin/postfix)
stop_postfix() { if [[ -f $PF/etc/main.cf ]]; then "$POSTFIX" -c "$PF/etc" stop >/dev/null 2>&1 || true; fi; }

stop_proc() { # NAME: TERM, wait up to 15 s, then KILL
    stop_pid "${PIDS[$1]:-}"
    unset "PIDS[$1]"
}

stop_processes() { # RC: from bench_cleanup (lib.sh), which then drops the databases and WORK
    # The worker first (it drains its sessions into the API), then the sink and the API.
    for name in sensor sink serve; do stop_proc "$name"; done
    stop_postfix
    if [[ $1 -ne 0 ]]; then show_log_tails 30 "$WORK"/serve.log "$WORK"/sensor.log "$WORK"/sink.log; fi
}
set_cleanup_traps

# ---------------------------------------------------------------- limits and tools
# Idle sessions need one descriptor each, in the worker and in the client.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[[ $(ulimit -n) == unlimited || $(ulimit -n) -ge $((IDLE_SESSIONS + 512)) ]] \
    || die "ulimit -n is $(ulimit -n); $IDLE_SESSIONS idle sessions need at least $((IDLE_SESSIONS + 512))"

for tool in curl jq; do
    command -v "$tool" >/dev/null 2>&1 || apt_install "$tool"
done
for tool in cargo python3; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is not on PATH"
done
# smtp-source and smtp-sink live in /usr/sbin, which is not always on PATH.
SMTP_SOURCE=$(command -v smtp-source 2>/dev/null || { [[ -x /usr/sbin/smtp-source ]] && echo /usr/sbin/smtp-source; } || true)
if [[ -z $SMTP_SOURCE ]]; then
    # "No configuration": no main.cf is written, so nothing would start a mail system even
    # where invoke-rc.d allows it; only the test programs are used.
    [[ $(id -u) -eq 0 ]] || die "smtp-source is missing; install Debian's postfix package or run as root"
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    apt_install postfix
    SMTP_SOURCE=$(command -v smtp-source 2>/dev/null || echo /usr/sbin/smtp-source)
fi
SMTP_SINK=$(command -v smtp-sink 2>/dev/null || echo /usr/sbin/smtp-sink)
[[ -x $SMTP_SOURCE && -x $SMTP_SINK ]] || die "smtp-source / smtp-sink not found after installing postfix"
require_psql
require_postgres

# ---------------------------------------------------------------- build
build_release   # sets BIN, BUILT_REV; BENCH_REV builds in $CARGO_TARGET_DIR/rev, as settings-api.sh does

# ---------------------------------------------------------------- the asyncio client
# `latency`: SESSIONS persistent connections share MESSAGES messages; per message, the time from
# writing MAIL FROM to reading the reply after the final dot. No pipelining, like smtp-source.
# `idle`: opens N sessions (greeting, EHLO), keeps them silent, reads the server's VmRSS.
cat >"$WORK/smtp_client.py" <<'PYEOF'
import argparse, asyncio, json, math, os, re, sys, time
from collections import Counter

async def reply(reader):
    """One SMTP reply, multi-line included: (code, last line)."""
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("connection closed by the server")
        if len(line) < 4 or line[3:4] != b"-":
            text = line.decode("utf-8", "replace").strip()
            try:
                return int(line[:3]), text
            except ValueError:
                return 0, text

def pct(sorted_vals, p):
    if not sorted_vals:
        return None
    return sorted_vals[max(0, math.ceil(p * len(sorted_vals)) - 1)]

def head(sender, rcpt):
    # A Message-ID of its own per message, as real mail has: identical bytes to the same
    # recipients would be one message retried, which the API stores once.
    return (f"From: <{sender}>\r\nTo: <{rcpt}>\r\nSubject: mailsensor smtp bench\r\n"
            f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S +0000', time.gmtime())}\r\n"
            f"Message-ID: <{os.getpid()}.{time.time_ns()}@bench.example.net>\r\n\r\n").encode()

def body(payload_bytes):
    lines, left, i = [], payload_bytes, 0
    while left > 0:
        n = min(80, left)
        text = n - 2 if n >= 3 else 1  # each line: text + CRLF
        lines.append((str(i % 10) + "X" * (text - 1)).encode() + b"\r\n")
        left -= text + 2
        i += 1
    return b"".join(lines) + b".\r\n"

async def latency(a):
    data = body(a.bytes)
    state = {"left": a.messages}
    lat, codes, stage_codes, errors, ids = [], Counter(), Counter(), [], []
    samples = {}

    def note(stage, code, text):
        stage_codes[f"{stage} {code}"] += 1
        if code // 100 != 2 and code != 354:
            samples.setdefault(f"{stage} {code}", text)

    async def one_connection(n):
        while state["left"] > 0:
            try:
                reader, writer = await asyncio.open_connection(a.host, a.port)
            except OSError as e:
                errors.append(f"connect: {e}")
                if len(errors) > 100:
                    return
                await asyncio.sleep(0.1)
                continue
            try:
                code, text = await reply(reader)
                note("greeting", code, text)
                if code != 220:
                    return
                writer.write(f"EHLO {a.helo}\r\n".encode())
                code, text = await reply(reader)
                note("EHLO", code, text)
                if code != 250:
                    return
                while state["left"] > 0:
                    state["left"] -= 1
                    t0 = time.perf_counter()
                    writer.write(f"MAIL FROM:<{a.sender}>\r\n".encode())
                    code, text = await reply(reader)
                    note("MAIL", code, text)
                    if code != 250:
                        writer.write(b"RSET\r\n"); await reply(reader)
                        continue
                    writer.write(f"RCPT TO:<{a.rcpt}>\r\n".encode())
                    code, text = await reply(reader)
                    note("RCPT", code, text)
                    if code // 100 != 2:
                        writer.write(b"RSET\r\n"); await reply(reader)
                        continue
                    writer.write(b"DATA\r\n")
                    code, text = await reply(reader)
                    note("DATA", code, text)
                    if code != 354:
                        writer.write(b"RSET\r\n"); await reply(reader)
                        continue
                    writer.write(head(a.sender, a.rcpt) + data)
                    await writer.drain()
                    code, text = await reply(reader)
                    t1 = time.perf_counter()
                    note("end of data", code, text)
                    codes[code] += 1
                    if code == 250:
                        lat.append(t1 - t0)
                        m = re.search(r"<([0-9a-fA-F-]{36})>", text)
                        if m:
                            ids.append(m.group(1).lower())
                writer.write(b"QUIT\r\n")
                try:
                    await asyncio.wait_for(reply(reader), 5)
                except Exception:
                    pass
                return
            except (OSError, ConnectionError) as e:
                errors.append(f"session: {e}")
                if len(errors) > 100:
                    return
            finally:
                writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(one_connection(i) for i in range(a.sessions)))
    elapsed = time.perf_counter() - start
    lat.sort()
    ms = lambda v: None if v is None else round(v * 1000, 2)
    if a.ids_file:
        with open(a.ids_file, "w") as f:
            f.write("".join(i + "\n" for i in ids))
    print(json.dumps({
        "messages": a.messages, "ok": codes.get(250, 0), "elapsed_s": round(elapsed, 3),
        "rate": round(codes.get(250, 0) / elapsed, 1) if elapsed > 0 else None,
        "p50_ms": ms(pct(lat, 0.50)), "p90_ms": ms(pct(lat, 0.90)), "p99_ms": ms(pct(lat, 0.99)),
        "max_ms": ms(lat[-1] if lat else None),
        "end_of_data_codes": {str(k): v for k, v in sorted(codes.items())},
        "stage_codes": dict(sorted(stage_codes.items())), "reply_samples": samples,
        "ids_in_250": len(ids), "errors": len(errors), "error_samples": errors[:5],
    }))

def vm_rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return None

def fds(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None

async def idle(a):
    before, fds_before = vm_rss(a.pid), fds(a.pid)
    sem = asyncio.Semaphore(50)
    conns, failures = [], Counter()

    async def open_one():
        async with sem:
            try:
                reader, writer = await asyncio.open_connection(a.host, a.port)
                code, text = await asyncio.wait_for(reply(reader), 30)
                if code != 220:
                    failures[f"greeting {code}"] += 1
                    writer.close()
                    return
                writer.write(f"EHLO {a.helo}\r\n".encode())
                code, text = await asyncio.wait_for(reply(reader), 30)
                if code != 250:
                    failures[f"EHLO {code}"] += 1
                    writer.close()
                    return
                conns.append((reader, writer))
            except Exception as e:
                failures[type(e).__name__] += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(open_one() for _ in range(a.sessions)))
    open_s = time.perf_counter() - t0
    await asyncio.sleep(a.idle)
    # A few readings a second apart; the largest is reported.
    readings = []
    for _ in range(3):
        readings.append(vm_rss(a.pid))
        await asyncio.sleep(1)
    with_open, fds_open = max(readings), fds(a.pid)
    for _, w in conns:
        w.write(b"QUIT\r\n")
    await asyncio.sleep(0.5)
    for _, w in conns:
        w.close()
    await asyncio.sleep(3)
    after = vm_rss(a.pid)
    n = len(conns)
    print(json.dumps({
        "requested": a.sessions, "open": n, "failures": dict(failures), "open_s": round(open_s, 2),
        "rss_before": before, "rss_open": with_open, "rss_after_close": after,
        "per_session": round((with_open - before) / n) if n else None,
        "fds_before": fds_before, "fds_open": fds_open,
    }))

def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["latency", "idle"])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--sessions", type=int, default=20)
    p.add_argument("--messages", type=int, default=2000)
    p.add_argument("--bytes", type=int, default=10240)
    p.add_argument("--sender", default="bench-sender@bench.example.net")
    p.add_argument("--rcpt", default="bench-rcpt@example.com")
    p.add_argument("--helo", default="bench-client.example.net")
    p.add_argument("--ids-file")
    p.add_argument("--pid", type=int)
    p.add_argument("--idle", type=float, default=5)
    a = p.parse_args()
    asyncio.run(latency(a) if a.mode == "latency" else idle(a))

main()
PYEOF

# ---------------------------------------------------------------- database and API
recreate_databases "$DB"

API_PORT=$(free_port) || die "no free port"
API=http://127.0.0.1:$API_PORT
API_BASE=$API

server_env "$DB"
# And the worker's own settings: it is started below with everything given as flags.
unset MAILSENSOR_API_URL MAILSENSOR_SENSOR_TOKEN MAILSENSOR_SENSOR_ID MAILSENSOR_SMTP_LISTEN \
    MAILSENSOR_ADMIN_LISTEN MAILSENSOR_TLS_CERT MAILSENSOR_TLS_KEY MAILSENSOR_SENSOR_NETWORK


log "starting mailsensor serve on $API"
"$BIN" serve --listen "127.0.0.1:$API_PORT" >"$WORK/serve.log" 2>&1 &
PIDS[serve]=$!
wait_http_200 "mailsensor serve" "${PIDS[serve]}" "$API/readyz"

create_tenant_and_sensor smtp-bench bench-admin
PUT_JSON=$(api_call PUT "/v1/tenants/$TENANT/sensors/$SENSOR/smtp-integration" "$ADMIN" 200 \
    '{"enabled": true, "destination_domains": ["example.com"], "clients": [], "message_size_limit": {"unlimited": false, "value": 10, "unit": "MB"}}')
jq -e '.enabled == true and .max_message_bytes == 10485760' <<<"$PUT_JSON" >/dev/null \
    || die "PUT answered 200 but the settings differ: $PUT_JSON"
SENSOR_TOKEN=$(mint_token --role sensor --tenant "$TENANT" --sensor "$SENSOR" --sub bench-worker)
log "tenant $TENANT, PCN $PCN, sensor $SENSOR (settings revision $(jq -r .revision <<<"$PUT_JSON"))"

# ---------------------------------------------------------------- worker and sink
SMTP_PORT=$(free_port) || die "no free port"
ADMIN_PORT=$(free_port) || die "no free port"
SINK_PORT=$(free_port) || die "no free port"
log "starting mailsensor sensor on 127.0.0.1:$SMTP_PORT (admin 127.0.0.1:$ADMIN_PORT)"
"$BIN" sensor --api "$API" --token "$SENSOR_TOKEN" --listen "127.0.0.1:$SMTP_PORT" \
    --admin-listen "127.0.0.1:$ADMIN_PORT" --max-sessions-per-ip 2000 --max-sessions 5000 \
    --hostname bench-sensor.example.net --instance-id "bench-worker-$$" >"$WORK/sensor.log" 2>&1 &
PIDS[sensor]=$!
wait_http_200 "mailsensor sensor" "${PIDS[sensor]}" "http://127.0.0.1:$ADMIN_PORT/readyz"
log "worker ready (pid ${PIDS[sensor]}): $(curl -s "http://127.0.0.1:$ADMIN_PORT/readyz")"

# smtp-sink must drop root privileges (-u); -c prints counters, 1000 is the listen backlog.
log "starting smtp-sink on 127.0.0.1:$SINK_PORT"
"$SMTP_SINK" -u nobody -c "127.0.0.1:$SINK_PORT" 1000 >"$WORK/sink.log" 2>&1 &
PIDS[sink]=$!
for i in $(seq 50); do
    kill -0 "${PIDS[sink]}" 2>/dev/null || die "smtp-sink exited: $(cat "$WORK/sink.log")"
    python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $SINK_PORT), 1).close()" 2>/dev/null && break
    [[ $i -eq 50 ]] && die "smtp-sink not accepting after 10 s"
    sleep 0.2
done

# Postfix proper: its own config, queue and log under $WORK; smtpd on 127.0.0.1:$PF_PORT.
PF_PORT=$(free_port) || die "no free port"
log "starting Postfix (queue on disk, discard transport) on 127.0.0.1:$PF_PORT"
chmod 755 "$WORK" # the postfix user must reach its queue below it
start_postfix "$PF" "$PF_PORT"

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- memory, fresh worker
run_idle() { # TAG
    log "idle sessions ($1): $IDLE_SESSIONS to the worker, ${IDLE_SECS} s idle"
    python3 "$WORK/smtp_client.py" idle --port "$SMTP_PORT" --sessions "$IDLE_SESSIONS" --idle "$IDLE_SECS" \
        --pid "${PIDS[sensor]}" --helo "$HELO" >"$WORK/idle-$1.json" \
        || die "idle-session client failed"
    kill -0 "${PIDS[sensor]}" 2>/dev/null || die "the worker died during the idle-session run"
}
run_idle fresh

# ---------------------------------------------------------------- throughput and latency
declare -A LOAD_AT=()
run_source() { # TARGET PORT MODE(persistent|per-message)
    local target=$1 port=$2 mode=$3 tag=source-$1-$3 flags=()
    [[ $mode == persistent ]] && flags=(-d)
    LOAD_AT[$tag]=$(cut -d' ' -f1 /proc/loadavg)
    log "smtp-source -s $SESSIONS ${flags[*]} -m $MESSAGES -l $MSG_BYTES against $target"
    local t0 t1 rc=0
    t0=$(date +%s.%N)
    "$SMTP_SOURCE" -4 -c "${flags[@]}" -s "$SESSIONS" -m "$MESSAGES" -l "$MSG_BYTES" -M "$HELO" \
        -f "$SENDER" -t "$RCPT" "127.0.0.1:$port" >"$WORK/$tag.out" 2>"$WORK/$tag.err" || rc=$?
    t1=$(date +%s.%N)
    echo "$rc" >"$WORK/$tag.rc"
    echo "$t0 $t1" | awk '{ printf "%.3f\n", $2 - $1 }' >"$WORK/$tag.secs"
    # -c prints a counter, bumped when the final dot is sent (before its reply).
    tr '\r' '\n' <"$WORK/$tag.out" | grep -E '^[0-9]+$' | tail -n 1 >"$WORK/$tag.count" || true
    if [[ $rc -ne 0 ]]; then
        log "smtp-source against $target ($mode) exited $rc: $(head -c 300 "$WORK/$tag.err")"
    fi
}
run_latency() { # TARGET PORT TAG MESSAGES
    local tag=$3
    LOAD_AT[$tag]=$(cut -d' ' -f1 /proc/loadavg)
    log "asyncio client ($tag): $SESSIONS connections, $4 messages of $MSG_BYTES bytes against $1"
    python3 "$WORK/smtp_client.py" latency --port "$2" --sessions "$SESSIONS" --messages "$4" \
        --bytes "$MSG_BYTES" --sender "$SENDER" --rcpt "$RCPT" --helo "$HELO" \
        --ids-file "$WORK/$tag.ids" >"$WORK/$tag.json" || die "asyncio client against $1 failed"
}

# Where the worker's time goes: CPU seconds (utime + stime) of the API, the worker and all PostgreSQL
# processes over the worker's measured runs.
CLK=$(getconf CLK_TCK)
cpu_ticks() { # PID...: their utime + stime so far, in clock ticks
    local t=0 p
    for p in "$@"; do
        [[ -r /proc/$p/stat ]] && t=$((t + $(awk '{ print $14 + $15 }' "/proc/$p/stat")))
    done
    echo "$t"
}
declare -A CPU0=() CPU1=()
cpu_snapshot() { # ARRAY-NAME
    local -n into=$1
    into[serve]=$(cpu_ticks "${PIDS[serve]}")
    into[sensor]=$(cpu_ticks "${PIDS[sensor]}")
    # shellcheck disable=SC2046
    into[postgres]=$(cpu_ticks $(pgrep -x postgres))
    # Group commit: WAL flushes (pg_stat_wal.wal_sync, every one the server made) against the
    # commits of the bench database. Statistics reach the views within about a second.
    sleep 1.2
    into[wal_sync]=$(psql -Atqd postgres -c "SELECT wal_sync FROM pg_stat_wal")
    into[commits]=$(psql -Atqd postgres -c "SELECT xact_commit FROM pg_stat_database WHERE datname = '$DB'")
}

for target in worker postfix sink; do
    case $target in worker) port=$SMTP_PORT ;; postfix) port=$PF_PORT ;; *) port=$SINK_PORT ;; esac
    # Warm-up (connections to the API, caches); counted in the stored-count check, not in the table.
    run_latency "$target" "$port" "warmup-$target" "$WARMUP"
    [[ $target == worker ]] && cpu_snapshot CPU0
    run_source "$target" "$port" persistent
    run_source "$target" "$port" per-message
    run_latency "$target" "$port" "latency-$target" "$MESSAGES"
    [[ $target == worker ]] && cpu_snapshot CPU1
    if [[ $target == worker ]]; then
        kill -0 "${PIDS[sensor]}" 2>/dev/null || die "the worker died during the load runs"
        # The scan queue works off what was stored after the 250s; let it finish before the
        # references run, so they do not share the cores with it.
        t0=$SECONDS
        until [[ $(curl -s "$API/metrics" | awk '/^mailsensor_scan_queue_depth / { print $2 }') == 0 ]]; do
            ((SECONDS - t0 < 300)) || die "the scan queue did not drain within 300 s"
            sleep 0.5
        done
        SCAN_DRAIN_SECS=$((SECONDS - t0))
    fi
done
kill -0 "${PIDS[sink]}" 2>/dev/null || log "smtp-sink is no longer running"

# ---------------------------------------------------------------- memory, after the load
RSS_AFTER_LOAD=$(awk '/^VmRSS:/ { print $2 * 1024 }' "/proc/${PIDS[sensor]}/status")
run_idle after-load
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- stored-count check
metric() { # NAME LABELS-REGEX: value of one sample of the worker's /metrics, 0 when absent
    local v
    v=$(grep -E "^$1\{[^}]*$2[^}]*\} " "$WORK/metrics.txt" | awk '{ s += $NF } END { if (NR) printf "%d", s }')
    echo "${v:-0}"
}
curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" >"$WORK/metrics.txt" || true
M_STORED=$(metric mailsensor_smtp_messages_total 'outcome="stored"')
M_FAILED=$(metric mailsensor_smtp_messages_total 'outcome="handoff_failed"')

log "listing stored messages through the API"
: >"$WORK/api-ids"
: >"$WORK/api-verdicts"
CURSOR=
PAGES=0
while :; do
    q="limit=500&sensor_id=$SENSOR${CURSOR:+&cursor=$CURSOR}"
    api_call GET "/v1/tenants/$TENANT/messages?$q" "$ADMIN" 200 >"$WORK/page.json"
    jq -r '.items[].id' "$WORK/page.json" >>"$WORK/api-ids"
    jq -r '.items[] | (.verdict // "none")' "$WORK/page.json" >>"$WORK/api-verdicts"
    PAGES=$((PAGES + 1))
    CURSOR=$(jq -r '.next_cursor // empty' "$WORK/page.json")
    [[ -n $CURSOR ]] || break
    [[ $PAGES -lt 10000 ]] || die "more than 10000 pages of messages?"
done
API_STORED=$(grep -c . "$WORK/api-ids" || true)
API_UNIQUE=$(sort -u "$WORK/api-ids" | grep -c . || true)
VERDICTS=$(sort "$WORK/api-verdicts" | uniq -c | awk '{ printf "%s%s %s", (NR > 1 ? ", " : ""), $2, $1 }')
# Every id the asyncio client got in a 250 must be listed.
sort -u "$WORK/api-ids" | tr 'A-F' 'a-f' >"$WORK/api-ids.sorted"
cat "$WORK/warmup-worker.ids" "$WORK/latency-worker.ids" | sort -u >"$WORK/client-ids.sorted"
CLIENT_IDS=$(grep -c . "$WORK/client-ids.sorted" || true)
MISSING_IDS=$(comm -23 "$WORK/client-ids.sorted" "$WORK/api-ids.sorted" | grep -c . || true)

# 250s the worker gave: smtp-source exits 0 only when every message got a 2xx after the dot
# (it stops at the first other reply); the asyncio client counts them.
WORKER_250=0
WORKER_250_EXACT=1
for mode in persistent per-message; do
    tag=source-worker-$mode
    if [[ $(cat "$WORK/$tag.rc") -eq 0 ]]; then
        WORKER_250=$((WORKER_250 + MESSAGES))
    else
        WORKER_250_EXACT=0
    fi
done
CLIENT_250=$(( $(jq -r .ok "$WORK/warmup-worker.json") + $(jq -r .ok "$WORK/latency-worker.json") ))
WORKER_250=$((WORKER_250 + CLIENT_250))

# ---------------------------------------------------------------- summary
# Log lines up to here were written during the runs; later ones during shutdown.
declare -A RUN_LINES=()
for name in serve sensor; do RUN_LINES[$name]=$(wc -l <"$WORK/$name.log"); done
for name in sensor sink serve; do stop_proc "$name"; done
PF_DISCARDED=$(grep -c 'status=sent' "$PF/maillog" || true)
stop_postfix

describe_commit
mib() { awk -v b="$1" 'BEGIN { if (b == "" || b == "null") print "?"; else printf "%.1f MiB", b / 1048576 }'; }

source_row() { # LABEL TAG
    local tag=$2 rc secs count rate
    rc=$(cat "$WORK/$tag.rc"); secs=$(cat "$WORK/$tag.secs"); count=$(cat "$WORK/$tag.count")
    if [[ $rc -eq 0 ]]; then
        rate=$(awk -v n="$MESSAGES" -v s="$secs" 'BEGIN { printf "%.1f", n / s }')
        printf '  %-34s %9s %8s %8s %8s %7s %8s  %s\n' "$1" "$rate" "-" "-" "-" "$MESSAGES" "$secs" "load ${LOAD_AT[$tag]}"
    else
        printf '  %-34s %9s %8s %8s %8s %7s %8s  %s\n' "$1" "FAILED" "-" "-" "-" "<=${count:-?}" "$secs" "exit $rc, load ${LOAD_AT[$tag]}"
    fi
}
latency_row() { # LABEL TAG
    local j=$WORK/$2.json
    printf '  %-34s %9s %8s %8s %8s %7s %8s  %s\n' "$1" "$(jq -r .rate "$j")" "$(jq -r .p50_ms "$j")" \
        "$(jq -r .p99_ms "$j")" "$(jq -r .max_ms "$j")" "$(jq -r .ok "$j")" "$(jq -r .elapsed_s "$j")" "load ${LOAD_AT[$2]}"
}
ratio() { # WORKER-TAG ANCHOR-TAG: msgs/s of one over the other
    local a b
    [[ $(cat "$WORK/$1.rc") -eq 0 && $(cat "$WORK/$2.rc") -eq 0 ]] || { echo "? (a run failed)"; return; }
    a=$(cat "$WORK/$1.secs"); b=$(cat "$WORK/$2.secs")
    awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2fx", b / a }'
}
idle_line() { # TAG LABEL
    local j=$WORK/idle-$1.json
    printf '  %-22s before %s, with %s/%s sessions open %s, after closing %s; +%s bytes/session; fds %s -> %s\n' \
        "$2" "$(mib "$(jq -r .rss_before "$j")")" "$(jq -r .open "$j")" "$(jq -r .requested "$j")" \
        "$(mib "$(jq -r .rss_open "$j")")" "$(mib "$(jq -r .rss_after_close "$j")")" "$(jq -r .per_session "$j")" \
        "$(jq -r .fds_before "$j")" "$(jq -r .fds_open "$j")"
    [[ $(jq -r '.failures | length' "$j") -eq 0 ]] || echo "    session failures: $(jq -c .failures "$j")"
}

cat <<EOF

================ mailsensor SMTP sensor worker benchmark ================
  commit      $COMMIT
  date        $(date -u +%Y-%m-%dT%H:%M:%SZ)
  nproc       $(nproc)    load avg (1/5/15 min) at start: $LOAD_START, at end: $LOAD_END
  setup       loopback; worker -> API (release build) -> PostgreSQL $("$PSQL" -d postgres -Atqc 'show server_version'); 250 only after the API stored the message;
              worker, API, PostgreSQL, smtp-sink and the load generators share the same cores; ulimit -n $(ulimit -n)
              $MESSAGES messages per run, $MSG_BYTES-byte payload (+ headers), 1 recipient, $SESSIONS concurrent connections, no pipelining;
              settings: destination example.com, clients [] (any), 10 MB limit; API HTTP workers ${MAILSENSOR_HTTP_WORKERS:-default (nproc)}, DB pool ${MAILSENSOR_DATABASE_MAX_CONNECTIONS:-20 (default)}
EOF
[[ -n ${BENCH_NOTE:-} ]] && echo "  note        $BENCH_NOTE"
printf '\n  %-34s %9s %8s %8s %8s %7s %8s\n' "" "msgs/s" "p50 ms" "p99 ms" "max ms" "250s" "secs"
source_row "worker    smtp-source -s $SESSIONS -d" source-worker-persistent
source_row "worker    smtp-source -s $SESSIONS" source-worker-per-message
latency_row "worker    asyncio client" latency-worker
source_row "postfix   smtp-source -s $SESSIONS -d" source-postfix-persistent
source_row "postfix   smtp-source -s $SESSIONS" source-postfix-per-message
latency_row "postfix   asyncio client" latency-postfix
source_row "smtp-sink smtp-source -s $SESSIONS -d" source-sink-persistent
source_row "smtp-sink smtp-source -s $SESSIONS" source-sink-per-message
latency_row "smtp-sink asyncio client" latency-sink
cat <<EOF
  smtp-source -s $SESSIONS -d: $SESSIONS persistent connections, several messages each; without -d: a new connection
  per message, $SESSIONS at a time. asyncio client: $SESSIONS persistent connections. msgs/s = 250 replies / wall time;
  latency (asyncio client only) = MAIL FROM sent -> reply after the final dot; "load" = 1-min load average at the
  run's start. Each target first got $WARMUP warm-up messages from the asyncio client (not in the table).
  postfix = Postfix proper, queue file fsynced before each 250, then discarded ($PF_DISCARDED discarded in its log).
  After the worker's runs the API's scan queue took ${SCAN_DRAIN_SECS}s more to scan what was stored (off the 250 path);
  the references ran after it had drained.

  Worker against Postfix proper (the anchor; target >= 1.0 at 10 KB, >= 0.8 at 100 KB)
    smtp-source -d         $(ratio source-worker-persistent source-postfix-persistent)
    smtp-source            $(ratio source-worker-per-message source-postfix-per-message)
    asyncio client         $(awk -v a="$(jq -r .rate "$WORK/latency-worker.json")" -v b="$(jq -r .rate "$WORK/latency-postfix.json")" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "?" }')

  Where the worker's time goes: CPU seconds over its three measured runs ($((3 * MESSAGES)) messages, $(awk -v a="$(cat "$WORK/source-worker-persistent.secs")" -v b="$(cat "$WORK/source-worker-per-message.secs")" -v c="$(jq -r .elapsed_s "$WORK/latency-worker.json")" 'BEGIN { printf "%.1f", a + b + c }') s wall, 2 cores)
$(for k in serve sensor postgres; do awk -v n="$k" -v t=$((CPU1[$k] - CPU0[$k])) -v hz="$CLK" -v m=$((3 * MESSAGES)) 'BEGIN { printf "    %-10s %6.1f s CPU, %5.2f ms per message\n", n, t / hz, 1000 * t / hz / m }'; done)
    (the rest: the load generator and the kernel's loopback; the scan queue's work is in serve/postgres)
    WAL flushes (fsync of the WAL, whole server) $((CPU1[wal_sync] - CPU0[wal_sync])) for $((CPU1[commits] - CPU0[commits])) commits of the bench database and $((3 * MESSAGES)) messages: $(awk -v f=$((CPU1[wal_sync] - CPU0[wal_sync])) -v m=$((3 * MESSAGES)) 'BEGIN { printf "%.2f", f / m }') flushes per stored message
    (fewer than one: concurrent hand-offs shared flushes — PostgreSQL's group commit)

  Stored-count check (worker)
    250 replies given          $WORKER_250$([[ $WORKER_250_EXACT -eq 1 ]] || echo " (at least; an smtp-source run failed, its 250 count is unknown)")  (smtp-source: $MESSAGES per run that exited 0; asyncio client: $CLIENT_250 incl. $(jq -r .ok "$WORK/warmup-worker.json") warm-up)
    worker metric              mailsensor_smtp_messages_total stored=$M_STORED, handoff_failed=$M_FAILED
    API list (sensor)          $API_STORED stored ($API_UNIQUE distinct ids, $PAGES pages of <= 500); verdicts: ${VERDICTS:-none}
    asyncio client's 250 ids   $CLIENT_IDS distinct received, $MISSING_IDS of them not in the API list
EOF
if [[ $WORKER_250_EXACT -eq 1 && $API_STORED -eq $WORKER_250 && $M_STORED -eq $WORKER_250 && $MISSING_IDS -eq 0 \
      && $API_UNIQUE -eq $API_STORED && $CLIENT_IDS -eq $CLIENT_250 ]]; then
    echo "    result                     OK: stored == 250 replies == worker metric, every 250 id listed"
else
    echo "    result                     !! MISMATCH (see the numbers above)"
fi
cat <<EOF

  Worker memory (VmRSS from /proc/<pid>/status; $IDLE_SESSIONS sessions: greeting read, EHLO answered, then idle ${IDLE_SECS} s;
  largest of 3 readings 1 s apart; bytes/session = (open - before) / open sessions; fds = /proc/<pid>/fd entries)
EOF
idle_line fresh "fresh worker:"
echo "  after the load runs:   VmRSS $(mib "$RSS_AFTER_LOAD")"
idle_line after-load "after the load runs:"

# Replies other than the expected ones, and client-side errors.
echo
ODD=0
for t in worker postfix sink; do
    j=$WORK/latency-$t.json
    other=$(jq -r '.stage_codes | to_entries | map(select((.key | test(" (220|250|354)$")) | not)) | map("\(.key): \(.value)") | join(", ")' "$j")
    if [[ -n $other ]]; then
        ODD=1
        echo "  asyncio client vs $t, unexpected replies: $other"
        jq -r '.reply_samples | to_entries[] | "      \(.key): \(.value)"' "$j"
    fi
    [[ $(jq -r .errors "$j") -eq 0 ]] || { ODD=1; echo "  asyncio client vs $t, connection errors: $(jq -r .errors "$j"): $(jq -c .error_samples "$j")"; }
    for mode in persistent per-message; do
        tag=source-$t-$mode
        if [[ -s $WORK/$tag.err ]]; then
            ODD=1
            echo "  smtp-source vs $t ($mode) stderr (exit $(cat "$WORK/$tag.rc")):"
            head -n 5 "$WORK/$tag.err" | sed 's/^/      /'
        fi
    done
done
[[ $ODD -eq 1 ]] || echo "  no SMTP reply other than 220/250/354 seen by the asyncio client; smtp-source printed no errors"
group_log() { sed -E 's/^[0-9T:.Z-]+ +//; s/[0-9]+/N/g' | sort | uniq -c | sort -rn | head -n 8 | sed 's/^/    | /'; }
for name in serve sensor; do
    f=$WORK/$name.log
    sed -E 's/\x1b\[[0-9;]*m//g' "$f" >"$f.plain"
    total=$(wc -l <"$f.plain")
    during=${RUN_LINES[$name]}
    echo "  $name log (MAILSENSOR_LOG=warn): $during line(s) during the runs, $((total - during)) during shutdown (SIGTERM)"
    [[ $during -eq 0 ]] || head -n "$during" "$f.plain" | group_log
    if [[ $total -gt $during ]]; then
        echo "    at shutdown:"
        tail -n "+$((during + 1))" "$f.plain" | group_log
    fi
done
echo "=========================================================================="
