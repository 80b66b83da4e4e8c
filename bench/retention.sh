#!/usr/bin/env bash
# Benchmark of mail expiry (issue 20, point 3): "a simulated 60 days of mail under 7-day retention
# (a test clock, not waiting) shows the database size levelling off; expiry by dropping partitions
# against expiry by DELETE of the same rows, side by side (time, WAL bytes, bloat after)".
# PostgreSQL only (SQLite has no partitions). Everything runs as the owner (PGUSER, a superuser:
# the FORCEd row-level security does not bind it); the mail is written with SQL
# (bench/retention_day.sql), not through the API: what is measured is storage and expiry.
#   Mail: PER_DAY messages a day, each a messages row (ids UUIDv7 of a random millisecond of its
#   day), one message_chunks row of MSG_BYTES incompressible bytes (hex-decoded md5 digests of
#   random numbers; TOAST cannot shrink them) and, in part 1, a message_keys row. One tenant with
#   message_retention_days = RETENTION_DAYS; the expiry is `mailsensor expire --as-of` (release build).
#   1. Levelling off: a fresh database, migrated. For day d = 0 .. DAYS-1 of a calendar ending
#      yesterday (UTC): store day d's mail, then `mailsensor expire --as-of <day d+1 00:00Z>` (it
#      makes the partitions of days d .. d+8, drops the days older than the retention, batch-deletes
#      what is left older than it, trims message_keys to the dedup window: a day). Printed per
#      day: messages kept, day partitions, pg_database_size, days dropped, seconds to store the day
#      and to expire. Expected: the size grows for RETENTION_DAYS days, then stays flat.
#      Autovacuum is off on the development server; with DAILY_VACUUM=1 (the default) a plain
#      database-wide `VACUUM` follows each run in its place (message_keys, where the run deletes
#      rows, and the catalogs, where each day's partitions come and go; dropped days need none).
#   2. Drop against DELETE, same rows: a database holding DAYS_OLD expired days plus
#      RETENTION_DAYS kept days of mail (no message_keys rows: the variants differ only in how
#      messages and content go), VACUUMed (hint bits and visibility map set, as autovacuum leaves
#      mail days old) and cloned twice (CREATE DATABASE ... TEMPLATE ... STRATEGY FILE_COPY), so
#      three identical databases expire the same DAYS_OLD x PER_DAY messages:
#        DROP    `mailsensor expire --as-of <today 00:00Z>`: drops DAYS_OLD days of partitions
#                (days_dropped must equal DAYS_OLD);
#        DELETE  one statement, `DELETE FROM messages WHERE id < mailsensor_uuid_at(cutoff)` (the
#                content goes by the foreign key's ON DELETE CASCADE);
#        BATCHES the same expire run with a second, mail-less tenant keeping 30 days in the
#                database: the longest retention is then 30, no day is dropped and the product's
#                per-tenant path deletes the 7-day tenant's rows, 1000 a transaction.
#      For each: a CHECKPOINT first (so each pays the full-page images a checkpoint-per-5-minutes
#      server pays), wall time, WAL (pg_current_wal_lsn() before and after; and this database's
#      own share read with pg_waldump, so other databases' work on a shared server does not count),
#      dead tuples (pg_stat_*_tables, heap and TOAST), sizes; then CHECKPOINT and a plain
#      `VACUUM messages, message_chunks` (what autovacuum would do next): its time, WAL, and the
#      sizes after it (what stays is the bloat).
# No pass/fail target: a benchmark, not a test; it fails only when it cannot set up or run, or when
# the expiry did not remove what it should (days_dropped, row counts: checked and reported).
#
# Usage (from anywhere; the script works from the repository root):
#     bench/retention.sh
#     PER_DAY=10000 MSG_BYTES=20480 bench/retention.sh     # more, smaller messages
#     BENCH_REV=HEAD bench/retention.sh                    # the last commit, not the working tree
#
# Environment:
#   DAYS            simulated days in part 1. Default 60.
#   PER_DAY         messages a simulated day. Default 2000.
#   MSG_BYTES       content bytes a message (one chunk). Default 51200.
#   RETENTION_DAYS  the tenant's retention. Default 7.
#   DAYS_OLD        expired days in part 2 (it also holds RETENTION_DAYS kept days). Default 7.
#   DAILY_VACUUM    1: a database-wide `VACUUM` after each expire run of part 1 (autovacuum's
#                   stand-in when the server has it off); 0: not. Default 1.
#   PARTS           which parts to run: "1 2", "1" or "2". Default "1 2".
#   OUT             the report's path. Default bench/results/retention-<short commit>.txt.
#   CARGO_TARGET_DIR / BENCH_REV / PGHOST / PGPORT / PGUSER / BENCH_NOTE   as in the other scripts.
#
# Needs: cargo, psql, python3; pg_waldump (PostgreSQL's server binaries) readable WAL (run as root
# or postgres) for the per-database WAL figures, else only the server-wide ones are shown.
# Databases mailsensor_bench_retention_{grow,drop,delete,batches} are re-created and dropped at exit;
# disk: about (RETENTION_DAYS + 2) x PER_DAY x MSG_BYTES for part 1, 3 x (DAYS_OLD +
# RETENTION_DAYS) x PER_DAY x MSG_BYTES for part 2 (defaults: 1 GB and 4.3 GB), plus WAL.
set -euo pipefail
source "$(dirname "$0")/lib.sh" # cds to the repository root; log, die, build_release, ...

