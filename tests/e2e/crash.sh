#!/usr/bin/env bash
# kill -9: 2,000 notifications POSTed while `serve` is SIGKILLed and restarted 3 times.
# Every notification that got a 200 runs to done (the handler counts); duplicates only
# for jobs that were running at a kill.
source "$(dirname "$0")/lib.sh"
PORT=$(free_port)
H="$TOP/tests/handlers"
export COUNT_FILE="$WORK/count"
: >"$COUNT_FILE"
CONF="$WORK/s3hook.conf"
WORKERS=2
cat >"$CONF" <<CONF
[s3]
endpoint = $S3_ENDPOINT
region = default
[serve]
listen = 127.0.0.1:$PORT
admin_listen =
auth_token = none
[jobs]
queue = $WORK/queue.db
workdir = $WORK/work
workers = $WORKERS
lease = 3s
[handler count]
events = s3:ObjectRemoved:*
command = $H/count
env = COUNT_FILE
CONF

start_serve() {
	"$S3HOOK" serve -c "$CONF" 2>>"$WORK/serve.log" &
	SERVE=$!
	local i
	for i in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && return 0; sleep 0.05; done
	fail "serve did not start"
}
: >"$WORK/acked"
start_serve
python3 "$TOP/tests/notify.py" "http://127.0.0.1:$PORT/" --bucket crash --count 2000 \
	--prefix crash/ --concurrency 4 --retry 30 --ok-log "$WORK/acked" >"$WORK/notify.out" &
NOTIFY=$!
CLEANUP_PIDS+=("$NOTIFY")
for i in $(seq 100); do [ "$(wc -l <"$WORK/acked")" -ge 100 ] && break; sleep 0.05; done
for kill in 1 2 3; do
	sleep 0.$((RANDOM % 3 + 2))
	kill -KILL "$SERVE"
	wait "$SERVE" 2>/dev/null || true
	ok "kill -9 number $kill, with $(wc -l <"$WORK/acked") notifications acknowledged so far"
	start_serve
	CLEANUP_PIDS+=("$SERVE")
done
wait "$NOTIFY"
acked=$(wc -l <"$WORK/acked")
[ "$acked" -eq 2000 ] || fail "only $acked of 2000 notifications were acknowledged, with retries"
ok "$acked of 2000 notifications acknowledged ($(cat "$WORK/notify.out"))"

# Wait until the queue has nothing left to run.
for i in $(seq 300); do
	left=$("$S3HOOK" jobs -c "$CONF" --json --limit 0 | python3 -c 'import json,sys
print(sum(1 for l in sys.stdin if json.loads(l)["state"] in ("pending","running","retry")))')
	[ "$left" = 0 ] && break
	sleep 0.2
done
expect_eq "no job left to run" "$left" "0"
missing=$(sort -u "$WORK/acked" | comm -23 - <(cut -d' ' -f1 "$COUNT_FILE" | sort -u) | wc -l)
expect_eq "every acknowledged notification ran" "$missing" "0"
dups=$(cut -d' ' -f1 "$COUNT_FILE" | sort | uniq -d | wc -l)
[ "$dups" -le $((WORKERS * 3)) ] || fail "$dups keys ran twice; at most $((WORKERS * 3)) were running at the kills"
ok "$dups keys ran twice (at most $((WORKERS * 3)) were running at the kills)"
kill -TERM "$SERVE"
wait "$SERVE" || fail "serve did not exit cleanly"
# Each killed serve left its workers' folders; each start after removes them (unlocked), and
# the last serve its own when it stops.
left=$(find "$WORK/work" -mindepth 1 -maxdepth 1 | wc -l)
expect_eq "no job folder left in the workdir after 3 kills and a stop" "$left" "0"
grep -q "removed job folders a process that ended had left" "$WORK/serve.log" ||
	fail "no start said it removed the killed serve's folders"
