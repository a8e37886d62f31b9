// Lesson 12 - pass@k: the chance that at least one of k sampled answers is correct.
//
// Sample n >= k answers to a problem and count the c correct ones. The naive estimate - "was any of
// the first k correct?" (nanochat's chat_rl logs this) - uses k of the n samples and depends on
// their order. Chen et al. 2021 (Codex, HumanEval) use all n, unbiased:
//
//     pass@k = 1 - C(n - c, k) / C(n, k)          (1 when n - c < k: every k-subset holds a hit)
//
// C(n - c, k) / C(n, k) is the chance that a random k-subset of the n samples has no correct one.
// The binomials overflow for n = 200; the product form does not:
//
//     C(n - c, k) / C(n, k) = prod_{i = n-c+1}^{n} (1 - k / i)
//
// The benchmark's figure is the mean over problems. Reference: openai/human-eval,
// human_eval/evaluation.py (estimate_pass_at_k). Golden: (n, c, k) = (10, 3, 1) -> 0.3,
// (10, 3, 5) -> 0.9166667, (10, 0, 5) -> 0, (5, 3, 3) -> 1, (200, 10, 100) -> 0.9992290.
#pragma once

#include <llm/common/todo.h>

#include <c10/util/Exception.h>

#include <cstdint>
#include <utility>
#include <vector>

namespace llm {

// The unbiased estimator for one problem: n samples, c of them correct, 1 <= k <= n.
inline double pass_at_k(int64_t n, int64_t c, int64_t k) {
  TORCH_CHECK(n >= 1 && c >= 0 && c <= n, "pass_at_k: need n >= 1 samples and 0 <= c <= n correct, got n = ", n,
              ", c = ", c);
  TORCH_CHECK(k >= 1 && k <= n, "pass_at_k: k must be in [1, n] = [1, ", n, "], got ", k,
              " (sample at least k answers per problem)");
  LLM_TODO("lesson12: pass_at_k(): 1 - prod_{i = n-c+1}^{n} (1 - k / i), or 1 when n - c < k");
}

// The mean over problems of pass_at_k; each problem is (n, c).
inline double mean_pass_at_k(const std::vector<std::pair<int64_t, int64_t>>& problems, int64_t k) {
  TORCH_CHECK(!problems.empty(), "mean_pass_at_k: no problems");
  LLM_TODO("lesson12: mean_pass_at_k(): the average of pass_at_k over the problems");
}

}  // namespace llm
