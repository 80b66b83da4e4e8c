#!/usr/bin/env bash
# Benchmark of the scan engines: YARA-X in process against Debian's `yara` command line and
# ClamAV's clamd, on the same messages and the same rules, and then the scan queue of
# `mailsensor serve` with every engine on (YARA-X, clamd, rspamd) behind SMTP intake.
# Inputs, generated from a seed by bench/scan_corpus.py (the same seed, the same bytes):
#   - CORPUS messages (.eml), 2 KB - 2 MB log-uniform: plain text, text + HTML, attachments
#     (base64), a zip, a zip inside a zip; 1 % carry the test signatures (the marker
#     MAILSENSOR-CLAMAV-TEST-MARKER in the text, EICAR as an attachment or inside a zip);
#   - RULES YARA rules in one file (text strings with nocase / wide / fullword, hex strings with
#     wildcards, jumps and alternatives, regular expressions with literal atoms, and conditions:
#     any / N / all of them, counts, offsets, filesize), which YARA-X 1.22 and libyara 4.2 both
#     compile; two match the signature carriers, a few match common words of the corpus.
#     clamd gets the project's test signatures (tests/fixtures/clamav/mailsensor-test.ndb).
# Measured:
#   1. every engine over every message, each message read from disk and scanned whole (the raw
#      .eml), ROUNDS times, the median round (by wall time) reported: CPU per message and
#      messages/s for
#        - in-process YARA-X: examples/yara_scan.rs, the project's own scan::yara (compile once,
#          one scanner reused), one thread;
#        - the `yara` command line (Debian's yara 4.2.3), `yara -C -p 1 -r`: the rules compiled
#          once with yarac, and the time it takes to load them (a run over an empty folder)
#          subtracted, so both YARA rows are scanning only; the total is shown too;
#        - `clamdscan --stream` (INSTREAM, as the scan queue talks to clamd) to a private clamd;
#          its CPU is clamd's (/proc/<pid>/stat) plus clamdscan's own;
#      and again with THREADS threads each (yara-x --threads, yara -p, THREADS clamdscan at once
#      on a share of the files each). Two more rows are not the same work but show what the scan
#      queue does per message: scan::scan_with_yara (MIME parsed, parts decoded, archives
#      expanded, the built-in checks, the rules over every object) and scan::scan (the same
#      without YARA). Matches are compared: YARA-X and yara must report the same (rule, file)
#      pairs; clamd must find every signature carrier.
#   2. intake with the scan queue behind it, each run on a fresh database, a fresh API and worker:
#        A. no engines, smtp-source at full speed for DURATION s: today's intake rate;
#        B. every engine on (--yara-rules with the RULES rules, --clamd, --rspamd), full speed;
#        C. every engine on, paced at PACE x A's rate (an asyncio client) for DURATION s: does the
#           scan queue keep pace (its depth back to 0 within 10 s of the end)?
#        D. Postfix proper (bench/postfix/main.cf, as in bench/smtp.sh), full speed: the anchor;
#      MSG_BYTES-byte messages, SESSIONS connections; mailsensor_scan_queue_depth and
#      mailsensor_messages_scanned_total sampled from the API's /metrics every second.
# Targets (from the issue; printed, never enforced): in-process YARA-X >= 1.0x the yara command
# line; with every engine on, the scan queue keeps pace with 10 KB intake at >= 0.5x today's
# intake rate for 60 s (depth back to 0 within 10 s of the end); intake itself >= 1.0x Postfix.
# A benchmark, not a test: it fails only when it cannot set up or run, and reports what it saw.
#
# Usage (from anywhere; the script works from the repository root):
#     bench/scan.sh
#     CORPUS=100 ROUNDS=1 DURATION=20 bench/scan.sh      # a quicker run
#     INTAKE=0 bench/scan.sh                             # the engines alone, no intake runs
#     BENCH_REV=HEAD bench/scan.sh                       # the last commit, not the working tree
#
# Environment:
#   CORPUS        messages in the corpus. Default 500.
#   RULES         YARA rules. Default 1000.
#   SEED          seed of the corpus and the rules. Default 1.
#   MIN_BYTES / MAX_BYTES  message size range. Default 2048 / 2097152.
#   ROUNDS        runs of each engine over the corpus; the median is reported. Default 3.
#   THREADS       threads for the multi-threaded rows; 0 leaves them out. Default nproc.
#   INTAKE        1 runs the intake part (2.), 0 leaves it out. Default 1.
#   DURATION      seconds of each intake run. Default 60.
#   PACE          C's rate as a fraction of A's. Default 0.5.
#   SESSIONS      SMTP connections of the intake runs. Default 20.
#   MSG_BYTES     payload bytes per intake message (smtp-source -l). Default 10240.
#   DRAIN_MAX     seconds to wait after an intake run for the scan queue to empty. Default 120.
#   WITH_RSPAMD   1 starts rspamd for B and C, 0 runs them without it. Default 1.
#   WITH_POSTFIX  1 runs D, 0 leaves it out. Default 1.
#   DAEMON_NICE   the nice value clamd and rspamd run at. Default 19, the lowest CPU priority, as
#                 docs/operations.md advises on a host they share with intake: they get the cores
#                 intake leaves. 0 runs them at intake's priority. serve's own scan threads run at
#                 nice 10 whatever this says.
#   DAEMON_GROUP  own starts clamd and rspamd in a session of their own (setsid) and, where the kernel
#                 groups the scheduler by session (autogroup), gives that group DAEMON_NICE as well:
#                 the nearest this script comes to docs/operations.md's CPUWeight=1, which puts each
#                 daemon in a cgroup of its own. Without it the daemons' threads are niced but their
#                 group is the benchmark's, which the scheduler weighs against PostgreSQL's group as an
#                 equal. shared leaves them in the benchmark's session. Default own.
#   CLAMD_TMP     where clamd writes each scanned stream and what it unpacks: tmpfs (a folder in
#                 /dev/shm, as docs/operations.md advises) or disk (below TMPDIR, clamd's default
#                 /tmp on this machine's disk). Default tmpfs.
#   CARGO_TARGET_DIR  where the release binary and the example are built. Default target/bench.
#   BENCH_REV     build this commit (e.g. HEAD) from a `git archive` snapshot instead of the
#                 working tree (examples/yara_scan.rs is taken from the working tree if the
#                 commit has none).
#   PGHOST/PGPORT/PGUSER  PostgreSQL to use. Default 127.0.0.1 / 5432 / postgres (trust auth).
#   BENCH_NOTE    free text printed in the summary.
#
# Needs: cargo, curl, jq, psql, python3, /usr/bin/time, Debian's yara, clamav-daemon, clamdscan,
# rspamd and postfix (smtp-source), apt-get installed when missing (as root; Postfix as "No
# configuration": its daemon is never started but for the private instance of D). The database
# mailsensor_scan_bench is re-created for every intake run and dropped at exit. Everything
# generated lives in a temporary folder, removed at exit.
set -euo pipefail
source "$(dirname "$0")/lib.sh"   # cds to the repository root; log, die, build_release, api_call, ...

