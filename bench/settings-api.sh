#!/usr/bin/env bash
# Benchmark of the SMTP integration settings API (GET and PUT of
# /v1/tenants/{t}/sensors/{s}/smtp-integration) against PostgreSQL, with pgbench -S
# on the same PostgreSQL server as a reference. A benchmark, not a test: it fails only
# when it cannot set up or run, and it reports whatever the server answered.
#
# Usage (from anywhere; the script works from the repository root):
#     bench/settings-api.sh
#     DURATION=10 BENCH_NOTE="another cargo build was running" bench/settings-api.sh
#     BENCH_REV=HEAD bench/settings-api.sh     # the last commit, not the (mid-edit) working tree
#
# Environment:
#   DURATION          seconds per run (GET, PUT, pgbench -S); "20" or "20s". Default 20.
#   CONNECTIONS       concurrent connections / pgbench clients. Default 50.
#   THREADS           wrk threads and pgbench -j. Default 2.
#   PGBENCH_SCALE     pgbench -i -s. Default 10.
#   CARGO_TARGET_DIR  where the release binary is built. Default target/bench (relative to the
#                     repository root), kept apart from the dev build so the two never fight
#                     over the cargo lock or evict each other's artefacts. The binary used is
#                     $CARGO_TARGET_DIR/release/mailsensor.
#   BENCH_REV         build this commit (e.g. HEAD) from a `git archive` snapshot instead of the
#                     working tree; use it while someone is mid-edit. Built in
#                     $CARGO_TARGET_DIR/rev (the first such build compiles every dependency).
#   PGHOST/PGPORT/PGUSER  PostgreSQL to use. Default 127.0.0.1 / 5432 / postgres (trust auth).
#   BENCH_PORT        API port. Default: a free port picked at run time (18181 if none found).
#   MAILSENSOR_DATABASE_MAX_CONNECTIONS, MAILSENSOR_HTTP_WORKERS  passed to the server if set
#                     (server defaults: 20 pooled connections, one HTTP worker per CPU).
#   BENCH_NOTE        free text printed in the summary (e.g. "other builds running").
#
# Needs: cargo, curl, jq, wrk, psql, pgbench. wrk, curl and jq are apt-get installed when
# missing (as root). The databases mailsensor_bench and mailsensor_bench_pgbench are dropped
# and re-created at start and dropped again at exit. The JWT secret is random per run and
# never written anywhere but the server's environment.
set -euo pipefail
source "$(dirname "$0")/lib.sh"   # cds to the repository root; log, die, build_release, api_call, ...

DURATION=${DURATION:-20}
DURATION=${DURATION%s}
[[ $DURATION =~ ^[1-9][0-9]*$ ]] || { echo "DURATION must be a whole number of seconds, got '$DURATION'" >&2; exit 2; }
CONNECTIONS=${CONNECTIONS:-50}
THREADS=${THREADS:-2}
PGBENCH_SCALE=${PGBENCH_SCALE:-10}
DB=mailsensor_bench
PGBENCH_DB=mailsensor_bench_pgbench
TOKEN_TTL=7200

WORK=$(mktemp -d "${TMPDIR:-/tmp}/mailsensor-bench.XXXXXX")
SERVER_LOG=$WORK/server.log
SERVER_PID=

stop_processes() { # RC: from bench_cleanup (lib.sh), which then drops the databases and WORK
    stop_pid "$SERVER_PID" 50
    if [[ $1 -ne 0 && -s $SERVER_LOG ]]; then
        echo "---- last 40 lines of the server log ($SERVER_LOG) ----" >&2
        tail -n 40 "$SERVER_LOG" >&2
    fi
}
set_cleanup_traps

# ---------------------------------------------------------------- tools
for tool in wrk curl jq; do
    command -v "$tool" >/dev/null 2>&1 || apt_install "$tool"
done
command -v cargo >/dev/null 2>&1 || die "cargo is not on PATH"
require_psql
PGBENCH=$(pg_tool pgbench) || true
# pgbench ships with the PostgreSQL server package on Debian; installing that would set up
# a second cluster, so ask instead.
[[ -n $PGBENCH ]] || die "pgbench not found (on PATH or /usr/lib/postgresql/*/bin); install the PostgreSQL package that ships it"
require_postgres

# ---------------------------------------------------------------- build
build_release   # sets BIN, BUILT_REV; BENCH_REV builds in $CARGO_TARGET_DIR/rev

# ---------------------------------------------------------------- databases
recreate_databases "$DB" "$PGBENCH_DB"

# ---------------------------------------------------------------- server
if [[ -n ${BENCH_PORT:-} ]]; then
    PORT=$BENCH_PORT
