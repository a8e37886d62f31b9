// Lesson 11 - attention in tiles with an online softmax, as FlashAttention computes it
// (Dao et al. 2022; FlashAttention-2, Dao 2023, algorithms 1 and 2).
//
// Shapes: B batch, H query heads, Hkv key/value heads (G = H / Hkv share one), T queries, Tk keys,
// D head dim; tiles of Bq queries and Bk keys.
//
// Lesson 03 computes the whole (B, H, T, Tk) score matrix, softmaxes it and keeps it for the
// backward pass: memory grows with T^2 (T = 4096, 8 heads: 512 MB per layer in fp32). But softmax
// can be computed a tile of keys at a time, if each query row keeps a running maximum m and a
// running sum l and rescales what it has accumulated whenever m grows:
//
//     for each key tile j:  S   = scale * Q_i K_j^T                      (Bq, Bk)
//                           m'  = max(m, rowmax(S))
//                           P   = exp(S - m')                            (Bq, Bk)
//                           l   = exp(m - m') * l + rowsum(P)
//                           O   = exp(m - m') * O + P V_j                (Bq, D)
//                           m   = m'
//     at the end:           O  /= l,      L = m + log(l)   (the logsumexp of each row)
//
// The result is exactly softmax(S) V: every term was divided by the same exp(max) and the same
// sum, just not at the same time. Only (Bq, Bk) scores exist at once.
//
// Backward without the stored weights: recompute them from L. With D_i = rowsum(dO_i * O_i),
//
//     P = exp(scale * Q_i K_j^T - L_i),   dV_j += P^T dO_i,   dP = dO_i V_j^T,
//     dS = P * (dP - D_i),   dQ_i += scale * dS K_j,   dK_j += scale * dS^T Q_i
//
// (D_i = sum_j P_ij dP_ij, the softmax Jacobian's correction term, computed once from O.) Memory:
// q, k, v, O, dO, L and the gradients, all O(T D), plus one tile; the price is one extra Q K^T.
//
// The same semantics as lesson 03's scaled_dot_product_attention, tested against it:
//   - causal masks are bottom-right aligned (query i sees keys j <= i + Tk - T), as FlashAttention
//     since v2.1 and lesson 03's KV cache;
//   - a query row with every key masked (padding) outputs 0 and gets zero gradients, not NaN;
//   - grouped-query heads: query head h reads key/value head h / G.
// Tiles strictly above the causal diagonal are skipped, so causal attention does half the work.
// Here the tiles are LibTorch matmuls rather than one fused kernel in on-chip memory, so the saving
// is memory, not speed: the point of the lesson is the algorithm. Computed in fp32.
#pragma once

