#!/bin/sh
# bench_cluster.sh - foundation-mirrord's figures against a real etcd on
# loopback (docs/cluster.md, "Figures"): two simulated hosts A and B, each a
# segment + reaper + agent.
#   - propagation latency: a key registered on A until B's segment holds it
#     (fdn_cluster_lookup on B, polled every 50 us), p50 / p99 / max over
#     N keys: A's agent publishes each change as the change feed delivers
#     it (no rescan period), so this is one wake-up, one etcd transaction
#     and one watch event;
#   - lookups on B: a local fdn_lookup, fdn_cluster_lookup of a key that
#     only A holds (every holder: one lookup per host), and fdn_lookup of
#     that remote entry's own key (0x00 A 0x00 key), ns per call;
#   - the rate of local changes the agent carries to the other host: COUNT
#     keys registered at once on A, until B holds them all.
# Prints one line per figure, and first the machine's load (the figures of
# a shared machine depend on it); with OUT set, also writes them there.
#
# usage: bench_cluster.sh BUILD_DIR [N [COUNT]]
set -eu
build=${1:?usage: bench_cluster.sh BUILD_DIR [N [COUNT]]}
N=${2:-200}
COUNT=${3:-20000}
bin="$build/tools"
probe="$build/tests/cluster_probe"
export FOUNDATION_REAPERD="$bin/foundation-reaperd"
tmp=$(mktemp -d)
pids=""
cleanup() {
	for p in $pids; do kill -9 "$p" 2>/dev/null || true; done
	for h in A B; do "$bin/foundation-ctl" --segment "fdn-benchcl-$$-$h" destroy >/dev/null 2>&1 || true; done
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cp=$(port) pp=$(port)
ep="http://127.0.0.1:$cp"
/usr/bin/etcd --name b --data-dir "$tmp/etcd" --listen-client-urls "$ep" --advertise-client-urls "$ep" \
	--listen-peer-urls "http://127.0.0.1:$pp" --initial-advertise-peer-urls "http://127.0.0.1:$pp" \
	--initial-cluster "b=http://127.0.0.1:$pp" >"$tmp/etcd.log" 2>&1 &
pids="$pids $!"
until curl -s -m 1 "$ep/health" | grep -q true; do sleep 0.1; done
for h in A B; do
	"$bin/foundation-ctl" --segment "fdn-benchcl-$$-$h" create --entries 65536 >/dev/null
done
agents() {
	for h in A B; do
		"$bin/foundation-mirrord" --segment "fdn-benchcl-$$-$h" --endpoints "$ep" \
			--cluster "bench$1" --host "$h" >>"$tmp/agent.log" 2>&1 &
		eval "agent_$h=$!"
		pids="$pids $!"
	done
	sleep 2
}
stop_agents() {
	kill -TERM "$agent_A" "$agent_B"
	wait "$agent_A" "$agent_B" 2>/dev/null || true
}
out=""
say() {
	echo "$1"
	out="$out$1
"
}
say "load $(cut -d' ' -f1-3 /proc/loadavg) cpus $(nproc)"
agents lat
say "feed propagation $("$probe" latency "fdn-benchcl-$$-A" "fdn-benchcl-$$-B" "$N")"
stop_agents
agents burst
"$probe" reg "fdn-benchcl-$$-A" only-on-a 1 >"$tmp/hold" &
pids="$pids $!"
"$probe" reg "fdn-benchcl-$$-B" local-on-b 1 >"$tmp/holdb" &
pids="$pids $!"
"$probe" wait "fdn-benchcl-$$-B" A 1 30000 >/dev/null
say "lookups $("$probe" lookups "fdn-benchcl-$$-B" local-on-b-0 only-on-a-0 1000000 A)"
say "feed burst $("$probe" burst "fdn-benchcl-$$-A" "fdn-benchcl-$$-B" A "$COUNT")"
stop_agents
if [ -n "${OUT:-}" ]; then printf '%s' "$out" >"$OUT"; fi
