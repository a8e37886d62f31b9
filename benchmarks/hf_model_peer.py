#!/usr/bin/python3
"""The PyTorch-eager peer of llm-bench-hf-model: a Hugging Face model folder (LlamaForCausalLM,
Qwen2ForCausalLM, Qwen3ForCausalLM; bf16 safetensors) loaded and run in plain PyTorch (Debian's
python3-torch 1.13, the same ATen the C++ links), measured the same way, printed as the same JSON line.

    /usr/bin/python3 benchmarks/hf_model_peer.py --model DIR --threads 2 --prompt-tokens 512 --new-tokens 64
    bash benchmarks/hf_model.sh                  runs it beside llm-bench-hf-model, alternating

The model's math is tests/interop/hf_reference.py's (transformers' forward written from its modeling
code: rms_norm, rotate_half, repeat_kv, mlp, the RoPE tables, the dtype casts); added here is only what
generation needs and the reference leaves out, a KV cache as transformers' StaticCache keeps one: per
layer k (after RoPE) and v in (1, Hkv, T_max, D) buffers allocated once and filled in place; a new
token's query attends to every cached position (the filled prefix, as llm-bench-hf-model's KVCache
returns it); RoPE at the token's position, read from cos/sin tables computed once for T_max positions.
Activations and matmuls run in the weights' dtype (bf16), as transformers runs a bf16 model; only the
last position goes through lm_head and becomes fp32 logits for the argmax, as generate() asks
(logits_to_keep=1).

Loading is the safetensors library's: safe_open(filename, framework="pt") maps the whole file
(huggingface/safetensors, bindings/python/src/lib.rs, Open::new: torch.ByteStorage.from_file(filename,
shared=False, size=...) on torch 1.11-1.13, UntypedStorage.from_file from 2.0 on, a private mmap), and
get_tensor is a view of that mapping (torch.asarray(storage[begin:end], dtype=uint8).view(dtype)
.reshape(shape)): no copy, the stored dtype kept. Here: mmap (ACCESS_COPY, i.e. MAP_PRIVATE like
shared=False) and torch.frombuffer over the mapping, which is the same thing without the package. A
sharded folder (model.safetensors.index.json) maps each shard. A tied lm_head is the embedding. So
"load" reads only the headers, and resident memory (VmRSS, VmHWM) counts the file's pages as the
model first touches them (the warm-up and prefill), not at load; the C++ reads every tensor into
its own buffer at load.

Measured in the C++ program's order: VmRSS before loading; load (seconds); VmRSS and VmHWM after it;
a seeded random prompt of --prompt-tokens ids; an 8-token warm-up through the cache; prefill (one
forward over the prompt filling the cache, timed); --new-tokens greedy decode steps (timed, from the
prefill's argmax). torch.set_num_threads(--threads), torch.inference_mode().
"""
import argparse
import json
import mmap
import os
import struct
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "interop"))
from hf_reference import (  # noqa: E402  the model math: transformers' forward, independently written
    INDEX_NAME, WEIGHTS_NAME, Spec, config_dtype, mlp, repeat_kv, rms_norm, rope_cos_sin, rope_inv_freq,
    rotate_half)

PROGRAM = "PyTorch eager (python3-torch 1.13)"
WARMUP_TOKENS = 8  # as llm-bench-hf-model
SAFETENSORS_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "I64": torch.int64}
C10_NAMES = {torch.bfloat16: "BFloat16", torch.float32: "Float"}  # the dtype as the C++ prints it


