#!/usr/bin/env bash
# Hostile requests: slowloris, 10,000 connections held, header floods, chunked bodies without
# end, JSON nested 100,000 deep, as many records as fit the body limit, hostile keys. Each
# gets a clear 4xx or is processed safely, nothing is written outside a job's folder, and
# /healthz on admin_listen answers within 100 ms throughout.
source "$(dirname "$0")/lib.sh"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
PORT=$(free_port)
APORT=$(free_port)
H="$TOP/tests/handlers"
export COUNT_FILE="$WORK/count"
: >"$COUNT_FILE"
CONF="$WORK/s3hook.conf"
cat >"$CONF" <<CONF
[s3]
endpoint = $S3_ENDPOINT
region = default
[serve]
listen = 127.0.0.1:$PORT
admin_listen = 127.0.0.1:$APORT
auth_token = none
body_limit = 256KiB
max_connections = 2000
connection_timeout = 3s
[jobs]
queue = $WORK/queue.db
workdir = $WORK/work
workers = 2
[handler count]
events = s3:ObjectRemoved:*
command = $H/count
env = COUNT_FILE
CONF
"$S3HOOK" serve -c "$CONF" --log-level error 2>"$WORK/serve.log" &
SERVE=$!
CLEANUP_PIDS+=("$SERVE")
for i in $(seq 100); do curl -sf "http://127.0.0.1:$APORT/healthz" >/dev/null && break; sleep 0.1; done
HOSTILE="python3 $TOP/tests/hostile.py"

# Watch the admin listener the whole time.
$HOSTILE health "http://127.0.0.1:$APORT/healthz" 25 >"$WORK/health" &
HEALTH=$!
CLEANUP_PIDS+=("$HEALTH")

$HOSTILE slowloris 127.0.0.1 "$PORT" 300 6 >"$WORK/slowloris" &
SLOW=$!
$HOSTILE hold 127.0.0.1 "$PORT" 10000 6 >"$WORK/hold" &
HOLD=$!
$HOSTILE chunked 127.0.0.1 "$PORT" 3 >"$WORK/chunked" &
CHUNK=$!
headers=$($HOSTILE headers 127.0.0.1 "$PORT")
sleep 1
legit='{"Records":[{"eventVersion":"2.2","eventSource":"ceph:s3","eventName":"ObjectRemoved:Delete","s3":{"bucket":{"name":"h"},"object":{"key":"legit","size":0,"eTag":"","sequencer":"7"}}}]}'
# Held connections fill max_connections until connection_timeout frees them: a sender that
# retries, as RGW and MinIO do, gets through.
for i in $(seq 20); do
	code=$(curl -s -m 2 -o /dev/null -w '%{http_code}' -d "$legit" "http://127.0.0.1:$PORT/" || true)
	[ "$code" = 200 ] && break
	sleep 0.5
done
expect_eq "a real notification gets through meanwhile" "$code" "200"
wait "$SLOW" "$HOLD" "$CHUNK"
ok "slowloris: $(cat "$WORK/slowloris")"
expect_match "10,000 held connections: opened and dropped" "$(cat "$WORK/hold")" "still_open=0"
expect_match "a chunked body without end: 413" "$(cat "$WORK/chunked")" "status=(413|closed)"
expect_match "10,000 headers or a 1 MiB header: 4xx or closed" "$headers" "many=(4[0-9][0-9]|closed) huge=(4[0-9][0-9]|closed)"

post() { curl -s -o "$WORK/answer" -w '%{http_code}' --data-binary @"$1" "http://127.0.0.1:$PORT/"; }
python3 -c 'print("[" * 100000 + "]" * 100000)' >"$WORK/deep.json"
expect_eq "JSON nested 100,000 deep: 400" "$(post "$WORK/deep.json")" "400"
python3 - "$WORK/many.json" <<'PY'
import json, sys
rec = {"eventVersion": "2.2", "eventSource": "ceph:s3", "eventName": "ObjectRemoved:Delete",
       "s3": {"bucket": {"name": "h"}, "object": {"key": "", "size": 0, "eTag": "", "sequencer": "1"}}}
recs, size = [], 20
while True:
    r = json.loads(json.dumps(rec))
    r["s3"]["object"]["key"] = "many/%06d" % len(recs)
    size += len(json.dumps(r)) + 2
    if size > 250 * 1024:
        break
    recs.append(r)
json.dump({"Records": recs}, open(sys.argv[1], "w"))
PY
n_many=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["Records"]))' "$WORK/many.json")
expect_eq "as many records as fit in the body limit: 200" "$(post "$WORK/many.json")" "200"

# Hostile keys as Ceph sends them (raw), for a handler that writes each key it gets.
printf '%s\n' "../../../../tmp/s3hook-escape" "a/../../b" "./././x" "$(printf '/%.0s' $(seq 1024))" \
	"ünï/../../cödé" "dir/" >"$WORK/keys"
python3 "$TOP/tests/notify.py" "http://127.0.0.1:$PORT/" --bucket h --keys-from "$WORK/keys" \
	--prefix x >"$WORK/keys.out"
expect_eq "hostile keys accepted" "$(cat "$WORK/keys.out")" "ok=6 failed=0"
nl=$(printf '{"Records":[{"eventVersion":"2.2","eventSource":"ceph:s3","eventName":"ObjectRemoved:Delete","s3":{"bucket":{"name":"h"},"object":{"key":"new\\nline","size":0,"eTag":"","sequencer":"9"}}}]}')
expect_eq "a key with a newline: accepted" "$(curl -s -o /dev/null -w '%{http_code}' -d "$nl" "http://127.0.0.1:$PORT/")" "200"
nul='{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","eventName":"ObjectRemoved:Delete","s3":{"bucket":{"name":"h"},"object":{"key":"a%00b","sequencer":"1"}}}]}'
expect_eq "a key with %00: 400" "$(curl -s -o /dev/null -w '%{http_code}' -d "$nul" "http://127.0.0.1:$PORT/")" "400"

# 6 hostile keys, the newline key (two lines in the count file), "legit": n_many + 9 lines.
total=$((n_many + 9))
for i in $(seq 300); do [ "$(wc -l <"$COUNT_FILE")" -ge "$total" ] && break; sleep 0.2; done
expect_eq "every accepted event ran once" "$(wc -l <"$COUNT_FILE")" "$total"
grep -qF "../../../../tmp/s3hook-escape count" "$COUNT_FILE" || fail "the handler did not get the key as sent"
ok "handlers get hostile keys verbatim"
[ ! -e /tmp/s3hook-escape ] || fail "a key became a path outside the job's folder"
ok "no file written outside a job's folder"
left=$(job_leftovers "$WORK/work")
[ -z "$left" ] || fail "jobs left files behind: $left"

wait "$HEALTH"
read -r polls failures worst < <(sed 's/[a-z_]*=//g' "$WORK/health")
expect_eq "healthz on admin_listen never failed ($polls polls)" "$failures" "0"
[ "$worst" -lt 100 ] || fail "healthz on admin_listen took ${worst} ms at worst"
ok "healthz on admin_listen: ${worst} ms at worst"
