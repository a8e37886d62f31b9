// llm generate: continue prompts with a model folder, streaming the text as it is sampled.
//
//   llm generate --model runs/demo/pretrain/final --prompt "It is a truth universally acknowledged"
//   llm generate --model runs/demo/sft/final --chat --prompt "What is 12 + 30?" --temperature 0
//   llm generate --model hf-llama-folder/ --prompts-file prompts.txt --max-new-tokens 200 --seed 7
//
// Any Hugging Face Llama folder with a byte-level BPE tokenizer works, ours or not. The sampling
// options are lesson 05's; --chat wraps each prompt in lesson 06's chat template and stops at <|end|>.
#include "commands.h"
#include "sampling_options.h"

#include <llm/cli/hf_folder.h>
#include <llm/cli/text.h>
#include <llm/data/sft.h>
#include <llm/generate/generate.h>

#include <ATen/CPUGeneratorImpl.h>

#include <iostream>
#include <sstream>

namespace llm::cli {

namespace {

struct GenerateOptions {
  std::string model_dir, prompts_file;
  std::vector<std::string> prompts;
  int64_t max_new_tokens = 100, threads = 1;
  SamplingOptions sampling;
  bool chat = false;
};

int run(GenerateOptions o) {
  configure_threads(o.threads);
  auto m = load_hf_folder(o.model_dir);
  if (!o.prompts_file.empty()) {
    std::istringstream lines(read_file(o.prompts_file));
    std::string line;
    while (std::getline(lines, line)) {
      if (!line.empty()) o.prompts.push_back(line);
    }
  }
  if (o.prompts.empty()) throw UsageError("no prompt: give --prompt TEXT (repeatable) or --prompts-file FILE");
  GenerationConfig gen;
  gen.max_new_tokens = o.max_new_tokens;
  o.sampling.apply(gen);
  const int64_t eot = special_or_none(m.tokenizer, ChatTemplate::kEndOfText);
  const int64_t end = special_or_none(m.tokenizer, ChatTemplate::kEnd);
  if (eot >= 0) gen.stop_tokens.push_back(eot), gen.pad_id = eot;
  std::optional<ChatTemplate> chat;
  if (o.chat) {
    try {
      chat = ChatTemplate::from(m.tokenizer);
    } catch (const std::exception&) {
      throw UsageError("--chat: the tokenizer of " + o.model_dir +
                       " has no chat tokens (<|user|>, <|assistant|>, <|end|>)");
    }
    gen.stop_tokens.push_back(end);
  }
  auto generator = at::make_generator<at::CPUGeneratorImpl>(o.sampling.seed);
  for (size_t i = 0; i < o.prompts.size(); ++i) {
    std::vector<int64_t> ids;
    if (chat) {
      ids = render_prompt(m.tokenizer, *chat, {{"user", o.prompts[i]}});
    } else {
      for (TokenId id : m.tokenizer.encode(o.prompts[i], /*allow_special=*/false)) ids.push_back(id);
    }
    if (ids.empty()) throw UsageError("prompt " + std::to_string(i + 1) + " is empty");
    const int64_t room = m.config.max_position_embeddings - static_cast<int64_t>(ids.size());
    if (room < 1) {
      throw UsageError("prompt " + std::to_string(i + 1) + " has " + std::to_string(ids.size()) +
                       " tokens; the model's context is " + std::to_string(m.config.max_position_embeddings));
    }
    gen.max_new_tokens = std::min(o.max_new_tokens, room);
    Utf8Stream stream;
    fmt::print("{}", chat ? "" : o.prompts[i]);
    std::fflush(stdout);
    gen.on_token = [&](size_t, int64_t token) {
      if (std::find(gen.stop_tokens.begin(), gen.stop_tokens.end(), token) != gen.stop_tokens.end()) return;
      fmt::print("{}", stream.push(m.tokenizer.token_bytes(static_cast<TokenId>(token))));
      std::fflush(stdout);
    };
    generate(m.model, {ids}, gen, generator);
    fmt::print("{}\n", stream.flush());
    if (i + 1 < o.prompts.size()) fmt::print("\n");
  }
  return 0;
}

}  // namespace

int generate_main(int argc, char** argv) {
  CLI::App app{"Sample text from a model folder (ours, or any Hugging Face Llama with a byte-level BPE tokenizer).",
               "llm generate"};
  GenerateOptions o;
  app.add_option("--model", o.model_dir, "a model folder, e.g. runs/demo/pretrain/final")
      ->required()
      ->check(CLI::ExistingDirectory);
  auto* p = app.add_option("--prompt", o.prompts, "a prompt (repeatable)");
  app.add_option("--prompts-file", o.prompts_file, "a file with one prompt per line")
      ->check(CLI::ExistingFile)
      ->excludes(p);
  app.add_option("--max-new-tokens", o.max_new_tokens, "tokens to generate at most")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  add_sampling_options(app, o.sampling);
  app.add_flag("--chat", o.chat, "wrap each prompt in the chat template and stop at <|end|>");
  app.add_option("--threads", o.threads, "compute threads; 0 = every core")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  if (int rc = parse_command_line(app, argc, argv); rc >= 0) return rc;
  return run_command("llm generate", [&] { return run(o); });
}

}  // namespace llm::cli
