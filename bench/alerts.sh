#!/usr/bin/env bash
# Benchmark of alert delivery (issue 18): RATE detections/s fanned out to three destinations —
# a webhook, syslog and e-mail — for DURATION s; the delivery latency from the verdict's commit
# (the event's timestamp, written in the scan's transaction) to its receipt, p50 and p99, over the
# whole run and at steady state (events raised STEADY_SKIP s after the start of the load until its
# end), and the outbox's depth over time.
#   - `mailsensor serve` (release build) with --alerts-allow-private (the receivers are on
#     loopback), ALERT_WORKERS delivery workers and SCAN_WORKERS scan workers; one tenant, one
#     sensor on its PCN, one `mailsensor sensor` worker, as bench/scan.sh sets them up;
#   - three destinations of the tenant, created by its administrator, each with the default
#     filters (min_verdict suspicious): every event goes to all three;
#       webhook: tests/receivers/webhook.py (served by aiohttp on one asyncio loop; verifies each
#                request with the `standardwebhooks` library and the destination's secret; records
#                time.time() on arrival);
#       syslog:  a private rsyslogd, imtcp (RFC 5424, octet counting), each record written with
#                %timegenerated% (microseconds) by omfile;
#       e-mail:  a private Postfix (as tests/api/alerts.rs: virtual delivery of alerts.test into a
#                Maildir); receipt = the Maildir file's mtime, the event ids from its
#                X-Mailsensor-Events header (one alert, or a digest of up to 25 that piled up);
#   - the load, from one of two sources (SOURCE):
#       rescan (the default): PRELOAD messages carrying the EICAR test string are stored through
#         SMTP and scanned before any destination exists; the load is then bench/alerts_measure.py's
#         asyncio HTTP client, SESSIONS kept-alive connections, asking a senior security officer's
#         `POST …/messages/{id}/rescan` of them in turn, one per slot of a RATE/s schedule: each puts
#         its message back in the scan queue, whose scan commits `malicious` again and raises one
#         event. The detections come from the product's own scan queue and outbox, without SMTP
#         intake beside them: on 2 cores, intake alone at 1000 messages/s takes the whole machine,
#         so with SOURCE=smtp the rate of detections is bounded by intake + scan, not by delivery;
#       requeue: the same PRELOAD messages, put back in the scan queue in turn at RATE/s straight in
#         PostgreSQL (one psql session, an UPDATE every 10 ms: what the rescan does to the row,
#         without the request, its audit entry and the earlier result). It leaves out the rescan's
#         HTTP request and its three transactions, which at ~330/s take about half of this 2-core
#         machine, so what is measured is the scan queue, the outbox and the delivery alone;
#       smtp: bench/alerts_measure.py's asyncio SMTP client, SESSIONS persistent connections,
#         MAIL/RCPT/DATA pipelined, one message per slot of a RATE/s schedule, each carrying the
#         EICAR test string (the built-in checks say `malicious`, so each message raises one event);
#   - once a second during the load and after it, GET /metrics of the API
#     (mailsensor_alert_outbox_depth, mailsensor_scan_queue_depth, scanned, events) and what each
#     receiver holds; after the load, until every message is scanned and every event is at every
#     receiver, or DRAIN_MAX s;
#   - then every event of the tenant from GET /v1/tenants/{t}/alert-events (its id and timestamp)
#     against each receiver's first receipt of it. An event a receiver never got counts as
#     infinitely late in that receiver's percentiles (so a p99 is never flattered by a drop).
# Target (from the issue; printed, never enforced): p99 < 1 s for webhook and syslog at steady
# state. A benchmark, not a test: it fails only when it cannot set up or run, and reports what it saw.
#
# Usage (from anywhere; the script works from the repository root):
#     bench/alerts.sh
#     RATE=100 DURATION=10 bench/alerts.sh      # a quick run
#     BENCH_REV=HEAD bench/alerts.sh            # the last commit, not the working tree
#
# Environment:
#   RATE          rescans, requeued messages or messages (so detections) per second asked of the client. Default 1000.
#   SOURCE        rescan, requeue or smtp (above). Default rescan.
#   PRELOAD       messages stored before the load, for SOURCE=rescan and requeue (each scanned again every
#                 PRELOAD/RATE s). Default 10000.
#   DURATION      seconds of load. Default 60.
#   SESSIONS      connections of the client (SMTP, or HTTP for rescan). Default 50.
#   STEADY_SKIP   seconds at the start of the load left out of the steady-state figures. Default 10.
#   DRAIN_MAX     seconds to wait after the load for everything to arrive. Default 120.
#   ALERT_WORKERS / SCAN_WORKERS   `serve --alert-workers / --scan-workers`. Default 2 / 2.
#   WARMUP        messages sent (and waited for at all three receivers) before the load. Default 5.
#   DESTINATIONS  which destinations to create, comma-separated, from webhook,syslog,email (a
#                 diagnostic: e.g. webhook,syslog shows what e-mail costs the others). Default all three.
#   OUT_DIR       where the report (.txt) and the raw samples (.json) are kept. Default bench/results.
#   CARGO_TARGET_DIR  where the release binary is built. Default target/bench.
#   BENCH_REV     build this commit (e.g. HEAD) from a `git archive` snapshot instead of the working tree.
#   PGHOST/PGPORT/PGUSER  PostgreSQL to use. Default 127.0.0.1 / 5432 / postgres (trust auth).
#   BENCH_NOTE    free text printed in the summary.
#
# Needs: cargo, curl, jq, psql, python3 with `standardwebhooks` and `aiohttp` (pip install
# standardwebhooks==1.1.0 aiohttp==3.14.5),
# rsyslog and postfix (apt-get installed when missing, as root; Postfix as "No configuration": only
# the private instance is started). Runs as root (Postfix's virtual delivery, chown). The database
# mailsensor_alerts_bench is re-created at start and dropped at exit; everything else lives in a
# temporary folder, removed at exit, but for the files in OUT_DIR.
set -euo pipefail
source "$(dirname "$0")/lib.sh"   # cds to the repository root; log, die, build_release, api_call, ...

