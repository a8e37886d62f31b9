// Lesson 04, advanced: edge cases, numerics (large pre-activations, bf16), gradients, and the
// mistakes people really make (gate and up swapped, GPT-2's tanh GELU, dropout left on in eval,
// the norm after the sublayer instead of before, offset or cache not passed to attention).
// Grade with:  ctest --preset default -R lesson04.advanced
#include "../../lesson03_attention/tests/attention_fixtures.h"
#include "ffn_fixtures.h"

#include <llm/common/testing.h>
#include <llm/model/feed_forward.h>
#include <llm/model/transformer_block.h>

#include <cmath>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace {

using lesson03::ConcatStore;  // the simplest KVStore, from lesson 03's tests
using lesson04::Apply;
using lesson04::C;
using lesson04::F;
using lesson04::HandConfig;
using lesson04::RandomizeNormWeights;
using lesson04::SetWeight;
using lesson04::TinyConfig;
using llm::testing::AllClose;
using llm::testing::CopyParameters;
using llm::testing::SeededTest;

// Tiny named sizes (the block's C and F come from ffn_fixtures.h).
constexpr int64_t B = 2, T = 6;

class FeedForwardAdvanced : public SeededTest {};
class TransformerBlockAdvanced : public SeededTest {};

// ------------------------------------------------------------------------------------ FeedForward

TEST_F(FeedForwardAdvanced, GateIsTheNonlinearPathAndUpTheLinearOne) {
  auto x = torch::rand({B, T, C}) + 0.5;  // every channel in [0.5, 1.5): sum(x) >= 16
  for (const std::string mlp_type : {"swiglu", "geglu"}) {
    SCOPED_TRACE("mlp_type = " + mlp_type);
    llm::FeedForward ff(TinyConfig(mlp_type));
    // A closed gate: gate(x) = -4 sum(x) <= -64, where silu = -1e-26 and gelu = 0. Whatever up_proj
    // says, nothing passes. With gate and up swapped, act(up(x)) * gate(x) would be of order 100.
    SetWeight(ff->gate_proj, torch::full({F, C}, -4.0));
    auto closed = ff(x);
    ASSERT_EQ(closed.sizes(), x.sizes());
    EXPECT_TRUE(AllClose(closed, torch::zeros_like(x), /*rtol=*/0, /*atol=*/1e-6))
        << "a closed gate blocks the value path: act(gate(x)) * up(x) with act(gate) = 0";
    // An open gate: gate(x) >= 64, where sigmoid and Phi are exactly 1 in fp32, so act(z) = z.
    SetWeight(ff->gate_proj, torch::full({F, C}, 4.0));
    auto open = ff(x);
    auto expected = Apply(ff->down_proj, Apply(ff->gate_proj, x) * Apply(ff->up_proj, x));
    // Outputs up to ~150, summed from 88 terms of up to ~10: fp32 rounding reaches ~5e-5 absolute.
    EXPECT_TRUE(AllClose(open, expected, /*rtol=*/1e-5, /*atol=*/1e-4))
        << "an open gate passes gate(x) * up(x) straight to down_proj";
  }
}

