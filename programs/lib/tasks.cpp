#include <llm/cli/tasks.h>
#include <llm/data/pretrain_batches.h>

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <mutex>
#include <stdexcept>

namespace llm::cli {

namespace {

constexpr const char* kQuizDir = "/usr/share/games/bsdgames/quiz/";
constexpr const char* kQuizFiles[] = {"europe", "asia", "africa", "america", "state"};

uint64_t mix(uint64_t a, uint64_t b) {
  return SplitMix64(a * 0x9E3779B97F4A7C15ull ^ b).next();
}

uint64_t task_hash(const std::string& task) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (unsigned char c : task) h = (h ^ c) * 1099511628211ull;
  return h;
}

// A problem's split: one in five arithmetic problems is a test problem, decided by its numbers.
Split split_of(const std::string& task, int64_t a, int64_t b) {
  return mix(task_hash(task), static_cast<uint64_t>(a * 1000 + b)) % 5 == 0 ? Split::kTest : Split::kTrain;
}

// bsdgames quiz syntax: "a|b" alternatives, "[x|y]" a choice inside a word, "{x}" optional text.
// The canonical spelling takes the first alternative and includes optional text.
std::string canonical(const std::string& s) {
  std::string out;
  int depth_square = 0;
  bool skipping = false;  // after '|' inside [...] until ']'
  for (char c : s) {
    if (c == '[') {
      ++depth_square;
      skipping = false;
    } else if (c == ']') {
      depth_square = std::max(0, depth_square - 1);
      skipping = false;
    } else if (c == '|' && depth_square > 0) {
      skipping = true;
    } else if (c == '{' || c == '}') {
      continue;
    } else if (!skipping) {
      out += c;
    }
  }
  return out;
}

// Top-level alternatives "Vienna|Wien" (not those inside [] or {}).
std::vector<std::string> alternatives(const std::string& s) {
  std::vector<std::string> out;
  std::string cur;
  int depth = 0;
  for (char c : s) {
    if (c == '[' || c == '{') ++depth;
    if (c == ']' || c == '}') --depth;
    if (c == '|' && depth == 0) {
      out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  out.push_back(cur);
  return out;
}

struct Fact {
  std::string place, capital;
  std::vector<std::string> accepted;
};

const std::vector<Fact>& capital_facts() {
  static std::vector<Fact> facts;
  static std::once_flag once;
  std::call_once(once, [] {
    for (const char* name : kQuizFiles) {
      const std::string path = std::string(kQuizDir) + name;
      std::ifstream in(path);
      if (!in) {
        throw std::runtime_error("the capital task reads " + path +
                                 ", which is missing: install Debian's bsdgames (bash scripts/setup.sh does)");
      }
      std::string line;
      while (std::getline(in, line)) {
        const auto a = line.find(':');
        if (a == std::string::npos) continue;
        const auto b = line.find(':', a + 1);
        const std::string place = line.substr(0, a);
        const std::string capital = line.substr(a + 1, b == std::string::npos ? std::string::npos : b - a - 1);
        Fact f{canonical(alternatives(place)[0]), canonical(alternatives(capital)[0]), {}};
        for (const auto& alt : alternatives(capital)) f.accepted.push_back(normalise_answer(canonical(alt)));
        if (!f.place.empty() && !f.capital.empty()) facts.push_back(std::move(f));
      }
    }
  });
  return facts;
}

// Phrasings of the capital question; the last two only in the test split.
constexpr const char* kCapitalTrain[] = {"What is the capital of {}?", "Name the capital of {}.",
                                         "Which city is the capital of {}?"};
constexpr const char* kCapitalTest[] = {"What city is {}'s capital?", "Tell me the capital city of {}."};

}  // namespace

const std::vector<std::string>& task_names() {
  static const std::vector<std::string> names = {"add", "sub", "capital"};
  return names;
}

std::string normalise_answer(const std::string& text) {
  std::string out;
  bool space = false;
  for (unsigned char c : text) {
    if (std::isspace(c)) {
      space = !out.empty();
      continue;
    }
    if (space) out += ' ';
    space = false;
    out += static_cast<char>(std::tolower(c));
  }
  while (!out.empty() && out.back() == '.') out.pop_back();
  return out;
}

TaskExample make_task_example(const std::string& task, Split split, uint64_t seed, int64_t index) {
  if (index < 0) throw std::invalid_argument("task example index must be >= 0, got " + std::to_string(index));
  SplitMix64 rng(mix(mix(seed, task_hash(task)), static_cast<uint64_t>(index) * 2 + (split == Split::kTest)));
  if (task == "add" || task == "sub") {
    while (true) {
      int64_t a = 10 + static_cast<int64_t>(rng.below(90)), b = 10 + static_cast<int64_t>(rng.below(90));
      if (task == "sub" && a < b) std::swap(a, b);
      if (split_of(task, a, b) != split) continue;
      const int64_t result = task == "add" ? a + b : a - b;
      const std::string answer = std::to_string(result);
      return {task, fmt::format("What is {} {} {}?", a, task == "add" ? '+' : '-', b), answer, {answer}};
    }
  }
  if (task == "capital") {
    const auto& facts = capital_facts();
    const Fact& f = facts[rng.below(facts.size())];
    const std::string phrasing = split == Split::kTrain ? kCapitalTrain[rng.below(3)] : kCapitalTest[rng.below(2)];
    return {task, fmt::format(fmt::runtime(phrasing), f.place), f.capital, f.accepted};
  }
  throw std::invalid_argument("unknown task '" + task + "'; valid tasks: add, sub, capital");
}

std::vector<TaskExample> make_task_examples(const std::vector<std::string>& tasks, Split split, uint64_t seed,
                                            int64_t count, int64_t first_index) {
  if (tasks.empty()) throw std::invalid_argument("no tasks given; valid tasks: add, sub, capital");
  std::vector<TaskExample> out;
  const int64_t k = static_cast<int64_t>(tasks.size());
  for (int64_t i = first_index; i < first_index + count; ++i) {
    out.push_back(make_task_example(tasks[i % k], split, seed, i / k));
  }
  return out;
}

std::vector<std::string> parse_task_list(const std::string& list) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= list.size()) {
    size_t end = list.find(',', start);
    if (end == std::string::npos) end = list.size();
    const std::string name = list.substr(start, end - start);
    const auto& names = task_names();
    if (std::find(names.begin(), names.end(), name) == names.end()) {
      throw std::invalid_argument("unknown task '" + name + "' in '" + list + "'; valid tasks: add, sub, capital");
    }
    out.push_back(name);
    start = end + 1;
  }
  return out;
}