RATE=${RATE:-1000}
DURATION=${DURATION:-60}
SESSIONS=${SESSIONS:-50}
STEADY_SKIP=${STEADY_SKIP:-10}
DRAIN_MAX=${DRAIN_MAX:-120}
ALERT_WORKERS=${ALERT_WORKERS:-2}
SCAN_WORKERS=${SCAN_WORKERS:-2}
WARMUP=${WARMUP:-5}
DESTINATIONS=${DESTINATIONS:-webhook,syslog,email}
SOURCE=${SOURCE:-rescan}
PRELOAD=${PRELOAD:-10000}
OUT_DIR=${OUT_DIR:-$BENCH_DIR/results}
DB=mailsensor_alerts_bench
TOKEN_TTL=14400

[[ $SOURCE == rescan || $SOURCE == requeue || $SOURCE == smtp ]] || die "SOURCE must be rescan, requeue or smtp, got '$SOURCE'"
for v in RATE DURATION SESSIONS DRAIN_MAX ALERT_WORKERS SCAN_WORKERS WARMUP PRELOAD; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive whole number, got '${!v}'"
done
[[ $DESTINATIONS =~ ^(webhook|syslog|email)(,(webhook|syslog|email))*$ ]] \
    || die "DESTINATIONS must list webhook, syslog and/or email, comma-separated, got '$DESTINATIONS'"