TEST_F(FeedForwardAdvanced, GeluIsTheExactErfFormNotTheTanhApproximation) {
  // Identity matrices, so y = gelu(x) (gelu) or gelu(x) * x (geglu), at x = (1.5, -3):
  //   exact  gelu(1.5) = 1.5 * Phi(1.5) = 1.3997892     gelu(-3) = -3 * Phi(-3) = -0.0040497
  //   tanh   0.5 z (1 + tanh(sqrt(2/pi) (z + 0.044715 z^3))): 1.3995716 and -0.0036374 (GPT-2's)
  // The two differ by 2e-4 and 4e-4, far above fp32 rounding.
  auto identity = torch::eye(2);
  auto x = torch::tensor({1.5f, -3.0f}).view({1, 1, 2});

  llm::FeedForward gelu(HandConfig("gelu", 2));
  SetWeight(gelu->up_proj, identity);
  SetWeight(gelu->down_proj, identity);
  auto y = gelu(x);
  ASSERT_EQ(y.sizes(), x.sizes());
  EXPECT_TRUE(AllClose(y, torch::tensor({1.3997892f, -0.0040497f}).view({1, 1, 2}), 1e-6, 1e-6))
      << "gelu(z) = z/2 * (1 + erf(z / sqrt 2)); torch::gelu's default, not approximate=\"tanh\"";

  llm::FeedForward geglu(HandConfig("geglu", 2));
  SetWeight(geglu->gate_proj, identity);
  SetWeight(geglu->up_proj, identity);
  SetWeight(geglu->down_proj, identity);
  // gelu(1.5) * 1.5 = 2.0996838; gelu(-3) * -3 = 0.0121491 (tanh form: 2.0993574, 0.0109122).
  EXPECT_TRUE(AllClose(geglu(x), torch::tensor({2.0996838f, 0.0121491f}).view({1, 1, 2}), 1e-6, 1e-6))
      << "GeGLU uses the same exact GELU on its gate";
}

TEST_F(FeedForwardAdvanced, LargePreActivationsStayFiniteAndActLikeRelu) {
  // |z| >= 50: sigmoid(z) and Phi(z) are exactly 0 or 1 in fp32, so silu(z) = gelu(z) = relu(z).
  // Writing silu as z * exp(z) / (1 + exp(z)) gives inf / inf = NaN here.
  auto scale = torch::tensor({{100.0f, 0.0f}, {0.0f, -100.0f}});
  auto identity = torch::eye(2);
  auto x = torch::tensor({{1.5f, 2.0f}, {-3.0f, -0.5f}}).view({1, 2, 2});
  for (const std::string mlp_type : {"swiglu", "geglu"}) {
    SCOPED_TRACE("mlp_type = " + mlp_type);
    llm::FeedForward ff(HandConfig(mlp_type, 2));
    SetWeight(ff->gate_proj, scale);  // gate(x) = (150, -200) and (-300, 50)
    SetWeight(ff->up_proj, identity);
    SetWeight(ff->down_proj, identity);
    // relu(gate) * x = (150 * 1.5, 0 * 2) and (0 * -3, 50 * -0.5)
    auto expected = torch::tensor({{225.0f, 0.0f}, {0.0f, -25.0f}}).view({1, 2, 2});
    auto y = ff(x);
    ASSERT_EQ(y.sizes(), x.sizes());
    EXPECT_TRUE(torch::isfinite(y).all().item<bool>()) << "no inf or NaN from exp of a large argument";
    EXPECT_TRUE(AllClose(y, expected, 1e-6, 1e-6));
  }
  llm::FeedForward gelu(HandConfig("gelu", 2));
  SetWeight(gelu->up_proj, scale);
  SetWeight(gelu->down_proj, identity);
  auto y = gelu(x);
  ASSERT_EQ(y.sizes(), x.sizes());
  EXPECT_TRUE(AllClose(y, torch::tensor({{150.0f, 0.0f}, {0.0f, 50.0f}}).view({1, 2, 2}), 1e-6, 1e-6))
      << "relu(up(x)) = relu(150, -200) and relu(-300, 50)";
}

TEST_F(FeedForwardAdvanced, ActsOnEachPositionIndependentlyWhateverTheLeadingShape) {
  llm::FeedForward ff(TinyConfig("swiglu"));
  auto x = torch::randn({B, T, C});
  auto y = ff(x);
  ASSERT_EQ(y.sizes(), x.sizes());
  // Different matrix shapes may take different fp32 kernels: rounding only, ~1e-7 relative.
  auto one = ff(x[1][4].view({1, 1, C}));
  EXPECT_TRUE(AllClose(one.view({C}), y[1][4], 1e-5, 1e-6)) << "one position alone gives the same output";
  auto rows = ff(x.reshape({B * T, C}));
  ASSERT_EQ(rows.sizes(), (std::vector<int64_t>{B * T, C})) << "a (N, C) input must work too";
  EXPECT_TRUE(AllClose(rows, y.reshape({B * T, C}), 1e-5, 1e-6));
  auto four_d = ff(x.view({1, B, T, C}));
  ASSERT_EQ(four_d.sizes(), (std::vector<int64_t>{1, B, T, C})) << "and any number of leading dimensions";
  EXPECT_TRUE(AllClose(four_d[0], y, 1e-5, 1e-6));
}

