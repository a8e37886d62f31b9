// libFuzzer target: the safetensors readers (common/include/llm/common/safetensors.h), the one that
// decodes a whole file in memory and the one that reads a file tensor by tensor (model folders).
// Any bytes must give tensors or a SafetensorsError, never a crash, a hang or an out-of-bounds read
// (ASan), and both readers must agree.
#include <llm/common/safetensors.h>

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path =
      (std::filesystem::temp_directory_path() / ("llm-fuzz-safetensors-" + std::to_string(getpid()))).string();
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  bool decoded = false;
  size_t count = 0;
  try {
    auto file = llm::decode_safetensors(bytes, "fuzz");
    decoded = true;
    count = file.tensors.size();
    // Whatever decodes must encode and decode again to the same tensors.
    auto again = llm::decode_safetensors(llm::encode_safetensors(file.tensors), "re-encoded");
    if (again.tensors.size() != file.tensors.size()) __builtin_trap();
  } catch (const llm::SafetensorsError&) {
  }
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
  try {
    llm::SafetensorsReader reader(path);
    if (!decoded || reader.entries().size() != count) __builtin_trap();  // the two readers disagree
    for (const auto& [name, entry] : reader.entries()) reader.read(name);
  } catch (const llm::SafetensorsError&) {
    if (decoded) __builtin_trap();
  }
  return 0;
}
