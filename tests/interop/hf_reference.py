#!/usr/bin/python3
"""An independent PyTorch reference for Hugging Face checkpoints: the forward pass of transformers'
LlamaForCausalLM, Qwen2ForCausalLM and Qwen3ForCausalLM (eager attention, no KV cache), a safetensors
reader and writer, and a generator of small random Hugging Face model folders with the logits they must
produce. The project's C++ loader is tested against these folders.

Written from the modeling code of github.com/huggingface/transformers, not copied from it:
  src/transformers/models/llama/modeling_llama.py   LlamaRMSNorm, LlamaRotaryEmbedding.forward, rotate_half,
                                                    apply_rotary_pos_emb, repeat_kv, eager_attention_forward,
                                                    LlamaAttention, LlamaMLP, LlamaDecoderLayer, LlamaModel
  src/transformers/modeling_rope_utils.py           _compute_default_rope_parameters, _compute_llama3_parameters,
                                                    RotaryEmbeddingConfigMixin.convert_rope_params_to_dict (5.x)
  src/transformers/models/qwen2/modeling_qwen2.py   Qwen2Attention (q/k/v with bias, o_proj without)
  src/transformers/models/qwen3/modeling_qwen3.py   Qwen3Attention (q_norm/k_norm over head_dim before RoPE)
  src/transformers/models/{llama,qwen2,qwen3}/configuration_*.py   the fields config.json carries
and huggingface_hub's save_torch_state_dict / split_state_dict_into_shards_factory for the sharded layout.
Versions read: modeling_llama.py at 5dd4a635 (4.48), modeling_rope_utils.py at ef468064 (4.45) and a 5.x copy,
modeling_qwen2.py at 00d4b3d2 and modeling_qwen3.py at 9ee3f431 (4.5x), configuration_qwen3.py at 008e5743 (5.x).

The numerics are HF's, dtype casts included: RMSNorm statistics in fp32 and the result cast back before
the weight multiplies; inv_freq in fp32 (kept fp32 as from_pretrained(torch_dtype=...) keeps buffers);
cos/sin computed in fp32 and cast to the activation dtype; scores = (q @ k^T) * head_dim^-0.5 plus an
additive causal mask of finfo(dtype).min; softmax in fp32 cast back to the query dtype; every matmul in
the model dtype; logits returned as fp32.

Run it with /usr/bin/python3 (Debian's torch and numpy import only there):
    /usr/bin/python3 tests/interop/hf_reference.py cases --out DIR
    /usr/bin/python3 tests/interop/hf_reference.py bench-model --out DIR --tokenizer-dir .cache/hf/llama3_2/models
    /usr/bin/python3 tests/interop/hf_reference.py tiny-model --family qwen3 --tokenizer-dir .cache/hf/qwen3/models --out DIR
    /usr/bin/python3 tests/interop/hf_reference.py logits --model DIR --ids 1,2,3 [--dtype bfloat16]
    /usr/bin/python3 tests/interop/hf_reference.py selftest [--out DIR]
`cases` writes one folder per test case (config.json, model.safetensors or shards + index, tokenizer.json,
and reference.safetensors with input_ids, logits (fp32 run) and, for bf16 cases, logits_bf16 (bf16 run)).
"""
import argparse
import json
import math
import shutil
import struct
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

# ----------------------------------------------------------------------------------------- safetensors

_CODES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "I64": torch.int64}
_CODE_OF = {dtype: code for code, dtype in _CODES.items()}


