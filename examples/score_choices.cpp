// Score a model folder on multiple-choice questions, as lm-evaluation-harness scores them (lesson 12):
// the model generates nothing; each choice is scored by how likely the model finds it as the
// continuation of the question.
//
//   example_score_choices my-model examples/data/austen_cloze.jsonl
//
// The file holds one question per line (JSON Lines):
//   {"question": "It is a truth universally acknowledged, that a single man ... must be in want of a",
//    "choices": ["wife.", "horse.", "sword."], "answer": 0}
// "question" is the context exactly as written, each choice follows it after one space, and
// "answer" is the index of the right choice. acc picks the choice with the highest log-likelihood
// (the sum over its tokens); acc_norm divides that by the choice's length in characters first, so a
// long choice is not penalised for having more tokens to be unlikely.
#include <llm/cli/hf_folder.h>
#include <llm/common/files.h>
#include <llm/eval/multiple_choice.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <sstream>

int usage(const std::string& problem) {
  fmt::print(stderr, "example_score_choices: {}\nusage: example_score_choices MODEL_DIR QUESTIONS.jsonl\n", problem);
  return 2;
}

int main(int argc, char** argv) try {
  if (argc != 3) return usage("expected 2 arguments, got " + std::to_string(argc - 1));
  const std::string model_dir = argv[1], questions_path = argv[2];
  if (!std::filesystem::is_directory(model_dir)) return usage("no model folder '" + model_dir + "'");
  if (!std::filesystem::is_regular_file(questions_path)) return usage("no questions file '" + questions_path + "'");

  // 1. The questions, one JSON object a line; a bad line is named with its number.
  std::vector<llm::MultipleChoiceItem> items;
  std::istringstream lines(llm::read_file(questions_path));
  std::string line;
  for (int number = 1; std::getline(lines, line); ++number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;  // blank lines are allowed
    try {
      const auto j = nlohmann::json::parse(line);
      if (!j.at("answer").is_number_integer()) throw std::runtime_error("\"answer\" must be a whole number");
      llm::MultipleChoiceItem item{j.at("question").get<std::string>(), j.at("choices").get<std::vector<std::string>>(),
                                   j.at("answer").get<int64_t>()};
      if (item.choices.size() < 2) throw std::runtime_error("\"choices\" needs at least 2 entries");
      if (item.gold < 0 || item.gold >= static_cast<int64_t>(item.choices.size()))
        throw std::runtime_error("\"answer\" " + std::to_string(item.gold) + " is not an index into the " +
                                 std::to_string(item.choices.size()) + " choices");
      items.push_back(std::move(item));
    } catch (const std::exception& e) {
      throw std::runtime_error(questions_path + ":" + std::to_string(number) + ": " + e.what());
    }
  }
  if (items.empty()) throw std::runtime_error(questions_path + ": no questions in it");

  // 2. One log-likelihood per choice, "question" + " " + choice (lesson 12); the choice acc picks per item.
  llm::cli::HfModel m = llm::cli::load_hf_folder(model_dir, {"auto"});
  const llm::MultipleChoiceResult result = llm::score_multiple_choice(m.model, m.tokenizer, items);
  double chance = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    const auto& item = items[i];
    const int64_t picked = result.predictions[i];
    const size_t cut = item.context.size() > 57 ? item.context.find(' ', item.context.size() - 57) : std::string::npos;
    std::string question = cut == std::string::npos ? item.context : "..." + item.context.substr(cut);
    std::replace(question.begin(), question.end(), '\n', ' ');
    fmt::print("{} {:<60} -> {}{}\n", picked == item.gold ? "right" : "wrong", question, item.choices[picked],
               picked == item.gold ? "" : " (answer: " + item.choices[item.gold] + ")");
    chance += 1.0 / static_cast<double>(item.choices.size()) / static_cast<double>(items.size());
  }

  // 3. The accuracies, next to what guessing would score.
  fmt::print("\nacc {:.3f}  acc_norm {:.3f}  ({} questions; guessing scores {:.3f})\n", result.acc, result.acc_norm,
             result.n, chance);
  return 0;
} catch (const c10::Error& e) {  // a LibTorch check (TORCH_CHECK): its message without the C++ backtrace
  fmt::print(stderr, "example_score_choices: error: {}\n", e.what_without_backtrace());
  return 1;
} catch (const std::exception& e) {
  fmt::print(stderr, "example_score_choices: error: {}\n", e.what());
  return 1;
}
