#!/usr/bin/env bash
# Operating `serve`: check-config's errors, /metrics (the text format, the figures, what a
# scrape costs), JSON logs with request ids and no secret, X-Request-Id, metering in
# `jobs` and `jobs --summary`, SIGHUP reload (a new handler gets jobs; a bad file is
# refused and the old config kept; restart keys named), sd_notify, and a serve whose keys
# come from a credential_process and expire every 4 seconds.
source "$(dirname "$0")/lib.sh"
B=$(new_bucket ops)
PORT=$(free_port)
APORT=$(free_port)
TOKEN="tok-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"
H="$TOP/tests/handlers"
export COUNT_FILE="$WORK/count"
: >"$COUNT_FILE"

# --- check-config: exit 1 and file:line: [section] key for a broken file ------------------------
ck() { "$S3HOOK" check-config "$@"; }
printf '[jobs]\nqueue = %s/q.db\n\nworkers = lots\n' "$WORK" >"$WORK/bad1.conf"
printf '[serve]\nlisten = 127.0.0.1:1\nlisten_twice = yes\n' >"$WORK/bad2.conf"
printf '[handler h]\nevents = s3:ObjectCreated:*\n' >"$WORK/bad3.conf"
for n in 1 2 3; do
	set +e; out=$(ck "$WORK/bad$n.conf" 2>&1); rc=$?; set -e
	expect_eq "check-config refuses bad$n.conf with exit 1" "$rc" "1"
	case $n in
	1) want="bad1\.conf:4: \[jobs\] workers" ;;
	2) want="bad2\.conf:3: .*listen_twice" ;;
	3) want="bad3\.conf:1: .*\[handler h\].*command" ;;
	esac
	expect_match "bad$n.conf: file:line: key" "$out" "$want"
done
set +e; ck "$WORK/missing.conf" >/dev/null 2>&1; rc=$?; set -e
expect_eq "check-config of a missing file: exit 1" "$rc" "1"

# --- a serve whose S3 keys come from a credential_process, valid 4 s at a time -------------------
mkdir -p "$HOME/.aws"
cat >"$WORK/cred" <<CRED
#!/bin/sh
echo run >>"$WORK/cred-count"
exp=\$(date -u -d @\$(( \$(date +%s) + 4 )) +%Y-%m-%dT%H:%M:%SZ)
printf '{"Version": 1, "AccessKeyId": "%s", "SecretAccessKey": "%s", "Expiration": "%s"}\n' \
	"$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" "\$exp"
CRED
chmod 700 "$WORK/cred"
printf '[default]\nregion = default\ncredential_process = %s\n' "$WORK/cred" >"$HOME/.aws/config"

CONF="$WORK/s3hook.conf"
write_conf() { # write_conf LISTEN_PORT EXTRA_SECTIONS (S3_RETRIES: [s3] retries, default 2)
	cat >"$CONF" <<CONF
[s3]
endpoint = $S3_ENDPOINT
retries = ${S3_RETRIES:-2}
retry_base = 50ms

[serve]
listen = 127.0.0.1:$1
admin_listen = 127.0.0.1:$APORT
auth_token = $TOKEN

[jobs]
queue = $WORK/queue.db
workdir = $WORK/work
workers = 2

[handler count]
bucket = $B
prefix = count/
command = $H/count
env = COUNT_FILE

[handler failing]
bucket = $B
prefix = fail/
command = $H/fail 1
max_attempts = 1

[handler hungry]
bucket = $B
prefix = mem/
command = python3 -c "x = b'x' * (96 << 20)"
$2
CONF
}
write_conf "$PORT" ""
ck "$CONF" >/dev/null || fail "check-config refuses the test configuration"
ok "check-config takes the test configuration"

# A stand-in for systemd's notify socket: every datagram, one per line.
python3 -c 'import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.bind(sys.argv[1])
with open(sys.argv[2], "a") as f:
    while True:
        f.write(s.recv(4096).decode().replace("\n", " ") + "\n"); f.flush()' \
	"$WORK/notify.sock" "$WORK/notify.log" &
CLEANUP_PIDS+=($!)
for i in $(seq 50); do [ -S "$WORK/notify.sock" ] && break; sleep 0.1; done

env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY NOTIFY_SOCKET="$WORK/notify.sock" \
	"$S3HOOK" serve -c "$CONF" --log-format json 2>"$WORK/serve.log" &
SERVE=$!
CLEANUP_PIDS+=("$SERVE")
for i in $(seq 100); do curl -sf "http://127.0.0.1:$APORT/healthz" >/dev/null && break; sleep 0.1; done
expect_eq "serve is up" "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$APORT/readyz")" "200"
"$TOP/scripts/local-s3" notify "$B" "http://127.0.0.1:$PORT/?token=$TOKEN" >/dev/null
T0=$(date +%s)

