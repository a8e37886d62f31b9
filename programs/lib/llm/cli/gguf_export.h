// A model folder as a GGUF file llama.cpp runs (and ollama and LM Studio, which are built on it).
//
// What goes in, following llama.cpp's own converter (convert_hf_to_gguf.py, the classes for Llama,
// Qwen2 and Qwen3, and gguf-py's constants.py and vocab.py):
//   general.*            architecture (llama, qwen2 or qwen3), name, file_type
//   <arch>.*             context_length, embedding_length, block_count, feed_forward_length,
//                        attention.head_count(_kv), attention.key_length / value_length,
//                        attention.layer_norm_rms_epsilon, rope.freq_base, rope.dimension_count,
//                        vocab_size; counts as u32 and floats as f32, the types llama.cpp checks
//   tokenizer.ggml.*     model "gpt2" (byte-level BPE), pre (the name of the pre-tokenizer regex
//                        llama.cpp must use: gpt-2, llama-bpe, qwen2 or smollm; see below), tokens
//                        (GPT-2's byte stand-ins, as in vocab.json), token_type, merges ("a b"), the
//                        bos / eos / eot / padding ids and add_bos_token
//   tokenizer.chat_template   the Jinja template, as tokenizer_config.json has it
//   tensors              Hugging Face's names mapped to llama.cpp's (model.layers.3.mlp.up_proj.weight ->
//                        blk.3.ffn_up.weight), norms and biases in F32, the matrices in the requested
//                        type; no output.weight when the embedding is tied (llama.cpp reuses token_embd)
//
// Two things are easy to get wrong. llama.cpp's "llama" architecture rotates adjacent channel pairs
// (2i, 2i + 1), Meta's original layout, while Hugging Face's checkpoints were permuted to pair
// (i, i + D/2) (lesson 02's kHalf), so q_proj and k_proj rows are permuted back head by head
// (convert_hf_to_gguf.py, LlamaModel.permute); Qwen2 and Qwen3 use the half layout in llama.cpp too
// and are written as they are. And Llama 3's RoPE scaling is no key but a tensor, rope_freqs.weight:
// for every pair the factor its frequency is divided by (LlamaModel.generate_extra_tensors).
//
// The pre-tokenizer is chosen by comparing this tokenizer's regex steps with the ones llama.cpp
// implements for each name (src/llama-vocab.cpp): a tokenizer whose regexes llama.cpp has no name for
// is refused, because under another name it would split text differently.
#pragma once

#include <llm/cli/hf_folder.h>
#include <llm/common/gguf.h>

#include <string>

namespace llm::cli {

// float32, float16, bfloat16 or q8_0 (Q8_0; tensors whose rows are not a multiple of 32 in F16, as
// llama.cpp's converter does).
GgufFile gguf_of(const HfModel& model, const std::string& dtype);

// gguf_of, written atomically to `path` (which must not exist).
void export_gguf(const HfModel& model, const std::string& path, const std::string& dtype);

// The tokenizer.ggml.pre name of a tokenizer's pre-tokenizer; throws naming what llama.cpp lacks.
std::string llama_cpp_pre_tokenizer(const BpeTokenizer& tokenizer);

}  // namespace llm::cli
