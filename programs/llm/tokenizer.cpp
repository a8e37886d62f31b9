// llm tokenizer: train a byte-level BPE tokenizer, and encode or decode text with it or with GPT-2's.
//
//   llm tokenizer train  --input data/austen/train.txt --vocab-size 4096 --chat --out runs/demo/tokenizer
//   llm tokenizer encode --tokenizer runs/demo/tokenizer --text "It is a truth universally acknowledged"
//   llm tokenizer encode --gpt2 .cache/gpt2 --input data/austen/val.txt --format stats
//   llm tokenizer decode --tokenizer runs/demo/tokenizer --ids "464 318 257"
//   llm tokenizer encode --tokenizer ~/models/Qwen3-0.6B --text "<|im_start|>user" --format tokens
//
// --tokenizer takes a folder with Hugging Face's tokenizer.json (a downloaded model folder: Llama 3,
// Qwen, SmolLM2) or with the vocab.json + merges.txt that `train` writes.
// Every subcommand explains its options with --help.
#include "../tokenizer_source.h"
#include "commands.h"

#include <llm/data/sft.h>

#include <llm/tokenizer/bpe_files.h>
#include <llm/tokenizer/bpe_trainer.h>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

namespace {

using llm::TokenId;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::string read_inputs(const std::vector<std::string>& paths) {
  std::string text;
  for (const auto& path : paths) text += llm::read_file(path);
  return text;
}

// The encoding of `text` as ids, one line; as tokens (GPT-2's printable form) separated by '|'; or
// statistics.
void print_encoding(const llm::BpeTokenizer& tok, const std::string& text, const std::vector<TokenId>& ids,
                    const std::string& format, double elapsed) {
  if (format == "ids") {
    fmt::print("{}\n", fmt::join(ids, " "));
  } else if (format == "tokens") {
    std::string out;
    for (TokenId id : ids) out += (out.empty() ? "" : "|") + llm::bytes_to_gpt2_text(tok.token_bytes(id));
    fmt::print("{}\n", out);
  } else {
    std::vector<bool> used(tok.vocab_size(), false);
    int64_t distinct = 0;
    for (TokenId id : ids) distinct += !used[id], used[id] = true;
    fmt::print("bytes           {}\n", text.size());
    fmt::print("tokens          {}\n", ids.size());
    fmt::print("bytes/token     {:.3f}\n", ids.empty() ? 0.0 : static_cast<double>(text.size()) / ids.size());
    fmt::print("vocabulary      {} ({} distinct used)\n", tok.vocab_size(), distinct);
    fmt::print("encode speed    {:.1f} MB/s ({:.3f} s, one thread)\n", text.size() / 1e6 / std::max(elapsed, 1e-9),
               elapsed);
  }
}

}  // namespace

