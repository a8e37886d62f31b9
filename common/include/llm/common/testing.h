// Helpers for the lesson tests.
//
//   EXPECT_TRUE(AllClose(out, ref, /*rtol=*/1e-5, /*atol=*/1e-6)) << "fp32 softmax";
//
// AllClose follows torch::allclose's rule |a - b| <= atol + rtol * |b| elementwise, but when it
// fails it says where and by how much (the max abs difference and its index), which is what a
// learner needs to find the bug. The functions that are not templates are compiled once, in
// common/src/testing.cpp (part of llm_test_main), not again in every test file.
#pragma once

#include <llm/common/paths.h>
#include <llm/common/todo.h>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>
#include <vector>

namespace llm::testing {

// The flat index `flat` of a tensor of `sizes` as "[i, j, k]".
std::string FormatIndex(int64_t flat, c10::IntArrayRef sizes);

// Passes when actual and expected have the same shape and |actual - expected| <= atol + rtol * |expected|
// everywhere (NaN only where the other has NaN), compared in float64 on the CPU.
::testing::AssertionResult AllClose(const torch::Tensor& actual, const torch::Tensor& expected, double rtol = 1e-5,
                                    double atol = 1e-6);

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
void CopyParameters(const torch::nn::Module& from, torch::nn::Module& to);

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
