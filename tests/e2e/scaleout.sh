#!/usr/bin/env bash
# Scale-out: two `serve` processes (own work dirs, own listeners) on one PostgreSQL queue.
#  1. 2,000 notifications spread over both listeners: each handled exactly once, by one of them.
#  2. The same notifications sent to both listeners: one job each.
#  3. A handler that runs longer than the lease is not run twice while it runs.
#  4. One serve SIGKILLed while running jobs: the other takes them over when their leases end;
#     none lost, duplicates only for the jobs that were running at the kill.
#  5. PostgreSQL restarted (immediate) during ingest: no acknowledged notification lost; both
#     serves go on without being restarted.
#  6. PostgreSQL down: the listener answers 503 with Retry-After; 200 again once it is back.
# The handler (tests/handlers/count) appends "KEY HANDLER ATTEMPT" to $COUNT_FILE, which is
# count.a or count.b: the serve that ran it.
source "$(dirname "$0")/lib.sh"
LOCAL_PG="$TOP/scripts/local-pg"
PG_STARTED=""
if ! "$LOCAL_PG" status >/dev/null 2>&1; then
	"$LOCAL_PG" up >&2 || fail "local-pg did not start"
	PG_STARTED=1
fi
eval "$("$LOCAL_PG" env)"
DB="s3hook_e2e_$$"
psql_() { "$LOCAL_PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 "$@"; }
psql_ -d postgres -c "CREATE DATABASE $DB" || fail "cannot create database $DB"

# At exit: the serves, the database, the server if this test started it; then lib.sh's cleanup.
finish() {
	local rc=$? pid
	set +e
	for pid in "${CLEANUP_PIDS[@]}"; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; done
	psql_ -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1
	[ -n "$PG_STARTED" ] && "$LOCAL_PG" down >/dev/null 2>&1
	(exit "$rc")
	cleanup
}
trap finish EXIT

H="$TOP/tests/handlers"
WORKERS=2
declare -A PORT PID
PORT[a]=$(free_port)
PORT[b]=$(free_port)
for s in a b; do
	: >"$WORK/count.$s"
	cat >"$WORK/$s.conf" <<CONF
[s3]
endpoint = $S3_ENDPOINT
region = default
[serve]
listen = 127.0.0.1:${PORT[$s]}
admin_listen =
auth_token = none
[jobs]
queue = postgres://$PGUSER@127.0.0.1:$PGPORT/$DB
workdir = $WORK/work.$s
workers = $WORKERS
lease = 2s
[handler count]
events = s3:ObjectRemoved:*
prefix = n/ same/ pg/ after/
command = $H/count
env = COUNT_FILE
[handler slow]
events = s3:ObjectRemoved:*
prefix = slow/
command = /bin/sh -c "sleep 4; exec $H/count"
env = COUNT_FILE
[handler sleepy]
events = s3:ObjectRemoved:*
prefix = kill/
command = /bin/sh -c "echo \"\$S3HOOK_KEY started\" >>\"\$COUNT_FILE\"; sleep 1; exec $H/count"
env = COUNT_FILE
CONF
done

start_serve() {
	COUNT_FILE="$WORK/count.$1" "$S3HOOK" serve -c "$WORK/$1.conf" 2>>"$WORK/serve.$1.log" &
	PID[$1]=$!
	CLEANUP_PIDS+=("$!")
	local i
	for i in $(seq 200); do
		curl -sf "http://127.0.0.1:${PORT[$1]}/healthz" >/dev/null && return 0
		sleep 0.05
	done
	fail "serve $1 did not start"
}

# notify SERVE PREFIX COUNT [notify.py options]: POSTs in the background; $! is its PID.
notify() {
	local s=$1 prefix=$2 count=$3
	shift 3
	python3 "$TOP/tests/notify.py" "http://127.0.0.1:${PORT[$s]}/" --bucket scale --count "$count" \
		--prefix "$prefix" --concurrency 4 "$@" >>"$WORK/notify.out" &
}

# Waits until the queue has no job left to run.
drained() {
	local left i
	for i in $(seq 600); do
		left=$(psql_ -d "$DB" -Atc "SELECT count(*) FROM jobs
			WHERE state IN ('pending', 'running', 'retry')")
		[ "$left" = 0 ] && return 0
		sleep 0.2
	done
	fail "$left jobs still to run"
}

# ran PREFIX [SERVE]: the runs of keys under PREFIX (by both serves, or one): "KEY HANDLER ATTEMPT".
ran() {
	local files=("$WORK/count.a" "$WORK/count.b")
	[ -n "${2:-}" ] && files=("$WORK/count.$2")
	awk -v p="$1" 'index($1, p) == 1 && $2 != "started"' "${files[@]}"
}

start_serve a
start_serve b

# ---- 1. 2,000 notifications over both listeners: each job run once, by one serve
notify a n/a/ 1000 --ok-log "$WORK/acked.1"
N1=$!
notify b n/b/ 1000 --ok-log "$WORK/acked.1"
wait "$N1" "$!"
expect_eq "2000 notifications acknowledged" "$(wc -l <"$WORK/acked.1")" 2000
drained
expect_eq "2000 runs" "$(ran n/ | wc -l)" 2000
expect_eq "2000 distinct keys ran" "$(ran n/ | cut -d' ' -f1 | sort -u | wc -l)" 2000
expect_eq "every acknowledged key ran" \
	"$(sort "$WORK/acked.1" | comm -23 - <(ran n/ | cut -d' ' -f1 | sort) | wc -l)" 0
ra=$(ran n/ a | wc -l)
rb=$(ran n/ b | wc -l)
[ "$ra" -gt 0 ] && [ "$rb" -gt 0 ] || fail "one serve did all the work: a=$ra b=$rb"
ok "serve a ran $ra, serve b $rb; of a's notifications, b ran $(ran n/a/ b | wc -l)"

# ---- 2. the same notifications to both listeners: one job each
notify a same/ 100 --ok-log "$WORK/acked.2"
N1=$!
notify b same/ 100 --ok-log "$WORK/acked.2"
wait "$N1" "$!"
expect_eq "both listeners acknowledged each" "$(wc -l <"$WORK/acked.2")" 200
drained
expect_eq "one job per notification" "$("$S3HOOK" jobs -c "$WORK/a.conf" --json --limit 0 |
	python3 -c 'import json,sys
print(sum(1 for l in sys.stdin if json.loads(l)["key"].startswith("same/")))')" 100
expect_eq "one run per notification" "$(ran same/ | wc -l)" 100

# ---- 3. a handler longer than the lease (4 s against 2 s) runs once
notify a slow/ 3
wait "$!"
drained
expect_eq "3 slow jobs, each run once, in its first attempt" "$(ran slow/ | awk '{print $3}' | sort | uniq -c | tr -s ' ')" " 3 1"

# ---- 4. serve a SIGKILLed while it runs jobs: b takes them over when their leases end
notify b kill/ 12 # to b: a's listener goes with a
wait "$!"
for i in $(seq 200); do
	[ "$(grep -c ' started$' "$WORK/count.a")" -ge 1 ] && break
	sleep 0.05
done
kill -KILL "${PID[a]}"
wait "${PID[a]}" 2>/dev/null || true
sleep 0.2 # let the start lines of handlers started just before the kill land
at_kill=$(comm -23 <(grep ' started$' "$WORK/count.a" | cut -d' ' -f1 | sort) \
	<(ran kill/ a | cut -d' ' -f1 | sort))
[ -n "$at_kill" ] || fail "serve a ran no job when it was killed"
ok "serve a killed while running $(echo "$at_kill" | wc -l) jobs"
drained
expect_eq "every job ran" "$(ran kill/ | cut -d' ' -f1 | sort -u | wc -l)" 12
for k in $at_kill; do
	ran "$k" b | grep -q " 2$" || fail "$k, running at the kill, was not taken over by b"
done
ok "b took over each job a was running, as its second attempt"
dups=$(ran kill/ | cut -d' ' -f1 | sort | uniq -d)
[ -z "$(comm -23 <(echo "$dups" | grep .) <(echo "$at_kill"))" ] ||
	fail "jobs not running at the kill ran twice: $dups"
ok "$(echo -n "$dups" | grep -c .) keys ran twice, all of them running at the kill"
start_serve a

# ---- 5. PostgreSQL restarted during ingest: nothing acknowledged is lost, both serves go on
: >"$WORK/acked.5"
notify a pg/a/ 300 --retry 60 --ok-log "$WORK/acked.5"
N1=$!
notify b pg/b/ 300 --retry 60 --ok-log "$WORK/acked.5"
N2=$!
for i in $(seq 200); do [ "$(wc -l <"$WORK/acked.5")" -ge 100 ] && break; sleep 0.05; done
before=$(wc -l <"$WORK/acked.5")
"$LOCAL_PG" ctl restart -m immediate -w >/dev/null 2>&1 || fail "pg_ctl restart failed"
[ "$before" -lt 600 ] || fail "ingest was over before the restart"
ok "PostgreSQL restarted (immediate) with $before of 600 notifications acknowledged"
wait "$N1" "$N2"
expect_eq "600 notifications acknowledged, with retries" "$(wc -l <"$WORK/acked.5")" 600
drained
expect_eq "every acknowledged notification ran" \
	"$(sort "$WORK/acked.5" | comm -23 - <(ran pg/ | cut -d' ' -f1 | sort -u) | wc -l)" 0
for s in a b; do
	kill -0 "${PID[$s]}" 2>/dev/null || fail "serve $s is gone"
	notify "$s" "after/$s/" 10 --ok-log "$WORK/acked.after"
	wait "$!"
done
drained
expect_eq "both serves still take and run jobs" "$(ran after/ | wc -l)" 20
grep -q "queue connection made again\|listening for new jobs again" "$WORK"/serve.*.log ||
	fail "no reconnection was logged"

# ---- 6. PostgreSQL down: 503 with Retry-After, nothing acknowledged; back: 200 again
"$LOCAL_PG" ctl stop -m immediate -w >/dev/null 2>&1 || fail "pg_ctl stop failed"
body='{"Records":[{"eventVersion":"2.2","eventSource":"ceph:s3","eventName":"ObjectRemoved:Delete",
"s3":{"bucket":{"name":"scale"},"object":{"key":"after/down","eTag":"","sequencer":"1"}}}]}'
got=$(curl -s -o /dev/null -D - -w '%{http_code}' -H 'Content-Type: application/json' \
	--data-binary "$body" "http://127.0.0.1:${PORT[a]}/" | tr -d '\r' | grep -i '^retry-after:\|^[0-9][0-9]*$' |
	tr '\n' ' ')
"$LOCAL_PG" ctl start -w >/dev/null 2>&1 || fail "pg_ctl start failed"
expect_match "queue down: 503 with Retry-After" "$got" "^[Rr]etry-[Aa]fter: [0-9]+ 503 $"
for i in $(seq 100); do
	code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
		--data-binary "$body" "http://127.0.0.1:${PORT[a]}/")
	[ "$code" = 200 ] && break
	sleep 0.1
done
expect_eq "queue back: 200" "$code" 200

# The password (PGPASSWORD) is never logged.
if grep -qF "$PGPASSWORD" "$WORK"/serve.*.log "$WORK/notify.out"; then fail "the password was logged"; fi
ok "no password in the logs"
for s in a b; do
	kill -TERM "${PID[$s]}"
	wait "${PID[$s]}" || fail "serve $s did not exit cleanly"
done
