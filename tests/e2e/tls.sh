#!/usr/bin/env bash
# The listener over TLS, with a CA and certificates made here: HTTPS only; client certificates
# required (none, or one from another CA: 401); HMAC body signatures (two secrets while rotating;
# a wrong or missing one: 401). Then SNS as AWS delivers it, against a local HTTPS stub that stands
# in for sns.REGION.amazonaws.com: a SubscriptionConfirmation is confirmed (GET SubscribeURL) only
# once sns_confirm = true; signed Notifications (SignatureVersion 1 and 2) make jobs, the signing
# certificate fetched once; a tampered one, another topic or a certificate from a host not
# allowed: 401 and no job.
source "$(dirname "$0")/lib.sh"
# No bucket is made: the jobs are what is checked, and their objects do not exist (they end gone).
B="s3hook-tls-$(head -c 4 /dev/urandom | od -An -tx1 | tr -d ' \n')"
PKI="$WORK/pki"
mkdir -p "$PKI"
cd "$PKI"

# --- a CA, the listener's certificate, a client's; a rogue CA's client; an SNS signing key --------
ec() { openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "$@" 2>/dev/null; }
ec -x509 -days 2 -subj /CN=s3hook-test-ca -keyout ca.key -out ca.pem
ec -subj /CN=127.0.0.1 -keyout srv.key -out srv.csr
ec -subj /CN=minio-client -keyout cli.key -out cli.csr
ec -x509 -days 2 -subj /CN=rogue -keyout rogue.key -out rogue.pem
sign_csr() { # sign_csr NAME EXTENSIONS
	openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
		-out "$1.pem" -extfile <(printf '%s\n' "$2") 2>/dev/null
}
sign_csr srv "subjectAltName=IP:127.0.0.1"
sign_csr cli "extendedKeyUsage=clientAuth"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=sns.amazonaws.com \
	-keyout sns.key -out sns.pem 2>/dev/null
cd - >/dev/null
ok "CA, server, client and SNS signing certificates made"

PORT=$(free_port)
APORT=$(free_port)
export HMAC_A="secret-a-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export HMAC_B="secret-b-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"
CONF="$WORK/s3hook.conf"
write_conf() { # write_conf QUEUE SERVE_KEYS
	cat >"$CONF" <<CONF
[s3]
endpoint = $S3_ENDPOINT
retries = 0

[serve]
listen = 127.0.0.1:$PORT
admin_listen = 127.0.0.1:$APORT
tls_cert = $PKI/srv.pem
tls_key = $PKI/srv.key
$2

[jobs]
queue = $WORK/$1
workdir = $WORK/work
workers = 1

[handler count]
bucket = $B
command = /bin/true
CONF
}
SERVE=""
start_serve() {
	"$S3HOOK" serve -c "$CONF" 2>>"$WORK/serve.log" &
	SERVE=$!
	CLEANUP_PIDS+=("$SERVE")
	for i in $(seq 100); do curl -sf "http://127.0.0.1:$APORT/readyz" >/dev/null && return 0; sleep 0.1; done
	tail -n 20 "$WORK/serve.log" >&2
	fail "serve did not start"
}
stop_serve() {
	kill -TERM "$SERVE"
	wait "$SERVE" || fail "serve exited $?"
}
count_jobs() { "$S3HOOK" jobs -c "$CONF" --json --limit 0 | wc -l; }
# notification KEY: an AWS S3 event for an object of the bucket.
notification() {
	printf '{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"us-east-1",'
	printf '"eventTime":"2024-05-01T12:00:00.000Z","eventName":"ObjectCreated:Put","s3":{'
	printf '"bucket":{"name":"%s"},"object":{"key":"%s","size":5,"eTag":"e1","sequencer":"01"}}}]}' "$B" "$1"
}
# post FILE ARGS...: POSTs the file over TLS; prints the status, keeps the answer in $WORK/answer.
post() {
	local file=$1
	shift
	curl -s -o "$WORK/answer" -w '%{http_code}' --cacert "$PKI/ca.pem" --data-binary @"$file" \
		-H 'Content-Type: application/json' "$@" "https://127.0.0.1:$PORT/"
}
hmac() { openssl dgst -sha256 -hmac "$1" <"$2" | sed 's/^.*= //'; }
CLIENT=(--cert "$PKI/cli.pem" --key "$PKI/cli.key")

# --- check-config refuses half a TLS setup ----------------------------------------------------------
write_conf q1.db "tls_client_ca = $PKI/ca.pem"
sed -i '/^tls_key/d' "$CONF"
set +e; out=$("$S3HOOK" check-config -c "$CONF" 2>&1); rc=$?; set -e
expect_eq "check-config: tls_cert without tls_key is refused" "$rc" "1"
expect_match "it says why, with file and line" "$out" 's3hook.conf:[0-9]+: \[serve\] tls_cert and tls_key go together'