TEST_F(FeedForwardAdvanced, EvalModeSwitchesDropoutOff) {
  llm::FeedForward with_dropout(TinyConfig("swiglu", /*dropout=*/0.5));
  llm::FeedForward without(TinyConfig("swiglu", /*dropout=*/0.0));
  CopyParameters(*with_dropout, *without);
  auto x = torch::randn({B, T, C});
  with_dropout->eval();
  auto first = with_dropout(x);
  auto second = with_dropout(x);
  ASSERT_EQ(first.sizes(), x.sizes());
  EXPECT_TRUE(AllClose(first, second, 0, 0)) << "eval() is deterministic";
  EXPECT_TRUE(AllClose(first, without(x), 0, 0))
      << "in eval() dropout = 0.5 must give exactly the dropout = 0 output (pass is_training())";
}

TEST_F(FeedForwardAdvanced, GradientsOfEveryVariantMatchFloat64Autograd) {
  for (const std::string mlp_type : {"swiglu", "geglu", "gelu"}) {
    SCOPED_TRACE("mlp_type = " + mlp_type);
    llm::FeedForward ff(TinyConfig(mlp_type));
    auto x = torch::randn({B, T, C}, torch::requires_grad());
    auto upstream = torch::randn({B, T, C});
    (ff(x) * upstream).sum().backward();

    // The formula in float64 on copies of the same weights, differentiated by autograd.
    auto x64 = x.detach().to(torch::kFloat64).requires_grad_();
    std::map<std::string, torch::Tensor> w64;
    for (const auto& p : ff->named_parameters()) w64[p.key()] = p.value().detach().to(torch::kFloat64).requires_grad_();
    auto linear = [&](const std::string& name, const torch::Tensor& in) { return in.matmul(w64.at(name).t()); };
    auto up = linear("up_proj.weight", x64);
    torch::Tensor h;
    if (mlp_type == "gelu") {
      h = torch::gelu(up);
    } else {
      auto gate = linear("gate_proj.weight", x64);
      h = (mlp_type == "swiglu" ? torch::silu(gate) : torch::gelu(gate)) * up;
    }
    (linear("down_proj.weight", h) * upstream.to(torch::kFloat64)).sum().backward();

    ASSERT_TRUE(x.grad().defined()) << "no gradient reached x";
    // fp32 backward against float64: products and sums of 32 and 88 terms, ~1e-6 relative.
    EXPECT_TRUE(AllClose(x.grad(), x64.grad(), 1e-4, 1e-5)) << "dL/dx";
    for (const auto& p : ff->named_parameters()) {
      ASSERT_TRUE(p.value().grad().defined()) << "no gradient reached " << p.key();
      EXPECT_GT(p.value().grad().abs().sum().item<double>(), 0.0) << p.key() << " gets an all-zero gradient";
      EXPECT_TRUE(AllClose(p.value().grad(), w64.at(p.key()).grad(), 1e-4, 1e-5)) << "dL/d" << p.key();
    }
  }
}

