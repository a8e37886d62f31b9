// What every stage of the pipeline needs and no lesson teaches: its run folder, its metrics log,
// the progress line, the loss plot, the thread count.
//
//   runs/NAME/                 one run of the pipeline
//     tokenizer/               llm tokenizer train
//     pretrain/                llm pretrain: config.yaml, metrics.jsonl, loss.png, checkpoints/, final/, summary.json
//     sft/, dpo/, grpo/ ...    the later stages, each the same layout, each reading the previous final/
//
// A stage folder is never overwritten: a second run into it is refused unless --resume says to
// continue it: a tool that silently overwrites a folder loses its user's work.
#pragma once

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

namespace llm::cli {

// A usage error: a bad option or value. The programs print it and exit with status 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Creates (or, with resume, reopens) <run>/<stage>. Without resume an existing non-empty folder is
// a UsageError; with resume a missing one is.
std::string prepare_stage_dir(const std::string& run, const std::string& stage, bool resume);

// Threads for this process: `requested` if > 0, else the cores divided among the local processes
// (LOCAL_WORLD_SIZE, set by `llm launch` and torchrun), at least 1. Sets LibTorch's intra-op
// threads and returns the number. Two processes with two threads each on two cores run several
// times slower than with one each: the cores are oversubscribed, and at every parallel region
// OpenMP's threads spin waiting for a thread that has no core to run on.
int64_t configure_threads(int64_t requested);

// Appends one JSON object per line, flushed at once, so a killed run keeps every line it wrote.
class MetricsLog {
 public:
  MetricsLog() = default;
  // With keep_until_step >= 0 (a resumed run), lines whose "step" is greater are dropped first: they
  // came from the part of the killed run after its last checkpoint.
  MetricsLog(const std::string& path, int64_t keep_until_step = -1);
  void log(const nlohmann::json& record);
  bool active() const { return out_.is_open(); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::ofstream out_;
};

// Every record of a metrics.jsonl file.
std::vector<nlohmann::json> read_metrics(const std::string& path);

// "step 120/600 (20%) | loss 3.4121 | lr 1.20e-03 | 10,532 tok/s | 0:42 elapsed | eta 2:48"
// On a terminal the line is redrawn in place; into a file or pipe every update is a line.
class Progress {
 public:
  Progress(std::string label, int64_t total, int64_t start = 0);
  void update(int64_t done, const std::string& fields);
  void finish();  // ends the line on a terminal
  double elapsed() const;

 private:
  std::string label_;
  int64_t total_, start_;
  std::chrono::steady_clock::time_point t0_;
  bool tty_;
  bool open_line_ = false;
};

std::string format_duration(double seconds);  // 0:42, 12:05, 1:02:03
std::string format_count(double value);       // 10,532

// A PNG of the given series of metrics.jsonl against "step" with gnuplot. series: {key, title}.
// Returns false (and says why on stderr) when gnuplot is missing or fails: a plot is never worth
// failing a training run for.
bool plot_metrics(const std::string& metrics_path, const std::string& png_path, const std::string& title,
                  const std::vector<std::pair<std::string, std::string>>& series, const std::string& ylabel);

// Writes `text` to path atomically (see llm/common/files.h).
void write_text(const std::string& path, const std::string& text);

// The current time as 2026-12-01T19:42:53Z.
std::string utc_timestamp();

}  // namespace llm::cli
