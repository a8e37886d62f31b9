// safetensors: the tensor file format of the Hugging Face ecosystem, read and written here.
//
//     8 bytes        N, the header length, little-endian uint64
//     N bytes        a JSON object: {"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]},
//                    ..., "__metadata__": {"format": "pt"}}, padded with spaces to a multiple of 8
//     the rest       the tensors' raw little-endian bytes; offsets are relative to its start
//
// No pickle, no code: a reader only has to trust a JSON header, which this one checks completely
// (every offset inside the data, no overlap, the whole data covered, each shape matching its byte
// count) so a truncated or corrupted file is an error that says what is wrong, never a crash.
// transformers refuses a file whose __metadata__ lacks "format": "pt" (modeling_utils), so it is
// always written. Debian has no safetensors library; the format is small enough to own.
#pragma once

#include <llm/common/files.h>

#include <torch/torch.h>

#include <map>
#include <stdexcept>
#include <string>

// The definitions are in common/src/safetensors.cpp, compiled once into llm_common.
namespace llm {

struct SafetensorsError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

using TensorMap = std::map<std::string, torch::Tensor>;

struct SafetensorsFile {
  TensorMap tensors;
  std::map<std::string, std::string> metadata;
};

// The file's bytes. Tensors are written in name order (std::map), contiguous, on the CPU; the
// dtypes F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL, any other one a SafetensorsError.
std::string encode_safetensors(const TensorMap& tensors, const std::map<std::string, std::string>& metadata = {});

// encode_safetensors, then write_file_atomically (llm/common/files.h): never a half-written file.
void save_safetensors(const std::string& path, const TensorMap& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// Parses a whole file's bytes, checking everything the format requires; `where` names it in errors.
SafetensorsFile decode_safetensors(const std::string& bytes, const std::string& where);

// read_file, then decode_safetensors; an unreadable file is a SafetensorsError naming the path.
SafetensorsFile load_safetensors(const std::string& path);

}  // namespace llm