def _as_numpy(t):
    """The tensor's little-endian bytes as a numpy array (numpy has no bfloat16: bf16 goes out as int16)."""
    t = t.detach().contiguous().cpu()
    return (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy()


def _nbytes(dtype, shape):
    return math.prod(shape) * torch.empty((), dtype=dtype).element_size()


def _header(entries):
    """The 8-byte length and the JSON header for (name, dtype, shape) entries laid out in that order."""
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, dtype, shape in entries:
        end = offset + _nbytes(dtype, shape)
        header[name] = {"dtype": _CODE_OF[dtype], "shape": list(shape), "data_offsets": [offset, end]}
        offset = end
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw


def _file_order(names, itemsize):
    """The safetensors library lays tensors out by decreasing alignment, then by name."""
    return sorted(names, key=lambda name: (-itemsize(name), name))


def save_safetensors(path, tensors):
    order = _file_order(tensors, lambda name: tensors[name].element_size())
    with open(path, "wb") as f:
        f.write(_header([(name, tensors[name].dtype, tuple(tensors[name].shape)) for name in order]))
        for name in order:
            f.write(_as_numpy(tensors[name]))


def load_safetensors(path):
    """{name: tensor} of a .safetensors file, whose tensors must fill its data section without gaps."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        header.pop("__metadata__", None)
        out, position = {}, 0
        for name, entry in sorted(header.items(), key=lambda item: item[1]["data_offsets"]):
            dtype, shape = _CODES[entry["dtype"]], entry["shape"]
            begin, end = entry["data_offsets"]
            if begin != position or end - begin != _nbytes(dtype, shape):
                raise ValueError(f"{path}: {name}: data_offsets [{begin}, {end}] leave a gap or do not fit {shape}")
            position = end
            f.seek(8 + n + begin)
            raw = bytearray(f.read(end - begin))
            out[name] = (torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)).reshape(shape)
        return out


# ------------------------------------------------------------------------------ Hugging Face model folders

WEIGHTS_NAME, INDEX_NAME = "model.safetensors", "model.safetensors.index.json"


def greedy_shards(names, nbytes, max_shard_size):
    """huggingface_hub's split: walk the state dict in order, start a new shard when the next tensor would
    overflow max_shard_size (every tensor here is at most max_shard_size, so none needs a shard of its own)."""
    shards, current, size = [], [], 0
    for name in names:
        if current and size + nbytes[name] > max_shard_size:
            shards.append(current)
            current, size = [], 0
        current.append(name)
        size += nbytes[name]
    return shards + [current] if current else shards


def save_weights(folder, tensors, num_shards=1):
    """model.safetensors, or num_shards files model-0000i-of-0000n.safetensors plus the index, split as
    save_torch_state_dict splits with the smallest max_shard_size that gives num_shards shards."""
    folder = Path(folder)
    if num_shards == 1:
        save_safetensors(folder / WEIGHTS_NAME, tensors)
        return
    nbytes = {name: t.numel() * t.element_size() for name, t in tensors.items()}
    low, high = max(nbytes.values()), sum(nbytes.values())
    while low < high:
        mid = (low + high) // 2
        low, high = (low, mid) if len(greedy_shards(tensors, nbytes, mid)) <= num_shards else (mid + 1, high)
    shards = greedy_shards(tensors, nbytes, low)
    if len(shards) != num_shards:
        raise ValueError(f"{len(tensors)} tensors cannot be split greedily into {num_shards} shards")
    weight_map = {}
    for i, shard in enumerate(shards):
        file = f"model-{i + 1:05d}-of-{num_shards:05d}.safetensors"
        save_safetensors(folder / file, {name: tensors[name] for name in shard})
        weight_map.update({name: file for name in shard})
    index = {"metadata": {"total_size": sum(nbytes.values())}, "weight_map": weight_map}
    (folder / INDEX_NAME).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


def load_folder(folder):
    """(config, weights) of a Hugging Face model folder, single-file or sharded."""
    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text())
    if (folder / INDEX_NAME).exists():
        weight_map = json.loads((folder / INDEX_NAME).read_text())["weight_map"]
        weights = {}
        for file in sorted(set(weight_map.values())):
            weights.update(load_safetensors(folder / file))
        if set(weights) != set(weight_map):
            raise ValueError(f"{folder}: the shards hold {sorted(set(weights) ^ set(weight_map))} against the index")
    else:
        weights = load_safetensors(folder / WEIGHTS_NAME)
    return config, weights


def write_json(path, value, sort_keys=True):
    """JSON as transformers writes config.json (sorted keys, indent 2); tokenizer.json keeps its own order."""
    text = json.dumps(value, indent=2, sort_keys=sort_keys, ensure_ascii=False)
    Path(path).write_text(text + "\n", encoding="utf-8")


# ------------------------------------------------------------------------------------ the architecture


@dataclass
class Spec:
    """What the forward pass needs from config.json, read the way transformers reads it."""

    model_type: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    eps: float
    tied: bool
    qkv_bias: bool  # Qwen2 always; Llama and Qwen3 when attention_bias
    o_bias: bool  # Llama and Qwen3 when attention_bias; never Qwen2
    mlp_bias: bool  # Llama's mlp_bias
    qk_norm: bool  # Qwen3

    @staticmethod
    def of(config):
        model_type = config["model_type"]
        if model_type not in ("llama", "qwen2", "qwen3"):
            raise ValueError(f"model_type {model_type!r}: this reference runs llama, qwen2 and qwen3")
        heads = config["num_attention_heads"]
        attention_bias = config.get("attention_bias", False)
        return Spec(
            model_type=model_type,
            hidden=config["hidden_size"],
            layers=config["num_hidden_layers"],
            heads=heads,
            kv_heads=config.get("num_key_value_heads") or heads,
            head_dim=config.get("head_dim") or config["hidden_size"] // heads,
            intermediate=config["intermediate_size"],
            vocab=config["vocab_size"],
            eps=config["rms_norm_eps"],
            tied=config.get("tie_word_embeddings", False),
            qkv_bias=model_type == "qwen2" or attention_bias,
            o_bias=model_type != "qwen2" and attention_bias,
            mlp_bias=model_type == "llama" and config.get("mlp_bias", False),
            qk_norm=model_type == "qwen3",
        )

    def parameters(self):
        """(name, shape, kind) of every weight in HF's state-dict order (module registration order)."""
        H, KV, D, E, I = self.heads, self.kv_heads, self.head_dim, self.hidden, self.intermediate
        out = [("model.embed_tokens.weight", (self.vocab, E), "embedding")]
        for i in range(self.layers):
            p = f"model.layers.{i}."
            for proj, rows, kind in (("q_proj", H * D, "qk"), ("k_proj", KV * D, "qk"), ("v_proj", KV * D, "matrix")):
                out.append((f"{p}self_attn.{proj}.weight", (rows, E), kind))
                if self.qkv_bias:
                    out.append((f"{p}self_attn.{proj}.bias", (rows,), "bias"))
            out.append((f"{p}self_attn.o_proj.weight", (E, H * D), "matrix"))
            if self.o_bias:
                out.append((f"{p}self_attn.o_proj.bias", (E,), "bias"))
            if self.qk_norm:
                out += [(f"{p}self_attn.q_norm.weight", (D,), "norm"), (f"{p}self_attn.k_norm.weight", (D,), "norm")]
            for proj, shape, size in (("gate_proj", (I, E), I), ("up_proj", (I, E), I), ("down_proj", (E, I), E)):
                out.append((f"{p}mlp.{proj}.weight", shape, "matrix"))
                if self.mlp_bias:
                    out.append((f"{p}mlp.{proj}.bias", (size,), "bias"))
            out += [(f"{p}input_layernorm.weight", (E,), "norm"), (f"{p}post_attention_layernorm.weight", (E,), "norm")]
        out.append(("model.norm.weight", (E,), "norm"))
        if not self.tied:
            out.append(("lm_head.weight", (self.vocab, E), "matrix"))
        return out


def rope_parameters(config):
    """transformers 4.x keeps rope_theta at the top and the scaling in rope_scaling; 5.x writes rope_parameters
    (rope_type, rope_theta, ...). 5.x's convert_rope_params_to_dict prefers rope_scaling, then rope_parameters,
    and takes rope_theta from the top level (default 10000) when the dict has none."""
    params = dict(config.get("rope_scaling") or config.get("rope_parameters") or {})
    params.setdefault("rope_type", params.get("type", "default"))
    params.setdefault("rope_theta", config.get("rope_theta", 10000.0))
    return params


def rope_inv_freq(config, head_dim):
    """inv_freq as _compute_default_rope_parameters / _compute_llama3_parameters compute it, in fp32."""
    params = rope_parameters(config)
    base = params["rope_theta"]
    # fp32 from an int64 arange, base ** (2i / dim) as a fp32 power
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    if params["rope_type"] == "default":
        return inv_freq
    if params["rope_type"] != "llama3":
        raise ValueError(f"rope_type {params['rope_type']!r}: this reference implements default and llama3")
    factor, low, high = params["factor"], params["low_freq_factor"], params["high_freq_factor"]
    old_context = params.get("original_max_position_embeddings", config["max_position_embeddings"])
    low_freq_wavelen, high_freq_wavelen = old_context / low, old_context / high
    wavelen = 2 * math.pi / inv_freq
    # long wavelengths are divided by factor, short ones kept, the band between them interpolated
    scaled = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    smooth = (old_context / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < high_freq_wavelen) & ~(wavelen > low_freq_wavelen)
    return torch.where(medium, smoothed, scaled)


def rope_cos_sin(inv_freq, seq_len, dtype):
    """LlamaRotaryEmbedding.forward for position_ids = arange(seq_len)[None]: (1, T, head_dim) cos and sin."""
    positions = torch.arange(seq_len)[None, None, :].float()
    freqs = (inv_freq[None, :, None].float() @ positions).transpose(1, 2)  # fp32, whatever the model dtype
    emb = torch.cat((freqs, freqs), dim=-1)
    attention_scaling = 1.0  # default and llama3 RoPE do not rescale
    return (emb.cos() * attention_scaling).to(dtype), (emb.sin() * attention_scaling).to(dtype)


def rms_norm(x, weight, eps):
    input_dtype = x.dtype
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(input_dtype)  # cast back before the weight: the product is in the model dtype


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def repeat_kv(x, n_rep):
    """(B, KV, T, D) -> (B, KV * n_rep, T, D); query head h reads key/value head h // n_rep."""
    B, KV, T, D = x.shape
    return x if n_rep == 1 else x[:, :, None].expand(B, KV, n_rep, T, D).reshape(B, KV * n_rep, T, D)


def attention(x, w, p, spec, cos, sin, mask):
    B, T, _ = x.shape

    def project(name, heads):
        bias = w[f"{p}{name}.bias"] if spec.qkv_bias else None
        return F.linear(x, w[f"{p}{name}.weight"], bias).view(B, T, heads, spec.head_dim)

    q, k, v = project("q_proj", spec.heads), project("k_proj", spec.kv_heads), project("v_proj", spec.kv_heads)
    if spec.qk_norm:  # Qwen3: one RMSNorm over head_dim, shared by the heads, before the transpose and RoPE
        q, k = rms_norm(q, w[f"{p}q_norm.weight"], spec.eps), rms_norm(k, w[f"{p}k_norm.weight"], spec.eps)
    q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    cos, sin = cos[:, None], sin[:, None]
    q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
    n_rep = spec.heads // spec.kv_heads
    k, v = repeat_kv(k, n_rep), repeat_kv(v, n_rep)
    scores = torch.matmul(q, k.transpose(2, 3)) * spec.head_dim**-0.5 + mask
    probs = F.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)  # softmax in fp32, cast back
    out = torch.matmul(probs, v).transpose(1, 2).reshape(B, T, spec.heads * spec.head_dim)
    return F.linear(out, w[f"{p}o_proj.weight"], w[f"{p}o_proj.bias"] if spec.o_bias else None)