else
    PORT=$(free_port 2>/dev/null) || PORT=18181
fi
BASE=http://127.0.0.1:$PORT
API_BASE=$BASE
server_env "$DB"

log "starting mailsensor serve on $BASE"
"$BIN" serve --listen "127.0.0.1:$PORT" >"$SERVER_LOG" 2>&1 &
SERVER_PID=$!
for i in $(seq 300); do
    kill -0 "$SERVER_PID" 2>/dev/null || die "mailsensor serve exited during start-up"
    [[ $(curl -s -o /dev/null -w '%{http_code}' "$BASE/readyz" || true) == 200 ]] && break
    [[ $i -eq 300 ]] && die "/readyz not 200 after 60 s"
    sleep 0.2
done
log "server ready (pid $SERVER_PID)"

# ---------------------------------------------------------------- fixtures
create_tenant_and_sensor bench bench
SETTINGS_PATH=/v1/tenants/$TENANT/sensors/$SENSOR/smtp-integration

# Realistic settings: 50 destination domains (48 + 2 exclusions below listed parents),
# 20 client entries (18 networks + 2 excluded hosts), 25 MB size limit.
BODY_FILE=$WORK/settings.json
jq -nc '
  ([range(1; 49) | "mail-\(.).example.com"] + ["!hr.mail-1.example.com", "!legal.mail-2.example.com"]) as $domains
  | ([range(0; 16) | "10.\(.).0.0/16"] + ["192.0.2.0/24", "2001:db8::/32", "!10.0.0.25", "!192.0.2.7"]) as $clients
  | {enabled: true, destination_domains: $domains, clients: $clients,
     message_size_limit: {unlimited: false, value: 25, unit: "MB"}}' >"$BODY_FILE"
[[ $(jq '.destination_domains | length' "$BODY_FILE") -eq 50 && $(jq '.clients | length' "$BODY_FILE") -eq 20 ]] \
    || die "settings body is not 50 domains / 20 clients"

PUT_JSON=$(api_call PUT "$SETTINGS_PATH" "$ADMIN" 200 "$(cat "$BODY_FILE")")
jq -e '.enabled == true and (.destination_domains | length) == 50 and (.clients | length) == 20
       and .max_message_bytes == 26214400' <<<"$PUT_JSON" >/dev/null \
    || die "PUT answered 200 but the settings differ: $PUT_JSON"
GET_JSON=$(api_call GET "$SETTINGS_PATH" "$ADMIN" 200)
REV_BEFORE_PUT=$(jq -er .revision <<<"$GET_JSON")
log "tenant $TENANT, PCN $PCN, sensor $SENSOR; settings at revision $REV_BEFORE_PUT ($(wc -c <"$BODY_FILE") byte PUT body, $(printf %s "$GET_JSON" | wc -c) byte GET body)"

# ---------------------------------------------------------------- runs
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
result_field() { sed -n "s/.*BENCH_RESULT.* $2=\([^ ]*\).*/\1/p" "$1" | tail -n 1; }

run_wrk() { # NAME SCRIPT
    local name=$1 script=$2 out=$WORK/wrk-$1.txt
    log "wrk $name: -t$THREADS -c$CONNECTIONS -d${DURATION}s"
    BENCH_BODY_FILE=$BODY_FILE wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency --timeout 10s \
        -s "$script" -H "Authorization: Bearer $ADMIN" "$BASE$SETTINGS_PATH" >"$out" 2>&1 \
        || { cat "$out" >&2; die "wrk $name failed"; }
    echo "---------------- wrk $name ----------------"
    cat "$out"
    grep -q BENCH_RESULT "$out" || die "wrk $name printed no result line"
    kill -0 "$SERVER_PID" 2>/dev/null || die "mailsensor serve died during the $name run"
}

run_wrk GET "$BENCH_DIR/get-settings.lua"
run_wrk PUT "$BENCH_DIR/put-settings.lua"
REV_AFTER_PUT=$(api_call GET "$SETTINGS_PATH" "$ADMIN" 200 | jq -er .revision)

log "pgbench -i -s $PGBENCH_SCALE into $PGBENCH_DB"
pgbench_init
log "pgbench -S -c $CONNECTIONS -j $THREADS -T $DURATION"
pgbench_select -c "$CONNECTIONS" -j "$THREADS" -T "$DURATION"   # sets PG_TPS, PG_LAT
echo "---------------- pgbench -S ----------------"
cat "$WORK/pgbench.txt"
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- summary
[[ -n $PG_TPS ]] && PG_TPS=$(printf '%.1f' "$PG_TPS")
PG_FAILED=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$WORK/pgbench.txt")

