// Lesson 03 - scaled dot-product attention, the operation at the heart of the transformer.
//
// Shapes: B batch, H heads, Tq query positions, Tk key positions, D head dim.
//
// Vaswani et al. 2017, "Attention Is All You Need", eq. 1:
//
//     Attention(Q, K, V) = softmax( Q K^T / sqrt(D) ) V
//
//   scores  = q @ k^T / sqrt(D)                  (B, H, Tq, Tk)  how much query i wants key j
//   scores  = masked where a query may not look   (-inf for a boolean mask's false; + an additive mask)
//   weights = softmax(scores, over keys)          (B, H, Tq, Tk)  every row sums to 1
//   out     = weights @ v                         (B, H, Tq, D)   a weighted average of values
//
// Why 1/sqrt(D): for q, k with unit-variance entries, q . k has variance D; without the scale the
// softmax saturates as D grows and its gradients vanish.
// Why fp32 scores and softmax: bf16 keeps 8 bits of mantissa, so a score of 20 is rounded by up to
// 0.06, which changes its weight by ~6%; compute in fp32 and cast only the output back. (Under bf16
// autocast, lesson 10, the score matmul runs in bf16 - that is the speed autocast is for - and the
// softmax still accumulates in fp32.)
// Why subtracting the row max (softmax does it for us): exp(1000) overflows, exp(1000 - 1000) does not.
//
// The causal mask lets query i see keys j <= i. With a KV cache the Tq new queries are the *last*
// Tq positions of Tk, so the mask is aligned bottom-right: query i sees keys j <= i + (Tk - Tq).
#pragma once

#include <llm/common/todo.h>

#include <ATen/autocast_mode.h>
#include <torch/torch.h>

#include <optional>

