#!/usr/bin/env bash
# s3hook upload/get/ls/rm/presign against the local Ceph RGW, checked with awscli.
source "$(dirname "$0")/lib.sh"
B=$(new_bucket upload)
CONF="$WORK/s3hook.conf"
cat >"$CONF" <<CONF
[s3]
endpoint = $S3_ENDPOINT
region = default
retries = 2
retry_base = 20ms
connect_timeout = 2s
stall_timeout = 3s
CONF
s3h() { local cmd=$1; shift; "$S3HOOK" "$cmd" -c "$CONF" "$@"; }

# --- a small file: UUID key, bytes identical through awscli --------------------------
printf 'hello, s3hook\n' >"$WORK/small.txt"
url=$(s3h upload "$WORK/small.txt" "s3://$B/in/")
expect_match "key is PREFIX<32 hex>/BASENAME" "$url" "^s3://$B/in/[0-9a-f]{32}/small\.txt$"
key=${url#s3://$B/}
aws_ s3 cp "s3://$B/$key" "$WORK/small.back" >/dev/null
expect_file_eq "awscli reads back what s3hook wrote" "$WORK/small.txt" "$WORK/small.back"
ct=$(aws_ s3api head-object --bucket "$B" --key "$key" --query ContentType --output text)
expect_eq "content type from the file name" "$ct" "text/plain"

# --- two uploads of one file never collide ------------------------------------------
u1=$(s3h upload "$WORK/small.txt" "s3://$B/in/")
[ "$u1" != "$url" ] || fail "two uploads got the same key"
ok "each upload gets a fresh key"

# --- metadata, content type flag, --json ------------------------------------------------
out=$(s3h upload --json -m owner=ann -m team=x --content-type text/x-note "$WORK/small.txt" "s3://$B/m/")
jkey=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["key"])' "$out")
meta=$(aws_ s3api head-object --bucket "$B" --key "$jkey" --query 'Metadata.owner' --output text)
expect_eq "--metadata arrives as x-amz-meta-" "$meta" "ann"
ct=$(aws_ s3api head-object --bucket "$B" --key "$jkey" --query ContentType --output text)
expect_eq "--content-type overrides" "$ct" "text/x-note"

