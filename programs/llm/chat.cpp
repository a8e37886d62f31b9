// llm chat: talk to a model in the terminal, one streamed answer at a time.
//
//   llm chat --model runs/demo/grpo/final
//   llm chat --model runs/demo/sft/final --temperature 0.7 --top-k 40
//   llm chat --model ~/models/SmolLM2-135M-Instruct --system "You are terse."
//
// Every turn renders the whole conversation with the model's chat template (lesson 06's <|user|>
// ... <|end|> <|assistant|> for ours; a downloaded model's own, chat_format.h), generates with
// lesson 05's KV cache until the end of the turn, and streams the answer as it is sampled (whole
// UTF-8 characters only). Commands: /reset starts a new conversation,
// /quit (or end of input) leaves. The model's context is fixed (max_position_embeddings): when the
// conversation would not fit, it says so and asks for /reset instead of silently forgetting turns.
#include "commands.h"
#include "sampling_options.h"

#include <llm/cli/chat_format.h>
#include <llm/cli/hf_folder.h>
#include <llm/cli/text.h>
#include <llm/generate/generate.h>

#include <ATen/CPUGeneratorImpl.h>
#include <unistd.h>

#include <iostream>
#include <optional>

namespace llm::cli {

namespace {

struct ChatOptions {
  std::string model_dir, system;
  int64_t max_new_tokens = 200, threads = 0;
  SamplingOptions sampling;
  bool no_thinking = false;
};

int run(const ChatOptions& o) {
  configure_threads(o.threads);
  auto m = load_hf_folder(o.model_dir, {"auto"});
  std::optional<ChatFormat> format;
  try {
    format = ChatFormat::of(m);
  } catch (const UsageError& e) {
    throw UsageError(std::string(e.what()) +
                     ". Ours: chat with a fine-tuned model (sft/, dpo/ or grpo/final), or use llm generate for a "
                     "pretrained one");
  }
  const ChatFormat& chat = *format;
  if (!o.system.empty() && !chat.has_system_role())
    throw UsageError("--system: " + o.model_dir + "'s chat template (lesson 06's) has no system role");
  if (o.no_thinking && !chat.has_thinking_switch())
    throw UsageError("--no-thinking: the " + chat.name() + " chat template has no thinking switch (Qwen3's has)");
  ChatRenderOptions render;
  if (o.no_thinking) render.enable_thinking = false;
  GenerationConfig gen;
  o.sampling.apply(gen);
  gen.stop_tokens = chat.stop_ids();
  gen.pad_id = chat.pad_id();
  auto generator = at::make_generator<at::CPUGeneratorImpl>(o.sampling.seed);
  const int64_t context = m.config.max_position_embeddings;
  const bool interactive = isatty(STDIN_FILENO) != 0;

  std::vector<ChatTurn> conversation;
  if (!o.system.empty()) conversation.push_back({"system", o.system, std::nullopt});
  const auto fresh = conversation;
  fmt::print("llm chat: {} ({} parameters, context {} tokens, {} template). /reset starts over, /quit leaves.\n",
             o.model_dir, format_count(static_cast<double>(m.config.num_parameters())), context, chat.name());
  std::string line;
  while (true) {
    if (interactive) fmt::print("\nyou> ");
    std::fflush(stdout);
    if (!std::getline(std::cin, line)) break;
    if (line == "/quit" || line == "/exit") break;
    if (line == "/reset") {
      conversation = fresh;
      fmt::print("(a new conversation)\n");
      continue;
    }
    if (!line.empty() && line[0] == '/') {
      fmt::print("(unknown command '{}': /reset starts over, /quit leaves)\n", line);
      continue;
    }
    if (line.find_first_not_of(" \t") == std::string::npos) continue;

    // ---- the conversation so far plus this message, rendered; it must leave room for an answer ----
    auto next = conversation;
    next.push_back({"user", line, std::nullopt});
    const auto ids = chat.prompt(m.tokenizer, next, render);
    const int64_t room = context - static_cast<int64_t>(ids.size());
    if (room < 2) {
      fmt::print("(the conversation would be {} tokens; the model's context is {}. /reset to start a new one)\n",
                 ids.size(), context);
      continue;
    }
    gen.max_new_tokens = std::min(o.max_new_tokens, room);

    // ---- stream the answer ----
    fmt::print("{}", interactive ? "model> " : "");
    Utf8Stream stream;
    std::vector<TokenId> answer;
    const auto& stops = gen.stop_tokens;
    gen.on_token = [&](size_t, int64_t token) {
      if (std::find(stops.begin(), stops.end(), token) != stops.end()) return;
      answer.push_back(static_cast<TokenId>(token));
      fmt::print("{}", stream.push(m.tokenizer.token_bytes(static_cast<TokenId>(token))));
      std::fflush(stdout);
    };
    const auto out = generate(m.model, {ids}, gen, generator);
    fmt::print("{}\n", stream.flush());
    const bool ended = !out[0].empty() && std::find(stops.begin(), stops.end(), out[0].back()) != stops.end();
    if (!ended) fmt::print("(stopped after {} tokens without an end token)\n", out[0].size());
    conversation = next;
    conversation.push_back({"assistant", m.tokenizer.decode(answer), std::nullopt});
  }
  return 0;
}

}  // namespace

int chat_main(int argc, char** argv) {
  CLI::App app{"Chat with a model folder in the terminal (a fine-tuned one of ours, or a downloaded instruct model).",
               "llm chat"};
  ChatOptions o;
  app.add_option("--model", o.model_dir, "a fine-tuned model folder, e.g. runs/demo/grpo/final")
      ->required()
      ->check(CLI::ExistingDirectory);
  app.add_option("--max-new-tokens", o.max_new_tokens, "tokens per answer at most")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  add_sampling_options(app, o.sampling);
  app.add_option("--system", o.system, "a system message before the conversation (not for lesson 06's template)");
  app.add_flag("--no-thinking", o.no_thinking, "Qwen3's enable_thinking = false: answers without a <think> block");
  app.add_option("--threads", o.threads, "compute threads; 0 = every core")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  if (int rc = parse_command_line(app, argc, argv); rc >= 0) return rc;
  return run_command("llm chat", [&] { return run(o); });
}

}  // namespace llm::cli
