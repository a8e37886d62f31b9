// The main() of every lesson test binary.
//
// GoogleTest runs all tests in one process, so a single segfault or infinite loop in a learner's
// code would hide every other result. This runner asks GoogleTest for the list of tests, then runs
// each one in a forked child process with a timeout, and reports every test whatever its
// neighbours did. Forking after LibTorch is loaded costs ~1 ms; starting a fresh process would cost
// ~0.8 s each (measured on a 2-core Debian machine: loading libtorch and registering operators).
// Children run side by side, one per core (each with its share of LibTorch's threads), their
// output captured and printed in the tests' order, so a suite takes about half as long on 2 cores.
//
// Options (besides GoogleTest's own, e.g. --gtest_filter=RMSNorm.*):
//   --llm-name=NAME       the name in the summary (ctest passes lesson02.basic)
//   --llm-results=FILE    also write "test<TAB>PASS|FAIL|CRASH|TIMEOUT<TAB>ms<TAB>output" lines there (the
//                         test's output, at most 8,000 bytes, with \\ \t \n \r escaped; for grade.py)
//   --llm-timeout=SEC     per-test limit, default 120
//   --llm-jobs=N          tests run at once, default one per core (LLM_TEST_JOBS wins)
//   --llm-no-fork         plain GoogleTest in this process (for a debugger)
//
// A LibTorch error (c10::Error, from TORCH_CHECK or a shape mismatch inside an operator) carries a
// C++ stack trace in its message: twenty-odd "frame #n: <unknown function>" lines that bury the one
// line a learner needs. The runner replaces the trace with one line, so a failing test shows the
// error's message, where it was raised, and the test's name. LLM_TEST_BACKTRACE=1 keeps the trace.
#include <ATen/Parallel.h>
#include <c10/util/Logging.h>
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace {

struct Options {
  std::string name = "tests";
  std::string results_file;
  double timeout_seconds = 120;
  int jobs = std::max(1u, std::thread::hardware_concurrency());
  bool fork = true;
};

bool StartsWith(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

// A positive number of seconds, or exit(2) with a message naming where the bad value came from.
double ParseSeconds(const char* text, const char* where) {
  char* end = nullptr;
  const double seconds = std::strtod(text, &end);
  if (end == text || *end != '\0' || !(seconds > 0)) {
    fmt::print(stderr, "{}: '{}' is not a positive number of seconds\n", where, text);
    std::exit(2);
  }
  return seconds;
}

// A count from 1 to 64, or exit(2) naming the bad value.
int ParseJobs(const char* text, const char* where) {
  char* end = nullptr;
  const long jobs = std::strtol(text, &end, 10);
  if (end == text || *end != '\0' || jobs < 1 || jobs > 64) {
    fmt::print(stderr, "{}: '{}' is not a number of parallel tests from 1 to 64\n", where, text);
    std::exit(2);
  }
  return static_cast<int>(jobs);
}

Options ParseOptions(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (StartsWith(arg, "--llm-name=")) {
      options.name = arg.substr(11);
    } else if (StartsWith(arg, "--llm-results=")) {
      options.results_file = arg.substr(14);
    } else if (StartsWith(arg, "--llm-timeout=")) {
      options.timeout_seconds = ParseSeconds(arg.c_str() + 14, "--llm-timeout");
    } else if (StartsWith(arg, "--llm-jobs=")) {
      options.jobs = ParseJobs(arg.c_str() + 11, "--llm-jobs");
    } else if (arg == "--llm-no-fork") {
      options.fork = false;
    } else {
      fmt::print(stderr,
                 "unknown option '{}'; valid: --llm-name=, --llm-results=, --llm-timeout=, "
                 "--llm-jobs=, --llm-no-fork and GoogleTest's --gtest_* options\n",
                 arg);
      std::exit(2);
    }
  }
  if (const char* env = std::getenv("LLM_TEST_TIMEOUT")) {  // the environment wins over --llm-timeout
    options.timeout_seconds = ParseSeconds(env, "LLM_TEST_TIMEOUT");
  }
  if (const char* env = std::getenv("LLM_TEST_JOBS")) options.jobs = ParseJobs(env, "LLM_TEST_JOBS");
  if (std::getenv("LLM_NO_FORK")) options.fork = false;
  return options;
}

// GoogleTest's filter syntax: "POS1:POS2-NEG1:NEG2" with * and ? wildcards.
bool GlobMatch(const char* pattern, const char* text) {
  if (*pattern == '\0') return *text == '\0';
  if (*pattern == '*') return GlobMatch(pattern + 1, text) || (*text && GlobMatch(pattern, text + 1));
  if (*text == '\0') return false;
  return (*pattern == '?' || *pattern == *text) && GlobMatch(pattern + 1, text + 1);
}

bool AnyMatch(const std::string& patterns, const std::string& name) {
  size_t start = 0;
  while (start <= patterns.size()) {
    size_t end = patterns.find(':', start);
    if (end == std::string::npos) end = patterns.size();
    if (end > start && GlobMatch(patterns.substr(start, end - start).c_str(), name.c_str())) return true;
    start = end + 1;
  }
  return false;
}

bool FilterAccepts(const std::string& filter, const std::string& name) {
  size_t dash = filter.find('-');
  std::string positive = dash == std::string::npos ? filter : filter.substr(0, dash);
  std::string negative = dash == std::string::npos ? "" : filter.substr(dash + 1);
  if (positive.empty()) positive = "*";
  return AnyMatch(positive, name) && !AnyMatch(negative, name);
}

// In a child, GoogleTest's own printer would repeat the banner for every test; print failures only.
class FailurePrinter : public ::testing::EmptyTestEventListener {
  void OnTestPartResult(const ::testing::TestPartResult& part) override {
    if (!part.failed()) return;
    if (part.file_name() != nullptr) {
      fmt::print("{}:{}: Failure\n{}\n", part.file_name(), part.line_number(), part.message());
    } else {  // an exception escaped the test body: GoogleTest knows no line
      fmt::print("Failure: {}\n", part.message());
    }
  }
};

enum class Status { kPass, kFail, kCrash, kTimeout };

const char* StatusName(Status s) {
  switch (s) {
    case Status::kPass:
      return "PASS";
    case Status::kFail:
      return "FAIL";
    case Status::kCrash:
      return "CRASH";
    case Status::kTimeout:
      return "TIMEOUT";
  }
  return "?";
}

struct Result {
  std::string test;
  Status status;
  long long ms;
  std::string detail;
  std::string output;  // what the test printed (assertion failures), then the detail
};

// One line of the results file may not contain a tab or a newline: escape them (and \\ and \r).
std::string EscapeField(const std::string& text) {
  std::string out;
  for (char c : text.substr(0, 8000)) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        out += c;
    }
  }
  return out;
}

