#!/usr/bin/env python3
"""check_json.py FILE SCENARIO... - the benchmark JSON is well formed.

Every line of FILE must be one JSON object with the fields of a result
(bench/bench_common.h): scenario, program, loadavg_1m, params, unit,
systems (at least one, each a positive number or a latency object),
ratios, notes and targets; a result measured in interleaved rounds also
has rounds, systems_spread and ratios_spread ([min, p10, p90, max] of the
per-round values, ordered, around the median reported); the lines
{"machine": "start"|"end", ...} carry the machine's state (load average,
CPU, kernel, huge-page settings, the segment directory's file system), both
must be there; and every SCENARIO named must have at least one result.
Exit 0, else 1 with the reason on stderr.
"""
import json
import sys


def fail(msg):
    print(f"check_json: {msg}", file=sys.stderr)
    sys.exit(1)


def main():
    if len(sys.argv) < 2:
        fail("usage: check_json.py FILE SCENARIO...")
    path, want = sys.argv[1], set(sys.argv[2:])
    seen = set()
    machine = set()
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    if not lines:
        fail(f"{path}: empty")
    for no, line in enumerate(lines, 1):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            fail(f"{path}:{no}: not JSON: {e}")
        if not isinstance(obj, dict):
            fail(f"{path}:{no}: not an object")
        if "machine" in obj:
            for k in ("program", "loadavg", "cpu_model", "kernel", "thp_anon", "thp_shmem",
                      "shm_dir", "shm_fs", "shm_mount_options"):
                if not isinstance(obj.get(k), str):
                    fail(f"{path}:{no}: machine state without {k!r}")
            if not isinstance(obj.get("nproc"), int) or obj["nproc"] < 1:
                fail(f"{path}:{no}: machine state without nproc")
            machine.add(obj["machine"])
            continue
        for k, t in (("scenario", str), ("program", str), ("loadavg_1m", (int, float)),
                     ("params", dict), ("unit", str), ("systems", dict),
                     ("ratios", dict), ("notes", dict), ("targets", list)):
            if not isinstance(obj.get(k), t):
                fail(f"{path}:{no}: field {k!r} missing or of the wrong type")
        if not obj["systems"]:
            fail(f"{path}:{no}: {obj['scenario']}: no system measured")
        for name, v in obj["systems"].items():
            if isinstance(v, dict):
                if not all(isinstance(v.get(q), (int, float)) and v[q] >= 0
                           for q in ("p50_us", "p99_us", "max_us")):
                    fail(f"{path}:{no}: {name}: latency without p50/p99/max")
            elif not isinstance(v, (int, float)) or v <= 0:
                fail(f"{path}:{no}: {name}: value {v!r} is not a positive number")
        n = sum(1 for v in obj["systems"].values() if not isinstance(v, dict))
        if n and len(obj["ratios"]) != n * (n - 1):
            fail(f"{path}:{no}: {len(obj['ratios'])} ratios for {n} systems")
        if "rounds" in obj:
            if not isinstance(obj["rounds"], int) or obj["rounds"] < 1:
                fail(f"{path}:{no}: rounds {obj['rounds']!r}")
            for field, med in (("systems_spread", obj["systems"]), ("ratios_spread", obj["ratios"])):
                spread = obj.get(field)
                if not isinstance(spread, dict):
                    fail(f"{path}:{no}: {field} missing")
                for name, q in spread.items():
                    m = med.get(name)
                    if (not isinstance(q, list) or len(q) != 4 or not isinstance(m, (int, float))
                            or not q[0] <= q[1] <= q[2] <= q[3]
                            or not q[0] * 0.999 <= m <= q[3] * 1.001):
                        fail(f"{path}:{no}: {field}[{name}] = {q!r} around {m!r}")
        for t in obj["targets"]:
            if not all(k in t for k in ("what", "op", "limit", "measured", "met")):
                fail(f"{path}:{no}: malformed target {t!r}")
        seen.add(obj["scenario"])
    if machine != {"start", "end"}:
        fail(f"{path}: machine state at start and end expected, got {sorted(machine)}")
    missing = sorted(want - seen)
    if missing:
        fail(f"{path}: no result for scenario(s) {', '.join(missing)}")
    print(f"check_json: {path}: {len(lines) - len(machine)} results, scenarios {', '.join(sorted(seen))}")


main()
