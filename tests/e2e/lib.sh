# Sourced by each end-to-end test: the environment, fresh buckets, assertions, cleanup.
# A test is a bash script that fails (non-zero) on the first broken assertion.
set -euo pipefail
TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
S3HOOK="$TOP/build/s3hook"
eval "$("$TOP/scripts/local-s3" env)"
AWS=/usr/bin/aws # Debian's awscli v2; an older v1 may come first on PATH
WORK=$(mktemp -d "${TMPDIR:-/tmp}/s3hook-e2e.XXXXXX")
export HOME="$WORK/home" XDG_STATE_HOME="$WORK/state" XDG_CONFIG_HOME="$WORK/config"
mkdir -p "$HOME"
CLEANUP_PIDS=()
BUCKETS=()

# Runs at exit whatever happened; keeps the test's own exit status.
cleanup() {
	local rc=$? pid b
	set +e
	for pid in "${CLEANUP_PIDS[@]}"; do kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
	[ -n "${CLEANUP_MOUNT:-}" ] && umount -l "$CLEANUP_MOUNT" 2>/dev/null
	for b in "${BUCKETS[@]}" $(cat "$WORK/.buckets" 2>/dev/null); do "$AWS" --endpoint-url "$S3_ENDPOINT" s3 rb --force "s3://$b" >/dev/null 2>&1; done
	if [ -n "${KEEP_WORK:-}" ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
	exit "$rc"
}
trap cleanup EXIT INT TERM

aws_() { "$AWS" --endpoint-url "$S3_ENDPOINT" "$@"; }

# new_bucket NAME: a fresh, empty bucket removed at the end ("NAME-<random>").
new_bucket() {
	local b
	b="$1-$(head -c 4 /dev/urandom | od -An -tx1 | tr -d ' \n')"
	aws_ s3api create-bucket --bucket "$b" >/dev/null
	# Called as B=$(new_bucket x), in a subshell: remember it in a file, not a variable.
	echo "$b" >>"$WORK/.buckets"
	echo "$b"
}

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok - $*"; }

# expect_eq WHAT GOT WANT
expect_eq() { [ "$2" == "$3" ] || fail "$1: got '$2', want '$3'"; ok "$1"; }
# expect_match WHAT TEXT REGEX
expect_match() { [[ "$2" =~ $3 ]] || fail "$1: '$2' does not match /$3/"; ok "$1"; }
# expect_file_eq WHAT A B
expect_file_eq() { cmp -s "$2" "$3" || fail "$1: $2 and $3 differ"; ok "$1"; }

# job_leftovers WORKDIR: what jobs left in serve's workdir. Each worker keeps one folder
# (worker-XXXXXX, holding an empty out/) between jobs; anything else is a leftover.
job_leftovers() {
	find "$1" -mindepth 1 -regextype posix-extended ! -regex '.*/worker-[^/]{6}(/out)?'
}

# free_port: a TCP port on 127.0.0.1 nobody listens on now.
free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_proxy PORT RULES LOG: the fault-injecting proxy in front of the RGW.
start_proxy() {
	python3 "$TOP/tests/faultproxy.py" --port "$1" --upstream "${S3_ENDPOINT#http://}" \
		--rules "$2" --log "$3" >"$WORK/proxy.out" 2>&1 &
	CLEANUP_PIDS+=($!)
	local i
	for i in $(seq 50); do grep -q listening "$WORK/proxy.out" 2>/dev/null && return 0; sleep 0.1; done
	fail "the fault proxy did not start"
}
