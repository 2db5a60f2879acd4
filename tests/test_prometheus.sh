#!/bin/sh
# test_prometheus.sh - a real Prometheus server scrapes foundation-inspect
# metrics --listen on loopback; PromQL over its HTTP API (curl) returns
# foundation_deaths_total and the reaper-latency histogram's count exactly
# after N deaths, and rate(foundation_events_written_total) within 50 % of
# the rate the emitter measured itself.  Also: the HTTP server's 404, 405 and
# HEAD, --textfile's atomic file, SIGTERM stopping the server (exit 0,
# port closed), a destroyed segment (503, exit 1).
#
# usage: test_prometheus.sh BIN_DIR
# Skips (exit 77, the reason printed) when prometheus or curl is missing:
# sh cmake/bootstrap.sh test installs both (Debian packages prometheus, curl).
set -eu

bin=${1:?usage: test_prometheus.sh BIN_DIR}
for tool in prometheus curl python3; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "SKIP: $tool is not installed (sh cmake/bootstrap.sh test installs it)"
		exit 77
	fi
done
ctl="$bin/foundation-ctl"
inspect="$bin/foundation-inspect"
here=$(cd "$(dirname "$0")" && pwd)
FOUNDATION_REAPERD=${FOUNDATION_REAPERD:-$bin/foundation-reaperd}
export FOUNDATION_REAPERD
unset FOUNDATION_NO_AUTOREAPER
seg="fdn-prom-$$"
export FOUNDATION_SEGMENT="$seg"
tmp=$(mktemp -d)
pids=""
passed=0
. "$here/tools_lib.sh"