// One test in a forked child, its stdout and stderr going to a temporary file the parent
// prints when the child is done (children run side by side; their output must not interleave).
struct Child {
  size_t index;
  pid_t pid;
  std::chrono::steady_clock::time_point start;
  std::FILE* output;
};

Child StartChild(size_t index, const std::string& test, int threads) {
  std::fflush(stdout);
  std::fflush(stderr);
  std::FILE* output = std::tmpfile();
  const pid_t pid = output == nullptr ? -1 : fork();
  if (pid == 0) {
    dup2(fileno(output), STDOUT_FILENO);
    dup2(fileno(output), STDERR_FILENO);
    if (threads > 0) at::set_num_threads(threads);
    GTEST_FLAG_SET(filter, test);
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new FailurePrinter);  // the parent prints the verdict line
    int rc = RUN_ALL_TESTS();
    std::fflush(stdout);
    std::fflush(stderr);
    std::_Exit(rc == 0 ? 0 : 1);
  }
  return {index, pid, std::chrono::steady_clock::now(), output};
}

// The child's verdict if it has finished (or was killed for running too long), else nothing.
std::optional<Result> Poll(const Child& child, const std::string& test, double timeout_seconds) {
  if (child.pid < 0) {
    return Result{test, Status::kCrash, 0, fmt::format("could not start the test: {}", std::strerror(errno)), {}};
  }
  int wstatus = 0;
  const pid_t done = waitpid(child.pid, &wstatus, WNOHANG);
  const auto elapsed = std::chrono::steady_clock::now() - child.start;
  const long long ms = std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count();
  if (done == child.pid) {
    if (WIFEXITED(wstatus)) {
      return Result{test, WEXITSTATUS(wstatus) == 0 ? Status::kPass : Status::kFail, ms, "", {}};
    }
    const int sig = WIFSIGNALED(wstatus) ? WTERMSIG(wstatus) : 0;
    return Result{test, Status::kCrash, ms, fmt::format("killed by signal {} ({})", sig, strsignal(sig)), {}};
  }
  if (ms > timeout_seconds * 1000) {
    kill(child.pid, SIGKILL);
    waitpid(child.pid, &wstatus, 0);
    return Result{test,
                  Status::kTimeout,
                  ms,
                  fmt::format("still running after {:g} s (an infinite loop?), killed", timeout_seconds),
                  {}};
  }
  return std::nullopt;
}

