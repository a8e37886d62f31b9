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
#include <vector>

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

// Where one tensor is in a file, as its header says.
struct SafetensorsEntry {
  torch::Dtype dtype;
  std::vector<int64_t> shape;
  uint64_t begin, end;  // byte offsets into the data that follows the header
};

// A file read tensor by tensor: only the header is read (and checked, as decode_safetensors does)
// when it is opened; read_into() then reads one tensor's bytes straight into the tensor that keeps
// them. A model loaded this way never holds a second copy of its weights: Llama-3.2-1B's 2.5 GB
// file needs 2.5 GB, not 5 (read_file + the model).
class SafetensorsReader {
 public:
  explicit SafetensorsReader(const std::string& path);
  ~SafetensorsReader();
  SafetensorsReader(const SafetensorsReader&) = delete;
  SafetensorsReader& operator=(const SafetensorsReader&) = delete;

  const std::string& path() const { return path_; }
  const std::map<std::string, SafetensorsEntry>& entries() const { return entries_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  // Reads tensor `name` into `out`, which must have its shape; a different dtype is converted
  // (through a temporary of that one tensor). Errors name the file and the tensor.
  void read_into(const std::string& name, torch::Tensor& out) const;
  // The tensor as stored.
  torch::Tensor read(const std::string& name) const;

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t data_start_ = 0;
  std::map<std::string, SafetensorsEntry> entries_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace llm
