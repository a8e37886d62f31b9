// Helpers for the lesson tests.
//
//   EXPECT_TRUE(AllClose(out, ref, /*rtol=*/1e-5, /*atol=*/1e-6)) << "fp32 softmax";
//
// AllClose follows torch::allclose's rule |a - b| <= atol + rtol * |b| elementwise, but when it
// fails it says where and by how much (the max abs difference and its index), which is what a
// learner needs to find the bug.
#pragma once

#include <llm/common/paths.h>
#include <llm/common/todo.h>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fmt/format.h>

#include <string>
#include <vector>

namespace llm::testing {

inline std::string FormatIndex(int64_t flat, c10::IntArrayRef sizes) {
  std::vector<int64_t> index(sizes.size());
  for (int64_t d = static_cast<int64_t>(sizes.size()) - 1; d >= 0; --d) {
    index[d] = flat % sizes[d];
    flat /= sizes[d];
  }
  return fmt::format("[{}]", fmt::join(index, ", "));
}

inline ::testing::AssertionResult AllClose(const torch::Tensor& actual, const torch::Tensor& expected,
                                           double rtol = 1e-5, double atol = 1e-6) {
  if (!actual.defined() || !expected.defined()) {
    return ::testing::AssertionFailure() << "an undefined tensor was compared";
  }
  if (actual.sizes() != expected.sizes()) {
    return ::testing::AssertionFailure() << "shape " << actual.sizes() << " != expected shape " << expected.sizes();
  }
  if (actual.numel() == 0) return ::testing::AssertionSuccess();
  // Compare in float64 on the CPU so the check itself adds no rounding.
  auto a = actual.detach().to(torch::kCPU, torch::kFloat64).contiguous();
  auto b = expected.detach().to(torch::kCPU, torch::kFloat64).contiguous();
  auto nan_mismatch = a.isnan().ne(b.isnan());
  if (nan_mismatch.any().item<bool>()) {
    auto idx = nan_mismatch.flatten().nonzero()[0].item<int64_t>();
    return ::testing::AssertionFailure() << "NaN where the other tensor has none, at " << FormatIndex(idx, a.sizes());
  }
  auto diff = (a - b).abs().nan_to_num(0.0);
  auto allowed = atol + rtol * b.abs().nan_to_num(0.0);
  auto bad = diff.gt(allowed);
  if (!bad.any().item<bool>()) return ::testing::AssertionSuccess();
  auto flat_max = diff.flatten().argmax().item<int64_t>();
  return ::testing::AssertionFailure() << fmt::format(
             "max abs diff {:.3g} at {} (actual {:.7g}, expected {:.7g}); {} of {} elements "
             "outside atol={:g} + rtol={:g}*|expected|",
             diff.flatten()[flat_max].item<double>(), FormatIndex(flat_max, a.sizes()),
             a.flatten()[flat_max].item<double>(), b.flatten()[flat_max].item<double>(), bad.sum().item<int64_t>(),
             a.numel(), atol, rtol);
}

// Passes when `fn` throws an exception whose message contains every one of `needles` (the bad value,
// the valid range...). A stub's NotImplemented never counts: "not implemented" is not a clear error.
template <typename Fn>
::testing::AssertionResult ThrowsWith(Fn&& fn, const std::vector<std::string>& needles) {
  try {
    fn();
  } catch (const ::llm::NotImplemented& e) {
    return ::testing::AssertionFailure() << e.what();
  } catch (const std::exception& e) {
    const std::string message = e.what();
    for (const auto& needle : needles) {
      if (message.find(needle) == std::string::npos) {
        return ::testing::AssertionFailure()
               << "the error message does not mention '" << needle << "'; it was: " << message;
      }
    }
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure() << "no exception was thrown";
}

// Gives `to` the parameters of `from` (the same architecture), so two modules differ only in their
// options, e.g. dropout on and off.
inline void CopyParameters(const torch::nn::Module& from, torch::nn::Module& to) {
  torch::NoGradGuard no_grad;
  auto source = from.named_parameters();
  for (auto& p : to.named_parameters()) p.value().copy_(source[p.key()]);
}

// A fixture that seeds torch's global generator, so every test starts from the same numbers.
class SeededTest : public ::testing::Test {
 protected:
  static constexpr uint64_t kSeed = 1234;
  void SetUp() override { torch::manual_seed(kSeed); }
};

// Where the repository's built-in data lives (data/ next to this checkout).
inline std::string DataPath(const std::string& relative) {
  return std::string(kSourceDir) + "/data/" + relative;
}

}  // namespace llm::testing
