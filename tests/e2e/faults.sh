#!/usr/bin/env bash
# Faults, injected end to end: S3 down or stalling during the GET and during the output PUT
# (through the fault proxy), and handlers that misbehave. Every job must end right, no
# worker may hang, and nothing outside a job's output folder is ever uploaded.
source "$(dirname "$0")/lib.sh"
B=$(new_bucket faults)
PORT=$(free_port)
PROXY=$(free_port)
RULES="$WORK/rules.json"
echo '{}' >"$RULES"
start_proxy "$PROXY" "$RULES" "$WORK/proxy.log"
H="$TOP/tests/handlers"
CONF="$WORK/s3hook.conf"
cat >"$CONF" <<CONF
[s3]
endpoint = http://127.0.0.1:$PROXY
region = default
retries = 1
retry_base = 20ms
stall_timeout = 2s
[serve]
listen = 127.0.0.1:$PORT
admin_listen =
auth_token = none
[jobs]
queue = $WORK/queue.db
workdir = $WORK/work
workers = 2
[handler copy]
prefix = in/
command = $H/copy out.bin
output = s3://{bucket}/out/{key}
backoff = 300ms
backoff_max = 1s
max_attempts = 40
[handler misbehave]
prefix = bad/
command = $H/misbehave {name}
timeout = 20s
output = s3://{bucket}/bad-out/{name}/{file}
max_attempts = 1
CONF
# The command takes the mode from the key's name: bad/<mode>.
sed -i "s|command = $H/misbehave {name}|command = $H/misbehave-by-key|" "$CONF"
cat >"$WORK/misbehave-by-key" <<SH
#!/bin/sh
exec "$H/misbehave" "\${S3HOOK_KEY#bad/}"
SH
chmod +x "$WORK/misbehave-by-key"
sed -i "s|command = $H/misbehave-by-key|command = $WORK/misbehave-by-key|" "$CONF"
s3h() { local cmd=$1; shift; "$S3HOOK" "$cmd" -c "$CONF" "$@"; }
"$S3HOOK" serve -c "$CONF" 2>"$WORK/serve.log" &
SERVE=$!
CLEANUP_PIDS+=("$SERVE")
for i in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done

