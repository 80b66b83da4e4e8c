#!/usr/bin/env bash
# Benchmark of retro-hunts (issue 17): MESSAGES stored messages, RULES YARA rules; the retro-hunt's
# messages/s against the live scan's messages/s with the same rules in the same run (target
# >= 0.8x), and intake's rate while a hunt runs against its idle rate (target >= 0.9x; intake
# measured as bench/smtp.sh does: Postfix's smtp-source, SESSIONS persistent connections).
# Inputs from bench/scan_corpus.py (a seed gives the same bytes): CORPUS distinct messages
# (MIN_BYTES - MAX_BYTES, log-uniform: text, HTML, attachments, zips, zips in zips; 1 % carry the
# test signatures) and RULES rules generated with --rare (the common-word rules look for rare
# words, the zip rule for a 1,000-member zip: only the two signature rules match, about 1 % of the
# messages, so a hunt over MESSAGES stays under its match cap of 10,000 and scans them all).
# One `mailsensor serve` (release build, --yara-rules with those rules: the platform's, so the live
# scan runs them over every object), one tenant, one sensor, one worker, as bench/scan.sh sets up.
#   1. live scan: the MESSAGES messages through SMTP as fast as the worker takes them (the corpus in
#      turn, each with a header of its own), scanned as they arrive; mailsensor_messages_scanned_total
#      and mailsensor_scan_queue_depth sampled every second. The scan workers give way to intake
#      while it lasts, so the live scan's own pace is the drain after it: the backlog worked off
#      with nothing else running. Also shown: the rate during intake and overall.
#   2. retro-hunt, idle: a senior security officer starts a hunt with the same rules as its inline
#      source over the time range of 1. (exactly those messages); followed once a second until it
#      finishes; rate = progress.scanned / (finished_at - started_at).
#   3. intake: smtp-source -d -s SESSIONS -m INTAKE_MESSAGES -l MSG_BYTES, idle (A), with a second
#      hunt over the same range running the whole time (B; then aborted), idle again (A'): B
#      against the mean of A and A'. After each run the scan queue is left to empty (the live scan
#      runs with every intake run alike).
# Targets (from the issue; printed, never enforced). A benchmark, not a test: it fails only when it
# cannot set up or run, and reports what it saw.
#
# Usage (from anywhere; the script works from the repository root):
#     bench/retrohunt.sh
#     MESSAGES=5000 bench/retrohunt.sh          # a smaller run
#     BENCH_REV=HEAD bench/retrohunt.sh         # the last commit, not the working tree
#
# Environment:
#   MESSAGES         messages stored and hunted. Default 50000.
#   RULES            YARA rules (at most 1,000: a hunt's source may hold no more). Default 1000.
#   CORPUS           distinct messages generated (sent in turn). Default 1000.
#   SEED             seed of the corpus and the rules. Default 1.
#   MIN_BYTES / MAX_BYTES  corpus message sizes. Default 2048 / 131072.
#   SESSIONS         SMTP connections (the corpus load and smtp-source). Default 20.
#   INTAKE_MESSAGES  messages per smtp-source run in 3. Default 10000.
#   MSG_BYTES        smtp-source payload bytes (-l). Default 10240.
#   SCAN_WORKERS     `serve --scan-workers`. Default 2 (the product's default).
#   DRAIN_MAX        seconds to wait for the live scan to work off 1.'s backlog. Default 3600.
#   HUNT_MAX         seconds to follow the idle hunt. Default 3600.
#   VACUUM           auto: `VACUUM (ANALYZE)` the database between 1. and 2. when the server runs
#                    without autovacuum (its stand-in); 1: always; 0: never. Default auto.
#   OUT_DIR          where the report (.txt) and the raw samples (.json) are kept. Default bench/results.
#   CARGO_TARGET_DIR / BENCH_REV / PGHOST / PGPORT / PGUSER / BENCH_NOTE   as in the other scripts.
#
# Needs: cargo, curl, jq, psql, python3, and smtp-source (Debian's postfix package; apt-get
# installed when missing, as root, "No configuration"). The database mailsensor_retrohunt_bench
# is re-created at start and dropped at exit (it holds about MESSAGES x 30 KB).
set -euo pipefail
source "$(dirname "$0")/lib.sh"   # cds to the repository root; log, die, build_release, api_call, ...

