// The test helpers declared in llm/common/testing.h.
#include <llm/common/testing.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <string>
#include <vector>

namespace llm::testing {

std::string FormatIndex(int64_t flat, c10::IntArrayRef sizes) {
  std::vector<int64_t> index(sizes.size());
  for (int64_t d = static_cast<int64_t>(sizes.size()) - 1; d >= 0; --d) {
    index[d] = flat % sizes[d];
    flat /= sizes[d];
  }
  return fmt::format("[{}]", fmt::join(index, ", "));
}

::testing::AssertionResult AllClose(const torch::Tensor& actual, const torch::Tensor& expected, double rtol,
                                    double atol) {
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

void CopyParameters(const torch::nn::Module& from, torch::nn::Module& to) {
  torch::NoGradGuard no_grad;
  auto source = from.named_parameters();
  for (auto& p : to.named_parameters()) p.value().copy_(source[p.key()]);
}

}  // namespace llm::testing