state_of() { s3h jobs --json --limit 0 | python3 -c 'import json,sys
for l in sys.stdin:
    j=json.loads(l)
    if j["key"]==sys.argv[1]: print(j["state"]); break' "$1"; }
wait_state() { # KEY STATE [SECONDS]
	local i
	for i in $(seq $((${3:-30} * 5))); do [ "$(state_of "$1")" = "$2" ] && { ok "$1 is $2"; return 0; }; sleep 0.2; done
	s3h jobs --limit 0 >&2; tail -n 20 "$WORK/serve.log" >&2
	fail "$1 did not become $2 (it is '$(state_of "$1")')"
}
post() { # KEY: the notification RGW would send for an object uploaded under KEY
	local etag
	etag=$(aws_ s3api head-object --bucket "$B" --key "$1" --query ETag --output text | tr -d '"')
	echo "$1" >"$WORK/key"
	python3 "$TOP/tests/notify.py" "http://127.0.0.1:$PORT/" --bucket "$B" --keys-from "$WORK/key" \
		--event ObjectCreated:Put --etag "$etag" >/dev/null
}
head -c 300000 /dev/urandom >"$WORK/obj"

# --- S3 answers 503 to the GET for a while: retried until it comes back --------------------
aws_ s3 cp "$WORK/obj" "s3://$B/in/a" >/dev/null
echo '{"faults": [{"method": "GET", "path": "/in/a", "status": 503}]}' >"$RULES"
post in/a
sleep 2
expect_match "while S3 fails the GET, the job is retried" "$(state_of in/a)" "^(retry|running)$"
echo '{}' >"$RULES"
wait_state in/a done
s3h get "s3://$B/out/in/a" "$WORK/a.out"
expect_file_eq "output after S3 came back" "$WORK/obj" "$WORK/a.out"

# --- S3 fails the output PUT: retried, nothing half-done ---------------------------------------
aws_ s3 cp "$WORK/obj" "s3://$B/in/b" >/dev/null
echo '{"faults": [{"method": "PUT", "path": "/out/in/b", "status": 500, "times": 3}]}' >"$RULES"
post in/b
wait_state in/b done
expect_eq "the output PUT failed 3 times first" "$(grep -c 'PUT /'"$B"'/out/in/b -> 500' "$WORK/proxy.log")" "3"
s3h get "s3://$B/out/in/b" "$WORK/b.out"
expect_file_eq "output after the PUT came back" "$WORK/obj" "$WORK/b.out"

# --- a GET that stalls mid-body times out; the worker is not held --------------------------------
aws_ s3 cp "$WORK/obj" "s3://$B/in/c" >/dev/null
echo '{"faults": [{"method": "GET", "path": "/in/c", "stall": 60, "times": 2}]}' >"$RULES"
start=$(date +%s)
post in/c
wait_state in/c done 40
took=$(( $(date +%s) - start ))
[ "$took" -lt 30 ] || fail "a stalled GET held the job for ${took}s"
ok "two stalled GETs cost ${took}s, then the job ran"

# --- handlers that misbehave ------------------------------------------------------------------------
# Its output folder swapped for a symlink to /etc: nothing from /etc is uploaded, the job fails,
# and the jobs after it (the five below may run in the same worker) get a sound folder.
aws_ s3 cp "$WORK/obj" "s3://$B/bad/swapout" >/dev/null
post bad/swapout
wait_state bad/swapout dead
expect_eq "nothing uploaded through a swapped output folder" "$(s3h ls "s3://$B/bad-out/swapout/" | wc -l)" "0"
expect_match "the swapped folder is the error" "$(s3h jobs --state dead)" "no longer a folder"
for mode in flood closeout escape symlink orphan; do
	aws_ s3 cp "$WORK/obj" "s3://$B/bad/$mode" >/dev/null
	post "bad/$mode"
done
start=$(date +%s)
for mode in flood closeout escape symlink orphan; do wait_state "bad/$mode" done 60; done
ok "all five ended in $(( $(date +%s) - start ))s"
tail=$(s3h jobs --json --limit 0 | python3 -c 'import json,sys
for l in sys.stdin:
    j=json.loads(l)
    if j["key"]=="bad/flood": print(len(j["stderr_tail"]))')
[ "$tail" -gt 0 ] && [ "$tail" -le 65536 ] || fail "1 GiB of stderr kept $tail bytes"
ok "1 GiB of stderr: $tail bytes kept"
listing=$(s3h ls "s3://$B/bad-out/")
expect_match "the good outputs were uploaded" "$listing" "bad-out/escape/good.txt"
[[ "$listing" != *escaped* ]] || fail "a file written outside the output folder was uploaded"
ok "nothing from outside the output folder"
[[ "$listing" != *passwd* ]] || fail "a symlink to /etc/passwd was uploaded"
ok "the symlink to /etc/passwd was not uploaded"
# Its own pid, from the job's stdout: a "sleep 300" elsewhere on the machine is not ours.
orphan=$(s3h jobs --json --limit 0 | python3 -c 'import json,sys
for l in sys.stdin:
    j=json.loads(l)
    if j["key"]=="bad/orphan": print(j["stdout_tail"].split()[-1])')
[[ "$orphan" =~ ^[0-9]+$ ]] || fail "the orphan did not report its grandchild: '$orphan'"
state=$(awk '{print $3}' "/proc/$orphan/stat" 2>/dev/null || true)
[ -z "$state" ] || [ "$state" = Z ] || fail "the orphan's grandchild $orphan outlived it (state $state)"
ok "the grandchild was killed with the group"
left=$(job_leftovers "$WORK/work")
[ -z "$left" ] || fail "jobs left files behind: $left"
ok "no job left anything in its folder"