#include <llm/common/todo.h>

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace llm {

struct TiledAttentionOptions {
  bool causal = true;
  torch::Tensor key_padding_mask;  // (B, Tk) bool, true for real keys; or undefined
  int64_t block_q = 128;           // FlashAttention-2's Triton kernel: BLOCK_M = BLOCK_N = 128
  int64_t block_k = 128;
  double scale = 0;  // 0: 1 / sqrt(D)
};

struct TiledForward {
  torch::Tensor out;  // (B, H, T, D) fp32
  torch::Tensor lse;  // (B, H, T) fp32, logsumexp of each score row; -inf for a fully masked row
};

namespace tiled_detail {

// Which keys of tile [k0, k1) the queries of tile [q0, q1) may see: (1|B, 1, 1, Bq, Bk) bool, or an
// undefined tensor when all of them may. Queries are laid out (B, Hkv, G, T, D).
inline torch::Tensor tile_mask(int64_t q0, int64_t q1, int64_t k0, int64_t k1, int64_t T, int64_t Tk,
                               const TiledAttentionOptions& o) {
  torch::Tensor mask;
  const int64_t shift = Tk - T;           // bottom-right alignment
  if (o.causal && k1 - 1 > q0 + shift) {  // some key of the tile lies after some query's diagonal
    auto i = torch::arange(q0, q1, torch::kLong).unsqueeze(1);
    auto j = torch::arange(k0, k1, torch::kLong).unsqueeze(0);
    mask = j.le(i + shift).view({1, 1, 1, q1 - q0, k1 - k0});
  }
  if (o.key_padding_mask.defined()) {
    const int64_t B = o.key_padding_mask.size(0);
    auto pad = o.key_padding_mask.slice(1, k0, k1).to(torch::kBool).view({B, 1, 1, 1, k1 - k0});
    mask = mask.defined() ? mask.logical_and(pad) : pad;
  }
  return mask;
}

// The last key (exclusive) any query of [q0, q1) may see under the causal mask.
inline int64_t key_limit(int64_t q1, int64_t T, int64_t Tk, const TiledAttentionOptions& o) {
  return o.causal ? std::clamp<int64_t>(q1 + Tk - T, 0, Tk) : Tk;
}

inline void check(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                  const TiledAttentionOptions& o) {
  TORCH_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4,
              "tiled_attention: expected q (B, H, T, D), k and v (B, Hkv, Tk, D), got ", q.sizes(), ", ", k.sizes(),
              ", ", v.sizes());
  TORCH_CHECK(k.sizes() == v.sizes() && q.size(0) == k.size(0) && q.size(3) == k.size(3),
              "tiled_attention: q, k and v disagree on B or D, or k and v differ: ", q.sizes(), ", ", k.sizes(), ", ",
              v.sizes());
  TORCH_CHECK(k.size(1) > 0 && q.size(1) % k.size(1) == 0, "tiled_attention: Hkv = ", k.size(1),
              " must divide H = ", q.size(1));
  TORCH_CHECK(o.block_q > 0 && o.block_k > 0, "tiled_attention: block sizes must be positive, got ", o.block_q, " and ",
              o.block_k);
  if (o.key_padding_mask.defined())
    TORCH_CHECK(o.key_padding_mask.dim() == 2 && o.key_padding_mask.size(0) == q.size(0) &&
                    o.key_padding_mask.size(1) == k.size(2),
                "tiled_attention: key_padding_mask must be (B, Tk) = (", q.size(0), ", ", k.size(2), "), got ",
                o.key_padding_mask.sizes());
}

}  // namespace tiled_detail

// The forward pass, tile by tile: out and the logsumexp L, without autograd.
inline TiledForward tiled_attention_forward(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                            const TiledAttentionOptions& options = {}) {
  tiled_detail::check(q, k, v, options);
  torch::NoGradGuard no_grad;
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), D = q.size(3), Hkv = k.size(1), G = H / Hkv;
  [[maybe_unused]] const int64_t Tk = k.size(2);
  [[maybe_unused]] const double scale = options.scale > 0 ? options.scale : 1.0 / std::sqrt(static_cast<double>(D));
  const float inf = std::numeric_limits<float>::infinity();
  auto q5 = q.to(torch::kFloat32).reshape({B, Hkv, G, T, D});  // query head h = kv head h / G, member h % G
  auto k5 = k.to(torch::kFloat32).unsqueeze(2);                // (B, Hkv, 1, Tk, D)
  auto v5 = v.to(torch::kFloat32).unsqueeze(2);
  auto out = torch::zeros({B, Hkv, G, T, D}, torch::kFloat32);
  auto lse = torch::full({B, Hkv, G, T, 1}, -inf, torch::kFloat32);
  // For each query tile i: m = -inf, l = 0, acc = 0 (B, Hkv, G, Bq, 1|D). For each key tile j up to
  // key_limit (tiles entirely above the causal diagonal are skipped):
  //   1. S = scale * Q_i K_j^T; where tile_mask is false, S = -inf.
  //   2. m_new = max(m, rowmax(S)); rows that have seen no visible key yet keep m_new = -inf, so
  //      subtract m_safe = (m_new == -inf ? 0 : m_new) instead to keep exp() finite.
  //   3. P = exp(S - m_safe); alpha = exp(m - m_safe); l = alpha l + rowsum(P); acc = alpha acc + P V_j.
  // Then out_i = acc / l where l > 0 (else 0), lse_i = m + log(l) (-inf where l == 0).
  // BEGIN SOLUTION: tiled_attention_forward(): the online softmax over key tiles, keeping max, sum and logsumexp
  for (int64_t q0 = 0; q0 < T; q0 += options.block_q) {
    const int64_t q1 = std::min(T, q0 + options.block_q);
    auto qi = q5.slice(3, q0, q1);  // (B, Hkv, G, Bq, D)
    auto m = torch::full({B, Hkv, G, q1 - q0, 1}, -inf, torch::kFloat32);
    auto l = torch::zeros({B, Hkv, G, q1 - q0, 1}, torch::kFloat32);
    auto acc = torch::zeros({B, Hkv, G, q1 - q0, D}, torch::kFloat32);
    const int64_t limit = tiled_detail::key_limit(q1, T, Tk, options);
    for (int64_t k0 = 0; k0 < limit; k0 += options.block_k) {
      const int64_t k1 = std::min(Tk, k0 + options.block_k);
      auto s = torch::matmul(qi, k5.slice(3, k0, k1).transpose(-1, -2)) * scale;  // (B, Hkv, G, Bq, Bk)
      auto mask = tiled_detail::tile_mask(q0, q1, k0, k1, T, Tk, options);
      if (mask.defined()) s = s.masked_fill(mask.logical_not(), -inf);
      auto m_new = torch::maximum(m, std::get<0>(s.max(-1, /*keepdim=*/true)));
      auto m_safe = torch::where(m_new.isneginf(), torch::zeros_like(m_new), m_new);
      auto p = torch::exp(s - m_safe);
      auto alpha = torch::exp(m - m_safe);
      l = alpha * l + p.sum(-1, /*keepdim=*/true);
      acc = alpha * acc + torch::matmul(p, v5.slice(3, k0, k1));
      m = m_new;
    }
    auto seen = l.gt(0);
    out.slice(3, q0, q1).copy_(
        torch::where(seen, acc / torch::where(seen, l, torch::ones_like(l)), torch::zeros_like(acc)));
    lse.slice(3, q0, q1).copy_(torch::where(seen, m + torch::log(l), torch::full_like(l, -inf)));
  }
  // END SOLUTION
  return {out.reshape({B, H, T, D}), lse.reshape({B, H, T})};
}

