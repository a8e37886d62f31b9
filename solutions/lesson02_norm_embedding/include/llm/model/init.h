// Lesson 02 (given) - building a model that a checkpoint is about to fill.
//
// A layer initialises its weights when it is built (Linear: Kaiming-uniform; TokenEmbedding:
// N(0, 0.02); lesson 05's CausalLM: GPT-2's scheme). For a model whose weights are loaded from a
// file right after, that work is thrown away: for Llama-3.2-1B it is 1.2 billion random numbers
// and, in float32, 4.9 GB of memory for a model stored in 2.5 GB of bf16. While a DeferredInit is
// alive, the layers of lessons 02-05 allocate their parameters in its dtype and leave them
// uninitialised; the loader then writes every one of them. transformers' from_pretrained does the
// same (modeling_utils.py: the no_init_weights context and torch_dtype).
//
// The default dtype is process-wide, so build models under a DeferredInit from one thread at a time.
#pragma once

#include <c10/core/DefaultDtype.h>
#include <torch/torch.h>

namespace llm {

class DeferredInit {
 public:
  explicit DeferredInit(torch::Dtype dtype) : previous_(c10::get_default_dtype()), was_active_(flag()) {
    c10::set_default_dtype(caffe2::TypeMeta::fromScalarType(dtype));
    flag() = true;
  }
  ~DeferredInit() {
    c10::set_default_dtype(previous_);
    flag() = was_active_;
  }
  DeferredInit(const DeferredInit&) = delete;
  DeferredInit& operator=(const DeferredInit&) = delete;

  // True while a DeferredInit is alive: layers skip their random initialisation.
  static bool active() { return flag(); }

 private:
  static bool& flag() {
    static bool on = false;
    return on;
  }
  caffe2::TypeMeta previous_;
  bool was_active_;
};

}  // namespace llm
