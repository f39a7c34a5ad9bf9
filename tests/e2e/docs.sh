#!/usr/bin/env bash
# README.md's key table is the one s3hook itself knows; every command answers --help.
source "$(dirname "$0")/lib.sh"
want=$("$S3HOOK" check-config --keys)
got=$(sed -n '/<!-- keys:begin -->/,/<!-- keys:end -->/p' "$TOP/README.md" | sed '1d;$d')
[ "$want" == "$got" ] || { diff <(echo "$want") <(echo "$got") >&2; fail "README.md's key table differs from 's3hook check-config --keys'"; }
ok "README key table is current"
for cmd in $("$S3HOOK" --help | awk '/^Commands:/{on=1; next} on && /^  [a-z]/ {print $1}'); do
	out=$("$S3HOOK" "$cmd" --help) || fail "'s3hook $cmd --help' failed"
	[[ "$out" == usage:* ]] || fail "'s3hook $cmd --help' prints no usage"
done
ok "every command has --help"