def mlp(x, w, p, spec):
    def linear(name, y):
        return F.linear(y, w[f"{p}{name}.weight"], w[f"{p}{name}.bias"] if spec.mlp_bias else None)

    return linear("down_proj", F.silu(linear("gate_proj", x)) * linear("up_proj", x))


@torch.no_grad()
def forward(config, weights, input_ids, dtype=torch.float32):
    """fp32 logits (B, T, vocab) of a CausalLM run with its weights and activations in dtype."""
    spec = Spec.of(config)
    w = {name: t.to(dtype) for name, t in weights.items()}
    T = input_ids.shape[1]
    h = F.embedding(input_ids, w["model.embed_tokens.weight"])
    cos, sin = rope_cos_sin(rope_inv_freq(config, spec.head_dim), T, h.dtype)
    mask = torch.full((T, T), torch.finfo(dtype).min, dtype=dtype).triu(1)  # added to the scores, as HF does
    for i in range(spec.layers):
        p = f"model.layers.{i}."
        x = rms_norm(h, w[p + "input_layernorm.weight"], spec.eps)
        h = h + attention(x, w, p + "self_attn.", spec, cos, sin, mask)
        x = rms_norm(h, w[p + "post_attention_layernorm.weight"], spec.eps)
        h = h + mlp(x, w, p + "mlp.", spec)
    h = rms_norm(h, w["model.norm.weight"], spec.eps)
    head = w["model.embed_tokens.weight"] if spec.tied else w["lm_head.weight"]
    return F.linear(h, head).float()