wait_for() {
	local what=$1 i
	shift
	for i in $(seq 150); do "$@" >/dev/null 2>&1 && { ok "$what"; return 0; }; sleep 0.2; done
	tail -n 20 "$WORK/serve.log" >&2
	fail "$what: not within 30 s"
}
s3h() { local cmd=$1; shift; "$S3HOOK" "$cmd" -c "$CONF" "$@"; }
echo hello >"$WORK/small.txt"
s3h upload --key count/a.txt "$WORK/small.txt" "s3://$B" >/dev/null
s3h upload --key fail/b.txt "$WORK/small.txt" "s3://$B" >/dev/null
wait_for "the count handler ran (S3 keys from credential_process)" grep -q "^count/a.txt count" "$COUNT_FILE"
wait_for "the failing job is dead" sh -c "'$S3HOOK' jobs -c '$CONF' --state dead | grep -q fail/b.txt"
# A peak above the daemon's own is measured as it is (below it only a bound is known).
s3h upload --key mem/m.txt "$WORK/small.txt" "s3://$B" >/dev/null
wait_for "the hungry handler ran" sh -c "'$S3HOOK' jobs -c '$CONF' --state done | grep -q mem/m.txt"
rss=$(s3h jobs --json --handler hungry | python3 -c 'import json, sys; print(json.loads(sys.stdin.readline())["max_rss_kib"])')
echo "# a handler that holds 96 MiB: max_rss_kib $rss"
[ "$rss" != None ] && [ "$rss" -gt $((96 << 10)) ] && [ "$rss" -lt $((160 << 10)) ] ||
	fail "peak RSS of a 96 MiB handler: $rss KiB"
ok "a large peak RSS is measured"
expect_match "systemd was told READY=1" "$(cat "$WORK/notify.log")" "READY=1"

# --- X-Request-Id, and the event's log line carries it -----------------------------------------
body='{"Records":[{"eventVersion":"2.2","eventSource":"ceph:s3","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"'$B'"},"object":{"key":"count/by-hand","size":5,"eTag":"x1","sequencer":"1"}}}]}'
rid=$(curl -s -D - -o /dev/null -d "$body" "http://127.0.0.1:$PORT/?token=$TOKEN" | tr -d '\r' |
	sed -n 's/^X-Request-Id: //Ip')
expect_match "a notification's answer carries X-Request-Id" "$rid" '^[0-9a-f]{16}$'
rid401=$(curl -s -D - -o /dev/null -d "$body" "http://127.0.0.1:$PORT/" | tr -d '\r' |
	sed -n 's/^X-Request-Id: //Ip')
expect_match "a 401 carries one too" "$rid401" '^[0-9a-f]{16}$'
[ "$rid" != "$rid401" ] || fail "two requests got the same id"
wait_for "the event line is logged" grep -q "\"request\":\"$rid\"" "$WORK/serve.log"
line=$(grep "\"request\":\"$rid\"" "$WORK/serve.log" | grep '"msg":"event"')
expect_match "the event line: request, status, bucket, key, handlers" "$line" \
	"\"status\":200.*\"bucket\":\"$B\",\"key\":\"count/by-hand\".*\"handlers\":\"count\""
expect_match "the refusal line carries its request id" "$(grep "\"request\":\"$rid401\"" "$WORK/serve.log")" '"reason":"auth"'

# The object of the notification made by hand does not exist: its job ends as gone.
wait_for "the job of the made-up event is gone" sh -c "'$S3HOOK' jobs -c '$CONF' --state gone | grep -q count/by-hand"

