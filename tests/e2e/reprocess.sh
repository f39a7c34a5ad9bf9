#!/usr/bin/env bash
# s3hook reprocess end to end: 2,500 objects over three listing pages (keys that are prefixes of
# other keys on a page boundary), checked against awscli's listing; every object processed once;
# prefix, --suffix and --since; --dry-run; a second run skips everything; SIGKILL mid-listing
# then a re-run; a listing that fails on page 2 (exit 3) and resumes; --manifest with URL-encoded
# keys; the completion report; a handler that fails for some objects (exit 1).
source "$(dirname "$0")/lib.sh"
export LC_ALL=C
B=$(new_bucket reprocess)
B2=$(new_bucket reprocess-mixed)
# new_bucket ran in a subshell ($(...)), where its BUCKETS+= is lost: register them here.
BUCKETS+=("$B" "$B2")
H="$TOP/tests/handlers"
export COUNT_FILE="$WORK/count"
: >"$COUNT_FILE"
WORKERS=2

# conf FILE QUEUE [ENDPOINT]
conf() {
	cat >"$1" <<CONF
[s3]
endpoint = ${3:-$S3_ENDPOINT}
region = default
retries = 1
retry_base = 20ms
[jobs]
queue = $2
workdir = $WORK/work
workers = $WORKERS
lease = 5s
[handler count]
bucket = $B
command = $H/count
env = COUNT_FILE
download = false
[handler ok]
bucket = $B2
prefix = good/
command = $H/count
env = COUNT_FILE
download = false
[handler failing]
bucket = $B2
prefix = bad/
command = $H/fail 65
download = false
CONF
}
conf "$WORK/a.conf" "$WORK/a.db"
conf "$WORK/b.conf" "$WORK/b.db"
rp() { local c=$1; shift; "$S3HOOK" reprocess -c "$WORK/$c.conf" "$@"; }
count_jobs() { "$S3HOOK" jobs -c "$WORK/$1.conf" --json --limit 0 | wc -l; }
keys_counted() { cut -d' ' -f1 "$COUNT_FILE" | sort; }

# --- 2,500 objects -----------------------------------------------------------------------------
# 2,490 under bulk/<uuid>/ (s3hook upload names them so); then a, a-1, a.1, a/x and a0 appended
# to the 999th key K, so that K+"a" is the 1,000th and ends page 1 when the server fills its
# pages, and the keys it is a prefix of start page 2; then, seconds later, 5 under late/.
mkdir "$WORK/files"
for i in $(seq 2490); do echo "$i" >"$WORK/files/f$i"; done
"$S3HOOK" upload -j 16 "$WORK"/files/f* "s3://$B/bulk/" >/dev/null
K=$("$S3HOOK" ls "s3://$B" | awk 'NR == 999 { print $4 }')
for s in a a-1 a.1 a/x a0; do "$S3HOOK" upload --key "$K$s" "$WORK/files/f1" "s3://$B" >/dev/null; done
sleep 1.2
SINCE=$(date -u +%Y-%m-%dT%H:%M:%SZ)
sleep 1.2
for i in 1 2 3 4 5; do "$S3HOOK" upload --key "late/$i" "$WORK/files/f1" "s3://$B" >/dev/null; done
aws_ s3api list-objects-v2 --bucket "$B" --query 'Contents[].Key' --output text | tr '\t' '\n' >"$WORK/keys"
expect_eq "awscli lists 2,500 objects" "$(wc -l <"$WORK/keys")" "2500"
expect_eq "K+a is the 1,000th key" "$(sed -n 1000p "$WORK/keys")" "${K}a"

# --- --dry-run: what would run, touching nothing -----------------------------------------------
out=$(rp a --dry-run "s3://$B")
expect_eq "dry run: a line per job" "$(grep -c $'^count\t' <<<"$out")" "2500"
expect_match "dry run: totals" "$(tail -n 1 <<<"$out")" "^would run 2500 jobs on 2500 objects .* of 2500 listed; 0 already done$"
[ ! -e "$WORK/a.db" ] || fail "a dry run made the queue"
expect_eq "dry run: no handler ran" "$(wc -l <"$COUNT_FILE")" "0"

# --- filters: a prefix that other keys extend, --suffix, --since -------------------------------
expect_eq "prefix K+a" "$(rp a -n "s3://$B/${K}a" | grep -c $'^count\t')" "5"
expect_eq "prefix K+a/" "$(rp a -n "s3://$B/${K}a/" | grep $'^count\t' | cut -f3)" "s3://$B/${K}a/x"
expect_eq "--suffix, twice" "$(rp a -n "s3://$B/${K}a" --suffix .1 --suffix /x | grep $'^count\t' | cut -f3 | sort | tr '\n' ' ')" \
	"s3://$B/${K}a.1 s3://$B/${K}a/x "
