#include "align.h"

#include <cmath>

#include <llm/generate/generate.h>
#include <llm/train/optimizer.h>

#include <fmt/format.h>

#include <filesystem>

namespace llm::cli {

namespace fs = std::filesystem;

void add_stage_options(CLI::App& app, StageOptions& o, const std::string& stage, const std::string& previous) {
  app.add_option("--model", o.model_dir, "the model to start from: the " + previous + " stage's final/ folder")
      ->required()
      ->check(CLI::ExistingDirectory);
  app.add_option("--run", o.run, "the run folder; the stage writes <run>/" + stage)->required();
  app.add_option("--config", o.config_path, "YAML with this stage's sections (see --help of the keys)")
      ->check(CLI::ExistingFile);
  app.add_option("--set", o.overrides, "override one setting, e.g. --set train.max_steps=100 (repeatable)");
  app.add_flag("--resume", o.resume, "continue <run>/" + stage + " from its newest complete checkpoint");
}

Stage open_stage(const std::string& name, const StageOptions& o, ConfigSections& sections, const TrainConfig& train,
                 const TaskConfig& tasks) {
  sections.load(o.config_path, o.overrides);
  Stage s;
  s.name = name;
  s.threads = configure_threads(train.threads);
  torch::manual_seed(static_cast<uint64_t>(train.seed));
  s.loaded = load_hf_folder(o.model_dir);
  // Our models need the chat tokens (llm tokenizer train --chat); a downloaded one its chat template.
  s.chat = ChatFormat::of(s.loaded);
  s.tasks = parse_task_list(tasks.names);
  s.dir = prepare_stage_dir(o.run, name, o.resume);
  write_text((fs::path(s.dir) / "config.yaml").string(),
             "# llm " + name + " --model " + o.model_dir + "\n" + sections.to_yaml_string());
  fmt::print("== llm {} -> {}\nfrom {} ({:.2f}M parameters), threads {}\n{}", name, s.dir, o.model_dir,
             s.loaded.model->num_parameters() / 1e6, s.threads, sections.to_yaml_string());
  return s;
}

nlohmann::json TaskEval::to_json() const {
  return {{"accuracy", accuracy}, {"mean_reward", mean_reward}, {"ended", ended},
          {"problems", problems}, {"per_task", per_task},       {"samples", samples}};
}

ChatRenderOptions task_render_options(const ChatFormat& chat) {
  ChatRenderOptions o;
  if (chat.has_thinking_switch()) o.enable_thinking = false;
  return o;
}

std::vector<ChatTurn> task_turns(const std::string& prompt) {
  return {{"user", prompt, std::nullopt}};
}

std::vector<int64_t> task_prompt(const BpeTokenizer& tok, const ChatFormat& chat, const std::string& prompt) {
  return chat.prompt(tok, task_turns(prompt), task_render_options(chat));
}

std::vector<ChatTurn> task_chat(const TaskExample& example) {
  std::vector<ChatTurn> turns;
  for (const auto& m : task_conversation(example)) turns.push_back({m.role, m.content, std::nullopt});
  return turns;
}

std::optional<TokenizedPair> tokenize_task_pair(const BpeTokenizer& tok, const ChatFormat& chat,
                                                const PreferenceExample& pair, int64_t max_length) {
  if (chat.family() == ChatFormat::Family::kOurs) return tokenize_pair(tok, chat.ours(), pair, max_length);
  const auto options = task_render_options(chat);
  TokenizedPair t;
  t.prompt = chat.prompt(tok, task_turns(pair.prompt), options);
  if (static_cast<int64_t>(t.prompt.size()) >= max_length) return std::nullopt;
  t.chosen = chat.completion(tok, task_turns(pair.prompt), pair.chosen, options);
  t.rejected = chat.completion(tok, task_turns(pair.prompt), pair.rejected, options);
  const size_t room = static_cast<size_t>(max_length) - t.prompt.size();
  if (t.chosen.size() > room) t.chosen.resize(room);
  if (t.rejected.size() > room) t.rejected.resize(room);
  return t;
}

Sampled sample_answers(CausalLM& model, const BpeTokenizer& tok, const ChatFormat& chat,
                       const std::vector<TaskExample>& problems, int64_t group_size, double temperature,
                       int64_t max_new_tokens, uint64_t seed) {
  Sampled s;
  for (const auto& p : problems) {
    const auto prompt = task_prompt(tok, chat, p.prompt);
    for (int64_t g = 0; g < group_size; ++g) s.prompts.push_back(prompt);
  }
  GenerationConfig gen;
  gen.max_new_tokens = max_new_tokens;
  gen.sampling.temperature = temperature;
  gen.stop_tokens = chat.stop_ids();
  gen.pad_id = chat.pad_id();
  s.completions = generate(model, s.prompts, gen, at::make_generator<at::CPUGeneratorImpl>(seed));
  const auto& stops = chat.stop_ids();
  for (const auto& c : s.completions) {
    const bool ended = !c.empty() && std::find(stops.begin(), stops.end(), c.back()) != stops.end();
    s.ended.push_back(ended);
    std::vector<TokenId> text(c.begin(), c.end() - (ended ? 1 : 0));
    s.texts.push_back(tok.decode(text));
  }
  return s;
}

TaskEval evaluate_tasks(CausalLM& model, const BpeTokenizer& tok, const ChatFormat& chat, const TaskConfig& config) {
  const auto names = parse_task_list(config.names);
  const auto problems = make_task_examples(names, Split::kTest, static_cast<uint64_t>(config.seed), config.test_size);
  TaskEval e;
  e.problems = static_cast<int64_t>(problems.size());
  std::map<std::string, std::pair<int64_t, int64_t>> counts;  // task -> (correct, total)
  const int64_t batch = 100;
  for (int64_t first = 0; first < e.problems; first += batch) {
    std::vector<TaskExample> chunk(problems.begin() + first,
                                   problems.begin() + std::min<int64_t>(first + batch, e.problems));
    const auto s = sample_answers(model, tok, chat, chunk, 1, /*temperature=*/0.0, config.max_new_tokens, 0);
    for (size_t i = 0; i < chunk.size(); ++i) {
      const bool correct = s.ended[i] && is_correct(chunk[i], s.texts[i]);
      e.accuracy += correct;
      e.mean_reward += task_reward(chunk[i], s.texts[i], s.ended[i]);
      e.ended += s.ended[i];
      e.correct.push_back(correct);
      e.task_of.push_back(chunk[i].task);
      auto& c = counts[chunk[i].task];
      c.first += correct;
      c.second += 1;
      if (first == 0 && i < 6) {
        e.samples.push_back(chunk[i].prompt + " -> " + s.texts[i] + (s.ended[i] ? "" : " ...") +
                            (correct ? "  (correct)" : "  (expected " + chunk[i].answer + ")"));
      }
    }
  }
  e.accuracy /= e.problems;
  e.mean_reward /= e.problems;
  e.ended /= e.problems;
  for (const auto& [task, c] : counts) e.per_task[task] = static_cast<double>(c.first) / c.second;
  return e;
}

void print_task_eval(const std::string& when, const TaskEval& e) {
  std::string per;
  for (const auto& [task, acc] : e.per_task) per += fmt::format(" {} {:.3f}", task, acc);
  fmt::print("{}: held-out accuracy {:.3f} on {} problems ({}), mean reward {:.3f}, answers ended {:.0f}%\n", when,
             e.accuracy, e.problems, per.empty() ? "" : per.substr(1), e.mean_reward, 100 * e.ended);
  for (const auto& s : e.samples) fmt::print("  {}\n", s);
}

RolloutRows rollout_rows(const Sampled& s, int64_t pad_id, const std::vector<int64_t>& stop_ids) {
  const int64_t N = static_cast<int64_t>(s.prompts.size());
  int64_t P = 0, T = 1;
  for (int64_t i = 0; i < N; ++i) {
    P = std::max<int64_t>(P, s.prompts[i].size());
    T = std::max<int64_t>(T, s.completions[i].size());
  }
  auto ids = torch::full({N, P + T}, pad_id, torch::kLong);
  auto attention = torch::zeros({N, P + T}, torch::kBool);
  auto completion = torch::zeros({N, P + T}, torch::kBool);
  auto in = ids.accessor<int64_t, 2>();
  auto am = attention.accessor<bool, 2>();
  auto cm = completion.accessor<bool, 2>();
  for (int64_t i = 0; i < N; ++i) {
    const auto& p = s.prompts[i];
    const int64_t start = P - static_cast<int64_t>(p.size());
    for (size_t t = 0; t < p.size(); ++t) in[i][start + t] = p[t], am[i][start + t] = true;
    for (size_t t = 0; t < s.completions[i].size(); ++t) {
      in[i][P + t] = s.completions[i][t];
      am[i][P + t] = true;
      cm[i][P + t] = true;
      if (std::find(stop_ids.begin(), stop_ids.end(), s.completions[i][t]) != stop_ids.end()) break;
    }
  }
  return {ids, attention, completion};
}

CausalLM load_frozen_reference(const std::string& dir) {
  CausalLM reference = load_hf_folder(dir).model;
  reference->eval();
  for (auto& p : reference->parameters()) p.requires_grad_(false);
  return reference;
}

LoopOptions stage_loop_options(const TrainConfig& train) {
  LoopOptions loop;
  loop.max_steps = train.max_steps;
  loop.eval_interval = train.eval_interval;
  loop.checkpoint_interval = train.checkpoint_interval;
  return loop;
}

Optimization make_optimization(torch::nn::Module& model, const TrainConfig& train) {
  return make_optimization(decay_param_groups(model.named_parameters(), train.learning_rate, train.weight_decay),
                           train);
}

Optimization make_optimization(std::vector<ParamGroup> groups, const TrainConfig& train) {
  Optimization o;
  o.optimizer = std::make_unique<AdamW>(std::move(groups), AdamWOptions{train.beta1, train.beta2, 1e-8});
  TrainerOptions to;
  to.grad_clip = train.grad_clip;
  to.bf16 = uses_bf16_autocast(train.dtype);
  to.schedule = {train.schedule,     train.learning_rate, train.min_lr,
                 train.warmup_steps, train.max_steps,     train.decay_fraction};
  o.trainer = std::make_unique<Trainer>(*o.optimizer, to);
  return o;
}

void save_stage_checkpoint(const Stage& stage, torch::nn::Module& module, Optimizer& optimizer, int64_t step,
                           double elapsed, const nlohmann::json& extra, int64_t keep) {
  Checkpoint c;
  c.model = capture_parameters(module);
  c.optimizer = optimizer.state_dict();
  c.rng_state = capture_rng_state();
  c.state.step = step;
  c.state.data_cursor = step;
  c.state.elapsed_seconds = elapsed;
  c.state.model_config = config_to_json(stage.loaded.config);
  c.state.extra = extra;
  save_checkpoint((fs::path(stage.dir) / "checkpoints").string(), c, keep);
}

int64_t resume_stage(const Stage& stage, torch::nn::Module& module, Optimizer& optimizer, double& elapsed,
                     nlohmann::json& extra) {
  auto latest = load_latest_checkpoint((fs::path(stage.dir) / "checkpoints").string());
  for (const auto& why : latest.skipped) fmt::print("resume: skipped {}\n", why);
  if (!latest.checkpoint) {
    fmt::print("resume: no complete checkpoint in {}/checkpoints; starting from step 0\n", stage.dir);
    return 0;
  }
  const auto& c = *latest.checkpoint;
  check_resumable(c.state, config_to_json(stage.loaded.config), 1);
  restore_parameters(module, c.model, latest.dir);
  optimizer.load_state_dict(c.optimizer);
  restore_rng_state(c.rng_state);
  elapsed = c.state.elapsed_seconds;
  extra = c.state.extra;
  fmt::print("resumed from {}: step {}\n", latest.dir, c.state.step);
  return c.state.step;
}

void finish_stage(Stage& stage, CausalLM& model, const nlohmann::json& summary,
                  const std::vector<std::pair<std::string, std::string>>& plot, const std::string& ylabel) {
  const std::string final_dir = (fs::path(stage.dir) / "final").string();
  if (fs::exists(final_dir)) fs::remove_all(final_dir);  // a resumed run finishing again
  model->eval();
  SaveOptions save;
  save.source_dir = stage.loaded.dir;  // its tokenizer files and generation settings, as they were
  save_hf_folder(final_dir, model, stage.loaded.tokenizer, save);
  plot_metrics(stage.metrics.path(), (fs::path(stage.dir) / "loss.png").string(), stage.name, plot, ylabel);
  auto s = summary;
  s["stage"] = stage.name;
  s["threads"] = stage.threads;
  s["finished"] = utc_timestamp();
  // Sampled answers may end inside a UTF-8 character (a byte-level token): replace, never throw.
  write_text((fs::path(stage.dir) / "summary.json").string(),
             s.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
  fmt::print("{}: model folder {} (summary.json, metrics.jsonl, loss.png in {})\n", stage.name, final_dir, stage.dir);
}

std::string format_change(const char* what, double before, double after, int64_t n) {
  return fmt::format("{} {:.3f} -> {:.3f} (n = {})", what, before, after, n);
}

PairedChange paired_change(const TaskEval& before, const TaskEval& after, const std::string& task) {
  if (before.correct.size() != after.correct.size() || before.task_of != after.task_of) {
    throw std::invalid_argument(
        fmt::format("paired_change: {} problems before but {} after, or other tasks (the same test set is needed)",
                    before.correct.size(), after.correct.size()));
  }
  PairedChange c;
  for (size_t i = 0; i < after.correct.size(); ++i) {
    if (!task.empty() && after.task_of[i] != task) continue;
    c.problems += 1;
    c.fixed += !before.correct[i] && after.correct[i];
    c.broken += before.correct[i] && !after.correct[i];
  }
  // Two-sided exact binomial test, p = 1/2, on the n discordant problems: twice the tail of the
  // smaller count, at most 1. Terms in logs (lgamma), so n in the thousands does not overflow.
  const int64_t n = c.fixed + c.broken, k = std::min(c.fixed, c.broken);
  double tail = 0;
  for (int64_t i = 0; i <= k; ++i) {
    tail += std::exp(std::lgamma(n + 1.0) - std::lgamma(i + 1.0) - std::lgamma(n - i + 1.0) - n * std::log(2.0));
  }
  c.p_value = std::min(1.0, 2 * tail);
  return c;
}

nlohmann::json PairedChange::to_json() const {
  return {{"fixed", fixed}, {"broken", broken}, {"problems", problems}, {"mcnemar_exact_p", p_value}};
}

std::string PairedChange::describe() const {
  return fmt::format("{} fixed, {} broken, exact McNemar p {}", fixed, broken,
                     p_value < 1e-4 ? std::string("< 0.0001") : fmt::format("= {:.4f}", p_value));
}

nlohmann::json task_change_json(const TaskEval& before, const TaskEval& after) {
  nlohmann::json paired_per_task = nlohmann::json::object();
  for (const auto& [task, accuracy] : after.per_task)
    paired_per_task[task] = paired_change(before, after, task).to_json();
  return {{"before", before.to_json()},
          {"after", after.to_json()},
          {"accuracy_before", before.accuracy},
          {"accuracy_after", after.accuracy},
          {"paired", paired_change(before, after).to_json()},
          {"paired_per_task", paired_per_task},
          {"reward_before", before.mean_reward},
          {"reward_after", after.mean_reward},
          {"test_problems", after.problems}};
}

std::string format_accuracy_change(const char* what, const TaskEval& before, const TaskEval& after) {
  return fmt::format("{} {:.3f} -> {:.3f} (n = {}; {})", what, before.accuracy, after.accuracy, after.problems,
                     paired_change(before, after).describe());
}

std::vector<std::string> train_task_list(const std::string& section, const std::string& list,
                                         const std::vector<std::string>& stage_tasks) {
  if (list.empty()) return stage_tasks;
  try {
    return parse_task_list(list);
  } catch (const std::invalid_argument& e) {
    throw ConfigError(section + ".train_tasks: " + e.what());
  }
}

void print_trained_tasks(const std::string& stage, const std::vector<std::string>& trained, const TaskEval& before,
                         const TaskEval& after) {
  for (const auto& task : trained) {
    if (after.per_task.count(task) == 0) continue;  // trained on, but not among tasks.names
    const auto c = paired_change(before, after, task);
    fmt::print("{}: trained task {}: held-out accuracy {:.3f} -> {:.3f} (n = {}; {})\n", stage, task,
               before.per_task.at(task), after.per_task.at(task), c.problems, c.describe());
  }
}

}  // namespace llm::cli