# --- /metrics -----------------------------------------------------------------------------------
sleep 1.1 # the queue's counts are read once a second
curl -s -D "$WORK/mh" "http://127.0.0.1:$APORT/metrics" >"$WORK/metrics"
expect_match "/metrics is the text format 0.0.4" "$(tr -d '\r' <"$WORK/mh")" "Content-Type: text/plain; version=0.0.4"
# The grammar: HELP/TYPE once per family, before its samples; names, labels, values;
# histogram buckets cumulative and the +Inf bucket equal to _count.
python3 - "$WORK/metrics" <<'PY' || fail "/metrics does not parse"
import re, sys
types, seen, hist = {}, set(), {}
sample = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*",?)*\})? (\S+)$')
for line in open(sys.argv[1]).read().splitlines():
    if line.startswith("# TYPE "):
        _, _, name, t = line.split(" ")
        assert name not in types, "TYPE twice: " + line
        assert t in ("counter", "gauge", "histogram", "summary", "untyped"), line
        types[name] = t
        continue
    if line.startswith("# HELP "):
        continue
    m = sample.match(line)
    assert m, "bad line: " + line
    name, labels, value = m.groups()
    fam = re.sub(r'_(bucket|sum|count)$', '', name)
    fam = fam if types.get(fam) == "histogram" else name
    assert fam in types, "sample before TYPE: " + line
    v = float(value)
    if types[fam] == "counter":
        assert v >= 0, line
    if name.endswith("_bucket"):
        key = re.sub(r',?le="[^"]*"', '', labels)
        le = re.search(r'le="([^"]*)"', labels).group(1)
        prev = hist.get(key, (-1, 0))[1]
        assert v >= prev, "buckets not cumulative: " + line
        hist[key] = (le, v)
    if name.endswith("_count") and types.get(fam) == "histogram":
        key = labels
        assert hist[key][0] == "+Inf" and hist[key][1] == v, "+Inf bucket != count: " + line
print("ok - parsed", len(types), "families")
PY
metric() { # metric 'NAME{LABELS}' -> its value
	awk -v m="$1" '$1 == m { print $2 }' "$WORK/metrics"
}
gt0() { awk -v v="$2" 'BEGIN { exit !(v + 0 > 0) }' || fail "$1 is '$2', not above 0"; ok "$1 > 0"; }
gt0 "notifications accepted" "$(metric s3hook_notifications_accepted_total)"
gt0 "rejected for auth" "$(metric 's3hook_notifications_rejected_total{reason="auth"}')"
expect_eq "count: done runs" "$(metric 's3hook_handler_runs_total{handler="count",outcome="done"}')" "1"
expect_eq "count: gone" "$(metric 's3hook_handler_runs_total{handler="count",outcome="gone"}')" "1"
expect_eq "failing: dead runs" "$(metric 's3hook_handler_runs_total{handler="failing",outcome="dead"}')" "1"
expect_eq "count: histogram count (gone did not run)" "$(metric 's3hook_handler_run_duration_seconds_count{handler="count"}')" "1"
gt0 "count: CPU seconds" "$(awk '$1 ~ /^s3hook_handler_cpu_seconds_total\{handler="count"/ { s += $2 } END { print s }' "$WORK/metrics")"
gt0 "S3 GetObject 2xx" "$(metric 's3hook_s3_requests_total{operation="GetObject",status="2xx"}')"
gt0 "S3 GetObject 4xx (the gone object)" "$(metric 's3hook_s3_requests_total{operation="GetObject",status="4xx"}')"
expect_eq "jobs done" "$(metric 's3hook_jobs{state="done"}')" "2"
expect_eq "jobs gone" "$(metric 's3hook_jobs{state="gone"}')" "1"
expect_eq "jobs dead" "$(metric 's3hook_jobs{state="dead"}')" "1"
expect_eq "queue depth" "$(metric s3hook_queue_depth)" "0"
gt0 "process RSS" "$(metric process_resident_memory_bytes)"
gt0 "process open fds" "$(metric process_open_fds)"
# What a scrape costs: wall time over one kept-alive connection, and the daemon's CPU.
cpu0=$(metric process_cpu_seconds_total)
per=$(python3 - "$APORT" <<'PY'
import http.client, sys, time
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]))
t = time.monotonic()
for _ in range(200):
    c.request("GET", "/metrics"); r = c.getresponse(); r.read(); assert r.status == 200
print(int((time.monotonic() - t) / 200 * 1e6))
PY
)
curl -s "http://127.0.0.1:$APORT/metrics" >"$WORK/metrics"
cpu=$(awk -v a="$cpu0" -v b="$(metric process_cpu_seconds_total)" 'BEGIN { printf "%d", (b - a) / 201 * 1e6 }')
echo "# a scrape: ${per} us wall, ${cpu} us of serve's CPU (200 in a row)"
[ "$per" -lt 20000 ] || fail "a scrape takes ${per} us"
ok "a scrape costs little"

# --- metering: jobs and jobs --summary ------------------------------------------------------------
expect_match "jobs shows wall, CPU and RSS" "$(s3h jobs --handler count)" \
	"done +count +1/5 +exit 0 +[0-9.]+m?s +[0-9.]+s +<?[0-9.]+[KMG] "
summary=$(s3h jobs --summary)
expect_match "jobs --summary: a line per handler" "$summary" \
	$'\ncount +2 +1 +0 +[0-9.]+ +[0-9.]+m?s +[0-9.]+m?s +<?[0-9.]+[KMG]'