DAYS=${DAYS:-60}
PER_DAY=${PER_DAY:-2000}
MSG_BYTES=${MSG_BYTES:-51200}
RETENTION_DAYS=${RETENTION_DAYS:-7}
DAYS_OLD=${DAYS_OLD:-7}
DAILY_VACUUM=${DAILY_VACUUM:-1}
PARTS=${PARTS:-1 2}
for v in DAYS PER_DAY MSG_BYTES RETENTION_DAYS DAYS_OLD; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive whole number, got '${!v}'"
done
[[ $DAILY_VACUUM == [01] ]] || die "DAILY_VACUUM must be 0 or 1"
[[ $MSG_BYTES -ge 16 ]] || die "MSG_BYTES must be at least 16 (the id is written into the content)"
[[ $RETENTION_DAYS -lt 30 ]] || die "RETENTION_DAYS must be below 30 (part 2's second tenant keeps 30 days)"
run_part() { [[ " $PARTS " == *" $1 "* ]]; }
run_part 1 || run_part 2 || die "PARTS must name part 1, part 2 or both, got '$PARTS'"

PREFIX=mailsensor_bench_retention
DB_GROW=${PREFIX}_grow DB_DROP=${PREFIX}_drop DB_DELETE=${PREFIX}_delete DB_BATCHES=${PREFIX}_batches
MAX_DAYS=90 # the platform cap passed to every expire run (tenants choose below it)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/mailsensor-retention-bench.XXXXXX")
stop_processes() { :; } # nothing runs in the background
set_cleanup_traps

# ---------------------------------------------------------------- tools
for tool in cargo python3; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is not on PATH"
done
require_psql
require_postgres
PG_WALDUMP=$(pg_tool pg_waldump) || true
unset MAILSENSOR_DATABASE_URL MAILSENSOR_RETENTION_DEFAULT_DAYS MAILSENSOR_RETENTION_MAX_DAYS \
    MAILSENSOR_DEDUP_WINDOW_HOURS MAILSENSOR_DATABASE_MAX_CONNECTIONS
export MAILSENSOR_LOG=warn NO_COLOR=1

build_release # sets BIN, BUILT_REV, BUILD_DIR
describe_commit