std::string ReadAll(std::FILE* file) {
  std::string text;
  if (file == nullptr) return text;
  std::rewind(file);
  char buffer[4096];
  size_t n = 0;
  while ((n = std::fread(buffer, 1, sizeof(buffer), file)) > 0) text.append(buffer, n);
  std::fclose(file);
  return text;
}

// Runs every test in its own child, `jobs` at a time, and prints each one's output and verdict
// in the tests' order.
std::vector<Result> RunAll(const std::vector<std::string>& tests, const Options& options) {
  const int jobs = std::max(1, std::min<int>(options.jobs, static_cast<int>(tests.size())));
  // Each child gets its share of the cores for LibTorch (0: leave LibTorch's own default). Asking
  // LibTorch here would start its thread pool before fork(), which children must never inherit.
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const int threads = jobs > 1 ? std::max(1, cores / jobs) : 0;
  std::vector<std::optional<Result>> results(tests.size());
  std::vector<std::string> outputs(tests.size());
  std::vector<Child> running;
  size_t next_to_start = 0, next_to_print = 0;
  auto sleep = std::chrono::microseconds(200);
  while (next_to_print < tests.size()) {
    while (next_to_start < tests.size() && static_cast<int>(running.size()) < jobs) {
      running.push_back(StartChild(next_to_start, tests[next_to_start], threads));
      ++next_to_start;
    }
    bool any_done = false;
    for (size_t i = 0; i < running.size();) {
      const Child& child = running[i];
      if (auto r = Poll(child, tests[child.index], options.timeout_seconds)) {
        outputs[child.index] = ReadAll(child.output);
        results[child.index] = std::move(r);
        running.erase(running.begin() + static_cast<std::ptrdiff_t>(i));
        any_done = true;
      } else {
        ++i;
      }
    }
    for (; next_to_print < tests.size() && results[next_to_print]; ++next_to_print) {
      const Result& r = *results[next_to_print];
      fmt::print("{}[{:^9}] {} ({} ms){}{}\n", outputs[next_to_print], StatusName(r.status), r.test, r.ms,
                 r.detail.empty() ? "" : ": ", r.detail);
      results[next_to_print]->output = outputs[next_to_print] + r.detail;
      std::fflush(stdout);
    }
    if (any_done) {
      sleep = std::chrono::microseconds(200);
    } else {
      std::this_thread::sleep_for(sleep);
      sleep = std::min(sleep * 2, std::chrono::microseconds(20000));
    }
  }
  std::vector<Result> out;
  for (auto& r : results) out.push_back(std::move(*r));
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  const char* backtrace = std::getenv("LLM_TEST_BACKTRACE");
  if (backtrace == nullptr || std::strcmp(backtrace, "1") != 0) {
    c10::SetStackTraceFetcher([] { return std::string("(C++ frames not shown: LLM_TEST_BACKTRACE=1 shows them)"); });
  }
  Options options = ParseOptions(argc, argv);
  if (!options.fork || GTEST_FLAG_GET(list_tests)) return RUN_ALL_TESTS();

  const std::string filter = GTEST_FLAG_GET(filter);
  std::vector<std::string> tests;
  const auto& unit = *::testing::UnitTest::GetInstance();
  for (int i = 0; i < unit.total_test_suite_count(); ++i) {
    const auto& suite = *unit.GetTestSuite(i);
    for (int j = 0; j < suite.total_test_count(); ++j) {
      std::string name = fmt::format("{}.{}", suite.name(), suite.GetTestInfo(j)->name());
      if (FilterAccepts(filter, name)) tests.push_back(name);
    }
  }

  fmt::print("{}: {} tests, each in its own process, {} at a time (timeout {:g} s)\n", options.name, tests.size(),
             std::max(1, std::min<int>(options.jobs, static_cast<int>(tests.size()))), options.timeout_seconds);
  const std::vector<Result> results = RunAll(tests, options);
  int passed = 0;
  for (const auto& r : results) passed += r.status == Status::kPass;

  if (!options.results_file.empty()) {
    std::ofstream out(options.results_file);
    for (const auto& r : results) {
      out << r.test << '\t' << StatusName(r.status) << '\t' << r.ms << '\t' << EscapeField(r.output) << '\n';
    }
    if (!out) {
      fmt::print(stderr, "could not write the results to '{}'\n", options.results_file);
      return 1;
    }
  }

  const int failed = static_cast<int>(results.size()) - passed;
  if (failed > 0) {
    fmt::print("{}: failed:", options.name);
    for (const auto& r : results) {
      if (r.status != Status::kPass) fmt::print(" {}", r.test);
    }
    fmt::print("\n");
  }
  fmt::print("{}: {} passed, {} failed\n", options.name, passed, failed);
  return failed == 0 && !tests.empty() ? 0 : 1;
}
