#!/usr/bin/env python3
"""Sums a LibTorch profile (Chrome trace JSON from llm-bench-model --profile) by operator: total
time of each op name (self time is not in the legacy trace, so nested ops are counted inside their
callers too: read the top-level rows), its calls, and its share of the step.

    build-solutions/programs/llm-bench-model --preset small --threads 2 --steps 2 --profile /tmp/step.json
    python3 benchmarks/profile_summary.py /tmp/step.json --top 30
"""
import argparse
import collections
import json


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("trace")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    events = json.load(open(args.trace))
    if isinstance(events, dict):
        events = events.get("traceEvents", [])
    total = collections.Counter()
    calls = collections.Counter()
    spans = []
    for e in events:
        if e.get("ph") == "X" and "dur" in e:
            total[e["name"]] += e["dur"]
            calls[e["name"]] += 1
            spans.append((e["ts"], e["ts"] + e["dur"]))
    if not spans:
        raise SystemExit("profile_summary: no complete events in " + args.trace)
    wall = max(end for _, end in spans) - min(start for start, _ in spans)
    print(f"step wall time {wall / 1e3:.1f} ms; ops by inclusive time:")
    for name, us in total.most_common(args.top):
        print(f"  {us / 1e3:9.1f} ms  {100 * us / wall:5.1f}%  {calls[name]:5d} calls  {name}")


if __name__ == "__main__":
    main()
