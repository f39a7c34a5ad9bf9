#!/usr/bin/env bash
# s3hook serve end to end: real notifications from the local Ceph RGW, the built-in
# handlers, retries and dead jobs, timeouts, the listener's answers, dedupe, superseded
# objects, loop guards and max_depth.
source "$(dirname "$0")/lib.sh"
B=$(new_bucket serve)
PORT=$(free_port)
APORT=$(free_port)
TOKEN="tok-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"
H="$TOP/tests/handlers"
export COUNT_FILE="$WORK/count"
: >"$COUNT_FILE"
CONF="$WORK/s3hook.conf"
cat >"$CONF" <<CONF
[s3]
endpoint = $S3_ENDPOINT
region = default
retries = 2
retry_base = 50ms

[serve]
listen = 127.0.0.1:$PORT
admin_listen = 127.0.0.1:$APORT
auth_token = $TOKEN
body_limit = 64KiB

[jobs]
queue = $WORK/queue.db
workdir = $WORK/work
workers = 3
lease = 5s
max_depth = 2

[handler thumbnail]
bucket = $B
prefix = photos/
suffix = .jpg
command = thumbnail --size 64
output = s3://{bucket}/{key}.thumb.jpg

[handler text]
bucket = $B
suffix = .pdf
command = extract-text
output = s3://{bucket}/text/{key}.txt

[handler failing]
prefix = fail/
command = $H/fail 1
max_attempts = 3
backoff = 100ms
backoff_max = 200ms

[handler hanging]
prefix = hang/
command = $H/hang
timeout = 1s
grace = 300ms
max_attempts = 1

[handler count]
events = s3:ObjectRemoved:*
prefix = count/
command = $H/count
env = COUNT_FILE

[handler a]
prefix = chain/
suffix = .a
command = $H/copy out
output = s3://{bucket}/{key}.b

[handler b]
prefix = chain/
suffix = .b
command = $H/copy out
output = s3://{bucket}/{key}.a
CONF
s3h() { local cmd=$1; shift; "$S3HOOK" "$cmd" -c "$CONF" "$@"; }
"$S3HOOK" check-config -c "$CONF" >/dev/null || fail "check-config refuses the test configuration"

"$S3HOOK" serve -c "$CONF" 2>"$WORK/serve.log" &
SERVE=$!
CLEANUP_PIDS+=("$SERVE")
for i in $(seq 100); do curl -sf "http://127.0.0.1:$APORT/healthz" >/dev/null && break; sleep 0.1; done
expect_eq "healthz on admin_listen" "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$APORT/healthz")" "200"
expect_eq "healthz on listen" "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/healthz")" "200"
"$TOP/scripts/local-s3" notify "$B" "http://127.0.0.1:$PORT/?token=$TOKEN" >/dev/null

