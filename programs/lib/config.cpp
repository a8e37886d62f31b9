#include <llm/cli/config.h>
#include <llm/common/files.h>

#include <algorithm>
#include <fstream>
#include <sstream>

namespace llm::cli {

std::vector<std::string> ConfigSections::names() const {
  std::vector<std::string> out;
  for (const auto& s : sections_) out.push_back(s.name);
  return out;
}

void ConfigSections::load(const std::string& yaml_path, const std::vector<std::string>& overrides) {
  YAML::Node root(YAML::NodeType::Map);
  if (!yaml_path.empty()) {
    std::string text;
    try {
      text = read_file(yaml_path);
    } catch (const std::runtime_error&) {
      throw ConfigError("cannot read config file '" + yaml_path + "'");
    }
    try {
      root = YAML::Load(text);
    } catch (const YAML::Exception& e) {
      throw ConfigError(yaml_path + ": not valid YAML: " + e.what());
    }
    if (!root || root.IsNull()) root = YAML::Node(YAML::NodeType::Map);
    if (!root.IsMap()) throw ConfigError(yaml_path + ": expected a mapping of sections (" + join_names(names()) + ")");
  }
  const std::string source = yaml_path.empty() ? "the defaults" : yaml_path;
  auto section_of = [&](const std::string& key, const std::string& where) -> Section& {
    for (auto& s : sections_) {
      if (s.name == key) return s;
    }
    throw ConfigError(where + ": unknown section '" + key + "'; did you mean '" + nearest_name(key, names()) +
                      "'? valid sections: " + join_names(names()));
  };
  for (const auto& entry : root) section_of(detail::key_text(entry.first, source), source);

  for (const auto& text : overrides) {
    const size_t eq = text.find('=');
    const size_t dot = text.find('.');
    if (eq == std::string::npos || dot == std::string::npos || dot > eq || dot == 0 || dot + 1 == eq) {
      throw ConfigError("--set '" + text + "': expected section.key=value, e.g. train.learning_rate=3e-4");
    }
    const std::string name = text.substr(0, dot), key = text.substr(dot + 1, eq - dot - 1), value = text.substr(eq + 1);
    section_of(name, "--set '" + text + "'");
    if (!root[name] || !root[name].IsMap()) root[name] = YAML::Node(YAML::NodeType::Map);
    root[name][key] = value;  // a scalar: apply_yaml parses it by the field's type, as if from the file
  }

  notes_.clear();
  for (auto entry : root) {
    YAML::Node section = entry.second;
    if (!section.IsMap() || !section["dtype"] || !section["dtype"].IsScalar() || section["dtype"].Scalar() != "auto") {
      continue;
    }
    std::string why;
    const std::string chosen = cpu_has_bf16_instructions(&why) ? "bfloat16" : "float32";
    section["dtype"] = chosen;
    notes_.push_back(entry.first.Scalar() + ".dtype: auto -> " + chosen + " (" + why + ")");
  }

  for (auto& s : sections_) {
    YAML::Node node = root[s.name];
    try {
      if (node && node.IsMap() && node["preset"]) {
        if (!s.preset) throw ConfigError(s.name + ": unknown key 'preset' (only the model section has presets)");
        s.preset(detail::parse_scalar<std::string>(node["preset"], s.name + ".preset", "a string"));
        node.remove("preset");
      }
      s.apply(node);
      s.validate();
    } catch (const ConfigError& e) {
      throw ConfigError(source + (overrides.empty() ? "" : " with the --set overrides") + ": " + e.what());
    }
  }
}

std::string ConfigSections::to_yaml_string() const {
  YAML::Node root;
  for (const auto& s : sections_) root[s.name] = s.emit();
  YAML::Emitter out;
  out << root;
  std::string notes;
  for (const auto& note : notes_) notes += "# " + note + "\n";
  return notes + out.c_str() + "\n";
}

bool cpu_has_bf16_instructions(std::string* why) {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (in && std::getline(in, line)) {
    if (line.rfind("flags", 0) != 0) continue;
    std::istringstream words(line.substr(line.find(':') + 1));
    std::string flag;
    bool avx512_bf16 = false, amx_bf16 = false;
    while (words >> flag) {
      avx512_bf16 |= flag == "avx512_bf16";
      amx_bf16 |= flag == "amx_bf16";
    }
    *why = amx_bf16      ? "this CPU has AMX bf16 instructions"
           : avx512_bf16 ? "this CPU has AVX512-BF16 instructions"
                         : "this CPU has no bf16 instructions (neither avx512_bf16 nor amx_bf16), so bf16 would be "
                           "emulated and many times slower than float32";
    return amx_bf16 || avx512_bf16;
  }
  *why = "/proc/cpuinfo lists no CPU flags, so bf16 instructions cannot be assumed";
  return false;
}

}  // namespace llm::cli
