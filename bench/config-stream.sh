#!/usr/bin/env bash
# Benchmark of the config change stream (GET /v1/sensors/{s}/config-stream, Server-Sent Events):
#   1. propagation latency from a settings PATCH to the matching `upsert` event, p50/p99, with 1,
#      10 and 100 subscribers, on the API process that takes the PATCH ("same") and on a second
#      API process on the same PostgreSQL database ("cross": LISTEN/NOTIFY path);
#   2. VmRSS of one API process holding 1,000 and 10,000 idle streams.
# As reference figures from the same run: GET /healthz round trip and `pgbench -S -c 1` latency.
# A benchmark, not a test: it fails only when it cannot set up or run, and reports what it saw.
# The load generator is examples/stream_bench.rs.
#
# Usage (from anywhere; the script works from the repository root):
#     bench/config-stream.sh
#     CHANGES=50 STREAMS=1000,5000 bench/config-stream.sh          # a quicker run
#     BENCH_REV=HEAD bench/config-stream.sh   # build the last commit (plus this working tree's
#                                             # examples/stream_bench.rs), not a mid-edit tree
#
# Environment:
#   SUBSCRIBERS       subscriber counts for the latency runs, comma-separated. Default 1,10,100.
#   CHANGES           measured PATCHes per subscriber count and path. Default 200.
#   STREAMS           idle stream counts for the memory run, ascending. Default 1000,10000.
#   IDLE              seconds the streams stay idle before VmRSS is read. Default 20 (covers a
#                     15 s bookmark round).
#   LOCAL_ADDRS       loopback source addresses the memory run connects from, round-robin (each
#                     has its own ephemeral port range). Default 127.0.0.1,127.0.0.2.
#   NOFILE            open-file limit set with `ulimit -n` for the servers and the load
#                     generator. Default 65536 (falls back to the hard limit).
#   HEALTHZ_REQUESTS  sequential GET /healthz requests. Default 200.
#   PGBENCH_SECONDS   pgbench -S -c 1 -T duration. Default 10.
#   PGBENCH_SCALE     pgbench -i -s. Default 10.
#   CARGO_TARGET_DIR  where the release build goes. Default target/bench (repository-relative).
#   BENCH_REV         build this commit from a `git archive` snapshot (with the working tree's
#                     examples/stream_bench.rs copied in) instead of the working tree.
#   PGHOST/PGPORT/PGUSER  PostgreSQL to use. Default 127.0.0.1 / 5432 / postgres (trust auth).
#   MAILSENSOR_DATABASE_MAX_CONNECTIONS, MAILSENSOR_HTTP_WORKERS  passed to the servers if set.
#   BENCH_NOTE        free text printed in the summary (e.g. "other builds running").
#
# Needs: cargo, curl, jq, psql, pgbench, python3 (free ports). The databases
# mailsensor_stream_bench and mailsensor_stream_bench_pgbench are dropped and re-created at
# start and dropped at exit. The JWT secret is random per run and only ever in the environment.
set -euo pipefail
source "$(dirname "$0")/lib.sh"   # cds to the repository root; log, die, api_call, ...

SUBSCRIBERS=${SUBSCRIBERS:-1,10,100}
CHANGES=${CHANGES:-200}
STREAMS=${STREAMS:-1000,10000}
IDLE=${IDLE:-20}
LOCAL_ADDRS=${LOCAL_ADDRS:-127.0.0.1,127.0.0.2}
NOFILE=${NOFILE:-65536}
HEALTHZ_REQUESTS=${HEALTHZ_REQUESTS:-200}
PGBENCH_SECONDS=${PGBENCH_SECONDS:-10}
PGBENCH_SCALE=${PGBENCH_SCALE:-10}
DB=mailsensor_stream_bench
PGBENCH_DB=mailsensor_stream_bench_pgbench
TOKEN_TTL=14400

