#include <llm/cli/run.h>
#include <llm/common/files.h>

#include <fmt/format.h>
#include <torch/torch.h>

#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <sstream>
#include <thread>

namespace llm::cli {

namespace fs = std::filesystem;

std::string prepare_stage_dir(const std::string& run, const std::string& stage, bool resume) {
  const fs::path dir = fs::path(run) / stage;
  const bool exists = fs::exists(dir) && !fs::is_empty(dir);
  if (resume && !exists) {
    throw UsageError("--resume: there is no '" + dir.string() + "' to continue; run without --resume to start it");
  }
  if (!resume && exists) {
    throw UsageError("'" + dir.string() + "' already exists; pass --resume to continue it, or choose another --run " +
                     "(nothing is overwritten)");
  }
  fs::create_directories(dir);
  return dir.string();
}

int64_t configure_threads(int64_t requested) {
  if (requested < 0) throw UsageError("--threads must be >= 0 (0 = every core), got " + std::to_string(requested));
  int64_t threads = requested;
  if (threads == 0) {
    int64_t local = 1;
    if (const char* env = std::getenv("LOCAL_WORLD_SIZE")) local = std::max<int64_t>(1, std::atoll(env));
    threads = std::max<int64_t>(1, static_cast<int64_t>(std::thread::hardware_concurrency()) / local);
  }
  torch::set_num_threads(static_cast<int>(threads));
  return threads;
}

MetricsLog::MetricsLog(const std::string& path, int64_t keep_until_step) : path_(path) {
  if (keep_until_step >= 0 && fs::exists(path)) {
    std::string kept;
    for (const auto& record : read_metrics(path)) {
      if (!record.contains("step") || record["step"].get<int64_t>() <= keep_until_step) kept += record.dump() + "\n";
    }
    write_file_atomically(path, kept);
  }
  out_.open(path, std::ios::app);
  if (!out_) throw std::runtime_error("cannot write '" + path + "'");
}

void MetricsLog::log(const nlohmann::json& record) {
  if (!out_.is_open()) return;
  out_ << record.dump() << '\n';
  out_.flush();
}

std::vector<nlohmann::json> read_metrics(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    try {
      out.push_back(nlohmann::json::parse(line));
    } catch (const nlohmann::json::exception&) {
      // a line cut by a kill mid-write: the records before it are still good
    }
  }
  return out;
}

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const int64_t s = static_cast<int64_t>(std::llround(seconds));
  if (s >= 3600) return fmt::format("{}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60);
  return fmt::format("{}:{:02}", s / 60, s % 60);
}

std::string format_count(double value) {
  std::string digits = std::to_string(static_cast<int64_t>(std::llround(value)));
  std::string out;
  const int n = static_cast<int>(digits.size());
  for (int i = 0; i < n; ++i) {
    out += digits[i];
    const int left = n - 1 - i;
    if (left > 0 && left % 3 == 0 && digits[i] != '-') out += ',';
  }
  return out;
}

Progress::Progress(std::string label, int64_t total, int64_t start)
    : label_(std::move(label)),
      total_(total),
      start_(start),
      t0_(std::chrono::steady_clock::now()),
      tty_(isatty(fileno(stdout))) {}

double Progress::elapsed() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
}

void Progress::update(int64_t done, const std::string& fields) {
  const double t = elapsed();
  const int64_t this_run = done - start_;
  const double eta = this_run > 0 ? t / this_run * static_cast<double>(total_ - done) : NAN;
  const int pct = total_ > 0 ? static_cast<int>(100.0 * done / total_) : 0;
  const std::string line = fmt::format("{} {}/{} ({}%) | {} | {} elapsed | eta {}", label_, done, total_, pct, fields,
                                       format_duration(t), format_duration(eta));
  if (tty_) {
    fmt::print("\r\033[K{}", line);
    open_line_ = true;
  } else {
    fmt::print("{}\n", line);
  }
  std::fflush(stdout);
}

void Progress::finish() {
  if (open_line_) fmt::print("\n");
  open_line_ = false;
  std::fflush(stdout);
}

bool plot_metrics(const std::string& metrics_path, const std::string& png_path, const std::string& title,
                  const std::vector<std::pair<std::string, std::string>>& series, const std::string& ylabel) {
  const auto records = read_metrics(metrics_path);
  const std::string data_path = png_path + ".dat";
  std::string script = fmt::format(
      "set terminal png size 900,520\nset output '{}'\nset title '{}'\nset xlabel 'step'\nset ylabel '{}'\n"
      "set grid\nset key top right\nplot ",
      png_path, title, ylabel);
  std::string data;
  int blocks = 0;
  for (size_t i = 0; i < series.size(); ++i) {
    const auto& [key, name] = series[i];
    std::string block;
    for (const auto& r : records) {
      if (r.contains(key) && r.contains("step") && r[key].is_number()) {
        block += fmt::format("{} {}\n", r["step"].get<int64_t>(), r[key].get<double>());
      }
    }
    if (block.empty()) continue;
    data += block + "\n\n";
    script += fmt::format("{}'{}' index {} with {} title '{}'", blocks ? ", " : "", data_path, blocks,
                          i == 0 ? "lines lw 1" : "linespoints lw 2 pt 7", name);
    ++blocks;
  }
  if (blocks == 0) return false;
  write_file_atomically(data_path, data);
  FILE* gp = popen("gnuplot 2>&1", "w");
  if (gp == nullptr) {
    fmt::print(stderr, "note: no loss plot: cannot run gnuplot\n");
    return false;
  }
  std::fputs(script.c_str(), gp);
  const int rc = pclose(gp);
  fs::remove(data_path);
  if (rc != 0) {
    fmt::print(stderr, "note: no loss plot: gnuplot failed (is gnuplot-nox installed?)\n");
    return false;
  }
  return true;
}

void write_text(const std::string& path, const std::string& text) {
  write_file_atomically(path, text);
}

std::string utc_timestamp() {
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buffer[32];
  std::strftime(buffer, sizeof buffer, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buffer;
}

}  // namespace llm::cli