# --- HTTPS with client certificates, HMAC signatures instead of a token --------------------------
write_conf q1.db "tls_client_ca = $PKI/ca.pem
auth_token = none
hmac_secrets = env:HMAC_A env:HMAC_B"
start_serve
notification "hmac/a.txt" >"$WORK/a.json"
notification "hmac/b.txt" >"$WORK/b.json"
SIG_A="X-S3hook-Signature: sha256=$(hmac "$HMAC_A" "$WORK/a.json")"
expect_eq "plain HTTP to the listener gets no answer" \
	"$(curl -s -o /dev/null -w '%{http_code}' -d @"$WORK/a.json" "http://127.0.0.1:$PORT/")" "000"
expect_eq "a client that does not trust our CA refuses the handshake" \
	"$(curl -s -o /dev/null -w '%{http_code}' -d @"$WORK/a.json" -H "$SIG_A" "https://127.0.0.1:$PORT/")" "000"
expect_eq "no client certificate: 401" "$(post "$WORK/a.json" -H "$SIG_A")" "401"
expect_match "it says why" "$(cat "$WORK/answer")" "client certificate"
expect_eq "a client certificate from another CA: 401" \
	"$(post "$WORK/a.json" -H "$SIG_A" --cert "$PKI/rogue.pem" --key "$PKI/rogue.key")" "401"
expect_eq "healthz on the listener needs the certificate too" \
	"$(curl -s -o /dev/null -w '%{http_code}' --cacert "$PKI/ca.pem" "https://127.0.0.1:$PORT/healthz")" "401"
expect_eq "admin_listen stays plain HTTP" \
	"$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$APORT/healthz")" "200"
expect_eq "client certificate, no signature: 401" "$(post "$WORK/a.json" "${CLIENT[@]}")" "401"
expect_eq "client certificate, signature of another body: 401" \
	"$(post "$WORK/b.json" "${CLIENT[@]}" -H "$SIG_A")" "401"
expect_eq "client certificate, signature by a secret not configured: 401" \
	"$(post "$WORK/a.json" "${CLIENT[@]}" -H "X-S3hook-Signature: sha256=$(hmac wrong "$WORK/a.json")")" "401"
expect_eq "no job for any of them" "$(count_jobs)" "0"
expect_eq "client certificate and a signature by secret A: 200" "$(post "$WORK/a.json" "${CLIENT[@]}" -H "$SIG_A")" "200"
expect_eq "... and by secret B (rotation): 200" \
	"$(post "$WORK/b.json" "${CLIENT[@]}" -H "X-S3hook-Signature: sha256=$(hmac "$HMAC_B" "$WORK/b.json")")" "200"
expect_eq "two jobs" "$(count_jobs)" "2"
expect_match "the listening line says TLS with client certificates" "$(grep 'msg="listening"' "$WORK/serve.log")" "tls=client-cert"
stop_serve

# --- SNS: a stub for sns.REGION.amazonaws.com on 127.0.0.1 over HTTPS ----------------------------
SPORT=$(free_port)
cat >"$WORK/sns-stub.py" <<'PY'
import http.server, ssl, sys
port, pki, log = int(sys.argv[1]), sys.argv[2], sys.argv[3]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        with open(log, "a") as f:
            f.write(self.path + "\n")
        if self.path.endswith(".pem"):
            body = open(pki + "/sns.pem", "rb").read()
        elif self.path.startswith("/?Action=ConfirmSubscription"):
            body = b"<ConfirmSubscriptionResponse/>"
        else:
            self.send_response(404); self.end_headers(); return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
