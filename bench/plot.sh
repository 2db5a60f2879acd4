#!/bin/sh
# plot.sh OUT.png RESULTS.json... - render the benchmarks' JSON with gnuplot.
#
# Three panels: lookup hits and lookup misses (lookups/s against table size,
# log-log, one line per system) and reaper latency (SIGKILL -> entries gone,
# p50/p99/max per entry count, with the 1 ms target).  The JSON lines come
# from `fdn-bench --json-file` and `fdn-bench-registry --json-file`;
# python3 turns them into gnuplot data files, bench/plot.gp draws them.
set -eu

if [ $# -lt 2 ]; then
	echo "usage: sh bench/plot.sh OUT.png RESULTS.json..." >&2
	exit 2
fi
out=$1
shift
here=$(cd "$(dirname "$0")" && pwd)
for p in gnuplot python3; do
	command -v $p >/dev/null 2>&1 || {
		echo "plot.sh: $p not found (Debian: apt-get install gnuplot-nox python3)" >&2
		exit 1
	}
done
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fdn-plot-XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

python3 - "$tmp" "$@" <<'PY'
import json, sys
tmp, files = sys.argv[1], sys.argv[2:]
res = []
for f in files:
    with open(f, encoding="utf-8") as fh:
        res += [json.loads(l) for l in fh if l.strip()]
res = [r for r in res if "scenario" in r]  # machine-state lines apart

def table(scenario, name):
    rows = [r for r in res if r["scenario"] == scenario]
    systems = []
    for r in rows:
        for s in r["systems"]:
            if s not in systems:
                systems.append(s)
    sizes = sorted({r["params"]["entries"] for r in rows})
    with open(f"{tmp}/{name}.dat", "w") as o:
        o.write("entries " + " ".join(systems) + "\n")
        for n in sizes:
            r = next(r for r in rows if r["params"]["entries"] == n)
            o.write(f"{n} " + " ".join(str(r["systems"].get(s, "NaN")) for s in systems) + "\n")
    return len(systems), sizes

nh, sizes = table("lookup_hit", "hit")
nm, _ = table("lookup_miss", "miss")
with open(f"{tmp}/reaper.dat", "w") as o:
    for r in res:
        if r["scenario"] == "reaper_latency" and "foundation_watch" in r["systems"]:
            w = r["systems"]["foundation_watch"]
            o.write(f"\"E={r['params']['entries']}\" {w['p50_us']} {w['p99_us']} {w['max_us']}\n")
loads = sorted({r["loadavg_1m"] for r in res})
with open(f"{tmp}/vars.gp", "w") as o:
    o.write(f"nhit = {nh}\nnmiss = {nm}\n")
    o.write(f"xmin = {min(sizes) / 2 if sizes else 1000}\nxmax = {max(sizes) * 2 if sizes else 1e7}\n")
    o.write(f"loads = \"load average {loads[0]:.2f}..{loads[-1]:.2f} during the run\"\n" if loads else "loads = \"\"\n")
PY

gnuplot -e "dir='$tmp'; out='$out'" "$here/plot.gp"
echo "plot.sh: wrote $out"
