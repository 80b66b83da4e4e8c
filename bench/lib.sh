# Shared helpers for the bench/*.sh benchmarks. Sourced, never run:
#     source "$(dirname "$0")/lib.sh"
# right after `set -euo pipefail`. Sourcing it changes to the repository root and sets
# BENCH_DIR, REPO and the PostgreSQL / CARGO_TARGET_DIR defaults; everything else is functions.
#
# What the sourcing script provides (the functions read these when called):
#   WORK       its temporary directory (apt.log, resp, pgbench*.txt go there; removed at exit)
#   stop_processes RC  a function: stops what the script started (bench_cleanup calls it)
#   PSQL       path of psql (require_psql / pg_tool)
#   PGBENCH    path of pgbench, and PGBENCH_DB (pgbench_init, pgbench_select)
#   BIN        the mailsensor binary (build_release sets it)
#   TOKEN_TTL  lifetime in seconds of the tokens mint_token issues
#   API_BASE   base URL (http://127.0.0.1:PORT) api_call sends requests to
#   API, TENANT, SENSOR, ADMIN, PIDS   for start_bench_worker (PIDS an associative array)

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)
cd "$REPO"

export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/bench}

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '[bench] FAILED: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- exit and processes
# set_cleanup_traps: on exit, bench_cleanup runs; INT and TERM exit with 130 / 143 (and so
# run it too).
set_cleanup_traps() {
    trap bench_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}
# bench_cleanup: calls the script's `stop_processes RC` (stop what it started; on failure show
# its logs), then drops the bench databases, removes WORK and exits with the script's status.
bench_cleanup() {
    local rc=$?
    set +e
    stop_processes "$rc"
    drop_databases
    rm -rf "$WORK"
    exit $rc
}
# show_log_tails LINES FILE...: the last LINES lines of each non-empty FILE, on stderr.
show_log_tails() {
    local n=$1 f
    shift
    for f in "$@"; do
        [[ -s $f ]] || continue
        echo "---- last $n lines of $(basename "$f") ----" >&2
        tail -n "$n" "$f" >&2
    done
}

# stop_pid PID [TRIES]: TERM, wait up to TRIES x 0.2 s (default 75, i.e. 15 s), then KILL; reaps it.
stop_pid() {
    local pid=$1 tries=${2:-75}
    [[ -n $pid ]] || return 0
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null
        for _ in $(seq "$tries"); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    fi
    wait "$pid" 2>/dev/null || true
}

# free_port: prints a free loopback TCP port (python3 needed).
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# ---------------------------------------------------------------- tools
APT_UPDATED=0
# apt_install PACKAGE...: apt-get install (as root only), with one `apt-get update` retry.
apt_install() {
    [[ $(id -u) -eq 0 ]] || die "$* is missing; install it (apt-get install $*) or run as root"
    log "installing $* with apt-get"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >"$WORK/apt.log" 2>&1; then
        if [[ $APT_UPDATED -eq 0 ]]; then
            APT_UPDATED=1
            apt-get update -q >>"$WORK/apt.log" 2>&1 || true
        fi
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >>"$WORK/apt.log" 2>&1 \
            || { cat "$WORK/apt.log" >&2; die "apt-get install $* failed"; }
    fi
}