s = http.server.ThreadingHTTPServer(("127.0.0.1", port), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(pki + "/srv.pem", pki + "/srv.key")
s.socket = ctx.wrap_socket(s.socket, server_side=True)
print("listening", flush=True)
s.serve_forever()
PY
: >"$WORK/stub.log"
python3 "$WORK/sns-stub.py" "$SPORT" "$PKI" "$WORK/stub.log" >"$WORK/stub.out" 2>&1 &
CLEANUP_PIDS+=($!)
for i in $(seq 50); do grep -q listening "$WORK/stub.out" 2>/dev/null && break; sleep 0.1; done

# The SNS envelopes of the test, signed as SNS signs (the string to sign built here from the
# documentation, not by s3hook): one python3 run makes them all.
TOPIC="arn:aws:sns:us-east-1:123456789012:s3hook-test"
CERT_URL="https://127.0.0.1:$SPORT/SimpleNotificationService-test.pem"
notification "sns/v2+object.txt" >"$WORK/inner2.json"
notification "sns/v1.txt" >"$WORK/inner1.json"
notification "sns/forged.txt" >"$WORK/forged.json"
python3 - "$TOPIC" "$CERT_URL" "$PKI/sns.key" "$WORK" <<'PY'
import base64, json, subprocess, sys
topic, cert_url, key, work = sys.argv[1:5]
def envelope(typ, version, topic, cert_url, message):
    m = {"Type": typ, "MessageId": "mid-" + typ, "TopicArn": topic, "Message": message,
         "Timestamp": "2024-05-01T12:00:00.000Z", "SignatureVersion": version,
         "SigningCertURL": cert_url}
    if typ == "Notification":
        m["Subject"] = "Amazon S3 Notification"
        fields = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
    else:
        m["Token"] = "tok-2336412f37fb687f5d51e6e241d0"
        m["SubscribeURL"] = (cert_url.rsplit("/", 1)[0] + "/?Action=ConfirmSubscription&TopicArn="
                             + topic + "&Token=" + m["Token"])
        fields = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
    tbs = "".join(f + "\n" + m[f] + "\n" for f in fields).encode()
    sig = subprocess.run(["openssl", "dgst", "-sha1" if version == "1" else "-sha256", "-sign", key],
                         input=tbs, capture_output=True, check=True).stdout
    m["Signature"] = base64.b64encode(sig).decode()
    return m
def write(name, m):
    json.dump(m, open(work + "/" + name, "w"), indent=2)
inner = lambda name: open(work + "/" + name).read()
write("confirm.json", envelope("SubscriptionConfirmation", "1", topic, cert_url,
                               "You have chosen to subscribe.\nVisit the SubscribeURL."))
write("note2.json", envelope("Notification", "2", topic, cert_url, inner("inner2.json")))
write("note1.json", envelope("Notification", "1", topic, cert_url, inner("inner1.json")))
m = envelope("Notification", "2", topic, cert_url, inner("inner2.json"))
m["Message"] = inner("forged.json")
write("tampered.json", m)
write("other.json", envelope("Notification", "2", "arn:aws:sns:us-east-1:999999999999:someone",
                             cert_url, inner("forged.json")))
write("elsewhere.json", envelope("Notification", "2", topic,
                                 cert_url.replace("127.0.0.1", "localhost"), inner("forged.json")))
PY
sns_post() { post "$1" -H "x-amz-sns-message-type: $2"; }

write_conf q2.db "auth_token = none
sns_topics = $TOPIC
sns_hosts = 127.0.0.1:$SPORT
sns_ca_bundle = $PKI/ca.pem
sns_confirm = false"
start_serve
expect_eq "SubscriptionConfirmation with sns_confirm = false: 200" \
	"$(sns_post "$WORK/confirm.json" SubscriptionConfirmation)" "200"
expect_eq "... not confirmed" "$(cat "$WORK/answer")" '{"sns":"SubscriptionConfirmation","confirmed":false}'
expect_eq "... no GET of SubscribeURL" "$(grep -c Action=ConfirmSubscription "$WORK/stub.log")" "0"
expect_match "... logged with the topic and the host" \
	"$(grep 'SNS subscription not confirmed' "$WORK/serve.log")" "topic=$TOPIC host=127.0.0.1:$SPORT reason=\"sns_confirm is false\""

sed -i 's/^sns_confirm = false$/sns_confirm = true/' "$CONF"
kill -HUP "$SERVE"
for i in $(seq 50); do grep -q 'configuration reloaded' "$WORK/serve.log" && break; sleep 0.1; done
expect_eq "with sns_confirm = true (after SIGHUP): 200" \
	"$(sns_post "$WORK/confirm.json" SubscriptionConfirmation)" "200"
expect_eq "... confirmed" "$(cat "$WORK/answer")" '{"sns":"SubscriptionConfirmation","confirmed":true}'
expect_match "... by a GET of SubscribeURL" "$(cat "$WORK/stub.log")" "/\?Action=ConfirmSubscription&TopicArn=$TOPIC&Token=tok-"
grep -q "tok-2336412f37" "$WORK/serve.log" && fail "the subscription token is in the log"
ok "the subscription token is never logged"

expect_eq "a signed Notification (SignatureVersion 2): 200" "$(sns_post "$WORK/note2.json" Notification)" "200"
expect_eq "... one event, one job" "$(cat "$WORK/answer")" '{"events":1,"jobs":1}'
expect_eq "a signed Notification (SignatureVersion 1): 200" "$(sns_post "$WORK/note1.json" Notification)" "200"
jobs=$("$S3HOOK" jobs -c "$CONF" --limit 0)
expect_match "the jobs are the inner S3 events, keys decoded as AWS encodes them" "$jobs" \
	"sns/v2 object.txt"
expect_match "... both of them" "$jobs" "sns/v1.txt"
expect_eq "the signing certificate was fetched once since the reload" \
	"$(grep -c '\.pem$' "$WORK/stub.log")" "2"

before=$(count_jobs)
expect_eq "a Notification whose Message was changed: 401" "$(sns_post "$WORK/tampered.json" Notification)" "401"
expect_match "... it says why" "$(cat "$WORK/answer")" "signature does not verify"
expect_eq "a signed Notification of a topic not in sns_topics: 401" "$(sns_post "$WORK/other.json" Notification)" "401"
fetches=$(grep -c '\.pem$' "$WORK/stub.log")
expect_eq "a SigningCertURL on a host not allowed: 401" "$(sns_post "$WORK/elsewhere.json" Notification)" "401"
expect_eq "... and nothing was fetched from it" "$(grep -c '\.pem$' "$WORK/stub.log")" "$fetches"
expect_eq "the S3 event itself, with no credential: 401" "$(post "$WORK/forged.json")" "401"
expect_eq "no job for any of them" "$(count_jobs)" "$before"
stop_serve
grep -qF "$HMAC_A" "$WORK/serve.log" && fail "a secret is in the log"
ok "no secret in the log"