expect_match "jobs --summary counts the failure" "$summary" $'\nfailing +1 +1 +1 '
s3h jobs --summary --json | python3 -c 'import json, sys
rows = {r["handler"]: r for r in map(json.loads, sys.stdin)}
c = rows["count"]
assert c["jobs"] == 2 and c["runs"] == 1 and c["failures"] == 0 and c["wall_p99_ms"] >= c["wall_p50_ms"] >= 0, c
assert (c["max_rss_kib"] or c["max_rss_below_kib"]) > 0, c' || fail "jobs --summary --json"
ok "jobs --summary --json"

# --- SIGHUP: a new handler gets jobs; restart keys are named -------------------------------------
S3_RETRIES=3 write_conf "$(free_port)" "
[handler late]
bucket = $B
prefix = late/
command = $H/count
env = COUNT_FILE"
kill -HUP "$SERVE"
wait_for "reloaded" grep -q '"msg":"configuration reloaded"' "$WORK/serve.log"
expect_match "the restart keys are named" "$(grep '"msg":"configuration reloaded"' "$WORK/serve.log")" \
	'"needs_restart":"\[serve\] listen, \[s3\]"'
s3h upload --key late/c.txt "$WORK/small.txt" "s3://$B" >/dev/null
wait_for "the handler added by SIGHUP ran" grep -q "^late/c.txt late" "$COUNT_FILE"
expect_match "systemd was told RELOADING=1 then READY=1" "$(tr '\n' ' ' <"$WORK/notify.log")" "RELOADING=1 .*READY=1"

# --- SIGHUP with a bad file: refused, logged with file:line, the old config keeps working --------
cp "$CONF" "$WORK/good.conf"
sed -i 's/^workers = 2$/workers = many/' "$CONF"
kill -HUP "$SERVE"
wait_for "the bad file is refused" grep -q '"msg":"configuration not reloaded; the old one stays"' "$WORK/serve.log"
expect_match "the error names file, line and key" \
	"$(grep '"msg":"configuration not reloaded' "$WORK/serve.log")" 's3hook.conf:[0-9]+: \[jobs\] workers'
s3h upload --key late/d.txt "$WORK/small.txt" "s3://$B" >/dev/null
wait_for "jobs still flow under the old config" grep -q "^late/d.txt late" "$COUNT_FILE"
cp "$WORK/good.conf" "$CONF"

# --- the credential_process ran again as its keys neared expiry, not once per request -----------
while [ $(( $(date +%s) - T0 )) -lt 6 ]; do sleep 0.5; done
s3h upload --key count/e.txt "$WORK/small.txt" "s3://$B" >/dev/null
wait_for "a job after the first keys expired" grep -q "^count/e.txt count" "$COUNT_FILE"
runs=$(wc -l <"$WORK/cred-count")
elapsed=$(( $(date +%s) - T0 ))
echo "# credential_process ran $runs times in ${elapsed} s"
[ "$runs" -ge 2 ] || fail "credential_process ran $runs times: keys never refreshed"
[ "$runs" -le $(( elapsed / 2 + 3 )) ] || fail "credential_process ran $runs times in $elapsed s"
ok "credentials refreshed before they expired"
curl -s "http://127.0.0.1:$APORT/metrics" >"$WORK/metrics"
gt0 "credential refreshes in the metrics" "$(metric 's3hook_s3_credential_refreshes_total{result="ok"}')"

# --- logs: JSON lines, the job lines complete, no secret -----------------------------------------
kill -TERM "$SERVE"
set +e; wait "$SERVE"; rc=$?; set -e
expect_eq "serve exits 0 on SIGTERM" "$rc" "0"
expect_match "systemd was told STOPPING=1" "$(cat "$WORK/notify.log")" "STOPPING=1"
python3 - "$WORK/serve.log" <<'PY' || fail "the JSON log"
import json, sys
jobs = 0
for n, line in enumerate(open(sys.argv[1], "rb"), 1):
    r = json.loads(line)
    assert {"ts", "level", "msg"} <= r.keys(), line
    if r["msg"] == "job ended":
        jobs += 1
        need = {"job", "handler", "bucket", "key", "attempt", "outcome", "ms", "cpu_ms", "rss_kib"}
        assert need <= r.keys(), line
    if r["msg"] == "event":
        assert {"request", "status", "bucket", "key", "handlers"} <= r.keys(), line
assert jobs >= 6, jobs
print("ok - %d JSON lines, %d job lines" % (n, jobs))
PY
for secret in "$TOKEN" "$AWS_SECRET_ACCESS_KEY"; do
	grep -qF "$secret" "$WORK/serve.log" && fail "a secret is in the log"
done
ok "no secret in the log"
