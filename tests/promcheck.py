#!/usr/bin/env python3
"""Validate Prometheus text exposition format (version 0.0.4) on stdin.

Checks what a scraper relies on: every line is a comment, blank, or a sample
`name{label="value",...} number`; names and label names are valid; HELP and
TYPE come once per family, before its samples; a family's samples are
contiguous; label values are properly escaped; counters are >= 0 and named
*_total; histograms have cumulative _bucket samples ending in le="+Inf"
equal to _count, and a _sum.  Exit 0 if valid, else 1 with the reason.
"""
import math
import re
import sys

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r"[a-zA-Z_][a-zA-Z0-9_]*"
VALUE = r'"(?:[^"\\\n]|\\[\\"n])*"'
SAMPLE = re.compile(
    rf"^({NAME})(?:\{{((?:{LABEL}={VALUE})(?:,{LABEL}={VALUE})*)?,?\}})?"
    r" (\S+)(?: (-?\d+))?$")
PAIR = re.compile(rf"({LABEL})=({VALUE})")


def fail(n, line, why):
    print(f"line {n}: {why}: {line!r}", file=sys.stderr)
    sys.exit(1)


def number(s):
    if s in ("+Inf", "-Inf", "NaN"):
        return float(s.replace("Inf", "inf").replace("NaN", "nan"))
    return float(s)


def main():
    types, helps, done = {}, set(), set()
    current = None
    hist = {}
    samples = 0
    for n, line in enumerate(sys.stdin.read().split("\n"), 1):
        if line == "":
            continue
        if line.startswith("#"):
            m = re.match(rf"^# (HELP|TYPE) ({NAME}) (.*)$", line)
            if not m:
                if line.startswith("# HELP") or line.startswith("# TYPE"):
                    fail(n, line, "bad HELP/TYPE")
                continue
            kind, name, rest = m.groups()
            if kind == "TYPE":
                if rest not in ("counter", "gauge", "histogram", "summary", "untyped"):
                    fail(n, line, "unknown type")
                if name in types:
                    fail(n, line, "second TYPE")
                types[name] = rest
            else:
                if name in helps:
                    fail(n, line, "second HELP")
                helps.add(name)
            if name in done:
                fail(n, line, "family after its samples")
            continue
        m = SAMPLE.match(line)
        if not m:
            fail(n, line, "not a sample")
        name, labels, val = m.group(1), m.group(2) or "", m.group(3)
        try:
            v = number(val)
        except ValueError:
            fail(n, line, "bad value")
        family = name
        for sfx in ("_bucket", "_sum", "_count"):
            if name.endswith(sfx) and types.get(name[: -len(sfx)]) == "histogram":
                family = name[: -len(sfx)]
        if family not in types:
            fail(n, line, "sample before its TYPE")
        if current != family:
            if family in done:
                fail(n, line, "family not contiguous")
            if current:
                done.add(current)
            current = family
        pairs = dict(PAIR.findall(labels))
        if types[family] == "counter" and (v < 0 or not family.endswith("_total")):
            fail(n, line, "counter negative or not *_total")
        if types[family] == "histogram":
            key = tuple(sorted((k, x) for k, x in pairs.items() if k != "le"))
            h = hist.setdefault((family, key), {"buckets": [], "sum": None, "count": None})
            if name.endswith("_bucket"):
                if "le" not in pairs:
                    fail(n, line, "bucket without le")
                h["buckets"].append((number(pairs["le"].strip('"')), v))
            elif name.endswith("_sum"):
                h["sum"] = v
            else:
                h["count"] = v
        samples += 1
    for (family, _), h in hist.items():
        b = h["buckets"]
        if not b or not math.isinf(b[-1][0]):
            fail(0, family, "histogram without le=+Inf")
        if any(b[i][0] >= b[i + 1][0] or b[i][1] > b[i + 1][1] for i in range(len(b) - 1)):
            fail(0, family, "buckets not increasing and cumulative")
        if h["count"] is None or h["sum"] is None or h["count"] != b[-1][1]:
            fail(0, family, "_count missing or not the +Inf bucket, or _sum missing")
    if samples == 0:
        fail(0, "", "no samples")
    print(f"{samples} samples in {len(types)} families: valid")


main()