# ---------------------------------------------------------------- helpers
# sql DB QUERY: one value per line (unaligned, tuples only), stops on the first error.
sql() { "$PSQL" -X -Atq -v ON_ERROR_STOP=1 -d "$1" -c "$2"; }
url() { echo "postgres://$PGUSER@$PGHOST:$PGPORT/$1"; }
now_s() { echo "$EPOCHREALTIME"; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
mb() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
day_of() { date -u -d "$TODAY - $1 days" +%F; } # N days before today
migrate() {
    "$BIN" migrate --database-url "$(url "$1")" >"$WORK/migrate-$1.log" 2>&1 \
        || { cat "$WORK/migrate-$1.log" >&2; die "mailsensor migrate failed on $1"; }
}
# add_tenant DB NAME DAYS: a tenants row as the owner; prints its id.
add_tenant() {
    sql "$1" "INSERT INTO tenants (id, name, created_at, updated_at, message_retention_days)
              VALUES (gen_random_uuid(), '$2', now(), now(), $3) RETURNING id"
}
# load_day DB DAY TENANT KEYS: that day's PER_DAY messages (bench/retention_day.sql).
load_day() {
    "$PSQL" -X -q -v ON_ERROR_STOP=1 -d "$1" -v day="$2" -v tenant="$3" -v keys="$4" \
        -v per_day="$PER_DAY" -v msg_bytes="$MSG_BYTES" -f bench/retention_day.sql >"$WORK/load.log" 2>&1 \
        || { cat "$WORK/load.log" >&2; die "storing the mail of $2 in $1 failed"; }
}
# expire DB AS_OF: `mailsensor expire` once; its JSON line in EXPIRED.
expire() {
    "$BIN" expire --database-url "$(url "$1")" --as-of "$2" --retention-default-days "$RETENTION_DAYS" \
        --retention-max-days "$MAX_DAYS" >"$WORK/expire.out" 2>&1 \
        || { cat "$WORK/expire.out" >&2; die "mailsensor expire --as-of $2 failed on $1"; }
    EXPIRED=$(grep '^{' "$WORK/expire.out" | tail -n 1)
    [[ -n $EXPIRED ]] || { cat "$WORK/expire.out" >&2; die "no JSON from mailsensor expire"; }
}
json() { python3 -c 'import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }
# partitions DB TABLE: how many day partitions TABLE has.
partitions() {
    sql "$1" "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
               WHERE i.inhparent = '$2'::regclass AND c.relname ~ '_p[0-9]{8}\$'"
}
# compression DB: how message_chunks.data is compressed.
compression() {
    sql "$1" "SELECT CASE attcompression WHEN 'l' THEN 'lz4' WHEN 'p' THEN 'pglz'
                     ELSE current_setting('default_toast_compression') || ' (the default)' END
                FROM pg_attribute WHERE attrelid = 'message_chunks'::regclass AND attname = 'data'"
}
# Total size (heap, TOAST, indexes) of a partitioned table's partitions; and of their indexes only
# (the TOAST tables' indexes included).
TREE_TOTAL="SELECT coalesce(sum(pg_total_relation_size(relid)), 0) FROM pg_partition_tree('%s') WHERE isleaf"
TREE_INDEXES="SELECT coalesce(sum(pg_indexes_size(t.relid) + coalesce(pg_indexes_size(nullif(c.reltoastrelid, 0)), 0)), 0)
                FROM pg_partition_tree('%s') t JOIN pg_class c ON c.oid = t.relid WHERE t.isleaf"
# dead_tuples DB: "heap toast" dead tuples of the partitions of messages and message_chunks (a
# second's wait first: the backend that deleted them reports its counts as it exits).
dead_tuples() {
    sleep 1
    sql "$1" "WITH leaves AS (SELECT relid FROM pg_partition_tree('messages') WHERE isleaf
                              UNION ALL SELECT relid FROM pg_partition_tree('message_chunks') WHERE isleaf)
              SELECT coalesce(sum(s.n_dead_tup) FILTER (WHERE s.relid = l.relid), 0) || ' ' ||
                     coalesce(sum(s.n_dead_tup) FILTER (WHERE s.relid = c.reltoastrelid), 0)
                FROM leaves l JOIN pg_class c ON c.oid = l.relid
                JOIN pg_stat_all_tables s ON s.relid IN (l.relid, c.reltoastrelid)"
}
# sizes DB: "database messages_total chunks_total indexes" in bytes.
sizes() {
    local q
    # shellcheck disable=SC2059 # the format strings above are ours
    q="SELECT pg_database_size(current_database()) || ' ' || ($(printf "$TREE_TOTAL" messages)) || ' ' ||
              ($(printf "$TREE_TOTAL" message_chunks)) || ' ' ||
              (($(printf "$TREE_INDEXES" messages)) + ($(printf "$TREE_INDEXES" message_chunks)))"
    sql "$1" "$q"
}
# WAL: wal_start DB sets LSN0 after a CHECKPOINT; wal_end DB sets WAL_ALL (server-wide bytes,
# LSN difference) and WAL_DB / WAL_FPI / WAL_OTHER (this database's share, its full-page
# images, other databases' share; "n/a" without pg_waldump).
WAL_DIR=
wal_start() {
    sql "$1" "CHECKPOINT" >/dev/null
    LSN0=$(sql "$1" "SELECT pg_current_wal_lsn()")
}
wal_end() {
    local lsn1 oid out
    lsn1=$(sql "$1" "SELECT pg_current_wal_lsn()")
    WAL_ALL=$(sql "$1" "SELECT pg_wal_lsn_diff('$lsn1', '$LSN0')::bigint")
    WAL_DB=n/a WAL_FPI=n/a WAL_OTHER=n/a
    [[ -n $PG_WALDUMP && -n $WAL_DIR ]] || return 0
    oid=$(sql "$1" "SELECT oid FROM pg_database WHERE datname = current_database()")
    out=$(python3 bench/retention_wal.py "$PG_WALDUMP" "$WAL_DIR" "$LSN0" "$lsn1" "$oid") || return 0
    if [[ $(json "$out" ok) == True ]]; then
        WAL_DB=$(json "$out" db) WAL_FPI=$(json "$out" db_fpi) WAL_OTHER=$(json "$out" other)
    else
        WAL_NOTES+=("pg_waldump $LSN0 - $lsn1 on $1: $(json "$out" error)")
    fi
}
WAL_NOTES=()
minus_mb() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (a - b) / 1048576 }'; }
mb_or_na() { if [[ $1 == n/a ]]; then echo n/a; else mb "$1"; fi; }

