// Lesson 01 (given) - Hugging Face's tokenizer.json: today's open models' tokenizers in one file.
//
// A downloaded model folder (Llama 3, Qwen2.5, Qwen3, SmolLM2, ...) carries its tokenizer as the
// serialized pipeline of Hugging Face's tokenizers library (huggingface/tokenizers,
// tokenizer/serialization.rs writes it; the parts are bpe_tokenizer.h's five steps):
//
//   "added_tokens":   [{"id": 128009, "content": "<|eot_id|>", "special": true, "normalized": false,
//                       "lstrip": false, "rstrip": false, "single_word": false}, ...]
//   "normalizer":     null, or {"type": "NFC"} (Qwen)
//   "pre_tokenizer":  {"type": "Sequence", "pretokenizers": [
//                        {"type": "Split", "pattern": {"Regex": "(?i:'s|'t|...)"}, "behavior": "Isolated",
//                         "invert": false},
//                        {"type": "ByteLevel", "add_prefix_space": false, "use_regex": false}]}
//                     ByteLevel maps bytes to GPT-2's printable stand-ins; with use_regex it first
//                     splits with GPT-2's own regex. "Digits" (SmolLM2) isolates every digit.
//   "post_processor": ByteLevel (changes no ids), or TemplateProcessing: Llama 3's
//                     {"single": [{"SpecialToken": {"id": "<|begin_of_text|>"}}, {"Sequence": {"id": "A"}}]}
//                     puts the BOS token in front of every text encoded with special tokens
//   "decoder":        ByteLevel: stand-ins back to bytes
//   "model":          {"type": "BPE", "vocab": {"Ġthe": 279, ...}, "merges": ["Ġ t", ...] or [["Ġ", "t"], ...],
//                      "ignore_merges": true (Llama 3), "dropout": null, "byte_fallback": false, ...}
//
// Merges come in two encodings: "a b" strings (older files; splitting at the one space is safe
// because the stand-ins hold no space) and [a, b] pairs (what tokenizers writes since 0.20,
// transformers 4.45); both are read. This reader takes byte-level BPE, the family of GPT-2,
// Llama 3, Qwen and SmolLM2; anything else (WordPiece, SentencePiece-style Metaspace, byte
// fallback, a prefix space, BPE dropout) is refused with a message naming what and why.
//
// Not applied, on purpose: transformers' clean_up_tokenization_spaces (tokenizer_config.json;
// true for Llama 3) rewrites " ." to "." and " n't" to "n't" after decoding. It is lossy and not
// part of the tokenizer, so decode(encode(x)) == x here while Python's tokenizer.decode may differ.
#pragma once

#include <llm/common/files.h>
#include <llm/tokenizer/bpe_files.h>
#include <llm/tokenizer/bpe_tokenizer.h>
#include <llm/tokenizer/gpt2_bytes.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <limits>
#include <map>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

namespace llm {

namespace tokenizer_json_detail {

struct Reader {
  std::string where;  // the file, for every message

  [[noreturn]] void fail(const std::string& message) const { throw std::runtime_error(where + ": " + message); }
  const nlohmann::json& field(const nlohmann::json& object, const char* key, const std::string& at) const {
    if (!object.is_object() || !object.contains(key)) fail(at + " has no \"" + key + "\"");
    return object[key];
  }
  std::string type_of(const nlohmann::json& object, const std::string& at) const {
    const auto& type = field(object, "type", at);
    if (!type.is_string()) fail(at + ".type is not a string");
    return type.get<std::string>();
  }
  // A token id: a whole number below 2^31 - 1, so that id + 1 (a vocabulary size) is a TokenId too.
  // (nlohmann's get<int> of 5e26 or of -1 would be undefined behaviour or a wrong id, not an error.)
  TokenId token_id(const nlohmann::json& id, const std::string& at) const {
    if (!id.is_number_unsigned() || id.get<uint64_t>() >= uint64_t{std::numeric_limits<TokenId>::max()}) {
      fail(at + " has the id " + id.dump() + "; an id is a whole number from 0 to 2147483646");
    }
    return static_cast<TokenId>(id.get<uint64_t>());
  }
  bool flag(const nlohmann::json& object, const char* key, bool otherwise) const {
    if (!object.contains(key) || object[key].is_null()) return otherwise;
    if (!object[key].is_boolean()) fail(std::string("\"") + key + "\" is not true or false");
    return object[key].get<bool>();
  }

