#include <llm/cli/command.h>

#include <llm/config/fields.h>

namespace llm::cli {

int run_command(const std::string& name, const std::function<int()>& body) {
  try {
    return body();
  } catch (const UsageError& e) {
    fmt::print(stderr, "{}: error: {}\n", name, e.what());
    return kExitUsage;
  } catch (const ConfigError& e) {
    fmt::print(stderr, "{}: error: {}\n", name, e.what());
    return kExitUsage;
  } catch (const std::exception& e) {
    fmt::print(stderr, "{}: error: {}\n", name, e.what());
    return kExitFailure;
  }
}

}  // namespace llm::cli