MESSAGES=${MESSAGES:-50000}
RULES=${RULES:-1000}
CORPUS=${CORPUS:-1000}
SEED=${SEED:-1}
MIN_BYTES=${MIN_BYTES:-2048}
MAX_BYTES=${MAX_BYTES:-131072}
SESSIONS=${SESSIONS:-20}
INTAKE_MESSAGES=${INTAKE_MESSAGES:-10000}
MSG_BYTES=${MSG_BYTES:-10240}
SCAN_WORKERS=${SCAN_WORKERS:-2}
DRAIN_MAX=${DRAIN_MAX:-3600}
HUNT_MAX=${HUNT_MAX:-3600}
VACUUM=${VACUUM:-auto}
OUT_DIR=${OUT_DIR:-$BENCH_DIR/results}
DB=mailsensor_retrohunt_bench
TOKEN_TTL=28800

for v in MESSAGES RULES CORPUS MIN_BYTES MAX_BYTES SESSIONS INTAKE_MESSAGES MSG_BYTES SCAN_WORKERS DRAIN_MAX HUNT_MAX; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive whole number, got '${!v}'"
done
[[ $SEED =~ ^[0-9]+$ ]] || die "SEED must be a whole number, got '$SEED'"
[[ $VACUUM =~ ^(auto|0|1)$ ]] || die "VACUUM must be auto, 0 or 1, got '$VACUUM'"
[[ $RULES -ge 3 && $RULES -le 1000 ]] || die "RULES must be from 3 to 1000 (a hunt's source holds at most 1,000 rules)"
[[ $MIN_BYTES -lt $MAX_BYTES ]] || die "MIN_BYTES must be below MAX_BYTES"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/mailsensor-retrohunt-bench.XXXXXX")
declare -A PIDS=()
stop_proc() { stop_pid "${PIDS[$1]:-}"; unset "PIDS[$1]"; }
stop_processes() { # RC: from bench_cleanup (lib.sh), which then drops the database and WORK
    for name in sensor serve; do stop_proc "$name"; done
    [[ $1 -eq 0 ]] || show_log_tails 30 "$WORK"/serve.log "$WORK"/sensor.log
}
set_cleanup_traps

# ---------------------------------------------------------------- tools
for tool in curl jq; do
    command -v "$tool" >/dev/null 2>&1 || apt_install "$tool"
done
for tool in cargo python3; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is not on PATH"
done
SMTP_SOURCE=$(command -v smtp-source 2>/dev/null || { [[ -x /usr/sbin/smtp-source ]] && echo /usr/sbin/smtp-source; } || true)
if [[ -z $SMTP_SOURCE ]]; then
    [[ $(id -u) -eq 0 ]] || die "smtp-source is missing; install Debian's postfix package or run as root"
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    apt_install postfix
    SMTP_SOURCE=$(command -v smtp-source 2>/dev/null || echo /usr/sbin/smtp-source)
fi
[[ -x $SMTP_SOURCE ]] || die "smtp-source not found after installing postfix"
require_psql
require_postgres

# ---------------------------------------------------------------- build and inputs
build_release # sets BIN, BUILT_REV, BUILD_DIR
log "generating $CORPUS messages ($MIN_BYTES - $MAX_BYTES bytes) and $RULES rules (--rare, seed $SEED)"
RULES_DIR=$WORK/rules
RULES_FILE=$RULES_DIR/bench.yar
mkdir -p "$RULES_DIR"
python3 bench/scan_corpus.py corpus "$WORK/corpus" --count "$CORPUS" --seed "$SEED" \
    --min-bytes "$MIN_BYTES" --max-bytes "$MAX_BYTES" >"$WORK/corpus.json" || die "generating the corpus failed"