bool is_correct(const TaskExample& example, const std::string& completion) {
  const std::string got = normalise_answer(completion);
  return std::find(example.accepted.begin(), example.accepted.end(), got) != example.accepted.end();
}

double task_reward(const TaskExample& example, const std::string& completion, bool ended) {
  if (ended && is_correct(example, completion)) return 1.0;
  if (!ended) return 0.0;
  const std::string got = normalise_answer(completion);
  if (got.empty()) return 0.0;
  if (example.task == "add" || example.task == "sub") {
    const bool number = std::all_of(got.begin(), got.end(), [](unsigned char c) { return std::isdigit(c); }) ||
                        (got[0] == '-' && got.size() > 1 &&
                         std::all_of(got.begin() + 1, got.end(), [](unsigned char c) { return std::isdigit(c); }));
    return number ? kFormatCredit : 0.0;
  }
  return std::count(got.begin(), got.end(), ' ') < 4 ? kFormatCredit : 0.0;
}

PreferenceExample make_preference_pair(const TaskExample& example, uint64_t seed, int64_t index) {
  SplitMix64 rng(mix(mix(seed ^ 0x5151, task_hash(example.task)), static_cast<uint64_t>(index)));
  std::string rejected;
  if (rng.below(4) == 0) {
    rejected = example.prompt;  // malformed: the question repeated back
  } else if (example.task == "capital") {
    const auto& facts = capital_facts();
    do rejected = facts[rng.below(facts.size())].capital;
    while (is_correct(example, rejected));
  } else {
    const int64_t right = std::stoll(example.answer);
    const int64_t off = 1 + static_cast<int64_t>(rng.below(10));
    rejected = std::to_string(rng.below(2) == 0 || right - off < 0 ? right + off : right - off);
  }
  return {example.prompt, example.answer, rejected};
}

std::vector<std::string> wrong_answers(const TaskExample& example, uint64_t seed, int64_t index, int64_t count) {
  SplitMix64 rng(mix(mix(seed ^ 0xC401CE, task_hash(example.task)), static_cast<uint64_t>(index)));
  std::vector<std::string> out;
  for (int attempts = 0; static_cast<int64_t>(out.size()) < count; ++attempts) {
    if (attempts > 10000)
      throw std::runtime_error("wrong_answers: cannot find " + std::to_string(count) + " for " + example.prompt);
    std::string wrong;
    if (example.task == "capital") {
      const auto& facts = capital_facts();
      wrong = facts[rng.below(facts.size())].capital;
    } else {
      const int64_t right = std::stoll(example.answer), off = 1 + static_cast<int64_t>(rng.below(10));
      wrong = std::to_string(rng.below(2) == 0 || right - off < 0 ? right + off : right - off);
    }
    if (!is_correct(example, wrong) && std::find(out.begin(), out.end(), wrong) == out.end()) out.push_back(wrong);
  }
  return out;
}

Conversation task_conversation(const TaskExample& example) {
  return {{"user", example.prompt}, {"assistant", example.answer}};
}

int64_t task_problem_count(const std::string& task, Split split) {
  if (task == "capital") return static_cast<int64_t>(capital_facts().size());
  int64_t n = 0;
  for (int64_t a = 10; a < 100; ++a) {
    for (int64_t b = 10; b < 100; ++b) {
      if (task == "sub" && a < b) continue;
      n += split_of(task, a, b) == split;
    }
  }
  if (task != "add" && task != "sub") {
    throw std::invalid_argument("unknown task '" + task + "'; valid tasks: add, sub, capital");
  }
  return n;
}

}  // namespace llm::cli