wants() { [[ ,$DESTINATIONS, == *,$1,* ]]; }
[[ $STEADY_SKIP =~ ^[0-9]+$ ]] || die "STEADY_SKIP must be a whole number, got '$STEADY_SKIP'"
[[ $STEADY_SKIP -lt $DURATION ]] || die "STEADY_SKIP ($STEADY_SKIP) must be below DURATION ($DURATION)"
[[ $(id -u) -eq 0 ]] || die "run as root: the private Postfix delivers into a Maildir owned by nobody"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/mailsensor-alerts-bench.XXXXXX")
chmod 755 "$WORK" # Postfix's users must reach their folders below it
declare -A PIDS=()
PF=$WORK/postfix
RS=$WORK/rsyslog
WH=$WORK/webhook
POSTFIX=$(command -v postfix 2>/dev/null || echo /usr/sbin/postfix)
stop_postfix() { if [[ -f $PF/etc/main.cf ]]; then "$POSTFIX" -c "$PF/etc" stop >/dev/null 2>&1 || true; fi; }
stop_proc() { # NAME: TERM, wait up to 15 s, then KILL
    stop_pid "${PIDS[$1]:-}"
    unset "PIDS[$1]"
}
stop_processes() { # RC: from bench_cleanup (lib.sh), which then drops the database and WORK
    for name in sensor serve webhook rsyslog; do stop_proc "$name"; done
    stop_postfix
    if [[ $1 -ne 0 ]]; then
        show_log_tails 30 "$WORK"/serve.log "$WORK"/sensor.log "$WH"/stderr.log "$RS"/stderr.log "$PF"/maillog
    fi
}
set_cleanup_traps

# ---------------------------------------------------------------- tools
for tool in curl jq; do
    command -v "$tool" >/dev/null 2>&1 || apt_install "$tool"
done
for tool in cargo python3; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is not on PATH"
done
python3 -c 'import standardwebhooks, aiohttp' 2>/dev/null \
    || die "Python's standardwebhooks or aiohttp is missing: pip install standardwebhooks==1.1.0 aiohttp==3.14.5 (the webhook receiver verifies with the first, served by the second)"
py_version() { python3 -c "import importlib.metadata as m; print(m.version('$1'))" 2>/dev/null || echo '?'; }
sbin() { command -v "$1" 2>/dev/null || { [[ -x /usr/sbin/$1 ]] && echo "/usr/sbin/$1"; } || true; }
[[ -n $(sbin rsyslogd) ]] || apt_install rsyslog
if [[ -z $(sbin postfix) ]]; then
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    apt_install postfix
fi
RSYSLOGD=$(sbin rsyslogd) POSTFIX=$(sbin postfix)
[[ -n $RSYSLOGD && -n $POSTFIX ]] || die "rsyslogd or postfix not found after installing"
require_psql
require_postgres

# ---------------------------------------------------------------- build
build_release # sets BIN, BUILT_REV, BUILD_DIR

wait_port() { # NAME PORT LOG
    for _ in $(seq 150); do
        python3 -c "import socket; socket.create_connection(('127.0.0.1', $2), 1).close()" 2>/dev/null && return 0
        sleep 0.1
    done
    die "$1 is not accepting on 127.0.0.1:$2 after 15 s: $(tail -n 5 "$3" 2>/dev/null)"
}

# ---------------------------------------------------------------- receivers
WH_PORT=$(free_port) || die "no free port"
mkdir -p "$WH"
echo '{"status": 200}' >"$WH/control.json"
echo '[]' >"$WH/secrets.json"
RECEIVER=tests/receivers/webhook.py
log "starting the webhook receiver ($RECEIVER) on 127.0.0.1:$WH_PORT"
python3 "$RECEIVER" "$WH_PORT" "$WH" >/dev/null 2>"$WH/stderr.log" &
PIDS[webhook]=$!
wait_port "the webhook receiver" "$WH_PORT" "$WH/stderr.log"

