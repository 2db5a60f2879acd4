#!/bin/sh
# test_cluster_etcd.sh - foundation-mirrord against the etcd deployments
# other than one plain member (docs/cluster.md):
#   - a 3-member etcd cluster on loopback, the member the agents use
#     SIGKILLed while a host keeps registering and unregistering: every
#     change reaches the other host (none lost), nothing stays that should
#     not (no ghost);
#   - etcd with TLS on loopback (client certificates required), the CA and
#     certificates made here with openssl: the agents connect with
#     --cacert/--cert/--key and converge;
#   - etcd with authentication on: the agents log in with --user.
# Two simulated hosts (segment + reaper + cluster_probe + agent each).
#
# usage: test_cluster_etcd.sh BIN_DIR CLUSTER_PROBE
set -eu

bin=${1:?usage: test_cluster_etcd.sh BIN_DIR CLUSTER_PROBE}
probe=${2:?usage: test_cluster_etcd.sh BIN_DIR CLUSTER_PROBE}
ctl="$bin/foundation-ctl"
mirrord="$bin/foundation-mirrord"
FOUNDATION_REAPERD=${FOUNDATION_REAPERD:-$bin/foundation-reaperd}
export FOUNDATION_REAPERD
unset FOUNDATION_NO_AUTOREAPER
ETCD=${ETCD:-/usr/bin/etcd}
ETCDCTL=${ETCDCTL:-/usr/bin/etcdctl}
for x in "$ETCD" "$ETCDCTL"; do
	if [ ! -x "$x" ]; then
		echo "SKIP: no $x (Debian packages etcd-server, etcd-client)"
		exit 77
	fi
done
command -v openssl >/dev/null || {
	echo "SKIP: no openssl"
	exit 77
}
TTL=3
hosts="h1 h2"
tmp=$(mktemp -d)
passed=0
. "$(dirname "$0")/tools_lib.sh"

