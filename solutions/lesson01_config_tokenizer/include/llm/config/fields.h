// Lesson 01 - reading a config struct from YAML, and the errors a person can act on.
//
// A config struct lists its fields once, as (name, pointer to member, help) rows:
//
//     {"hidden_size", &ModelConfig::hidden_size, "model width C"}
//
// and everything else - loading, saving, the list of valid keys, "did you mean" - is written once
// here against that table, for every config struct.
//
// The errors are the point of this file. A typo in a YAML file must not silently train the wrong
// model, so an unknown key is an error that names the key and suggests the nearest valid one by
// edit distance, and a value of the wrong type names the key, the expected type and what was found.
#pragma once

#include <llm/common/todo.h>

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

namespace llm {

struct ConfigError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

template <typename Config>
struct Field {
  using Member = std::variant<int64_t Config::*, double Config::*, bool Config::*, std::string Config::*>;
  const char* name;
  Member member;
  const char* help;
};

// Levenshtein distance: the fewest single-character insertions, deletions and substitutions that
// turn a into b. "num_layers" -> "num_hidden_layers" is 7 insertions; "hiden_size" -> "hidden_size" 1.
inline int64_t edit_distance(const std::string& a, const std::string& b) {
  // Dynamic programming over prefixes, one row at a time:
  //   d[i][j] = distance between a[:i] and b[:j]
  //   d[0][j] = j,  d[i][0] = i
  //   d[i][j] = min(d[i-1][j] + 1,                          delete a[i-1]
  //                 d[i][j-1] + 1,                          insert b[j-1]
  //                 d[i-1][j-1] + (a[i-1] != b[j-1]))       substitute (free if equal)
  // Keep only the previous row: O(|b|) memory.
  // BEGIN SOLUTION: edit_distance(): Levenshtein distance by dynamic programming over prefixes
  std::vector<int64_t> prev(b.size() + 1), row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = static_cast<int64_t>(j);
  for (size_t i = 1; i <= a.size(); ++i) {
    row[0] = static_cast<int64_t>(i);
    for (size_t j = 1; j <= b.size(); ++j) {
      row[j] = std::min({prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1] ? 1 : 0)});
    }
    std::swap(prev, row);
  }
  return prev[b.size()];
  // END SOLUTION
}

// The valid name closest to `unknown` by edit distance (the first one on a tie).
inline std::string nearest_name(const std::string& unknown, const std::vector<std::string>& valid) {
  std::string best;
  int64_t best_distance = INT64_MAX;
  for (const auto& name : valid) {
    const int64_t d = edit_distance(unknown, name);
    if (d < best_distance) best = name, best_distance = d;
  }
  return best;
}

inline std::string join_names(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& name : names) out += (out.empty() ? "" : ", ") + name;
  return out;
}

// Throws ConfigError "<section>.<name> must be positive, got <value>" unless value > 0.
inline void require_positive(const char* section, const char* name, int64_t value) {
  if (value <= 0) {
    throw ConfigError(std::string(section) + "." + name + " must be positive, got " + std::to_string(value));
  }
}

template <typename Config>
std::vector<std::string> field_names() {
  std::vector<std::string> names;
  for (const auto& field : Config::fields()) names.emplace_back(field.name);
  return names;
}