wal_dir=$(sql postgres "SELECT current_setting('data_directory') || '/pg_wal'")
if [[ -z $PG_WALDUMP ]]; then
    WAL_NOTES+=("pg_waldump not found: WAL per database not measured, only the server-wide LSN difference")
elif ! ls "$wal_dir" >/dev/null 2>&1; then
    WAL_NOTES+=("$wal_dir is not readable (run as root or postgres): WAL per database not measured")
else
    WAL_DIR=$wal_dir
fi

TODAY=$(date -u +%F)
PG_VERSION=$(sql postgres "SELECT version()" | sed 's/ on .*//')
PG_SETTINGS=$(sql postgres "SELECT string_agg(name || '=' || current_setting(name), ', ' ORDER BY name)
                              FROM pg_settings WHERE name IN ('autovacuum', 'shared_buffers', 'max_wal_size',
                              'full_page_writes', 'wal_compression', 'synchronous_commit', 'checkpoint_timeout')")
COMPRESSION=
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
recreate_databases "$DB_GROW" "$DB_DROP" "$DB_DELETE" "$DB_BATCHES"
START=$(date -u +%Y-%m-%dT%H:%M:%SZ)

# ---------------------------------------------------------------- 1. levelling off
GROW_ROWS=() GROW_SIZES=()
GROW_FMT='%4s  %-10s  %8s  %7s  %5s  %8s  %7s  %7s  %7s  %6s  %7s'
if run_part 1; then
    log "part 1: $DAYS simulated days x $PER_DAY messages of $MSG_BYTES bytes, $RETENTION_DAYS-day retention"
    migrate "$DB_GROW"
    COMPRESSION=$(compression "$DB_GROW")
    TENANT=$(add_tenant "$DB_GROW" retention-bench "$RETENTION_DAYS")
    first=$(day_of "$DAYS")
    sql "$DB_GROW" "SELECT mailsensor_message_partitions('$first', '$first')" >/dev/null
    GROW_T0=$(now_s)
    for ((d = 0; d < DAYS; d++)); do
        day=$(day_of $((DAYS - d)))
        as_of="$(day_of $((DAYS - d - 1)))T00:00:00Z"
        t0=$(now_s)
        load_day "$DB_GROW" "$day" "$TENANT" 1
        t1=$(now_s)
        expire "$DB_GROW" "$as_of"
        t2=$(now_s)
        [[ $DAILY_VACUUM == 1 ]] && sql "$DB_GROW" "VACUUM" >/dev/null
        read -r kept parts size keys < <(sql "$DB_GROW" "SELECT (SELECT count(*) FROM messages) || ' ' ||
              (SELECT count(*) FROM pg_inherits WHERE inhparent = 'messages'::regclass) - 1 || ' ' ||
              pg_database_size(current_database()) || ' ' || (SELECT count(*) FROM message_keys)")
        GROW_SIZES+=("$size")
        # shellcheck disable=SC2059 # the format is ours
        GROW_ROWS+=("$(printf "$GROW_FMT" "$d" "$day" "$kept" \
            "$(json "$EXPIRED" messages)" "$parts" "$(mb "$size")" "$(json "$EXPIRED" days_dropped)" \
            "$(secs "$t0" "$t1")" "$(secs "$t1" "$t2")" "$keys" "$(json "$EXPIRED" keys)")")
        log "day $d ($day): $kept kept, $(mb "$size") MB, $(json "$EXPIRED" days_dropped) days dropped"
    done
    GROW_SECS=$(secs "$GROW_T0" "$(now_s)")
    GROW_LEVEL=$(printf '%s\n' "${GROW_SIZES[@]:$RETENTION_DAYS}" | awk '
        NF { v = $1 / 1048576; if (n == 0 || v < lo) lo = v; if (n == 0 || v > hi) hi = v; n++ }
        END { if (n) printf "%.1f - %.1f MB over %d days (spread %.1f %%)", lo, hi, n, (hi - lo) / lo * 100; else print "n/a (too few days)" }')
    GROW_DEFAULT=$(sql "$DB_GROW" "SELECT (SELECT count(*) FROM messages_default) + (SELECT count(*) FROM message_chunks_default)")
    GROW_CHUNKS=$(sql "$DB_GROW" "SELECT count(*) FROM message_chunks")
    GROW_PARTS=$(sql "$DB_GROW" "SELECT string_agg(substring(c.relname FROM 11), ' ' ORDER BY c.relname)
                                   FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                                  WHERE i.inhparent = 'messages'::regclass AND c.relname ~ '^messages_p[0-9]{8}\$'")
    [[ $(partitions "$DB_GROW" messages) == "$(partitions "$DB_GROW" message_chunks)" ]] \
        || die "messages and message_chunks have different day partitions"
    sql postgres "DROP DATABASE $DB_GROW WITH (FORCE)" >/dev/null # its disk, for part 2
fi

# ---------------------------------------------------------------- 2. drop against DELETE
declare -A R=()
if run_part 2; then
    total_days=$((DAYS_OLD + RETENTION_DAYS))
    log "part 2: $total_days days x $PER_DAY messages ($DAYS_OLD expired), three copies"
    migrate "$DB_DROP"
    [[ -n $COMPRESSION ]] || COMPRESSION=$(compression "$DB_DROP")
    TENANT=$(add_tenant "$DB_DROP" retention-bench "$RETENTION_DAYS")
    sql "$DB_DROP" "SELECT mailsensor_message_partitions('$(day_of "$total_days")', '$(day_of 1)')" >/dev/null
    t0=$(now_s)
    for ((i = total_days; i >= 1; i--)); do load_day "$DB_DROP" "$(day_of "$i")" "$TENANT" 0; done
    LOAD_SECS=$(secs "$t0" "$(now_s)")
    sql "$DB_DROP" "VACUUM" >/dev/null
    sql "$DB_DROP" "CHECKPOINT" >/dev/null
    EXPIRED_ROWS=$(sql "$DB_DROP" "SELECT count(*) FROM messages WHERE received_at < '$(day_of "$RETENTION_DAYS")T00:00:00Z'")
    [[ $EXPIRED_ROWS -eq $((DAYS_OLD * PER_DAY)) ]] || die "expected $((DAYS_OLD * PER_DAY)) expired messages, found $EXPIRED_ROWS"
    BEFORE_ROWS=$(sql "$DB_DROP" "SELECT count(*) FROM messages")
    read -r BEFORE_DB BEFORE_MSG BEFORE_CHUNKS BEFORE_IDX < <(sizes "$DB_DROP")
    for db in "$DB_DELETE" "$DB_BATCHES"; do
        sql postgres "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
        sql postgres "CREATE DATABASE $db TEMPLATE $DB_DROP STRATEGY FILE_COPY" >/dev/null
    done
    add_tenant "$DB_BATCHES" retention-bench-30-days 30 >/dev/null
    AS_OF="${TODAY}T00:00:00Z"
    CUTOFF="$(day_of "$RETENTION_DAYS")T00:00:00Z"

    # measure NAME DB COMMAND...: the expiry COMMAND on DB, then VACUUM; figures into R[NAME,*].
    measure() {
        local name=$1 db=$2 t0 t1 dead
        shift 2
        log "part 2, $name: $*"
        wal_start "$db"
        t0=$(now_s)
        "$@"
        t1=$(now_s)
        wal_end "$db"
        R[$name.secs]=$(secs "$t0" "$t1")
        R[$name.wal]=$WAL_ALL R[$name.wal_db]=$WAL_DB R[$name.fpi]=$WAL_FPI R[$name.wal_other]=$WAL_OTHER
        R[$name.rows]=$(sql "$db" "SELECT count(*) FROM messages")
        dead=$(dead_tuples "$db")
        R[$name.dead_heap]=${dead% *} R[$name.dead_toast]=${dead#* }
        read -r "R[$name.db]" "R[$name.msg]" "R[$name.chunks]" "R[$name.idx]" < <(sizes "$db")
        R[$name.parts]=$(partitions "$db" messages)
        wal_start "$db"
        t0=$(now_s)
        sql "$db" "VACUUM messages, message_chunks" >/dev/null
        t1=$(now_s)
        wal_end "$db"
        R[$name.vsecs]=$(secs "$t0" "$t1")
        R[$name.vwal]=$WAL_ALL R[$name.vwal_db]=$WAL_DB
        read -r "R[$name.vdb]" "R[$name.vmsg]" "R[$name.vchunks]" "R[$name.vidx]" < <(sizes "$db")
    }
    run_expire() { # DB NAME: the expire run; its JSON in R[NAME,json]
        expire "$1" "$AS_OF"
        R[$2.json]=$EXPIRED
    }
    run_delete() { # DB NAME
        R[$2.json]=$(sql "$1" "WITH gone AS (DELETE FROM messages WHERE id < mailsensor_uuid_at('$CUTOFF') RETURNING 1)
                                SELECT count(*) FROM gone")
    }
    measure drop "$DB_DROP" run_expire "$DB_DROP" drop
    # What any expire run costs (a process, its connections, the queries that find nothing).
    t0=$(now_s)
    expire "$DB_DROP" "$AS_OF"
    IDLE_SECS=$(secs "$t0" "$(now_s)")
    IDLE_JSON=$EXPIRED
    measure delete "$DB_DELETE" run_delete "$DB_DELETE" delete
    measure batches "$DB_BATCHES" run_expire "$DB_BATCHES" batches
    DROPPED=$(json "${R[drop.json]}" days_dropped)
    [[ $DROPPED -eq $DAYS_OLD ]] || die "the DROP run dropped $DROPPED days, expected $DAYS_OLD: ${R[drop.json]}"
    [[ $(json "${R[drop.json]}" messages) -eq 0 ]] || die "the DROP run also deleted rows: ${R[drop.json]}"
    [[ ${R[delete.json]} -eq $EXPIRED_ROWS ]] || die "the DELETE removed ${R[delete.json]} messages, expected $EXPIRED_ROWS"
    [[ $(json "${R[batches.json]}" days_dropped) -eq 0 && $(json "${R[batches.json]}" messages) -eq $EXPIRED_ROWS ]] \
        || die "the batched run should drop no day and delete $EXPIRED_ROWS messages: ${R[batches.json]}"
    for name in drop delete batches; do
        [[ ${R[$name.rows]} -eq $((BEFORE_ROWS - EXPIRED_ROWS)) ]] || die "$name left ${R[$name.rows]} messages"
    done
fi
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- report
OUT_DIR=$BENCH_DIR/results
OUT=${OUT:-$OUT_DIR/retention-$(git rev-parse --short HEAD).txt}
mkdir -p "$(dirname "$OUT")"
ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { if (a == "n/a" || b == "n/a" || b + 0 == 0) print "-";
                                     else if (a / b < 10) printf "%.1fx", a / b; else printf "%.0fx", a / b }'
}
row() { printf '  %-40s %16s %16s %16s\n' "$@"; }
{
    echo
    echo "================ mailsensor retention benchmark ================"
    echo "  commit      $COMMIT"
    echo "  date        $START (calendar: simulated days end yesterday, $(day_of 1), UTC)"
    echo "  machine     nproc $(nproc); load avg (1/5/15 min) at the start: $LOAD_START, at the end: $LOAD_END"
    echo "  PostgreSQL  $PG_VERSION; $PG_SETTINGS"
    echo "  mail        $PER_DAY messages a day, $MSG_BYTES bytes of content each (one chunk, incompressible;"
    echo "              message_chunks.data compression: ${COMPRESSION:-?}); one tenant, retention $RETENTION_DAYS days"
    echo "  expiry      $BIN expire --as-of ... --retention-default-days $RETENTION_DAYS --retention-max-days $MAX_DAYS"
    [[ -n ${BENCH_NOTE:-} ]] && echo "  note        $BENCH_NOTE"
    if run_part 1; then
        echo
        echo "  1. $DAYS simulated days, each stored then expired as of the next midnight (UTC)"
        [[ $DAILY_VACUUM == 1 ]] && echo "     (a plain database-wide VACUUM after each run, autovacuum's stand-in, not timed)"
        # shellcheck disable=SC2059 # the format is ours
        {
            printf "$GROW_FMT\n" day date messages deleted day database days store expire keys keys
            printf "$GROW_FMT\n" "" "" kept "by run" parts "size, MB" dropped "s" "s (run)" kept trimmed
            printf '%s\n' "${GROW_ROWS[@]}"
        } | sed 's/^/   /'
        echo "     from day $RETENTION_DAYS on (retention reached): database size $GROW_LEVEL"
        echo "     $DAYS days in $GROW_SECS s; rows in the DEFAULT partitions at the end: $GROW_DEFAULT;"
        echo "     message_chunks rows at the end: $GROW_CHUNKS; day partitions left: $GROW_PARTS"
    fi
    if run_part 2; then
        echo
        echo "  2. Drop against DELETE: $EXPIRED_ROWS messages ($DAYS_OLD days x $PER_DAY, $(mb $((EXPIRED_ROWS * MSG_BYTES))) MB of content)"
        echo "     expired of $BEFORE_ROWS, in three identical databases (stored in $LOAD_SECS s, VACUUMed, cloned);"
        echo "     before: database $(mb "$BEFORE_DB") MB, messages $(mb "$BEFORE_MSG") MB, message_chunks $(mb "$BEFORE_CHUNKS") MB (all with TOAST and indexes),"
        echo "     of which indexes $(mb "$BEFORE_IDX") MB"
        row "" "DROP (expire)" "DELETE (1 stmt)" "DELETE 1000/txn"
        row "what ran" "days_dropped $DROPPED" "DELETE ... id <" "expire, 30-day"
        row "" "" "uuid_at(cutoff)" "tenant present"
        row "messages removed" "$DAYS_OLD days" "${R[delete.json]}" "$(json "${R[batches.json]}" messages)"
        row "messages left" "${R[drop.rows]}" "${R[delete.rows]}" "${R[batches.rows]}"
        row "day partitions left" "${R[drop.parts]}" "${R[delete.parts]}" "${R[batches.parts]}"
        row "expiry time, s" "${R[drop.secs]}" "${R[delete.secs]}" "${R[batches.secs]}"
        row "  ratio to DROP" "1x" "$(ratio "${R[delete.secs]}" "${R[drop.secs]}")" "$(ratio "${R[batches.secs]}" "${R[drop.secs]}")"
        row "  (an expire run with nothing to do)" "$IDLE_SECS" "" "$IDLE_SECS"
        row "WAL, this database, MB (pg_waldump)" "$(mb_or_na "${R[drop.wal_db]}")" "$(mb_or_na "${R[delete.wal_db]}")" "$(mb_or_na "${R[batches.wal_db]}")"
        row "  of which full-page images, MB" "$(mb_or_na "${R[drop.fpi]}")" "$(mb_or_na "${R[delete.fpi]}")" "$(mb_or_na "${R[batches.fpi]}")"
        row "  ratio to DROP" "1x" "$(ratio "${R[delete.wal_db]}" "${R[drop.wal_db]}")" "$(ratio "${R[batches.wal_db]}" "${R[drop.wal_db]}")"
        row "WAL, server-wide (LSN difference), MB" "$(mb "${R[drop.wal]}")" "$(mb "${R[delete.wal]}")" "$(mb "${R[batches.wal]}")"
        row "  of it other databases', MB" "$(mb_or_na "${R[drop.wal_other]}")" "$(mb_or_na "${R[delete.wal_other]}")" "$(mb_or_na "${R[batches.wal_other]}")"
        row "dead tuples, heap / TOAST" "${R[drop.dead_heap]} / ${R[drop.dead_toast]}" "${R[delete.dead_heap]} / ${R[delete.dead_toast]}" "${R[batches.dead_heap]} / ${R[batches.dead_toast]}"
        row "database size after, MB" "$(mb "${R[drop.db]}")" "$(mb "${R[delete.db]}")" "$(mb "${R[batches.db]}")"
        row "messages (+TOAST, indexes), MB" "$(mb "${R[drop.msg]}")" "$(mb "${R[delete.msg]}")" "$(mb "${R[batches.msg]}")"
        row "message_chunks (+TOAST, indexes), MB" "$(mb "${R[drop.chunks]}")" "$(mb "${R[delete.chunks]}")" "$(mb "${R[batches.chunks]}")"
        row "  of both, indexes, MB" "$(mb "${R[drop.idx]}")" "$(mb "${R[delete.idx]}")" "$(mb "${R[batches.idx]}")"
        row "then VACUUM messages, message_chunks" "" "" ""
        row "  time, s" "${R[drop.vsecs]}" "${R[delete.vsecs]}" "${R[batches.vsecs]}"
        row "  WAL, this database, MB" "$(mb_or_na "${R[drop.vwal_db]}")" "$(mb_or_na "${R[delete.vwal_db]}")" "$(mb_or_na "${R[batches.vwal_db]}")"
        row "  WAL, server-wide, MB" "$(mb "${R[drop.vwal]}")" "$(mb "${R[delete.vwal]}")" "$(mb "${R[batches.vwal]}")"
        row "  database size after, MB" "$(mb "${R[drop.vdb]}")" "$(mb "${R[delete.vdb]}")" "$(mb "${R[batches.vdb]}")"
        row "  messages (+TOAST, indexes), MB" "$(mb "${R[drop.vmsg]}")" "$(mb "${R[delete.vmsg]}")" "$(mb "${R[batches.vmsg]}")"
        row "  message_chunks (+TOAST, indexes), MB" "$(mb "${R[drop.vchunks]}")" "$(mb "${R[delete.vchunks]}")" "$(mb "${R[batches.vchunks]}")"
        row "  of both, indexes, MB" "$(mb "${R[drop.vidx]}")" "$(mb "${R[delete.vidx]}")" "$(mb "${R[batches.vidx]}")"
        row "  left over (size less DROP's), MB" "0" \
            "$(minus_mb "${R[delete.vdb]}" "${R[drop.vdb]}")" "$(minus_mb "${R[batches.vdb]}" "${R[drop.vdb]}")"
        echo "     VACUUM hands back a table's trailing pages once they are empty (it truncates): the DELETEs here"
        echo "     emptied whole day partitions, so their heap and TOAST went back and only their indexes stay"
        echo "     (VACUUM does not shrink an index). Rows deleted among rows kept (a shorter-retention tenant's"
        echo "     beside others' in the same day) leave holes instead, and no later insert fills them: new mail"
        echo "     goes to new days; the space returns when the day is dropped at the longest retention."
        echo "     Each expiry and each VACUUM starts after a CHECKPOINT. Expire runs' JSON:"
        echo "       DROP    ${R[drop.json]}"
        echo "       BATCHES ${R[batches.json]}"
        echo "       again on DROP's database, nothing to do: $IDLE_JSON"
    fi
    for note in "${WAL_NOTES[@]}"; do echo "  note        $note"; done
    echo "================================================================="
} >"$OUT"
cat "$OUT"
log "report: $OUT"