# wait_for DESCRIPTION COMMAND...: polls until the command succeeds (30 s at most).
wait_for() {
	local what=$1 i
	shift
	for i in $(seq 150); do "$@" >/dev/null 2>&1 && { ok "$what"; return 0; }; sleep 0.2; done
	tail -n 30 "$WORK/serve.log" >&2
	fail "$what: not within 30 s"
}
jobs_json() { s3h jobs --json --limit 0 "$@"; }
count_jobs() { jobs_json "$@" | wc -l; }
# job_is KEY STATE: whether the job of KEY is in STATE now.
job_is() { [ "$(job_field "$1" state --state "$2")" = "$2" ]; }
job_field() { jobs_json "${@:3}" | python3 -c 'import json,sys
for l in sys.stdin:
    j=json.loads(l)
    if j["key"]==sys.argv[1]: print(j[sys.argv[2]]); break' "$1" "$2"; }

# --- JPEG -> thumbnail, PDF -> text, through real RGW notifications -------------------------
vips black "$WORK/cat.jpg" 800 600
s3h upload --key "photos/a cat.jpg" "$WORK/cat.jpg" "s3://$B" >/dev/null
# The normal topic pushes inside the PUT: the job is on disk when the PUT returns.
expect_eq "the job is durable when the PUT returns" "$(count_jobs --handler thumbnail)" "1"
wait_for "thumbnail made" s3h get "s3://$B/photos/a cat.jpg.thumb.jpg" "$WORK/thumb.jpg"
expect_match "thumbnail is a 64 px JPEG" "$(vipsheader "$WORK/thumb.jpg")" "64x48 .*jpegload"
meta=$(aws_ s3api head-object --bucket "$B" --key "photos/a cat.jpg.thumb.jpg" --query Metadata --output json)
expect_match "outputs carry s3hook-handler" "$meta" '"s3hook-handler": "thumbnail"'
expect_match "outputs carry s3hook-depth" "$meta" '"s3hook-depth": "1"'
expect_match "outputs carry s3hook-source" "$meta" '"s3hook-source": "'"$B"'/photos/a%20cat.jpg"'
"$TOP/scripts/sample-pdf" "$WORK/doc.pdf" "Hello from a PDF"
s3h upload --key "docs/report.pdf" "$WORK/doc.pdf" "s3://$B" >/dev/null
wait_for "text extracted" s3h get "s3://$B/text/docs/report.pdf.txt" "$WORK/text.txt"
expect_match "the PDF's text" "$(cat "$WORK/text.txt")" "Hello from a PDF"

# --- a thumbnail in the same bucket does not trigger the thumbnail handler again ----------------
sleep 1
expect_eq "no job for the handler's own output" "$(count_jobs --handler thumbnail)" "1"

# --- exit 1: retried, then dead, shown by jobs --state dead ------------------------------------
s3h upload --key "fail/x.bin" "$WORK/doc.pdf" "s3://$B" >/dev/null
wait_for "failing job dead" job_is fail/x.bin dead
expect_eq "dead after max_attempts" "$(job_field fail/x.bin attempts --state dead)" "3"
expect_eq "exit code stored" "$(job_field fail/x.bin exit_code --state dead)" "1"
expect_match "stderr tail stored" "$(job_field fail/x.bin stderr_tail --state dead)" "giving up on fail/x.bin"
expect_match "jobs --state dead shows it" "$(s3h jobs --state dead)" "dead +failing +3/3 +exit 1 .*fail/x.bin"

# --- a hanging handler is killed at its timeout, with its grandchild ---------------------------
start=$(date +%s)
s3h upload --key "hang/y.bin" "$WORK/doc.pdf" "s3://$B" >/dev/null
wait_for "hanging job dead" job_is hang/y.bin dead
expect_eq "killed by SIGTERM" "$(job_field hang/y.bin signal --state dead)" "15"
[ $(( $(date +%s) - start )) -lt 10 ] || fail "the timeout took too long"
pgrep -f "$H/hang" >/dev/null && fail "the hanging handler (or its grandchild) is still running"
ok "no process of the hanging handler is left"

# --- the listener's answers: nothing stored for a bad request -----------------------------------
before=$(count_jobs)
body='{"Records":[{"eventVersion":"2.2","eventSource":"ceph:s3","eventName":"ObjectRemoved:Delete","s3":{"bucket":{"name":"'$B'"},"object":{"key":"count/one","size":0,"eTag":"","sequencer":"1"}}}]}'
code() { curl -s -o "$WORK/answer" -w '%{http_code}' "$@"; }
expect_eq "no token: 401" "$(code -d "$body" "http://127.0.0.1:$PORT/")" "401"
expect_eq "wrong token: 401" "$(code -d "$body" -H "Authorization: Bearer nope" "http://127.0.0.1:$PORT/")" "401"
expect_eq "malformed JSON: 400" "$(code -d '{"Records":[' "http://127.0.0.1:$PORT/?token=$TOKEN")" "400"
expect_match "400 says why in JSON" "$(cat "$WORK/answer")" '^\{"error":'
head -c 100000 /dev/zero | tr '\0' ' ' >"$WORK/big.json"
expect_eq "oversize: 413" "$(code --data-binary @"$WORK/big.json" "http://127.0.0.1:$PORT/?token=$TOKEN")" "413"
expect_eq "GET /: 405" "$(code "http://127.0.0.1:$PORT/")" "405"
nul='{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"'$B'"},"object":{"key":"a%00b","size":1,"eTag":"x"}}}]}'
expect_eq "a key that decodes to NUL: 400" "$(code -d "$nul" "http://127.0.0.1:$PORT/?token=$TOKEN")" "400"
expect_eq "nothing stored for any of them" "$(count_jobs)" "$before"

# --- the same notification twice: one job, one run ------------------------------------------------
expect_eq "first delivery: 200" "$(code -d "$body" -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/")" "200"
expect_eq "second delivery: 200" "$(code -d "$body" "http://127.0.0.1:$PORT/?token=$TOKEN")" "200"
wait_for "the count handler ran" grep -q "count/one" "$COUNT_FILE"
sleep 1
expect_eq "it ran once" "$(grep -c "^count/one " "$COUNT_FILE")" "1"

# --- an object overwritten before its job ran: superseded; the new version is processed ---------
old_etag=$(aws_ s3api head-object --bucket "$B" --key "photos/a cat.jpg" --query ETag --output text | tr -d '"')
vips black "$WORK/cat2.jpg" 400 400
s3h upload --key "photos/b.jpg" "$WORK/cat2.jpg" "s3://$B" >/dev/null
wait_for "second thumbnail" s3h get "s3://$B/photos/b.jpg.thumb.jpg" "$WORK/thumb2.jpg"
echo "photos/b.jpg" >"$WORK/stale-key"
python3 "$TOP/tests/notify.py" "http://127.0.0.1:$PORT/?token=$TOKEN" --bucket "$B" \
	--keys-from "$WORK/stale-key" --event ObjectCreated:Put --etag "$old_etag" >/dev/null
wait_for "stale event superseded" sh -c "'$S3HOOK' jobs -c '$CONF' --state superseded | grep -q 'photos/b.jpg'"

# --- A -> B -> A stops at max_depth ---------------------------------------------------------------
echo chain >"$WORK/x"
s3h upload --key "chain/x.a" "$WORK/x" "s3://$B" >/dev/null
wait_for "the chain reached max_depth" sh -c "'$S3HOOK' jobs -c '$CONF' --state skipped | grep -q 'chain/x.a.b.a.b'"
sleep 1
n=$(s3h ls "s3://$B/chain/" | wc -l)
expect_eq "x.a, .b, .b.a, .b.a.b and no more" "$n" "4"
expect_match "skipped for max_depth" "$(s3h jobs --state skipped)" "max_depth"

# --- SIGTERM drains and exits 0 ----------------------------------------------------------------------
kill -TERM "$SERVE"
set +e; wait "$SERVE"; rc=$?; set -e
expect_eq "serve exits 0 on SIGTERM" "$rc" "0"
[ -z "$(ls -A "$WORK/work")" ] || fail "workers' folders outlived serve: $(ls "$WORK/work")"
ok "serve removes its workers' folders when it stops"
grep -q "$TOKEN" "$WORK/serve.log" && fail "the token appears in the log"
ok "the token is never logged"
