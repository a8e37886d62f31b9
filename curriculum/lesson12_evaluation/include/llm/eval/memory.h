// Lesson 12 - how much memory training takes, counted before it runs.
//
// Shapes: P parameters (Pt of them trainable), B batch, T sequence length, L layers, C width,
// H heads, Hkv key/value heads, D head dim, F MLP width, V vocabulary. Bytes, fp32 training.
//
// Four things live in memory during a training step:
//
//     weights       4 P                 fp32
//     gradients     4 Pt                one per trainable weight
//     optimizer     8 Pt                AdamW's m and v (ZeRO's and Hugging Face's accounting)
//     activations   4 B T (L a + o)     what autograd saves for the backward pass
//
// With bf16 autocast on the CPU the weights stay fp32 (autocast casts copies per op), so the first
// three rows are the fp32 figures; sources that assume a bf16 weight copy plus an fp32 master add
// 2 bytes (18 B/param in Hugging Face's docs against ZeRO's 16). LoRA shrinks Pt, so gradients and
// optimizer state all but vanish; the frozen weights and the activations stay.
//
// Activations are counted from what our Llama saves per token (in floats), following each op's
// backward formula (Korthikanti et al. 2022 do the same for GPT; their 34 s b h assumes fp16 and
// dropout masks, which a CPU Llama does not have):
//
//   each RMSNorm      2 C      its input and its normalised output (for the weight's gradient)
//   q, k, v input     C        the normed x, saved once for the three projections
//   attention         C + 2 Hkv D + H T    q, k and v as the score matmuls see them, and the
//                                          softmax output (H T per token: the T^2 term)
//   o_proj input      C        the heads merged
//   MLP input         C
//   SwiGLU            4 F      gate, silu(gate), up and their product (down_proj's input)
//   per layer  a = 2 (2 C) + C + (C + 2 Hkv D + H T) + C + C + 4 F = 8 C + 2 Hkv D + H T + 4 F
//   outside    o = 3 C + 2 V   the final norm (2 C), lm_head's input (C), the logits and their
//                              gradient (the peak is reached when both exist)
//
// It is an estimate: allocator slack, temporaries inside a backward op and the batch itself are not
// counted. benchmarks/memory.sh measures a training step's peak resident memory against it.
#pragma once

#include <llm/common/todo.h>
#include <llm/config/model_config.h>

#include <cstdint>

namespace llm {

struct TrainingMemory {
  int64_t weights = 0, gradients = 0, optimizer = 0, activations = 0;  // bytes
  int64_t total() const { return weights + gradients + optimizer + activations; }
};

// Activation floats per token of one transformer block (the table above).
inline int64_t activation_floats_per_layer(const ModelConfig& config, int64_t seq_len) {
  LLM_TODO("lesson12: activation_floats_per_layer(): 8 C + 2 Hkv D + H T + 4 F (2 F for the plain GELU MLP)");
}

// trainable < 0: every parameter trains.
inline TrainingMemory estimate_training_memory(const ModelConfig& config, int64_t batch, int64_t seq_len,
                                               int64_t trainable = -1) {
  TORCH_CHECK(batch > 0 && seq_len > 0, "estimate_training_memory: batch and seq_len must be positive, got ", batch,
              " and ", seq_len);
  LLM_TODO("lesson12: estimate_training_memory(): 4 P + 4 Pt + 8 Pt + 4 B T (L a + 3 C + 2 V)");
}

}  // namespace llm
