// libFuzzer target: the safetensors reader (common/include/llm/common/safetensors.h). Any bytes
// must give tensors or a SafetensorsError, never a crash, a hang or an out-of-bounds read (ASan).
#include <llm/common/safetensors.h>

#include <cstddef>
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto file = llm::decode_safetensors(std::string(reinterpret_cast<const char*>(data), size), "fuzz");
    // Whatever decodes must encode and decode again to the same tensors.
    auto again = llm::decode_safetensors(llm::encode_safetensors(file.tensors), "re-encoded");
    if (again.tensors.size() != file.tensors.size()) __builtin_trap();
  } catch (const llm::SafetensorsError&) {
  }
  return 0;
}