def status_bytes(key):
    """A line of /proc/self/status such as "VmRSS:  123456 kB", in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return -1


# ------------------------------------------------------------------------------------------- loading


def map_safetensors(path):
    """{name: tensor} viewing a private mapping of the file (safe_open(framework="pt") + get_tensor),
    and the bytes of its tensors."""
    with open(path, "rb") as f:
        mapping = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)  # the mapping outlives the descriptor
    (n,) = struct.unpack("<Q", mapping[:8])
    header = json.loads(mapping[8:8 + n])
    header.pop("__metadata__", None)
    tensors, nbytes = {}, 0
    for name, entry in header.items():
        if entry["dtype"] not in SAFETENSORS_DTYPES:
            raise ValueError(f"{path}: {name}: dtype {entry['dtype']} is not one this peer reads")
        dtype, (begin, end) = SAFETENSORS_DTYPES[entry["dtype"]], entry["data_offsets"]
        itemsize = torch.empty((), dtype=dtype).element_size()
        count = (end - begin) // itemsize
        if count == 0:
            tensors[name] = torch.empty(entry["shape"], dtype=dtype)
        else:  # frombuffer keeps a reference to the mapping: the tensors keep it alive
            tensors[name] = torch.frombuffer(mapping, dtype=dtype, count=count, offset=8 + n + begin)
            tensors[name] = tensors[name].view(entry["shape"])
        nbytes += end - begin
    return tensors, nbytes


def load_model(folder):
    """(config, spec, weights, weight_bytes, dtype) of a Hugging Face folder, single-file or sharded. The
    weights stay views of the files when stored in the run dtype (bf16 for a bf16 model; anything else
    runs in fp32, as llm-bench-hf-model's dtype "auto" does)."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder}: no config.json (not a Hugging Face model folder)")
    config = json.loads((folder / "config.json").read_text())
    spec = Spec.of(config)
    if (folder / INDEX_NAME).is_file():
        files = sorted(set(json.loads((folder / INDEX_NAME).read_text())["weight_map"].values()))
    elif (folder / WEIGHTS_NAME).is_file():
        files = [WEIGHTS_NAME]
    else:
        raise FileNotFoundError(f"{folder}: neither {WEIGHTS_NAME} nor {INDEX_NAME}")
    weights, weight_bytes = {}, 0
    for file in files:
        tensors, nbytes = map_safetensors(folder / file)
        weights.update(tensors)
        weight_bytes += nbytes
    dtype = torch.bfloat16 if config_dtype(config) == "bfloat16" else torch.float32
    needed = [name for name, _, _ in spec.parameters()]
    missing = [name for name in needed if name not in weights]
    if missing:
        raise ValueError(f"{folder}: no tensor {missing[0]!r} (and {len(missing) - 1} more) for this config.json")
    weights = {name: weights[name].to(dtype) for name in needed}  # no copy when already in dtype
    return config, spec, weights, weight_bytes, dtype


# ----------------------------------------------------------------------------- forward with a KV cache


class KVCache:
    """Per layer, k (after RoPE) and v in (1, Hkv, T_max, D) buffers allocated once, filled in place."""

    def __init__(self, spec, max_len, dtype):
        shape = (1, spec.kv_heads, max_len, spec.head_dim)
        self.k = [torch.zeros(shape, dtype=dtype) for _ in range(spec.layers)]
        self.v = [torch.zeros(shape, dtype=dtype) for _ in range(spec.layers)]


def cached_attention(x, w, p, spec, cos, sin, mask, cache, layer, pos):
    """hf_reference.attention for positions pos .. pos + T - 1, keys and values of the earlier positions
    read from the cache (cos, sin: the table rows of these positions)."""
    B, T, _ = x.shape

    def project(name, heads):
        bias = w[f"{p}{name}.bias"] if spec.qkv_bias else None
        return F.linear(x, w[f"{p}{name}.weight"], bias).view(B, T, heads, spec.head_dim)

    q, k, v = project("q_proj", spec.heads), project("k_proj", spec.kv_heads), project("v_proj", spec.kv_heads)
    if spec.qk_norm:
        q, k = rms_norm(q, w[f"{p}q_norm.weight"], spec.eps), rms_norm(k, w[f"{p}k_norm.weight"], spec.eps)
    q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    cos, sin = cos[:, None], sin[:, None]
    q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
    cache.k[layer][:, :, pos:pos + T].copy_(k)
    cache.v[layer][:, :, pos:pos + T].copy_(v)
    n_rep = spec.heads // spec.kv_heads
    k, v = repeat_kv(cache.k[layer][:, :, :pos + T], n_rep), repeat_kv(cache.v[layer][:, :, :pos + T], n_rep)
    scores = torch.matmul(q, k.transpose(2, 3)) * spec.head_dim**-0.5
    if mask is not None:
        scores = scores + mask
    probs = F.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
    out = torch.matmul(probs, v).transpose(1, 2).reshape(B, T, spec.heads * spec.head_dim)
    return F.linear(out, w[f"{p}o_proj.weight"], w[f"{p}o_proj.bias"] if spec.o_bias else None)


def forward_cached(spec, w, ids, pos, cache, cos_table, sin_table):
    """fp32 logits (1, 1, vocab) of the last of ids (1, T), at positions pos .. pos + T - 1; fills the cache."""
    T = ids.shape[1]
    h = F.embedding(ids, w["model.embed_tokens.weight"])
    cos, sin = cos_table[:, pos:pos + T], sin_table[:, pos:pos + T]
    mask = None  # one new token sees every cached position; T new ones see the cache and their past
    if T > 1:
        mask = torch.full((T, pos + T), torch.finfo(h.dtype).min, dtype=h.dtype).triu(pos + 1)
    for i in range(spec.layers):
        p = f"model.layers.{i}."
        x = rms_norm(h, w[p + "input_layernorm.weight"], spec.eps)
        h = h + cached_attention(x, w, p + "self_attn.", spec, cos, sin, mask, cache, i, pos)
        x = rms_norm(h, w[p + "post_attention_layernorm.weight"], spec.eps)
        h = h + mlp(x, w, p + "mlp.", spec)
    h = rms_norm(h, w["model.norm.weight"], spec.eps)
    head = w["model.embed_tokens.weight"] if spec.tied else w["lm_head.weight"]
    return F.linear(h[:, -1:], head).float()


# ------------------------------------------------------------------------------------------ benchmark


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="a Hugging Face model folder")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt-tokens", type=int, default=512)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0, help="of the random prompt")
    args = ap.parse_args()
    if min(args.threads, args.prompt_tokens, args.new_tokens) <= 0:
        sys.exit("hf_model_peer: --threads, --prompt-tokens and --new-tokens must be positive")
    if not os.path.isdir(args.model):
        sys.exit(f"hf_model_peer: --model {args.model}: no such folder")
    torch.set_num_threads(args.threads)

    with torch.inference_mode():
        rss_before = status_bytes("VmRSS")
        start = time.perf_counter()
        config, spec, w, weight_bytes, dtype = load_model(args.model)
        load_s = time.perf_counter() - start
        rss_loaded, hwm_loaded = status_bytes("VmRSS"), status_bytes("VmHWM")

        T, n = args.prompt_tokens, args.new_tokens
        max_len = T + n
        if max_len > config["max_position_embeddings"]:  # llm-bench-hf-model's KVCache refuses this too
            sys.exit(f"hf_model_peer: --prompt-tokens {T} + --new-tokens {n} exceed the model's "
                     f"max_position_embeddings {config['max_position_embeddings']}")
        prompt = torch.randint(0, spec.vocab, (1, T), generator=torch.Generator().manual_seed(args.seed))
        cos_table, sin_table = rope_cos_sin(rope_inv_freq(config, spec.head_dim), max_len, dtype)
        cache = KVCache(spec, max_len, dtype)
        forward_cached(spec, w, prompt[:, :WARMUP_TOKENS], 0, cache, cos_table, sin_table)  # warm-up

        start = time.perf_counter()
        logits = forward_cached(spec, w, prompt, 0, cache, cos_table, sin_table)  # the cache restarts at 0
        prefill_s = time.perf_counter() - start
        start = time.perf_counter()
        next_id = logits[:, -1].argmax(-1, keepdim=True)  # (1, 1)
        for step in range(n):
            logits = forward_cached(spec, w, next_id, T + step, cache, cos_table, sin_table)
            next_id = logits[:, -1].argmax(-1, keepdim=True)
        decode_s = time.perf_counter() - start

    print(json.dumps({
        "program": PROGRAM,
        "model": args.model,
        "architecture": config["architectures"][0],
        "parameters": sum(t.numel() for t in w.values()),  # the tied head counted once, as the C++ counts
        "dtype": C10_NAMES[dtype],
        "threads": args.threads,
        "weight_bytes": weight_bytes,
        "load_seconds": load_s,
        "rss_before_load_bytes": rss_before,
        "rss_after_load_bytes": rss_loaded,
        "peak_rss_after_load_bytes": hwm_loaded,
        "peak_rss_bytes": status_bytes("VmHWM"),
        "prefill_tokens": T,
        "prefill_tokens_per_second": T / prefill_s,
        "decode_tokens": n,
        "decode_tokens_per_second": n / decode_s,
    }))


if __name__ == "__main__":
    main()