python3 bench/scan_corpus.py rules "$RULES_FILE" --count "$RULES" --seed "$SEED" --rare >"$WORK/rules.json" \
    || die "generating the rules failed"

# ---------------------------------------------------------------- the API and the worker
recreate_databases "$DB"
server_env "$DB"
unset MAILSENSOR_API_URL MAILSENSOR_SENSOR_TOKEN MAILSENSOR_SENSOR_ID MAILSENSOR_SMTP_LISTEN \
    MAILSENSOR_ADMIN_LISTEN MAILSENSOR_TLS_CERT MAILSENSOR_TLS_KEY MAILSENSOR_SENSOR_NETWORK \
    MAILSENSOR_YARA_RULES MAILSENSOR_CLAMD MAILSENSOR_RSPAMD MAILSENSOR_SCAN_WORKERS MAILSENSOR_RETROHUNTS_RUNNING
API_PORT=$(free_port) || die "no free port"
API=http://127.0.0.1:$API_PORT
API_BASE=$API
SERVE_FLAGS=(--yara-rules "$RULES_DIR" --scan-workers "$SCAN_WORKERS")
log "starting mailsensor serve on $API --yara-rules ($RULES rules) --scan-workers $SCAN_WORKERS"
"$BIN" serve --listen "127.0.0.1:$API_PORT" "${SERVE_FLAGS[@]}" >"$WORK/serve.log" 2>&1 &
PIDS[serve]=$!
wait_http_200 "mailsensor serve" "${PIDS[serve]}" "$API/readyz"
create_tenant_and_sensor retrohunt-bench bench-admin # OPERATOR, TENANT, PCN, ADMIN, SENSOR
OFFICER=$(mint_token --role senior_security_officer --tenant "$TENANT" --node "$PCN" --sub bench-officer)
start_bench_worker "$WORK/sensor.log"
CPU_ARGS=(--cpu "serve=${PIDS[serve]}" --cpu postgres=postgres)
LOADS=
phase_load() { LOADS="$LOADS${LOADS:+, }$1 $(cut -d' ' -f1 /proc/loadavg)"; } # PHASE: the 1-min load average now
iso_now() { date -u +%Y-%m-%dT%H:%M:%S.%6NZ; }
metric() { curl -s "$1" | awk -v m="$2" '$1 == m { print $2 }'; }
stored_count() { curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | awk '/^mailsensor_smtp_messages_total\{.*outcome="stored"/ { s += $2 } END { print s + 0 }'; }
wait_scanned() { # TAG: until the scan queue is empty (at most DRAIN_MAX s)
    local t0=$SECONDS
    until [[ $(metric "$API/metrics" mailsensor_scan_queue_depth) == 0 ]]; do
        ((SECONDS - t0 < DRAIN_MAX)) || die "[$1] the scan queue did not empty within $DRAIN_MAX s"
        sleep 1
    done
}

# ---------------------------------------------------------------- 1. live scan
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
SINCE=$(iso_now)
phase_load "1."
sleep 1
log "1. live scan: $MESSAGES messages through SMTP ($SESSIONS connections, full speed), scanned as they arrive"
python3 bench/retrohunt_measure.py load --port "$SMTP_PORT" --corpus "$WORK/corpus" --messages "$MESSAGES" \
    --sessions "$SESSIONS" --api-metrics "$API/metrics" --worker-metrics "http://127.0.0.1:$ADMIN_PORT/metrics" \
    --drain-max "$DRAIN_MAX" "${CPU_ARGS[@]}" --out "$WORK/live.json" || die "the corpus load failed"
