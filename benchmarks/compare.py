#!/usr/bin/env python3
"""Our training speed against the PyTorch-eager peer, measured side by side.

Runs llm-bench-model (ours) and benchmarks/peer_llama.py (the same Llama, data shape, optimizer and
thread count in plain PyTorch, Debian's python3-torch on the same ATen) in alternating rounds, so
that both see the same machine: this machine is shared and its speed drifts, and only figures taken
in one run, interleaved, can be compared. Prints every round's tokens/s and the ratio ours/peer,
then the medians.

    python3 benchmarks/compare.py                       small preset, 2 threads, 3 rounds, fp32 and bf16
    python3 benchmarks/compare.py --preset tiny --rounds 5 --dtypes bfloat16
    python3 benchmarks/compare.py --ours build/programs/llm-bench-model     your own build

The peer's best mode is the faster of its fp32 and bf16-autocast runs; the target is ours >= 2x that.

The peer runs as users run PyTorch: python3 with glibc's malloc. Much of our lead is the allocator
(the C++ links tcmalloc: glibc maps and unmaps every block over 32 MB, so each large activation is
page-faulted afresh), so the peer is also run with tcmalloc preloaded (LD_PRELOAD), and both ratios
are printed: the honest comparison of the code alone is the second.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tokens_per_s(output):
    m = re.search(r"training .*?:\s+([0-9.]+) tokens/s", output)
    if not m:
        sys.exit("compare: no 'tokens/s' in the output:\n" + output)
    return float(m.group(1))


TCMALLOC = "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"


def run(cmd, preload=None):
    env = dict(os.environ, LD_PRELOAD=preload) if preload else None
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        sys.exit(f"compare: {' '.join(cmd)} failed ({p.returncode}):\n{p.stdout}{p.stderr}")
    return tokens_per_s(p.stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ours", default=os.path.join(ROOT, "build-solutions/programs/llm-bench-model"))
    ap.add_argument("--preset", default="small")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dtypes", default="float32,bfloat16")
    args = ap.parse_args()
    if not os.path.exists(args.ours):
        sys.exit(f"compare: {args.ours} does not exist; build it (cmake --build --preset solutions)")
    dtypes = args.dtypes.split(",")
    common = ["--preset", args.preset, "--threads", str(args.threads), "--steps", str(args.steps)]
    ours = {d: [] for d in dtypes}
    peer = {d: [] for d in dtypes}
    peer_tc = {d: [] for d in dtypes}
    print(f"preset {args.preset}, B 16 x T 256, AdamW, {args.threads} threads, {args.rounds} rounds (tokens/s)")
    for r in range(args.rounds):
        for d in dtypes:
            o = run([args.ours, *common, "--dtype", d, "--train-only"])
            peer_cmd = ["/usr/bin/python3", os.path.join(ROOT, "benchmarks/peer_llama.py"), "train", *common, "--dtype", d]
            p = run(peer_cmd)
            t = run(peer_cmd, TCMALLOC)
            ours[d].append(o)
            peer[d].append(p)
            peer_tc[d].append(t)
            print(f"round {r + 1}  {d:>8}:  ours {o:8.0f}   peer {p:8.0f} (ratio {o / p:5.2f})   "
                  f"peer+tcmalloc {t:8.0f} (ratio {o / t:5.2f})", flush=True)
    print("medians:")
    for d in dtypes:
        mo, mp, mt = (statistics.median(x[d]) for x in (ours, peer, peer_tc))
        print(f"  {d:>8}:  ours {mo:8.0f}   peer {mp:8.0f} (ratio {mo / mp:5.2f})   "
              f"peer+tcmalloc {mt:8.0f} (ratio {mo / mt:5.2f})")
    best_ours, best_peer, best_tc = (max(statistics.median(v) for v in x.values()) for x in (ours, peer, peer_tc))
    print(f"best modes: ours {best_ours:.0f}; peer {best_peer:.0f}: {best_ours / best_peer:.2f}x (target >= 2x); "
          f"peer with tcmalloc {best_tc:.0f}: {best_ours / best_tc:.2f}x")


if __name__ == "__main__":
    main()