cleanup() {
	for f in "$tmp"/*.pid; do
		[ -f "$f" ] || continue
		kill -9 "$(cat "$f")" 2>/dev/null || true
	done
	for h in $hosts; do
		"$ctl" --segment "$(seg "$h")" destroy >/dev/null 2>&1 || true
	done
	if [ -n "${FDN_KEEP_TMP:-}" ]; then echo "kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

seg() { echo "fdn-testcle-$$-$1"; }
free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# member NAME CLIENT_URL PEER_PORT CLUSTER [ETCD OPTIONS...]
member() {
	name=$1 curl_=$2 pp=$3 cl=$4
	shift 4
	"$ETCD" --name "$name" --data-dir "$tmp/etcd-$name" \
		--listen-client-urls "$curl_" --advertise-client-urls "$curl_" \
		--listen-peer-urls "http://127.0.0.1:$pp" \
		--initial-advertise-peer-urls "http://127.0.0.1:$pp" \
		--initial-cluster "$cl" --initial-cluster-token "t$$" "$@" \
		>>"$tmp/etcd-$name.log" 2>&1 &
	echo $! >"$tmp/etcd-$name.pid"
}

# healthy URL [CURL OPTIONS...]
healthy() {
	url=$1
	shift
	i=0
	until curl -s -m 1 "$@" "$url/health" 2>/dev/null | grep -q '"health":"true"'; do
		i=$((i + 1))
		[ $i -lt 200 ] || fail "etcd at $url not healthy (logs in $tmp)"
		sleep 0.1
	done
}

# agents SCENARIO ENDPOINTS [OPTIONS...]: an agent per host.
agents() {
	sc=$1 eps=$2
	shift 2
	for h in $hosts; do
		"$mirrord" --segment "$(seg "$h")" --endpoints "$eps" --cluster "$sc$$" \
			--host "$h" --ttl $TTL --timeout 1000 "$@" \
			>>"$tmp/agent-$sc-$h.log" 2>&1 </dev/null &
		echo $! >"$tmp/agent-$sc-$h.pid"
	done
}

stop_agents() {
	for h in $hosts; do
		p=$(cat "$tmp/agent-$1-$h.pid")
		kill -TERM "$p"
		wait "$p" 2>/dev/null || fail "agent $1 $h: exit status"
		rm -f "$tmp/agent-$1-$h.pid"
	done
	ok
}

hold() {
	"$probe" reg "$(seg "$1")" "$2" "$3" >"$tmp/hold-$1-$2.out" 2>&1 </dev/null &
	echo $! >"$tmp/hold-$1-$2.pid"
	i=0
	until grep -q ready "$tmp/hold-$1-$2.out" 2>/dev/null; do
		i=$((i + 1))
		[ $i -lt 300 ] || fail "hold $1 $2: not ready"
		sleep 0.1
	done
}

release() {
	kill -TERM "$(cat "$tmp/hold-$1-$2.pid")"
	wait "$(cat "$tmp/hold-$1-$2.pid")" 2>/dev/null || true
	rm -f "$tmp/hold-$1-$2.pid"
}

wait_count() {
	if took=$("$probe" wait "$(seg "$2")" "$3" "$4" "$5" 2>"$tmp/err"); then
		ok
	else
		fail "$1: $(cat "$tmp/err")"
	fi
}

# exact WHAT HOST OF PREFIXES...: HOST's entries of host OF are exactly
# the keys held now under those prefixes on OF.
exact() {
	what=$1 h=$2 o=$3
	"$probe" dump "$(seg "$o")" | sed -n "s/^- /$o /p" | sort >"$tmp/want.s"
	"$probe" dump "$(seg "$h")" | grep "^$o " | sort >"$tmp/got.s" || true
	cmp -s "$tmp/want.s" "$tmp/got.s" ||
		fail "$what: $h holds $(wc -l <"$tmp/got.s") entries of $o, $o holds $(wc -l <"$tmp/want.s")"
	ok
}

for h in $hosts; do
	"$ctl" --segment "$(seg "$h")" create --entries 8192 >/dev/null 2>&1 || fail "create $h"
done
hold h1 a 300
hold h2 b 300

# 1. A 3-member cluster, one member killed.
c1=$(free_port) c2=$(free_port) c3=$(free_port)
p1=$(free_port) p2=$(free_port) p3=$(free_port)
cl="m1=http://127.0.0.1:$p1,m2=http://127.0.0.1:$p2,m3=http://127.0.0.1:$p3"
member m1 "http://127.0.0.1:$c1" "$p1" "$cl"
member m2 "http://127.0.0.1:$c2" "$p2" "$cl"
member m3 "http://127.0.0.1:$c3" "$p3" "$cl"
for c in $c1 $c2 $c3; do healthy "http://127.0.0.1:$c"; done
agents ha "http://127.0.0.1:$c1,http://127.0.0.1:$c2,http://127.0.0.1:$c3"
wait_count "3 members: h2 sees h1" h2 h1 300 60000
wait_count "3 members: h1 sees h2" h1 h2 300 60000
# The member every agent uses first goes, while h1 changes: adds, removes.
hold h1 c 100
kill -9 "$(cat "$tmp/etcd-m1.pid")"
rm -f "$tmp/etcd-m1.pid"
hold h1 d 150
release h1 c
wait_count "member killed: h2 sees h1's changes" h2 h1 450 60000
sleep 1 # nothing more arrives: no ghost, no duplicate
exact "member killed" h2 h1
exact "member killed (other way)" h1 h2
stop_agents ha
for m in m2 m3; do kill -9 "$(cat "$tmp/etcd-$m.pid")"; rm -f "$tmp/etcd-$m.pid"; done
wait_count "agents stopped: h1 drops h2's mirror" h1 h2 0 5000

# 2. TLS on loopback, client certificates required.
d="$tmp/pki"
mkdir "$d"
(
	cd "$d"
	openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=test-ca" \
		-keyout ca.key -out ca.crt
	printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n' >ext
	for n in server client; do
		openssl req -newkey rsa:2048 -nodes -subj "/CN=$n" -keyout $n.key -out $n.csr
		openssl x509 -req -in $n.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
			-extfile ext -out $n.crt
	done
) >"$tmp/openssl.log" 2>&1 || fail "openssl: $(tail -3 "$tmp/openssl.log")"
ok
tc=$(free_port) tp=$(free_port)
member t1 "https://127.0.0.1:$tc" "$tp" "t1=http://127.0.0.1:$tp" \
	--cert-file "$d/server.crt" --key-file "$d/server.key" \
	--trusted-ca-file "$d/ca.crt" --client-cert-auth
healthy "https://127.0.0.1:$tc" --cacert "$d/ca.crt" --cert "$d/client.crt" --key "$d/client.key"
agents tls "https://127.0.0.1:$tc" --cacert "$d/ca.crt" --cert "$d/client.crt" --key "$d/client.key"
wait_count "TLS: h2 sees h1" h2 h1 450 60000
wait_count "TLS: h1 sees h2" h1 h2 300 60000
exact "TLS" h2 h1
stop_agents tls
# Without the client certificate: refused, marked degraded, nothing mirrored.
"$mirrord" --segment "$(seg h2)" --endpoints "https://127.0.0.1:$tc" --cluster "tls$$" \
	--host h2 --ttl $TTL --timeout 1000 --cacert "$d/ca.crt" >"$tmp/nocert.log" 2>&1 &
echo $! >"$tmp/nocert.pid"
sleep 3
[ "$("$probe" status "$(seg h2)" | sed -n 's/^degraded=//p')" = true ] ||
	fail "TLS without a client certificate: not degraded"
ok
"$probe" wait "$(seg h2)" h1 0 1000 >/dev/null || fail "TLS without a certificate: mirrored"
ok
kill -TERM "$(cat "$tmp/nocert.pid")"
rm -f "$tmp/nocert.pid"
kill -9 "$(cat "$tmp/etcd-t1.pid")"
rm -f "$tmp/etcd-t1.pid"

# 3. Authentication: a root user, auth enabled, agents with --user.
ac=$(free_port) ap=$(free_port)
member a1 "http://127.0.0.1:$ac" "$ap" "a1=http://127.0.0.1:$ap"
healthy "http://127.0.0.1:$ac"
E="--endpoints=http://127.0.0.1:$ac"
ETCDCTL_API=3 "$ETCDCTL" $E user add root:s3cret >"$tmp/out" 2>&1 || fail "etcdctl user add"
ETCDCTL_API=3 "$ETCDCTL" $E auth enable >"$tmp/out" 2>&1 || fail "etcdctl auth enable"
ok
agents auth "http://127.0.0.1:$ac" --user root:s3cret
wait_count "auth: h2 sees h1" h2 h1 450 60000
wait_count "auth: h1 sees h2" h1 h2 300 60000
exact "auth" h2 h1

# 4. A segment too small for the cluster: host h3 (the smallest heap, 1 MiB:
# some 3 800 small entries) holds 50 of its own and cannot mirror h1's
# 4 450 and h2's 300.  Its agent
# drops what does not fit, counts it, says degraded; no local entry is
# evicted; its own entries still reach the others.
hosts="h1 h2 h3"
"$ctl" --segment "$(seg h3)" create --entries 64 --heap 64K >/dev/null 2>&1 || fail "create h3"
hold h3 s 50
hold h1 big 4000
"$mirrord" --segment "$(seg h3)" --endpoints "http://127.0.0.1:$ac" --cluster "auth$$" \
	--host h3 --ttl $TTL --timeout 1000 --user root:s3cret \
	>>"$tmp/agent-auth-h3.log" 2>&1 </dev/null &
echo $! >"$tmp/agent-auth-h3.pid"
wait_count "small segment: h1 sees h3" h1 h3 50 60000
i=0
until [ "$("$probe" status "$(seg h3)" | sed -n 's/^dropped=//p')" -gt 0 ] 2>/dev/null; do
	i=$((i + 1))
	[ $i -lt 300 ] || fail "small segment: nothing dropped: $("$probe" status "$(seg h3)" | tr '\n' ' ')"
	sleep 0.1
done
ok
[ "$("$probe" status "$(seg h3)" | sed -n 's/^degraded=//p')" = true ] ||
	fail "small segment: not degraded"
ok
[ "$("$probe" dump "$(seg h3)" | grep -c '^- s-')" = 50 ] || fail "small segment: a local entry lost"
ok
run 0 "small segment: a local lookup" "$ctl" --segment "$(seg h3)" get s-49
stop_agents auth

echo "$passed passed, 0 failed"
