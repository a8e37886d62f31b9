// Lesson 02, basic: the core behaviour a first correct attempt must show.
// Grade with:  ctest --preset default -R lesson02.basic
#include <llm/common/testing.h>
#include <llm/model/embedding.h>
#include <llm/model/layer_norm.h>
#include <llm/model/rms_norm.h>
#include <llm/model/rope.h>

#include <cmath>

namespace {

using llm::testing::AllClose;
using llm::testing::SeededTest;

// Tiny named sizes: big enough to catch a transposed dimension, small enough to read a failure.
constexpr int64_t B = 2, T = 5, C = 8, H = 3, D = 6, V = 11;

class RMSNormTest : public SeededTest {};
class LayerNormTest : public SeededTest {};
class TokenEmbeddingTest : public SeededTest {};
class RopeTest : public SeededTest {};

// An independent float64 reference of the published formula, for comparisons.
torch::Tensor RmsNormReference(const torch::Tensor& x, const torch::Tensor& weight, double eps) {
  auto h = x.to(torch::kFloat64);
  return h / (h.pow(2).mean(-1, true) + eps).sqrt() * weight.to(torch::kFloat64);
}

TEST_F(RMSNormTest, MatchesHandWorkedValues) {
  llm::RMSNorm norm(4);
  // mean(1, 4, 9, 16) = 7.5, so every entry is divided by sqrt(7.5 + 1e-6) = 2.7386...
  auto x = torch::tensor({{1.0f, 2.0f, 3.0f, 4.0f}});
  auto expected = torch::tensor({{0.365148f, 0.730296f, 1.095445f, 1.460593f}});
  auto y = norm(x);
  ASSERT_EQ(y.sizes(), x.sizes());
  EXPECT_TRUE(AllClose(y, expected, /*rtol=*/1e-5, /*atol=*/1e-6)) << "y = x / sqrt(mean(x^2) + eps)";
}

TEST_F(RMSNormTest, MatchesFormulaWithLearnedWeight) {
  llm::RMSNorm norm(C);
  {
    torch::NoGradGuard no_grad;
    norm->weight.copy_(torch::randn({C}));
  }
  auto x = torch::randn({B, T, C});
  auto y = norm(x);
  ASSERT_EQ(y.sizes(), x.sizes());
  EXPECT_TRUE(AllClose(y, RmsNormReference(x, norm->weight, llm::kRmsNormEps), 1e-5, 1e-6))
      << "weight multiplies the normalized x channel by channel";
}

TEST_F(RMSNormTest, UsesTheEpsItIsGiven) {
  // With eps = 1 the denominator of a row of zeros and ones changes visibly.
  llm::RMSNorm norm(2, /*eps=*/1.0);
  auto x = torch::tensor({{1.0f, 1.0f}});
  // mean(x^2) = 1, so y = 1 / sqrt(1 + 1).
  EXPECT_TRUE(AllClose(norm(x), torch::full({1, 2}, 1.0 / std::sqrt(2.0)), 1e-6, 1e-7));
}

TEST_F(LayerNormTest, MatchesHandWorkedValues) {
  llm::LayerNorm norm(4);
  // mean 2.5, biased variance 1.25: y = (x - 2.5) / sqrt(1.25 + 1e-5)
  auto x = torch::tensor({{1.0f, 2.0f, 3.0f, 4.0f}});
  auto expected = torch::tensor({{-1.341635f, -0.447212f, 0.447212f, 1.341635f}});
  EXPECT_TRUE(AllClose(norm(x), expected, 1e-5, 1e-6));
}

TEST_F(LayerNormTest, MatchesTorchLayerNorm) {
  llm::LayerNorm norm(C);
  {
    torch::NoGradGuard no_grad;
    norm->weight.copy_(torch::randn({C}));
    norm->bias.copy_(torch::randn({C}));
  }
  auto x = torch::randn({B, T, C}) * 3 + 1;
  auto expected = torch::layer_norm(x, {C}, norm->weight, norm->bias, llm::kLayerNormEps);
  auto y = norm(x);
  ASSERT_EQ(y.sizes(), x.sizes());
  EXPECT_TRUE(AllClose(y, expected, 1e-5, 1e-5)) << "torch::layer_norm is the reference";
}

TEST_F(TokenEmbeddingTest, LooksUpOneRowPerId) {
  llm::TokenEmbedding embed(V, C);
  auto ids = torch::tensor({{3, 0, 10}, {3, 7, 1}}, torch::kLong);  // (2, 3)
  auto out = embed(ids);
  ASSERT_EQ(out.sizes(), (std::vector<int64_t>{2, 3, C}));
  EXPECT_TRUE(AllClose(out[0][0], embed->weight[3], 0, 0)) << "row 3 for id 3";
  EXPECT_TRUE(AllClose(out[1][1], embed->weight[7], 0, 0)) << "row 7 for id 7";
  EXPECT_TRUE(AllClose(out, torch::embedding(embed->weight, ids), 0, 0)) << "torch::embedding agrees";
}

TEST_F(TokenEmbeddingTest, InitialisedWithStd002) {
  llm::TokenEmbedding embed(1000, 64);
  auto ids = torch::arange(1000);
  auto rows = embed(ids);
  // 64,000 draws: the sample std is within 2% of 0.02 with overwhelming probability.
  EXPECT_NEAR(rows.std().item<double>(), llm::kEmbeddingInitStd, 0.02 * llm::kEmbeddingInitStd);
  EXPECT_NEAR(rows.mean().item<double>(), 0.0, 0.001);
}

TEST_F(RopeTest, TablesHoldCosAndSinOfPositionTimesFrequency) {
  llm::RotaryEmbedding rope(/*head_dim=*/4, /*max_len=*/8);
  // D = 4: w_0 = 10000^0 = 1, w_1 = 10000^(-2/4) = 0.01.
  ASSERT_EQ(rope.cos().sizes(), (std::vector<int64_t>{8, 2}));
  EXPECT_NEAR(rope.cos()[3][0].item<double>(), std::cos(3.0), 1e-6);
  EXPECT_NEAR(rope.sin()[3][0].item<double>(), std::sin(3.0), 1e-6);
  EXPECT_NEAR(rope.cos()[5][1].item<double>(), std::cos(0.05), 1e-6);
  EXPECT_NEAR(rope.sin()[5][1].item<double>(), std::sin(0.05), 1e-6);
}

// Llama 3.1's scaling (theta 500000, D = 128, factor 8, low_freq_factor 1, high_freq_factor 4,
// original context 8192) against the three bands of the formula, written out pair by pair.
TEST_F(RopeTest, Llama3ScalingKeepsFastPairsDividesSlowOnesAndBlendsBetween) {
  llm::RopeScaling scaling;
  scaling.type = "llama3";
  scaling.factor = 8, scaling.low_freq_factor = 1, scaling.high_freq_factor = 4;
  scaling.original_max_position_embeddings = 8192;
  auto w = torch::pow(500000.0, -torch::arange(0, 128, 2, torch::kFloat64) / 128.0);  // (64,)
  auto scaled = llm::scaled_frequencies(w, scaling);
  ASSERT_EQ(scaled.sizes(), w.sizes());
  int kept = 0, divided = 0, blended = 0;
  for (int64_t i = 0; i < 64; ++i) {
    const double wi = w[i].item<double>(), wavelength = 2 * M_PI / wi;
    double expected;
    if (wavelength < 8192.0 / 4) {
      expected = wi, ++kept;
    } else if (wavelength > 8192.0 / 1) {
      expected = wi / 8, ++divided;
    } else {
      const double s = (8192.0 / wavelength - 1) / (4 - 1);
      expected = (1 - s) * wi / 8 + s * wi, ++blended;
    }
    EXPECT_NEAR(scaled[i].item<double>(), expected, 1e-12 * wi) << "pair " << i << ", wavelength " << wavelength;
  }
  EXPECT_TRUE(kept > 0 && divided > 0 && blended > 0) << "all three bands occur for these settings";
}

TEST_F(RopeTest, LinearScalingDividesEveryFrequencyAndNoneChangesNothing) {
  auto w = torch::pow(10000.0, -torch::arange(0, 8, 2, torch::kFloat64) / 8.0);
  llm::RopeScaling linear;
  linear.type = "linear";
  linear.factor = 4;
  EXPECT_TRUE(AllClose(llm::scaled_frequencies(w, linear), w / 4, 1e-12, 0));
  EXPECT_TRUE(AllClose(llm::scaled_frequencies(w, llm::RopeScaling{}), w, 0, 0)) << "type none";
}

// The tables of a scaled RotaryEmbedding turn pair i at position t by t * w_i' (the scaled w_i).
TEST_F(RopeTest, ScaledTablesTurnEachPairByItsScaledFrequency) {
  llm::RopeScaling scaling;
  scaling.type = "llama3";
  scaling.factor = 8;
  scaling.original_max_position_embeddings = 16;
  llm::RotaryEmbedding rope(/*head_dim=*/8, /*max_len=*/32, /*theta=*/10000, llm::RopePairing::kHalf, scaling);
  auto w = llm::scaled_frequencies(torch::pow(10000.0, -torch::arange(0, 8, 2, torch::kFloat64) / 8.0), scaling);
  auto angles = torch::outer(torch::arange(32, torch::kFloat64), w);  // (32, 4)
  EXPECT_TRUE(AllClose(rope.cos(), angles.cos(), 1e-6, 1e-6));
  EXPECT_TRUE(AllClose(rope.sin(), angles.sin(), 1e-6, 1e-6));
}

TEST_F(RopeTest, RotatesTheHalfPairsByPositionTimesFrequency) {
  llm::RotaryEmbedding rope(4, 8);
  // One token at position 2 (offset 2), channel 0 set: pair 0 is (x[0], x[2]) in the "half" layout,
  // rotated by 2 * w_0 = 2 radians: (1, 0) -> (cos 2, sin 2).
  auto x = torch::tensor({1.0f, 0.0f, 0.0f, 0.0f}).view({1, 1, 1, 4});
  auto y = rope.apply(x, /*offset=*/2);
  ASSERT_EQ(y.sizes(), x.sizes());
  auto expected = torch::tensor({(float)std::cos(2.0), 0.0f, (float)std::sin(2.0), 0.0f}).view({1, 1, 1, 4});
  EXPECT_TRUE(AllClose(y, expected, 1e-6, 1e-6));
}

TEST_F(RopeTest, PositionZeroIsTheIdentity) {
  llm::RotaryEmbedding rope(D, 16);
  auto x = torch::randn({B, H, 1, D});
  EXPECT_TRUE(AllClose(rope.apply(x), x, 1e-6, 1e-7)) << "angle 0 is no rotation";
}

TEST_F(RopeTest, PreservesTheNormOfEveryVector) {
  llm::RotaryEmbedding rope(D, 16);
  auto x = torch::randn({B, H, T, D});
  auto y = rope.apply(x);
  ASSERT_EQ(y.sizes(), x.sizes());
  EXPECT_TRUE(AllClose(y.norm(2, -1), x.norm(2, -1), 1e-5, 1e-6)) << "a rotation keeps lengths";
  EXPECT_FALSE(AllClose(y, x, 1e-3, 1e-3)) << "but positions 1.. must actually rotate";
}

TEST_F(RopeTest, PositionsZeroToTMinusOneEqualOffsetZero) {
  llm::RotaryEmbedding rope(D, 16);
  auto x = torch::randn({B, H, T, D});
  auto y = rope.apply(x, torch::arange(T));  // (T,) positions 0 .. T-1
  ASSERT_EQ(y.sizes(), x.sizes());
  // The same table rows through the same rotation: bit for bit.
  EXPECT_TRUE(AllClose(y, rope.apply(x, /*offset=*/0), /*rtol=*/0, /*atol=*/0)) << "positions 0..T-1 are offset 0";
}

TEST_F(RopeTest, EachRowOfPositionsRotatesItsOwnBatchRow) {
  llm::RotaryEmbedding rope(D, 16);
  auto x = torch::randn({B, H, T, D});
  // Row b at positions 3b .. 3b + T - 1: what apply(x[b], offset = 3b) gives.
  auto positions = torch::arange(T).unsqueeze(0) + 3 * torch::arange(B).unsqueeze(1);  // (B, T)
  auto y = rope.apply(x, positions);
  ASSERT_EQ(y.sizes(), x.sizes());
  for (int64_t b = 0; b < B; ++b) {
    EXPECT_TRUE(AllClose(y.narrow(0, b, 1), rope.apply(x.narrow(0, b, 1), /*offset=*/3 * b), 0, 0))
        << "row " << b << " must use its own positions, not row 0's";
  }
}

TEST_F(RopeTest, PackedPositionsRestartTheRotationForEveryDocument) {
  llm::RotaryEmbedding rope(D, 16);
  // A packed row of two documents, 3 and 2 tokens long: positions [0 1 2 0 1].
  auto x = torch::randn({B, H, T, D});
  auto positions = torch::tensor({0, 1, 2, 0, 1}, torch::kLong).expand({B, T});  // (B, T)
  auto y = rope.apply(x, positions);
  ASSERT_EQ(y.sizes(), x.sizes());
  auto expected = torch::cat({rope.apply(x.narrow(2, 0, 3)), rope.apply(x.narrow(2, 3, 2))}, 2);
  EXPECT_TRUE(AllClose(y, expected, 0, 0)) << "each document is rotated as if it were alone, from position 0";
}

}  // namespace