cleanup() {
	for p in $pids; do
		kill -9 "$p" 2>/dev/null || true
	done
	"$ctl" destroy >/dev/null 2>&1 || true
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM

# A free loopback port (bound, read, released).
free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# promql EXPR: the value of an instant query (one series), or "" if none.
promql() {
	curl -sS -G --max-time 5 "http://127.0.0.1:$pport/api/v1/query" \
		--data-urlencode "query=$1" ${2:+--data-urlencode "time=$2"} 2>/dev/null |
		python3 -c 'import json,sys
d=json.load(sys.stdin); r=d["data"]["result"] if d.get("status")=="success" else []
print(r[0]["value"][1] if len(r)==1 else "")' 2>/dev/null || true
}

# until_promql WHAT EXPR VALUE: wait (60 s at most) until EXPR is VALUE.
until_promql() {
	n=0
	while :; do
		v=$(promql "$2")
		[ "$v" = "$3" ] && break
		n=$((n + 1))
		[ "$n" -le 120 ] || fail "$1: $2 is '$v' after 60 s, expected $3"
		sleep 0.5
	done
	ok
}

# ---- a segment with N deaths -------------------------------------------------------
N=5
run 0 "create" "$ctl" create --entries 1000 --processes 64 --threads 64
i=0
while [ "$i" -lt "$N" ]; do
	i=$((i + 1))
	sleep 300 >/dev/null 2>&1 </dev/null &
	p=$!
	run 0 "register w$i" "$ctl" register "w$i" --pid "$p"
	kill -9 "$p"
	wait "$p" 2>/dev/null || true
	run 0 "w$i gone" "$ctl" wait "w$i" --gone --timeout 10000
done
n=0
while :; do
	run 0 "metrics" "$inspect" metrics
	grep -qF "foundation_deaths_total{segment=\"$seg\"} $N" "$tmp/out" && break
	n=$((n + 1))
	[ "$n" -le 100 ] || fail "deaths_total is not $N after 10 s"
	sleep 0.1
done
ok

# ---- the HTTP server ----------------------------------------------------------------
"$inspect" metrics --listen 127.0.0.1:0 >"$tmp/listen" 2>"$tmp/listen.err" </dev/null &
server=$!
pids="$pids $server"
n=0
until grep -q '^listening on http://127.0.0.1:[0-9]*/metrics$' "$tmp/listen"; do
	n=$((n + 1))
	[ "$n" -le 100 ] || fail "metrics --listen: no 'listening on' line"
	sleep 0.1
done
ok
url=$(sed -n 's/^listening on //p' "$tmp/listen")
mport=$(echo "$url" | sed 's|.*:\([0-9]*\)/metrics|\1|')
run 0 "GET /metrics" curl -sS -i --max-time 5 "$url"
out_has "GET /metrics" "HTTP/1.1 200 OK"
out_has "GET /metrics" "Content-Type: text/plain; version=0.0.4; charset=utf-8"
run 0 "GET /metrics body" curl -sS --max-time 5 "$url"
python3 "$here/promcheck.py" <"$tmp/out" >/dev/null 2>&1 || fail "GET /metrics: not valid exposition format"
ok
out_has "GET /metrics body" "foundation_deaths_total{segment=\"$seg\"} $N"
out_has "GET /metrics body" "foundation_reaper_latency_seconds_count{segment=\"$seg\"} $N"
run 0 "GET /other" curl -sS -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$mport/other"
out_is "GET /other" "404"
run 0 "POST /metrics" curl -sS -o /dev/null -w '%{http_code}' -X POST --max-time 5 "$url"
out_is "POST /metrics" "405"
run 0 "HEAD /metrics" curl -sS -I --max-time 5 "$url"
out_has "HEAD /metrics" "HTTP/1.1 200 OK"
# Bounded: a request over 8 KiB is refused (400); a client that connects
# and sends nothing holds the server for 2 s at most.
run 0 "big request" curl -sS -o /dev/null -w '%{http_code}' --max-time 5 \
	-H "X-Big: $(head -c 9000 /dev/zero | tr '\0' x)" "$url"
out_is "big request" "400"
python3 -c 'import socket,sys,time
s=socket.create_connection(("127.0.0.1",int(sys.argv[1]))); time.sleep(40)' "$mport" &
idle=$!
sleep 0.5
t0=$(date +%s)
# The server drops the idle client after 2 s; without that bound the GET
# would wait the client's 40 s.  15 s leaves a busy machine its margin.
run 0 "GET behind an idle client" curl -sS -o /dev/null -w '%{http_code}' --max-time 30 "$url"
out_is "GET behind an idle client" "200"
[ $(($(date +%s) - t0)) -le 15 ] || fail "an idle client held the server over 15 s"
ok
kill "$idle" 2>/dev/null || true
wait "$idle" 2>/dev/null || true

# ---- Prometheus scrapes it --------------------------------------------------------
pport=$(free_port)
cat >"$tmp/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: foundation
    static_configs:
      - targets: ['127.0.0.1:$mport']
EOF
prometheus --config.file="$tmp/prometheus.yml" --storage.tsdb.path="$tmp/tsdb" \
	--web.listen-address="127.0.0.1:$pport" >"$tmp/prometheus.log" 2>&1 </dev/null &
prom=$!
pids="$pids $prom"
until_promql "scraped" "up{job=\"foundation\"}" 1
until_promql "deaths" "foundation_deaths_total{segment=\"$seg\"}" "$N"
until_promql "latency count" "foundation_reaper_latency_seconds_count{segment=\"$seg\"}" "$N"
until_promql "latency +Inf bucket" \
	"foundation_reaper_latency_seconds_bucket{segment=\"$seg\",le=\"+Inf\"}" "$N"

# rate(): an emitter writes events for 12 s, measuring its own rate; the
# rate Prometheus computes over the middle 8 s is within 50 % of it.
start=$(date +%s)
emitted=0
while [ $(($(date +%s) - start)) -lt 12 ]; do
	"$ctl" emit test.tick --count 50 >/dev/null 2>&1 </dev/null || fail "emit"
	emitted=$((emitted + 50))
	sleep 0.2
done
end=$(date +%s)
sleep 3 # the last scrapes
want=$(python3 -c "print($emitted / ($end - $start))")
got=$(promql "rate(foundation_events_written_total{segment=\"$seg\"}[8s])" "$((end - 2))")
python3 -c "import sys; g=float('$got' or 'nan'); w=$want; sys.exit(0 if 0.5*w <= g <= 1.5*w else 1)" ||
	fail "rate: Prometheus says '$got' events/s, the emitter $want"
ok
echo "rate(foundation_events_written_total[8s]) = $got events/s; the emitter measured $want"

# ---- --textfile: one atomic file, nothing else left -------------------------------
umask 022 # the file is created 0644 less the umask
run 0 "textfile" "$inspect" metrics --textfile "$tmp/foundation.prom"
out_is "textfile" ""
[ "$(ls "$tmp" | grep -c 'foundation.prom')" -eq 1 ] || fail "textfile: a temporary file was left"
ok
python3 "$here/promcheck.py" <"$tmp/foundation.prom" >/dev/null 2>&1 || fail "textfile: not valid"
ok
if ! grep -qF "foundation_deaths_total{segment=\"$seg\"} $N" "$tmp/foundation.prom"; then
	grep -F foundation_deaths_total "$tmp/foundation.prom" >&2 || true
	"$inspect" graveyard >&2 || true
	"$inspect" processes >&2 || true
	fail "textfile: deaths"
fi
ok
[ "$(stat -c %a "$tmp/foundation.prom")" = 644 ] || fail "textfile: mode is not 644"
ok
run 1 "textfile in a missing directory" "$inspect" metrics --textfile "$tmp/none/x.prom"
grep -q '^foundation-inspect: metrics --textfile ".*": create .*: no such file or directory$' \
	"$tmp/err" || fail "textfile in a missing directory: message"
ok
run 2 "listen and textfile" "$inspect" metrics --listen 127.0.0.1:0 --textfile "$tmp/y.prom"
run 2 "listen bad address" "$inspect" metrics --listen localhost:9999
run 2 "listen bad port" "$inspect" metrics --listen 127.0.0.1:65536

# ---- SIGTERM stops the server: exit 0, the port closed ---------------------------
kill -TERM "$server"
st=0
wait "$server" || st=$?
[ "$st" -eq 0 ] || fail "metrics --listen: exit status $st after SIGTERM"
ok
if curl -s --max-time 2 "$url" >/dev/null 2>&1; then fail "the port still answers"; fi
ok

# ---- a destroyed segment: 503, then the server exits 1 ------------------------------
"$inspect" metrics --listen 127.0.0.1:0 >"$tmp/listen2" 2>"$tmp/listen2.err" </dev/null &
server=$!
pids="$pids $server"
n=0
until grep -q '^listening on' "$tmp/listen2"; do
	n=$((n + 1))
	[ "$n" -le 100 ] || fail "second server: no 'listening on' line"
	sleep 0.1
done
url=$(sed -n 's/^listening on //p' "$tmp/listen2")
run 0 "destroy" "$ctl" destroy
run 0 "GET after destroy" curl -sS -o /dev/null -w '%{http_code}' --max-time 5 "$url"
out_is "GET after destroy" "503"
st=0
wait "$server" || st=$?
[ "$st" -eq 1 ] || fail "metrics --listen: exit status $st after the segment was destroyed"
ok
[ "$(cat "$tmp/listen2.err")" = "foundation-inspect: segment \"$seg\": metrics: segment destroyed" ] ||
	fail "metrics --listen: message after destroy: $(cat "$tmp/listen2.err")"
ok

echo "$passed passed, 0 failed"
