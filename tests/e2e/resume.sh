#!/usr/bin/env bash
# Multipart uploads that are interrupted: aborted on the server, or kept and resumed.
# A throttling proxy slows the upload down so it can be stopped half-way on cue.
source "$(dirname "$0")/lib.sh"
B=$(new_bucket resume)
PORT=$(free_port)
RULES="$WORK/rules.json"
echo '{"rate": 2097152}' >"$RULES"
start_proxy "$PORT" "$RULES" "$WORK/proxy.log"
CONF="$WORK/s3hook.conf"
printf '[s3]\nendpoint = http://127.0.0.1:%s\nregion = default\nretries = 3\nretry_base = 20ms\n' "$PORT" >"$CONF"
SLOW=(-c "$CONF")
head -c $((30 * 1024 * 1024)) /dev/urandom >"$WORK/big.bin"
ARGS=(--multipart-threshold 5MiB --part-size 5MiB -j 1 --json "$WORK/big.bin" "s3://$B/r/")

uploads() { aws_ s3api list-multipart-uploads --bucket "$B" --query 'length(Uploads || `[]`)' --output text; }

# parts_done UPLOAD_ID KEY: parts the server has for an upload
parts_done() { aws_ s3api list-parts --bucket "$B" --key "$2" --upload-id "$1" --query 'length(Parts || `[]`)' --output text 2>/dev/null || echo 0; }

# --- Ctrl-C without --resume: the upload is aborted on the server ----------------------------
"$S3HOOK" upload "${SLOW[@]}" "${ARGS[@]}" >"$WORK/out1" 2>"$WORK/err1" &
pid=$!
for i in $(seq 100); do [ "$(uploads)" = "1" ] && break; sleep 0.1; done
expect_eq "a multipart upload is in progress" "$(uploads)" "1"
kill -INT "$pid"
set +e; wait "$pid"; rc=$?; set -e
expect_eq "interrupted upload exits 1" "$rc" "1"
expect_match "says it was interrupted" "$(cat "$WORK/err1")" "interrupted"
expect_eq "the server-side upload was aborted" "$(uploads)" "0"

# --- SIGKILL with --resume, then the same command again continues it -------------------------
"$S3HOOK" upload --resume "${SLOW[@]}" "${ARGS[@]}" >"$WORK/out2" 2>"$WORK/err2" &
pid=$!
state=""
for i in $(seq 100); do state=$(ls "$XDG_STATE_HOME"/s3hook/*.json 2>/dev/null | head -n 1) && [ -n "$state" ] && break; sleep 0.1; done
[ -n "$state" ] || fail "no resume state file appeared"
id=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["upload_id"])' "$state")
key=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["key"])' "$state")
for i in $(seq 200); do [ "$(parts_done "$id" "$key")" -ge 2 ] && break; sleep 0.1; done
kill -KILL "$pid"
wait "$pid" 2>/dev/null || true
before=$(parts_done "$id" "$key")
[ "$before" -ge 2 ] && [ "$before" -lt 6 ] || fail "killed with $before parts done, want 2 to 5"
ok "killed half-way, with $before of 6 parts on the server"
echo '{}' >"$RULES" # full speed from here on
: >"$WORK/proxy.log"
out=$("$S3HOOK" upload --resume "${SLOW[@]}" "${ARGS[@]}")
resumed=$(python3 -c 'import json,sys; j=json.loads(sys.argv[1]); print(j["resumed"], j["key"])' "$out")
expect_eq "the second run resumed the same upload" "$resumed" "True $key"
# Distinct parts that went through (a part retried after a hiccup counts once).
sent=$(grep -o "partNumber=[0-9]*&.* -> 200" "$WORK/proxy.log" | cut -d'&' -f1 | sort -u | wc -l)
expect_eq "only the missing parts were sent" "$sent" "$((6 - before))"
aws_ s3 cp "s3://$B/$key" "$WORK/back" >/dev/null
expect_file_eq "the resumed upload is byte-identical" "$WORK/big.bin" "$WORK/back"
[ ! -e "$state" ] || fail "the state file was left behind"
ok "the state file is gone"
expect_eq "no multipart upload left on the server" "$(uploads)" "0"

# --- 503 SlowDown and a reset connection on parts: retried, upload completes ---------------------
cat >"$RULES" <<'R'
{"faults": [{"method": "PUT", "path": "partNumber=2", "status": 503, "times": 2},
            {"method": "PUT", "path": "partNumber=4", "reset": true, "times": 1}]}
R
: >"$WORK/proxy.log"
out=$("$S3HOOK" upload "${SLOW[@]}" "${ARGS[@]}")
key=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["key"])' "$out")
expect_eq "two 503s on part 2 were retried" "$(grep -c 'partNumber=2&.* -> 503' "$WORK/proxy.log")" "2"
expect_eq "a reset on part 4 was retried" "$(grep -c 'partNumber=4&.* -> reset' "$WORK/proxy.log")" "1"
aws_ s3 cp "s3://$B/$key" "$WORK/back2" >/dev/null
expect_file_eq "the upload through faults is byte-identical" "$WORK/big.bin" "$WORK/back2"

# --- 503 on every attempt: a clear error, the upload aborted ---------------------------------
echo '{"faults": [{"method": "PUT", "path": "partNumber=3", "status": 503}]}' >"$RULES"
set +e
err=$("$S3HOOK" upload "${SLOW[@]}" "${ARGS[@]}" 2>&1 >/dev/null); rc=$?
set -e
expect_eq "persistent 503 exits 1" "$rc" "1"
expect_match "persistent 503 names SlowDown" "$err" "SlowDown \(HTTP 503\)"
expect_eq "the failed upload was aborted" "$(uploads)" "0"
