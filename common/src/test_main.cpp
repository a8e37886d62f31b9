// The main() of every lesson test binary.
//
// GoogleTest runs all tests in one process, so a single segfault or infinite loop in a learner's
// code would hide every other result. This runner asks GoogleTest for the list of tests, then runs
// each one in a forked child process with a timeout, and reports every test whatever its
// neighbours did. Forking after LibTorch is loaded costs ~1 ms; starting a fresh process would cost
// ~0.8 s each (measured on a 2-core Debian machine: loading libtorch and registering operators).
//
// Options (besides GoogleTest's own, e.g. --gtest_filter=RMSNorm.*):
//   --llm-name=NAME       the name in the summary (ctest passes lesson02.basic)
//   --llm-results=FILE    also write "test<TAB>PASS|FAIL|CRASH|TIMEOUT<TAB>ms" lines there
//   --llm-timeout=SEC     per-test limit, default 120
//   --llm-no-fork         plain GoogleTest in this process (for a debugger)
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace {

struct Options {
  std::string name = "tests";
  std::string results_file;
  double timeout_seconds = 120;
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
    } else if (arg == "--llm-no-fork") {
      options.fork = false;
    } else {
      fmt::print(stderr,
                 "unknown option '{}'; valid: --llm-name=, --llm-results=, --llm-timeout=, "
                 "--llm-no-fork and GoogleTest's --gtest_* options\n",
                 arg);
      std::exit(2);
    }
  }
  if (const char* env = std::getenv("LLM_TEST_TIMEOUT")) {  // the environment wins over --llm-timeout
    options.timeout_seconds = ParseSeconds(env, "LLM_TEST_TIMEOUT");
  }
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
};

Result RunInChild(const std::string& test, double timeout_seconds) {
  std::fflush(stdout);
  std::fflush(stderr);
  const auto start = std::chrono::steady_clock::now();
  pid_t pid = fork();
  if (pid < 0) {
    return {test, Status::kCrash, 0, fmt::format("fork() failed: {}", std::strerror(errno))};
  }
  if (pid == 0) {
    GTEST_FLAG_SET(filter, test);
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new FailurePrinter);  // the parent prints the verdict line
    int rc = RUN_ALL_TESTS();
    std::fflush(stdout);
    std::fflush(stderr);
    std::_Exit(rc == 0 ? 0 : 1);
  }

  int wstatus = 0;
  auto sleep = std::chrono::microseconds(200);
  while (true) {
    pid_t done = waitpid(pid, &wstatus, WNOHANG);
    const auto elapsed = std::chrono::steady_clock::now() - start;
    const long long ms = std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count();
    if (done == pid) {
      if (WIFEXITED(wstatus)) {
        return {test, WEXITSTATUS(wstatus) == 0 ? Status::kPass : Status::kFail, ms, ""};
      }
      int sig = WIFSIGNALED(wstatus) ? WTERMSIG(wstatus) : 0;
      return {test, Status::kCrash, ms, fmt::format("killed by signal {} ({})", sig, strsignal(sig))};
    }
    if (ms > timeout_seconds * 1000) {
      kill(pid, SIGKILL);
      waitpid(pid, &wstatus, 0);
      return {test, Status::kTimeout, ms,
              fmt::format("still running after {:g} s (an infinite loop?), killed", timeout_seconds)};
    }
    std::this_thread::sleep_for(sleep);
    sleep = std::min(sleep * 2, std::chrono::microseconds(20000));
  }
}

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
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

  fmt::print("{}: {} tests, each in its own process (timeout {:g} s)\n", options.name, tests.size(),
             options.timeout_seconds);
  std::vector<Result> results;
  int passed = 0;
  for (const auto& test : tests) {
    Result r = RunInChild(test, options.timeout_seconds);
    passed += r.status == Status::kPass;
    fmt::print("[{:^9}] {} ({} ms){}{}\n", StatusName(r.status), r.test, r.ms, r.detail.empty() ? "" : ": ", r.detail);
    std::fflush(stdout);
    results.push_back(r);
  }

  if (!options.results_file.empty()) {
    std::ofstream out(options.results_file);
    for (const auto& r : results) out << r.test << '\t' << StatusName(r.status) << '\t' << r.ms << '\n';
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