RS_PORT=$(free_port) || die "no free port"
mkdir -p "$RS"
SYSLOG_FILE=$RS/alerts.log
cat >"$RS/rsyslog.conf" <<EOF
global(workDirectory="$RS" maxMessageSize="64k")
module(load="imtcp" MaxSessions="100")
template(name="received" type="string" string="%timegenerated:::date-rfc3339% %msg%\n")
ruleset(name="alerts") { action(type="omfile" file="$SYSLOG_FILE" template="received") }
input(type="imtcp" port="$RS_PORT" address="127.0.0.1" ruleset="alerts")
EOF
log "starting rsyslogd (imtcp) on 127.0.0.1:$RS_PORT"
"$RSYSLOGD" -n -f "$RS/rsyslog.conf" -i "$RS/rsyslog.pid" >/dev/null 2>"$RS/stderr.log" &
PIDS[rsyslog]=$!
wait_port rsyslogd "$RS_PORT" "$RS/stderr.log"

PF_PORT=$(free_port) || die "no free port"
mkdir -p "$PF/etc" "$PF/queue" "$PF/data" "$PF/vmail"
MAILDIR=$PF/vmail/inbox
# As tests/api/alerts.rs's Postfix: every message for alerts.test into one Maildir.
cat >"$PF/etc/main.cf" <<EOF
compatibility_level = 3.6
config_directory = $PF/etc
queue_directory = $PF/queue
data_directory = $PF/data
maillog_file = $PF/maillog
maillog_file_prefixes = $PF
myhostname = relay.alerts.test
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_peername_lookup = no
alias_maps =
alias_database =
virtual_mailbox_domains = alerts.test
virtual_mailbox_base = $PF/vmail
virtual_mailbox_maps = static:inbox/
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
virtual_transport = virtual
EOF
{
    sed "s|^smtp      inet .*|127.0.0.1:$PF_PORT inet n - n - - smtpd|" tests/cluster/postfix/master.cf
    echo "virtual   unix  -       n       n       -       -       virtual"
} >"$PF/etc/master.cf"
chown postfix "$PF/data"
chown 65534:65534 "$PF/vmail"
touch "$PF/maillog"
log "starting Postfix (virtual delivery into a Maildir) on 127.0.0.1:$PF_PORT"
"$POSTFIX" -c "$PF/etc" start >"$PF/start.log" 2>&1 || die "Postfix did not start: $(cat "$PF/start.log") $(tail -n 5 "$PF/maillog")"
wait_port Postfix "$PF_PORT" "$PF/maillog"
PF_MASTER=$(tr -d ' \n' <"$PF/queue/pid/master.pid" 2>/dev/null || true)
[[ $PF_MASTER =~ ^[0-9]+$ ]] || die "no Postfix master pid in $PF/queue/pid/master.pid"

# ---------------------------------------------------------------- the API, the sensor, the destinations
recreate_databases "$DB"
server_env "$DB"
unset MAILSENSOR_API_URL MAILSENSOR_SENSOR_TOKEN MAILSENSOR_SENSOR_ID MAILSENSOR_SMTP_LISTEN \
    MAILSENSOR_ADMIN_LISTEN MAILSENSOR_TLS_CERT MAILSENSOR_TLS_KEY MAILSENSOR_SENSOR_NETWORK \
    MAILSENSOR_YARA_RULES MAILSENSOR_CLAMD MAILSENSOR_RSPAMD MAILSENSOR_ALERT_WORKERS MAILSENSOR_SCAN_WORKERS \
    MAILSENSOR_ALERTS_ALLOW_PRIVATE MAILSENSOR_ALERT_TIMEOUT_SECS
API_PORT=$(free_port) || die "no free port"
API=http://127.0.0.1:$API_PORT
API_BASE=$API
SERVE_FLAGS=(--alerts-allow-private --alert-workers "$ALERT_WORKERS" --scan-workers "$SCAN_WORKERS")
log "starting mailsensor serve on $API ${SERVE_FLAGS[*]}"
"$BIN" serve --listen "127.0.0.1:$API_PORT" "${SERVE_FLAGS[@]}" >"$WORK/serve.log" 2>&1 &
PIDS[serve]=$!
wait_http_200 "mailsensor serve" "${PIDS[serve]}" "$API/readyz"
create_tenant_and_sensor alerts-bench bench-admin # OPERATOR, TENANT, PCN, ADMIN, SENSOR