expect_eq "--min-size" "$(rp a -n "s3://$B" --min-size 1KiB | grep -c $'^count\t')" "0"
rp a --since "$SINCE" "s3://$B" 2>"$WORK/since.err" || fail "reprocess --since: $(cat "$WORK/since.err")"
expect_eq "--since ran the late objects only" "$(keys_counted | tr '\n' ' ')" "late/1 late/2 late/3 late/4 late/5 "

# --- the whole bucket: every object once, the report, then a second run skips everything -------
rp a "s3://$B" --report "$WORK/report.csv" 2>"$WORK/run.err" || fail "reprocess: $(cat "$WORK/run.err")"
expect_match "summary" "$(tail -n 1 "$WORK/run.err")" "^reprocess: 2500 objects listed, 2500 jobs: 2495 done, 0 failed, 5 skipped \(5 already done\)"
expect_eq "every object processed once" "$(keys_counted | uniq | wc -l) $(wc -l <"$COUNT_FILE")" "2500 2500"
expect_eq "the handler saw awscli's keys" "$(keys_counted | sha1sum)" "$(sort "$WORK/keys" | sha1sum)"
expect_eq "report header" "$(head -n 1 "$WORK/report.csv")" "Bucket,Key,VersionId,TaskStatus,ErrorCode,HTTPStatusCode,ResultMessage"
expect_eq "report: a row per object" "$(tail -n +2 "$WORK/report.csv" | cut -d, -f2 | sort -u | wc -l)" "2500"
expect_eq "report: 2,495 done" "$(grep -c ",succeeded,,200,done$" "$WORK/report.csv")" "2495"
expect_eq "report: URL-encoded keys" "$(grep -c "^$B,${K//\//%2F}a%2Fx,,succeeded,,200,done$" "$WORK/report.csv")" "1"
rp a "s3://$B" 2>"$WORK/run.err" || fail "second reprocess: $(cat "$WORK/run.err")"
expect_match "second run skips everything" "$(tail -n 1 "$WORK/run.err")" "2500 jobs: 0 done, 0 failed, 2500 skipped \(2500 already done\)"
expect_eq "second run ran nothing" "$(wc -l <"$COUNT_FILE")" "2500"
jobs_before=$(count_jobs a)
expect_match "dry run --force would run all" "$(rp a -n --force "s3://$B" | tail -n 1)" "^would run 2500 jobs"
expect_eq "dry run queued nothing" "$(count_jobs a)" "$jobs_before"

# --- SIGKILL in the middle of the listing, then the same command again --------------------------
# Over the odd-numbered half of the objects (the listing still walks every page), to save time.
export COUNT_FILE="$WORK/count2"
: >"$COUNT_FILE"
odd=(--suffix 1 --suffix 3 --suffix 5 --suffix 7 --suffix 9)
grep '[13579]$' "$WORK/keys" | sort >"$WORK/odd"
n_odd=$(wc -l <"$WORK/odd")
"$S3HOOK" reprocess -c "$WORK/b.conf" --rate 300 "${odd[@]}" "s3://$B" 2>"$WORK/kill.err" &
RP=$!
CLEANUP_PIDS+=("$RP")
for i in $(seq 100); do [ "$(wc -l <"$COUNT_FILE")" -ge 100 ] && break; sleep 0.1; done
kill -KILL "$RP"
wait "$RP" 2>/dev/null || true
queued=$(count_jobs b)
[ "$queued" -gt 0 ] && [ "$queued" -lt "$n_odd" ] || fail "killed with $queued jobs queued: not mid-listing"
ok "killed with $queued of $n_odd jobs queued and $(wc -l <"$COUNT_FILE") run"
# The checkpoint: "v1 listing BATCH KEY", KEY percent-encoded, the last object queued.
at=$(sqlite3 "$WORK/b.db" 'SELECT value FROM checkpoints' | python3 -c '
import sys, urllib.parse; print(urllib.parse.unquote(sys.stdin.read().split()[3]))')
before=$(awk -v k="$at" '$0 <= k' "$WORK/keys" | wc -l)
[ "$before" -gt 0 ] && [ "$before" -lt 2500 ] || fail "checkpoint at '$at': not mid-listing"
read -r last_queued <<<"$(sqlite3 "$WORK/b.db" 'SELECT max(key) FROM jobs')"
[[ ! "$last_queued" > "$at" ]] || fail "'$last_queued' is queued but after the checkpoint '$at'"
expect_eq "the checkpoint is the last object queued" "$(awk -v k="$at" '$0 <= k' "$WORK/odd" | wc -l)" "$queued"
rp b "${odd[@]}" "s3://$B" 2>"$WORK/rerun.err" || fail "re-run: $(cat "$WORK/rerun.err")"
expect_match "the re-run lists on after the checkpoint, nothing twice" "$(tail -n 1 "$WORK/rerun.err")" \
	"^reprocess: $((2500 - before)) objects listed, $n_odd jobs: $n_odd done"
expect_eq "every object ran after the kill" "$(keys_counted | uniq | sha1sum)" "$(sha1sum <"$WORK/odd")"
dups=$(keys_counted | uniq -d | wc -l)
[ "$dups" -le "$WORKERS" ] || fail "$dups objects ran twice; at most $WORKERS were running at the kill"
ok "$dups objects ran twice (at most $WORKERS were running at the kill)"

# --- a listing that fails on page 2: exit 3, and the same command resumes from its checkpoint ----
PROXY=$(free_port)
echo '{"faults": [{"method": "GET", "path": "continuation-token", "status": 500}]}' >"$WORK/rules.json"
start_proxy "$PROXY" "$WORK/rules.json" "$WORK/proxy.log"
conf "$WORK/c.conf" "$WORK/c.db" "http://127.0.0.1:$PROXY"
set +e
rp c --enqueue "s3://$B" 2>"$WORK/fail.err"
rc=$?
set -e
expect_eq "listing failure: exit 3" "$rc" "3"
expect_match "the error names the page" "$(cat "$WORK/fail.err")" "listing page 2 of s3://$B/ after '.+': .*HTTP 500"
# A server may return fewer than 1,000 keys on a page (S3 allows it; RGW sometimes does).
page1=$(sed -n 's/^reprocess: \([0-9]*\) objects listed.*/\1/p' "$WORK/fail.err")
expect_eq "page 1 stayed queued" "$(count_jobs c)" "${page1:-none}"
echo '{}' >"$WORK/rules.json"
rp c --enqueue "s3://$B" 2>"$WORK/resume.err" || fail "resume: $(cat "$WORK/resume.err")"
expect_match "the listing resumed at page 2" "$(cat "$WORK/resume.err")" "$((2500 - page1)) objects listed, $((2500 - page1)) jobs queued"
expect_eq "--enqueue queued every object once" "$(count_jobs c)" "2500"

# --- --manifest with URL-encoded keys; a handler that fails (exit 1, failed rows) ----------------
export COUNT_FILE="$WORK/count3"
: >"$COUNT_FILE"
for k in "good/a b+c.txt" "good/ü,x" "good/100%" "bad/1.jpg" "bad/2.jpg"; do
	"$S3HOOK" upload --key "$k" "$WORK/files/f1" "s3://$B2" >/dev/null
done
cat >"$WORK/manifest.csv" <<CSV
$B2,good%2Fa+b%2Bc.txt
"$B2","good/%C3%BC%2Cx"
$B2,good/100%25,
$B2,good/missing
CSV
rp a --manifest "$WORK/manifest.csv" --report "$WORK/m.csv" 2>"$WORK/m.err" || fail "manifest: $(cat "$WORK/m.err")"
expect_eq "manifest keys decoded" "$(sort "$COUNT_FILE" | tr '\n' '|')" "good/100% ok 1|good/a b+c.txt ok 1|good/ü,x ok 1|"
expect_eq "manifest: missing object reported" "$(grep -c "^$B2,good%2Fmissing,,succeeded,,404,gone: no such object$" "$WORK/m.csv")" "1"
expect_match "manifest: summary" "$(cat "$WORK/m.err")" "1 missing"
set +e
rp a "s3://$B2" --report "$WORK/mixed.csv" 2>"$WORK/mixed.err"
rc=$?
set -e
expect_eq "a failing handler: exit 1" "$rc" "1"
expect_eq "failed rows" "$(grep ",failed," "$WORK/mixed.csv" | sort | tr '\n' '|')" \
	"$B2,bad%2F1.jpg,,failed,PermanentFailure,500,exit 65: fail: giving up on bad/1.jpg on purpose|$B2,bad%2F2.jpg,,failed,PermanentFailure,500,exit 65: fail: giving up on bad/2.jpg on purpose|"
expect_eq "report: a row per object" "$(tail -n +2 "$WORK/mixed.csv" | wc -l)" "5"
set +e
rp a "s3://$B2" --report "$WORK/failed.csv" --report-failed 2>/dev/null
set -e
expect_eq "--report-failed: the failed rows only" "$(tail -n +2 "$WORK/failed.csv" | cut -d, -f2 | sort | tr '\n' ' ')" "bad%2F1.jpg bad%2F2.jpg "

# --- usage ---------------------------------------------------------------------------------------
set +e
rp a "s3://$B" --handler nope 2>/dev/null; rc1=$?
rp a "s3://$B" --manifest "$WORK/manifest.csv" 2>/dev/null; rc2=$?
rp a "s3://$B" --since yesterday 2>/dev/null; rc3=$?
set -e
expect_eq "usage errors: exit 2" "$rc1 $rc2 $rc3" "2 2 2"