struct TiledGradients {
  torch::Tensor dq, dk, dv;  // q's, k's and v's shapes, fp32
};

// The backward pass by recomputation from L: no (T, Tk) matrix is ever stored.
inline TiledGradients tiled_attention_backward(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                               const TiledForward& forward, const torch::Tensor& grad_out,
                                               const TiledAttentionOptions& options = {}) {
  tiled_detail::check(q, k, v, options);
  torch::NoGradGuard no_grad;
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), D = q.size(3), Hkv = k.size(1), G = H / Hkv;
  [[maybe_unused]] const int64_t Tk = k.size(2);
  [[maybe_unused]] const double scale = options.scale > 0 ? options.scale : 1.0 / std::sqrt(static_cast<double>(D));
  auto q5 = q.to(torch::kFloat32).reshape({B, Hkv, G, T, D});
  auto k5 = k.to(torch::kFloat32).unsqueeze(2);
  auto v5 = v.to(torch::kFloat32).unsqueeze(2);
  auto o5 = forward.out.reshape({B, Hkv, G, T, D});
  auto do5 = grad_out.to(torch::kFloat32).reshape({B, Hkv, G, T, D});
  auto lse = forward.lse.reshape({B, Hkv, G, T, 1});
  auto dq = torch::zeros_like(q5);
  auto dk = torch::zeros({B, Hkv, Tk, D}, torch::kFloat32);
  auto dv = torch::zeros({B, Hkv, Tk, D}, torch::kFloat32);
  // 1. Dsum = rowsum(dO * O)                                            (B, Hkv, G, T, 1)
  // 2. For each query tile i and each key tile j up to key_limit:
  //      P  = exp(scale * Q_i K_j^T - L_i), 0 where tile_mask is false or L_i = -inf (a dead row)
  //      dV_j += P^T dO_i (summed over the G heads sharing the kv head)
  //      dP = dO_i V_j^T;  dS = P * (dP - Dsum_i)
  //      dQ_i += scale * dS K_j;  dK_j += scale * dS^T Q_i (summed over G)
  // BEGIN SOLUTION: tiled_attention_backward(): recompute P from the logsumexp, then dV, dS, dQ, dK tile by tile
  auto dsum = (do5 * o5).sum(-1, /*keepdim=*/true);  // (B, Hkv, G, T, 1)
  auto dead = lse.isneginf();
  auto lse_safe = torch::where(dead, torch::zeros_like(lse), lse);
  for (int64_t q0 = 0; q0 < T; q0 += options.block_q) {
    const int64_t q1 = std::min(T, q0 + options.block_q);
    auto qi = q5.slice(3, q0, q1), doi = do5.slice(3, q0, q1);
    auto li = lse_safe.slice(3, q0, q1), deadi = dead.slice(3, q0, q1), di = dsum.slice(3, q0, q1);
    const int64_t limit = tiled_detail::key_limit(q1, T, Tk, options);
    for (int64_t k0 = 0; k0 < limit; k0 += options.block_k) {
      const int64_t k1 = std::min(Tk, k0 + options.block_k);
      auto kj = k5.slice(3, k0, k1), vj = v5.slice(3, k0, k1);
      auto p = torch::exp(torch::matmul(qi, kj.transpose(-1, -2)) * scale - li);  // (B, Hkv, G, Bq, Bk)
      auto mask = tiled_detail::tile_mask(q0, q1, k0, k1, T, Tk, options);
      auto keep = mask.defined() ? mask.logical_and(deadi.logical_not()) : deadi.logical_not();
      p = p.masked_fill(keep.logical_not(), 0.0);
      dv.slice(2, k0, k1).add_(torch::matmul(p.transpose(-1, -2), doi).sum(2));
      auto ds = p * (torch::matmul(doi, vj.transpose(-1, -2)) - di);
      dq.slice(3, q0, q1).add_(torch::matmul(ds, kj) * scale);
      dk.slice(2, k0, k1).add_(torch::matmul(ds.transpose(-1, -2), qi).sum(2) * scale);
    }
  }
  // END SOLUTION
  return {dq.reshape({B, H, T, D}), dk, dv};
}

