// Lesson 01 - reading and writing BPE tokenizers in the formats the world uses.
//
// GPT-2 (and Hugging Face's GPT2Tokenizer) use two files:
//   vocab.json   {"!": 0, "\"": 1, ..., "Ġthe": 262, ..., "<|endoftext|>": 50256}
//                token text (bytes written with GPT-2's stand-ins, gpt2_bytes.h) -> id
//   merges.txt   "#version: 0.2" then one merge per line, in rank order: "Ġ t", "Ġt he", ...
// A vocab entry that is neither a single byte nor made by a merge can only be a special token
// (GPT-2's "<|endoftext|>"); that is how load_gpt2_files recognises them. Special tokens are written
// with the same stand-ins as every other token (for printable ASCII such as "<|endoftext|>" the two
// are identical, as in GPT-2's own file), so one containing a space or a non-ASCII byte loads back.
//
// tiktoken's .tiktoken files list every token as "<base64 of its bytes> <rank>", rank = id. The
// merge rank of a pair (a, b) is the rank of the token a+b; special tokens are not in the file and
// are passed in (GPT-2's r50k_base: {"<|endoftext|>": 50256}).
#pragma once

#include <llm/common/files.h>
#include <llm/tokenizer/bpe_tokenizer.h>
#include <llm/tokenizer/gpt2_bytes.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <unordered_set>
#include <vector>

namespace llm {

inline BpeTokenizer load_gpt2_files(const std::string& vocab_json_path, const std::string& merges_txt_path) {
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(read_file(vocab_json_path));
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(vocab_json_path + ": not valid JSON: " + e.what());
  }
  if (!json.is_object()) throw std::runtime_error(vocab_json_path + ": expected a JSON object {token: id}");
  std::vector<std::string> vocab(json.size());
  std::vector<bool> seen(json.size(), false);
  for (const auto& [text, id_json] : json.items()) {
    // Only a whole number from 0 to V - 1 (get<int64_t> of 5e26 would be undefined behaviour).
    if (!id_json.is_number_unsigned() || id_json.get<uint64_t>() >= vocab.size() || seen[id_json.get<uint64_t>()]) {
      throw std::runtime_error(vocab_json_path + ": id " + id_json.dump() + " of '" + text +
                               "' is repeated or not a whole number from 0 to " + std::to_string(vocab.size() - 1));
    }
    const auto id = id_json.get<uint64_t>();
    seen[id] = true;
    vocab[id] = gpt2_text_to_bytes(text);
  }
  std::unordered_map<std::string, TokenId> ids;
  for (size_t id = 0; id < vocab.size(); ++id) ids.emplace(vocab[id], static_cast<TokenId>(id));

  std::vector<Merge> merges;
  std::unordered_set<TokenId> produced;
  std::istringstream lines(read_file(merges_txt_path));
  std::string line;
  for (int64_t number = 1; std::getline(lines, line); ++number) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || (number == 1 && line.rfind("#version", 0) == 0)) continue;
    const size_t space = line.find(' ');
    if (space == std::string::npos || line.find(' ', space + 1) != std::string::npos) {
      throw std::runtime_error(merges_txt_path + ":" + std::to_string(number) + ": expected 'left right', got '" +
                               line + "'");
    }
    const std::string left = gpt2_text_to_bytes(line.substr(0, space));
    const std::string right = gpt2_text_to_bytes(line.substr(space + 1));
    auto a = ids.find(left), b = ids.find(right), ab = ids.find(left + right);
    if (a == ids.end() || b == ids.end() || ab == ids.end()) {
      throw std::runtime_error(merges_txt_path + ":" + std::to_string(number) + ": '" + line +
                               "' uses or makes a token that vocab.json does not have");
    }
    merges.push_back({a->second, b->second});
    produced.insert(ab->second);
  }
  std::vector<TokenId> specials;
  for (size_t id = 0; id < vocab.size(); ++id) {
    if (vocab[id].size() > 1 && !produced.count(static_cast<TokenId>(id))) specials.push_back(static_cast<TokenId>(id));
  }
  return BpeTokenizer(std::move(vocab), merges, specials);
}

// A tokenizer saved by save_gpt2_files: <dir>/vocab.json and <dir>/merges.txt.
inline BpeTokenizer load_tokenizer_dir(const std::string& dir) {
  return load_gpt2_files(dir + "/vocab.json", dir + "/merges.txt");
}