describe_commit
# Server log without colour codes (in case NO_COLOR is not honoured).
sed -E 's/\x1b\[[0-9;]*m//g' "$SERVER_LOG" >"$WORK/server-plain.log"
WARN_LINES=$(grep -c . "$WORK/server-plain.log" || true)
PUT_2XX=$(( $(result_field "$WORK/wrk-PUT.txt" requests) - $(result_field "$WORK/wrk-PUT.txt" non2xx) ))

row() { # NAME FILE
    printf '  %-26s %10s %9s %9s %9s %9s %8s\n' "$1" "$(result_field "$2" rps)" "$(result_field "$2" p50_ms)" \
        "$(result_field "$2" p99_ms)" "$(result_field "$2" requests)" "$(result_field "$2" non2xx)" \
        "$(result_field "$2" ok_rps)"
}

cat <<EOF

================ mailsensor settings API benchmark ================
  commit      $COMMIT
  date        $(date -u +%Y-%m-%dT%H:%M:%SZ)
  nproc       $(nproc)    load avg (1/5/15 min) at start: $LOAD_START, at end: $LOAD_END
  setup       ${DURATION} s per run, $CONNECTIONS connections, wrk -t$THREADS, pgbench -j $THREADS; loopback; one PostgreSQL ($("$PSQL" -d postgres -Atqc 'show server_version'))
              server: release build, HTTP workers ${MAILSENSOR_HTTP_WORKERS:-default (nproc)}, DB pool ${MAILSENSOR_DATABASE_MAX_CONNECTIONS:-20 (default)}; the server, wrk and PostgreSQL share the same cores
              settings: 50 domains (2 '!'), 20 client entries (2 '!'), 25 MB; PUT without If-Match
EOF
[[ -n ${BENCH_NOTE:-} ]] && echo "  note        $BENCH_NOTE"
printf '\n  %-26s %10s %9s %9s %9s %9s %8s\n' "" "req/s" "p50 ms" "p99 ms" "requests" "non-2xx" "2xx/s"
row "GET smtp-integration" "$WORK/wrk-GET.txt"
row "PUT smtp-integration" "$WORK/wrk-PUT.txt"
printf '\n  %-26s %10s %9s\n' "" "tps" "avg ms"
printf '  %-26s %10s %9s\n' "pgbench -S (scale $PGBENCH_SCALE)" "${PG_TPS:-?}" "${PG_LAT:-?}"
echo
PUT_STATUSES=$(result_field "$WORK/wrk-PUT.txt" statuses)
echo "  (req/s, p50 and p99 count every response, non-2xx included; 2xx/s counts only successful ones)"
echo "  PUT statuses: $PUT_STATUSES; revision $REV_BEFORE_PUT -> $REV_AFTER_PUT (+$((REV_AFTER_PUT - REV_BEFORE_PUT)); wrk counted $PUT_2XX 2xx, requests still in flight when wrk stopped are not counted)"
for f in GET PUT; do
    errs="connect $(result_field "$WORK/wrk-$f.txt" connect_err), read $(result_field "$WORK/wrk-$f.txt" read_err), write $(result_field "$WORK/wrk-$f.txt" write_err), timeout $(result_field "$WORK/wrk-$f.txt" timeouts)"
    [[ $errs == "connect 0, read 0, write 0, timeout 0" ]] || echo "  wrk $f socket errors: $errs"
done
[[ ,$PUT_STATUSES, == *,412:* ]] \
    && echo "  !! PUT answered 412 Precondition Failed although no If-Match was sent (${PUT_STATUSES})"
[[ ,$PUT_STATUSES, =~ ,5[0-9][0-9]: ]] && echo "  !! PUT answered 5xx: $PUT_STATUSES"
[[ -n $PG_FAILED && $PG_FAILED != 0 ]] && echo "  pgbench failed transactions: $PG_FAILED"
echo "  server log (MAILSENSOR_LOG=warn): $WARN_LINES line(s)"
if [[ $WARN_LINES -gt 0 ]]; then
    # Grouped: timestamp dropped, numbers replaced by N, most frequent first.
    sed -E 's/^[0-9T:.Z-]+ +//; s/[0-9]+/N/g' "$WORK/server-plain.log" | sort | uniq -c | sort -rn >"$WORK/server-grouped.log"
    head -n 10 "$WORK/server-grouped.log" | sed 's/^/    | /'
    echo "    first: $(head -n 1 "$WORK/server-plain.log")"
    echo "    last:  $(tail -n 1 "$WORK/server-plain.log")"
fi
echo "===================================================================="
