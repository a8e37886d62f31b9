// llm report: the report card of a run folder, one page that says what every stage did.
//
//   llm report runs/demo          writes runs/demo/report.md (and prints it)
//
// It reads what the stages left (no model is loaded, nothing is recomputed): each stage's
// summary.json and metrics.jsonl, and <stage>/evaluation/report.json where `llm evaluate` ran.
//
//   | stage | time | tokens | final loss | bits per byte | task accuracy | preference acc. | reward | pass@k |
//
// then the plots (each stage's loss.png), the hardware and threads, and sample outputs.
#include "commands.h"

#include <llm/cli/run.h>
#include <llm/cli/text.h>
#include <llm/common/files.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <thread>

namespace llm::cli {

namespace {

namespace fs = std::filesystem;

const std::vector<std::string>& stage_order() {
  static const std::vector<std::string> order = {"pretrain", "sft", "sft-lora", "sft-qlora", "dpo", "grpo", "ppo"};
  return order;
}

nlohmann::json read_json(const fs::path& path) {
  return fs::exists(path) ? nlohmann::json::parse(read_file(path.string())) : nlohmann::json();
}

// The last training loss in metrics.jsonl (lines with "loss").
std::string last_loss(const fs::path& metrics) {
  if (!fs::exists(metrics)) return "";
  double loss = NAN;
  for (const auto& line : read_metrics(metrics.string())) {
    if (line.contains("loss") && line["loss"].is_number()) loss = line["loss"].get<double>();
  }
  return std::isnan(loss) ? "" : fmt::format("{:.3f}", loss);
}

std::string change(const nlohmann::json& s, const char* before, const char* after) {
  if (!s.contains(before) || !s.contains(after)) return "";
  return fmt::format("{:.3f} -> {:.3f}", s[before].get<double>(), s[after].get<double>());
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  }
  return "unknown CPU";
}

int run(const std::string& dir) {
  if (!fs::is_directory(dir)) throw UsageError(dir + " is not a run folder");
  std::vector<std::string> stages;
  for (const auto& s : stage_order()) {
    if (fs::exists(fs::path(dir) / s / "summary.json")) stages.push_back(s);
  }
  if (stages.empty()) {
    throw UsageError(dir + " has no stage with a summary.json (pretrain/, sft/, dpo/, grpo/, ppo/); run a stage first");
  }

  std::string md = fmt::format("# Report card: `{}`\n\n", dir);
  md +=
      "| stage | time | tokens | final train loss | bits per byte (held-out novel) | task accuracy | preference "
      "accuracy "
      "| mean reward | pass@1 / pass@k |\n|---|---|---|---|---|---|---|---|---|\n";
  int64_t threads = 0;
  std::vector<std::string> samples;
  for (const auto& stage : stages) {
    const fs::path d = fs::path(dir) / stage;
    const auto s = read_json(d / "summary.json");
    const auto e = read_json(d / "evaluation" / "report.json");
    threads = std::max<int64_t>(threads, s.value("threads", int64_t{0}));
    const std::string time = s.contains("seconds") ? format_duration(s["seconds"].get<double>()) : "";
    std::string tokens = s.contains("tokens") ? format_count(s["tokens"].get<double>()) : "";
    if (s.contains("steps"))
      tokens += (tokens.empty() ? "" : " in ") + format_count(s["steps"].get<double>()) + " steps";
    std::string bpb = change(s, "val_bpb_before", "val_bpb_after");
    if (bpb.empty() && !e.is_null()) bpb = fmt::format("{:.3f}", e["validation"]["bpb"].get<double>());
    std::string accuracy = change(s, "accuracy_before", "accuracy_after");
    if (!accuracy.empty() && s.contains("test_problems"))
      accuracy += fmt::format(" (n = {})", s["test_problems"].get<int64_t>());
    if (accuracy.empty() && !e.is_null() && e.contains("tasks")) {
      accuracy =
          fmt::format("{:.3f} (n = {})", e["tasks"]["accuracy"].get<double>(), e["tasks"]["problems"].get<int64_t>());
    }
    std::string preference = change(s, "preference_accuracy_before", "preference_accuracy_after");
    if (!preference.empty()) preference += fmt::format(" (n = {})", s["preference_pairs"].get<int64_t>());
    const std::string reward = change(s, "reward_before", "reward_after");
    std::string pass;
    if (!e.is_null() && e.contains("pass_at_k")) {
      const auto& p = e["pass_at_k"];
      const auto n = p["n"].get<int64_t>();
      pass = fmt::format("{:.3f} / pass@{} {:.3f}", p["pass@1"].get<double>(), n,
                         p["pass@" + std::to_string(n)].get<double>());
    }
    md += fmt::format("| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n", stage, time, tokens,
                      last_loss(d / "metrics.jsonl"), bpb, accuracy, preference, reward, pass);
    if (!e.is_null() && e.contains("samples")) {
      for (const auto& x : e["samples"]) {
        if (samples.size() < 12) samples.push_back(stage + ": " + x.get<std::string>());
      }
    }
  }
  md +=
      "\nBits per byte: validation on the held-out novel (data/austen/val.txt), before -> after for pretraining, "
      "from `llm evaluate` for the later stages. Task accuracy: greedy answers to the built-in tasks' held-out "
      "problems, exact match. pass@k: the unbiased estimator over sampled answers (lesson 12).\n";

  md += "\n## Plots\n\n";
  for (const auto& stage : stages) {
    if (fs::exists(fs::path(dir) / stage / "loss.png")) md += fmt::format("![{0}]({0}/loss.png)\n", stage);
  }

  md += "\n## Machine\n\n";
  md += fmt::format("{}, {} cores, {} threads used by the stages.\n", cpu_model(), std::thread::hardware_concurrency(),
                    threads);

  md += "\n## Samples\n\n";
  const fs::path pretrain_samples = fs::path(dir) / "pretrain" / "samples.txt";
  if (fs::exists(pretrain_samples)) {
    auto text = read_file(pretrain_samples.string());
    if (text.size() > 600) text.resize(600 - incomplete_utf8_suffix(std::string_view(text).substr(0, 600)));
    md += "From the pretrained model (pretrain/samples.txt):\n\n```text\n" + text + "\n```\n\n";
  }
  for (const auto& s : samples) md += "- " + s + "\n";

  const std::string out = (fs::path(dir) / "report.md").string();
  write_text(out, md);
  fmt::print("{}\nllm report: wrote {}\n", md, out);
  return 0;
}

}  // namespace

int report_main(int argc, char** argv) {
  CLI::App app{"Write the report card of a run folder (report.md): every stage's figures, plots, samples.",
               "llm report"};
  std::string dir;
  app.add_option("run", dir, "the run folder, e.g. runs/demo")->required();
  if (int rc = parse_command_line(app, argc, argv); rc >= 0) return rc;
  return run_command("llm report", [&] { return run(dir); });
}

}  // namespace llm::cli
