// llm generate: continue prompts with a model folder, streaming the text as it is sampled.
//
//   llm generate --model runs/demo/pretrain/final --prompt "It is a truth universally acknowledged"
//   llm generate --model runs/demo/sft/final --chat --prompt "What is 12 + 30?" --temperature 0
//   llm generate --model hf-llama-folder/ --prompts-file prompts.txt --max-new-tokens 200 --seed 7
//   llm generate --model ~/models/Qwen3-0.6B --chat --no-thinking --prompt "Name three rivers."
//
// Any model folder works: ours, or a downloaded Llama 3, Qwen2.5, Qwen3 or SmolLM2 (hf_folder.h), in
// the dtype its files store. The sampling options are lesson 05's. A plain prompt is tokenized as
// transformers' pipeline does it (Llama 3's <|begin_of_text|> in front) and generation stops at the
// model's end-of-text tokens; --chat wraps each prompt in the model's chat template (chat_format.h)
// and stops at its end-of-turn token.
#include "commands.h"
#include "sampling_options.h"

#include <llm/cli/chat_format.h>
#include <llm/cli/hf_folder.h>
#include <llm/cli/text.h>
#include <llm/generate/generate.h>

#include <ATen/CPUGeneratorImpl.h>

#include <iostream>
#include <optional>
#include <sstream>

namespace llm::cli {

namespace {

struct GenerateOptions {
  std::string model_dir, prompts_file, system;
  std::vector<std::string> prompts;
  int64_t max_new_tokens = 100, threads = 1;
  SamplingOptions sampling;
  bool chat = false, no_thinking = false;
};

int run(GenerateOptions o) {
  configure_threads(o.threads);
  auto m = load_hf_folder(o.model_dir, {"auto"});
  if (!o.prompts_file.empty()) {
    std::istringstream lines(read_file(o.prompts_file));
    std::string line;
    while (std::getline(lines, line)) {
      if (!line.empty()) o.prompts.push_back(line);
    }
  }
  if (o.prompts.empty()) throw UsageError("no prompt: give --prompt TEXT (repeatable) or --prompts-file FILE");
  if (!o.chat && (!o.system.empty() || o.no_thinking)) throw UsageError("--system and --no-thinking need --chat");
  GenerationConfig gen;
  gen.max_new_tokens = o.max_new_tokens;
  o.sampling.apply(gen);
  std::optional<ChatFormat> chat;
  ChatRenderOptions render;
  if (o.chat) {
    chat = ChatFormat::of(m);
    if (!o.system.empty() && !chat->has_system_role())
      throw UsageError("--system: " + o.model_dir + "'s chat template (lesson 06's) has no system role");
    if (o.no_thinking && !chat->has_thinking_switch())
      throw UsageError("--no-thinking: the " + chat->name() + " chat template has no thinking switch (Qwen3's has)");
    if (o.no_thinking) render.enable_thinking = false;
    gen.stop_tokens = chat->stop_ids();
    gen.pad_id = chat->pad_id();
  } else {
    gen.stop_tokens = m.eos_ids();
    if (gen.stop_tokens.empty() && special_or_none(m.tokenizer, "<|endoftext|>") >= 0)
      gen.stop_tokens = {special_or_none(m.tokenizer, "<|endoftext|>")};
    if (!gen.stop_tokens.empty()) gen.pad_id = gen.stop_tokens.front();
  }
  auto generator = at::make_generator<at::CPUGeneratorImpl>(o.sampling.seed);
  for (size_t i = 0; i < o.prompts.size(); ++i) {
    std::vector<int64_t> ids;
    if (chat) {
      std::vector<ChatTurn> turns;
      if (!o.system.empty()) turns.push_back({"system", o.system, std::nullopt});
      turns.push_back({"user", o.prompts[i], std::nullopt});
      ids = chat->prompt(m.tokenizer, turns, render);
    } else {  // as transformers' pipeline: the post-processor's prefix (Llama 3's BOS), then the text
      const auto& prefix = m.tokenizer.options().prefix_ids;
      ids.assign(prefix.begin(), prefix.end());
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
  CLI::App app{"Sample text from a model folder (ours, or a downloaded Llama 3, Qwen2.5, Qwen3 or SmolLM2).",
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
  app.add_flag("--chat", o.chat, "wrap each prompt in the model's chat template and stop at its end of turn");
  app.add_option("--system", o.system, "with --chat: a system message first (not for lesson 06's template)");
  app.add_flag("--no-thinking", o.no_thinking, "with --chat: Qwen3's enable_thinking = false (answer without <think>)");
  app.add_option("--threads", o.threads, "compute threads; 0 = every core")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  if (int rc = parse_command_line(app, argc, argv); rc >= 0) return rc;
  return run_command("llm generate", [&] { return run(o); });
}

}  // namespace llm::cli