# --------------------------------------------------------------------------------- random checkpoints

# HF initialises every matrix with N(0, initializer_range = 0.02). The test cases use larger weights so that
# each sublayer, RoPE and every norm weight move the logits far beyond bf16 rounding, and larger q/k still so
# that attention is far from uniform; the benchmark model keeps HF's 0.02.
CASE_STD = {"embedding": 0.05, "matrix": 0.05, "qk": 0.1}
BENCH_STD = {"embedding": 0.02, "matrix": 0.02, "qk": 0.02}


def random_parameter(kind, shape, generator, std):
    """Matrices N(0, std[kind]); norm weights 1 + 0.1 N(0, 1) (a skipped weight shows); biases 0.1 N(0, 1)."""
    noise = torch.randn(shape, generator=generator)
    if kind == "norm":
        return 1 + 0.1 * noise
    return noise * (0.1 if kind == "bias" else std[kind])


def random_weights(config, seed):
    """Random weights for config under HF's names, in state-dict order, stored in the config's torch_dtype."""
    generator = torch.Generator().manual_seed(seed)
    dtype = getattr(torch, config_dtype(config))
    return {name: random_parameter(kind, shape, generator, CASE_STD).to(dtype)
            for name, shape, kind in Spec.of(config).parameters()}


def llama_config(*, hidden, intermediate, layers, heads, kv_heads, rope_theta, tied, dtype, head_dim=None,
                 rope_scaling=None, eps=1e-5, vocab=320, max_positions=256, bos=256, eos=256, version="4.51.3"):
    """config.json as LlamaConfig.save_pretrained writes it (head_dim only from 4.45 on, hence optional)."""
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "attention_bias": False,
        "attention_dropout": 0.0, "bos_token_id": bos, "eos_token_id": eos, "hidden_act": "silu",
        "hidden_size": hidden, "initializer_range": 0.02, "intermediate_size": intermediate,
        "max_position_embeddings": max_positions, "mlp_bias": False, "num_attention_heads": heads,
        "num_hidden_layers": layers, "num_key_value_heads": kv_heads, "pretraining_tp": 1, "rms_norm_eps": eps,
        "rope_scaling": rope_scaling, "rope_theta": rope_theta, "tie_word_embeddings": tied, "torch_dtype": dtype,
        "transformers_version": version, "use_cache": True, "vocab_size": vocab,
    }
    if head_dim is not None:
        config["head_dim"] = head_dim
    return config