for v in CHANGES IDLE HEALTHZ_REQUESTS PGBENCH_SECONDS PGBENCH_SCALE NOFILE; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive whole number, got '${!v}'"
done
[[ $SUBSCRIBERS =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] || die "SUBSCRIBERS must be like 1,10,100"
[[ $STREAMS =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] || die "STREAMS must be like 1000,10000"
MAX_STREAMS=$(tr ',' '\n' <<<"$STREAMS" | sort -n | tail -n 1)
for a in ${LOCAL_ADDRS//,/ }; do
    [[ $a =~ ^127\.[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "LOCAL_ADDRS must be loopback (127.x.y.z) addresses, got '$a'"
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/mailsensor-stream-bench.XXXXXX")
declare -A SERVER_PIDS=()

stop_server() { # NAME
    stop_pid "${SERVER_PIDS[$1]:-}"
    unset "SERVER_PIDS[$1]"
}

stop_processes() { # RC: from bench_cleanup (lib.sh), which then drops the databases and WORK
    for name in "${!SERVER_PIDS[@]}"; do stop_server "$name"; done
    if [[ $1 -ne 0 ]]; then show_log_tails 30 "$WORK"/server-*.log; fi
}
set_cleanup_traps

# ---------------------------------------------------------------- limits and tools
# The servers and the load generator inherit this limit (each holds one socket per stream).
ulimit -n "$NOFILE" 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE_SET=$(ulimit -n)
[[ $NOFILE_SET == unlimited || $NOFILE_SET -ge $((MAX_STREAMS + 1024)) ]] \
    || die "ulimit -n is $NOFILE_SET (could not raise it to $NOFILE); $MAX_STREAMS streams need at least $((MAX_STREAMS + 1024))"

for tool in cargo curl jq python3; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is not on PATH"
done
PSQL=$(pg_tool psql) || true
[[ -n $PSQL ]] || die "psql not found"
PGBENCH=$(pg_tool pgbench) || true
[[ -n $PGBENCH ]] || die "pgbench not found (on PATH or /usr/lib/postgresql/*/bin)"
require_postgres

# ---------------------------------------------------------------- build
# Not build_release: the snapshot also needs the working tree's examples/stream_bench.rs.
absolute_target_dir
if [[ -n ${BENCH_REV:-} ]]; then
    # Its own target dir, sources newer than any output: see build_release in lib.sh.
    CARGO_TARGET_DIR=$CARGO_TARGET_DIR/rev-stream
    git_snapshot "$CARGO_TARGET_DIR/src"   # sets BUILT_REV, BUILD_DIR
    mkdir -p "$BUILD_DIR/examples"
    cp "$REPO/examples/stream_bench.rs" "$BUILD_DIR/examples/"
    find "$BUILD_DIR" -type f -exec touch {} +
else
    BUILT_REV=
    BUILD_DIR=$REPO
fi
cargo_release "release mailsensor + example stream_bench" --bin mailsensor --example stream_bench
BIN=$CARGO_TARGET_DIR/release/mailsensor
GEN=$CARGO_TARGET_DIR/release/examples/stream_bench
[[ -x $BIN && -x $GEN ]] || die "no binaries at $BIN / $GEN"

# ---------------------------------------------------------------- database and servers
recreate_databases "$DB" "$PGBENCH_DB"
server_env "$DB"

declare -A SERVER_URLS=()
start_server() { # NAME: starts `mailsensor serve` on a free loopback port and waits for /readyz
    local name=$1 port
    port=$(free_port) || die "no free port"
    "$BIN" serve --listen "127.0.0.1:$port" >"$WORK/server-$name.log" 2>&1 &
    SERVER_PIDS[$name]=$!
    SERVER_URLS[$name]=http://127.0.0.1:$port
    for i in $(seq 300); do
        kill -0 "${SERVER_PIDS[$name]}" 2>/dev/null || die "mailsensor serve ($name) exited during start-up"
        [[ $(curl -s -o /dev/null -w '%{http_code}' "${SERVER_URLS[$name]}/readyz" || true) == 200 ]] && break
        [[ $i -eq 300 ]] && die "$name: /readyz not 200 after 60 s"
        sleep 0.2
    done
    log "server $name ready on ${SERVER_URLS[$name]} (pid ${SERVER_PIDS[$name]}, ulimit -n $(ulimit -n))"
}
# One after the other: both apply migrations at start.
start_server A
start_server B

# ---------------------------------------------------------------- fixtures
API_BASE=${SERVER_URLS[A]}   # fixtures go to server A
create_tenant_and_sensor stream-bench bench-admin
SENSOR_TOKEN=$(mint_token --role sensor --tenant "$TENANT" --sensor "$SENSOR" --sub bench-worker)
# Start from realistic settings (the PATCHes then replace the domain list with one entry).
api_call PUT "/v1/tenants/$TENANT/sensors/$SENSOR/smtp-integration" "$ADMIN" 200 \
    '{"enabled":true,"destination_domains":["bench.example","!hr.bench.example"],"clients":["192.0.2.0/24","!192.0.2.7"],"message_size_limit":{"unlimited":false,"value":25,"unit":"MB"}}' \
    >/dev/null
log "tenant $TENANT, PCN $PCN, sensor $SENSOR"

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- references
log "reference: $HEALTHZ_REQUESTS sequential GET /healthz on A"
"$GEN" healthz --url "${SERVER_URLS[A]}" --requests "$HEALTHZ_REQUESTS" >"$WORK/healthz.txt" \
    || die "stream_bench healthz failed"

log "reference: pgbench -i -s $PGBENCH_SCALE, then pgbench -S -c 1 -T $PGBENCH_SECONDS"
pgbench_init
pgbench_select -c 1 -T "$PGBENCH_SECONDS"   # sets PG_TPS, PG_LAT
[[ -n $PG_TPS ]] && PG_TPS=$(printf '%.0f' "$PG_TPS")

# ---------------------------------------------------------------- latency
log "latency: subscribers $SUBSCRIBERS x $CHANGES changes, same process (A) and cross-replica (B)"
"$GEN" latency --publish-url "${SERVER_URLS[A]}" --cross-url "${SERVER_URLS[B]}" \
    --admin-token "$ADMIN" --sensor-token "$SENSOR_TOKEN" --tenant "$TENANT" --sensor "$SENSOR" \
    --subscribers "$SUBSCRIBERS" --changes "$CHANGES" >"$WORK/latency.txt" \
    || die "stream_bench latency failed"
for name in A B; do kill -0 "${SERVER_PIDS[$name]}" 2>/dev/null || die "server $name died during the latency run"; done

# ---------------------------------------------------------------- memory
# A third, fresh process on the same database, so its VmRSS holds nothing from the runs above.
start_server C
log "memory: $STREAMS idle streams on C (pid ${SERVER_PIDS[C]}), idle ${IDLE} s each, from $LOCAL_ADDRS"
"$GEN" memory --url "${SERVER_URLS[C]}" --pid "${SERVER_PIDS[C]}" --sensor-token "$SENSOR_TOKEN" \
    --sensor "$SENSOR" --streams "$STREAMS" --idle "$IDLE" --local-addrs "$LOCAL_ADDRS" >"$WORK/memory.txt" \
    || die "stream_bench memory failed"
kill -0 "${SERVER_PIDS[C]}" 2>/dev/null || die "server C died during the memory run"
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
for name in A B C; do stop_server "$name"; done

# ---------------------------------------------------------------- summary
describe_commit

cat <<EOF

================ mailsensor config stream benchmark ================
  commit      $COMMIT
  date        $(date -u +%Y-%m-%dT%H:%M:%SZ)
  nproc       $(nproc)    load avg (1/5/15 min) at start: $LOAD_START, at end: $LOAD_END
  setup       loopback; PostgreSQL $("$PSQL" -d postgres -Atqc 'show server_version') at $PGHOST:$PGPORT; release build;
              HTTP workers ${MAILSENSOR_HTTP_WORKERS:-default (nproc)}, DB pool ${MAILSENSOR_DATABASE_MAX_CONNECTIONS:-20 (default)} per process;
              servers, load generator and PostgreSQL share the same cores; ulimit -n $(ulimit -n)
EOF
[[ -n ${BENCH_NOTE:-} ]] && echo "  note        $BENCH_NOTE"
cat <<EOF

  Reference                                         p50 ms   p99 ms   max ms
$(cat "$WORK/healthz.txt")
  pgbench -S -c 1 -T $PGBENCH_SECONDS (scale $PGBENCH_SCALE): average latency ${PG_LAT:-?} ms, ${PG_TPS:-?} tps

  Propagation latency, PATCH -> matching upsert event, in ms ($CHANGES sequential changes per row;
  each row its own set of subscribers, each subscriber its own SSE connection)
    same  = subscribers on the API process that takes the PATCH; cross = on a second process
            (same database; woken by LISTEN/NOTIFY)
    resp  = event time - PATCH response arrival (negative: the event came first)
    send  = event time - PATCH request sent;  all = per change, when the last subscriber had it (after send)
    early = share of events that arrived before the PATCH response;  PATCH50/99 = PATCH round trip
$(cat "$WORK/latency.txt")

  Memory of one API process (fresh process C) holding idle streams (VmRSS from /proc/<pid>/status)
    each stream opened until reset+snapshot+synced arrived, then all left idle ${IDLE} s before reading;
    before = after 64 streams were opened and closed (warm-up) and the server let go of them;
    +MiB and bytes/stream relative to "before"; open s = time to open that step's streams;
    gauge = the server's mailsensor_config_streams_open; srv fds = entries in /proc/<pid>/fd;
    all closed (+N s) = after the client closed every stream, once the gauge was back at 0 (the
    server notices a closed stream only when it next writes to it) plus 2 s
$(cat "$WORK/memory.txt")
EOF
echo
for name in A B C; do
    f=$WORK/server-$name.log
    sed -E 's/\x1b\[[0-9;]*m//g' "$f" >"$f.plain"
    lines=$(grep -c . "$f.plain" || true)
    echo "  server $name log (MAILSENSOR_LOG=warn): $lines line(s)"
    if [[ $lines -gt 0 ]]; then
        sed -E 's/^[0-9T:.Z-]+ +//; s/[0-9]+/N/g' "$f.plain" | sort | uniq -c | sort -rn | head -n 8 | sed 's/^/    | /'
    fi
done
echo "===================================================================="
