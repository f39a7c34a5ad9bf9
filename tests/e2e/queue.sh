#!/usr/bin/env bash
# The queue's disk misbehaving under a running serve: full (a small tmpfs), read-only (a
# remount), the file deleted. serve answers 503 and loses nothing; /healthz says so; it
# recovers when space returns. Runs in a private mount namespace of its own.
if [ -z "${S3HOOK_IN_MOUNT_NS:-}" ]; then
	exec unshare -m --propagation private env S3HOOK_IN_MOUNT_NS=1 bash "$0" "$@"
fi
source "$(dirname "$0")/lib.sh"
PORT=$(free_port)
APORT=$(free_port)
H="$TOP/tests/handlers"
export COUNT_FILE="$WORK/count"
: >"$COUNT_FILE"
mkdir "$WORK/q"
mount -t tmpfs -o size=16m tmpfs "$WORK/q"
CLEANUP_MOUNT="$WORK/q"
CONF="$WORK/s3hook.conf"
cat >"$CONF" <<CONF
[s3]
endpoint = $S3_ENDPOINT
region = default
[serve]
listen = 127.0.0.1:$PORT
admin_listen = 127.0.0.1:$APORT
auth_token = none
[jobs]
queue = $WORK/q/queue.db
workdir = $WORK/work
workers = 2
[handler count]
events = s3:ObjectRemoved:*
command = $H/count
env = COUNT_FILE
CONF
"$S3HOOK" serve -c "$CONF" 2>"$WORK/serve.log" &
SERVE=$!
CLEANUP_PIDS+=("$SERVE")
for i in $(seq 100); do curl -sf "http://127.0.0.1:$APORT/healthz" >/dev/null && break; sleep 0.1; done
health() { curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$APORT/healthz"; }
notify() { python3 "$TOP/tests/notify.py" "http://127.0.0.1:$PORT/" --bucket q --count "$2" --prefix "$1" \
	--concurrency 2 --ok-log "$WORK/acked" "${@:3}"; }
: >"$WORK/acked"

expect_eq "before: 200s" "$(notify a/ 50)" "ok=50 failed=0"

# --- disk full: 503, nothing lost, recovers when space returns ---------------------------------
dd if=/dev/zero of="$WORK/q/filler" bs=64k 2>/dev/null || true
out=$(notify b/ 100)
expect_match "disk full: notifications refused" "$out" "failed=[1-9]"
sleep 0.6
expect_eq "disk full: healthz fails" "$(health)" "503"
code=$(curl -s -D "$WORK/headers" -o /dev/null -w '%{http_code}' -d '{"Records":[{"eventVersion":"2.2","eventSource":"ceph:s3","eventName":"ObjectRemoved:Delete","s3":{"bucket":{"name":"q"},"object":{"key":"c/1","size":0,"eTag":"","sequencer":"1"}}}]}' "http://127.0.0.1:$PORT/")
expect_eq "disk full: 503" "$code" "503"
grep -qi '^Retry-After:' "$WORK/headers" || fail "the 503 has no Retry-After"
ok "the 503 says Retry-After"
grep -q "disk is full" "$WORK/serve.log" || fail "the log does not say the disk is full"
ok "the log says the disk is full"
rm "$WORK/q/filler"
sleep 1.2
expect_eq "space back: healthz passes" "$(health)" "200"
expect_eq "space back: 200s again" "$(notify d/ 50 --retry 10)" "ok=50 failed=0"

for i in $(seq 150); do
	[ "$(sort -u "$WORK/acked" | comm -23 - <(cut -d' ' -f1 "$COUNT_FILE" | sort -u) | wc -l)" = 0 ] && break
	sleep 0.2
done
expect_eq "every acknowledged notification ran" "$(sort -u "$WORK/acked" | comm -23 - <(cut -d' ' -f1 "$COUNT_FILE" | sort -u) | wc -l)" "0"

# --- read-only: serve refuses to start on it, with a clear error ---------------------------------
# (A mount with writers cannot be remounted read-only; the unit tests cover a queue that turns
# read-only under an open connection, through a read-only bind mount.)
kill "$SERVE"; wait "$SERVE" 2>/dev/null || true
mount -o remount,ro "$WORK/q"
set +e
err=$("$S3HOOK" serve -c "$CONF" 2>&1); rc=$?
set -e
expect_eq "read-only queue: serve exits 1" "$rc" "1"
expect_match "read-only queue: a clear error" "$err" "queue '.*queue.db'.*(read-only|Read-only)"
mount -o remount,rw "$WORK/q"
"$S3HOOK" serve -c "$CONF" 2>>"$WORK/serve.log" &
SERVE=$!
CLEANUP_PIDS+=("$SERVE")
for i in $(seq 100); do curl -sf "http://127.0.0.1:$APORT/healthz" >/dev/null && break; sleep 0.1; done
expect_eq "writable again: healthz passes" "$(health)" "200"
expect_eq "writable again: 200s" "$(notify f/ 5 --retry 10)" "ok=5 failed=0"

# --- the queue file deleted: a clear error, healthz fails, nothing acknowledged into it ---------
rm "$WORK/q/queue.db"
sleep 0.6
expect_eq "deleted: healthz fails" "$(health)" "503"
expect_match "deleted: notifications refused" "$(notify g/ 5)" "ok=0 failed=5"
grep -qE "queue .*(deleted|replaced|no longer)" "$WORK/serve.log" || { tail -5 "$WORK/serve.log" >&2; fail "the log does not say the queue file is gone"; }
ok "the log says the queue file is gone"
kill "$SERVE"; wait "$SERVE" 2>/dev/null || true
umount "$WORK/q"
