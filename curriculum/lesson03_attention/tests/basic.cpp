// Lesson 03, basic: the core behaviour a first correct attempt must show.
// Grade with:  ctest --preset default -R lesson03.basic
#include "attention_fixtures.h"

#include <llm/common/testing.h>
#include <llm/model/attention.h>
#include <llm/model/scaled_dot_product.h>

#include <limits>
#include <utility>
#include <vector>

namespace {

using lesson03::C;
using lesson03::D;
using lesson03::H;
using lesson03::Hkv;
using lesson03::NaiveAttention;
using lesson03::NaiveModule;
using lesson03::RepeatKvRows;
using lesson03::TinyConfig;
using llm::testing::AllClose;
using llm::testing::SeededTest;

// Tiny named sizes (the module's H, D, C, Hkv come from attention_fixtures.h).
// Scaled dot-product attention: Tq != Tk and Dv != D so a swapped axis changes a shape.
// The module: T positions of width C.
constexpr int64_t B = 2, Tq = 5, Tk = 7, Dv = 6, T = 6;

class CausalMaskTest : public SeededTest {};
class ScaledDotProductTest : public SeededTest {};
class AttentionTest : public SeededTest {};

// --------------------------------------------------------------------------------- causal_mask

TEST_F(CausalMaskTest, LetsQueryISeeOnlyKeysUpToI) {
  auto mask = llm::causal_mask(3, 3);
  ASSERT_EQ(mask.sizes(), (std::vector<int64_t>{3, 3}));
  ASSERT_EQ(mask.scalar_type(), torch::kBool) << "true = may attend";
  auto expected = torch::tensor({{1, 0, 0},  //
                                 {1, 1, 0},
                                 {1, 1, 1}})
                      .to(torch::kBool);
  EXPECT_TRUE(torch::equal(mask, expected)) << "got\n" << mask;
}

TEST_F(CausalMaskTest, AlignsBottomRightWhenThereAreFewerQueriesThanKeys) {
  // With a KV cache the 2 new queries are positions 3 and 4 of 5: query 0 sees keys 0..3, query 1 all.
  auto mask = llm::causal_mask(2, 5);
  ASSERT_EQ(mask.sizes(), (std::vector<int64_t>{2, 5}));
  auto expected = torch::tensor({{1, 1, 1, 1, 0},  //
                                 {1, 1, 1, 1, 1}})
                      .to(torch::kBool);
  EXPECT_TRUE(torch::equal(mask, expected)) << "got\n" << mask;
  EXPECT_TRUE(llm::causal_mask(1, 4).all().item<bool>()) << "one new token sees every cached key";
}

TEST_F(CausalMaskTest, DocumentCausalMaskKeepsEveryTokenInsideItsDocument) {
  // Row 0 packs documents of 3 and 2 tokens: position_ids [0 1 2 0 1], documents a a a b b.
  // Row 1 packs documents of 1, 3 and 1 tokens: position_ids [0 0 1 2 0], documents a b b b c.
  auto position_ids = torch::tensor({{0, 1, 2, 0, 1}, {0, 0, 1, 2, 0}}, torch::kLong);
  auto mask = llm::document_causal_mask(position_ids);
  ASSERT_EQ(mask.sizes(), (std::vector<int64_t>{2, 1, 5, 5})) << "(B, 1, T, T): broadcast over the heads";
  ASSERT_EQ(mask.scalar_type(), torch::kBool) << "true = may attend";
  auto expected = torch::tensor({{{1, 0, 0, 0, 0},  //
                                  {1, 1, 0, 0, 0},
                                  {1, 1, 1, 0, 0},
                                  {0, 0, 0, 1, 0},
                                  {0, 0, 0, 1, 1}},
                                 {{1, 0, 0, 0, 0},  //
                                  {0, 1, 0, 0, 0},
                                  {0, 1, 1, 0, 0},
                                  {0, 1, 1, 1, 0},
                                  {0, 0, 0, 0, 1}}})
                      .to(torch::kBool)
                      .view({2, 1, 5, 5});
  EXPECT_TRUE(torch::equal(mask, expected)) << "causal and the same document; got\n" << mask;
}

// ---------------------------------------------------------------- scaled_dot_product_attention

TEST_F(ScaledDotProductTest, ScalesScoresByOneOverSqrtD) {
  // D = 4, so the scale is 1/sqrt(4) = 1/2. Keys k0 = (1, 1, 1, 1), k1 = 0; values v0 = e_0, v1 = e_1.
  //   query 0 = (1, 1, 1, 1): scores (4, 0) / 2 = (2, 0) -> weights (e^2, 1) / (e^2 + 1) = (0.880797, 0.119203)
  //   query 1 = (2, 0, 0, 0): scores (2, 0) / 2 = (1, 0) -> weights (e, 1) / (e + 1)     = (0.731059, 0.268941)
  // Without the scale query 0 would get (0.982014, 0.017986); with 1/D instead, (0.731059, 0.268941).
  auto q = torch::tensor({{1.0f, 1.0f, 1.0f, 1.0f}, {2.0f, 0.0f, 0.0f, 0.0f}}).view({1, 1, 2, 4});
  auto k = torch::tensor({{1.0f, 1.0f, 1.0f, 1.0f}, {0.0f, 0.0f, 0.0f, 0.0f}}).view({1, 1, 2, 4});
  auto v = torch::tensor({{1.0f, 0.0f, 0.0f, 0.0f}, {0.0f, 1.0f, 0.0f, 0.0f}}).view({1, 1, 2, 4});
  llm::AttentionOptions options;
  options.return_weights = true;
  auto result = llm::scaled_dot_product_attention(q, k, v, options);
  auto expected_weights = torch::tensor({{0.880797f, 0.119203f}, {0.731059f, 0.268941f}}).view({1, 1, 2, 2});
  auto expected_out =
      torch::tensor({{0.880797f, 0.119203f, 0.0f, 0.0f}, {0.731059f, 0.268941f, 0.0f, 0.0f}}).view({1, 1, 2, 4});
  ASSERT_EQ(result.out.sizes(), expected_out.sizes());
  ASSERT_TRUE(result.weights.defined()) << "return_weights = true must return the weights";
  ASSERT_EQ(result.weights.sizes(), expected_weights.sizes());
  // The hand values carry 6 decimals: 1e-6 absolute is their rounding.
  EXPECT_TRUE(AllClose(result.weights, expected_weights, /*rtol=*/0, /*atol=*/1e-6)) << "softmax(q k^T / sqrt(D))";
  EXPECT_TRUE(AllClose(result.out, expected_out, /*rtol=*/0, /*atol=*/1e-6)) << "weights @ v";
}

TEST_F(ScaledDotProductTest, MatchesANaivePerHeadLoop) {
  auto q = torch::randn({B, H, Tq, D});
  auto k = torch::randn({B, H, Tk, D});
  auto v = torch::randn({B, H, Tk, D});
  auto out = llm::scaled_dot_product_attention(q, k, v).out;
  ASSERT_EQ(out.sizes(), (std::vector<int64_t>{B, H, Tq, D}));
  // fp32 against float64 with O(1) values: rounding is ~1e-7.
  EXPECT_TRUE(AllClose(out, NaiveAttention(q, k, v).out, /*rtol=*/1e-5, /*atol=*/1e-6)) << "no mask";

  // A random boolean mask, different per batch row (B, 1, Tq, Tk); key 0 always visible.
  auto mask = torch::rand({B, 1, Tq, Tk}).gt(0.4);
  mask.select(3, 0).fill_(true);
  llm::AttentionOptions options;
  options.mask = mask;
  auto masked = llm::scaled_dot_product_attention(q, k, v, options).out;
  ASSERT_EQ(masked.sizes(), (std::vector<int64_t>{B, H, Tq, D}));
  EXPECT_TRUE(AllClose(masked, NaiveAttention(q, k, v, mask).out, 1e-5, 1e-6)) << "mask broadcast from (B, 1, Tq, Tk)";
}

TEST_F(ScaledDotProductTest, ReturnsOutputOfShapeBHTqDvAndWeightsOfShapeBHTqTk) {
  auto q = torch::randn({B, H, Tq, D});
  auto k = torch::randn({B, H, Tk, D});
  auto v = torch::randn({B, H, Tk, Dv});
  llm::AttentionOptions options;
  options.return_weights = true;
  auto result = llm::scaled_dot_product_attention(q, k, v, options);
  ASSERT_EQ(result.out.sizes(), (std::vector<int64_t>{B, H, Tq, Dv})) << "one Dv-vector per query";
  ASSERT_TRUE(result.weights.defined()) << "return_weights = true must return the weights";
  ASSERT_EQ(result.weights.sizes(), (std::vector<int64_t>{B, H, Tq, Tk})) << "one weight per (query, key)";
  EXPECT_EQ(result.out.scalar_type(), torch::kFloat32) << "out keeps q's dtype";
  EXPECT_TRUE(AllClose(result.out, NaiveAttention(q, k, v).out, 1e-5, 1e-6)) << "Dv != D";
}

TEST_F(ScaledDotProductTest, EveryWeightRowSumsToOneAndMaskedKeysGetZeroWeight) {
  auto q = torch::randn({B, H, Tq, D}) * 3;  // sharper rows than unit scores
  auto k = torch::randn({B, H, Tk, D});
  auto v = torch::randn({B, H, Tk, D});
  auto mask = torch::tensor({{1, 0, 1, 0, 0, 0, 0},  //
                             {1, 1, 0, 0, 0, 1, 0},
                             {0, 0, 0, 0, 0, 0, 1},
                             {1, 1, 1, 1, 1, 1, 1},
                             {0, 1, 1, 1, 0, 1, 1}})
                  .to(torch::kBool);  // (Tq, Tk), every row has a visible key
  llm::AttentionOptions options;
  options.mask = mask;
  options.return_weights = true;
  auto weights = llm::scaled_dot_product_attention(q, k, v, options).weights;
  ASSERT_TRUE(weights.defined()) << "return_weights = true must return the weights";
  ASSERT_EQ(weights.sizes(), (std::vector<int64_t>{B, H, Tq, Tk}));
  // A sum of 7 fp32 probabilities: rounding stays below 1e-6.
  EXPECT_TRUE(AllClose(weights.sum(-1), torch::ones({B, H, Tq}), /*rtol=*/0, /*atol=*/1e-6))
      << "softmax over the keys (the last dimension)";
  EXPECT_TRUE(weights.ge(0).all().item<bool>()) << "probabilities are never negative";
  auto hidden = weights.masked_select(mask.logical_not().expand({B, H, Tq, Tk}));
  EXPECT_TRUE(AllClose(hidden, torch::zeros_like(hidden), 0, 0)) << "a masked key gets exactly zero weight";
  EXPECT_TRUE(AllClose(weights.select(2, 2).select(2, 6), torch::ones({B, H}), 0, 1e-6))
      << "query 2 sees only key 6, so all of its weight goes there";
}

TEST_F(ScaledDotProductTest, BooleanAndAdditiveMasksGiveTheSameResult) {
  auto q = torch::randn({B, H, Tq, D});
  auto k = torch::randn({B, H, Tk, D});
  auto v = torch::randn({B, H, Tk, D});
  auto keep = torch::rand({Tq, Tk}).gt(0.5);  // (Tq, Tk), true = attend
  keep.select(1, 3).fill_(true);              // every query sees key 3
  // The additive form of the same mask: 0 where a key is visible, -inf where it is not.
  auto additive = torch::zeros({Tq, Tk}).masked_fill(keep.logical_not(), -std::numeric_limits<float>::infinity());
  llm::AttentionOptions as_bool, as_float;
  as_bool.mask = keep;
  as_float.mask = additive;
  auto a = llm::scaled_dot_product_attention(q, k, v, as_bool).out;
  auto b = llm::scaled_dot_product_attention(q, k, v, as_float).out;
  ASSERT_EQ(a.sizes(), b.sizes());
  // Adding 0 is exact and exp(-inf) is exactly 0, so the two agree bit for bit.
  EXPECT_TRUE(AllClose(b, a, /*rtol=*/0, /*atol=*/0)) << "a float mask is added to the scores";
  EXPECT_TRUE(AllClose(a, NaiveAttention(q, k, v, keep).out, 1e-5, 1e-6)) << "and both are the masked attention";
}

// ------------------------------------------------------------------------------------ Attention

TEST_F(AttentionTest, MatchesANaivePerHeadLoopWithRope) {
  llm::Attention attn(TinyConfig());  // H = 4, Hkv = 2
  auto x = torch::randn({B, T, C});
  auto y = attn(x);
  ASSERT_EQ(y.sizes(), x.sizes()) << "(B, T, C) in, (B, T, C) out";
  // fp32 projections over C = 32 channels against float64 (RoPE in fp32 in both): rounding ~1e-7.
  EXPECT_TRUE(AllClose(y, NaiveModule(attn, x), /*rtol=*/1e-5, /*atol=*/1e-5))
      << "q, k, v projections, RoPE on q and k, causal softmax per head, merge heads, o_proj";
}

// Qwen3: an RMSNorm over D on every query and key head, one weight of D shared by all heads,
// before RoPE. Large inputs and learned (non-one) norm weights, so leaving either out shows.
TEST_F(AttentionTest, QkNormNormalizesEveryQueryAndKeyHeadBeforeRope) {
  auto config = TinyConfig();
  config.qk_norm = true;
  llm::Attention attn(config);
  ASSERT_TRUE(attn->q_norm && attn->k_norm) << "config.qk_norm registers q_norm and k_norm (Qwen3's names)";
  ASSERT_EQ(attn->q_norm->weight.sizes(), (std::vector<int64_t>{D})) << "one weight of D for every head";
  {
    torch::NoGradGuard no_grad;
    attn->q_norm->weight.copy_(1 + 0.5 * torch::randn({D}));
    attn->k_norm->weight.copy_(1 + 0.5 * torch::randn({D}));
  }
  auto x = 3 * torch::randn({B, T, C});
  auto y = attn(x);
  ASSERT_EQ(y.sizes(), x.sizes());
  EXPECT_TRUE(AllClose(y, NaiveModule(attn, x), 1e-5, 1e-5))
      << "q_norm(q) and k_norm(k) on (B, T, H, D) before the transpose and RoPE; v is not normalized";
}

// Qwen3-0.6B projects C = 1024 to H D = 16 x 128 = 2048 and back: D is the config's head_dim,
// not C / H. Here C = 24 and H D = 4 x 10 = 40.
TEST_F(AttentionTest, AnExplicitHeadDimProjectsToHTimesDAndBack) {
  auto config = TinyConfig();
  config.hidden_size = 24;
  config.head_dim_override = 10;
  llm::Attention attn(config);
  EXPECT_EQ(attn->q_proj->weight.sizes(), (std::vector<int64_t>{H * 10, 24}));
  EXPECT_EQ(attn->k_proj->weight.sizes(), (std::vector<int64_t>{Hkv * 10, 24}));
  EXPECT_EQ(attn->o_proj->weight.sizes(), (std::vector<int64_t>{24, H * 10}));
  auto x = torch::randn({B, T, 24});
  auto y = attn(x);
  ASSERT_EQ(y.sizes(), x.sizes()) << "(B, T, C) in, (B, T, C) out, whatever H D is";
  EXPECT_TRUE(AllClose(y, NaiveModule(attn, x), 1e-5, 1e-5));
}

TEST_F(AttentionTest, WithAsManyKvHeadsAsQueryHeadsItIsMultiHeadAttention) {
  llm::Attention attn(TinyConfig(/*kv_heads=*/H));  // Hkv = H: every query head has its own k and v
  auto x = torch::randn({B, T, C});
  auto y = attn(x);
  ASSERT_EQ(y.sizes(), x.sizes());
  EXPECT_TRUE(AllClose(y, NaiveModule(attn, x), 1e-5, 1e-5)) << "G = 1: no repetition at all";
}

TEST_F(AttentionTest, GroupedQueryAttentionEqualsMhaWithEachKvHeadRepeatedForItsGroup) {
  llm::Attention gqa(TinyConfig(/*kv_heads=*/Hkv));
  llm::Attention mha(TinyConfig(/*kv_heads=*/H));
  {
    torch::NoGradGuard no_grad;
    mha->q_proj->weight.copy_(gqa->q_proj->weight);
    mha->o_proj->weight.copy_(gqa->o_proj->weight);
    // Query heads 0, 1 use kv head 0 and heads 2, 3 use kv head 1 (h / G), not 0, 1, 0, 1.
    mha->k_proj->weight.copy_(RepeatKvRows(gqa->k_proj->weight, H, Hkv, D));
    mha->v_proj->weight.copy_(RepeatKvRows(gqa->v_proj->weight, H, Hkv, D));
  }
  auto x = torch::randn({B, T, C});
  auto y = gqa(x);
  ASSERT_EQ(y.sizes(), x.sizes());
  // The same arithmetic through differently shaped matrix products: only rounding may differ.
  EXPECT_TRUE(AllClose(y, mha(x), /*rtol=*/1e-5, /*atol=*/1e-6))
      << "query head h must read key/value head h / G (repeat_interleave, not repeat)";
}

TEST_F(AttentionTest, ChangingFutureTokensLeavesEveryEarlierOutputUnchanged) {
  llm::Attention attn(TinyConfig());
  constexpr int64_t kKept = 3;  // positions 0..2 stay, 3..5 are replaced
  auto x = torch::randn({B, T, C});
  auto x2 = x.clone();
  x2.narrow(1, kKept, T - kKept).copy_(torch::randn({B, T - kKept, C}));
  auto y = attn(x), y2 = attn(x2);
  ASSERT_EQ(y.sizes(), x.sizes());
  // A future key with zero weight contributes exactly 0; any leak moves outputs by ~1e-1.
  // 1e-6 absolute tolerates only a different summation order.
  EXPECT_TRUE(AllClose(y2.narrow(1, 0, kKept), y.narrow(1, 0, kKept), /*rtol=*/0, /*atol=*/1e-6))
      << "position i may only see positions 0..i";
  EXPECT_FALSE(AllClose(y2.narrow(1, kKept, T - kKept), y.narrow(1, kKept, T - kKept), 1e-3, 1e-3))
      << "the changed positions themselves must change (otherwise this test proves nothing)";
}

TEST_F(AttentionTest, APackedRowEqualsEachDocumentRunAlone) {
  llm::Attention attn(TinyConfig());
  // Row 0 packs documents of 4 and 2 tokens, row 1 documents of 2 and 4: positions restart at 0.
  auto position_ids = torch::tensor({{0, 1, 2, 3, 0, 1}, {0, 1, 0, 1, 2, 3}}, torch::kLong);  // (B, T)
  auto x = torch::randn({B, T, C});
  auto y = attn(x, /*offset=*/0, /*key_padding_mask=*/torch::Tensor(), /*cache=*/nullptr, position_ids);
  ASSERT_EQ(y.sizes(), x.sizes());
  const std::vector<std::vector<std::pair<int64_t, int64_t>>> documents = {{{0, 4}, {4, 2}}, {{0, 2}, {2, 4}}};
  for (int64_t b = 0; b < B; ++b) {
    for (const auto& [start, length] : documents[b]) {
      auto alone = attn(x.narrow(0, b, 1).narrow(1, start, length));  // the document by itself, at offset 0
      // Other documents' keys get weight exactly 0; fewer keys in the softmax may round differently: ~1e-7.
      EXPECT_TRUE(AllClose(y.narrow(0, b, 1).narrow(1, start, length), alone, /*rtol=*/1e-5, /*atol=*/1e-6))
          << "row " << b << ", tokens " << start << ".." << start + length - 1
          << ": RoPE at position_ids and attention only inside the document";
    }
  }
}

}  // namespace
