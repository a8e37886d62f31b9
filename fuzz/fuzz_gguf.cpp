// libFuzzer target: the GGUF reader (common/include/llm/common/gguf.h), which the tests use to read
// our exports back. Any bytes must give a file or a GgufError, never a crash, a hang or an
// out-of-bounds read (ASan); whatever reads must write and read back to the same metadata and tensors.
#include <llm/common/gguf.h>

#include <unistd.h>

#include <cstdint>
#include <filesystem>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path =
      (std::filesystem::temp_directory_path() / ("llm-fuzz-gguf-" + std::to_string(getpid()) + ".gguf")).string();
  try {
    auto file = llm::decode_gguf(std::string(reinterpret_cast<const char*>(data), size), "fuzz");
    llm::write_gguf(path, file);
    auto again = llm::read_gguf(path);
    // The same keys with values of the same types (a float compares unequal to itself when it is NaN).
    if (again.metadata.size() != file.metadata.size() || again.tensors.size() != file.tensors.size()) __builtin_trap();
    for (size_t i = 0; i < file.metadata.size(); ++i) {
      if (again.metadata[i].first != file.metadata[i].first ||
          again.metadata[i].second.index() != file.metadata[i].second.index())
        __builtin_trap();
    }
    for (size_t i = 0; i < file.tensors.size(); ++i) {
      if (again.tensors[i].name != file.tensors[i].name || again.tensors[i].shape != file.tensors[i].shape)
        __builtin_trap();
    }
  } catch (const llm::GgufError&) {
  }
  return 0;
}