  // The normalizer: nothing or NFC (also as a Sequence of NFC).
  Normalizer normalizer(const nlohmann::json& n) const {
    if (n.is_null()) return Normalizer::kNone;
    const std::string type = type_of(n, "normalizer");
    if (type == "NFC") return Normalizer::kNfc;
    if (type == "Sequence") {
      const auto& list = field(n, "normalizers", "normalizer");
      if (list.is_array() && list.empty()) return Normalizer::kNone;
      if (list.is_array() && list.size() == 1) return normalizer(list[0]);
    }
    fail("normalizer '" + type + "' is not supported; supported: none, NFC");
  }

  // The pre-tokenizer steps, in order; sets byte_level when a ByteLevel step is present.
  void pre_tokenizer(const nlohmann::json& p, std::vector<PreTokenizer::Step>& steps, bool& byte_level) const {
    const std::string type = type_of(p, "pre_tokenizer");
    if (type == "Sequence") {
      const auto& list = field(p, "pretokenizers", "pre_tokenizer");
      if (!list.is_array()) fail("pre_tokenizer.pretokenizers is not a list");
      for (const auto& step : list) pre_tokenizer(step, steps, byte_level);
    } else if (type == "Split") {
      const auto& pattern = field(p, "pattern", "the Split pre-tokenizer");
      std::string regex;
      if (pattern.contains("Regex") && pattern["Regex"].is_string()) {
        regex = pcre2_pattern(pattern["Regex"].get<std::string>());
      } else if (pattern.contains("String") && pattern["String"].is_string()) {
        regex = "\\Q" + pattern["String"].get<std::string>() + "\\E";  // a literal
      } else {
        fail("the Split pre-tokenizer's pattern is neither {\"Regex\": ...} nor {\"String\": ...}");
      }
      steps.push_back({RegexPreTokenizer(regex), behavior(field(p, "behavior", "the Split pre-tokenizer")),
                       flag(p, "invert", false)});
    } else if (type == "Digits") {
      // tokenizers' pre_tokenizers/digits.rs: char::is_numeric, each alone or in runs.
      steps.push_back({RegexPreTokenizer(R"(\p{N})"),
                       flag(p, "individual_digits", false) ? SplitBehavior::kIsolated : SplitBehavior::kContiguous,
                       false});
    } else if (type == "ByteLevel") {
      if (flag(p, "add_prefix_space", false)) {
        fail(
            "ByteLevel with add_prefix_space true is not supported (it inserts a space before the text; "
            "Llama 3, Qwen and SmolLM2 set it false)");
      }
      if (flag(p, "use_regex", true)) steps.push_back({RegexPreTokenizer(), SplitBehavior::kIsolated, false});
      byte_level = true;
    } else {
      fail("pre-tokenizer '" + type + "' is not supported; supported: Sequence, Split, Digits, ByteLevel");
    }
  }

  SplitBehavior behavior(const nlohmann::json& b) const {
    static const std::map<std::string, SplitBehavior> kNames = {
        {"isolated", SplitBehavior::kIsolated},
        {"removed", SplitBehavior::kRemoved},
        {"mergedwithprevious", SplitBehavior::kMergedWithPrevious},
        {"mergedwithnext", SplitBehavior::kMergedWithNext},
        {"contiguous", SplitBehavior::kContiguous}};
    std::string name = b.is_string() ? b.get<std::string>() : "";
    std::string lower;
    for (char c : name) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    auto it = kNames.find(lower);
    if (it == kNames.end()) {
      fail("Split behavior '" + name +
           "' is not one of: Isolated, Removed, MergedWithPrevious, MergedWithNext, Contiguous");
    }
    return it->second;
  }

  // The post-processor's ids around a single text (TemplateProcessing "single").
  void post_processor(const nlohmann::json& p, const std::unordered_map<std::string, TokenId>& added,
                      TokenizerOptions& options) const {
    if (p.is_null()) return;
    const std::string type = type_of(p, "post_processor");
    if (type == "ByteLevel") return;  // trims offsets only; no ids
    if (type == "Sequence") {
      for (const auto& step : field(p, "processors", "post_processor")) post_processor(step, added, options);
      return;
    }
    if (type != "TemplateProcessing") {
      fail("post-processor '" + type + "' is not supported; supported: ByteLevel, TemplateProcessing, Sequence");
    }
    const auto& specials = field(p, "special_tokens", "TemplateProcessing");
    bool after = false, seen = false;
    for (const auto& piece : field(p, "single", "TemplateProcessing")) {
      if (piece.contains("Sequence")) {
        if (seen) fail("TemplateProcessing.single holds the text twice");
        seen = after = true;
      } else if (piece.contains("SpecialToken")) {
        const std::string name = field(piece["SpecialToken"], "id", "TemplateProcessing.single").get<std::string>();
        std::vector<TokenId> ids;
        if (specials.contains(name) && specials[name].contains("ids")) {
          for (const auto& id : specials[name]["ids"])
            ids.push_back(token_id(id, "TemplateProcessing's '" + name + "'"));
        } else if (added.count(name)) {
          ids.push_back(added.at(name));
        } else {
          fail("TemplateProcessing names the special token '" + name + "', which it does not define");
        }
        auto& target = after ? options.suffix_ids : options.prefix_ids;
        target.insert(target.end(), ids.begin(), ids.end());
      } else {
        fail("TemplateProcessing.single holds an entry that is neither a SpecialToken nor the Sequence");
      }
    }
  }