CORPUS=${CORPUS:-500}
RULES=${RULES:-1000}
SEED=${SEED:-1}
MIN_BYTES=${MIN_BYTES:-2048}
MAX_BYTES=${MAX_BYTES:-2097152}
ROUNDS=${ROUNDS:-3}
THREADS=${THREADS:-$(nproc)}
INTAKE=${INTAKE:-1}
DURATION=${DURATION:-60}
PACE=${PACE:-0.5}
SESSIONS=${SESSIONS:-20}
MSG_BYTES=${MSG_BYTES:-10240}
DRAIN_MAX=${DRAIN_MAX:-120}
WITH_RSPAMD=${WITH_RSPAMD:-1}
WITH_POSTFIX=${WITH_POSTFIX:-1}
CLAMD_TMP=${CLAMD_TMP:-tmpfs}
DAEMON_NICE=${DAEMON_NICE:-19}
DAEMON_GROUP=${DAEMON_GROUP:-own}
DB=mailsensor_scan_bench
TOKEN_TTL=14400

for v in CORPUS RULES MIN_BYTES MAX_BYTES ROUNDS DURATION SESSIONS MSG_BYTES DRAIN_MAX; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive whole number, got '${!v}'"
done
for v in SEED THREADS INTAKE WITH_RSPAMD WITH_POSTFIX DAEMON_NICE; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a whole number, got '${!v}'"
done
[[ $DAEMON_NICE -le 19 ]] || die "DAEMON_NICE must be 0 to 19, got '$DAEMON_NICE'"
[[ $DAEMON_GROUP == own || $DAEMON_GROUP == shared ]] || die "DAEMON_GROUP must be own or shared, got '$DAEMON_GROUP'"
[[ $CLAMD_TMP == tmpfs || $CLAMD_TMP == disk ]] || die "CLAMD_TMP must be tmpfs or disk, got '$CLAMD_TMP'"
[[ $PACE =~ ^[0-9]*\.?[0-9]+$ ]] || die "PACE must be a number, got '$PACE'"
[[ $RULES -ge 3 ]] || die "RULES must be at least 3"
[[ $MIN_BYTES -lt $MAX_BYTES ]] || die "MIN_BYTES must be below MAX_BYTES"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/mailsensor-scan-bench.XXXXXX")
chmod 755 "$WORK" # rspamd and the postfix user must reach their folders below it
declare -A PIDS=()
PF=$WORK/postfix
POSTFIX=$(command -v postfix 2>/dev/null || echo /usr/sbin/postfix)
stop_postfix() { if [[ -f $PF/etc/main.cf ]]; then "$POSTFIX" -c "$PF/etc" stop >/dev/null 2>&1 || true; fi; }
stop_proc() { # NAME: TERM, wait up to 15 s, then KILL
    stop_pid "${PIDS[$1]:-}"
    unset "PIDS[$1]"
}
stop_processes() { # RC: from bench_cleanup (lib.sh), which then drops the database and WORK
    for name in sensor serve rspamd clamd; do stop_proc "$name"; done
    [[ -n ${CLAMD_TMPDIR:-} && $CLAMD_TMPDIR == /dev/shm/* ]] && rm -rf "$CLAMD_TMPDIR"
    stop_postfix
    if [[ $1 -ne 0 ]]; then
        show_log_tails 30 "$WORK"/serve-*.log "$WORK"/sensor-*.log "$WORK"/clamd.log "$WORK"/rspamd.log
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
[[ -x /usr/bin/time ]] || apt_install time
sbin() { command -v "$1" 2>/dev/null || { [[ -x /usr/sbin/$1 ]] && echo "/usr/sbin/$1"; } || true; }
[[ -n $(sbin yara) && -n $(sbin yarac) ]] || apt_install yara
[[ -n $(sbin clamd) ]] || apt_install clamav-daemon
[[ -n $(sbin clamdscan) ]] || apt_install clamdscan
YARA=$(sbin yara) YARAC=$(sbin yarac) CLAMD=$(sbin clamd) CLAMDSCAN=$(sbin clamdscan)
[[ -n $YARA && -n $YARAC && -n $CLAMD && -n $CLAMDSCAN ]] || die "yara, yarac, clamd or clamdscan not found after installing"
YARA_VERSION=$("$YARA" --version)
CLAMD_VERSION=$("$CLAMD" --version | head -n 1)
if [[ $INTAKE -eq 1 ]]; then
    if [[ $WITH_RSPAMD -eq 1 && -z $(sbin rspamd) ]]; then apt_install rspamd; fi
    RSPAMD=$(sbin rspamd)
    [[ $WITH_RSPAMD -eq 0 || -n $RSPAMD ]] || die "rspamd not found after installing"
    SMTP_SOURCE=$(sbin smtp-source)
    if [[ -z $SMTP_SOURCE ]]; then
        [[ $(id -u) -eq 0 ]] || die "smtp-source is missing; install Debian's postfix package or run as root"
        echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
        apt_install postfix
        SMTP_SOURCE=$(sbin smtp-source)
        POSTFIX=$(command -v postfix 2>/dev/null || echo /usr/sbin/postfix)
    fi
    [[ -x $SMTP_SOURCE ]] || die "smtp-source not found after installing postfix"
    require_psql
    require_postgres
fi
CLK=$(getconf CLK_TCK)

# ---------------------------------------------------------------- build
build_release   # sets BIN, BUILT_REV, BUILD_DIR
if [[ ! -f $BUILD_DIR/examples/yara_scan.rs ]]; then
    mkdir -p "$BUILD_DIR/examples"
    cp examples/yara_scan.rs "$BUILD_DIR/examples/"
fi
cargo_release "the yara_scan example" --example yara_scan
EXAMPLE=$CARGO_TARGET_DIR/release/examples/yara_scan
[[ -x $EXAMPLE ]] || die "no example binary at $EXAMPLE"

# ---------------------------------------------------------------- inputs
log "generating $CORPUS messages ($MIN_BYTES - $MAX_BYTES bytes) and $RULES rules (seed $SEED)"
CORPUS_DIR=$WORK/corpus
RULES_DIR=$WORK/rules
mkdir -p "$RULES_DIR" "$WORK/empty" "$WORK/clamd-db" "$WORK/res"
RULES_FILE=$RULES_DIR/bench.yar
python3 bench/scan_corpus.py corpus "$CORPUS_DIR" --count "$CORPUS" --seed "$SEED" \
    --min-bytes "$MIN_BYTES" --max-bytes "$MAX_BYTES" >"$WORK/corpus.json" || die "generating the corpus failed"
python3 bench/scan_corpus.py rules "$RULES_FILE" --count "$RULES" --seed "$SEED" >"$WORK/rules.json" \
    || die "generating the rules failed"
CORPUS_BYTES=$(jq -r .bytes "$WORK/corpus.json")
CARRIERS=$(jq -r '.signature_files | length' "$WORK/corpus.json")
CORPUS_KINDS=$(jq -r '.kinds | to_entries | map("\(.key) \(.value)") | join(", ")' "$WORK/corpus.json")
MSGS=$(find "$CORPUS_DIR" -type f | wc -l)
[[ $MSGS -eq $CORPUS ]] || die "the corpus has $MSGS files, expected $CORPUS"
find "$CORPUS_DIR" -type f | sort >"$WORK/files.txt"
# The files split in THREADS lists, for as many clamdscan at once.
[[ $THREADS -le 1 ]] || split -n "r/$THREADS" -d "$WORK/files.txt" "$WORK/files-"

# ---------------------------------------------------------------- timing helpers
now() { date +%s.%N; }
ticks() { # PID...: utime + stime so far, in clock ticks (0 for a process gone)
    local t=0 p
    for p in "$@"; do
        [[ -r /proc/$p/stat ]] && t=$((t + $(sed 's/.*) //' "/proc/$p/stat" | awk '{ print $12 + $13 }')))
    done
    echo "$t"
}
# The whole machine's busy time so far (every CPU's user, nice, system, irq, softirq and steal), in clock ticks.
machine_busy() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }
# record ENGINE WALL CPU FILES MATCHED_FILES MATCHES: one round of ENGINE.
record() { echo "$2 $3 $4 $5 $6" >>"$WORK/res/$1"; }
# median ENGINE: the round with the median wall time ("wall cpu files matched matches").
median() { sort -n -k1,1 "$WORK/res/$1" | awk '{ r[NR] = $0 } END { print r[int((NR + 1) / 2)] }'; }
# timed TAG CMD...: CMD with stdout in TAG.out, stderr in TAG.err; sets T_WALL, T_CPU (its
# user + sys, children included) and T_RC.
timed() {
    local tag=$1 t0 t1
    shift
    T_RC=0
    t0=$(now)
    /usr/bin/time -f '%U %S' -o "$WORK/$tag.time" "$@" >"$WORK/$tag.out" 2>"$WORK/$tag.err" || T_RC=$?
    t1=$(now)
    T_WALL=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
    T_CPU=$(tail -n 1 "$WORK/$tag.time" | awk '{ printf "%.2f", $1 + $2 }')
}
kv() { tr ' ' '\n' <"$1" | sed -n "s/^$2=//p"; } # FILE KEY: a value of the example's output line

# DAEMON CMD... &: a daemon below intake, at DAEMON_NICE, in its own session when DAEMON_GROUP=own.
# Only ever run in the background: the exec makes $! the daemon itself, and setsid then execs in
# place (a background job is no process-group leader), so it stays the same process.
below_intake() {
    if [[ $DAEMON_GROUP == own ]]; then
        exec setsid nice -n "$DAEMON_NICE" "$@"
    else
        exec nice -n "$DAEMON_NICE" "$@"
    fi
}
# PID: once the daemon answers (its setsid has run), lower its session's scheduling group too.
group_below_intake() {
    local f=/proc/$1/autogroup
    [[ $DAEMON_GROUP == own && -w $f ]] || return 0
    [[ $(cat "$f") != "$(cat /proc/$$/autogroup)" ]] || die "pid $1 is still in the benchmark's scheduling group after setsid"
    echo "$DAEMON_NICE" >"$f"
}
if [[ $DAEMON_GROUP == own ]]; then
    if [[ $(cat /proc/sys/kernel/sched_autogroup_enabled 2>/dev/null || echo 0) == 1 ]]; then
        DAEMON_GROUP_TEXT="each in a session and autogroup of its own at nice $DAEMON_NICE (DAEMON_GROUP=own)"
    else
        DAEMON_GROUP_TEXT="each in a session of its own; this kernel does not group by session (no autogroup), so only their threads are niced (DAEMON_GROUP=own)"
    fi
else
    DAEMON_GROUP_TEXT="in the benchmark's own scheduling group (DAEMON_GROUP=shared)"
fi

# ---------------------------------------------------------------- clamd
CLAMD_PORT=$(free_port) || die "no free port"
cp tests/fixtures/clamav/mailsensor-test.ndb "$WORK/clamd-db/"
# clamd writes every INSTREAM to a file and unpacks into a folder of its own per scan: on a disk
# file system that creation and removal was about two thirds of clamd's CPU for a 10 KB message
# (run C: 2.39 ms per message with CLAMD_TMP=disk, 0.86 ms on tmpfs).
if [[ $CLAMD_TMP == tmpfs ]]; then
    CLAMD_TMPDIR=$(mktemp -d /dev/shm/mailsensor-scan-bench-clamd.XXXXXX)
else
    CLAMD_TMPDIR=$WORK/clamd-tmp
    mkdir -p "$CLAMD_TMPDIR"
fi
cat >"$WORK/clamd.conf" <<EOF
Foreground yes
DatabaseDirectory $WORK/clamd-db
TCPSocket $CLAMD_PORT
TCPAddr 127.0.0.1
LogFile $WORK/clamd.log
PidFile $WORK/clamd.pid
StreamMaxLength 4M
MaxThreads 2
TemporaryDirectory $CLAMD_TMPDIR
# No cache of clean results: every round scans every file (the cache would answer rounds 2 and on).
DisableCache yes
EOF
log "starting clamd on 127.0.0.1:$CLAMD_PORT (signatures: mailsensor-test.ndb)"
below_intake "$CLAMD" -c "$WORK/clamd.conf" >/dev/null 2>&1 &
PIDS[clamd]=$!
clamd_pongs() {
    python3 - "$CLAMD_PORT" <<'PYEOF' 2>/dev/null
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)
s.sendall(b"zPING\0")
s.settimeout(2)
data = b""
while True:
    chunk = s.recv(16)
    if not chunk:
        break
    data += chunk
sys.exit(0 if data == b"PONG\0" else 1)
PYEOF
}
for i in $(seq 300); do
    kill -0 "${PIDS[clamd]}" 2>/dev/null || die "clamd exited during start-up: $(tail -n 5 "$WORK/clamd.log")"
    clamd_pongs && break
    [[ $i -eq 300 ]] && die "clamd did not answer PING within 60 s"
    sleep 0.2
done
group_below_intake "${PIDS[clamd]}"

# ---------------------------------------------------------------- 1. the engines over the corpus
log "compiling the rules with yarac"
timed yarac "$YARAC" "$RULES_FILE" "$WORK/rules.yarc"
[[ $T_RC -eq 0 ]] || die "yarac does not compile the rules: $(head -c 600 "$WORK/yarac.err")"
YARAC_WALL=$T_WALL YARAC_CPU=$T_CPU

run_yara_x() { # ROWNAME MODE THREADS
    timed "$1" "$EXAMPLE" "$RULES_FILE" "$CORPUS_DIR" --mode "$2" --threads "$3" --clk-tck "$CLK" \
        --matches "$WORK/$1.matches"
    [[ $T_RC -eq 0 ]] || die "yara_scan ($2, $3 threads) failed: $(head -c 600 "$WORK/$1.err")"
    local o=$WORK/$1.out
    record "$1" "$(kv "$o" scan_wall_s)" "$(kv "$o" scan_cpu_s)" "$(kv "$o" files)" "$(kv "$o" matching_files)" "$(kv "$o" matches)"
    echo "$(kv "$o" compile_wall_s) $(kv "$o" compile_cpu_s)" >>"$WORK/res/yara-x-compile"
}
run_yara() { # ROWNAME THREADS: net of the rule load (median of the empty-folder runs)
    timed "$1-load" "$YARA" -C -p "$2" -r "$WORK/rules.yarc" "$WORK/empty"
    [[ $T_RC -eq 0 ]] || die "yara (empty folder) failed: $(head -c 600 "$WORK/$1-load.err")"
    record "$1-load" "$T_WALL" "$T_CPU" 0 0 0
    timed "$1" "$YARA" -C -p "$2" -r "$WORK/rules.yarc" "$CORPUS_DIR"
    [[ $T_RC -eq 0 ]] || die "yara failed: $(head -c 600 "$WORK/$1.err")"
    [[ -s $WORK/$1.err ]] && log "yara printed on stderr: $(head -c 300 "$WORK/$1.err")"
    cp "$WORK/$1.out" "$WORK/$1.matches"
    record "$1-total" "$T_WALL" "$T_CPU" "$MSGS" "$(awk '{ print $2 }' "$WORK/$1.out" | sort -u | grep -c . || true)" \
        "$(grep -c . "$WORK/$1.out" || true)"
}
net_of_load() { # ROWNAME: ROWNAME-total minus the median ROWNAME-load, round by round
    local load_wall load_cpu
    read -r load_wall load_cpu _ <<<"$(median "$1-load")"
    awk -v w="$load_wall" -v c="$load_cpu" '{ printf "%.3f %.3f %s %s %s\n", $1 - w, $2 - c, $3, $4, $5 }' \
        "$WORK/res/$1-total" >"$WORK/res/$1"
}
run_clamd() { # ROWNAME PARALLEL: clamdscan --stream, PARALLEL of them on a share of the files each
    local c0 c1 t0 t1 p rc=0 pids=() cpu=0 i
    c0=$(ticks "${PIDS[clamd]}")
    t0=$(now)
    if [[ $2 -le 1 ]]; then
        /usr/bin/time -f '%U %S' -o "$WORK/$1-0.time" "$CLAMDSCAN" --config-file="$WORK/clamd.conf" --stream --infected \
            --no-summary "$CORPUS_DIR" >"$WORK/$1-0.out" 2>"$WORK/$1-0.err" || rc=$?
        [[ $rc -le 1 ]] || die "clamdscan failed ($rc): $(head -c 600 "$WORK/$1-0.err")"
    else
        i=0
        for p in "$WORK"/files-*; do
            /usr/bin/time -f '%U %S' -o "$WORK/$1-$i.time" "$CLAMDSCAN" --config-file="$WORK/clamd.conf" --stream --infected \
                --no-summary --file-list="$p" >"$WORK/$1-$i.out" 2>"$WORK/$1-$i.err" &
            pids+=($!)
            i=$((i + 1))
        done
        for p in "${pids[@]}"; do
            rc=0
            wait "$p" || rc=$?
            [[ $rc -le 1 ]] || die "clamdscan failed ($rc): $(cat "$WORK/$1"-*.err | head -c 600)"
        done
    fi
    t1=$(now)
    c1=$(ticks "${PIDS[clamd]}")
    for p in "$WORK/$1"-*.time; do cpu=$(tail -n 1 "$p" | awk -v c="$cpu" '{ printf "%.2f", c + $1 + $2 }'); done
    cat "$WORK/$1"-*.out | grep ' FOUND$' | sed -E 's/^(.*): (.*) FOUND$/\2 \1/' >"$WORK/$1.matches" || true
    { grep -h -v -e ' FOUND$' -e '^$' "$WORK/$1"-*.out || true; } | head -n 3 | while read -r line; do log "clamdscan: $line"; done
    record "$1" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')" \
        "$(awk -v d=$((c1 - c0)) -v hz="$CLK" -v own="$cpu" 'BEGIN { printf "%.3f", d / hz + own }')" \
        "$MSGS" "$(grep -c . "$WORK/$1.matches" || true)" "$(grep -c . "$WORK/$1.matches" || true)"
    echo "$(awk -v d=$((c1 - c0)) -v hz="$CLK" 'BEGIN { printf "%.3f", d / hz }') $cpu" >>"$WORK/res/$1-split"
}

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
ROUND_LOADS=
for round in $(seq "$ROUNDS"); do
    ROUND_LOADS="$ROUND_LOADS${ROUND_LOADS:+, }$(cut -d' ' -f1 /proc/loadavg)"
    log "round $round/$ROUNDS: YARA-X, yara, clamdscan over $MSGS messages ($(awk -v b="$CORPUS_BYTES" 'BEGIN { printf "%.1f MB", b / 1e6 }')), 1 thread"
    run_yara_x yara-x-1 raw 1
    run_yara yara-1 1
    run_clamd clamd-1 1
    if [[ $THREADS -gt 1 ]]; then
        log "round $round/$ROUNDS: the same, $THREADS threads"
        run_yara_x "yara-x-$THREADS" raw "$THREADS"
        run_yara "yara-$THREADS" "$THREADS"
        run_clamd "clamd-$THREADS" "$THREADS"
    fi
    log "round $round/$ROUNDS: mailsensor's scan of every object, with and without YARA-X"
    run_yara_x objects-1 objects 1
    run_yara_x builtin-1 builtin 1
done
net_of_load yara-1
[[ $THREADS -le 1 ]] || net_of_load "yara-$THREADS"

# ---------------------------------------------------------------- 2. intake with the scan queue

start_rspamd() {
    local port dir=$WORK/rspamd sub
    port=$(free_port) || die "no free port"
    RSPAMD_URL=http://127.0.0.1:$port
    mkdir -p "$dir/conf/override.d"
    printf 'bind_socket = "127.0.0.1:%s";\ncount = 1;\n' "$port" >"$dir/conf/override.d/worker-normal.inc"
    echo 'enabled = false;' >"$dir/conf/override.d/worker-controller.inc"
    echo 'enabled = false;' >"$dir/conf/override.d/worker-proxy.inc"
    printf 'type = "console";\nlevel = "warning";\n' >"$dir/conf/override.d/logging.inc"
    # No network here: every DNS lookup fails fast on a closed local port.
    echo 'dns { nameserver = ["127.0.0.1:9"]; timeout = 0.2s; retransmits = 1; }' >"$dir/conf/override.d/options.inc"
    local user_args=()
    for sub in db run log; do mkdir -p "$dir/$sub"; done
    if [[ $(id -u) -eq 0 ]]; then
        chown _rspamd:_rspamd "$dir/db" "$dir/run" "$dir/log"
        user_args=(-u _rspamd -g _rspamd)
    fi
    log "starting rspamd (normal worker only) on $RSPAMD_URL"
    below_intake "$RSPAMD" -f "${user_args[@]}" -c /etc/rspamd/rspamd.conf --var "LOCAL_CONFDIR=$dir/conf" \
        --var "DBDIR=$dir/db" --var "RUNDIR=$dir/run" --var "LOGDIR=$dir/log" >"$WORK/rspamd.log" 2>&1 &
    PIDS[rspamd]=$!
    for i in $(seq 450); do
        kill -0 "${PIDS[rspamd]}" 2>/dev/null || die "rspamd exited during start-up"
        [[ $(curl -s -m 1 "$RSPAMD_URL/ping" || true) == pong* ]] && break
        [[ $i -eq 450 ]] && die "rspamd did not answer /ping within 90 s"
        sleep 0.2
    done
    group_below_intake "${PIDS[rspamd]}"
    RSPAMD_VERSION=$("$RSPAMD" --version 2>/dev/null | head -n 1)
}
rspamd_pids() { [[ -n ${PIDS[rspamd]:-} ]] && echo "${PIDS[rspamd]}" $(pgrep -P "${PIDS[rspamd]}" || true); }

declare -A CPU0=() CPU1=()
cpu_snapshot() { # ARRAY-NAME
    local -n into=$1
    into[serve]=$(ticks "${PIDS[serve]:-}")
    into[sensor]=$(ticks "${PIDS[sensor]:-}")
    into[clamd]=$(ticks "${PIDS[clamd]}")
    # shellcheck disable=SC2046
    into[rspamd]=$(ticks $(rspamd_pids))
    # shellcheck disable=SC2046
    into[postgres]=$(ticks $(pgrep -x postgres))
}

# intake_run TAG ENGINES(none|all) MODE(full|RATE): a fresh database, API and worker; a warm-up;
# then scan_load.py for DURATION s, its JSON in TAG.json and the CPU it cost in TAG.cpu.
intake_run() {
    local tag=$1 engines=$2 mode=$3 flags=() load=()
    recreate_databases "$DB"
    server_env "$DB"
    unset MAILSENSOR_API_URL MAILSENSOR_SENSOR_TOKEN MAILSENSOR_SENSOR_ID MAILSENSOR_SMTP_LISTEN \
        MAILSENSOR_ADMIN_LISTEN MAILSENSOR_TLS_CERT MAILSENSOR_TLS_KEY MAILSENSOR_SENSOR_NETWORK \
        MAILSENSOR_YARA_RULES MAILSENSOR_CLAMD MAILSENSOR_RSPAMD
    if [[ $engines == all ]]; then
        flags=(--yara-rules "$RULES_DIR" --clamd "tcp://127.0.0.1:$CLAMD_PORT")
        [[ $WITH_RSPAMD -eq 1 ]] && flags+=(--rspamd "$RSPAMD_URL")
    fi
    API_PORT=$(free_port) || die "no free port"
    API=http://127.0.0.1:$API_PORT
    API_BASE=$API
    log "[$tag] starting mailsensor serve on $API ${flags[*]}"
    "$BIN" serve --listen "127.0.0.1:$API_PORT" "${flags[@]}" >"$WORK/serve-$tag.log" 2>&1 &
    PIDS[serve]=$!
    wait_http_200 "mailsensor serve" "${PIDS[serve]}" "$API/readyz"
    create_tenant_and_sensor "scan-bench-$tag" bench-admin
    start_bench_worker "$WORK/sensor-$tag.log"
    # Warm-up: connections to the API and the daemons; scanned before the measured run starts.
    "$SMTP_SOURCE" -4 -d -s "$SESSIONS" -m $((SESSIONS * 5)) -l "$MSG_BYTES" -M bench-client.example.net \
        -f bench-sender@bench.example.net -t bench-rcpt@example.com "127.0.0.1:$SMTP_PORT" >/dev/null 2>&1 \
        || die "[$tag] the warm-up failed"
    local t0=$SECONDS
    until [[ $(curl -s "$API/metrics" | awk '/^mailsensor_scan_queue_depth / { print $2 }') == 0 ]]; do
        ((SECONDS - t0 < 120)) || die "[$tag] the warm-up was not scanned within 120 s"
        sleep 0.5
    done
    if [[ $mode == full ]]; then load=(--full --smtp-source "$SMTP_SOURCE"); else load=(--rate "$mode"); fi
    log "[$tag] $DURATION s of $MSG_BYTES-byte messages, $SESSIONS connections, $([[ $mode == full ]] && echo 'full speed (smtp-source -d)' || echo "paced at $mode/s")"
    LOAD_AT[$tag]=$(cut -d' ' -f1 /proc/loadavg)
    cpu_snapshot CPU0
    python3 bench/scan_load.py --port "$SMTP_PORT" --duration "$DURATION" "${load[@]}" --sessions "$SESSIONS" \
        --bytes "$MSG_BYTES" --worker-metrics "http://127.0.0.1:$ADMIN_PORT/metrics" --api-metrics "$API/metrics" \
        --api-readyz "$API/readyz" --drain-max "$DRAIN_MAX" >"$WORK/$tag.json" || die "[$tag] scan_load.py failed"
    cpu_snapshot CPU1
    local k
    : >"$WORK/$tag.cpu"
    for k in serve sensor postgres clamd rspamd; do echo "$k $((CPU1[$k] - CPU0[$k]))" >>"$WORK/$tag.cpu"; done
    kill -0 "${PIDS[sensor]}" 2>/dev/null || die "[$tag] the worker died during the run"
    kill -0 "${PIDS[serve]}" 2>/dev/null || die "[$tag] the API died during the run"
    curl -s "$API/metrics" >"$WORK/$tag.metrics" || true
    wc -l <"$WORK/serve-$tag.log" >"$WORK/serve-$tag.lines" # what it logged before the shutdown
    stop_proc sensor
    stop_proc serve
    log "[$tag] intake $(jq -r .intake_rate "$WORK/$tag.json") msgs/s, scanned $(jq -r .scanned_rate_during_run "$WORK/$tag.json") msgs/s during the run, max depth $(jq -r .max_depth "$WORK/$tag.json"), depth 0 after $(jq -r '.drain_s // "-"' "$WORK/$tag.json") s"
}

postfix_run() { # TAG: Postfix proper (bench/postfix/main.cf), smtp-source at full speed
    local tag=$1 port
    port=$(free_port) || die "no free port"
    log "[$tag] starting Postfix (queue on disk, discard transport) on 127.0.0.1:$port"
    start_postfix "$PF" "$port"
    "$SMTP_SOURCE" -4 -d -s "$SESSIONS" -m $((SESSIONS * 5)) -l "$MSG_BYTES" -M bench-client.example.net \
        -f bench-sender@bench.example.net -t bench-rcpt@example.com "127.0.0.1:$port" >/dev/null 2>&1 \
        || die "[$tag] the warm-up failed"
    sleep 2
    log "[$tag] $DURATION s of $MSG_BYTES-byte messages, $SESSIONS connections, full speed (smtp-source -d)"
    LOAD_AT[$tag]=$(cut -d' ' -f1 /proc/loadavg)
    local busy0
    busy0=$(machine_busy)
    python3 bench/scan_load.py --port "$port" --duration "$DURATION" --full --smtp-source "$SMTP_SOURCE" \
        --sessions "$SESSIONS" --bytes "$MSG_BYTES" --maillog "$PF/maillog" >"$WORK/$tag.json" \
        || die "[$tag] scan_load.py failed"
    # Postfix's whole cost per message, its load generator included: what an intake as cheap as
    # Postfix's takes of this machine (the floor in the report).
    echo "machine $(($(machine_busy) - busy0))" >"$WORK/$tag.busy"
    stop_postfix
    log "[$tag] intake $(jq -r .intake_rate "$WORK/$tag.json") msgs/s"
}

declare -A LOAD_AT=()
if [[ $INTAKE -eq 1 ]]; then
    intake_run none-full none full
    BASE_RATE=$(jq -r .intake_rate "$WORK/none-full.json")
    PACED_RATE=$(awk -v r="$BASE_RATE" -v p="$PACE" 'BEGIN { printf "%.1f", r * p }')
    RSPAMD_VERSION="not used (WITH_RSPAMD=0)"
    [[ $WITH_RSPAMD -eq 1 ]] && start_rspamd
    intake_run all-full all full
    intake_run all-paced all "$PACED_RATE"
    [[ $WITH_POSTFIX -eq 1 ]] && postfix_run postfix-full
fi
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- summary
describe_commit
# row LABEL ENGINE THREADS [REF]: one line of the engine table from the median round of ENGINE.
row() {
    local label=$1 engine=$2 threads=$3 ref=${4:-}
    read -r wall cpu files matched matches <<<"$(median "$engine")"
    local ref_wall= ref_cpu=
    [[ -n $ref ]] && read -r ref_wall ref_cpu _ <<<"$(median "$ref")"
    awk -v l="$label" -v t="$threads" -v w="$wall" -v c="$cpu" -v n="$files" -v b="$CORPUS_BYTES" -v m="$MSGS" \
        -v rw="$ref_wall" -v rc="$ref_cpu" -v mf="$matched" -v mm="$matches" 'BEGIN {
        rate = w > 0 ? n / w : 0
        xr = (rw != "" && w > 0) ? sprintf("%.2fx", rw / w) : "-"
        xc = (rc != "" && c > 0) ? sprintf("%.2fx", rc / c) : "-"
        printf "  %-44s %3s %6d %8.2f %8.2f %8.3f %9.1f %7.1f %8s %8s  %d/%d\n", l, t, n, w, c, 1000 * c / n, rate,
            b / 1e6 / w, xr, xc, mf, mm
    }'
}
# agreement A B: (rule, file) pairs in both match lists, only in A, only in B.
agreement() {
    sort -u "$WORK/$1.matches" >"$WORK/$1.sorted"
    sort -u "$WORK/$2.matches" >"$WORK/$2.sorted"
    echo "$(comm -12 "$WORK/$1.sorted" "$WORK/$2.sorted" | grep -c . || true) in both, $(comm -23 "$WORK/$1.sorted" "$WORK/$2.sorted" | grep -c . || true) only in $1, $(comm -13 "$WORK/$1.sorted" "$WORK/$2.sorted" | grep -c . || true) only in $2"
}
rate_of() { jq -r ".intake_rate // 0" "$WORK/$1.json"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "?" }'; }
met() { if awk -v v="$1" -v t="$2" 'BEGIN { exit !(v >= t) }'; then echo "met"; else echo "NOT met"; fi; }

read -r XC_WALL XC_CPU <<<"$(sort -n "$WORK/res/yara-x-compile" | awk '{ r[NR] = $0 } END { print r[int((NR + 1) / 2)] }')"
read -r YL_WALL YL_CPU _ <<<"$(median yara-1-load)"
read -r CS_CLAMD CS_OWN <<<"$(sort -n "$WORK/res/clamd-1-split" | awk '{ r[NR] = $0 } END { print r[int((NR + 1) / 2)] }')"
read -r X1_WALL X1_CPU _ <<<"$(median yara-x-1)"
read -r Y1_WALL Y1_CPU _ <<<"$(median yara-1)"

cat <<EOF

================ mailsensor scan engines benchmark ================
  commit      $COMMIT
  date        $(date -u +%Y-%m-%dT%H:%M:%SZ)
  nproc       $(nproc)    load avg (1/5/15 min) at start: $LOAD_START, at end: $LOAD_END
  engines     YARA-X $(sed -n 's/.*YARA_X_VERSION: &str = "\(.*\)";.*/\1/p' src/scan/yara.rs) in process (examples/yara_scan.rs: the project's scan::yara, compiled once, one scanner per thread);
              yara $YARA_VERSION (Debian), rules precompiled with yarac, scanned with yara -C -p N -r;
              $CLAMD_VERSION with tests/fixtures/clamav/mailsensor-test.ndb (2 signatures), MaxThreads 2, TemporaryDirectory on $CLAMD_TMP, via clamdscan --stream
  corpus      $MSGS messages, $(awk -v b="$CORPUS_BYTES" 'BEGIN { printf "%.1f MB", b / 1e6 }') ($(jq -r .min_bytes "$WORK/corpus.json") - $(jq -r .max_bytes "$WORK/corpus.json") bytes, log-uniform, seed $SEED): $CORPUS_KINDS;
              $CARRIERS carry the test signatures (marker in the text, EICAR attached or zipped)
  rules       $(jq -r .rules "$WORK/rules.json") rules ($(jq -r .bytes "$WORK/rules.json") bytes, seed $SEED); compile: YARA-X ${XC_WALL}s wall / ${XC_CPU}s CPU (in process), yarac ${YARAC_WALL}s / ${YARAC_CPU}s;
              loading the compiled rules: yara -C over an empty folder ${YL_WALL}s / ${YL_CPU}s per run (subtracted from the yara rows)
EOF
[[ -n ${BENCH_NOTE:-} ]] && echo "  note        $BENCH_NOTE"
cat <<EOF

  Every engine over the same $MSGS raw .eml files, each read from disk and scanned whole; median of $ROUNDS rounds (by wall time)
  $(printf '%-44s %3s %6s %8s %8s %8s %9s %7s %8s %8s  %s' "engine" "thr" "msgs" "wall s" "CPU s" "CPU ms/m" "msgs/s" "MB/s" "x rate" "x CPU" "files/matches")
EOF
row "yara-x, in process" yara-x-1 1 yara-1
row "yara CLI (yara -C -p 1), net of rule load" yara-1 1 yara-1
row "yara CLI (yara -C -p 1), total" yara-1-total 1 yara-1
row "clamdscan --stream -> clamd" clamd-1 1 yara-1
if [[ $THREADS -gt 1 ]]; then
    row "yara-x, in process, $THREADS threads" "yara-x-$THREADS" "$THREADS" "yara-$THREADS"
    row "yara CLI (yara -C -p $THREADS), net of rule load" "yara-$THREADS" "$THREADS" "yara-$THREADS"
    row "yara CLI (yara -C -p $THREADS), total" "yara-$THREADS-total" "$THREADS" "yara-$THREADS"
    row "$THREADS x clamdscan --stream -> clamd" "clamd-$THREADS" "$THREADS" "yara-$THREADS"
fi
echo "  not the same work (what the scan queue does with each message, in process):"
row "scan::scan_with_yara (every object + YARA-X)" objects-1 1 yara-1
row "scan::scan (every object, no YARA)" builtin-1 1 yara-1
cat <<EOF
  1-min load average at the start of each round: $ROUND_LOADS.
  CPU = user + system of the process (yara-x: /proc/self/stat around the scan loop, compile excluded; yara: /usr/bin/time,
  minus the median empty-folder run; clamd: clamd's /proc/<pid>/stat delta $CS_CLAMD s + clamdscan's own $CS_OWN s, 1-thread row).
  x rate = messages/s over the yara CLI's (net) at the same thread count; x CPU = the yara CLI's CPU over this row's.
  files/matches: files with a match / (rule, file) matches (clamd: infected files / signatures; it stops at the first).
  The YARA rows see the raw message (base64 and zip content undecoded); clamd decodes MIME and unpacks zips;
  scan::scan_with_yara runs the rules over the raw message, every decoded part and every archive member.

  Matches
    yara-x vs yara CLI (1 thread)   $(agreement yara-x-1 yara-1)$([[ $(comm -3 "$WORK/yara-x-1.sorted" "$WORK/yara-1.sorted" | grep -c . || true) -eq 0 ]] && echo "  -> the same" || echo "  -> !! DIFFERENT")
    clamd                           $(grep -c . "$WORK/clamd-1.matches" || true) infected of $CARRIERS signature carriers: $(awk '{ print $1 }' "$WORK/clamd-1.matches" | sort | uniq -c | awk '{ printf "%s%s %s", (NR > 1 ? ", " : ""), $2, $1 }')
    every object + YARA-X           $(median objects-1 | awk '{ print $4 " files, " $5 " yara_rule detections" }'); bench_sig_eicar (EICAR, only in decoded parts): $(grep -c '^bench_sig_eicar ' "$WORK/objects-1.matches" || true) files, raw: $(grep -c '^bench_sig_eicar ' "$WORK/yara-x-1.matches" || true)

  Target: in-process YARA-X >= 1.0x the yara command line (1 thread, scanning only): $(ratio "$Y1_WALL" "$X1_WALL") messages/s, $(ratio "$Y1_CPU" "$X1_CPU") CPU per message -> $(met "$(awk -v a="$Y1_WALL" -v b="$X1_WALL" 'BEGIN { print a / b }')" 1.0)
EOF

if [[ $INTAKE -eq 1 ]]; then
    intake_row() { # LABEL TAG
        local j=$WORK/$2.json cpu=
        if [[ -f $WORK/$2.cpu ]]; then
            cpu=$(awk -v hz="$CLK" -v n="$(jq -r '.taken' "$j")" '{ t += $2; printf "%s%s %.1f s (%.2f ms)", (NR > 1 ? ", " : ""), $1, $2 / hz, (n > 0 ? 1000 * $2 / hz / n : 0) }
                END { printf "; all %.1f s = %.2f ms per message taken", t / hz, (n > 0 ? 1000 * t / hz / n : 0) }' "$WORK/$2.cpu")
        fi
        jq -r '[.intake_rate, .scanned_rate_during_run, .scanned_rate_after, .scanned_rate_overall, .max_depth,
                .depth_at_end, .drain_s, .all_scanned_s, .scan_failures, .drain_max_s, .depth_last] | map(. // "-" | tostring) | @tsv' "$j" \
            | awk -F'\t' -v l="$1" -v base="$BASE_RATE" '
                function f(v) { return v == "-" ? v : sprintf("%.1f", v) }
                {
                    xa = (base > 0) ? sprintf("%.2fx", $1 / base) : "-"
                    # A run with a scan queue that had not emptied by DRAIN_MAX: ">DRAIN_MAX".
                    d0 = (($7 == "-" && $6 != "-") ? ">" $10 : f($7))
                    sc = (($8 == "-" && $6 != "-") ? ">" $10 : f($8))
                    printf "  %-34s %8s %6s %9s %9s %10s %8s %8s %7s %8s %5s\n", l, f($1), xa, f($2), f($3), f($4), $5, $6, d0, sc, $9
                    if ($7 == "-" && $6 != "-" && $3 != "-" && $3 > 0 && $11 != "-")
                        printf "      not empty after %s s: depth %s, at the drain pace of %.1f/s about %.0f s more\n", $10, $11, $3, $11 / $3
                }'
        [[ -n $cpu ]] && echo "      CPU over the run and the drain (ms per message taken$(jq -r 'if .all_scanned_s then "" else "; the scans still queued at the cut not included" end' "$j")): $cpu; 1-min load at start ${LOAD_AT[$2]}"
        jq -r 'if .readyz then "      API /readyz (2 s, as a probe): during the run \(.readyz.run | to_entries | map("\(.value) \(.key)") | join(", ")); during the drain \(.readyz.drain | to_entries | map("\(.value) \(.key)") | join(", ") | if . == "" then "-" else . end)" else empty end' "$j"
        jq -r 'if .client then "      client: \(.client.sent) sent, \(.client.ok) got 250, \(.client.refused) refused, \(.client.errors) connection errors (target \(.target_rate)/s)" else empty end' "$j"
        jq -r 'if .smtp_source_stderr != "" and .smtp_source_stderr != null then "      smtp-source stderr: \(.smtp_source_stderr | .[0:200] | gsub("\n"; " | "))" else empty end' "$j"
    }
    cat <<EOF

  Intake with the scan queue behind it: $DURATION s of $MSG_BYTES-byte messages, $SESSIONS connections; each run on a fresh database, API and worker
  (scan workers: default); engines = --yara-rules ($RULES rules) --clamd$([[ $WITH_RSPAMD -eq 1 ]] && echo " --rspamd ($RSPAMD_VERSION)");
  clamd and rspamd at nice $DAEMON_NICE (DAEMON_NICE), $DAEMON_GROUP_TEXT; serve's scan threads at nice 10
  $(printf '%-34s %8s %6s %9s %9s %10s %8s %8s %7s %8s %5s' "run" "intake/s" "x A" "scanned/s" "scan/s af" "scan/s all" "max dep" "dep end" "dep 0 s" "all sc s" "fail")
EOF
    intake_row "A. no engines, full speed" none-full
    intake_row "B. every engine, full speed" all-full
    intake_row "C. every engine, paced at ${PACE}x A" all-paced
    [[ $WITH_POSTFIX -eq 1 ]] && intake_row "D. Postfix proper, full speed" postfix-full
    B_RATE=$(rate_of all-full)
    C_RATE=$(rate_of all-paced)
    C_DRAIN=$(jq -r '.drain_s // 1e9' "$WORK/all-paced.json")
    C_MS=$(awk -v hz="$CLK" -v n="$(jq -r .taken "$WORK/all-paced.json")" '{ t += $2 } END { printf "%.2f", (n > 0 ? 1000 * t / hz / n : 0) }' "$WORK/all-paced.cpu")
    cat <<EOF
  intake/s = messages stored (worker's mailsensor_smtp_messages_total{outcome="stored"}; Postfix: status=sent in its log) / run
  seconds; scanned/s = mailsensor_messages_scanned_total during the run / run seconds; scan/s af = the same after the end
  (the drain's pace); scan/s all = everything the run took, scanned, over the run and the drain; max dep / dep end =
  mailsensor_scan_queue_depth (gauge, refreshed once a second);
  dep 0 s / all sc s = seconds after the end until the depth read 0 / every message taken was scanned (at most DRAIN_MAX=$DRAIN_MAX s).
  A full-speed run ends by stopping smtp-source (SIGTERM): the messages it had under way are cut off mid-DATA, which the
  API logs as "the upload broke off before its end".
  Depth per second during C: $(jq -c .depth_per_second "$WORK/all-paced.json")

  Targets
    scan queue keeps pace at >= 0.5x today's intake (C: $C_RATE msgs/s = $(ratio "$C_RATE" "$BASE_RATE") of A; depth 0 $(jq -r 'if .drain_s then "\(.drain_s) s after the end" else "not within DRAIN_MAX=\(.drain_max_s) s of the end" end' "$WORK/all-paced.json"); within 10 s?)
        -> $(if awk -v r="$C_RATE" -v b="$BASE_RATE" -v d="$C_DRAIN" 'BEGIN { exit !(b > 0 && r / b >= 0.5 && d <= 10) }'; then echo met; else echo "NOT met"; fi)
        (C cost $C_MS ms of CPU per message, intake and scan together (serve, sensor, postgres, clamd, rspamd; the load generator
        not counted): $(nproc) cores at 100 % give at most about $(awk -v ms="$C_MS" -v n="$(nproc)" 'BEGIN { printf "%.0f", (ms > 0 ? 1000 * n / ms : 0) }') messages/s end to end)
EOF
    if [[ $WITH_POSTFIX -eq 1 ]]; then
        P_RATE=$(rate_of postfix-full)
        echo "    intake with every engine >= 1.0x Postfix proper: B $B_RATE / D $P_RATE msgs/s = $(ratio "$B_RATE" "$P_RATE") -> $(met "$(awk -v a="$B_RATE" -v b="$P_RATE" 'BEGIN { print (b > 0 ? a / b : 0) }')" 1.0)"
        echo "    (and without engines: A $BASE_RATE / D $P_RATE msgs/s = $(ratio "$BASE_RATE" "$P_RATE"))"
        # What C asks of this machine before any of the product's own scanning: the daemons' CPU
        # per message as C measured it, plus an intake that costs what Postfix proper costs the
        # whole machine per message in D (its load generator included), at C's rate.
        awk -v hz="$CLK" -v n="$(jq -r .taken "$WORK/all-paced.json")" -v d="$(jq -r .taken "$WORK/postfix-full.json")" \
            -v busy="$(awk '{ print $2 }' "$WORK/postfix-full.busy")" -v rate="$C_RATE" -v cores="$(nproc)" '
            $1 == "clamd" || $1 == "rspamd" { ms[$1] = (n > 0 ? 1000 * $2 / hz / n : 0) }
            END {
                pf = (d > 0 ? 1000 * busy / hz / d : 0); need = rate * (ms["rspamd"] + ms["clamd"] + pf) / 1000
                printf "    floor of C on this machine: rspamd %.2f + clamd %.2f ms per message (C) + Postfix proper %.2f ms (D, the whole\n", ms["rspamd"], ms["clamd"], pf
                printf "      machine per message, smtp-source included) = %.2f ms; at %.1f msgs/s that is %.2f of %d cores before the\n", ms["rspamd"] + ms["clamd"] + pf, rate, need, cores
                printf "      product parses, runs YARA-X or writes a verdict%s\n", (need >= cores ? ": the target cannot be met here" : "")
            }' "$WORK/all-paced.cpu"
    else
        echo "    intake with every engine >= 1.0x Postfix proper: not measured (WITH_POSTFIX=0)"
    fi
    for tag in none-full all-full all-paced; do
        head -n "$(cat "$WORK/serve-$tag.lines")" "$WORK/serve-$tag.log" | sed -E 's/\x1b\[[0-9;]*m//g' >"$WORK/serve-$tag.run"
        n=$(grep -c -i -E 'warn|error' "$WORK/serve-$tag.run" || true)
        if [[ $n -gt 0 ]]; then
            echo "  serve log ($tag, before its shutdown): $n warning/error line(s), e.g.:"
            { grep -i -E 'warn|error' "$WORK/serve-$tag.run" | head -n 3 | cut -c1-220 | sed 's/^/    | /'; } || true
        fi
    done
fi
echo "=================================================================="
