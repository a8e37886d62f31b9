// libFuzzer target: lesson 01's YAML run configs and the pipeline's --set overrides. The input is a
// YAML document, then (after the first 0x00) override lines. Every input must give a valid config
// or a llm::ConfigError; never a crash, a hang, or a config that fails its own validate().
#include <llm/cli/config.h>
#include <llm/config/run_config.h>

#include <cstdint>
#include <sstream>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  const size_t cut = input.find('\0');
  const std::string yaml = input.substr(0, cut);
  try {
    const auto config = llm::parse_run_config(yaml);
    config.validate();  // what parse returns is valid
  } catch (const llm::ConfigError&) {
  }
  std::vector<std::string> overrides;
  if (cut != std::string::npos) {
    std::istringstream lines(input.substr(cut + 1));
    std::string line;
    while (std::getline(lines, line)) overrides.push_back(line);
  }
  llm::ModelConfig model;
  llm::TrainConfig train;
  llm::cli::ConfigSections sections;
  sections.add_model("model", model);
  sections.add("train", train);
  try {
    sections.load("", overrides);
    model.validate();
    train.validate();
  } catch (const llm::ConfigError&) {
  }
  return 0;
}