def config_dtype(config):
    """The weights' dtype a config.json names (torch_dtype, or dtype since transformers 4.56)."""
    return config.get("torch_dtype") or config["dtype"]


def qwen_config(model_type, *, hidden, intermediate, layers, heads, kv_heads, tied, dtype, rope_theta,
                head_dim=None, eps=1e-6, vocab=320, max_positions=256, bos=256, eos=256, rope_v5=False):
    """config.json as Qwen2Config / Qwen3Config write it; rope_v5 writes transformers 5's rope_parameters
    (and layer_types) in place of rope_theta and rope_scaling."""
    config = {
        "architectures": [{"qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM"}[model_type]],
        "model_type": model_type, "attention_dropout": 0.0, "bos_token_id": bos, "eos_token_id": eos,
        "hidden_act": "silu", "hidden_size": hidden, "initializer_range": 0.02, "intermediate_size": intermediate,
        "max_position_embeddings": max_positions, "max_window_layers": layers, "num_attention_heads": heads,
        "num_hidden_layers": layers, "num_key_value_heads": kv_heads, "rms_norm_eps": eps,
        "sliding_window": None, "tie_word_embeddings": tied,
        "transformers_version": "5.0.0" if rope_v5 else "4.51.3", "use_cache": True, "use_sliding_window": False,
        "vocab_size": vocab,
    }
    # transformers 4 writes torch_dtype; 4.56 and 5 write dtype.
    config["dtype" if rope_v5 else "torch_dtype"] = dtype
    if model_type == "qwen3":
        config.update(attention_bias=False, head_dim=head_dim)
    if rope_v5:
        config.update(rope_parameters={"rope_type": "default", "rope_theta": rope_theta},
                      layer_types=["full_attention"] * layers)
    else:
        config.update(rope_theta=rope_theta, rope_scaling=None)
    return config


@dataclass
class Case:
    name: str
    config: dict
    seq_len: int
    num_shards: int = 1