inline std::string base64_decode(const std::string& text, const std::string& where) {
  auto value = [&](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    throw std::runtime_error(where + ": '" + text + "' is not base64");
  };
  std::string out;
  uint32_t buffer = 0;  // unsigned: old bits shift out harmlessly; only the low `bits` are read
  int bits = 0;
  for (char c : text) {
    if (c == '=') break;
    buffer = (buffer << 6) | static_cast<uint32_t>(value(c));
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((buffer >> bits) & 0xFF);
    }
  }
  return out;
}

inline BpeTokenizer load_tiktoken_file(const std::string& path, const std::map<std::string, TokenId>& specials) {
  std::istringstream lines(read_file(path));
  std::vector<std::string> vocab;
  std::string line;
  for (int64_t number = 1; std::getline(lines, line); ++number) {
    if (line.empty()) continue;
    const size_t space = line.find(' ');
    if (space == std::string::npos)
      throw std::runtime_error(path + ":" + std::to_string(number) + ": expected '<base64> <rank>'");
    const int64_t rank = std::stoll(line.substr(space + 1));
    if (rank != static_cast<int64_t>(vocab.size())) {
      throw std::runtime_error(path + ":" + std::to_string(number) + ": rank " + std::to_string(rank) +
                               " out of order; expected " + std::to_string(vocab.size()));
    }
    vocab.push_back(base64_decode(line.substr(0, space), path + ":" + std::to_string(number)));
  }
  std::unordered_map<std::string, TokenId> ids;
  for (size_t id = 0; id < vocab.size(); ++id) ids.emplace(vocab[id], static_cast<TokenId>(id));
  // Every split of every token into two tokens is a pair whose merge rank is the token's rank.
  std::unordered_map<uint64_t, BpeTokenizer::MergeResult> pair_ranks;
  for (size_t id = 0; id < vocab.size(); ++id) {
    const std::string& bytes = vocab[id];
    for (size_t cut = 1; cut < bytes.size(); ++cut) {
      auto a = ids.find(bytes.substr(0, cut)), b = ids.find(bytes.substr(cut));
      if (a != ids.end() && b != ids.end()) {
        pair_ranks.emplace(BpeTokenizer::key(a->second, b->second),
                           BpeTokenizer::MergeResult{static_cast<int32_t>(id), static_cast<TokenId>(id)});
      }
    }
  }
  std::vector<TokenId> special_ids;
  for (const auto& [text, id] : specials) {
    if (id != static_cast<TokenId>(vocab.size())) {
      throw std::runtime_error(path + ": special token '" + text + "' has id " + std::to_string(id) +
                               "; the next free id is " + std::to_string(vocab.size()));
    }
    vocab.push_back(text);
    special_ids.push_back(id);
  }
  return BpeTokenizer(std::move(vocab), std::move(pair_ranks), special_ids);
}

// Writes <dir>/vocab.json and <dir>/merges.txt. Each file is written to a temporary name and renamed
// into place, and existing files are never replaced unless `overwrite`.
inline void save_gpt2_files(const BpeTokenizer& tokenizer, const std::string& dir, bool overwrite = false) {
  namespace fs = std::filesystem;
  const std::string vocab_path = dir + "/vocab.json", merges_path = dir + "/merges.txt";
  for (const auto& path : {vocab_path, merges_path}) {
    if (!overwrite && fs::exists(path)) {
      throw std::runtime_error("'" + path + "' already exists; refusing to overwrite it (use --force)");
    }
  }
  fs::create_directories(dir);
  nlohmann::ordered_json vocab = nlohmann::ordered_json::object();
  for (TokenId id = 0; id < tokenizer.vocab_size(); ++id) vocab[bytes_to_gpt2_text(tokenizer.token_bytes(id))] = id;
  std::string merges = "#version: 0.2\n";
  for (const auto& [a, b] : tokenizer.merges()) {
    merges += bytes_to_gpt2_text(tokenizer.token_bytes(a)) + " " + bytes_to_gpt2_text(tokenizer.token_bytes(b)) + "\n";
  }
  write_file_atomically(vocab_path, vocab.dump(/*indent=*/-1, ' ', /*ensure_ascii=*/false) + "\n");
  write_file_atomically(merges_path, merges);
}

}  // namespace llm