TEST_F(FeedForwardAdvanced, Bf16InputKeepsShapeAndDtypeAndIsCloseToFp32) {
  llm::FeedForward ff32(TinyConfig("swiglu"));
  llm::FeedForward ff16(TinyConfig("swiglu"));
  CopyParameters(*ff32, *ff16);
  ff16->to(torch::kBFloat16);
  auto x16 = torch::randn({B, T, C}).to(torch::kBFloat16);
  auto y16 = ff16(x16);
  ASSERT_EQ(y16.sizes(), x16.sizes());
  ASSERT_EQ(y16.scalar_type(), torch::kBFloat16) << "a bf16 model keeps bf16 activations";
  // Reference: the fp32 weights on the same (already bf16-rounded) input.
  auto y32 = ff32(x16.to(torch::kFloat32));
  // bf16 keeps 8 significant bits: each rounding (the weights, gate and up, h, y) is off by up to
  // 2^-9 = 0.2% of its value; five of them add to ~0.5% of the output's norm. Per element the error
  // scales with the products summed, not with their sum, which may cancel: so the bound is 2% of the
  // value plus 3% of the output's typical size (its rms, ~0.1), and 1.5% of the whole output's norm.
  // (Measured over five seeds: at most 2.5% of the rms per element, 0.64% in norm.)
  const double scale = y32.pow(2).mean().sqrt().item<double>();
  EXPECT_TRUE(AllClose(y16.to(torch::kFloat32), y32, /*rtol=*/2e-2, /*atol=*/3e-2 * scale));
  const double relative = (y16.to(torch::kFloat32) - y32).norm().item<double>() / y32.norm().item<double>();
  EXPECT_LT(relative, 1.5e-2) << "relative L2 error of the bf16 output";
}

// ------------------------------------------------------------------------------- TransformerBlock

TEST_F(TransformerBlockAdvanced, PostNormBlockNormalizesAfterEachResidualSum) {
  llm::TransformerBlock block(TinyConfig(), llm::NormPlacement::kPost);
  RandomizeNormWeights(block);
  auto x = torch::randn({B, T, C});
  auto out = block(x);
  ASSERT_EQ(out.sizes(), x.sizes());
  auto h = block->input_layernorm(x + block->self_attn(x));
  auto expected = block->post_attention_layernorm(h + block->mlp(h));
  // The same operations in the same order: only rounding may differ.
  EXPECT_TRUE(AllClose(out, expected, 1e-6, 1e-6))
      << "h = input_layernorm(x + attn(x)); out = post_attention_layernorm(h + mlp(h))";
}

TEST_F(TransformerBlockAdvanced, PostNormOutputRowsHaveUnitRms) {
  llm::TransformerBlock block(TinyConfig(), llm::NormPlacement::kPost);  // norm weights are ones
  auto x = 5.0 * torch::randn({B, T, C}) + 1.0;
  auto out = block(x);
  ASSERT_EQ(out.sizes(), x.sizes());
  auto rms = out.pow(2).mean(-1).sqrt();  // (B, T)
  // The last operation is RMSNorm with unit weight: rms = 1 / sqrt(1 + eps / mean(h^2)), 1 - 5e-7 here.
  EXPECT_TRUE(AllClose(rms, torch::ones({B, T}), 0, 1e-5)) << "post-norm ends with a norm";
}

TEST_F(TransformerBlockAdvanced, PreAndPostNormDifferOnTheSameWeights) {
  llm::TransformerBlock pre(TinyConfig(), llm::NormPlacement::kPre);
  llm::TransformerBlock post(TinyConfig(), llm::NormPlacement::kPost);
  CopyParameters(*pre, *post);
  auto x = 5.0 * torch::randn({B, T, C}) + 1.0;
  auto out_pre = pre(x);
  auto out_post = post(x);
  ASSERT_EQ(out_pre.sizes(), x.sizes());
  ASSERT_EQ(out_post.sizes(), x.sizes());
  EXPECT_FALSE(AllClose(out_pre, out_post, 0.1, 0.1)) << "the placement must change the computation";
  // Pre-norm leaves the residual stream unnormalized: its output keeps the input's scale (rms ~5).
  const double rms_pre = out_pre.pow(2).mean().sqrt().item<double>();
  EXPECT_GT(rms_pre, 3.0) << "pre-norm output rms " << rms_pre << ": is a norm applied after the residual sum?";
}

