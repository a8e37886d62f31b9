// Lesson 04, basic: the core behaviour a first correct attempt must show.
// Grade with:  ctest --preset default -R lesson04.basic
#include "ffn_fixtures.h"

#include <llm/common/testing.h>
#include <llm/model/feed_forward.h>
#include <llm/model/transformer_block.h>

#include <cmath>
#include <string>
#include <vector>

namespace {

using lesson04::Apply;
using lesson04::C;
using lesson04::D;
using lesson04::F;
using lesson04::H;
using lesson04::HandConfig;
using lesson04::Hkv;
using lesson04::RandomizeNormWeights;
using lesson04::SetWeight;
using lesson04::TinyConfig;
using llm::testing::AllClose;
using llm::testing::SeededTest;

// Tiny named sizes (the block's C, H, Hkv, D, F come from ffn_fixtures.h).
constexpr int64_t B = 2, T = 5;

class FeedForwardTest : public SeededTest {};
class TransformerBlockTest : public SeededTest {};

// Independent float64 references of the three formulas, built from the module's own weights (Apply)
// and with the activations written out (not torch::silu / torch::gelu).
torch::Tensor Silu(const torch::Tensor& z) {
  return z * torch::sigmoid(z);
}
torch::Tensor Gelu(const torch::Tensor& z) {
  return 0.5 * z * (1.0 + torch::erf(z / std::sqrt(2.0)));
}

torch::Tensor FeedForwardReference(llm::FeedForward& ff, const torch::Tensor& x) {
  torch::Tensor h;
  if (ff->mlp_type == "swiglu") {
    h = Silu(Apply(ff->gate_proj, x)) * Apply(ff->up_proj, x);
  } else if (ff->mlp_type == "geglu") {
    h = Gelu(Apply(ff->gate_proj, x)) * Apply(ff->up_proj, x);
  } else {
    h = Gelu(Apply(ff->up_proj, x));
  }
  return Apply(ff->down_proj, h);
}

// y = x / sqrt(mean(x^2) + eps) * weight, in float64.
torch::Tensor RmsNormReference(const torch::Tensor& x, const torch::Tensor& weight, double eps) {
  auto h = x.to(torch::kFloat64);
  return h / (h.pow(2).mean(-1, true) + eps).sqrt() * weight.detach().to(torch::kFloat64);
}

// What the sublayers write into the residual stream: zeroing their last matrix silences them.
void ZeroSublayerOutputs(llm::TransformerBlock& block) {
  torch::NoGradGuard no_grad;
  block->self_attn->o_proj->weight.zero_();
  block->mlp->down_proj->weight.zero_();
}

// --------------------------------------------------------------------------------------- FeedForward

TEST_F(FeedForwardTest, SwiGLUIsDownOfSiluGateTimesUp) {
  llm::FeedForward ff(TinyConfig("swiglu"));
  auto x = torch::randn({B, T, C});
  auto y = ff(x);
  ASSERT_EQ(y.sizes(), x.sizes());
  // fp32 against a float64 reference: sums of 32 and 88 products round at ~1e-7 of their size.
  EXPECT_TRUE(AllClose(y, FeedForwardReference(ff, x), /*rtol=*/1e-5, /*atol=*/1e-6))
      << "y = down_proj( silu(gate_proj(x)) * up_proj(x) ), silu(z) = z * sigmoid(z)";
}

TEST_F(FeedForwardTest, GeGLUIsDownOfGeluGateTimesUp) {
  llm::FeedForward ff(TinyConfig("geglu"));
  auto x = torch::randn({B, T, C});
  auto y = ff(x);
  ASSERT_EQ(y.sizes(), x.sizes());
  EXPECT_TRUE(AllClose(y, FeedForwardReference(ff, x), 1e-5, 1e-6))
      << "y = down_proj( gelu(gate_proj(x)) * up_proj(x) ), gelu(z) = z/2 * (1 + erf(z / sqrt 2))";
}

TEST_F(FeedForwardTest, GeluMlpIsDownOfGeluUpWithoutAGate) {
  llm::FeedForward ff(TinyConfig("gelu"));
  auto x = torch::randn({B, T, C});
  auto y = ff(x);
  ASSERT_EQ(y.sizes(), x.sizes());
  EXPECT_TRUE(AllClose(y, FeedForwardReference(ff, x), 1e-5, 1e-6))
      << "y = down_proj( gelu(up_proj(x)) ): GPT-2's two-matrix MLP, the exact erf GELU";
}

TEST_F(FeedForwardTest, SwiGLUMatchesHandWorkedValues) {
  llm::FeedForward ff(HandConfig("swiglu", /*hidden=*/2));
  // x = (1, 2)
  //   gate = [[1, 0], [0, -1]] x = (1, -2)    silu(1) = 1 * sigmoid(1) = 0.7310586
  //                                           silu(-2) = -2 * sigmoid(-2) = -0.2384058
  //   up   = [[1, 1], [2, 0]]  x = (3, 2)     h = (0.7310586 * 3, -0.2384058 * 2) = (2.1931757, -0.4768117)
  //   down = [[1, 0], [1, 1]]  h = (2.1931757, 2.1931757 - 0.4768117) = (2.1931757, 1.7163640)
  // Swapping gate and up would give h = (silu(3) * 1, silu(2) * -2) = (2.857722, -3.523188), so
  // y = (2.857722, -0.665466) instead.
  SetWeight(ff->gate_proj, torch::tensor({{1.0f, 0.0f}, {0.0f, -1.0f}}));
  SetWeight(ff->up_proj, torch::tensor({{1.0f, 1.0f}, {2.0f, 0.0f}}));
  SetWeight(ff->down_proj, torch::tensor({{1.0f, 0.0f}, {1.0f, 1.0f}}));
  auto x = torch::tensor({1.0f, 2.0f}).view({1, 1, 2});
  auto y = ff(x);
  ASSERT_EQ(y.sizes(), x.sizes());
  auto expected = torch::tensor({2.1931757f, 1.7163640f}).view({1, 1, 2});
  EXPECT_TRUE(AllClose(y, expected, /*rtol=*/1e-6, /*atol=*/1e-6)) << "the values worked above, to 7 digits";
}

TEST_F(FeedForwardTest, HiddenWidthFollowsLlamasRuleUnlessSetExplicitly) {
  auto config = TinyConfig("swiglu");
  config.hidden_size = 128, config.multiple_of = 16;
  llm::FeedForward llama(config);
  // floor(2 * 4 * 128 / 3) = 341, rounded up to a multiple of 16: 352.
  ASSERT_EQ(llama->gate_proj->weight.sizes(), (std::vector<int64_t>{352, 128}));
  ASSERT_EQ(llama->up_proj->weight.sizes(), (std::vector<int64_t>{352, 128}));
  ASSERT_EQ(llama->down_proj->weight.sizes(), (std::vector<int64_t>{128, 352}));
  auto x = torch::randn({1, 3, 128});
  auto y = llama(x);
  ASSERT_EQ(y.sizes(), x.sizes());
  // A sum of 352 products: still ~1e-7 relative rounding in fp32.
  EXPECT_TRUE(AllClose(y, FeedForwardReference(llama, x), 1e-5, 1e-6)) << "F = 352 wide";

  config.intermediate_size = 100;
  llm::FeedForward explicit_width(config);
  ASSERT_EQ(explicit_width->up_proj->weight.sizes(), (std::vector<int64_t>{100, 128}))
      << "an explicit intermediate_size wins over Llama's rule";
  auto y100 = explicit_width(x);
  ASSERT_EQ(y100.sizes(), x.sizes());
  EXPECT_TRUE(AllClose(y100, FeedForwardReference(explicit_width, x), 1e-5, 1e-6)) << "F = 100 wide";
}

TEST_F(FeedForwardTest, DropoutWhileTrainingZeroesSomeOutputsAndScalesTheRest) {
  const double p = 0.25;
  llm::FeedForward ff(TinyConfig("swiglu", /*dropout=*/p));
  auto x = torch::randn({B, T, C});
  ff->eval();
  auto clean = ff(x);
  ff->train();
  auto dropped = ff(x);
  ASSERT_EQ(dropped.sizes(), clean.sizes());
  ASSERT_FALSE(clean.eq(0).any().item<bool>()) << "premise: no output is zero without dropout";

  auto zeroed = dropped.eq(0);
  const int64_t n = zeroed.numel(), n_zero = zeroed.sum().item<int64_t>();
  // 320 outputs, each dropped with p = 0.25: 80 expected, standard deviation 7.7. The band
  // 48..112 is about four standard deviations wide on each side (and the seed is fixed).
  EXPECT_GE(n_zero, 48) << n_zero << " of " << n << " outputs dropped with p = 0.25";
  EXPECT_LE(n_zero, 112) << n_zero << " of " << n << " outputs dropped with p = 0.25";
  // Inverted dropout: the survivors are scaled by 1 / (1 - p) so the expectation is unchanged.
  auto kept = zeroed.logical_not();
  EXPECT_TRUE(AllClose(dropped.masked_select(kept), clean.masked_select(kept) / (1.0 - p), 1e-6, 1e-7))
      << "dropout goes on the output y = down_proj(h), kept values times 1 / (1 - p) = 4/3";
}

// ---------------------------------------------------------------------------------- TransformerBlock

TEST_F(TransformerBlockTest, PreNormBlockIsTheIdentityWhenItsSublayersOutputZero) {
  llm::TransformerBlock block(TinyConfig());
  ZeroSublayerOutputs(block);
  auto x = torch::randn({B, T, C});
  auto out = block(x);
  ASSERT_EQ(out.sizes(), x.sizes());
  EXPECT_TRUE(AllClose(out, x, /*rtol=*/0, /*atol=*/0))
      << "x + attn(.) + mlp(.) with both sublayers silenced is x + 0 + 0: exactly x (the residual path)";
}

TEST_F(TransformerBlockTest, PreNormBlockAddsAttentionThenMlpToTheResidualStream) {
  llm::TransformerBlock block(TinyConfig());
  RandomizeNormWeights(block);
  auto x = torch::randn({B, T, C});
  auto out = block(x);
  ASSERT_EQ(out.sizes(), x.sizes());
  // The same computation by hand, with the block's own submodules.
  auto h = x + block->self_attn(block->input_layernorm(x));
  auto expected = h + block->mlp(block->post_attention_layernorm(h));
  // The same operations in the same order: only rounding may differ.
  EXPECT_TRUE(AllClose(out, expected, 1e-6, 1e-6))
      << "h = x + attn(input_layernorm(x)); out = h + mlp(post_attention_layernorm(h))";
}

TEST_F(TransformerBlockTest, PostNormBlockWithSilencedSublayersAppliesBothNormsInTurn) {
  llm::TransformerBlock block(TinyConfig(), llm::NormPlacement::kPost);
  RandomizeNormWeights(block);
  ZeroSublayerOutputs(block);
  auto x = 3.0 * torch::randn({B, T, C}) + 1.0;
  auto out = block(x);
  ASSERT_EQ(out.sizes(), x.sizes());
  // h = norm1(x + 0), out = norm2(h + 0): RMSNorm twice, each with its own weight.
  const double eps = block->input_layernorm->eps;
  auto expected = RmsNormReference(RmsNormReference(x, block->input_layernorm->weight, eps),
                                   block->post_attention_layernorm->weight, eps);
  EXPECT_TRUE(AllClose(out, expected, 1e-5, 1e-6))
      << "post-norm: h = input_layernorm(x + attn(x)); out = post_attention_layernorm(h + mlp(h))";
}

TEST_F(TransformerBlockTest, LaterTokensDoNotChangeEarlierOutputs) {
  llm::TransformerBlock block(TinyConfig());
  const int64_t t0 = 3;
  auto x = torch::randn({B, T, C});
  auto changed = x.clone();
  changed.narrow(1, t0, T - t0).copy_(torch::randn({B, T - t0, C}));
  auto out = block(x);
  auto out_changed = block(changed);
  ASSERT_EQ(out.sizes(), x.sizes());
  // In practice bit-identical; 1e-6 leaves room for rounding only, a leak moves them by ~0.1.
  EXPECT_TRUE(AllClose(out_changed.narrow(1, 0, t0), out.narrow(1, 0, t0), 0, 1e-6))
      << "positions 0..2 must not see positions 3..4";
  EXPECT_FALSE(AllClose(out_changed.narrow(1, t0, T - t0), out.narrow(1, t0, T - t0), 1e-3, 1e-3))
      << "the changed positions themselves must change";
}

TEST_F(TransformerBlockTest, HasThePerLayerParameterCountOfTheConfigForEveryMlpType) {
  // Per layer: q and o C x (H D) each, k and v C x (Hkv D) each; MLP 3 C F (gated) or 2 C F (gelu);
  // two RMSNorm weights of C. Here H D = 32 and Hkv D = 16: attention 2 * 1,024 + 2 * 512 = 3,072.
  const int64_t attention = 2 * C * (H * D) + 2 * C * (Hkv * D);
  for (const std::string mlp_type : {"swiglu", "geglu", "gelu"}) {
    SCOPED_TRACE("mlp_type = " + mlp_type);
    const int64_t mlp = (mlp_type == "gelu" ? 2 : 3) * C * F;  // 8,448 or 5,632
    auto config = TinyConfig(mlp_type);
    llm::TransformerBlock block(config);
    int64_t count = 0;
    for (const auto& p : block->parameters()) count += p.numel();
    EXPECT_EQ(count, attention + mlp + 2 * C);
    // The config's own count, with the embeddings, final norm and lm_head cancelling out.
    auto two_layers = config;
    two_layers.num_hidden_layers = 2;
    EXPECT_EQ(count, two_layers.num_parameters() - config.num_parameters()) << "ModelConfig's per-layer term";
    // And a block of that size runs: (B, T, C) in, (B, T, C) out, all finite.
    auto out = block(torch::randn({B, T, C}));
    ASSERT_EQ(out.sizes(), (std::vector<int64_t>{B, T, C}));
    EXPECT_TRUE(torch::isfinite(out).all().item<bool>());
  }
}

}  // namespace
