// libFuzzer target: the checkpoint reader (lesson 10, load_checkpoint). The input is split into
// trainer_state.json, model.safetensors and optimizer.safetensors (at two 0xFF 0x00 0xFF markers);
// when the JSON parses, its recorded sizes and checksums are rewritten to match the files, so the
// fuzzer gets past the checksum check into the safetensors and field parsing. Every input must load
// or fail with a std::runtime_error.
#include <llm/train/checkpoint.h>

#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>

namespace {

std::string dir() {
  static const std::string d = [] {
    auto p = std::filesystem::temp_directory_path() / ("llm-fuzz-checkpoint-" + std::to_string(getpid()));
    std::filesystem::create_directories(p);
    return p.string();
  }();
  return d;
}

void write(const std::string& name, const std::string& bytes) {
  std::ofstream(dir() + "/" + name, std::ios::binary | std::ios::trunc) << bytes;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  const std::string marker("\xFF\x00\xFF", 3);
  std::vector<std::string> parts;
  size_t start = 0;
  for (int i = 0; i < 2; ++i) {
    const size_t at = input.find(marker, start);
    if (at == std::string::npos) break;
    parts.push_back(input.substr(start, at - start));
    start = at + marker.size();
  }
  parts.push_back(input.substr(start));
  while (parts.size() < 3) parts.emplace_back();
  std::string state = parts[0];
  try {
    auto json = nlohmann::json::parse(state);
    if (json.is_object()) {
      json["files"]["model.safetensors"] = {{"bytes", parts[1].size()}, {"xxh64", llm::xxh64_hex(parts[1])}};
      json["files"]["optimizer.safetensors"] = {{"bytes", parts[2].size()}, {"xxh64", llm::xxh64_hex(parts[2])}};
      state = json.dump();
    }
  } catch (const nlohmann::json::exception&) {
  }
  write("trainer_state.json", state);
  write("model.safetensors", parts[1]);
  write("optimizer.safetensors", parts[2]);
  write("COMPLETE", "1\n");
  try {
    llm::load_checkpoint(dir());
  } catch (const std::runtime_error&) {
  }
  return 0;
}
