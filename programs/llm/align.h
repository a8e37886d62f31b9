// What the four alignment stages (llm sft, dpo, grpo, ppo) share: their configuration sections,
// loading the previous stage's final/, the held-out evaluation on the built-in tasks, checkpoints
// and resume, and the end of a stage (final/, summary.json, the plot).
//
//   runs/NAME/sft/    config.yaml  metrics.jsonl  loss.png  checkpoints/  final/  summary.json
//   runs/NAME/dpo/    ...          (each stage reads the previous stage's final/ by --model)
#pragma once

#include <llm/cli/chat_format.h>
#include <llm/cli/config.h>
#include <llm/cli/hf_folder.h>
#include <llm/cli/run.h>
#include <llm/cli/tasks.h>
#include <llm/config/fields.h>
#include <llm/config/train_config.h>
#include <llm/data/preference.h>
#include <llm/data/sft.h>
#include <llm/train/adamw.h>
#include <llm/train/checkpoint.h>
#include <llm/train/trainer.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <memory>
#include <string>
#include <vector>

namespace llm::cli {

// The "tasks" section: which built-in tasks, how big the held-out test set is, how answers are
// sampled for it.
struct TaskConfig {
  std::string names = "add,sub,capital";
  int64_t test_size = 600;      // held-out problems, spread evenly over the tasks
  int64_t max_new_tokens = 12;  // an answer is a few tokens; longer means it did not stop
  int64_t max_length = 64;      // prompt + answer tokens, longer examples truncated (lesson 06)
  int64_t seed = 1234;          // the task generators' seed (the test set's too)