def test_cases():
    return [
        Case("llama", llama_config(hidden=64, intermediate=176, layers=2, heads=4, kv_heads=2, head_dim=16,
                                   rope_theta=10000.0, tied=False, dtype="float32"), 40),
        Case("llama3-rope-sharded",
             llama_config(hidden=64, intermediate=128, layers=2, heads=4, kv_heads=2, head_dim=32, rope_theta=500000.0,
                          rope_scaling={"factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                                        "original_max_position_embeddings": 32, "rope_type": "llama3"},
                          tied=False, dtype="bfloat16", eos=[256, 258]), 64, 3),
        # SmolLM2's config.json (written by transformers 4.42) has no head_dim and an integer rope_theta
        Case("smollm2-tied", llama_config(hidden=48, intermediate=128, layers=3, heads=3, kv_heads=1, rope_theta=100000,
                                          tied=True, dtype="float32", version="4.42.3"), 40),
        Case("qwen2-bias", qwen_config("qwen2", hidden=64, intermediate=160, layers=2, heads=4, kv_heads=2,
                                       rope_theta=1000000.0, tied=True, dtype="bfloat16"), 40),
        Case("qwen3-qknorm-sharded", qwen_config("qwen3", hidden=48, head_dim=32, intermediate=128, layers=2, heads=4,
                                                 kv_heads=2, rope_theta=1000000.0, tied=False, dtype="float32",
                                                 eos=258, rope_v5=True), 40, 2),
        Case("qwen3-tied-bf16", qwen_config("qwen3", hidden=64, head_dim=64, intermediate=128, layers=2, heads=2,
                                            kv_heads=1, rope_theta=1000000, tied=True, dtype="bfloat16", eos=258), 40),
    ]


def bytes_to_unicode():
    """GPT-2's printable stand-ins for bytes (openai/gpt-2 encoder.py): printable Latin-1 bytes stand for
    themselves, the other 68 become chr(256 + n) in increasing byte order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    mapping = {b: chr(b) for b in printable} | {b: chr(256 + n) for n, b in enumerate(others)}
    return dict(sorted(mapping.items()))


SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]  # ids 256, 257, 258


def byte_level_tokenizer():
    """A byte-level BPE tokenizer.json without merges: 256 byte tokens and three special tokens."""
    byte_level = {"add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    return {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [{"id": 256 + i, "content": text, "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": True} for i, text in enumerate(SPECIAL_TOKENS)],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", **byte_level},
        "post_processor": {"type": "ByteLevel", **byte_level, "add_prefix_space": True, "trim_offsets": False},
        "decoder": {"type": "ByteLevel", **byte_level, "add_prefix_space": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": {text: b for b, text in bytes_to_unicode().items()}, "merges": []},
    }


def write_case(case, folder, seed):
    folder.mkdir(parents=True, exist_ok=True)
    config = case.config
    weights = random_weights(config, seed)
    write_json(folder / "config.json", config)
    save_weights(folder, weights, case.num_shards)
    write_json(folder / "tokenizer.json", byte_level_tokenizer(), sort_keys=False)
    generator = torch.Generator().manual_seed(seed + 1)
    input_ids = torch.randint(0, 256 + len(SPECIAL_TOKENS), (2, case.seq_len), generator=generator)
    reference = {"input_ids": input_ids, "logits": forward(config, weights, input_ids, torch.float32)}
    if config_dtype(config) == "bfloat16":
        reference["logits_bf16"] = forward(config, weights, input_ids, torch.bfloat16)
    save_safetensors(folder / "reference.safetensors", reference)


def folder_bytes(folder):
    return sum(f.stat().st_size for f in Path(folder).iterdir())


def cases(args):
    torch.set_num_threads(1)  # the reference's sums in one fixed order, whatever the machine
    out, start = Path(args.out), time.perf_counter()
    for i, case in enumerate(test_cases()):
        case_start = time.perf_counter()
        write_case(case, out / case.name, seed=1000 + 10 * i)
        print(f"{case.name:22s} {case.config['architectures'][0]:18s} {config_dtype(case.config):9s} "
              f"{case.num_shards} file(s)  {folder_bytes(out / case.name) / 1e6:6.2f} MB  "
              f"{time.perf_counter() - case_start:5.2f} s")
    print(f"cases: {len(test_cases())} folders under {out} in {time.perf_counter() - start:.2f} s")


# --------------------------------------------------------------------------------------- bench model

CHUNK_ELEMENTS = 1 << 24  # a big tensor is generated and written this many elements at a time


def bench_model(args):
    """Llama-3.2-1B's shape with random bf16 weights: the header first, then each tensor streamed in chunks."""
    start = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    config = llama_config(hidden=2048, intermediate=8192, layers=16, heads=32, kv_heads=8, head_dim=64,
                          vocab=128256, rope_theta=500000.0,
                          rope_scaling={"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                                        "original_max_position_embeddings": 8192, "rope_type": "llama3"},
                          max_positions=131072, tied=True, dtype="bfloat16", bos=128000, eos=[128001, 128008, 128009])
    write_json(out / "config.json", config)
    params = {name: (shape, kind) for name, shape, kind in Spec.of(config).parameters()}
    order = _file_order(params, lambda name: 2)  # all bf16: by name
    path = out / WEIGHTS_NAME
    with open(path, "wb") as f:
        f.write(_header([(name, torch.bfloat16, params[name][0]) for name in order]))
        for index, name in enumerate(order):
            shape, kind = params[name]
            generator = torch.Generator().manual_seed(index)
            rows_per_chunk = max(1, CHUNK_ELEMENTS // math.prod(shape[1:]))
            for row in range(0, shape[0], rows_per_chunk):
                chunk = (min(rows_per_chunk, shape[0] - row), *shape[1:])
                f.write(_as_numpy(random_parameter(kind, chunk, generator, BENCH_STD).to(torch.bfloat16)))
    for file in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(Path(args.tokenizer_dir) / file, out / file)
    print(f"bench-model: {path} {path.stat().st_size / 1e9:.3f} GB ({path.stat().st_size} bytes), "
          f"{sum(math.prod(shape) for shape, _ in params.values()) / 1e9:.3f} B parameters, "
          f"{time.perf_counter() - start:.1f} s")


# ------------------------------------------------------------------------------------------ tiny model


def tiny_model(args):
    """A small random bf16 model with a real tokenizer and chat template: the pipeline tests run every
    program on it (Qwen3's or Llama 3.2's layout and vocabulary, two layers of width 64)."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.family == "qwen3":
        config = qwen_config("qwen3", hidden=64, intermediate=128, layers=2, heads=4, kv_heads=2, head_dim=32,
                             tied=True, dtype="bfloat16", rope_theta=1000000.0, vocab=151936, max_positions=512,
                             bos=151643, eos=151645)
        generation = {"bos_token_id": 151643, "eos_token_id": [151645, 151643], "pad_token_id": 151643}
    elif args.family == "smollm2":  # SmolLM2's layout (tied, no head_dim key) with data/hf/smollm2_style
        config = llama_config(hidden=64, intermediate=128, layers=2, heads=4, kv_heads=2, vocab=320,
                              rope_theta=100000.0, max_positions=512, tied=True, dtype="bfloat16", bos=1, eos=2)
        generation = {"bos_token_id": 1, "eos_token_id": 2}
    else:
        config = llama_config(hidden=64, intermediate=128, layers=2, heads=4, kv_heads=2, head_dim=16, vocab=128256,
                              rope_theta=500000.0,
                              rope_scaling={"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                                            "original_max_position_embeddings": 64, "rope_type": "llama3"},
                              max_positions=512, tied=True, dtype="bfloat16", bos=128000,
                              eos=[128001, 128008, 128009])
        generation = {"bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009]}
    write_json(out / "config.json", config)
    write_json(out / "generation_config.json", generation)
    save_weights(out, random_weights(config, seed=7), 1)
    for file in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(Path(args.tokenizer_dir) / file, out / file)
    print(f"tiny-model: {args.family} in {out} ({folder_bytes(out) / 1e6:.1f} MB)")


# ------------------------------------------------------------------------------------------ logits


def logits(args):
    torch.set_num_threads(1)
    config, weights = load_folder(args.model)
    ids = torch.tensor([[int(i) for i in args.ids.split(",")]])
    json.dump(forward(config, weights, ids, getattr(torch, args.dtype))[0, -1].tolist(), sys.stdout)
    print()


# ----------------------------------------------------------------------------------------- self-test


class Checks:
    """Prints each check as it runs and counts the failures."""

    def __init__(self):
        self.failures = 0

    def __call__(self, ok, what):
        print(f"  {'ok  ' if ok else 'FAIL'} {what}")
        self.failures += not ok


def check_case_folder(check, case, a, b):
    """Two runs wrote the same bytes; the folder holds what HF saves; reading it back gives the stored logits."""
    files = sorted(f.name for f in a.iterdir())
    check(all((a / f).read_bytes() == (b / f).read_bytes() for f in files), f"{case.name}: two runs, same bytes")
    config, weights = load_folder(a)
    spec = Spec.of(config)
    check(set(weights) == {name for name, _, _ in spec.parameters()} and ("lm_head.weight" in weights) != spec.tied,
          f"{case.name}: the tensors HF saves (lm_head.weight only when untied)")
    if case.num_shards > 1:
        index = json.loads((a / INDEX_NAME).read_text())
        shard_files = [f for f in files if f.startswith("model-")]
        in_files = {name: file for file in shard_files for name in load_safetensors(a / file)}
        total = sum(t.numel() * t.element_size() for t in weights.values())
        consistent = in_files == index["weight_map"] and index["metadata"]["total_size"] == total
        check(len(shard_files) == case.num_shards and consistent, f"{case.name}: {case.num_shards} shards, as indexed")
    reference = load_safetensors(a / "reference.safetensors")
    check(torch.equal(forward(config, weights, reference["input_ids"]), reference["logits"]),
          f"{case.name}: the folder read back gives the stored logits")
    if "logits_bf16" in reference:
        gap = (reference["logits_bf16"] - reference["logits"]).abs().max().item()
        scale = reference["logits"].abs().max().item()
        check(gap < 0.05 * scale, f"{case.name}: bf16 within 5% of fp32 (|diff| <= {gap:.4f}, |logit| <= {scale:.2f})")


def selftest(args):
    """Writes the cases twice and checks them, then checks the reference against itself: Qwen2 with zero biases
    is Llama, llama3 RoPE that scales nothing is default RoPE, rope_parameters is read like rope_theta."""
    torch.set_num_threads(1)
    out = Path(args.out or tempfile.mkdtemp(prefix="hf_reference."))
    for run in ("a", "b"):
        cases(argparse.Namespace(out=out / run))
    print("selftest:")
    check = Checks()
    for case in test_cases():
        check_case_folder(check, case, out / "a" / case.name, out / "b" / case.name)

    def same(config_a, weights_a, config_b, weights_b, ids):
        return torch.equal(forward(config_a, weights_a, ids), forward(config_b, weights_b, ids))

    def folder(name):
        config, weights = load_folder(out / "a" / name)
        return config, weights, load_safetensors(out / "a" / name / "reference.safetensors")["input_ids"]

    config, weights, ids = folder("qwen2-bias")
    zero_biases = {name: torch.zeros_like(t) if name.endswith(".bias") else t for name, t in weights.items()}
    as_llama = dict(config, model_type="llama", architectures=["LlamaForCausalLM"], attention_bias=False)
    no_biases = {name: t for name, t in weights.items() if not name.endswith(".bias")}
    check(same(config, zero_biases, as_llama, no_biases, ids), "qwen2 with zero biases == llama")
    check(not same(config, weights, as_llama, no_biases, ids), "qwen2's biases change the logits")

    config, weights, ids = folder("llama3-rope-sharded")
    default = dict(config, rope_scaling=None)
    # factor 1 and every wavelength below original_max_position_embeddings / high_freq_factor: nothing changes
    unscaled = {"factor": 1.0, "original_max_position_embeddings": 10**9}
    neutral = dict(config, rope_scaling=config["rope_scaling"] | unscaled)
    check(same(neutral, weights, default, weights, ids), "llama3 RoPE that scales nothing == default RoPE")
    check(not same(config, weights, default, weights, ids), "llama3 scaling changes the logits at T = 64")

    config, weights, ids = folder("qwen3-qknorm-sharded")
    v4 = {key: value for key, value in config.items() if key != "rope_parameters"}
    read = same(config, weights, dict(v4, rope_theta=1000000.0, rope_scaling=None), weights, ids)
    check(read and not same(config, weights, v4, weights, ids), "rope_parameters' rope_theta is read, not 10000")
    print(f"selftest: {check.failures} failure(s), folders under {out}")
    return 1 if check.failures else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("cases", help="write the test-case model folders")
    c.add_argument("--out", required=True)
    b = sub.add_parser("bench-model", help="write a random bf16 model of Llama-3.2-1B's shape")
    b.add_argument("--out", required=True)
    b.add_argument("--tokenizer-dir", required=True, help="holds tokenizer.json and tokenizer_config.json")
    t = sub.add_parser("tiny-model", help="a small random bf16 model with a real tokenizer and chat template")
    t.add_argument("--family", required=True, choices=["qwen3", "llama3", "smollm2"])
    t.add_argument("--tokenizer-dir", required=True, help="holds tokenizer.json and tokenizer_config.json")
    t.add_argument("--out", required=True)
    lg = sub.add_parser("logits", help="the last position's logits of a model folder, as JSON")
    lg.add_argument("--model", required=True)
    lg.add_argument("--ids", required=True, help="comma-separated token ids")
    lg.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    s = sub.add_parser("selftest", help="write the cases twice and check them")
    s.add_argument("--out", help="scratch folder (default: a new temporary one)")
    args = parser.parse_args()
    commands = {"cases": cases, "bench-model": bench_model, "tiny-model": tiny_model, "logits": logits,
                "selftest": selftest}
    sys.exit(commands[args.command](args))


if __name__ == "__main__":
    main()
