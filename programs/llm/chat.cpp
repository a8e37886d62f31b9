// llm chat: talk to a model you trained, in the terminal, one streamed answer at a time.
//
//   llm chat --model runs/demo/grpo/final
//   llm chat --model runs/demo/sft/final --temperature 0.7 --top-k 40
//
// Every turn renders the whole conversation with lesson 06's chat template (<|user|> ... <|end|>
// <|assistant|> ... <|end|>), generates with lesson 05's KV cache until <|end|>, and streams the
// answer as it is sampled (whole UTF-8 characters only). Commands: /reset starts a new conversation,
// /quit (or end of input) leaves. The model's context is fixed (max_position_embeddings): when the
// conversation would not fit, it says so and asks for /reset instead of silently forgetting turns.
#include "commands.h"
#include "sampling_options.h"

#include <llm/cli/hf_folder.h>
#include <llm/cli/text.h>
#include <llm/data/sft.h>
#include <llm/generate/generate.h>

#include <ATen/CPUGeneratorImpl.h>
#include <unistd.h>

#include <iostream>

namespace llm::cli {

namespace {

struct ChatOptions {
  std::string model_dir;
  int64_t max_new_tokens = 200, threads = 0;
  SamplingOptions sampling;
};

int run(const ChatOptions& o) {
  configure_threads(o.threads);
  auto m = load_hf_folder(o.model_dir);
  ChatTemplate chat;
  try {
    chat = ChatTemplate::from(m.tokenizer);
  } catch (const std::exception&) {
    throw UsageError(o.model_dir +
                     ": its tokenizer has no chat tokens (<|user|>, <|assistant|>, <|end|>); chat with "
                     "a fine-tuned model (sft/, dpo/ or grpo/final), or use llm generate for a pretrained one");
  }
  GenerationConfig gen;
  o.sampling.apply(gen);
  gen.stop_tokens = {chat.end};
  gen.pad_id = chat.pad;
  auto generator = at::make_generator<at::CPUGeneratorImpl>(o.sampling.seed);
  const int64_t context = m.config.max_position_embeddings;
  const bool interactive = isatty(STDIN_FILENO) != 0;

  Conversation conversation;  // lesson 06's template has user and assistant turns (no system role)
  fmt::print("llm chat: {} ({} parameters, context {} tokens). /reset starts over, /quit leaves.\n", o.model_dir,
             format_count(static_cast<double>(m.config.num_parameters())), context);
  std::string line;
  while (true) {
    if (interactive) fmt::print("\nyou> ");
    std::fflush(stdout);
    if (!std::getline(std::cin, line)) break;
    if (line == "/quit" || line == "/exit") break;
    if (line == "/reset") {
      conversation.clear();
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
    next.push_back({"user", line});
    const auto ids = render_prompt(m.tokenizer, chat, next);
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
    gen.on_token = [&](size_t, int64_t token) {
      if (token == chat.end) return;
      answer.push_back(static_cast<TokenId>(token));
      fmt::print("{}", stream.push(m.tokenizer.token_bytes(static_cast<TokenId>(token))));
      std::fflush(stdout);
    };
    const auto out = generate(m.model, {ids}, gen, generator);
    fmt::print("{}\n", stream.flush());
    const bool ended = !out[0].empty() && out[0].back() == chat.end;
    if (!ended) fmt::print("(stopped after {} tokens without an end token)\n", out[0].size());
    conversation = next;
    conversation.push_back({"assistant", m.tokenizer.decode(answer)});
  }
  return 0;
}

}  // namespace

int chat_main(int argc, char** argv) {
  CLI::App app{"Chat with a fine-tuned model folder in the terminal, streaming each answer.", "llm chat"};
  ChatOptions o;
  app.add_option("--model", o.model_dir, "a fine-tuned model folder, e.g. runs/demo/grpo/final")
      ->required()
      ->check(CLI::ExistingDirectory);
  app.add_option("--max-new-tokens", o.max_new_tokens, "tokens per answer at most")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  add_sampling_options(app, o.sampling);
  app.add_option("--threads", o.threads, "compute threads; 0 = every core")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  if (int rc = parse_command_line(app, argc, argv); rc >= 0) return rc;
  return run_command("llm chat", [&] { return run(o); });
}

}  // namespace llm::cli
