#!/bin/sh
# test_cluster.sh - foundation-mirrord against a real etcd (docs/cluster.md).
#
# etcd (/usr/bin/etcd, Debian's etcd-server) is started here on loopback,
# on free ports, with a temporary data directory, and stopped on every exit
# path.  Three hosts are simulated on this machine: each is its own segment
# (with its reaper), a cluster_probe holding its 1 000 entries and its own
# foundation-mirrord with its own --host.  Scenarios, each ended by an exact
# comparison of every host's set of entries (local and remote) with what
# it must be:
#   - 3 hosts x 1 000 entries converge;
#   - an agent SIGKILLed: its entries leave the other hosts within TTL + 1 s,
#     and the other hosts' entries leave its own segment (the reaper removes
#     a dead owner's entries); restarted, it resynchronises;
#   - an agent SIGSTOPped longer than the TTL: its entries expire elsewhere,
#     and come back when it resumes;
#   - etcd stopped 10 s while a host registers: local registrations work,
#     the mirror says degraded; etcd back, every host converges;
#   - a planned stop (SIGTERM) revokes the lease: entries gone at once;
#   - the change feed: a registration, an update and an unregistration
#     each reach etcd within 5 s (nothing rescans: the agent publishes
#     what the feed delivers), and no host ever publishes a remote key
#     (etcd's keys of each host are exactly its local keys);
#   - an overrun: a host whose segment has a 16-record change log, bursts
#     of registrations, a holder killed (entries removed by the reaper) and
#     more changes: the agent falls behind the ring, resynchronises, and
#     etcd's keys of that host end exactly equal to its local keys.
#
# usage: test_cluster.sh BIN_DIR CLUSTER_PROBE
set -eu

bin=${1:?usage: test_cluster.sh BIN_DIR CLUSTER_PROBE}
probe=${2:?usage: test_cluster.sh BIN_DIR CLUSTER_PROBE}
ctl="$bin/foundation-ctl"
mirrord="$bin/foundation-mirrord"
FOUNDATION_REAPERD=${FOUNDATION_REAPERD:-$bin/foundation-reaperd}
export FOUNDATION_REAPERD
unset FOUNDATION_NO_AUTOREAPER
ETCD=${ETCD:-/usr/bin/etcd}
ETCDCTL=${ETCDCTL:-/usr/bin/etcdctl}
if [ ! -x "$ETCD" ]; then
	echo "SKIP: no etcd at $ETCD (Debian package etcd-server)"
	exit 77
fi
TTL=3
N=1000
hosts="h1 h2 h3"
tmp=$(mktemp -d)
passed=0
. "$(dirname "$0")/tools_lib.sh"

