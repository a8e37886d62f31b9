// What every subcommand of `llm` shares: exit statuses, command-line parsing, error reporting.
#pragma once

#include <llm/cli/run.h>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <functional>
#include <string>

namespace llm::cli {

// Exit statuses: 0 done, 1 failed while running, 2 a usage error (bad option, value or config).
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

// Parses the command line: --help exits 0, a parse error (unknown option, bad value) exits 2.
// Returns -1 when parsing succeeded and the command should run.
inline int parse_command_line(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return kExitUsage;
  }
  return -1;
}

// Runs a command body, turning exceptions into a message and an exit status: UsageError and
// ConfigError (bad input) -> 2, anything else -> 1. `name` prefixes the message ("llm pretrain").
int run_command(const std::string& name, const std::function<int()>& body);

}  // namespace llm::cli
