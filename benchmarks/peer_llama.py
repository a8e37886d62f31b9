#!/usr/bin/python3
"""The PyTorch-eager peer: the project's Llama written plainly in PyTorch (Debian's python3-torch,
the same ATen 1.13 the C++ links), to measure our training speed against and to check our model
folders against an independent implementation.

    /usr/bin/python3 benchmarks/peer_llama.py train --preset small --threads 2 --dtype bfloat16
    /usr/bin/python3 benchmarks/peer_llama.py logits --model runs/demo/pretrain/final --ids 1,2,3

The model follows Hugging Face's LlamaForCausalLM (transformers/models/llama/modeling_llama.py):
RMSNorm (weight * x * rsqrt(mean(x^2) + eps), statistics in fp32), rotate-half RoPE with
inv_freq = theta^(-2i/D), grouped-query attention with repeat_kv, a causal softmax in fp32, SwiGLU
(down(silu(gate(x)) * up(x))), no biases, an optional tied lm_head. `train` times the same step as
llm-bench-model: forward, cross-entropy, backward, clip to 1.0, AdamW (decay on matrices only), on
random tokens of the given shape. `logits` loads a model folder (config.json + model.safetensors,
read here without the safetensors package) and prints the logits of the given ids as JSON.
(Run it with /usr/bin/python3: Debian's torch imports only there.)
"""
import argparse
import json
import math
import struct
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

PRESETS = {  # the C++ ModelConfig presets (lesson 01)
    "tiny": dict(vocab_size=4096, hidden_size=128, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2),
    "small": dict(vocab_size=4096, hidden_size=256, num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=4),
    "medium": dict(vocab_size=8192, hidden_size=512, num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=4),
}


def llama_ffn(hidden, multiple_of=16):
    f = 2 * 4 * hidden // 3
    return multiple_of * ((f + multiple_of - 1) // multiple_of)


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.h, self.hkv = c["num_attention_heads"], c["num_key_value_heads"]
        self.d = c["hidden_size"] // self.h
        C = c["hidden_size"]
        self.q_proj = nn.Linear(C, self.h * self.d, bias=False)
        self.k_proj = nn.Linear(C, self.hkv * self.d, bias=False)
        self.v_proj = nn.Linear(C, self.hkv * self.d, bias=False)
        self.o_proj = nn.Linear(self.h * self.d, C, bias=False)

    def forward(self, x, cos, sin, mask):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.h, self.d).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.hkv, self.d).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.hkv, self.d).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        g = self.h // self.hkv
        k = k[:, :, None].expand(B, self.hkv, g, T, self.d).reshape(B, self.h, T, self.d)  # repeat_kv
        v = v[:, :, None].expand(B, self.hkv, g, T, self.d).reshape(B, self.h, T, self.d)
        scores = (q @ k.transpose(-2, -1)).float() / math.sqrt(self.d)
        scores = scores.masked_fill(~mask, float("-inf"))
        w = torch.softmax(scores, dim=-1).to(v.dtype)
        y = (w @ v).transpose(1, 2).reshape(B, T, self.h * self.d)
        return self.o_proj(y)


class MLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        C, Fh = c["hidden_size"], c["intermediate_size"]
        self.gate_proj = nn.Linear(C, Fh, bias=False)
        self.up_proj = nn.Linear(C, Fh, bias=False)
        self.down_proj = nn.Linear(Fh, C, bias=False)
        self.act = F.silu if c.get("hidden_act", "silu") == "silu" else F.gelu

    def forward(self, x):
        return self.down_proj(self.act(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.input_layernorm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.self_attn = Attention(c)
        self.post_attention_layernorm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.mlp = MLP(c)

    def forward(self, x, cos, sin, mask):
        h = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        return h + self.mlp(self.post_attention_layernorm(h))


class LlamaModel(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed_tokens = nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.layers = nn.ModuleList(Block(c) for _ in range(c["num_hidden_layers"]))
        self.norm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])


class LlamaForCausalLM(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.model = LlamaModel(c)
        self.tied = c.get("tie_word_embeddings", False)
        if not self.tied:
            self.lm_head = nn.Linear(c["hidden_size"], c["vocab_size"], bias=False)
        d = c["hidden_size"] // c["num_attention_heads"]
        # Hugging Face's LlamaRotaryEmbedding: inv_freq and the angles in fp32 (the C++ uses fp64
        # angles: the same to ~1e-6 at the positions compared here).
        inv_freq = 1.0 / (c["rope_theta"] ** (torch.arange(0, d, 2, dtype=torch.int64).float() / d))
        angles = torch.arange(c["max_position_embeddings"]).float()[:, None] * inv_freq[None, :]
        emb = torch.cat((angles, angles), dim=-1)
        self.register_buffer("cos", emb.cos(), persistent=False)
        self.register_buffer("sin", emb.sin(), persistent=False)
        for name, p in self.named_parameters():  # GPT-2's initialisation, as lesson 05
            if name.endswith("norm.weight"):
                nn.init.ones_(p)
            elif name.endswith(("o_proj.weight", "down_proj.weight")):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * c["num_hidden_layers"]))
            else:
                nn.init.normal_(p, 0.0, 0.02)

    def forward(self, ids):
        T = ids.shape[1]
        x = self.model.embed_tokens(ids)
        cos, sin = self.cos[:T], self.sin[:T]
        mask = torch.ones(T, T, dtype=torch.bool, device=ids.device).tril()
        for layer in self.model.layers:
            x = layer(x, cos, sin, mask)
        x = self.model.norm(x)
        w = self.model.embed_tokens.weight if self.tied else self.lm_head.weight
        return (x @ w.t() if self.tied else self.lm_head(x)).float()


def read_safetensors(path):
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    dtypes = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16, "I64": torch.int64}
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        raw = bytearray(data[8 + n + b : 8 + n + end])
        out[name] = torch.frombuffer(raw, dtype=dtypes[e["dtype"]]).reshape(e["shape"]).clone()
    return out


def load_folder(path):
    c = json.load(open(f"{path}/config.json"))
    assert c["model_type"] == "llama", c["model_type"]
    model = LlamaForCausalLM(c)
    weights = read_safetensors(f"{path}/model.safetensors")
    weights.pop("lm_head.weight", None) if model.tied else None
    missing, unexpected = model.load_state_dict({k: v.float() for k, v in weights.items()}, strict=False)
    if missing or unexpected:
        sys.exit(f"peer: {path}: missing {missing}, unexpected {unexpected}")
    return model.eval()


def train(args):
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    c = dict(PRESETS[args.preset])
    c.update(intermediate_size=llama_ffn(c["hidden_size"]), max_position_embeddings=max(256, args.seq_len),
             rope_theta=10000.0, rms_norm_eps=1e-6)
    model = LlamaForCausalLM(c)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
                            lr=1e-3, betas=(0.9, 0.95), eps=1e-8)
    ids = torch.randint(0, c["vocab_size"], (args.batch, args.seq_len + 1))
    bf16 = args.dtype == "bfloat16"

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(ids[:, :-1])
            loss = F.cross_entropy(logits.reshape(-1, c["vocab_size"]), ids[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    step(), step()  # warm-up
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    dt = time.perf_counter() - start
    n = sum(p.numel() for p in model.parameters())
    print(f"peer: preset {args.preset} ({n / 1e6:.2f}M parameters), {args.threads} threads")
    print(f"training   B {args.batch} x T {args.seq_len}, {args.dtype}, AdamW: "
          f"{args.batch * args.seq_len * args.steps / dt:9.0f} tokens/s  ({dt / args.steps:.3f} s/step)")


def logits(args):
    torch.set_num_threads(args.threads)
    model = load_folder(args.model)
    ids = torch.tensor([[int(i) for i in args.ids.split(",")]])
    with torch.no_grad():
        out = model(ids)[0]
    json.dump(out.tolist(), sys.stdout)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="time training steps")
    t.add_argument("--preset", default="small", choices=sorted(PRESETS))
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    t.add_argument("--batch", type=int, default=16)
    t.add_argument("--seq-len", type=int, default=256)
    t.add_argument("--steps", type=int, default=10)
    lg = sub.add_parser("logits", help="logits of a model folder for some ids, as JSON")
    lg.add_argument("--model", required=True)
    lg.add_argument("--ids", required=True, help="comma-separated token ids")
    lg.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    train(args) if args.command == "train" else logits(args)


if __name__ == "__main__":
    main()