start_bench_worker "$WORK/sensor.log"

if [[ $SOURCE == rescan || $SOURCE == requeue ]]; then
    # Before any destination exists: their events are older than the load and reach nobody.
    log "preload: $PRELOAD malicious messages stored and scanned, to be scanned again in turn by the load"
    python3 bench/alerts_measure.py preload --port "$SMTP_PORT" --count "$PRELOAD" --api-metrics "$API/metrics" \
        --ids-out "$WORK/preload.ids" >"$WORK/preload.json" || die "the preload failed"
    OFFICER=$(mint_token --role senior_security_officer --tenant "$TENANT" --node "$PCN" --sub bench-officer)
    LOAD_ARGS=(--source "$SOURCE" --ids "$WORK/preload.ids" --api "$API" --tenant "$TENANT"
               --psql "host=$PGHOST port=$PGPORT user=$PGUSER dbname=$DB")
else
    OFFICER=""
    LOAD_ARGS=(--source smtp)
fi

DESTS_PATH=/v1/tenants/$TENANT/alert-destinations
if wants webhook; then
    created=$(api_call POST "$DESTS_PATH" "$ADMIN" 201 "{\"name\":\"bench-webhook\",\"webhook\":{\"url\":\"http://127.0.0.1:$WH_PORT/hook\"}}")
    jq -ce '[.secret]' <<<"$created" >"$WH/secrets.json" || die "no secret in $created"
fi
if wants syslog; then
    api_call POST "$DESTS_PATH" "$ADMIN" 201 \
        "{\"name\":\"bench-syslog\",\"syslog\":{\"host\":\"127.0.0.1\",\"port\":$RS_PORT,\"transport\":\"tcp\"}}" >/dev/null
fi
if wants email; then
    api_call POST "$DESTS_PATH" "$ADMIN" 201 \
        "{\"name\":\"bench-mail\",\"email\":{\"host\":\"127.0.0.1\",\"port\":$PF_PORT,\"security\":\"none\",\"from\":\"mailsensor@alerts.test\",\"to\":[\"soc@alerts.test\"]}}" >/dev/null
fi
log "destinations: $DESTINATIONS (webhook, syslog over TCP, e-mail without TLS through the loopback relay)"

RECEIVERS=(--dests "$DESTINATIONS" --webhook-dir "$WH" --syslog-file "$SYSLOG_FILE" --maildir "$MAILDIR")
log "warm-up: $WARMUP malicious messages, waiting for them at every receiver"
python3 bench/alerts_measure.py warmup --port "$SMTP_PORT" --count "$WARMUP" --timeout 60 "${RECEIVERS[@]}" >"$WORK/warmup.json" \
    || die "the warm-up's alerts did not reach every receiver; deliveries: $(curl -s -H "Authorization: Bearer $ADMIN" "$API$DESTS_PATH" | head -c 600)"
sleep 2

# ---------------------------------------------------------------- the load
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "load ($SOURCE): $RATE detections/s for $DURATION s over $SESSIONS connections; then up to $DRAIN_MAX s for the rest"
ALERTS_TOKEN=$OFFICER python3 bench/alerts_measure.py run "${LOAD_ARGS[@]}" --port "$SMTP_PORT" --rate "$RATE" --duration "$DURATION" --sessions "$SESSIONS" \
    --api-metrics "$API/metrics" --worker-metrics "http://127.0.0.1:$ADMIN_PORT/metrics" --drain-max "$DRAIN_MAX" \
    --cpu "serve=${PIDS[serve]}" --cpu "sensor=${PIDS[sensor]}" --cpu postgres=postgres \
    --cpu "webhook-receiver=${PIDS[webhook]}" --cpu "rsyslogd=${PIDS[rsyslog]}" --cpu "postfix=$PF_MASTER+" \
    --out "$WORK/run.json" "${RECEIVERS[@]}" || die "alerts_measure.py run failed"