// The autograd function: forward saves q, k, v, out and L (no weights), backward recomputes.
// The mask travels as an optional: an undefined at::Tensor argument to apply() is taken for a
// variable, and LibTorch 1.13 then fails with "tensor does not have a device".
struct TiledAttentionFunction : torch::autograd::Function<TiledAttentionFunction> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& q, const torch::Tensor& k,
                               const torch::Tensor& v, const c10::optional<torch::Tensor>& key_padding_mask,
                               bool causal, int64_t block_q, int64_t block_k, double scale) {
    const torch::Tensor mask = key_padding_mask.has_value() ? *key_padding_mask : torch::Tensor();
    TiledAttentionOptions o{causal, mask, block_q, block_k, scale};
    auto f = tiled_attention_forward(q, k, v, o);
    ctx->save_for_backward({q, k, v, f.out, f.lse});
    ctx->saved_data["key_padding_mask"] = mask;
    ctx->saved_data["causal"] = causal;
    ctx->saved_data["block_q"] = block_q;
    ctx->saved_data["block_k"] = block_k;
    ctx->saved_data["scale"] = scale;
    return f.out.to(q.scalar_type());
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad) {
    auto s = ctx->get_saved_variables();
    const auto& saved_mask = ctx->saved_data["key_padding_mask"];
    TiledAttentionOptions o{
        ctx->saved_data["causal"].toBool(), saved_mask.isTensor() ? saved_mask.toTensor() : torch::Tensor(),
        ctx->saved_data["block_q"].toInt(), ctx->saved_data["block_k"].toInt(), ctx->saved_data["scale"].toDouble()};
    auto g = tiled_attention_backward(s[0], s[1], s[2], {s[3], s[4]}, grad[0], o);
    return {g.dq.to(s[0].scalar_type()),
            g.dk.to(s[1].scalar_type()),
            g.dv.to(s[2].scalar_type()),
            torch::Tensor(),
            torch::Tensor(),
            torch::Tensor(),
            torch::Tensor(),
            torch::Tensor()};
  }
};

// q (B, H, T, D), k and v (B, Hkv, Tk, D) -> (B, H, T, D) in q's dtype, differentiable.
inline torch::Tensor tiled_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                     const TiledAttentionOptions& options = {}) {
  tiled_detail::check(q, k, v, options);
  const c10::optional<torch::Tensor> mask =
      options.key_padding_mask.defined() ? c10::optional<torch::Tensor>(options.key_padding_mask) : c10::nullopt;
  return TiledAttentionFunction::apply(q, k, v, mask, options.causal, options.block_q, options.block_k, options.scale);
}

}  // namespace llm