  static const std::vector<Field<TaskConfig>>& fields() {
    static const std::vector<Field<TaskConfig>> table = {
        {"names", &TaskConfig::names, "comma-separated built-in tasks: add, sub, capital"},
        {"test_size", &TaskConfig::test_size, "held-out test problems for the before/after accuracy"},
        {"max_new_tokens", &TaskConfig::max_new_tokens, "tokens an answer may take"},
        {"max_length", &TaskConfig::max_length, "prompt + answer tokens per example"},
        {"seed", &TaskConfig::seed, "seed of the task generators"},
    };
    return table;
  }
  void validate() const {
    parse_task_list(names);
    require_positive("tasks", "test_size", test_size);
    require_positive("tasks", "max_new_tokens", max_new_tokens);
    require_positive("tasks", "max_length", max_length);
  }
};

// What every stage's command line has.
struct StageOptions {
  std::string model_dir, run, config_path;
  std::vector<std::string> overrides;
  bool resume = false;
};
void add_stage_options(CLI::App& app, StageOptions& o, const std::string& stage, const std::string& previous);

// A stage set up: its folder, config, model, tokenizer, the chat format, the log.
struct Stage {
  std::string name, dir;
  HfModel loaded;   // the model this stage starts from (trained in place)
  ChatFormat chat;  // lesson 06's template for our models, the model's own for a downloaded one
  std::vector<std::string> tasks;
  int64_t threads = 1;
  MetricsLog metrics;
};

// Reads the config (defaults < --config < --set), loads --model, prepares <run>/<stage>, writes
// config.yaml and prints it. `sections` must already hold the stage's sections (train, tasks, ...).
Stage open_stage(const std::string& name, const StageOptions& o, ConfigSections& sections, const TrainConfig& train,
                 const TaskConfig& tasks);

// Held-out evaluation on the test split: greedy answers to test_size problems.
struct TaskEval {
  double accuracy = 0;     // exact match after normalisation
  double mean_reward = 0;  // task_reward: 1 correct, 0.1 well formed
  double ended = 0;        // share of answers that ended with the end token
  int64_t problems = 0;
  std::map<std::string, double> per_task;  // accuracy per task
  std::vector<std::string> samples;        // a few "prompt -> answer" lines
  std::vector<bool> correct;               // per test problem, in order (the paired comparison below)
  std::vector<std::string> task_of;        // per test problem, its task (the paired comparison per task)
  nlohmann::json to_json() const;
};
TaskEval evaluate_tasks(CausalLM& model, const BpeTokenizer& tok, const ChatFormat& chat, const TaskConfig& config);

// How the built-in tasks' prompts are rendered: a one-line question, answered at once (Qwen3's
// template with enable_thinking = false, so an answer of a few tokens is not a reasoning block).
ChatRenderOptions task_render_options(const ChatFormat& chat);
// The conversation of one task prompt, and the prompt ids that ask for the answer.
std::vector<ChatTurn> task_turns(const std::string& prompt);
std::vector<int64_t> task_prompt(const BpeTokenizer& tok, const ChatFormat& chat, const std::string& prompt);
// A task example as a chat: the question, then the answer (tasks.h's task_conversation).
std::vector<ChatTurn> task_chat(const TaskExample& example);
// A preference pair tokenized: lesson 06's tokenize_pair for our template; for a model's own
// template the same layout (one prompt, each answer through its end-of-turn token), cut alike.
std::optional<TokenizedPair> tokenize_task_pair(const BpeTokenizer& tok, const ChatFormat& chat,
                                                const PreferenceExample& pair, int64_t max_length);
void print_task_eval(const std::string& when, const TaskEval& e);

// Sampled answers to prompts: G per prompt, laid out group by group, with the KV cache.
struct Sampled {
  std::vector<std::vector<int64_t>> prompts;      // the rendered prompt of each row
  std::vector<std::vector<int64_t>> completions;  // generated ids, the end token included when sampled
  std::vector<bool> ended;
  std::vector<std::string> texts;  // decoded completions without the end token
};
Sampled sample_answers(CausalLM& model, const BpeTokenizer& tok, const ChatFormat& chat,
                       const std::vector<TaskExample>& problems, int64_t group_size, double temperature,
                       int64_t max_new_tokens, uint64_t seed);

// The rows of a rollout (grpo.h's layout): left-padded prompts, then completions, right-padded.
struct RolloutRows {
  torch::Tensor input_ids, attention_mask, completion_mask;  // (N, S)
};
RolloutRows rollout_rows(const Sampled& s, int64_t pad_id, const std::vector<int64_t>& stop_ids);

// A model folder loaded as a frozen reference: eval mode, no parameter requires a gradient.
CausalLM load_frozen_reference(const std::string& dir);

// The trainer's loop options from the train section (max_steps and the two intervals).
LoopOptions stage_loop_options(const TrainConfig& train);

// AdamW over the model's parameters with decay groups, the trainer, from the train section.
struct Optimization {
  std::unique_ptr<AdamW> optimizer;
  std::unique_ptr<Trainer> trainer;
};
Optimization make_optimization(torch::nn::Module& model, const TrainConfig& train);
Optimization make_optimization(std::vector<ParamGroup> groups, const TrainConfig& train);  // groups of your own

// Checkpoints of a stage: parameters of `module`, the optimizer, RNG and step (the stages' data is
// a pure function of the step, so the step is the data cursor). resume_stage returns the step to
// continue from (0 when there is nothing to resume).
void save_stage_checkpoint(const Stage& stage, torch::nn::Module& module, Optimizer& optimizer, int64_t step,
                           double elapsed, const nlohmann::json& extra, int64_t keep);
int64_t resume_stage(const Stage& stage, torch::nn::Module& module, Optimizer& optimizer, double& elapsed,
                     nlohmann::json& extra);

// final/ (a Hugging Face folder), summary.json, the plot of the given metrics.
void finish_stage(Stage& stage, CausalLM& model, const nlohmann::json& summary,
                  const std::vector<std::pair<std::string, std::string>>& plot, const std::string& ylabel);

std::string format_change(const char* what, double before, double after,
                          int64_t n);  // "accuracy 0.12 -> 0.53 (n = 300)"

// Before and after on the same test problems, compared problem by problem: `fixed` went from wrong
// to right, `broken` from right to wrong. With n = 600 a change of 0.01 in accuracy is inside the
// noise of either figure alone, but the paired counts say whether it is real: under "no change"
// each of the fixed + broken problems is equally likely to fall either way, so the two-sided p of
// the exact binomial (sign) test on them is McNemar's exact test (McNemar 1947).
struct PairedChange {
  int64_t fixed = 0, broken = 0, problems = 0;
  double p_value = 1;
  nlohmann::json to_json() const;
  std::string describe() const;  // "41 fixed, 12 broken, exact McNemar p < 0.0001"
};
// The same held-out problems before and after; with `task`, only that task's problems.
PairedChange paired_change(const TaskEval& before, const TaskEval& after, const std::string& task = "");
// What every stage's summary.json says about the held-out problems: both evaluations, accuracy and
// mean reward before and after, the paired counts (of all problems, and per task), and the number
// of problems.
nlohmann::json task_change_json(const TaskEval& before, const TaskEval& after);
// "held-out accuracy 0.448 -> 0.470 (n = 600; 41 fixed, 12 broken, exact McNemar p < 0.0001)"
std::string format_accuracy_change(const char* what, const TaskEval& before, const TaskEval& after);

// The tasks whose train problems an RL stage (grpo, ppo) samples its prompts from: `list`, the
// section's train_tasks ("capital", "add,sub"), or tasks.names when it is empty. The held-out
// evaluation always covers tasks.names. A bad list is a ConfigError naming `<section>.train_tasks`.
std::vector<std::string> train_task_list(const std::string& section, const std::string& list,
                                         const std::vector<std::string>& stage_tasks);
// One line per trained task that the evaluation covers, on that task's own held-out problems:
// "grpo: trained task capital: held-out accuracy 0.610 -> 0.660 (n = 200; 14 fixed, 4 broken, ...)"
void print_trained_tasks(const std::string& stage, const std::vector<std::string>& trained, const TaskEval& before,
                         const TaskEval& after);

}  // namespace llm::cli