namespace llm {

// true where query i may attend to key j: j <= i + (Tk - Tq).                    (Tq, Tk) bool
inline torch::Tensor causal_mask(int64_t Tq, int64_t Tk, torch::Device device = torch::kCPU) {
  // 1. Check 0 < Tq <= Tk (queries are the last Tq of the Tk positions), naming both as
  //    "Tq = 5" and "Tk = 3": "causal_mask: need 0 < Tq <= Tk, got Tq = 5, Tk = 3".
  // 2. Build a (Tq, Tk) boolean tensor: row i is true for columns 0 .. i + Tk - Tq.
  //    torch::ones({Tq, Tk}, kBool).tril(/*diagonal=*/Tk - Tq) does exactly this.
  // BEGIN SOLUTION: causal_mask(): lower-triangular (Tq, Tk) booleans, aligned bottom-right
  TORCH_CHECK(Tq > 0 && Tq <= Tk, "causal_mask: need 0 < Tq <= Tk, got Tq = ", Tq, ", Tk = ", Tk);
  return torch::ones({Tq, Tk}, torch::TensorOptions().dtype(torch::kBool).device(device)).tril(Tk - Tq);
  // END SOLUTION
}

// Packed rows (lesson 06) hold several documents, and position_ids restart at 0 where each one
// begins: row [a0 a1 a2 b0 b1] has position_ids [0 1 2 0 1]. A token may attend to a key only if
// it is causal *and* in the same document, so no document sees another:
//   document[b, t] = number of zeros in position_ids[b, 0..t]            which document t is in
//   mask[b, i, j]  = j <= i  and  document[b, i] == document[b, j]       (B, 1, T, T) bool
inline torch::Tensor document_causal_mask(const torch::Tensor& position_ids) {
  // 1. Check position_ids is (B, T), naming it and the shape given as sizes() prints it:
  //    "document_causal_mask: position_ids must be (B, T), got [5]".
  // 2. document = cumsum(position_ids == 0, dim 1)                       (B, T)
  // 3. same = document[:, :, None] == document[:, None, :]               (B, T, T)
  // 4. return (same & causal_mask(T, T)) viewed as (B, 1, T, T).
  // BEGIN SOLUTION: document_causal_mask(): causal and within the same document, documents starting where position_ids == 0
  TORCH_CHECK(position_ids.dim() == 2, "document_causal_mask: position_ids must be (B, T), got ", position_ids.sizes());
  const int64_t B = position_ids.size(0), T = position_ids.size(1);
  auto document = position_ids.eq(0).cumsum(1);                 // (B, T)
  auto same = document.unsqueeze(2).eq(document.unsqueeze(1));  // (B, T, T)
  auto mask = same.logical_and(causal_mask(T, T, position_ids.device()));
  return mask.view({B, 1, T, T});
  // END SOLUTION
}

struct AttentionOutput {
  torch::Tensor out;      // (B, H, Tq, Dv), q's dtype
  torch::Tensor weights;  // (B, H, Tq, Tk) float32 (bf16 under autocast), only when return_weights
};

// The causal mask as an additive bias: 0 where query i may attend key j (j <= i + Tk - Tq), -inf
// where it may not.                                                                  (Tq, Tk) float32
inline torch::Tensor causal_bias(int64_t Tq, int64_t Tk, torch::Device device = torch::kCPU) {
  return torch::zeros({Tq, Tk}, torch::TensorOptions().device(device))
      .masked_fill(causal_mask(Tq, Tk, device).logical_not(), -std::numeric_limits<float>::infinity());
}

struct AttentionOptions {
  torch::Tensor mask;    // broadcastable to (B, H, Tq, Tk): bool (true = attend) or additive float
  bool causal = false;   // also apply the causal mask (bottom-right aligned), as a bias in the score matmul
  double dropout = 0.0;  // on the weights, only while training
  bool training = false;
  bool return_weights = false;  // keep the softmax weights (for teaching and plots)
  std::optional<double> scale;  // default 1/sqrt(D)
};

// q: (B, H, Tq, D), k: (B, Hkv, Tk, D), v: (B, Hkv, Tk, Dv) -> out (B, H, Tq, Dv), Hkv dividing H
// (Hkv = H: multi-head attention; lesson 03's attention.h explains grouped-query attention).
// A query row whose keys are all masked gets zero weights and a zero output (a padded query), not NaN.
//
// Speed. The scores are (B, H, Tq, Tk): for a training batch (16, 8, 256, 256) that is 8M floats per
// layer, larger than every other activation, and every pass over them costs more than the matmul
// that made them. So the causal mask goes *into* the matmul as an additive bias - baddbmm computes
// bias + scale q k^T in one pass - instead of a masked_fill after it (which reads and writes the
// scores again forward, again backward, and clones them: about 40% of a training step here,
// measured with LibTorch's profiler). And the dead-row guard (step 4) runs only when a mask can kill
// a row: the causal mask never does (query i always sees key 0), so pretraining skips it.
inline AttentionOutput scaled_dot_product_attention(const torch::Tensor& q, const torch::Tensor& k,
                                                    const torch::Tensor& v, const AttentionOptions& options = {}) {
  // 1. Check shapes: q, k, v 4-D; the same B; k and v the same heads Hkv, which divide q's H; q and
  //    k share D; k and v share Tk. Each message names the shapes involved, as sizes() prints them:
  //    q's and k's for D ("q is [2, 4, 5, 8] but k is [2, 4, 5, 6]: q and k must have the same D"),
  //    k's and v's for Tk ("k is [2, 4, 7, 8] but v is [2, 4, 6, 8]: ..."), all three for B and the
  //    heads ("q [2, 4, 5, 8], k [2, 3, 7, 8] and v [2, 3, 7, 8] must share B, and k and v's heads
  //    must divide q's").
  // 2. Grouped-query attention: G = H / Hkv query heads share each kv head (query head h uses kv
  //    head h / G). With a mask, repeat each kv head G times (Hugging Face's repeat_kv: unsqueeze(2),
  //    expand to (B, Hkv, G, Tk, D), reshape to (B, H, Tk, D)) and go on with G = 1. Without one,
  //    no copy is needed: view q as (B Hkv, G Tq, D) - the G query heads of a kv head stacked as
  //    rows - and multiply it with that kv head's keys directly.
  // 3. scores = bias + scale * q @ k^T on (B Hkv, G Tq, D) x (B Hkv, D, Tk): with options.causal
  //    (and Tq > 1) one torch::baddbmm with bias = causal_bias(Tq, Tk) repeated G times down the
  //    rows; else bmm(q * scale, k^T). View as (B, H, Tq, Tk). Inputs in fp32, except under bf16
  //    autocast (lesson 10, at::autocast::is_cpu_enabled()): there the matmul runs in bf16 whatever
  //    its inputs, so q, k, v keep their dtype and the scores are bf16. The softmax's arithmetic is
  //    fp32 either way (LibTorch's CPU softmax accumulates bf16 in fp32).
  // 4. A bool mask: scores.masked_fill(!mask, -inf). A float mask: scores + mask.
  // 5. Only with a mask: a row whose scores are all -inf (a padded query: every key masked) would
  //    come out of softmax as NaN, and softmax's backward would carry that NaN into q and k. So find
  //    those rows first (row max == -inf), give them finite scores (0) before the softmax, and zero
  //    their weights after. weights = softmax(scores, -1).
  // 6. Dropout on the weights if options.training and dropout > 0 (torch::dropout scales by 1/(1-p)).
  // 7. out = weights @ v in the layout of step 3, viewed as (B, H, Tq, Dv), cast to q's dtype.
  //    Return weights too if asked.
  // BEGIN SOLUTION: scaled_dot_product_attention(): softmax(q k^T / sqrt(D) + mask) v, grouped-query, fp32 softmax
  TORCH_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, "attention: q, k, v must be (B, H, T, D); got q ",
              q.sizes(), ", k ", k.sizes(), ", v ", v.sizes());
  TORCH_CHECK(q.size(0) == k.size(0) && k.size(0) == v.size(0) && k.size(1) == v.size(1) && q.size(1) % k.size(1) == 0,
              "attention: q ", q.sizes(), ", k ", k.sizes(), " and v ", v.sizes(),
              " must share B, and k and v's heads must divide q's (grouped-query attention)");
  TORCH_CHECK(q.size(3) == k.size(3), "attention: q is ", q.sizes(), " but k is ", k.sizes(),
              ": q and k must have the same D");
  TORCH_CHECK(k.size(2) == v.size(2), "attention: k is ", k.sizes(), " but v is ", v.sizes(),
              ": k and v must have the same number of positions");
  const int64_t B = q.size(0), H = q.size(1), Tq = q.size(2), Tk = k.size(2), D = q.size(3), Dv = v.size(3);
  const double scale = options.scale.value_or(1.0 / std::sqrt(static_cast<double>(D)));
  const bool causal = options.causal && Tq > 1;  // one query (decoding) sees every key anyway
  // fp32 inputs, except under bf16 autocast (lesson 10): the matmuls then run in bf16 whatever
  // their inputs, and upcasting q, k, v first would only cost copies there and back.
  const auto compute = at::autocast::is_cpu_enabled() ? q.scalar_type() : torch::kFloat32;
  torch::Tensor kk = k.to(compute), vv = v.to(compute);
  int64_t Hkv = k.size(1);
  if (options.mask.defined() && Hkv < H) {  // a mask is laid out per query head: repeat the kv heads
    auto repeat_kv = [&](const torch::Tensor& t) {
      return t.unsqueeze(2).expand({B, Hkv, H / Hkv, Tk, t.size(3)}).reshape({B, H, Tk, t.size(3)});
    };
    kk = repeat_kv(kk), vv = repeat_kv(vv), Hkv = H;
  }
  const int64_t G = H / Hkv;
  auto q3 = q.to(compute).reshape({B * Hkv, G * Tq, D});   // (B Hkv, G Tq, D): head h = j G + g
  auto kt = kk.reshape({B * Hkv, Tk, D}).transpose(1, 2);  // (B Hkv, D, Tk)
  // Without the causal bias: bmm of the pre-scaled q (scaling q is a pass over (Tq, D), not
  // (Tq, Tk)). Not baddbmm with beta = 0: LibTorch 1.13's CPU baddbmm then multiplies its
  // uninitialised output by 0, and 0 * NaN garbage is NaN (seen in this lesson's tests).
  auto scores = (causal ? torch::baddbmm(causal_bias(Tq, Tk, q.device()).repeat({G, 1}).unsqueeze(0), q3, kt,
                                         /*beta=*/1.0, /*alpha=*/scale)
                        : torch::bmm(q3 * scale, kt))
                    .view({B, H, Tq, Tk});  // (B, H, Tq, Tk)
  torch::Tensor weights;
  if (options.mask.defined()) {
    scores = options.mask.scalar_type() == torch::kBool
                 ? scores.masked_fill(options.mask.logical_not(), -std::numeric_limits<float>::infinity())
                 : scores + options.mask.to(torch::kFloat32);
    auto dead_rows = std::get<0>(scores.max(-1, /*keepdim=*/true)).isneginf();                     // (B,H,Tq,1)
    weights = torch::softmax(scores.masked_fill(dead_rows, 0.0), -1).masked_fill(dead_rows, 0.0);  // (B,H,Tq,Tk)
  } else {
    weights = torch::softmax(scores, -1);  // (B, H, Tq, Tk): every row has a key it may see
  }
  auto used = (options.training && options.dropout > 0) ? torch::dropout(weights, options.dropout, true) : weights;
  auto out = torch::bmm(used.reshape({B * Hkv, G * Tq, Tk}), vv.reshape({B * Hkv, Tk, Dv}))  // (B Hkv, G Tq, Dv)
                 .view({B, H, Tq, Dv})
                 .to(q.scalar_type());  // (B, H, Tq, Dv)
  return {out, options.return_weights ? weights : torch::Tensor()};
  // END SOLUTION
}

}  // namespace llm
