#!/usr/bin/env bash
# Lessons 11 and 12's memory claims, measured: one process per measurement (peak resident memory
# is a per-process high-water mark), printed as a table.
#
#   attention   lesson 03's attention (the (B, H, T, T) weights kept for backward) against lesson 11's
#               tiled attention (only the logsumexp kept), forward + backward, B 1, H 4, D 64
#   training    peak resident memory of a few fp32 AdamW steps against lesson 12's estimate
#   nf4         bytes per parameter of a 4096 x 4096 weight in NF4 against fp32's 4
#
#   bash benchmarks/memory.sh [build-solutions]      (cmake --build --preset solutions first)
set -euo pipefail
build=${1:-build-solutions}
bench=$build/programs/llm-bench-memory
[ -x "$bench" ] || { echo "memory.sh: $bench not found; run: cmake --preset solutions && cmake --build --preset solutions" >&2; exit 1; }
out=$(mktemp)
for T in 2048 4096 8192; do
  for impl in naive tiled; do "$bench" attention --impl $impl --seq $T >>"$out"; done
done
"$bench" training --preset tiny >>"$out"
"$bench" training --preset small >>"$out"
"$bench" training --preset small --batch 8 --seq 512 >>"$out"
"$bench" training --preset small --lora 8 >>"$out"
"$bench" nf4 >>"$out"
python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("attention, forward + backward, B 1, H 4, D 64, causal (peak resident memory above the inputs)")
print(f"{'T':>6} {'scores fp32':>12} {'lesson 03':>12} {'tiled':>10} {'time 03':>8} {'time tiled':>10}")
att = [r for r in rows if r["bench"] == "attention"]
for T in sorted({r["T"] for r in att}):
    n = next(r for r in att if r["T"] == T and r["impl"] == "naive")
    t = next(r for r in att if r["T"] == T and r["impl"] == "tiled")
    print(f"{T:>6} {n['scores_mb']:>9.0f} MB {n['peak_above_inputs_mb']:>9.0f} MB {t['peak_above_inputs_mb']:>7.0f} MB"
          f" {n['seconds']:>7.2f}s {t['seconds']:>9.2f}s")
print("\ntraining, fp32 AdamW: peak resident memory above the empty process vs estimate_training_memory")
for r in rows:
    if r["bench"] == "training":
        what = f"{r['preset']} B{r['B']} T{r['T']}" + (f" LoRA r{r['lora_r']}" if r["lora_r"] else "")
        print(f"  {what:<24} measured {r['measured_mb']:>6.0f} MB  estimate {r['estimate_mb']:>6.0f} MB"
              f" (weights {r['weights_mb']:.0f}, grads {r['gradients_mb']:.1f}, AdamW {r['optimizer_mb']:.1f},"
              f" activations {r['activations_mb']:.0f})  measured/estimate {r['ratio']:.2f}")
print("\nNF4, a 4096 x 4096 weight")
for r in rows:
    if r["bench"] == "nf4":
        print(f"  double quantisation {str(r['double_quant']).lower():<5} {r['bytes_per_parameter']:.4f} bytes/parameter"
              f" ({r['ratio_to_fp32']:.2f}x smaller than fp32), relative error {r['relative_error']:.3f}")
PY
rm -f "$out"