kill -0 "${PIDS[serve]}" 2>/dev/null || die "the API died during the run"
kill -0 "${PIDS[sensor]}" 2>/dev/null || die "the worker died during the run"
PF_QUEUE=$(find "$PF/queue/incoming" "$PF/queue/active" "$PF/queue/deferred" -type f 2>/dev/null | wc -l)

# ---------------------------------------------------------------- report
describe_commit
mkdir -p "$OUT_DIR"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=$OUT_DIR/alerts-$STAMP-$SOURCE-rate$RATE-${DURATION}s
{
    cat <<EOF

================ mailsensor alerts benchmark ================
  commit      $COMMIT
  date        $(date -u +%Y-%m-%dT%H:%M:%SZ)
  machine     nproc $(nproc); load avg (1/5/15 min) before the load: $LOAD_START, at the end: $(cut -d' ' -f1-3 /proc/loadavg)
  destinations $DESTINATIONS
  source      $SOURCE$([[ $SOURCE != smtp ]] && echo " ($PRELOAD stored messages scanned again in turn)")
  API         mailsensor serve ${SERVE_FLAGS[*]} (PostgreSQL $("$PSQL" -d postgres -Atqc 'show server_version' 2>/dev/null)), one worker, one tenant, one sensor
  receivers   webhook: tests/receivers/webhook.py (aiohttp $(py_version aiohttp), standardwebhooks $(py_version standardwebhooks));
              syslog: $("$RSYSLOGD" -v 2>/dev/null | awk 'NR == 1 { print "rsyslogd " $2; exit }') imtcp -> omfile; e-mail: Postfix $(postconf -d -h mail_version 2>/dev/null || echo '?') -> virtual -> Maildir
EOF
    [[ -n ${BENCH_NOTE:-} ]] && echo "  note        $BENCH_NOTE"
    echo
    ALERTS_TOKEN=$ADMIN python3 bench/alerts_measure.py report --run "$WORK/run.json" --api "$API" --tenant "$TENANT" \
        --skip "$STEADY_SKIP" --out "$WORK/report.json" "${RECEIVERS[@]}" || echo "  !! the report failed (see above)"
    echo "  Postfix queue files left at the end: $PF_QUEUE"
    n=$(grep -c 'cannot record delivery attempts' "$WORK/serve.log" || true)
    [[ $n -eq 0 ]] || echo "  serve log: $n x 'cannot record delivery attempts' ($(grep -c 'cannot record delivery attempts.*deadlock detected' "$WORK/serve.log" || true) of them 'deadlock detected'; those deliveries are sent again once their hold ends)"
    n=$(grep -c -i -E 'warn|error' "$WORK/serve.log" || true)
    if [[ $n -gt 0 ]]; then
        echo "  serve log: $n warning/error line(s), e.g.:"
        { grep -i -E 'warn|error' "$WORK/serve.log" | sed -E 's/\x1b\[[0-9;]*m//g' | head -n 3 | cut -c1-220 | sed 's/^/    | /'; } || true
    fi
    n=$(grep -c -i -E 'warn|error' "$WORK/sensor.log" || true)
    [[ $n -eq 0 ]] || echo "  sensor log: $n warning/error line(s), first: $(grep -i -E 'warn|error' "$WORK/sensor.log" | head -n 1 | cut -c1-200)"
    echo "  raw samples: $OUT.json"
    echo "=============================================================="
} >"$OUT.txt"
jq -c --slurpfile r "$WORK/report.json" '. + {report: $r[0]}' "$WORK/run.json" >"$OUT.json" 2>/dev/null \
    || cp "$WORK/run.json" "$OUT.json"
cat "$OUT.txt"
log "kept $OUT.txt and $OUT.json"
