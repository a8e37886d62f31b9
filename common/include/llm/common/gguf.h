// GGUF: the file format of llama.cpp (and ollama, LM Studio on top of it), written and read here.
//
//     u32 magic "GGUF" | u32 version (3) | u64 tensor count | u64 metadata count
//     metadata:     key (u64 length + bytes) | u32 value type | value
//     tensor infos: name | u32 dims | u64 ne[dims] | u32 ggml type | u64 offset into the data
//     zero padding to the alignment (32 bytes), then the tensors' data, each at a multiple of it
//
// (ggml-org/ggml, docs/gguf.md; llama.cpp's ggml/src/gguf.cpp reads it.) Two conventions trip
// people up. The dimensions are ggml's ne, innermost first: a PyTorch tensor of shape (out, in) is
// written with ne = {in, out}, its bytes unchanged. And llama.cpp checks the *type* of every key it
// reads, with no conversion: a count written as u64 where it expects u32 fails the load ("key
// llama.context_length has wrong type u64 but expected type u32"), although the spec's convention
// is u64 (checked with llama.cpp v0.4.0, the one node-llama-cpp 3.21.1 bundles). So a value here is
// written in exactly the C++ type it is given: uint32_t, int32_t, float, bool, string, or an array
// of strings or int32.
//
// Tensor types: F32, F16, BF16, and Q8_0 (blocks of 32 weights along ne0, each an fp16 scale d and
// 32 int8 q with x ~ d q, d = max|x| / 127; ggml-common.h block_q8_0, ggml-quants.c
// quantize_row_q8_0_ref).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <utility>
#include <variant>
#include <vector>

// The definitions are in common/src/gguf.cpp, compiled once into llm_common.
namespace llm {

struct GgufError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

enum class GgmlType : uint32_t { kF32 = 0, kF16 = 1, kQ8_0 = 8, kBF16 = 30 };

std::string ggml_type_name(GgmlType type);

using GgufValue =
    std::variant<uint32_t, int32_t, float, bool, std::string, std::vector<std::string>, std::vector<int32_t>, uint64_t>;

struct GgufTensor {
  std::string name;
  GgmlType type = GgmlType::kF32;
  std::vector<int64_t> shape;  // PyTorch's order (outermost first); written reversed, as ggml's ne
  // The tensor to convert and write (any float dtype, any device); kept as given until written, so
  // a writer of a 2.5 GB model never holds a second copy of all of it.
  torch::Tensor data;
};

struct GgufFile {
  std::vector<std::pair<std::string, GgufValue>> metadata;  // in the order written
  std::vector<GgufTensor> tensors;
  uint32_t alignment = 32;

  const GgufValue* find(const std::string& key) const;
  // The value of `key` as T; throws GgufError naming the key if it is missing or of another type.
  template <typename T>
  const T& get(const std::string& key) const {
    const GgufValue* v = find(key);
    if (v == nullptr) throw GgufError("GGUF: no metadata key '" + key + "'");
    if (!std::holds_alternative<T>(*v)) throw GgufError("GGUF: metadata key '" + key + "' has another type");
    return std::get<T>(*v);
  }
};

// The bytes a tensor takes in a GGUF file of `type`; Q8_0 needs the innermost dimension to be a
// multiple of 32 (GgufError otherwise).
uint64_t ggml_nbytes(GgmlType type, const std::vector<int64_t>& shape);
// A tensor's values as `type` stores them: F32, F16 and BF16 rounded to nearest even, Q8_0 as above.
std::string encode_ggml(const torch::Tensor& t, GgmlType type);
// The values of a tensor stored as `type`, as float32 (Q8_0: d q).
torch::Tensor decode_ggml(const std::string& bytes, GgmlType type, const std::vector<int64_t>& shape);

// Writes `file` to `path` atomically (a temporary name, then a rename): never a half-written file.
void write_gguf(const std::string& path, const GgufFile& file);

// Reads a whole file's bytes, checking everything (sizes, types, offsets, alignment) so that a
// truncated or corrupt file is a GgufError that says what is wrong. The tensors come back as float32
// (decode_ggml), with their stored type in `type`.
GgufFile decode_gguf(const std::string& bytes, const std::string& where);
GgufFile read_gguf(const std::string& path);

}  // namespace llm