# --- multipart: parts in parallel, bytes identical, ETag of the parts ---------------
head -c $((23 * 1024 * 1024 + 12345)) /dev/urandom >"$WORK/big.bin"
url=$(s3h upload --multipart-threshold 8MiB --part-size 5MiB -j 4 "$WORK/big.bin" "s3://$B/big/")
key=${url#s3://$B/}
etag=$(aws_ s3api head-object --bucket "$B" --key "$key" --query ETag --output text)
expect_match "multipart ETag has 5 parts" "$etag" '-5"?$'
aws_ s3 cp "s3://$B/$key" "$WORK/big.back" >/dev/null
expect_file_eq "awscli reads back the multipart upload" "$WORK/big.bin" "$WORK/big.back"

# --- many files at once ------------------------------------------------------------------
mkdir "$WORK/many"
for i in $(seq 1 40); do printf 'file %d\n' "$i" >"$WORK/many/f$i.txt"; done
n=$(s3h upload -j 8 "$WORK"/many/*.txt "s3://$B/many/" | wc -l)
expect_eq "40 files, 40 lines" "$n" "40"
n=$(s3h ls "s3://$B/many/" | wc -l)
expect_eq "ls sees 40 objects" "$n" "40"

# --- hostile keys through --key, read back by awscli and by s3hook get ---------------
long=$(printf 'k%.0s' $(seq 1 1000))
i=0
for k in "a b.txt" "plus+sign.txt" "100%.txt" "what?.txt" "hash#tag.txt" "dots/../up.txt" \
	"./here/./x" "ünï/cödé ✓.txt" "a//b" "$long"; do
	i=$((i + 1))
	s3h upload --key "$k" "$WORK/small.txt" "s3://$B" >/dev/null || fail "upload of key '$k'"
	aws_ s3api get-object --bucket "$B" --key "$k" "$WORK/k$i" >/dev/null
	expect_file_eq "awscli reads key '${k:0:40}'" "$WORK/small.txt" "$WORK/k$i"
	s3h get "s3://$B/$k" "$WORK/g$i"
	expect_file_eq "s3hook get reads key '${k:0:40}'" "$WORK/small.txt" "$WORK/g$i"
done
got=$(s3h ls --json "s3://$B/dots/" | python3 -c 'import json,sys; print(json.loads(sys.stdin.readline())["key"])')
expect_eq "ls gives the key exactly, '..' not folded" "$got" "dots/../up.txt"

# --- what awscli wrote, s3hook reads --------------------------------------------------------
aws_ s3 cp "$WORK/big.bin" "s3://$B/from-aws/big.bin" >/dev/null
s3h get "s3://$B/from-aws/big.bin" "$WORK/from-aws"
expect_file_eq "s3hook get reads what awscli wrote (multipart)" "$WORK/big.bin" "$WORK/from-aws"
s3h get "s3://$B/from-aws/big.bin" - | cmp -s - "$WORK/big.bin" || fail "get to stdout differs"
ok "get to stdout"

# --- presign: curl fetches with the URL alone ----------------------------------------------
purl=$(s3h presign --expires 60 "s3://$B/a b.txt")
curl -sf "$purl" -o "$WORK/presigned" || fail "curl on the presigned URL"
expect_file_eq "presigned GET works" "$WORK/small.txt" "$WORK/presigned"
purl=$(s3h presign --put "s3://$B/put-by-url.txt")
curl -sf -T "$WORK/small.txt" "$purl" >/dev/null || fail "curl PUT on the presigned URL"
s3h get "s3://$B/put-by-url.txt" "$WORK/put-back"
expect_file_eq "presigned PUT works" "$WORK/small.txt" "$WORK/put-back"

# --- cp: a copy made by the server, metadata kept; a hostile key as the source ------------------
s3h cp "s3://$B/$jkey" "s3://$B/copied/a b+c.txt" >/dev/null
aws_ s3api get-object --bucket "$B" --key "copied/a b+c.txt" "$WORK/copied" >/dev/null
expect_file_eq "cp copies the bytes" "$WORK/small.txt" "$WORK/copied"
meta=$(aws_ s3api head-object --bucket "$B" --key "copied/a b+c.txt" --query 'Metadata.owner' --output text)
expect_eq "cp keeps the metadata" "$meta" "ann"
s3h cp "s3://$B/dots/../up.txt" "s3://$B/copied/up.txt" >/dev/null
s3h get "s3://$B/copied/up.txt" "$WORK/copied2"
expect_file_eq "cp from a key with '..'" "$WORK/small.txt" "$WORK/copied2"
set +e
err=$(s3h cp "s3://$B/no-such" "s3://$B/copied/x" 2>&1); rc=$?
set -e
expect_eq "cp of a missing key exits 1" "$rc" "1"
expect_match "cp of a missing key says NoSuchKey" "$err" "NoSuchKey"

# --- rm -----------------------------------------------------------------------------------------
s3h rm "s3://$B/a b.txt"
if aws_ s3api head-object --bucket "$B" --key "a b.txt" >/dev/null 2>&1; then fail "rm left the object"; fi
ok "rm deletes"

# --- errors -----------------------------------------------------------------------------------
set +e
err=$(AWS_SECRET_ACCESS_KEY=wrong-secret s3h upload "$WORK/small.txt" "s3://$B/x/" 2>&1 >/dev/null)
rc=$?
set -e
expect_eq "wrong secret exits 1" "$rc" "1"
expect_match "wrong secret names SignatureDoesNotMatch" "$err" "SignatureDoesNotMatch \(HTTP 403\)"
[[ "$err" != *wrong-secret* ]] || fail "the secret appears in the error"
ok "the secret is not printed"

port=$(free_port)
set +e
start=$(date +%s%N)
err=$("$S3HOOK" upload -c "$CONF" --endpoint "http://127.0.0.1:$port" "$WORK/small.txt" "s3://$B/x/" 2>&1)
rc=$?
ms=$(( ($(date +%s%N) - start) / 1000000 ))
set -e
expect_eq "server down exits 1" "$rc" "1"
expect_match "server down: a clear error after the retries" "$err" "cannot reach http://127.0.0.1:$port: .*\(3 attempts\)"
[ "$ms" -lt 10000 ] || fail "giving up took ${ms} ms"
ok "gave up in ${ms} ms"

set +e
err=$(s3h get "s3://$B/no-such-key" "$WORK/none" 2>&1); rc=$?
set -e
expect_eq "missing key exits 1" "$rc" "1"
expect_match "missing key says NoSuchKey" "$err" "NoSuchKey \(HTTP 404\)"
[ ! -e "$WORK/none" ] || fail "a failed get left a file"
ok "a failed get leaves no file"

set +e
err=$(s3h upload "$WORK/does-not-exist" "s3://$B/x/" 2>&1); rc=$?
set -e
expect_eq "missing file exits 1" "$rc" "1"
expect_match "missing file is named" "$err" "cannot open '.*does-not-exist': No such file or directory"

set +e
s3h upload --key k "$WORK/small.txt" "$WORK/small.txt" "s3://$B" 2>/dev/null; rc=$?
set -e
expect_eq "--key with two files is a usage error" "$rc" "2"
set +e
s3h upload "$WORK/small.txt" "not-a-url" 2>/dev/null; rc=$?
set -e
expect_eq "a bad destination is a usage error" "$rc" "2"