  void decoder(const nlohmann::json& d) const {
    if (d.is_null()) return;
    const std::string type = type_of(d, "decoder");
    if (type == "ByteLevel") return;
    if (type == "Sequence") {
      for (const auto& step : field(d, "decoders", "decoder")) decoder(step);
      return;
    }
    fail("decoder '" + type + "' is not supported; supported: ByteLevel (a byte-level BPE)");
  }
};

inline BpeTokenizer build(const nlohmann::json& j, const Reader& r) {
  if (!j.is_object()) r.fail("expected a JSON object");
  const auto& model = r.field(j, "model", "tokenizer.json");
  const std::string type = model.value("type", "BPE");  // older files omit the model's type
  if (type != "BPE") {
    r.fail("model type '" + type +
           "' is not supported; this reader takes byte-level BPE (GPT-2, Llama 3, Qwen, "
           "SmolLM2)");
  }
  if (model.contains("dropout") && !model["dropout"].is_null() && model["dropout"].get<double>() != 0.0) {
    r.fail("BPE dropout is a training-time augmentation (random merges) and is not supported");
  }
  if (r.flag(model, "byte_fallback", false))
    r.fail("byte_fallback (SentencePiece-style <0xXX> tokens) is not supported");
  for (const char* affix : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (model.contains(affix) && !model[affix].is_null() && !model[affix].get<std::string>().empty()) {
      r.fail(std::string("a non-empty ") + affix + " is not supported (byte-level BPE has none)");
    }
  }

  // Added tokens: raw content, their own flags.
  std::vector<AddedToken> added;
  std::unordered_map<std::string, TokenId> added_ids;
  if (j.contains("added_tokens") && !j["added_tokens"].is_null()) {
    for (const auto& t : j["added_tokens"]) {
      AddedToken token;
      token.content = r.field(t, "content", "an added token").get<std::string>();
      token.id = r.token_id(r.field(t, "id", "an added token"), "added token '" + token.content + "'");
      token.special = r.flag(t, "special", false);
      token.single_word = r.flag(t, "single_word", false);
      token.lstrip = r.flag(t, "lstrip", false);
      token.rstrip = r.flag(t, "rstrip", false);
      token.normalized = r.flag(t, "normalized", !token.special);
      added_ids[token.content] = token.id;
      added.push_back(std::move(token));
    }
  }

  // The vocabulary: ids 0..V-1 over the model's vocab and the added tokens, without gaps.
  const auto& vocab_json = r.field(model, "vocab", "model");
  if (!vocab_json.is_object()) r.fail("model.vocab is not an object {token: id}");
  TokenId size = 0;
  for (const auto& [text, id] : vocab_json.items())
    size = std::max(size, r.token_id(id, "model.vocab's '" + text + "'") + 1);
  for (const auto& t : added) size = std::max<TokenId>(size, t.id + 1);
  if (static_cast<size_t>(size) > vocab_json.size() + added.size())
    r.fail("the ids run to " + std::to_string(size - 1) + " but there are fewer tokens: ids must have no gaps");
  std::vector<std::string> vocab(size);
  std::vector<uint8_t> filled(size, 0);
  std::unordered_map<TokenId, const AddedToken*> added_at;
  for (const auto& t : added) added_at[t.id] = &t;
  for (const auto& [text, id_json] : vocab_json.items()) {
    const TokenId id = r.token_id(id_json, "model.vocab's '" + text + "'");
    if (filled[id]) r.fail("model.vocab gives id " + std::to_string(id) + " to two tokens");
    filled[id] = 1;
    if (auto it = added_at.find(id); it != added_at.end()) {
      vocab[id] = it->second->content;  // an added token also listed in the model's vocab (SmolLM2)
      continue;
    }
    try {
      vocab[id] = gpt2_text_to_bytes(text);
    } catch (const std::invalid_argument&) {
      r.fail("model.vocab entry '" + text + "' (id " + std::to_string(id) +
             ") is not written in GPT-2's byte alphabet: this is not a byte-level BPE");
    }
  }
  for (const auto& t : added) {
    if (filled[t.id] && vocab[t.id] != t.content) {
      r.fail("added token '" + t.content + "' has id " + std::to_string(t.id) + ", which the vocabulary gives to '" +
             bytes_to_gpt2_text(vocab[t.id]) + "'");
    }
    vocab[t.id] = t.content;
    filled[t.id] = 1;
  }
  for (TokenId id = 0; id < size; ++id) {
    if (!filled[id])
      r.fail("no token has id " + std::to_string(id) + " (ids must run 0.." + std::to_string(size - 1) + ")");
  }

  // The merges, in rank order, in either encoding.
  std::unordered_map<std::string, TokenId> ids;
  for (TokenId id = 0; id < size; ++id) {
    if (!added_at.count(id)) ids.emplace(vocab[id], id);
  }
  std::vector<Merge> merges;
  const auto& merges_json = r.field(model, "merges", "model");
  merges.reserve(merges_json.size());
  for (size_t rank = 0; rank < merges_json.size(); ++rank) {
    const auto& m = merges_json[rank];
    std::string left, right;
    if (m.is_string()) {
      const std::string line = m.get<std::string>();
      const size_t space = line.find(' ');
      if (space == std::string::npos || line.find(' ', space + 1) != std::string::npos)
        r.fail("merge " + std::to_string(rank) + " '" + line + "' is not 'left right'");
      left = line.substr(0, space), right = line.substr(space + 1);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      left = m[0].get<std::string>(), right = m[1].get<std::string>();
    } else {
      r.fail("merge " + std::to_string(rank) + " is neither \"left right\" nor [left, right]");
    }
    std::string a, b;
    try {
      a = gpt2_text_to_bytes(left), b = gpt2_text_to_bytes(right);
    } catch (const std::invalid_argument& e) {
      r.fail("merge " + std::to_string(rank) + ": " + e.what());
    }
    auto ia = ids.find(a), ib = ids.find(b), iab = ids.find(a + b);
    if (ia == ids.end() || ib == ids.end() || iab == ids.end()) {
      r.fail("merge " + std::to_string(rank) + " ('" + left + "', '" + right +
             "') uses or makes a token that model.vocab does not have");
    }
    merges.push_back({ia->second, ib->second});
  }

  TokenizerOptions options;
  options.normalizer = r.normalizer(j.value("normalizer", nlohmann::json()));
  std::vector<PreTokenizer::Step> steps;
  bool byte_level = false;
  if (!j.contains("pre_tokenizer") || j["pre_tokenizer"].is_null())
    r.fail("no pre_tokenizer: a byte-level BPE needs a ByteLevel step");
  r.pre_tokenizer(j["pre_tokenizer"], steps, byte_level);
  if (!byte_level) r.fail("the pre_tokenizer has no ByteLevel step: this is not a byte-level BPE");
  options.pretokenizer = PreTokenizer(std::move(steps));
  options.ignore_merges = r.flag(model, "ignore_merges", false);
  r.post_processor(j.value("post_processor", nlohmann::json()), added_ids, options);
  r.decoder(j.value("decoder", nlohmann::json()));
  try {
    return BpeTokenizer(std::move(vocab), merges, std::move(added), std::move(options));
  } catch (const std::exception& e) {
    r.fail(e.what());
  }
}

}  // namespace tokenizer_json_detail

// Builds the tokenizer a tokenizer.json describes. Errors name the file (`where`) and the part.
inline BpeTokenizer parse_tokenizer_json(const std::string& text, const std::string& where) {
  tokenizer_json_detail::Reader r{where};
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    r.fail(std::string("not valid JSON: ") + e.what());
  }
  try {
    return tokenizer_json_detail::build(j, r);
  } catch (const nlohmann::json::exception& e) {  // a value of the wrong type somewhere
    r.fail(std::string("unexpected content: ") + e.what());
  }
}

inline BpeTokenizer load_tokenizer_json(const std::string& path) {
  return parse_tokenizer_json(read_file(path), path);
}

// The tokenizer of a folder: its tokenizer.json if it has one (as transformers' AutoTokenizer
// prefers), else GPT-2's vocab.json + merges.txt (what `llm tokenizer train` writes).
inline BpeTokenizer load_tokenizer_folder(const std::string& dir) {
  namespace fs = std::filesystem;
  if (fs::exists(fs::path(dir) / "tokenizer.json"))
    return load_tokenizer_json((fs::path(dir) / "tokenizer.json").string());
  if (fs::exists(fs::path(dir) / "vocab.json") && fs::exists(fs::path(dir) / "merges.txt")) {
    return load_gpt2_files((fs::path(dir) / "vocab.json").string(), (fs::path(dir) / "merges.txt").string());
  }
  throw std::runtime_error(dir + ": no tokenizer.json, and no vocab.json + merges.txt");
}

}  // namespace llm
