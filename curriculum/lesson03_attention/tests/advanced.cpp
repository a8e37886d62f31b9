// Lesson 03, advanced: edge cases (fully masked rows, padding, positions shifted, a KV cache),
// numerics (huge scores, bf16), dropout, gradients, clear errors, and the mistakes people really make
// (scores in bf16, NaN from an all-masked row, a cache that stores repeated heads, a top-left mask).
// Grade with:  ctest --preset default -R lesson03.advanced
#include "attention_fixtures.h"

#include <llm/common/testing.h>
#include <llm/model/attention.h>
#include <llm/model/scaled_dot_product.h>

#include <limits>
#include <utility>
#include <vector>

namespace {

using lesson03::C;
using lesson03::ConcatStore;
using lesson03::D;
using lesson03::H;
using lesson03::Hkv;
using lesson03::NaiveAttention;
using lesson03::NaiveModule;
using lesson03::RepeatKvRows;
using lesson03::TinyConfig;
using llm::testing::AllClose;
using llm::testing::CopyParameters;
using llm::testing::SeededTest;
using llm::testing::ThrowsWith;

// Scaled dot-product attention sizes; Tq != Tk so a swapped axis changes a shape. The module's
// H, D, C, Hkv come from attention_fixtures.h; T new positions.
constexpr int64_t B = 2, Tq = 5, Tk = 7, T = 6;

class CausalMaskAdvanced : public SeededTest {};
class ScaledDotProductAdvanced : public SeededTest {};
class AttentionAdvanced : public SeededTest {};

// --------------------------------------------------------------------------------- causal_mask

TEST_F(CausalMaskAdvanced, RejectsMoreQueriesThanKeysNamingBoth) {
  EXPECT_TRUE(ThrowsWith([] { llm::causal_mask(5, 3); }, {"Tq = 5", "Tk = 3"}))
      << "the new queries are the last Tq of the Tk positions, so Tq <= Tk";
}

TEST_F(CausalMaskAdvanced, DocumentCausalMaskOfOneDocumentIsTheCausalMask) {
  auto position_ids = torch::arange(T).expand({B, T});  // one document per row: 0 .. T-1
  auto mask = llm::document_causal_mask(position_ids);
  ASSERT_EQ(mask.sizes(), (std::vector<int64_t>{B, 1, T, T}));
  EXPECT_TRUE(torch::equal(mask, llm::causal_mask(T, T).expand({B, 1, T, T}))) << "got\n" << mask;
}

TEST_F(CausalMaskAdvanced, DocumentCausalMaskOfAllZeroPositionsLetsEveryTokenSeeOnlyItself) {
  // Every token starts a document of its own (what a row of one-token documents looks like).
  auto mask = llm::document_causal_mask(torch::zeros({1, 4}, torch::kLong));
  ASSERT_EQ(mask.sizes(), (std::vector<int64_t>{1, 1, 4, 4}));
  EXPECT_TRUE(torch::equal(mask, torch::eye(4).to(torch::kBool).view({1, 1, 4, 4}))) << "got\n" << mask;
}

TEST_F(CausalMaskAdvanced, DocumentCausalMaskRejectsPositionIdsThatAreNotBT) {
  EXPECT_TRUE(ThrowsWith([] { llm::document_causal_mask(torch::arange(5)); }, {"position_ids", "[5]"}));
  EXPECT_TRUE(ThrowsWith(
      [] {
        llm::document_causal_mask(torch::zeros({1, 1, 5}, torch::kLong));
      },
      {"position_ids", "[1, 1, 5]"}));
}

// ---------------------------------------------------------------- scaled_dot_product_attention

TEST_F(ScaledDotProductAdvanced, StaysExactWithVeryLargeScores) {
  // D = 1 (scale 1), query 0 = 1 and query 1 = -1, keys (1000, 1000, 999), values (1, 2, 3).
  //   query 0: scores (1000, 1000, 999)   -> weights (e, e, 1) / (2e + 1) = (0.422319, 0.422319, 0.155362)
  //   query 1: scores (-1000, -1000, -999) -> weights (1, 1, e) / (2 + e)  = (0.211942, 0.211942, 0.576117)
  //   out = weights . (1, 2, 3) = 1.733044 and 2.364175
  // exp(1000) overflows and exp(-1000) underflows to 0, so a softmax that does not subtract the row
  // maximum gives inf/inf or 0/0 = NaN here.
  auto q = torch::tensor({1.0f, -1.0f}).view({1, 1, 2, 1});
  auto k = torch::tensor({1000.0f, 1000.0f, 999.0f}).view({1, 1, 3, 1});
  auto v = torch::tensor({1.0f, 2.0f, 3.0f}).view({1, 1, 3, 1});
  llm::AttentionOptions options;
  options.return_weights = true;
  auto result = llm::scaled_dot_product_attention(q, k, v, options);
  ASSERT_EQ(result.out.sizes(), (std::vector<int64_t>{1, 1, 2, 1}));
  ASSERT_TRUE(result.weights.defined());
  auto expected_weights = torch::tensor({{0.422319f, 0.422319f, 0.155362f}, {0.211942f, 0.211942f, 0.576117f}});
  // The scores are integers, exact in fp32; 1e-6 is the rounding of the 6-decimal hand values.
  EXPECT_TRUE(AllClose(result.weights.view({2, 3}), expected_weights, /*rtol=*/0, /*atol=*/1e-6))
      << "softmax(s) = softmax(s - max(s))";
  EXPECT_TRUE(AllClose(result.out.view({2}), torch::tensor({1.733044f, 2.364175f}), 0, 1e-5));
}

TEST_F(ScaledDotProductAdvanced, AFullyMaskedQueryRowGetsZeroWeightsAndZeroOutput) {
  auto q = torch::randn({1, H, 3, D});
  auto k = torch::randn({1, H, 4, D});
  auto v = torch::randn({1, H, 4, D});
  auto mask = torch::tensor({{1, 1, 0, 0},  //
                             {0, 0, 0, 0},  // query 1 may see nothing, e.g. a padded position
                             {0, 1, 1, 1}})
                  .to(torch::kBool);
  llm::AttentionOptions options;
  options.mask = mask;
  options.return_weights = true;
  auto result = llm::scaled_dot_product_attention(q, k, v, options);
  ASSERT_EQ(result.out.sizes(), (std::vector<int64_t>{1, H, 3, D}));
  ASSERT_TRUE(result.weights.defined());
  EXPECT_FALSE(result.out.isnan().any().item<bool>()) << "softmax of an all -inf row is 0/0: set it to 0";
  EXPECT_FALSE(result.weights.isnan().any().item<bool>());
  EXPECT_TRUE(AllClose(result.weights.select(2, 1), torch::zeros({1, H, 4}), 0, 0)) << "no key gets weight";
  EXPECT_TRUE(AllClose(result.out.select(2, 1), torch::zeros({1, H, D}), 0, 0)) << "so the output is 0";
  // The other rows are unaffected (the naive reference is NaN on row 1, so compare rows 0 and 2).
  auto naive = NaiveAttention(q, k, v, mask).out;
  for (int64_t row : {0, 2}) {
    EXPECT_TRUE(AllClose(result.out.select(2, row), naive.select(2, row), 1e-5, 1e-6)) << "row " << row;
  }
}

TEST_F(ScaledDotProductAdvanced, AFullyMaskedQueryRowPassesFiniteGradients) {
  // One NaN in a backward pass poisons every weight at the next optimizer step. A padded query row
  // (all keys masked) must give zero gradient, not NaN, whether the mask is boolean or additive:
  // softmax's backward multiplies by its output, so a row left NaN in the forward pass leaks NaN
  // into q and k even if it is zeroed afterwards.
  auto keep = torch::tensor({{1, 0, 0, 0}, {0, 0, 0, 0}, {1, 1, 1, 0}}).to(torch::kBool);
  auto additive = torch::zeros({3, 4}).masked_fill(keep.logical_not(), -std::numeric_limits<float>::infinity());
  for (const auto& mask : {keep, additive}) {
    const char* kind = mask.scalar_type() == torch::kBool ? "boolean mask" : "additive -inf mask";
    auto q = torch::randn({1, H, 3, D}, torch::requires_grad());
    auto k = torch::randn({1, H, 4, D}, torch::requires_grad());
    auto v = torch::randn({1, H, 4, D}, torch::requires_grad());
    llm::AttentionOptions options;
    options.mask = mask;
    auto out = llm::scaled_dot_product_attention(q, k, v, options).out;
    (out * torch::randn({1, H, 3, D})).sum().backward();
    ASSERT_TRUE(q.grad().defined() && k.grad().defined() && v.grad().defined()) << kind;
    EXPECT_TRUE(torch::isfinite(q.grad()).all().item<bool>()) << kind << ": dL/dq";
    EXPECT_TRUE(torch::isfinite(k.grad()).all().item<bool>()) << kind << ": dL/dk";
    EXPECT_TRUE(torch::isfinite(v.grad()).all().item<bool>()) << kind << ": dL/dv";
    EXPECT_TRUE(AllClose(q.grad().select(2, 1), torch::zeros({1, H, D}), 0, 0))
        << kind << ": the fully masked query's output is constant 0, so its gradient is 0";
  }
}

TEST_F(ScaledDotProductAdvanced, GradientsMatchTheNaiveLoopInFloat64) {
  auto q = torch::randn({B, H, Tq, D}, torch::requires_grad());
  auto k = torch::randn({B, H, Tk, D}, torch::requires_grad());
  auto v = torch::randn({B, H, Tk, D}, torch::requires_grad());
  auto mask = llm::causal_mask(Tq, Tk);
  auto upstream = torch::randn({B, H, Tq, D});
  llm::AttentionOptions options;
  options.mask = mask;
  (llm::scaled_dot_product_attention(q, k, v, options).out * upstream).sum().backward();

  auto q64 = q.detach().to(torch::kFloat64).requires_grad_();
  auto k64 = k.detach().to(torch::kFloat64).requires_grad_();
  auto v64 = v.detach().to(torch::kFloat64).requires_grad_();
  // The mask is written out here rather than taken from causal_mask: key j is visible to query i
  // when j <= i + Tk - Tq.
  auto rows = torch::arange(Tq).view({Tq, 1}), cols = torch::arange(Tk).view({1, Tk});
  (NaiveAttention(q64, k64, v64, cols.le(rows + (Tk - Tq))).out * upstream.to(torch::kFloat64)).sum().backward();

  ASSERT_TRUE(q.grad().defined() && k.grad().defined() && v.grad().defined()) << "gradients reach q, k and v";
  // fp32 backward against float64: rounding ~1e-7 on O(1) gradients.
  EXPECT_TRUE(AllClose(q.grad(), q64.grad(), /*rtol=*/1e-4, /*atol=*/1e-5)) << "dL/dq";
  EXPECT_TRUE(AllClose(k.grad(), k64.grad(), 1e-4, 1e-5)) << "dL/dk";
  EXPECT_TRUE(AllClose(v.grad(), v64.grad(), 1e-4, 1e-5)) << "dL/dv";
}

TEST_F(ScaledDotProductAdvanced, DropoutActsOnlyWhileTrainingAndIsReproducibleWithASeed) {
  constexpr double kP = 0.5;
  constexpr int64_t N = 8;  // Tq = Tk = D = N, so v can be the identity
  auto q = torch::randn({B, H, N, N});
  auto k = torch::randn({B, H, N, N});
  // v = I: out = (dropped-out weights) @ I, so out *is* the weights that were used, exactly.
  auto v = torch::eye(N).expand({B, H, N, N}).contiguous();
  auto run = [&](double p, bool training) {
    llm::AttentionOptions options;
    options.dropout = p;
    options.training = training;
    return llm::scaled_dot_product_attention(q, k, v, options).out;
  };
  auto plain = run(0.0, false);
  ASSERT_EQ(plain.sizes(), (std::vector<int64_t>{B, H, N, N}));
  EXPECT_TRUE(AllClose(run(kP, /*training=*/false), plain, 0, 0)) << "evaluation ignores dropout entirely";

  torch::manual_seed(7);
  auto first = run(kP, /*training=*/true);
  torch::manual_seed(7);
  auto second = run(kP, /*training=*/true);
  EXPECT_TRUE(AllClose(second, first, 0, 0)) << "the same seed drops the same weights (torch's generator)";

  auto kept = first.ne(0);
  const double dropped = 1.0 - kept.to(torch::kFloat64).mean().item<double>();
  // 512 weights dropped with p = 0.5: the fraction is 0.5 +- 0.022 (one sigma); 0.35..0.65 is 7 sigma.
  EXPECT_GT(dropped, 0.35) << "dropout must zero weights while training";
  EXPECT_LT(dropped, 0.65);
  EXPECT_TRUE(AllClose(first.masked_select(kept), plain.masked_select(kept) / (1.0 - kP), 1e-6, 1e-7))
      << "kept weights are scaled by 1/(1 - p) so the expectation is unchanged";
}

TEST_F(ScaledDotProductAdvanced, Bf16InputsUseAnFp32SoftmaxAndReturnBf16) {
  auto q16 = torch::randn({B, H, Tq, D}).to(torch::kBFloat16);
  auto k16 = torch::randn({B, H, Tk, D}).to(torch::kBFloat16);
  auto v16 = torch::randn({B, H, Tk, D}).to(torch::kBFloat16);
  llm::AttentionOptions options;
  options.mask = llm::causal_mask(Tq, Tk);
  options.return_weights = true;
  auto result = llm::scaled_dot_product_attention(q16, k16, v16, options);
  ASSERT_EQ(result.out.sizes(), (std::vector<int64_t>{B, H, Tq, D}));
  ASSERT_EQ(result.out.scalar_type(), torch::kBFloat16) << "out keeps q's dtype";
  ASSERT_TRUE(result.weights.defined());
  EXPECT_EQ(result.weights.scalar_type(), torch::kFloat32) << "the softmax runs in fp32";
  // Reference: the same bf16 numbers, upcast, in float64.
  auto naive = NaiveAttention(q16, k16, v16, llm::causal_mask(Tq, Tk));
  EXPECT_TRUE(AllClose(result.weights, naive.weights, /*rtol=*/1e-5, /*atol=*/1e-6)) << "fp32 scores and softmax";
  // Neighbouring bf16 values are 2^-8 to 2^-7 of the value apart: 8e-3 is one rounding of the result.
  EXPECT_TRUE(AllClose(result.out.to(torch::kFloat32), naive.out, /*rtol=*/8e-3, /*atol=*/1e-3));
}

TEST_F(ScaledDotProductAdvanced, Bf16ScoresAreComputedInFp32) {
  // q = (1, 1), keys (150, 150), (150, 151), (150, 152): all exact in bf16, and with scale 1 the
  // scores are 300, 301, 302, exact in fp32. A bf16 matmul rounds 301 to 300 (bf16 spacing is 2 there):
  //   fp32 scores: softmax(0, 1, 2) = (0.090031, 0.244728, 0.665241)    <- right
  //   bf16 scores: softmax(0, 0, 2) = (0.106507, 0.106507, 0.786986)    <- what q.bf16 @ k.bf16 gives
  // Values (0, 1), (1, 1), (2, 1): out = (0.244728 + 2 * 0.665241, 1) = (1.575210, 1).
  auto q = torch::tensor({1.0f, 1.0f}).view({1, 1, 1, 2}).to(torch::kBFloat16);
  auto k =
      torch::tensor({{150.0f, 150.0f}, {150.0f, 151.0f}, {150.0f, 152.0f}}).view({1, 1, 3, 2}).to(torch::kBFloat16);
  auto v = torch::tensor({{0.0f, 1.0f}, {1.0f, 1.0f}, {2.0f, 1.0f}}).view({1, 1, 3, 2}).to(torch::kBFloat16);
  llm::AttentionOptions options;
  options.scale = 1.0;
  options.return_weights = true;
  auto result = llm::scaled_dot_product_attention(q, k, v, options);
  ASSERT_EQ(result.out.sizes(), (std::vector<int64_t>{1, 1, 1, 2}));
  ASSERT_TRUE(result.weights.defined());
  EXPECT_TRUE(AllClose(result.weights.view({3}).to(torch::kFloat32), torch::tensor({0.090031f, 0.244728f, 0.665241f}),
                       /*rtol=*/0, /*atol=*/1e-6))
      << "upcast q and k to fp32 before q @ k^T";
  // One bf16 rounding of 1.575210 (spacing 2^-7 in [1, 2)).
  EXPECT_TRUE(AllClose(result.out.view({2}).to(torch::kFloat32), torch::tensor({1.575210f, 1.0f}), 8e-3, 0));
}

TEST_F(ScaledDotProductAdvanced, FewerKvHeadsEqualTheirRepetitionWithAndWithoutMasks) {
  // Grouped-query attention inside the function: k and v with Hkv = 2 heads serve q's H = 4 (query
  // head h uses kv head h / 2), equal to the same call with each kv head repeated (Hugging Face's
  // repeat_kv) - unmasked, causal (the bias repeated for each query head of a group), and with a
  // boolean mask.
  auto q = torch::randn({2, 4, 5, 8});
  auto k = torch::randn({2, 2, 5, 8}), v = torch::randn({2, 2, 5, 6});
  auto repeat = [](const torch::Tensor& t) { return t.repeat_interleave(2, /*dim=*/1); };
  llm::AttentionOptions plain, causal, masked;
  causal.causal = true;
  masked.mask = torch::rand({2, 1, 5, 5}).gt(0.3);
  masked.mask.select(3, 0).fill_(true);
  for (const auto* options : {&plain, &causal, &masked}) {
    auto grouped = llm::scaled_dot_product_attention(q, k, v, *options).out;
    ASSERT_EQ(grouped.sizes(), (std::vector<int64_t>{2, 4, 5, 6}));
    auto repeated = llm::scaled_dot_product_attention(q, repeat(k), repeat(v), *options).out;
    EXPECT_TRUE(AllClose(grouped, repeated, 1e-5, 1e-6)) << (options == &plain    ? "no mask"
                                                             : options == &causal ? "causal"
                                                                                  : "boolean mask");
  }
  // And the causal option is the causal mask: the same as passing causal_mask(5, 5) as a mask.
  llm::AttentionOptions explicit_mask;
  explicit_mask.mask = llm::causal_mask(5, 5);
  EXPECT_TRUE(AllClose(llm::scaled_dot_product_attention(q, k, v, causal).out,
                       llm::scaled_dot_product_attention(q, repeat(k), repeat(v), explicit_mask).out, 1e-5, 1e-6));
}

TEST_F(ScaledDotProductAdvanced, RejectsMismatchedShapesNamingThem) {
  auto q = torch::randn({2, 4, 5, 8});
  EXPECT_TRUE(ThrowsWith(
      [&] {
        llm::scaled_dot_product_attention(q, torch::randn({2, 4, 5, 6}), torch::randn({2, 4, 5, 6}));
      },
      {"[2, 4, 5, 8]", "[2, 4, 5, 6]"}))
      << "q and k must have the same head dim D";
  EXPECT_TRUE(ThrowsWith(
      [&] {
        llm::scaled_dot_product_attention(q, torch::randn({2, 4, 7, 8}), torch::randn({2, 4, 6, 8}));
      },
      {"[2, 4, 7, 8]", "[2, 4, 6, 8]"}))
      << "k and v must have the same number of positions";
  EXPECT_TRUE(ThrowsWith(
      [&] {
        llm::scaled_dot_product_attention(q, torch::randn({2, 3, 7, 8}), torch::randn({2, 3, 7, 8}));
      },
      {"[2, 4, 5, 8]", "[2, 3, 7, 8]"}))
      << "k and v's heads must divide q's (grouped-query attention): 3 does not divide 4";
}

// ------------------------------------------------------------------------------------ Attention

// Qwen2's q, k and v projections have biases, its o_proj none (modeling_qwen2.py); the Linear
// layers add them. Random biases, so a bias that never reaches the scores shows.
TEST_F(AttentionAdvanced, Qwen2BiasesShiftQueriesKeysAndValuesButNotTheOutput) {
  auto config = TinyConfig();
  config.qkv_bias = true;
  llm::Attention attn(config);
  ASSERT_TRUE(attn->q_proj->bias.defined() && attn->k_proj->bias.defined() && attn->v_proj->bias.defined());
  EXPECT_FALSE(attn->o_proj->bias.defined()) << "qkv_bias leaves o_proj without one";
  {
    torch::NoGradGuard no_grad;
    for (auto* l : {&attn->q_proj, &attn->k_proj, &attn->v_proj}) (*l)->bias.copy_(torch::randn_like((*l)->bias));
  }
  auto x = torch::randn({B, T, C});
  EXPECT_TRUE(AllClose(attn(x), NaiveModule(attn, x), 1e-5, 1e-5));
}

// Llama's attention_bias puts a bias on all four projections.
TEST_F(AttentionAdvanced, LlamasAttentionBiasAlsoBiasesTheOutputProjection) {
  auto config = TinyConfig();
  config.attention_bias = true;
  llm::Attention attn(config);
  ASSERT_TRUE(attn->o_proj->bias.defined());
  {
    torch::NoGradGuard no_grad;
    for (auto* l : {&attn->q_proj, &attn->k_proj, &attn->v_proj, &attn->o_proj})
      (*l)->bias.copy_(torch::randn_like((*l)->bias));
  }
  auto x = torch::randn({B, T, C});
  EXPECT_TRUE(AllClose(attn(x), NaiveModule(attn, x), 1e-5, 1e-5));
}

// Decoding with QK-norm: each new key is normalized before it is cached and rotated at its own
// position, so one token at a time equals one forward over all of them.
TEST_F(AttentionAdvanced, QkNormThroughAKvStoreMatchesOneFullForward) {
  auto config = TinyConfig();
  config.qk_norm = true;
  llm::Attention attn(config);
  {
    torch::NoGradGuard no_grad;
    attn->q_norm->weight.copy_(1 + 0.5 * torch::randn({D}));
    attn->k_norm->weight.copy_(1 + 0.5 * torch::randn({D}));
  }
  auto x = torch::randn({B, T, C});
  lesson03::ConcatStore store;
  std::vector<torch::Tensor> steps;
  for (int64_t t = 0; t < T; ++t) steps.push_back(attn->forward(x.narrow(1, t, 1), t, torch::Tensor(), &store));
  EXPECT_TRUE(AllClose(torch::cat(steps, 1), attn(x), 1e-5, 1e-5));
}

// The config's RoPE scaling (Llama 3.1's "llama3") reaches the attention's tables.
TEST_F(AttentionAdvanced, RopeScalingFromTheConfigReachesTheRotation) {
  auto config = TinyConfig();
  config.rope_theta = 500000;
  config.rope_scaling = "llama3";
  config.rope_factor = 8;
  config.rope_original_max_position_embeddings = 16;
  llm::Attention attn(config);
  EXPECT_EQ(attn->rope.scaling().type, "llama3");
  auto x = torch::randn({B, T, C});
  llm::Attention plain(TinyConfig());
  llm::testing::CopyParameters(*attn, *plain);
  plain->rope = llm::RotaryEmbedding(D, lesson03::kMaxPositions, 500000);  // the same base, unscaled
  EXPECT_TRUE(AllClose(attn(x), NaiveModule(attn, x), 1e-5, 1e-5));
  EXPECT_FALSE(AllClose(attn(x), plain(x), 1e-4, 1e-4)) << "the scaled frequencies must change the output";
}

TEST_F(AttentionAdvanced, MultiQueryAttentionEqualsMhaWithTheOneKvHeadRepeated) {
  llm::Attention mqa(TinyConfig(/*kv_heads=*/1));
  llm::Attention mha(TinyConfig(/*kv_heads=*/H));
  {
    torch::NoGradGuard no_grad;
    mha->q_proj->weight.copy_(mqa->q_proj->weight);
    mha->o_proj->weight.copy_(mqa->o_proj->weight);
    mha->k_proj->weight.copy_(RepeatKvRows(mqa->k_proj->weight, H, 1, D));
    mha->v_proj->weight.copy_(RepeatKvRows(mqa->v_proj->weight, H, 1, D));
  }
  auto x = torch::randn({B, T, C});
  auto y = mqa(x);
  ASSERT_EQ(y.sizes(), x.sizes());
  // The same arithmetic through differently shaped matrix products: only rounding may differ.
  EXPECT_TRUE(AllClose(y, mha(x), /*rtol=*/1e-5, /*atol=*/1e-6)) << "Hkv = 1: every query head reads kv head 0";
  EXPECT_TRUE(AllClose(y, NaiveModule(mqa, x), 1e-5, 1e-5)) << "and the naive loop agrees";
}

TEST_F(AttentionAdvanced, ShiftingEveryPositionByAnOffsetLeavesTheOutputUnchanged) {
  // RoPE makes q . k depend only on the distance between positions, and nothing else in attention
  // sees a position: starting the sequence at 7 instead of 0 changes nothing.
  llm::Attention attn(TinyConfig());
  auto x = torch::randn({B, T, C});
  auto at0 = attn(x, /*offset=*/0);
  auto at7 = attn(x, /*offset=*/7);
  ASSERT_EQ(at7.sizes(), x.sizes());
  // cos/sin of different angles round differently in fp32: ~1e-7 per score.
  EXPECT_TRUE(AllClose(at7, at0, /*rtol=*/1e-5, /*atol=*/1e-5)) << "relative positions only";
  EXPECT_TRUE(AllClose(at7, NaiveModule(attn, x, /*offset=*/7), 1e-5, 1e-5)) << "RoPE at positions 7 .. 12";
}

TEST_F(AttentionAdvanced, RopeRotatesQueriesAndKeysButNotValues) {
  // With a single position there is a single key: softmax weight 1, and out = o_proj(v_proj(x)) per
  // head, whatever the rotation. Rotating v (a real slip) would change the output at offset != 0.
  llm::Attention attn(TinyConfig());
  auto x = torch::randn({B, 1, C});
  auto y = attn(x, /*offset=*/5);
  ASSERT_EQ(y.sizes(), x.sizes());
  auto v = torch::matmul(x, RepeatKvRows(attn->v_proj->weight, H, Hkv, D).t());  // (B, 1, H D)
  auto expected = torch::matmul(v, attn->o_proj->weight.t());
  EXPECT_TRUE(AllClose(y, expected, /*rtol=*/1e-5, /*atol=*/1e-6)) << "values carry no position";
}

TEST_F(AttentionAdvanced, ChangingPaddedKeysLeavesEveryRealPositionUnchanged) {
  llm::Attention attn(TinyConfig());
  constexpr int64_t kPad = 2;  // batch row 1 is left-padded: positions 0, 1 are padding
  auto padding = torch::ones({B, T}, torch::kBool);
  padding[1].narrow(0, 0, kPad).fill_(false);
  auto x = torch::randn({B, T, C});
  auto x2 = x.clone();
  x2[1].narrow(0, 0, kPad).copy_(torch::randn({kPad, C}) * 10);  // whatever the pad tokens embed to
  auto y = attn(x, /*offset=*/0, padding), y2 = attn(x2, /*offset=*/0, padding);
  ASSERT_EQ(y.sizes(), x.sizes());
  EXPECT_TRUE(torch::isfinite(y).all().item<bool>()) << "padded queries see no key: zero, not NaN";
  // A padded key with zero weight contributes exactly 0; a leak moves outputs by ~1e-1.
  EXPECT_TRUE(AllClose(y2[0], y[0], /*rtol=*/0, /*atol=*/1e-6)) << "row 0 has no padding";
  EXPECT_TRUE(AllClose(y2[1].narrow(0, kPad, T - kPad), y[1].narrow(0, kPad, T - kPad), 0, 1e-6))
      << "real tokens of row 1 must not see the padding";
  // Without the mask the real positions do see the padding (otherwise this test proves nothing).
  EXPECT_FALSE(AllClose(attn(x2)[1].narrow(0, kPad, T - kPad), attn(x)[1].narrow(0, kPad, T - kPad), 1e-3, 1e-3));
}

TEST_F(AttentionAdvanced, KvStoreFedOneTokenAtATimeMatchesOneFullForward) {
  llm::Attention attn(TinyConfig());
  auto x = torch::randn({B, T, C});
  auto full = attn(x);
  ConcatStore store;
  std::vector<torch::Tensor> steps;
  for (int64_t t = 0; t < T; ++t) {
    // Token t sits at position t (the offset) and attends to the t + 1 keys in the store.
    steps.push_back(attn(x.narrow(1, t, 1), /*offset=*/t, /*key_padding_mask=*/torch::Tensor(), &store));
  }
  auto stepped = torch::cat(steps, 1);
  ASSERT_EQ(stepped.sizes(), full.sizes());
  ASSERT_TRUE(store.k.defined() && store.v.defined()) << "forward must append to the cache";
  ASSERT_EQ(store.k.sizes(), (std::vector<int64_t>{B, Hkv, T, D}))
      << "the cache holds Hkv heads after RoPE: repeat the kv heads after append, not before";
  // Different matrix shapes (1 query vs T) may round differently in fp32: ~1e-7.
  EXPECT_TRUE(AllClose(stepped, full, /*rtol=*/1e-5, /*atol=*/1e-5)) << "decoding with a cache == full forward";
}

TEST_F(AttentionAdvanced, KvStoreFedInChunksMatchesOneFullForward) {
  // Chunks of 3, 2, 1 tokens: the second call has Tq = 2 queries against Tk = 5 keys, so the causal
  // mask must be aligned bottom-right (query i sees keys j <= i + Tk - Tq).
  llm::Attention attn(TinyConfig());
  auto x = torch::randn({B, T, C});
  auto full = attn(x);
  ConcatStore store;
  std::vector<torch::Tensor> chunks;
  int64_t offset = 0;
  for (int64_t len : {3, 2, 1}) {
    chunks.push_back(attn(x.narrow(1, offset, len), offset, /*key_padding_mask=*/torch::Tensor(), &store));
    offset += len;
  }
  auto chunked = torch::cat(chunks, 1);
  ASSERT_EQ(chunked.sizes(), full.sizes());
  EXPECT_TRUE(AllClose(chunked, full, /*rtol=*/1e-5, /*atol=*/1e-5)) << "prefill + decode in chunks == full";
}

TEST_F(AttentionAdvanced, GradientsReachEveryProjectionAndMatchTheNaiveLoop) {
  llm::Attention attn(TinyConfig());
  auto x = torch::randn({B, T, C}, torch::requires_grad());
  auto upstream = torch::randn({B, T, C});
  (attn(x) * upstream).sum().backward();

  auto leaf = [](const llm::Linear& l) { return l->weight.detach().to(torch::kFloat64).requires_grad_(); };
  auto wq = leaf(attn->q_proj), wk = leaf(attn->k_proj), wv = leaf(attn->v_proj), wo = leaf(attn->o_proj);
  auto x64 = x.detach().to(torch::kFloat64).requires_grad_();
  (NaiveModule(x64, wq, wk, wv, wo, H, Hkv) * upstream.to(torch::kFloat64)).sum().backward();

  const std::vector<std::pair<const char*, std::pair<torch::Tensor, torch::Tensor>>> checks = {
      {"q_proj", {attn->q_proj->weight.grad(), wq.grad()}},
      {"k_proj", {attn->k_proj->weight.grad(), wk.grad()}},
      {"v_proj", {attn->v_proj->weight.grad(), wv.grad()}},
      {"o_proj", {attn->o_proj->weight.grad(), wo.grad()}},
      {"x", {x.grad(), x64.grad()}},
  };
  for (const auto& [name, grads] : checks) {
    ASSERT_TRUE(grads.first.defined()) << "no gradient reached " << name;
    EXPECT_GT(grads.first.abs().sum().item<double>(), 0.0) << name << " got an all-zero gradient";
    // fp32 backward against float64 (RoPE in fp32 in both): rounding ~1e-6 on O(1) gradients.
    EXPECT_TRUE(AllClose(grads.first, grads.second, /*rtol=*/1e-4, /*atol=*/1e-5)) << "dL/d" << name;
  }
}

TEST_F(AttentionAdvanced, DropoutOnlyActsInTrainingMode) {
  auto config = TinyConfig();
  config.dropout = 0.5;
  llm::Attention attn(config);
  llm::Attention no_dropout(TinyConfig());
  CopyParameters(*attn, *no_dropout);
  auto x = torch::randn({B, T, C});

  attn->eval();
  no_dropout->eval();
  auto evaluated = attn(x);
  ASSERT_EQ(evaluated.sizes(), x.sizes());
  EXPECT_TRUE(AllClose(attn(x), evaluated, 0, 0)) << "eval() is deterministic";
  EXPECT_TRUE(AllClose(evaluated, no_dropout(x), 0, 0)) << "eval() must not drop anything";

  attn->train();
  torch::manual_seed(7);
  auto first = attn(x);
  torch::manual_seed(7);
  auto second = attn(x);
  EXPECT_TRUE(AllClose(second, first, 0, 0)) << "the same seed drops the same weights";
  EXPECT_FALSE(AllClose(first, evaluated, 1e-3, 1e-3)) << "train() applies dropout = 0.5 to the attention weights";
}

TEST_F(AttentionAdvanced, StoredWeightsAreCausalAndEveryRowSumsToOne) {
  llm::Attention attn(TinyConfig());
  attn->store_weights = true;
  attn(torch::randn({B, T, C}));
  auto w = attn->last_weights;
  ASSERT_TRUE(w.defined()) << "store_weights = true keeps the softmax weights in last_weights";
  ASSERT_EQ(w.sizes(), (std::vector<int64_t>{B, H, T, T}));
  EXPECT_TRUE(AllClose(w.sum(-1), torch::ones({B, H, T}), /*rtol=*/0, /*atol=*/1e-6)) << "softmax over keys";
  EXPECT_TRUE(AllClose(w.triu(/*diagonal=*/1), torch::zeros({B, H, T, T}), 0, 0)) << "no weight on the future";
  EXPECT_TRUE(AllClose(w.select(2, 0).select(2, 0), torch::ones({B, H}), 0, 1e-6)) << "token 0 sees only itself";
}

TEST_F(AttentionAdvanced, RejectsAPaddingMaskOfTheWrongShapeNamingBoth) {
  llm::Attention attn(TinyConfig());
  auto x = torch::randn({2, 6, C});
  EXPECT_TRUE(ThrowsWith(
      [&] {
        attn(x, 0, torch::ones({2, 5}, torch::kBool));
      },
      {"key_padding_mask", "(2, 6)", "[2, 5]"}))
      << "the padding mask is (B, Tk)";
  EXPECT_TRUE(ThrowsWith([&] { attn(x, 0, torch::ones({2, 1, 6}, torch::kBool)); }, {"(2, 6)", "[2, 1, 6]"}));
}

TEST_F(AttentionAdvanced, RejectsWidthsThatDoNotSplitIntoHeads) {
  auto bad_width = TinyConfig();
  // 30 / 4 heads is not whole. The config's own message must come first, not a symptom such as
  // RoPE rejecting the odd D = 7 that integer division would give.
  bad_width.hidden_size = 30;
  EXPECT_TRUE(ThrowsWith([&] { llm::Attention attn(bad_width); }, {"hidden_size 30", "num_attention_heads 4"}));
  auto no_heads = TinyConfig();
  no_heads.num_attention_heads = 0;  // must be an error, not a division by zero
  EXPECT_TRUE(ThrowsWith([&] { llm::Attention attn(no_heads); }, {"num_attention_heads", "positive"}));
  auto bad_groups = TinyConfig(/*kv_heads=*/3);  // 4 query heads cannot share 3 kv heads evenly
  EXPECT_TRUE(ThrowsWith([&] { llm::Attention attn(bad_groups); }, {"num_key_value_heads 3", "4"}));
  llm::Attention attn(TinyConfig());
  EXPECT_TRUE(ThrowsWith(
      [&] {
        attn(torch::randn({2, 6, C + 1}));
      },
      {"Attention", "32", "[2, 6, 33]"}))
      << "x must be (B, T, H * D), checked by Attention itself: a projection's own shape error would not say "
         "what the attention layer expects";
}

TEST_F(AttentionAdvanced, ChangingOneDocumentOfAPackedRowLeavesTheOthersUnchanged) {
  llm::Attention attn(TinyConfig());
  attn->store_weights = true;
  constexpr int64_t kFirst = 3;  // documents of 3 and 3 tokens in every row
  auto position_ids = torch::tensor({0, 1, 2, 0, 1, 2}, torch::kLong).expand({B, T});
  auto run = [&](const torch::Tensor& x) {
    return attn(x, /*offset=*/0, /*key_padding_mask=*/torch::Tensor(), /*cache=*/nullptr, position_ids);
  };
  auto x = torch::randn({B, T, C});
  auto y = run(x);
  ASSERT_EQ(y.sizes(), x.sizes());
  auto w = attn->last_weights;
  ASSERT_TRUE(w.defined()) << "store_weights = true keeps the softmax weights in last_weights";
  EXPECT_TRUE(
      AllClose(w.narrow(2, kFirst, T - kFirst).narrow(3, 0, kFirst), torch::zeros({B, H, T - kFirst, kFirst}), 0, 0))
      << "the second document gives no weight to the first";

  auto earlier = x.clone();  // rewrite the first document
  earlier.narrow(1, 0, kFirst).copy_(torch::randn({B, kFirst, C}));
  auto y_earlier = run(earlier);
  // A key with zero weight contributes exactly 0; a leak moves outputs by ~1e-1.
  EXPECT_TRUE(AllClose(y_earlier.narrow(1, kFirst, T - kFirst), y.narrow(1, kFirst, T - kFirst), /*rtol=*/0,
                       /*atol=*/1e-6))
      << "the second document must not see the first, though the first comes earlier in the row";
  EXPECT_FALSE(AllClose(y_earlier.narrow(1, 0, kFirst), y.narrow(1, 0, kFirst), 1e-3, 1e-3))
      << "the rewritten document itself must change (otherwise this test proves nothing)";

  auto later = x.clone();  // rewrite the second document
  later.narrow(1, kFirst, T - kFirst).copy_(torch::randn({B, T - kFirst, C}));
  EXPECT_TRUE(AllClose(run(later).narrow(1, 0, kFirst), y.narrow(1, 0, kFirst), 0, 1e-6)) << "nor the first the second";
  EXPECT_FALSE(AllClose(attn(earlier).narrow(1, kFirst, T - kFirst), attn(x).narrow(1, kFirst, T - kFirst), 1e-3, 1e-3))
      << "without position_ids the whole row is one causal sequence (otherwise this test proves nothing)";
}

TEST_F(AttentionAdvanced, PackedRowsCombineWithAPaddingMask) {
  llm::Attention attn(TinyConfig());
  // Row 0: documents a (3 tokens) and b (3).  Row 1: two padding tokens, then c (2) and d (2); the
  // padding is left padding of c, so c's positions count on from it (2, 3), as in generate().
  auto position_ids = torch::tensor({{0, 1, 2, 0, 1, 2}, {0, 1, 2, 3, 0, 1}}, torch::kLong);
  auto padding = torch::ones({B, T}, torch::kBool);
  padding[1].narrow(0, 0, 2).fill_(false);
  auto run = [&](const torch::Tensor& x) { return attn(x, /*offset=*/0, padding, /*cache=*/nullptr, position_ids); };
  auto x = torch::randn({B, T, C});
  auto y = run(x);
  ASSERT_EQ(y.sizes(), x.sizes());
  EXPECT_TRUE(torch::isfinite(y).all().item<bool>()) << "padded queries see no key: zero, not NaN";

  // Every real token: as if its document ran alone (c at its positions 2, 3). Other documents and
  // the padding get weight exactly 0; fewer keys in the softmax may round differently: ~1e-7.
  auto piece = [](const torch::Tensor& t, int64_t b, int64_t start, int64_t length) {
    return t.narrow(0, b, 1).narrow(1, start, length);
  };
  EXPECT_TRUE(AllClose(piece(y, 0, 0, 3), attn(piece(x, 0, 0, 3)), 1e-5, 1e-6)) << "document a";
  EXPECT_TRUE(AllClose(piece(y, 0, 3, 3), attn(piece(x, 0, 3, 3)), 1e-5, 1e-6)) << "document b";
  EXPECT_TRUE(AllClose(piece(y, 1, 2, 2), attn(piece(x, 1, 2, 2), /*offset=*/2), 1e-5, 1e-6))
      << "document c must not see its padding";
  EXPECT_TRUE(AllClose(piece(y, 1, 4, 2), attn(piece(x, 1, 4, 2)), 1e-5, 1e-6)) << "document d";

  auto x2 = x.clone();
  x2[1].narrow(0, 0, 2).copy_(torch::randn({2, C}) * 10);  // whatever the pad tokens embed to
  EXPECT_TRUE(AllClose(piece(run(x2), 1, 2, 4), piece(y, 1, 2, 4), /*rtol=*/0, /*atol=*/1e-6))
      << "the padding mask and the document mask both apply";
  auto no_padding_mask = [&](const torch::Tensor& t) {
    return attn(t, /*offset=*/0, /*key_padding_mask=*/torch::Tensor(), /*cache=*/nullptr, position_ids);
  };
  EXPECT_FALSE(AllClose(piece(no_padding_mask(x2), 1, 2, 2), piece(no_padding_mask(x), 1, 2, 2), 1e-3, 1e-3))
      << "without the padding mask c does see its padding (otherwise this test proves nothing)";
}

TEST_F(AttentionAdvanced, PositionIdsWithAKvCacheOrAnOffsetAreAClearError) {
  // Packed rows are for training: a cache or an offset would mean a second, contradicting, source
  // of positions.
  llm::Attention attn(TinyConfig());
  auto x = torch::randn({1, 4, C});
  auto position_ids = torch::tensor({{0, 1, 0, 1}}, torch::kLong);
  ConcatStore store;
  EXPECT_TRUE(
      ThrowsWith([&] { attn(x, /*offset=*/0, torch::Tensor(), &store, position_ids); }, {"position_ids", "cache"}));
  EXPECT_TRUE(
      ThrowsWith([&] { attn(x, /*offset=*/3, torch::Tensor(), nullptr, position_ids); }, {"position_ids", "offset"}));
}

}  // namespace