TEST_F(TransformerBlockAdvanced, PreNormSublayersSeeTheNormalizedInput) {
  // With the MLP silenced, out - x = attn(input_layernorm(x)), and RMSNorm ignores the input's scale:
  // out(10 x) - 10 x = out(x) - x. Normalizing after attention (x + norm(attn(x))) or not at all
  // fails this: attention itself is not scale-invariant.
  const double a = 10.0;
  auto x = torch::randn({B, T, C});
  // out(10 x) - 10 x cancels a residual of size up to ~40, whose fp32 spacing is ~4e-6.
  const double atol = 1e-5;

  llm::TransformerBlock attn_only(TinyConfig());
  RandomizeNormWeights(attn_only);
  {
    torch::NoGradGuard no_grad;
    attn_only->mlp->down_proj->weight.zero_();
  }
  auto delta = attn_only(x) - x;
  ASSERT_EQ(delta.sizes(), x.sizes());
  EXPECT_TRUE(AllClose(attn_only(a * x) - a * x, delta, 1e-4, atol)) << "attention reads input_layernorm(x)";

  llm::TransformerBlock mlp_only(TinyConfig());
  RandomizeNormWeights(mlp_only);
  {
    torch::NoGradGuard no_grad;
    mlp_only->self_attn->o_proj->weight.zero_();
  }
  auto mlp_delta = mlp_only(x) - x;
  EXPECT_TRUE(AllClose(mlp_only(a * x) - a * x, mlp_delta, 1e-4, atol)) << "the MLP reads post_attention_layernorm(h)";
}

TEST_F(TransformerBlockAdvanced, GradientReachesEveryParameterInBothPlacements) {
  for (auto placement : {llm::NormPlacement::kPre, llm::NormPlacement::kPost}) {
    SCOPED_TRACE(placement == llm::NormPlacement::kPre ? "pre-norm" : "post-norm");
    llm::TransformerBlock block(TinyConfig(), placement);
    // T > 1: with a single position the softmax weight is 1 whatever q and k are.
    auto x = torch::randn({B, T, C}, torch::requires_grad());
    (block(x) * torch::randn({B, T, C})).sum().backward();
    ASSERT_TRUE(x.grad().defined()) << "no gradient reached the input";
    EXPECT_GT(x.grad().abs().sum().item<double>(), 0.0);
    for (const auto& p : block->named_parameters()) {
      ASSERT_TRUE(p.value().grad().defined()) << "no gradient reached " << p.key();
      EXPECT_GT(p.value().grad().abs().sum().item<double>(), 0.0) << p.key() << " gets an all-zero gradient";
      EXPECT_TRUE(torch::isfinite(p.value().grad()).all().item<bool>()) << p.key();
    }
  }
}

TEST_F(TransformerBlockAdvanced, ResidualPassesTheGradientUnchangedThroughSilencedSublayers) {
  llm::TransformerBlock block(TinyConfig());
  {
    torch::NoGradGuard no_grad;
    block->self_attn->o_proj->weight.zero_();
    block->mlp->down_proj->weight.zero_();
  }
  auto x = torch::randn({B, T, C}, torch::requires_grad());
  auto upstream = torch::randn({B, T, C});
  (block(x) * upstream).sum().backward();
  ASSERT_TRUE(x.grad().defined());
  // out = x + 0 + 0 and the sublayer paths contribute exactly 0: dL/dx = upstream, bit for bit.
  EXPECT_TRUE(AllClose(x.grad(), upstream, 0, 0)) << "the residual stream is a clean sum";
  // And the silenced matrices still learn, so the block can move away from the identity.
  EXPECT_GT(block->self_attn->o_proj->weight.grad().abs().sum().item<double>(), 0.0) << "o_proj";
  EXPECT_GT(block->mlp->down_proj->weight.grad().abs().sum().item<double>(), 0.0) << "down_proj";
}