namespace detail {

// A mapping's key as text. YAML allows any node as a key ("? [a, b]: 1"); a config key must be a
// plain name, and saying so beats yaml-cpp's "bad conversion" escaping as an unrelated exception.
inline std::string key_text(const YAML::Node& key, const std::string& section) {
  if (!key.IsScalar()) {
    throw ConfigError(section + ": a key must be a plain name, got " + (key.IsSequence() ? "a list" : "a mapping"));
  }
  return key.Scalar();
}

inline std::string scalar_text(const YAML::Node& node) {
  if (node.IsScalar()) return "'" + node.Scalar() + "'";
  if (node.IsSequence()) return "a list";
  if (node.IsMap()) return "a mapping";
  return "nothing";
}

// node.as<T>() with an error that names the key, the expected type and the value found.
template <typename T>
T parse_scalar(const YAML::Node& node, const std::string& where, const char* type_name) {
  if (node.IsScalar()) {
    try {
      if constexpr (std::is_same_v<T, int64_t>) {
        // Only decimal integers, all the way through: yaml-cpp itself reads 0x10 as 16 and 010 as 8
        // (YAML 1.1 octal), and rejects 4.5 without saying which key or why.
        const std::string& text = node.Scalar();
        size_t used = 0;
        const long long value = std::stoll(text, &used);
        if (used == text.size()) return value;
      } else {
        return node.as<T>();
      }
    } catch (const std::exception&) {
    }
  }
  throw ConfigError(where + " must be " + type_name + ", got " + scalar_text(node));
}

// The shortest "%g" text that reads back as exactly `value`: 3e-4 is written "0.0003", where
// yaml-cpp's own conversion prints all 17 digits ("0.00029999999999999997").
inline std::string shortest_decimal(double value) {
  char text[32];
  for (int digits = 1; digits <= 17; ++digits) {
    std::snprintf(text, sizeof(text), "%.*g", digits, value);
    if (std::strtod(text, nullptr) == value) break;
  }
  return text;
}

}  // namespace detail

// Sets the fields named in `node` (a YAML mapping) and leaves the others at their current values.
// `section` names the mapping in error messages, e.g. "model".
template <typename Config>
void apply_yaml(Config& config, const YAML::Node& node, const std::string& section) {
  // 1. A missing or null node changes nothing. Anything else that is not a mapping is an error
  //    ("<section>: expected a mapping of key: value, got <detail::scalar_text(node)>").
  // 2. For every key in the mapping, read it with detail::key_text(key, section), which throws
  //    "<section>: a key must be a plain name, got a list" (or "a mapping") for a key that is not a
  //    plain scalar, and find the field with that name in Config::fields().
  //    No such field: throw ConfigError "<section>: unknown key '<key>'; did you mean '<nearest>'?
  //    valid keys: <all names>" (nearest_name, join_names and field_names do the work).
  // 3. Parse the value with the field's type and store it through the pointer to member:
  //    std::visit over field.member, detail::parse_scalar<T>(value, "<section>.<key>", "<type name>")
  //    with the type names "an integer", "a number", "true or false", "a string".
  // BEGIN SOLUTION: apply_yaml(): look every key up in Config::fields(), suggest the nearest on a typo, parse by type
  if (!node || node.IsNull()) return;
  if (!node.IsMap())
    throw ConfigError(section + ": expected a mapping of key: value, got " + detail::scalar_text(node));
  const auto& fields = Config::fields();
  for (const auto& entry : node) {
    const std::string key = detail::key_text(entry.first, section);
    auto field = std::find_if(fields.begin(), fields.end(), [&](const auto& f) { return key == f.name; });
    if (field == fields.end()) {
      const auto names = field_names<Config>();
      throw ConfigError(section + ": unknown key '" + key + "'; did you mean '" + nearest_name(key, names) +
                        "'? valid keys: " + join_names(names));
    }
    const std::string where = section + "." + key;
    std::visit(
        [&](auto member) {
          using T = std::decay_t<decltype(config.*member)>;
          if constexpr (std::is_same_v<T, int64_t>) {
            config.*member = detail::parse_scalar<int64_t>(entry.second, where, "an integer");
          } else if constexpr (std::is_same_v<T, double>) {
            config.*member = detail::parse_scalar<double>(entry.second, where, "a number");
          } else if constexpr (std::is_same_v<T, bool>) {
            config.*member = detail::parse_scalar<bool>(entry.second, where, "true or false");
          } else {
            config.*member = detail::parse_scalar<std::string>(entry.second, where, "a string");
          }
        },
        field->member);
  }
  // END SOLUTION
}

// Every field as a YAML mapping, in the order of Config::fields().
template <typename Config>
YAML::Node to_yaml(const Config& config) {
  YAML::Node node(YAML::NodeType::Map);
  for (const auto& field : Config::fields()) {
    std::visit(
        [&](auto member) {
          if constexpr (std::is_same_v<std::decay_t<decltype(config.*member)>, double>) {
            node[field.name] = detail::shortest_decimal(config.*member);
          } else {
            node[field.name] = config.*member;
          }
        },
        field.member);
  }
  return node;
}

}  // namespace llm