namespace llm::cli {

int tokenizer_main(int argc, char** argv) {
  CLI::App app{"Train a byte-level BPE tokenizer (GPT-2's algorithm), or encode and decode with one.", "llm tokenizer"};
  app.require_subcommand(1);

  // ---- train ----
  auto* train = app.add_subcommand("train", "learn BPE merges from text and save vocab.json + merges.txt");
  std::vector<std::string> train_inputs;
  llm::BpeTrainingOptions options;
  std::string out_dir;
  bool force = false;
  train->add_option("--input", train_inputs, "text file(s) to train on, concatenated")
      ->required()
      ->check(CLI::ExistingFile);
  train->add_option("--vocab-size", options.vocab_size, "tokens in the vocabulary: 256 bytes + merges + special tokens")
      ->capture_default_str()
      ->check(CLI::Range(257, 1 << 20));
  bool chat_tokens = false;
  train->add_option("--special", options.special_tokens, "a special token kept whole, e.g. <|endoftext|> (repeatable)");
  train->add_flag("--chat", chat_tokens,
                  "add the pipeline's special tokens: <|endoftext|> and the chat template's <|user|>, <|assistant|>, "
                  "<|end|> (lesson 06)");
  train->add_option("--min-pair-count", options.min_pair_count, "stop when no pair occurs this often")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  train->add_option("--out", out_dir, "directory to write vocab.json and merges.txt into")->required();
  train->add_flag("--force", force, "replace a tokenizer already saved in --out");

  // ---- encode ----
  auto* encode = app.add_subcommand("encode", "text -> token ids, tokens, or statistics");
  llm::programs::TokenizerSource encode_source;
  encode_source.add_options(*encode);
  std::vector<std::string> encode_inputs;
  std::string text, format = "ids";
  bool no_special = false, add_special = false;
  auto* input_opt = encode->add_option("--input", encode_inputs, "text file(s) to encode")->check(CLI::ExistingFile);
  encode->add_option("--text", text, "text to encode, given inline")->excludes(input_opt);
  encode->add_option("--format", format, "ids: one line of ids; tokens: the tokens, '|'-separated; stats: a summary")
      ->capture_default_str()
      ->check(CLI::IsMember({"ids", "tokens", "stats"}));
  encode->add_flag("--no-special", no_special, "treat special-token text such as <|endoftext|> as ordinary text");
  encode->add_flag("--add-special-tokens", add_special,
                   "add the tokenizer's post-processor tokens, e.g. Llama 3's <|begin_of_text|> in front "
                   "(transformers' add_special_tokens=True)");

  // ---- decode ----
  auto* decode = app.add_subcommand("decode", "token ids -> text (bytes, written unchanged to stdout)");
  llm::programs::TokenizerSource decode_source;
  decode_source.add_options(*decode);
  std::string ids_text, ids_file;
  bool skip_special = false;
  auto* ids_opt = decode->add_option("--ids", ids_text, "ids separated by spaces or commas");
  decode->add_flag("--skip-special-tokens", skip_special, "leave special tokens such as <|eot_id|> out of the text");
  decode->add_option("--input", ids_file, "a file of whitespace-separated ids")
      ->check(CLI::ExistingFile)
      ->excludes(ids_opt);

  if (int rc = parse_command_line(app, argc, argv); rc >= 0) return rc;

  return run_command("llm tokenizer", [&] {
    if (*train) {
      if (chat_tokens) {
        for (const char* s :
             {ChatTemplate::kEndOfText, ChatTemplate::kUser, ChatTemplate::kAssistant, ChatTemplate::kEnd}) {
          if (std::find(options.special_tokens.begin(), options.special_tokens.end(), s) ==
              options.special_tokens.end()) {
            options.special_tokens.push_back(s);
          }
        }
      }
      const auto start = Clock::now();
      const std::string corpus = read_inputs(train_inputs);
      auto tok = llm::train_bpe(corpus, options);
      const double elapsed = seconds_since(start);
      llm::save_gpt2_files(tok, out_dir, force);
      fmt::print("trained {} tokens (256 bytes + {} merges + {} special) on {:.2f} MB in {:.2f} s\n", tok.vocab_size(),
                 tok.merges().size(), tok.special_tokens().size(), corpus.size() / 1e6, elapsed);
      if (tok.vocab_size() < options.vocab_size) {
        fmt::print("note: stopped at {} < {} tokens: no pair occurs {} times any more\n", tok.vocab_size(),
                   options.vocab_size, options.min_pair_count);
      }
      fmt::print("saved {0}/vocab.json and {0}/merges.txt\n", out_dir);
    } else if (*encode) {
      auto tok = encode_source.load();
      if (encode_inputs.empty() && text.empty() && !encode->count("--text")) {
        std::stringstream in;
        in << std::cin.rdbuf();
        text = in.str();
      } else if (!encode_inputs.empty()) {
        text = read_inputs(encode_inputs);
      }
      const auto start = Clock::now();
      auto ids = tok.encode(text, /*allow_special=*/!no_special);
      if (add_special) ids = tok.with_special_tokens(ids);
      print_encoding(tok, text, ids, format, seconds_since(start));
    } else if (*decode) {
      auto tok = decode_source.load();
      std::string source = ids_file.empty() ? ids_text : llm::read_file(ids_file);
      std::replace(source.begin(), source.end(), ',', ' ');
      std::istringstream in(source);
      std::vector<TokenId> ids;
      std::string word;
      while (in >> word) {
        size_t used = 0;
        long long id = -1;
        try {
          id = std::stoll(word, &used);
        } catch (const std::exception&) {
        }
        if (used != word.size() || id < 0 || id >= tok.vocab_size()) {
          throw UsageError("'" + word + "' is not a token id of this tokenizer (0.." +
                           std::to_string(tok.vocab_size() - 1) + ")");
        }
        ids.push_back(static_cast<TokenId>(id));
      }
      const std::string bytes = tok.decode(ids, skip_special);
      std::fwrite(bytes.data(), 1, bytes.size(), stdout);
      if (isatty(fileno(stdout))) std::fputc('\n', stdout);
    }
    return 0;
  });
}

}  // namespace llm::cli