[[ $(jq -r .all_scanned_after_s "$WORK/live.json") != null ]] || die "the live scan did not finish within DRAIN_MAX=$DRAIN_MAX s"
sleep 1
UNTIL=$(iso_now)
STORED=$("$PSQL" -d "$DB" -Atqc "select count(*) from messages where tenant_id = '$TENANT'" 2>/dev/null || echo '?')

# What autovacuum does after a load (hint bits, the visibility map, the planner's statistics),
# done at once where this server runs without it (as the CI machines' PostgreSQL does): else the
# hunt, the first to read the load back, pays for setting every page's hint bits, which no
# deployment with autovacuum on would see.
AUTOVACUUM=$("$PSQL" -d "$DB" -Atqc "show autovacuum")
if [[ $VACUUM == 1 || ($VACUUM == auto && $AUTOVACUUM == off) ]]; then
    log "VACUUM (ANALYZE) of the loaded database (autovacuum is $AUTOVACUUM here)"
    v0=$(date +%s.%N)
    "$PSQL" -d "$DB" -qc "VACUUM (ANALYZE)" || die "VACUUM failed"
    VACUUM_DONE="VACUUM (ANALYZE) of the database, autovacuum's stand-in (autovacuum=$AUTOVACUUM here; VACUUM=$VACUUM), $(python3 -c "import sys; print(round(float(sys.argv[2]) - float(sys.argv[1]), 1))" "$v0" "$(date +%s.%N)") s, not timed"
else
    VACUUM_DONE="no VACUUM (autovacuum=$AUTOVACUUM; VACUUM=$VACUUM)"
fi

# ---------------------------------------------------------------- 2. retro-hunt, idle
phase_load "2."
log "2. retro-hunt over [$SINCE, $UNTIL) with the same $RULES rules, nothing else running"
HUNT_ARGS=(--api "$API" --tenant "$TENANT" "${CPU_ARGS[@]}")
HUNT_TOKEN=$OFFICER python3 bench/retrohunt_measure.py hunt "${HUNT_ARGS[@]}" --rules "$RULES_FILE" \
    --since "$SINCE" --until "$UNTIL" --max "$HUNT_MAX" --out "$WORK/hunt.json" || die "the retro-hunt failed"
[[ $(jq -r .state "$WORK/hunt.json") == finished ]] || die "the retro-hunt ended $(jq -r '.state + " " + (.error // "")' "$WORK/hunt.json")"

# ---------------------------------------------------------------- 3. intake, idle and beside a hunt
intake_run() { # TAG: smtp-source as bench/smtp.sh runs it; TAG.secs, TAG.rc, TAG.stored
    local tag=$1 t0 t1 s0 s1 rc=0
    s0=$(stored_count)
    t0=$(date +%s.%N)
    "$SMTP_SOURCE" -4 -c -d -s "$SESSIONS" -m "$INTAKE_MESSAGES" -l "$MSG_BYTES" -M bench-client.example.net \
        -f bench-sender@bench.example.net -t bench-rcpt@example.com "127.0.0.1:$SMTP_PORT" >"$WORK/$tag.out" 2>"$WORK/$tag.err" || rc=$?
    t1=$(date +%s.%N)
    s1=$(stored_count)
    echo "$rc" >"$WORK/$tag.rc"
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", b - a }' >"$WORK/$tag.secs"
    echo $((s1 - s0)) >"$WORK/$tag.stored"
    [[ $rc -eq 0 ]] || log "[$tag] smtp-source exited $rc: $(head -c 300 "$WORK/$tag.err")"
    log "[$tag] $INTAKE_MESSAGES messages in $(cat "$WORK/$tag.secs") s ($((s1 - s0)) stored)"
}
hunt_progress() { # ID: "state scanned"
    curl -s -H "Authorization: Bearer $OFFICER" "$API/v1/tenants/$TENANT/retrohunts/$1" | jq -r '"\(.state) \(.progress.scanned)"'
}
phase_load "3A"
log "3A. intake, idle: smtp-source -d -s $SESSIONS -m $INTAKE_MESSAGES -l $MSG_BYTES"
intake_run intake-idle-1
wait_scanned intake-idle-1
phase_load "3B"
log "3B. intake beside a second retro-hunt (same rules, same range)"
HUNT2=$(HUNT_TOKEN=$OFFICER python3 bench/retrohunt_measure.py start "${HUNT_ARGS[@]}" --rules "$RULES_FILE" \
    --since "$SINCE" --until "$UNTIL" --out "$WORK/hunt2-start.json") || die "the second retro-hunt did not start"
