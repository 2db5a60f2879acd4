#!/usr/bin/env python3
"""check_json.py FILE SCENARIO... - the benchmark JSON is well formed.

Every line of FILE must be one JSON object with the fields of a result
(bench/bench_common.h): scenario, program, loadavg_1m, params, unit,
systems (at least one, each a positive number or a latency object),
ratios, notes and targets; and every SCENARIO named must have at least one
result.  Exit 0, else 1 with the reason on stderr.
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
        for t in obj["targets"]:
            if not all(k in t for k in ("what", "op", "limit", "measured", "met")):
                fail(f"{path}:{no}: malformed target {t!r}")
        seen.add(obj["scenario"])
    missing = sorted(want - seen)
    if missing:
        fail(f"{path}: no result for scenario(s) {', '.join(missing)}")
    print(f"check_json: {path}: {len(lines)} results, scenarios {', '.join(sorted(seen))}")


main()
