// The subcommands of `llm`, one source file each, and what they share.
#pragma once

#include <llm/cli/command.h>

namespace llm::cli {

int tokenizer_main(int argc, char** argv);
int clean_main(int argc, char** argv);
int pretrain_main(int argc, char** argv);
int generate_main(int argc, char** argv);
int export_main(int argc, char** argv);
int launch_main(int argc, char** argv);
int sft_main(int argc, char** argv);
int dpo_main(int argc, char** argv);
int grpo_main(int argc, char** argv);
int ppo_main(int argc, char** argv);
int evaluate_main(int argc, char** argv);
int chat_main(int argc, char** argv);
int report_main(int argc, char** argv);
int serve_main(int argc, char** argv);

}  // namespace llm::cli
