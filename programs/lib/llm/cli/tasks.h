// The built-in tasks the alignment stages learn (no downloads exist here, so the project makes its own).
//
// Every example is a pure function of (task, split, seed, index), as nanochat's SpellingBee task
// does it: the same arguments give the same example on every machine, and the train and test splits
// are disjoint by construction, because each problem belongs to exactly one split by a hash of the
// problem itself (not of its index), so no test problem is ever trained on.
//
//   add       "What is 47 + 25?"                 -> "72"         two numbers from 10 to 99
//   sub       "What is 83 - 25?"                 -> "58"         the first >= the second
//   capital   "What is the capital of France?"   -> "Paris"      bsdgames' quiz files (Debian's bsdgames):
//             capitals of Europe, Asia, Africa, the Americas and the US states. A fact cannot be
//             held out (a model cannot guess an unseen capital), so this task's test split asks the
//             same facts in phrasings that training never uses: it measures whether SFT taught the
//             fact or the sentence.
//
// Answers are checked by exact match after normalise_answer(): lower case, surrounding white space
// and a final full stop removed, inner white space collapsed to one space. The reward for the RL
// stages is 1 for a correct answer, else a format credit of 0.1 when the answer is well formed (it
// ended with the end token and is a number for the arithmetic tasks, at most four words for
// capitals), else 0.
#pragma once

#include <llm/data/preference.h>
#include <llm/data/sft.h>

#include <cstdint>
#include <string>
#include <vector>

namespace llm::cli {

enum class Split { kTrain, kTest };

struct TaskExample {
  std::string task;                   // add, sub, capital
  std::string prompt;                 // the user's message
  std::string answer;                 // the canonical answer
  std::vector<std::string> accepted;  // every answer that counts as correct, normalised
};

// The tasks, in the order the mixtures use them.
const std::vector<std::string>& task_names();

// One example. task must be one of task_names() (else an error naming the valid ones).
TaskExample make_task_example(const std::string& task, Split split, uint64_t seed, int64_t index);

// Examples index 0, 1, ... cycling through `tasks` (example i is of tasks[i % tasks.size()]).
std::vector<TaskExample> make_task_examples(const std::vector<std::string>& tasks, Split split, uint64_t seed,
                                            int64_t count, int64_t first_index = 0);

// The comma-separated list "add,sub" as task names, each checked.
std::vector<std::string> parse_task_list(const std::string& list);

std::string normalise_answer(const std::string& text);
bool is_correct(const TaskExample& example, const std::string& completion);

inline constexpr double kFormatCredit = 0.1;
// 1 if correct; kFormatCredit if well formed (ended with the end token, see the top); else 0.
double task_reward(const TaskExample& example, const std::string& completion, bool ended);

// A preference pair: chosen = the correct answer; rejected = a wrong one of the right form (an
// arithmetic result off by 1 to 10, another capital), or, for one pair in four, a malformed one
// (the question repeated back). Deterministic in (seed, index) like the examples.
PreferenceExample make_preference_pair(const TaskExample& example, uint64_t seed, int64_t index);

// `count` distinct wrong answers of the right form (other capitals; results off by 1 to 10), for
// the multiple-choice set of `llm evaluate`. Deterministic in (seed, index).
std::vector<std::string> wrong_answers(const TaskExample& example, uint64_t seed, int64_t index, int64_t count);

// The SFT conversation: the user's prompt, the assistant's answer.
Conversation task_conversation(const TaskExample& example);

// The number of distinct problems of a task in a split (for the notes: how big the test set is).
int64_t task_problem_count(const std::string& task, Split split);

}  // namespace llm::cli
