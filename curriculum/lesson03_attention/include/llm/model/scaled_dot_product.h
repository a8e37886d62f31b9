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
  LLM_TODO("lesson03: causal_mask(): lower-triangular (Tq, Tk) booleans, aligned bottom-right");
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
  LLM_TODO("lesson03: document_causal_mask(): causal and within the same document, documents starting where position_ids == 0");
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
  LLM_TODO("lesson03: scaled_dot_product_attention(): softmax(q k^T / sqrt(D) + mask) v, grouped-query, fp32 softmax");
}

}  // namespace llm