etcd_pid=""
cleanup() {
	for f in "$tmp"/*.pid; do
		[ -f "$f" ] || continue
		p=$(cat "$f")
		kill -CONT "$p" 2>/dev/null || true
		kill -9 "$p" 2>/dev/null || true
	done
	for h in $hosts h4 h5; do
		"$ctl" --segment "$(seg "$h")" destroy >/dev/null 2>&1 || true
	done
	if [ -n "${FDN_KEEP_TMP:-}" ]; then echo "kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

seg() { echo "fdn-testcl-$$-$1"; }

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
cport=$(free_port)
pport=$(free_port)
endpoint="http://127.0.0.1:$cport"

start_etcd() {
	"$ETCD" --name m1 --data-dir "$tmp/etcd" \
		--listen-client-urls "$endpoint" --advertise-client-urls "$endpoint" \
		--listen-peer-urls "http://127.0.0.1:$pport" \
		--initial-advertise-peer-urls "http://127.0.0.1:$pport" \
		--initial-cluster "m1=http://127.0.0.1:$pport" \
		>>"$tmp/etcd.log" 2>&1 &
	echo $! >"$tmp/etcd.pid"
	i=0
	until curl -s -m 1 "$endpoint/health" 2>/dev/null | grep -q '"health":"true"'; do
		i=$((i + 1))
		[ $i -lt 100 ] || fail "etcd did not start (see $tmp/etcd.log)"
		sleep 0.1
	done
}

stop_etcd() {
	kill -TERM "$(cat "$tmp/etcd.pid")"
	wait "$(cat "$tmp/etcd.pid")" 2>/dev/null || true
	rm -f "$tmp/etcd.pid"
}

# start_agent HOST [CLUSTER]: its foundation-mirrord, pid in
# $tmp/agent-HOST.pid.  No --interval: local changes come from the change
# feed (the option is accepted and ignored).
start_agent() {
	"$mirrord" --segment "$(seg "$1")" --endpoints "$endpoint" --cluster "${2:-t$$}" \
		--host "$1" --ttl $TTL --timeout 1000 \
		>>"$tmp/agent-$1.log" 2>&1 </dev/null &
	echo $! >"$tmp/agent-$1.pid"
}

# etcd_keys HOST [CLUSTER]: the registry keys etcd holds for HOST (the
# tails of /foundation/CLUSTER/hosts/HOST/registry/*), one a line, sorted;
# a key whose first byte is 0x00 (a remote key: never to be published)
# printed as "REMOTE:" and the rest of it.
etcd_keys() {
	python3 -c 'import base64, json, sys, urllib.request
p = sys.argv[2].encode(); e = p[:-1] + bytes([p[-1] + 1])
b = lambda x: base64.b64encode(x).decode()
q = json.dumps({"key": b(p), "range_end": b(e), "keys_only": True}).encode()
out = []
for kv in json.load(urllib.request.urlopen(sys.argv[1] + "/v3/kv/range", q)).get("kvs", []):
    k = base64.b64decode(kv["key"])[len(p):]
    out.append("REMOTE:" + k[1:].decode(errors="replace") if k[:1] == b"\0" else k.decode())
print("\n".join(sorted(out)))' "$endpoint" "/foundation/${2:-t$$}/hosts/$1/registry/" |
		sed '/^$/d'
}

# etcd_exact WHAT HOST [CLUSTER] [MS]: within MS ms (default 0: now), etcd's
# keys of HOST are exactly HOST's local keys ($tmp/local-HOST), and never a
# remote key.
etcd_exact() {
	sort "$tmp/local-$2" >"$tmp/ewant"
	i=0
	while :; do
		etcd_keys "$2" "${3:-t$$}" >"$tmp/egot"
		if grep -q '^REMOTE:' "$tmp/egot"; then
			grep '^REMOTE:' "$tmp/egot" | head -3 >"$tmp/out"
			fail "$1: host $2 published a remote key"
		fi
		cmp -s "$tmp/ewant" "$tmp/egot" && break
		i=$((i + 100))
		if [ $i -gt "${4:-0}" ]; then
			diff "$tmp/ewant" "$tmp/egot" | head -5 >"$tmp/out" || true
			fail "$1: etcd holds $(wc -l <"$tmp/egot") keys of $2, expected" \
				"$(wc -l <"$tmp/ewant")"
		fi
		sleep 0.1
	done
	ok
}

# etcd_value HOST KEY: the value etcd holds for HOST's KEY (empty: none).
etcd_value() {
	ETCDCTL_API=3 "$ETCDCTL" --endpoints "$endpoint" get --print-value-only \
		"/foundation/t$$/hosts/$1/registry/$2" 2>/dev/null
}

# etcd_wait WHAT HOST KEY PATTERN MS: etcd's value of HOST's KEY matches the
# grep pattern PATTERN (empty: the key is absent) within MS ms; the time in
# $took.
etcd_has() {
	if [ -z "$3" ]; then [ -z "$(etcd_value "$1" "$2")" ]; else etcd_value "$1" "$2" | grep -q "$3"; fi
}
etcd_wait() {
	t0=$(date +%s%3N)
	until etcd_has "$2" "$3" "$4"; do
		[ $(($(date +%s%3N) - t0)) -lt "$5" ] ||
			fail "$1: etcd: $2 $3 = \"$(etcd_value "$2" "$3")\", not /$4/ in $5 ms"
		sleep 0.05
	done
	took=$(($(date +%s%3N) - t0))
	ok
}

# hold HOST PREFIX COUNT: a process registering PREFIX-0..COUNT-1 on HOST,
# holding them; its keys appended to $tmp/local-HOST.
hold() {
	"$probe" reg "$(seg "$1")" "$2" "$3" >"$tmp/hold-$1-$2.out" 2>&1 </dev/null &
	echo $! >"$tmp/hold-$1-$2.pid"
	i=0
	until grep -q ready "$tmp/hold-$1-$2.out" 2>/dev/null; do
		i=$((i + 1))
		[ $i -lt 300 ] || fail "hold $1 $2: not ready: $(cat "$tmp/hold-$1-$2.out")"
		sleep 0.1
	done
	seq 0 $(($3 - 1)) | sed "s/^/$2-/" >>"$tmp/local-$1"
}

# wait_count WHAT HOST OF N MS: host HOST's segment holds exactly N entries
# of host OF within MS milliseconds; the time taken in $took.
wait_count() {
	if took=$("$probe" wait "$(seg "$2")" "$3" "$4" "$5" 2>"$tmp/err"); then
		ok
	else
		fail "$1: $(cat "$tmp/err")"
	fi
}

# compare WHAT "PUBS" "MIRRORS": every host's set is exactly its local keys
# plus, when it is in MIRRORS (its agent mirrors), the keys of each other
# host in PUBS (whose agent publishes).
compare() {
	for h in $hosts; do
		sed 's/^/- /' "$tmp/local-$h" >"$tmp/want"
		case " $3 " in
		*" $h "*)
			for o in $2; do
				[ "$o" = "$h" ] || sed "s/^/$o /" "$tmp/local-$o" >>"$tmp/want"
			done
			;;
		esac
		sort "$tmp/want" >"$tmp/want.s"
		"$probe" dump "$(seg "$h")" | sort >"$tmp/got.s"
		if ! cmp -s "$tmp/want.s" "$tmp/got.s"; then
			diff "$tmp/want.s" "$tmp/got.s" | head -5 >"$tmp/out" || true
			fail "$1: host $h: $(wc -l <"$tmp/got.s") entries, expected" \
				"$(wc -l <"$tmp/want.s")"
		fi
		ok
	done
}

nloc() { wc -l <"$tmp/local-$1"; }

status_of() { "$probe" status "$(seg "$1")" | sed -n "s/^$2=//p"; }

start_etcd

# 0. The agent follows the change log: a segment without one is refused
# (exit 1, saying why); --interval is still accepted, and said to be
# ignored.
"$ctl" --segment "$(seg h5)" create --entries 64 --changes off >/dev/null 2>&1 ||
	fail "create segment of h5 (--changes off)"
run 1 "no change log: refused" "$mirrord" --segment "$(seg h5)" --endpoints "$endpoint" \
	--host h5 --interval 50
grep -qF "made without a change log" "$tmp/err" || fail "no change log: the reason not given"
ok
grep -qF -- "--interval is ignored" "$tmp/err" || fail "--interval: not said to be ignored"
ok
"$ctl" --segment "$(seg h5)" destroy >/dev/null 2>&1 || true

for h in $hosts; do
	: >"$tmp/local-$h"
	"$ctl" --segment "$(seg "$h")" create --entries 16384 >/dev/null 2>&1 ||
		fail "create segment of $h"
	hold "$h" "w$h" $N
	start_agent "$h"
done

# 1. Convergence.
for h in $hosts; do
	for o in $hosts; do
		[ "$o" = "$h" ] || wait_count "converge: $h sees $o" "$h" "$o" $N 60000
	done
done
compare "converged" "$hosts" "$hosts"
# Each host published exactly its local keys: none of the 2 000 remote
# entries (nor the agent's status keys) its agent registered went back
# into etcd.
for h in $hosts; do etcd_exact "converged: etcd" "$h"; done
run 0 "cluster lookup" "$probe" lookup "$(seg h1)" wh2-7
out_is "cluster lookup: one holder, host h2" "h2 $(cat "$tmp/hold-h2-wh2.pid")"
[ "$(status_of h1 degraded)" = false ] || fail "h1 degraded after convergence"
ok
run 0 "inspect cluster" "$bin/foundation-inspect" --segment "$(seg h1)" cluster
out_has "inspect cluster: the host" "host h1"
out_has "inspect cluster: not degraded" ": ok"
run 0 "inspect cluster --json" "$bin/foundation-inspect" --segment "$(seg h1)" --json cluster
json "inspect cluster --json" "d['host'] == 'h1' and not d['degraded'] and \
	sorted(h['host'] for h in d['hosts']) == ['h2', 'h3'] and \
	all(h['entries'] == $N for h in d['hosts']) and d['mirrored'] == 2 * $N"
run 0 "metrics" "$bin/foundation-inspect" --segment "$(seg h1)" metrics
out_has "metrics: degraded" "foundation_cluster_degraded{segment=\"$(seg h1)\"} 0"
out_has "metrics: remote entries" "foundation_cluster_remote_entries{segment=\"$(seg h1)\"} 2000"

# 1b. Cluster-unique names: h1 and h2 race for the same key 1 000 times
# (each attempt at the same instant on both): exactly one wins each time,
# the loser is told the winner's host; the winner holds it locally.
t0=$(($(date +%s%3N) + 1000))
for h in h1 h2; do
	"$probe" race "$(seg "$h")" u "$N" "$t0" >"$tmp/race-$h.out" 2>&1 </dev/null &
	echo $! >"$tmp/race-$h.pid"
done
for h in h1 h2; do
	i=0
	until grep -q done "$tmp/race-$h.out" 2>/dev/null; do
		i=$((i + 1))
		[ $i -lt 1200 ] || fail "race: $h did not finish: $(tail -2 "$tmp/race-$h.out")"
		sleep 0.1
	done
done
if grep -q error "$tmp/race-h1.out" "$tmp/race-h2.out"; then
	grep -h error "$tmp/race-h1.out" "$tmp/race-h2.out" | head -3 >"$tmp/out"
	fail "race: an attempt failed"
fi
ok
wins=$(cat "$tmp/race-h1.out" "$tmp/race-h2.out" | grep -c ' won$' || true)
[ "$wins" = "$N" ] || fail "race: $wins wins in $N races"
ok
# Per race: one "won" on one host and "lost <that host>" on the other.
bad=$(awk '$2 == "won" { w[$1] = FILENAME } $2 == "lost" { l[$1] = $3; f[$1] = FILENAME }
	END { n = 0; for (i in w) { split(w[i], p, "race-"); h = substr(p[2], 1, 2);
		if (l[i] != h || f[i] == w[i]) n++ } print n }' "$tmp/race-h1.out" "$tmp/race-h2.out")
[ "$bad" = 0 ] || fail "race: $bad races without exactly one winner named to the loser"
ok
echo "race: $N races, h1 won $(grep -c ' won$' "$tmp/race-h1.out"), h2 won $(grep -c ' won$' "$tmp/race-h2.out")"
for h in h1 h2; do
	sed -n 's/^\([0-9]*\) won$/u-\1/p' "$tmp/race-$h.out" >>"$tmp/local-$h"
done
claims=$(python3 -c 'import base64, json, sys, urllib.request
p = sys.argv[2].encode(); e = p[:-1] + bytes([p[-1] + 1])
b = lambda x: base64.b64encode(x).decode()
q = json.dumps({"key": b(p), "range_end": b(e), "count_only": True}).encode()
print(json.load(urllib.request.urlopen(sys.argv[1] + "/v3/kv/range", q)).get("count", "0"))' \
	"$endpoint" "/foundation/t$$/unique/")
[ "$claims" = "$N" ] || fail "race: $claims claims in etcd, expected $N"
ok
w1=$(sed -n 's/^\([0-9]*\) won$/u-\1/p' "$tmp/race-h1.out" | head -1)
run 0 "unique: held" "$probe" unique "$(seg h2)" "$w1" 2000
out_is "unique: the holder named" "held h1 $(cat "$tmp/race-h1.pid")"
# The same from the shell: foundation-ctl register --cluster-unique.
run 1 "ctl: held elsewhere" "$ctl" --segment "$(seg h2)" register "$w1" --pid $$ --cluster-unique
err_is "ctl: held elsewhere" "foundation-ctl: register \"$w1\": already exists (held by host h1, pid $(cat "$tmp/race-h1.pid"))"
run 0 "ctl: a free key" "$ctl" --segment "$(seg h2)" register ctl-u --pid $$ --cluster-unique \
	--attr role=leader --timeout 3000
echo ctl-u >>"$tmp/local-h2"
run 1 "ctl: now held by h2" "$ctl" --segment "$(seg h1)" register ctl-u --pid $$ --cluster-unique
err_is "ctl: now held by h2" "foundation-ctl: register \"ctl-u\": already exists (held by host h2, pid $$)"
run 2 "ctl: --replace with --cluster-unique" "$ctl" --segment "$(seg h1)" register x --pid $$ \
	--cluster-unique --replace
for h in $hosts; do
	for o in $hosts; do
		[ "$o" = "$h" ] || wait_count "race: $h sees $o" "$h" "$o" \
			"$(wc -l <"$tmp/local-$o")" 60000
	done
done
compare "after the race" "$hosts" "$hosts"
for h in $hosts; do etcd_exact "after the race: etcd" "$h"; done

# 1c. The change feed: each change is in etcd as soon as the agent reads
# it -- 5 s is a generous bound for one poll wake-up and one transaction
# on a loaded machine (there is no rescan period to wait for).
run 0 "feed: register" "$ctl" --segment "$(seg h2)" register feed-1 --pid $$ --attr v=1
etcd_wait "feed: registration published" h2 feed-1 '"value":"1"' 5000
echo "feed: a registration on h2 was in etcd after $took ms (polled every 50 ms)"
run 0 "feed: update" "$ctl" --segment "$(seg h2)" update feed-1 --attr v=2
etcd_wait "feed: update published" h2 feed-1 '"value":"2"' 5000
run 0 "feed: unregister" "$ctl" --segment "$(seg h2)" unregister feed-1
etcd_wait "feed: unregistration published" h2 feed-1 "" 5000
etcd_exact "feed: etcd" h2

# 2. SIGKILL an agent: gone from the others within TTL + 3 s (etcd expires
# a lease up to TTL after its last keepalive and looks every 500 ms; 1.9 to
# 3.2 s here with TTL 3 s, but once more than TTL + 1 s in a CI run under
# ASan), and the others' entries gone from its own segment.
kill -9 "$(cat "$tmp/agent-h3.pid")"
wait "$(cat "$tmp/agent-h3.pid")" 2>/dev/null || true
rm -f "$tmp/agent-h3.pid"
wait_count "SIGKILL: h1 loses h3" h1 h3 0 $((TTL * 1000 + 3000))
echo "SIGKILL: h3's entries left h1 in $took ms (TTL $TTL s)"
wait_count "SIGKILL: h2 loses h3" h2 h3 0 $((TTL * 1000 + 3000))
wait_count "SIGKILL: h3 loses h1 (its reaper)" h3 h1 0 5000
wait_count "SIGKILL: h3 loses h2 (its reaper)" h3 h2 0 5000
compare "after SIGKILL of h3's agent" "h1 h2" "h1 h2"
# Cluster-unique without an agent: a clear error, nothing registered.
run 1 "unique: no agent" "$probe" unique "$(seg h3)" solo-1 2000
out_is "unique: no agent: ECONNREFUSED" "ECONNREFUSED"
run 1 "unique: nothing registered" "$ctl" --segment "$(seg h3)" get solo-1
# Restarted: snapshot at a revision, then watch -- no duplicate, no ghost.
start_agent h3
for o in h1 h2; do wait_count "restart: h3 sees $o" h3 "$o" "$(nloc "$o")" 60000; done
for h in h1 h2; do wait_count "restart: $h sees h3" "$h" h3 $N 60000; done
compare "after the restart of h3's agent" "$hosts" "$hosts"

# 3. SIGSTOP beyond the TTL: h2's entries expire elsewhere, then return.
kill -STOP "$(cat "$tmp/agent-h2.pid")"
wait_count "SIGSTOP: h1 loses h2" h1 h2 0 $((TTL * 1000 + 1000))
wait_count "SIGSTOP: h3 loses h2" h3 h2 0 $((TTL * 1000 + 1000))
compare "h2's agent stopped" "h1 h3" "$hosts"
sleep 1
kill -CONT "$(cat "$tmp/agent-h2.pid")"
for h in h1 h3; do wait_count "SIGCONT: $h sees h2 again" "$h" h2 "$(nloc h2)" 30000; done
compare "h2's agent resumed" "$hosts" "$hosts"

# 4. etcd stopped 10 s while h1 registers: local operations unaffected.
stop_etcd
t0=$(date +%s)
hold h1 late 200
"$ctl" --segment "$(seg h1)" get late-199 >"$tmp/out" 2>"$tmp/err" ||
	fail "etcd down: local lookup on h1"
ok
i=0
until [ "$(status_of h1 degraded)" = true ]; do
	i=$((i + 1))
	[ $i -lt 100 ] || fail "etcd down: h1 not marked degraded"
	sleep 0.1
done
ok
[ "$("$probe" dump "$(seg h2)" | grep -c '^h1 late-')" = 0 ] || fail "h2 saw h1's late entries"
ok
run 1 "unique: etcd down" timeout 10 "$probe" unique "$(seg h1)" solo-2 2000
out_is "unique: etcd down: EHOSTUNREACH" "EHOSTUNREACH"
run 1 "unique: etcd down: nothing registered" "$ctl" --segment "$(seg h1)" get solo-2
run 0 "etcd down: inspect cluster" "$bin/foundation-inspect" --segment "$(seg h1)" cluster
out_has "etcd down: inspect says degraded" "DEGRADED"
sleep $((10 - ($(date +%s) - t0)))
start_etcd
for h in h2 h3; do wait_count "etcd back: $h sees h1" "$h" h1 "$(nloc h1)" 60000; done
for h in $hosts; do
	for o in $hosts; do
		[ "$o" = "$h" ] || wait_count "etcd back: $h sees $o" "$h" "$o" \
			"$(wc -l <"$tmp/local-$o")" 60000
	done
done
compare "etcd back" "$hosts" "$hosts"
i=0
until [ "$(status_of h1 degraded)" = false ]; do
	i=$((i + 1))
	[ $i -lt 100 ] || fail "etcd back: h1 still degraded"
	sleep 0.1
done
ok

# 5. A planned stop revokes the lease: h1's entries leave at once (well
# before the TTL).
kill -TERM "$(cat "$tmp/agent-h1.pid")"
wait_count "SIGTERM: h2 loses h1 before the TTL" h2 h1 0 $((TTL * 1000 - 500))
echo "SIGTERM: h1's entries left h2 in $took ms"
wait "$(cat "$tmp/agent-h1.pid")" 2>/dev/null || fail "SIGTERM: h1's agent exit status"
ok
rm -f "$tmp/agent-h1.pid"
wait_count "SIGTERM: h1 loses h2" h1 h2 0 5000
compare "h1's agent stopped" "h2 h3" "h2 h3"

# 6. An overrun: h4, in a cluster of its own, with a change log of 16
# records.  Bursts of hundreds of changes overwrite the ring faster than
# the agent reads it (the agent's own status writes go through the ring
# too); the agent must resynchronise (snapshot, diff with etcd, subscribe
# from the snapshot's revision) and end with etcd exactly equal to h4's
# local keys.
: >"$tmp/local-h4"
"$ctl" --segment "$(seg h4)" create --entries 4096 --changes 16 >/dev/null 2>&1 ||
	fail "create segment of h4 (--changes 16)"
hold h4 a 300
start_agent h4 "o$$"
etcd_exact "overrun: first snapshot" h4 "o$$" 30000
hold h4 b 400
"$probe" reg "$(seg h4)" c 300 >"$tmp/hold-h4-c.out" 2>&1 </dev/null &
cpid=$!
echo $cpid >"$tmp/hold-h4-c.pid"
i=0
until grep -q ready "$tmp/hold-h4-c.out" 2>/dev/null; do
	i=$((i + 1))
	[ $i -lt 300 ] || fail "overrun: holder c not ready"
	sleep 0.1
done
kill -9 $cpid # its 300 entries: removed by h4's reaper ("removed" changes)
wait $cpid 2>/dev/null || true
rm -f "$tmp/hold-h4-c.pid"
for k in 1 2 3 4 5 6 7 8; do
	"$ctl" --segment "$(seg h4)" register "x-$k" --pid $$ --attr v=$k || fail "overrun: x-$k"
done
for k in 1 2 3 4; do
	"$ctl" --segment "$(seg h4)" unregister "x-$k" || fail "overrun: unregister x-$k"
done
echo x-5 x-6 x-7 x-8 | tr ' ' '\n' >>"$tmp/local-h4"
etcd_exact "overrun: converged" h4 "o$$" 30000
grep -q "change log overrun" "$tmp/agent-h4.log" ||
	fail "overrun: the agent never fell behind its 16-record log (test too gentle)"
ok
echo "overrun: h4's agent resynchronised $(grep -c "change log overrun" "$tmp/agent-h4.log") time(s)"
"$ctl" --segment "$(seg h4)" update x-8 --attr v=88 || fail "overrun: update x-8"
i=0
until ETCDCTL_API=3 "$ETCDCTL" --endpoints "$endpoint" get --print-value-only \
	"/foundation/o$$/hosts/h4/registry/x-8" 2>/dev/null | grep -q '"value":"88"'; do
	i=$((i + 1))
	[ $i -lt 100 ] || fail "overrun: the update of x-8 after the overruns not in etcd in 5 s"
	sleep 0.05
done
ok

echo "$passed passed, 0 failed"
