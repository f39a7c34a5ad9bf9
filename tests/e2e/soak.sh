#!/usr/bin/env bash
# The 60-second soak: mixed traffic, handler failures, two SIGKILL restarts, nothing
# acknowledged lost (scripts/soak, which is run by hand for 30 minutes).
source "$(dirname "$0")/lib.sh"
out=$("$TOP/scripts/soak" 60 100 2>&1) || { echo "$out" >&2; fail "the soak failed"; }
echo "$out"
expect_match "nothing acknowledged was lost" "$out" "count events not run: 0;"
expect_match "the soak passed" "$out" "soak: ok"