TEST_F(TransformerBlockAdvanced, PassesThePaddingMaskToAttention) {
  llm::TransformerBlock block(TinyConfig());
  auto x = torch::randn({B, T, C});
  auto mask = torch::ones({B, T}, torch::kBool);
  mask[1].narrow(0, T - 2, 2).fill_(false);  // sequence 1 is right-padded: its last 2 tokens are padding
  auto out = block(x, /*offset=*/0, mask);
  ASSERT_EQ(out.sizes(), x.sizes());
  auto h = x + block->self_attn(block->input_layernorm(x), 0, mask);
  auto expected = h + block->mlp(block->post_attention_layernorm(h));
  EXPECT_TRUE(AllClose(out, expected, 1e-6, 1e-6)) << "key_padding_mask goes to self_attn";
  EXPECT_FALSE(AllClose(out, block(x), 1e-3, 1e-3))
      << "the padding mask must change the outputs at the padded positions";
}

TEST_F(TransformerBlockAdvanced, DecodingWithACacheMatchesTheFullForward) {
  // One prompt pass, then a token at a time at offset t, keys and values kept in the cache: the
  // outputs must be the full forward's. Dropping the offset would put every new token at RoPE
  // position 0; dropping the cache would let it attend only to itself.
  // Both placements: post-norm must pass offset and cache to attention just as pre-norm does.
  for (auto placement : {llm::NormPlacement::kPre, llm::NormPlacement::kPost}) {
    const char* name = placement == llm::NormPlacement::kPre ? "pre-norm" : "post-norm";
    llm::TransformerBlock block(TinyConfig(), placement);
    RandomizeNormWeights(block);
    auto x = torch::randn({B, T, C});
    auto full = block(x);
    ASSERT_EQ(full.sizes(), x.sizes());
    ConcatStore cache;
    const torch::Tensor no_padding;
    const int64_t prompt = 2;
    std::vector<torch::Tensor> pieces = {block(x.narrow(1, 0, prompt), /*offset=*/0, no_padding, &cache)};
    for (int64_t t = prompt; t < T; ++t) pieces.push_back(block(x.narrow(1, t, 1), /*offset=*/t, no_padding, &cache));
    auto stepped = torch::cat(pieces, 1);
    ASSERT_EQ(stepped.sizes(), full.sizes());
    // The same sums over differently shaped matrices: fp32 rounding, ~1e-7 relative.
    EXPECT_TRUE(AllClose(stepped, full, 1e-5, 1e-6)) << name << ": offset and cache are passed to self_attn";
  }
}

TEST_F(TransformerBlockAdvanced, PassesPositionIdsToAttentionInBothPlacements) {
  // A packed row of two documents (lesson 06): the block must hand position_ids to attention, so
  // the second document's outputs equal the block run on that document alone. A block that drops
  // them attends across the boundary and rotates the second document by its column index.
  for (auto placement : {llm::NormPlacement::kPre, llm::NormPlacement::kPost}) {
    const char* name = placement == llm::NormPlacement::kPre ? "pre-norm" : "post-norm";
    llm::TransformerBlock block(TinyConfig(), placement);
    RandomizeNormWeights(block);
    const int64_t first = 3, second = T - first;
    auto x = torch::randn({1, T, C});
    auto positions = torch::cat({torch::arange(first), torch::arange(second)}).view({1, T});
    auto packed = block(x, /*offset=*/0, torch::Tensor(), nullptr, positions);
    ASSERT_EQ(packed.sizes(), x.sizes());
    auto alone = block(x.narrow(1, first, second).contiguous());
    // Different matrix shapes, the same sums: fp32 rounding.
    EXPECT_TRUE(AllClose(packed.narrow(1, first, second), alone, 1e-5, 1e-6))
        << name << ": the second document must be computed as if alone";
    EXPECT_TRUE(AllClose(packed.narrow(1, 0, first), block(x.narrow(1, 0, first).contiguous()), 1e-5, 1e-6))
        << name << ": the first document too";
  }
}

}  // namespace