read -r H2_STATE0 H2_SCANNED0 <<<"$(hunt_progress "$HUNT2")"
H2_T0=$(date +%s.%N)
intake_run intake-hunt
H2_T1=$(date +%s.%N)
read -r H2_STATE1 H2_SCANNED1 <<<"$(hunt_progress "$HUNT2")"
HUNT_TOKEN=$OFFICER python3 bench/retrohunt_measure.py follow --api "$API" --tenant "$TENANT" "${CPU_ARGS[@]}" \
    --started "$WORK/hunt2-start.json" --abort-after-s 0 --max 120 --out "$WORK/hunt2.json" || true
wait_scanned intake-hunt
phase_load "3A'"
log "3A'. intake, idle again"
intake_run intake-idle-2
wait_scanned intake-idle-2
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
kill -0 "${PIDS[serve]}" 2>/dev/null || die "the API died during the run"

# ---------------------------------------------------------------- report
describe_commit
CLK=$(getconf CLK_TCK)
mkdir -p "$OUT_DIR"
OUT=$OUT_DIR/retrohunt-$(date -u +%Y%m%dT%H%M%SZ)-$MESSAGES
rate_of() { awk -v n="$(cat "$WORK/$1.stored")" -v s="$(cat "$WORK/$1.secs")" 'BEGIN { printf "%.1f", (s > 0 ? n / s : 0) }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "?" }'; }
met() { if awk -v v="$1" -v t="$2" 'BEGIN { exit !(v != "?" && v >= t) }'; then echo met; else echo "NOT met"; fi; }
# cpu_per_msg FILE FROM-PHASE-FILTER: (serve + postgres) CPU ms per message between two samples
L=$WORK/live.json H=$WORK/hunt.json
LIVE_DRAIN=$(jq -r '.scanned_rate_drain // 0' "$L")
LIVE_ALL=$(jq -r '.scanned_rate_overall // 0' "$L")
HUNT_RATE=$(jq -r '.rate // 0' "$H")
I1=$(rate_of intake-idle-1) I2=$(rate_of intake-idle-2) IB=$(rate_of intake-hunt)
IDLE_MEAN=$(awk -v a="$I1" -v b="$I2" 'BEGIN { printf "%.1f", (a + b) / 2 }')
H2_RATE=$(awk -v a="$H2_SCANNED0" -v b="$H2_SCANNED1" -v t0="$H2_T0" -v t1="$H2_T1" 'BEGIN { printf "%.1f", (b - a) / (t1 - t0) }')
# CPU (serve + every postgres process) per message: the drain of 1., and the idle hunt.
LIVE_CPU=$(jq -r --argjson hz "$CLK" '[.samples[] | select(.phase == "end")][0] as $a | .samples[-1] as $b
    | (($b.cpu.serve - $a.cpu.serve) + ($b.cpu.postgres - $a.cpu.postgres)) / $hz * 1000 / ((($b.scanned // 0) - ($a.scanned // 0)) | if . > 0 then . else 1 end)
    | . * 100 | round / 100' "$L")
HUNT_CPU=$(jq -r --argjson hz "$CLK" '.samples[0] as $a | .samples[-1] as $b
    | (($b.cpu.serve - $a.cpu.serve) + ($b.cpu.postgres - $a.cpu.postgres)) / $hz * 1000 / ((($b.scanned // 0) - ($a.scanned // 0)) | if . > 0 then . else 1 end)
    | . * 100 | round / 100' "$H")
LIVE_SERVE_CPU=$(jq -r --argjson hz "$CLK" '[.samples[] | select(.phase == "end")][0] as $a | .samples[-1] as $b
    | ($b.cpu.serve - $a.cpu.serve) / $hz / ($b.t - $a.t) * 100 | round' "$L")
HUNT_SERVE_CPU=$(jq -r --argjson hz "$CLK" '.samples[0] as $a | .samples[-1] as $b
    | ($b.cpu.serve - $a.cpu.serve) / $hz / (($b.t - $a.t) | if . > 0 then . else 1 end) * 100 | round' "$H")
{
    cat <<EOF

================ mailsensor retro-hunt benchmark ================
  commit      $COMMIT
  date        $(date -u +%Y-%m-%dT%H:%M:%SZ)
  machine     nproc $(nproc); load avg (1/5/15 min) at the start: $LOAD_START, at the end: $LOAD_END;
              1-min load average as each part began: $LOADS (what this run adds is about 1-2)
  API         mailsensor serve ${SERVE_FLAGS[*]/$RULES_DIR/RULES} (PostgreSQL $("$PSQL" -d postgres -Atqc 'show server_version' 2>/dev/null)), one worker
  corpus      $CORPUS distinct messages, $(jq -r '.bytes / 1e6 * 10 | round / 10' "$WORK/corpus.json") MB ($(jq -r .min_bytes "$WORK/corpus.json") - $(jq -r .max_bytes "$WORK/corpus.json") bytes, seed $SEED: $(jq -r '.kinds | to_entries | map("\(.key) \(.value)") | join(", ")' "$WORK/corpus.json")),
              sent in turn up to $MESSAGES messages ($(jq -r '.client.bytes / 1e6 | round' "$L") MB); messages of the tenant in the database: $STORED
  rules       $(jq -r .rules "$WORK/rules.json") rules, $(jq -r .bytes "$WORK/rules.json") bytes (bench/scan_corpus.py rules --rare, seed $SEED): the platform's rules
              (--yara-rules) for the live scan, the hunts' inline source
EOF
    [[ -n ${BENCH_NOTE:-} ]] && echo "  note        $BENCH_NOTE"
    cat <<EOF

  1. Live scan of $MESSAGES messages as they arrive ($SESSIONS SMTP connections, full speed)
     intake                     $(jq -r '"\(.taken) taken in \(.load_s) s = \(.intake_rate) messages/s; client: \(.client.ok) 250, \(.client.refused) refused\(if .client.last_refusal then " (the last: \(.client.last_refusal | tostring))" else "" end), \(.client.errors) errors"' "$L")
     scanned during intake      $(jq -r '"\(.scanned_during_load) = \(.scanned_rate_during_load) messages/s (the scan workers give way to intake); backlog at its end \(.backlog_at_end)"' "$L")
     after intake (drain)       $(jq -r '"\(.scanned_all - .scanned_during_load) in \(.drain_s) s = \(.scanned_rate_drain) messages/s   <- the live scan'"'"'s own pace"' "$L")
     overall                    $(jq -r '"\(.scanned_all) in \(.load_s + .drain_s | . * 10 | round / 10) s = \(.scanned_rate_overall) messages/s"' "$L")
     CPU in the drain           serve ${LIVE_SERVE_CPU}% of one core; serve + PostgreSQL ${LIVE_CPU} ms per message

  2. Retro-hunt over the same $MESSAGES messages, same rules, nothing else running
     $(jq -r '"\(.state): \(.scanned) of \(.total) scanned (\(.skipped) skipped), \(.matches) matches\(if .cap_reached then " (CAP REACHED)" else "" end), \(.bytes / 1e6 | round) MB"' "$H")
     $(jq -r '"\(.seconds | . * 10 | round / 10) s from started_at to finished_at = \(.rate) messages/s, \(.mb_per_s) MB/s"' "$H")
     CPU                        serve ${HUNT_SERVE_CPU}% of one core; serve + PostgreSQL ${HUNT_CPU} ms per message
     scanned per 10 s           $(jq -r '[.samples as $s | range(0; $s | length; 10) as $i | $s[$i].scanned] | map(tostring) | join(" ")' "$H")

  3. Intake, smtp-source -d -s $SESSIONS -m $INTAKE_MESSAGES -l $MSG_BYTES (as bench/smtp.sh), the live scan on
     A  idle                    $I1 messages/s ($(cat "$WORK/intake-idle-1.stored") stored in $(cat "$WORK/intake-idle-1.secs") s, exit $(cat "$WORK/intake-idle-1.rc"))
     B  beside a retro-hunt     $IB messages/s ($(cat "$WORK/intake-hunt.stored") stored in $(cat "$WORK/intake-hunt.secs") s, exit $(cat "$WORK/intake-hunt.rc"));
                                the hunt: $H2_STATE0 at the start, $H2_STATE1 at the end, $((H2_SCANNED1 - H2_SCANNED0)) messages scanned meanwhile = $H2_RATE messages/s
     A' idle again              $I2 messages/s ($(cat "$WORK/intake-idle-2.stored") stored in $(cat "$WORK/intake-idle-2.secs") s, exit $(cat "$WORK/intake-idle-2.rc"))

  Targets (issue 17)
    retro-hunt >= 0.8x the live scan (same rules, same run): $HUNT_RATE / $LIVE_DRAIN messages/s = $(ratio "$HUNT_RATE" "$LIVE_DRAIN")x -> $(met "$(ratio "$HUNT_RATE" "$LIVE_DRAIN")" 0.8)
        (against the live scan's overall rate, intake included: $HUNT_RATE / $LIVE_ALL = $(ratio "$HUNT_RATE" "$LIVE_ALL")x)
    intake beside a hunt >= 0.9x idle: $IB / $IDLE_MEAN (mean of A and A') = $(ratio "$IB" "$IDLE_MEAN")x -> $(met "$(ratio "$IB" "$IDLE_MEAN")" 0.9)$([[ $H2_STATE1 == running ]] || echo "  (!! the hunt was not running at the end of B)")
  The live scan runs $SCAN_WORKERS scan workers (threads); a replica runs one retro-hunt runner: chunks of up to 250
  messages (16 MiB), one at a time, scanned on two threads while the next one is read ahead.
  Between 1. and 2.: $VACUUM_DONE
EOF
    n=$(grep -c -i -E 'warn|error' "$WORK/serve.log" || true)
    if [[ $n -gt 0 ]]; then
        echo "  serve log: $n warning/error line(s), e.g.:"
        { grep -i -E 'warn|error' "$WORK/serve.log" | sed -E 's/\x1b\[[0-9;]*m//g' | head -n 3 | cut -c1-220 | sed 's/^/    | /'; } || true
    fi
    n=$(grep -c -i -E 'warn|error' "$WORK/sensor.log" || true)
    [[ $n -eq 0 ]] || echo "  sensor log: $n warning/error line(s), first: $(grep -i -E 'warn|error' "$WORK/sensor.log" | sed -E 's/\x1b\[[0-9;]*m//g' | head -n 1 | cut -c1-300)"
    echo "  raw samples: $OUT.json"
    echo "================================================================="
} >"$OUT.txt"
jq -n --slurpfile live "$L" --slurpfile hunt "$H" '{live: $live[0], hunt: $hunt[0]}' >"$OUT.json" 2>/dev/null || true
[[ -f $WORK/hunt2.json ]] && jq -c --slurpfile h2 "$WORK/hunt2.json" '. + {hunt_beside_intake: $h2[0]}' "$OUT.json" >"$OUT.json.tmp" 2>/dev/null \
    && mv "$OUT.json.tmp" "$OUT.json"
cat "$OUT.txt"
log "kept $OUT.txt and $OUT.json"
