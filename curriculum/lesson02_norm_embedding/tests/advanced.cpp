// Lesson 02, advanced: invariants, numerics (bf16, long positions), gradients, clear errors, and
// the mistakes people really make (unbiased variance, statistics in bf16, the wrong RoPE pairing).
// Grade with:  ctest --preset default -R lesson02.advanced
#include <llm/common/testing.h>
#include <llm/model/embedding.h>
#include <llm/model/layer_norm.h>
#include <llm/model/rms_norm.h>
#include <llm/model/rope.h>

#include <cmath>

namespace {

using llm::testing::AllClose;
using llm::testing::SeededTest;
using llm::testing::ThrowsWith;

constexpr int64_t B = 2, T = 7, C = 16, H = 2, D = 8, V = 13;

class RMSNormAdvanced : public SeededTest {};
class LayerNormAdvanced : public SeededTest {};
class TokenEmbeddingAdvanced : public SeededTest {};
class RopeAdvanced : public SeededTest {};

// ---------------------------------------------------------------------------------------- RMSNorm

TEST_F(RMSNormAdvanced, IsInvariantToScalingTheInput) {
  llm::RMSNorm norm(C);
  auto x = torch::randn({B, T, C});
  // rms(a x) = a rms(x) for a > 0, so the output does not change (up to eps, negligible here).
  EXPECT_TRUE(AllClose(norm(x * 37.0), norm(x), 1e-5, 1e-5));
  EXPECT_TRUE(AllClose(norm(x * 0.1), norm(x), 1e-4, 1e-4)) << "eps = 1e-6 is tiny next to rms^2 = 1e-2";
}

TEST_F(RMSNormAdvanced, DoesNotSubtractTheMean) {
  llm::RMSNorm norm(2);
  // LayerNorm would map (3, 3) to (0, 0); RMSNorm keeps the direction: (1, 1) up to eps.
  auto y = norm(torch::tensor({{3.0f, 3.0f}}));
  EXPECT_TRUE(AllClose(y, torch::ones({1, 2}), 1e-6, 1e-6));
}

TEST_F(RMSNormAdvanced, RowOfZerosStaysFinite) {
  llm::RMSNorm norm(C);
  auto y = norm(torch::zeros({1, C}));
  EXPECT_TRUE(torch::isfinite(y).all().item<bool>()) << "eps keeps rsqrt finite";
  EXPECT_TRUE(AllClose(y, torch::zeros({1, C}), 0, 0));
}

TEST_F(RMSNormAdvanced, Bf16InputIsNormalizedInFp32AndReturnedAsBf16) {
  llm::RMSNorm norm(C);
  // What this checks: the output keeps bf16 (an fp32 weight must not promote it) and equals the
  // fp32-statistics reference within one bf16 rounding. RMSNorm subtracts no mean, so statistics
  // taken in bf16 would also land within that rounding; LayerNorm's bf16 test is the one that
  // catches bf16 statistics.
  auto x32 = 200.0 + torch::randn({B, T, C});
  auto x16 = x32.to(torch::kBFloat16);
  auto y = norm(x16);
  ASSERT_EQ(y.scalar_type(), torch::kBFloat16) << "the output keeps the input dtype";
  // Reference: Hugging Face's order of operations on the same bf16 input.
  auto h = x16.to(torch::kFloat32);
  auto expected = (h * torch::rsqrt(h.pow(2).mean(-1, true) + llm::kRmsNormEps)).to(torch::kBFloat16);
  // Neighbouring bf16 values are 2^-8 to 2^-7 of the value apart: 8e-3 is one rounding step.
  EXPECT_TRUE(AllClose(y.to(torch::kFloat32), expected.to(torch::kFloat32), /*rtol=*/8e-3, /*atol=*/1e-3));
}

TEST_F(RMSNormAdvanced, GradientsMatchTheFormulaInFloat64) {
  llm::RMSNorm norm(C);
  {
    torch::NoGradGuard no_grad;
    norm->weight.copy_(torch::randn({C}));
  }
  auto x = torch::randn({B, T, C}, torch::requires_grad());
  auto upstream = torch::randn({B, T, C});
  (norm(x) * upstream).sum().backward();

  auto x64 = x.detach().to(torch::kFloat64).requires_grad_();
  auto w64 = norm->weight.detach().to(torch::kFloat64).requires_grad_();
  auto ref = x64 / (x64.pow(2).mean(-1, true) + llm::kRmsNormEps).sqrt() * w64;
  (ref * upstream.to(torch::kFloat64)).sum().backward();

  ASSERT_TRUE(x.grad().defined()) << "no gradient reached x";
  ASSERT_TRUE(norm->weight.grad().defined()) << "no gradient reached weight";
  EXPECT_TRUE(AllClose(x.grad(), x64.grad(), 1e-4, 1e-5)) << "dL/dx";
  EXPECT_TRUE(AllClose(norm->weight.grad(), w64.grad(), 1e-4, 1e-5)) << "dL/dweight";
}

TEST_F(RMSNormAdvanced, RejectsTheWrongWidthNamingBothSizes) {
  llm::RMSNorm norm(C);
  EXPECT_TRUE(ThrowsWith([&] { norm(torch::randn({B, T, C + 1})); }, {"16", "17"}));
}

// -------------------------------------------------------------------------------------- LayerNorm

TEST_F(LayerNormAdvanced, UsesTheBiasedVariance) {
  llm::LayerNorm norm(2);
  // x = (0, 2): mean 1, biased var 1 -> (-1, 1)/sqrt(1 + eps). The unbiased var (2) would give +-0.707.
  auto y = norm(torch::tensor({{0.0f, 2.0f}}));
  const float v = static_cast<float>(1.0 / std::sqrt(1.0 + llm::kLayerNormEps));
  EXPECT_TRUE(AllClose(y, torch::tensor({{-v, v}}), 1e-6, 1e-6));
}

TEST_F(LayerNormAdvanced, GradientsMatchTorchLayerNorm) {
  llm::LayerNorm norm(C);
  {
    torch::NoGradGuard no_grad;
    norm->weight.copy_(torch::randn({C}));
    norm->bias.copy_(torch::randn({C}));
  }
  auto x = torch::randn({B, T, C}, torch::requires_grad());
  auto upstream = torch::randn({B, T, C});
  (norm(x) * upstream).sum().backward();

  auto x_ref = x.detach().clone().requires_grad_();
  auto w_ref = norm->weight.detach().clone().requires_grad_();
  auto b_ref = norm->bias.detach().clone().requires_grad_();
  (torch::layer_norm(x_ref, {C}, w_ref, b_ref, llm::kLayerNormEps) * upstream).sum().backward();

  ASSERT_TRUE(x.grad().defined() && norm->weight.grad().defined() && norm->bias.grad().defined());
  EXPECT_TRUE(AllClose(x.grad(), x_ref.grad(), 1e-4, 1e-5)) << "dL/dx";
  EXPECT_TRUE(AllClose(norm->weight.grad(), w_ref.grad(), 1e-4, 1e-5)) << "dL/dweight";
  EXPECT_TRUE(AllClose(norm->bias.grad(), b_ref.grad(), 1e-4, 1e-5)) << "dL/dbias";
}

TEST_F(LayerNormAdvanced, Bf16InputMatchesTorchOnTheSameInputInFp32) {
  llm::LayerNorm norm(C);
  auto x16 = (torch::randn({B, T, C}) * 4 + 50).to(torch::kBFloat16);
  auto y = norm(x16);
  ASSERT_EQ(y.scalar_type(), torch::kBFloat16);
  auto expected = torch::layer_norm(x16.to(torch::kFloat32), {C}, {}, {}, llm::kLayerNormEps);
  EXPECT_TRUE(AllClose(y.to(torch::kFloat32), expected, /*rtol=*/8e-3, /*atol=*/8e-3)) << "one bf16 rounding";
}

// --------------------------------------------------------------------------------- TokenEmbedding

TEST_F(TokenEmbeddingAdvanced, GradientOnlyReachesTheRowsLookedUp) {
  llm::TokenEmbedding embed(V, C);
  auto ids = torch::tensor({{2, 5, 2}}, torch::kLong);
  embed(ids).sum().backward();
  auto grad = embed->weight.grad();
  ASSERT_TRUE(grad.defined());
  // Row 2 was used twice, row 5 once, every other row never.
  EXPECT_TRUE(AllClose(grad[2], torch::full({C}, 2.0f), 0, 0));
  EXPECT_TRUE(AllClose(grad[5], torch::ones({C}), 0, 0));
  EXPECT_EQ(grad.abs().sum(1).nonzero().numel(), 2) << "only rows 2 and 5 receive gradient";
}

TEST_F(TokenEmbeddingAdvanced, RejectsOutOfRangeIdsNamingTheIdAndTheRange) {
  llm::TokenEmbedding embed(V, C);
  EXPECT_TRUE(ThrowsWith([&] { embed(torch::tensor({1, 13}, torch::kLong)); }, {"13", "0..12"}));
  EXPECT_TRUE(ThrowsWith([&] { embed(torch::tensor({-1}, torch::kLong)); }, {"-1", "0..12"}));
}

TEST_F(TokenEmbeddingAdvanced, RejectsFloatingPointIds) {
  llm::TokenEmbedding embed(V, C);
  EXPECT_TRUE(ThrowsWith([&] { embed(torch::tensor({1.0f, 2.0f})); }, {"integer"}));
}

TEST_F(TokenEmbeddingAdvanced, AcceptsInt32IdsAndAnyShape) {
  llm::TokenEmbedding embed(V, C);
  auto ids = torch::randint(0, V, {2, 3, 4}, torch::kInt);
  auto out = embed(ids);
  ASSERT_EQ(out.sizes(), (std::vector<int64_t>{2, 3, 4, C}));
  EXPECT_TRUE(AllClose(out, torch::embedding(embed->weight, ids.to(torch::kLong)), 0, 0));
}

// ------------------------------------------------------------------------------------------- RoPE

// Meta's original Llama applies RoPE as a complex multiplication (torch.polar, view_as_complex):
// consecutive channels (2i, 2i+1) are one complex number, multiplied by e^{i t w_i}. An independent
// reference for the interleaved pairing.
torch::Tensor ComplexRope(const torch::Tensor& x, int64_t offset, double theta) {
  const int64_t d = x.size(-1), t = x.size(-2);
  auto w = torch::pow(theta, -torch::arange(0, d, 2, torch::kFloat64) / static_cast<double>(d));
  auto angles = torch::outer(torch::arange(offset, offset + t, torch::kFloat64), w);  // (T, D/2)
  auto rot = torch::polar(torch::ones_like(angles), angles);                          // (T, D/2) complex
  auto xc = torch::view_as_complex(x.to(torch::kFloat64).reshape({x.size(0), x.size(1), t, d / 2, 2}));
  return torch::view_as_real(xc * rot).flatten(-2);
}

// Moves channel pairs (i, i + D/2) of the half layout next to each other: (2i, 2i + 1).
torch::Tensor HalfToInterleaved(const torch::Tensor& x) {
  const int64_t d = x.size(-1);
  return torch::stack({x.narrow(-1, 0, d / 2), x.narrow(-1, d / 2, d / 2)}, -1).flatten(-2);
}

TEST_F(RopeAdvanced, InterleavedPairingMatchesMetasComplexMultiplication) {
  llm::RotaryEmbedding rope(D, 32, llm::kRopeTheta, llm::RopePairing::kInterleaved);
  auto x = torch::randn({B, H, T, D});
  EXPECT_TRUE(AllClose(rope.apply(x, /*offset=*/3), ComplexRope(x, 3, llm::kRopeTheta), 1e-5, 1e-5));
}

TEST_F(RopeAdvanced, HalfAndInterleavedPairingsAreEqualUpToAChannelPermutation) {
  llm::RotaryEmbedding half(D, 32, llm::kRopeTheta, llm::RopePairing::kHalf);
  llm::RotaryEmbedding interleaved(D, 32, llm::kRopeTheta, llm::RopePairing::kInterleaved);
  auto x = torch::randn({B, H, T, D});
  auto via_half = HalfToInterleaved(half.apply(x));
  auto via_interleaved = interleaved.apply(HalfToInterleaved(x));
  EXPECT_TRUE(AllClose(via_half, via_interleaved, 1e-6, 1e-6));
  EXPECT_FALSE(AllClose(half.apply(x), interleaved.apply(x), 1e-3, 1e-3))
      << "on the same channels the two pairings differ: a model must use one consistently";
}

TEST_F(RopeAdvanced, AttentionScoresDependOnlyOnRelativePosition) {
  llm::RotaryEmbedding rope(D, 64);
  auto q = torch::randn({1, 1, 1, D});
  auto k = torch::randn({1, 1, 1, D});
  auto score = [&](int64_t m, int64_t n) { return (rope.apply(q, m) * rope.apply(k, n)).sum().item<double>(); };
  // Query at m, key at n: only m - n matters.
  EXPECT_NEAR(score(5, 2), score(45, 42), 1e-4);
  EXPECT_NEAR(score(9, 9), score(0, 0), 1e-4);
  EXPECT_NEAR(score(0, 0), (q * k).sum().item<double>(), 1e-5) << "equal positions: the plain dot product";
  EXPECT_GT(std::abs(score(5, 2) - score(5, 4)), 1e-3) << "a different distance gives a different score";
}

TEST_F(RopeAdvanced, OffsetGivesTheSameAsASliceOfTheLongerSequence) {
  llm::RotaryEmbedding rope(D, 32);
  auto x = torch::randn({B, H, T, D});
  auto full = rope.apply(x);
  auto tail = rope.apply(x.narrow(2, 4, T - 4).contiguous(), /*offset=*/4);
  EXPECT_TRUE(AllClose(tail, full.narrow(2, 4, T - 4), 0, 0)) << "what a KV-cache decoder relies on";
}

TEST_F(RopeAdvanced, LongPositionsStayAccurate) {
  const int64_t L = 4096;
  llm::RotaryEmbedding rope(64, L);
  // Exact angles in float64: t * theta^(-2i/D) at the last position, slowest and fastest pair.
  for (int64_t i : {0, 1, 17, 31}) {
    const double angle = (L - 1) * std::pow(llm::kRopeTheta, -2.0 * i / 64);
    EXPECT_NEAR(rope.cos()[L - 1][i].item<double>(), std::cos(angle), 1e-3) << "pair " << i;
    EXPECT_NEAR(rope.sin()[L - 1][i].item<double>(), std::sin(angle), 1e-3) << "pair " << i;
  }
}

TEST_F(RopeAdvanced, ThetaChangesTheFrequencies) {
  llm::RotaryEmbedding rope(4, 8, /*theta=*/500000.0);  // Llama 3's base
  // w_1 = 500000^(-1/2)
  EXPECT_NEAR(rope.sin()[7][1].item<double>(), std::sin(7.0 / std::sqrt(500000.0)), 1e-6);
}

TEST_F(RopeAdvanced, GradientIsTheInverseRotation) {
  llm::RotaryEmbedding rope(D, 32);
  auto x = torch::randn({B, H, T, D}, torch::requires_grad());
  auto upstream = torch::randn({B, H, T, D});
  (rope.apply(x) * upstream).sum().backward();
  ASSERT_TRUE(x.grad().defined());
  // y = R x  =>  dL/dx = R^T g, and rotating that forward again gives g back.
  EXPECT_TRUE(AllClose(rope.apply(x.grad()), upstream, 1e-5, 1e-5));
}

TEST_F(RopeAdvanced, Bf16InputIsRotatedAccuratelyAndStaysBf16) {
  llm::RotaryEmbedding rope(D, 32);
  auto x16 = torch::randn({B, H, T, D}).to(torch::kBFloat16);
  auto y = rope.apply(x16, 5);
  ASSERT_EQ(y.scalar_type(), torch::kBFloat16);
  auto expected = rope.apply(x16.to(torch::kFloat32), 5);
  EXPECT_TRUE(AllClose(y.to(torch::kFloat32), expected, 8e-3, 8e-3)) << "one bf16 rounding of the result";
}

TEST_F(RopeAdvanced, TheLastCachedPositionIsUsable) {
  llm::RotaryEmbedding rope(D, 8);
  auto x = torch::randn({1, 1, 3, D});
  auto tail = rope.apply(x, /*offset=*/5);  // positions 5, 6, 7: exactly fills the cache
  auto full = rope.apply(torch::cat({torch::zeros({1, 1, 5, D}), x}, 2));
  EXPECT_TRUE(AllClose(tail, full.narrow(2, 5, 3), 0, 0)) << "offset + T == max_len is allowed";
}

TEST_F(RopeAdvanced, RejectsAnOddHeadDimension) {
  EXPECT_TRUE(ThrowsWith([] { llm::RotaryEmbedding rope(7, 16); }, {"even", "7"}));
}

TEST_F(RopeAdvanced, RejectsPositionsBeyondTheCache) {
  llm::RotaryEmbedding rope(D, 8);
  auto x = torch::randn({1, 1, 4, D});
  EXPECT_TRUE(ThrowsWith([&] { rope.apply(x, /*offset=*/6); }, {"9", "max_len = 8"}));
}

TEST_F(RopeAdvanced, RejectsAWrongShape) {
  llm::RotaryEmbedding rope(D, 8);
  EXPECT_TRUE(ThrowsWith([&] { rope.apply(torch::randn({1, 4, D})); }, {"(B, H, T, 8)"}));
}

}  // namespace