# A PostgreSQL client program: on PATH, else the newest /usr/lib/postgresql/*/bin one.
pg_tool() {
    if command -v "$1" >/dev/null 2>&1 && "$1" --version >/dev/null 2>&1; then
        command -v "$1"
        return
    fi
    local found
    found=$(ls -1 /usr/lib/postgresql/*/bin/"$1" 2>/dev/null | sort -V | tail -n 1)
    [[ -n $found ]] && echo "$found"
}

# require_psql: sets PSQL, apt-get installing postgresql-client when psql is missing.
require_psql() {
    PSQL=$(pg_tool psql) || true
    [[ -n $PSQL ]] || { apt_install postgresql-client; PSQL=$(pg_tool psql) || die "psql not found"; }
}

# require_postgres: dies unless PostgreSQL answers as $PGUSER@$PGHOST:$PGPORT.
require_postgres() {
    "$PSQL" -d postgres -Atqc 'select 1' >/dev/null 2>&1 \
        || die "cannot reach PostgreSQL as $PGUSER@$PGHOST:$PGPORT (trust auth expected)"
}

# ---------------------------------------------------------------- build
# Makes CARGO_TARGET_DIR absolute (relative to the repository root).
absolute_target_dir() {
    [[ $CARGO_TARGET_DIR == /* ]] || CARGO_TARGET_DIR=$REPO/$CARGO_TARGET_DIR
}

# git_snapshot DIR: BENCH_REV as a short commit id in BUILT_REV, its tree extracted into a fresh
# DIR (git archive), which becomes BUILD_DIR.
git_snapshot() {
    BUILT_REV=$(git rev-parse --short --verify "$BENCH_REV^{commit}") || die "BENCH_REV=$BENCH_REV is not a commit"
    BUILD_DIR=$1
    rm -rf "$BUILD_DIR" && mkdir -p "$BUILD_DIR"
    git archive --format=tar "$BUILT_REV" | tar -x -C "$BUILD_DIR" || die "git archive $BUILT_REV failed"
}

# cargo_release WHAT CARGO_BUILD_ARGS...: `cargo build --release ARGS` in BUILD_DIR; WHAT is
# only for the log line.
cargo_release() {
    local what=$1
    shift
    log "building $what from ${BUILT_REV:-the working tree} (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
    (cd "$BUILD_DIR" && cargo build --release "$@") >&2 \
        || die "cargo build --release failed${BUILT_REV:+ for $BUILT_REV}${BUILT_REV:- (working tree; BENCH_REV=HEAD builds the last commit instead)}"
}

# build_release: builds the release mailsensor binary from the working tree, or with BENCH_REV
# set from that commit; sets BIN, BUILT_REV (empty for the working tree), BUILD_DIR and the
# final CARGO_TARGET_DIR.
build_release() {
    absolute_target_dir
    if [[ -n ${BENCH_REV:-} ]]; then
        # Build a committed revision from a read-only snapshot (git archive), unaffected by
        # whatever is being edited in the working tree.
        # Its own target dir: cargo decides freshness by mtime, and a working-tree build and a
        # snapshot build sharing one target dir could each take the other's output as fresh.
        CARGO_TARGET_DIR=$CARGO_TARGET_DIR/rev
        git_snapshot "$CARGO_TARGET_DIR/src"
        # git archive sets every mtime to the commit time; for a different (maybe older) commit
        # than the last build, make the sources newer than any output so cargo rebuilds them.
        if [[ $(cat "$CARGO_TARGET_DIR/built-rev" 2>/dev/null) != "$BUILT_REV" ]]; then
            find "$BUILD_DIR" -type f -exec touch {} +
        fi
        rm -f "$CARGO_TARGET_DIR/built-rev"
    else
        BUILT_REV=
        BUILD_DIR=$REPO
    fi
    cargo_release "the release binary" --bin mailsensor
    if [[ -n $BUILT_REV ]]; then echo "$BUILT_REV" >"$CARGO_TARGET_DIR/built-rev"; fi
    BIN=$CARGO_TARGET_DIR/release/mailsensor
    [[ -x $BIN ]] || die "no binary at $BIN"
}

# describe_commit: sets COMMIT to what was built, for the summary.
describe_commit() {
    COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
    if [[ -n $BUILT_REV ]]; then
        COMMIT="$BUILT_REV (BENCH_REV=$BENCH_REV, built from git archive; HEAD is $COMMIT)"
    elif [[ -n $(git status --porcelain -- src migration Cargo.toml Cargo.lock 2>/dev/null) ]]; then
        COMMIT="$COMMIT + uncommitted changes in src/, migration/ or Cargo.* (the working tree is what was built)"
    fi
}

# ---------------------------------------------------------------- databases
BENCH_DBS=()
# recreate_databases DB...: drops and creates them; drop_databases (from the EXIT trap) drops
# them again.
recreate_databases() {
    local db args=() noun=database
    [[ $# -gt 1 ]] && noun=databases
    for db in "$@"; do args+=(-c "DROP DATABASE IF EXISTS $db WITH (FORCE)"); done
    for db in "$@"; do args+=(-c "CREATE DATABASE $db"); done
    local IFS=' '
    local names=$*
    log "re-creating $noun ${names// / and }"
    BENCH_DBS=("$@")
    "$PSQL" -q -v ON_ERROR_STOP=1 -d postgres -c 'SET client_min_messages = warning' "${args[@]}" >/dev/null \
        || die "could not create the bench $noun"
}
drop_databases() {
    [[ ${#BENCH_DBS[@]} -gt 0 ]] || return 0
    local db args=()
    for db in "${BENCH_DBS[@]}"; do args+=(-c "DROP DATABASE IF EXISTS $db WITH (FORCE)"); done
    local IFS=' '
    local names="${BENCH_DBS[*]}"
    "$PSQL" -q -d postgres "${args[@]}" >/dev/null 2>&1 \
        || echo "[bench] warning: could not drop ${names// / / }" >&2
}

# pgbench_init: pgbench -i -s PGBENCH_SCALE into PGBENCH_DB.
pgbench_init() {
    "$PGBENCH" -i -q -s "$PGBENCH_SCALE" "$PGBENCH_DB" >"$WORK/pgbench-init.txt" 2>&1 \
        || { cat "$WORK/pgbench-init.txt" >&2; die "pgbench -i failed"; }
}
# pgbench_select ARGS...: pgbench -S ARGS PGBENCH_DB into $WORK/pgbench.txt; sets PG_TPS (as
# printed) and PG_LAT (average latency, ms), empty when not found.
pgbench_select() {
    "$PGBENCH" -S "$@" "$PGBENCH_DB" >"$WORK/pgbench.txt" 2>&1 \
        || { cat "$WORK/pgbench.txt" >&2; die "pgbench -S failed"; }
    PG_TPS=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time).*/\1/p' "$WORK/pgbench.txt")
    [[ -n $PG_TPS ]] || PG_TPS=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$WORK/pgbench.txt" | tail -n 1)
    PG_LAT=$(sed -n 's/^latency average = \([0-9.]*\) ms.*/\1/p' "$WORK/pgbench.txt")
}

# ---------------------------------------------------------------- server and API
# server_env DB: the environment `mailsensor serve` runs with: DB as its database, a random
# HS256 secret (only ever in the environment), warn-level plain logs, nothing else inherited.
server_env() {
    export MAILSENSOR_DATABASE_URL="postgres://$PGUSER@$PGHOST:$PGPORT/$1"
    make_secret
    export MAILSENSOR_LOG=warn NO_COLOR=1
    unset MAILSENSOR_JWT_PUBLIC_KEYS MAILSENSOR_JWT_SIGNING_KEY MAILSENSOR_LISTEN
}
# make_secret: a random 32-byte hex MAILSENSOR_JWT_HS256_SECRET, exported.
make_secret() {
    MAILSENSOR_JWT_HS256_SECRET=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
    export MAILSENSOR_JWT_HS256_SECRET
    [[ ${#MAILSENSOR_JWT_HS256_SECRET} -eq 64 ]] || die "could not generate a secret"
}

# mint_token ARGS...: prints a token from `mailsensor token --ttl TOKEN_TTL ARGS`.
mint_token() { "$BIN" token --ttl "$TOKEN_TTL" "$@" || die "mailsensor token $* failed"; }

# api_call METHOD PATH TOKEN EXPECTED_STATUS [BODY]: sends it to API_BASE and prints the
# response body; dies on any other status.
api_call() {
    local method=$1 path=$2 tok=$3 want=$4 body=${5:-} status
    local args=(-sS -o "$WORK/resp" -w '%{http_code}' -X "$method" -H "Authorization: Bearer $tok")
    [[ -n $body ]] && args+=(-H 'Content-Type: application/json' --data-binary "$body")
    status=$(curl "${args[@]}" "$API_BASE$path") || die "$method $path: curl failed"
    if [[ $status != "$want" ]]; then
        echo "response body:" >&2
        cat "$WORK/resp" >&2
        echo >&2
        die "$method $path: HTTP $status, expected $want"
    fi
    cat "$WORK/resp"
}

# create_tenant_and_sensor NAME ADMIN_SUB: as platform operator, a tenant "NAME-<time>-<pid>",
# then as its administrator (subject ADMIN_SUB) a sensor NAME on the tenant's PCN. Sets
# OPERATOR, TENANT, PCN, ADMIN (token) and SENSOR.
create_tenant_and_sensor() {
    local name=$1 admin_sub=$2 tenant_json sensor_json
    OPERATOR=$(mint_token --role platform_operator --sub bench-operator)
    tenant_json=$(api_call POST /v1/tenants "$OPERATOR" 201 "{\"name\":\"$name-$(date +%s)-$$\"}")
    TENANT=$(jq -er .id <<<"$tenant_json") || die "no id in $tenant_json"
    PCN=$(jq -er .pcn.id <<<"$tenant_json") || die "no pcn.id in $tenant_json"
    ADMIN=$(mint_token --role administrator --tenant "$TENANT" --node "$PCN" --sub "$admin_sub")
    sensor_json=$(api_call POST "/v1/tenants/$TENANT/sensors" "$ADMIN" 201 "{\"name\":\"$name\",\"node_id\":\"$PCN\"}")
    SENSOR=$(jq -er .id <<<"$sensor_json") || die "no id in $sensor_json"
}

# start_postfix PF PORT: Postfix proper (bench/postfix/main.cf: queue on disk, discard transport,
# the cluster test's service table with smtpd on 127.0.0.1:PORT), config, queue and log under PF;
# returns once it accepts connections. $POSTFIX is the postfix command.
start_postfix() {
    local pf=$1 port=$2
    mkdir -p "$pf/etc" "$pf/queue" "$pf/data"
    sed "s|@PF@|$pf|g" bench/postfix/main.cf >"$pf/etc/main.cf"
    sed "s|^smtp      inet .*|127.0.0.1:$port inet n - n - - smtpd|" tests/cluster/postfix/master.cf >"$pf/etc/master.cf"
    chown postfix "$pf/data"
    touch "$pf/maillog"
    "$POSTFIX" -c "$pf/etc" start >"$pf/postfix-start.log" 2>&1 \
        || die "Postfix did not start: $(cat "$pf/postfix-start.log") $(tail -n 5 "$pf/maillog")"
    local i
    for i in $(seq 50); do
        python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1).close()" 2>/dev/null && return 0
        sleep 0.2
    done
    die "Postfix not accepting after 10 s: $(tail -n 5 "$pf/maillog")"
}

# wait_http_200 NAME PID URL: waits up to 60 s for URL to answer 200; dies if PID exits first.
wait_http_200() {
    for _ in $(seq 300); do
        kill -0 "$2" 2>/dev/null || die "$1 exited during start-up"
        [[ $(curl -s -o /dev/null -w '%{http_code}' "$3" || true) == 200 ]] && return 0
        sleep 0.2
    done
    die "$1: $3 not 200 after 60 s"
}

# start_bench_worker LOG: SMTP for example.com on the SENSOR of create_tenant_and_sensor (10 MB
# messages, any client), then one `mailsensor sensor` for it against API, its SMTP and admin
# listeners on free loopback ports, its output in LOG; sets SMTP_PORT, ADMIN_PORT and
# PIDS[sensor] (the calling script's associative array).
start_bench_worker() {
    local log=$1 token
    api_call PUT "/v1/tenants/$TENANT/sensors/$SENSOR/smtp-integration" "$ADMIN" 200 \
        '{"enabled": true, "destination_domains": ["example.com"], "clients": [], "message_size_limit": {"unlimited": false, "value": 10, "unit": "MB"}}' >/dev/null
    token=$(mint_token --role sensor --tenant "$TENANT" --sensor "$SENSOR" --sub bench-worker)
    SMTP_PORT=$(free_port) || die "no free port"
    ADMIN_PORT=$(free_port) || die "no free port"
    "$BIN" sensor --api "$API" --token "$token" --listen "127.0.0.1:$SMTP_PORT" \
        --admin-listen "127.0.0.1:$ADMIN_PORT" --max-sessions-per-ip 2000 --max-sessions 5000 \
        --hostname bench-sensor.example.net --instance-id "bench-worker-$$" >"$log" 2>&1 &
    PIDS[sensor]=$!
    wait_http_200 "mailsensor sensor" "${PIDS[sensor]}" "http://127.0.0.1:$ADMIN_PORT/readyz"
}
