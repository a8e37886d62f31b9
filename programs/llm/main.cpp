// llm: the whole pipeline in one program, a subcommand per stage.
//
//   llm tokenizer train --input data/austen/train.txt --vocab-size 4096 --out runs/demo/tokenizer
//   llm pretrain --config configs/quick.yaml --run runs/demo
//   llm sft --model runs/demo/pretrain/final --run runs/demo
//   llm dpo --model runs/demo/sft/final --run runs/demo
//   llm grpo --model runs/demo/dpo/final --run runs/demo
//   llm ppo --model runs/demo/sft/final --run runs/demo
//   llm generate --model runs/demo/pretrain/final --prompt "It is a truth universally acknowledged"
//   llm export --checkpoint runs/demo/pretrain/checkpoints/step_00000400 --tokenizer runs/demo/tokenizer --out hf/
//   llm clean --input data/austen/train.txt --out runs/demo/clean --inject-junk 40
//   llm launch --nproc 2 -- pretrain --config configs/quick.yaml --run runs/ddp
//
// `llm <command> --help` explains each command's options. Built from your lessons (curriculum/) or
// the reference (solutions/), like every program here.
#include "commands.h"

#include <cstring>

namespace {

struct Command {
  const char* name;
  int (*main)(int, char**);
  const char* help;
};

const Command kCommands[] = {
    {"tokenizer", llm::cli::tokenizer_main, "train a byte-level BPE tokenizer; encode and decode text"},
    {"clean", llm::cli::clean_main, "filter, deduplicate and score a text corpus, reporting what each rule removed"},
    {"pretrain", llm::cli::pretrain_main,
     "pretrain the Llama of lessons 03-05 on a corpus (run folder, checkpoints, final/)"},
    {"sft", llm::cli::sft_main, "supervised fine-tuning on the built-in tasks, accuracy before and after"},
    {"dpo", llm::cli::dpo_main, "direct preference optimization on the built-in tasks' preference pairs"},
    {"grpo", llm::cli::grpo_main, "group relative policy optimization on the built-in tasks' rewards"},
    {"ppo", llm::cli::ppo_main, "proximal policy optimization with a value head on the built-in tasks' rewards"},
    {"evaluate", llm::cli::evaluate_main,
     "evaluate a model folder: bits per byte, multiple choice, task accuracy, pass@k, FLOPs"},
    {"report", llm::cli::report_main, "write the report card of a run folder: every stage's figures, plots, samples"},
    {"serve", llm::cli::serve_main,
     "serve a model with OpenAI's HTTP API (chat completions, completions, SSE streaming)"},
    {"chat", llm::cli::chat_main, "chat with a fine-tuned model in the terminal, streaming each answer"},
    {"generate", llm::cli::generate_main, "sample text from a model folder, streamed"},
    {"export", llm::cli::export_main, "turn a training checkpoint into a Hugging Face model folder"},
    {"launch", llm::cli::launch_main,
     "run a command as N data-parallel processes on this machine (torchrun's variables)"},
};

void usage(FILE* out) {
  fmt::print(out, "usage: llm <command> [options]    (llm <command> --help for its options)\n\ncommands:\n");
  for (const auto& c : kCommands) fmt::print(out, "  {:<10} {}\n", c.name, c.help);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    usage(stderr);
    return llm::cli::kExitUsage;
  }
  const std::string name = argv[1];
  if (name == "-h" || name == "--help" || name == "help") {
    usage(stdout);
    return 0;
  }
  for (const auto& c : kCommands) {
    if (name == c.name) return c.main(argc - 1, argv + 1);
  }
  std::vector<std::string> names;
  for (const auto& c : kCommands) names.push_back(c.name);
  fmt::print(stderr, "llm: unknown command '{}'; valid commands: {}\n", name, fmt::join(names, ", "));
  return llm::cli::kExitUsage;
}
