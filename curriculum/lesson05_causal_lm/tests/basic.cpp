// Lesson 05, basic: the model's forward pass and loss, the KV cache, and picking the next token.
// Grade with:  ctest --preset default -R lesson05.basic
#include "lm_fixtures.h"

#include <llm/common/testing.h>
#include <llm/generate/generate.h>
#include <llm/generate/sampling.h>
#include <llm/model/causal_lm.h>
#include <llm/model/kv_cache.h>

#include <cmath>
#include <utility>
#include <vector>

namespace {

using lesson05::LmTest;
using lesson05::TinyConfig;
using llm::testing::AllClose;

constexpr int64_t B = 2, T = 9;

class CausalLMTest : public LmTest {};
class KVCacheTest : public LmTest {};
class SamplingTest : public LmTest {};
class GenerateTest : public LmTest {};

TEST_F(CausalLMTest, GivesOneRowOfLogitsPerPosition) {
  const auto config = TinyConfig();
  llm::CausalLM model(config);
  auto logits = model(torch::randint(0, config.vocab_size, {B, T}));
  ASSERT_EQ(logits.sizes(), (std::vector<int64_t>{B, T, config.vocab_size}));
  EXPECT_EQ(logits.scalar_type(), torch::kFloat32);
  EXPECT_TRUE(torch::isfinite(logits).all().item<bool>());
}

// Generation needs only the last position's logits; logits_to_keep = n runs the output layer on the
// last n positions only (transformers' LlamaForCausalLM: logits_to_keep).
TEST_F(CausalLMTest, LogitsToKeepScoresOnlyTheLastPositions) {
  const auto config = TinyConfig();
  llm::CausalLM model(config);
  model->eval();
  auto ids = torch::randint(0, config.vocab_size, {B, T}, torch::kLong);
  auto all = model(ids);
  auto last = model->forward(ids, 0, {}, nullptr, {}, /*logits_to_keep=*/1);
  ASSERT_EQ(last.sizes(), (std::vector<int64_t>{B, 1, config.vocab_size}));
  EXPECT_TRUE(AllClose(last, all.narrow(1, T - 1, 1), 1e-6, 1e-6));
  auto three = model->forward(ids, 0, {}, nullptr, {}, 3);
  ASSERT_EQ(three.sizes(), (std::vector<int64_t>{B, 3, config.vocab_size}));
  EXPECT_TRUE(AllClose(three, all.narrow(1, T - 3, 3), 1e-6, 1e-6));
  EXPECT_TRUE(llm::testing::ThrowsWith([&] { model->forward(ids, 0, {}, nullptr, {}, T + 1); },
                                       {"logits_to_keep", std::to_string(T + 1)}));
}

TEST_F(CausalLMTest, HasTheConfigsParametersUnderHuggingFaceNamesAndUsesThemAll) {
  for (bool tied : {false, true}) {
    auto config = TinyConfig();
    config.tie_word_embeddings = tied;
    llm::CausalLM model(config);
    EXPECT_EQ(model->num_parameters(), config.num_parameters()) << (tied ? "tied" : "untied");
    auto params = model->named_parameters();
    for (const char* key : {"model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight",
                            "model.layers.1.self_attn.k_proj.weight", "model.layers.1.self_attn.v_proj.weight",
                            "model.layers.1.self_attn.o_proj.weight", "model.layers.0.mlp.gate_proj.weight",
                            "model.layers.0.mlp.up_proj.weight", "model.layers.0.mlp.down_proj.weight",
                            "model.layers.0.input_layernorm.weight", "model.layers.0.post_attention_layernorm.weight",
                            "model.norm.weight"}) {
      EXPECT_NE(params.find(key), nullptr) << key;
    }
    EXPECT_EQ(params.find("lm_head.weight") != nullptr, !tied) << "lm_head exists only when untied";
    // Every one of those parameters must take part in the forward pass and the loss.
    auto ids = torch::randint(0, config.vocab_size, {B, T});
    llm::causal_lm_loss(model(ids), ids).backward();
    for (const auto& item : params) {
      ASSERT_TRUE(item.value().grad().defined()) << item.key() << " is never used";
    }
  }
}

TEST_F(CausalLMTest, UntrainedLossIsCloseToLnV) {
  const auto config = TinyConfig();
  llm::CausalLM model(config);
  auto ids = torch::randint(0, config.vocab_size, {4, 32});
  const double loss = llm::causal_lm_loss(model(ids), ids).item<double>();
  // With N(0, 0.02) weights the logits have a std of about sqrt(C) * 0.02 = 0.11, so the prediction is
  // nearly uniform: loss = ln(64) = 4.159 plus about half the logit variance (0.006).
  EXPECT_NEAR(loss, std::log(static_cast<double>(config.vocab_size)), 0.05);
}

TEST_F(CausalLMTest, LaterTokensNeverChangeEarlierLogits) {
  const auto config = TinyConfig();
  llm::CausalLM model(config);
  model->eval();
  auto ids = torch::randint(0, config.vocab_size, {B, T});
  auto changed = ids.clone();
  changed.narrow(1, 5, T - 5).random_(0, config.vocab_size);  // rewrite positions 5..T-1
  auto a = model(ids).narrow(1, 0, 5), b = model(changed).narrow(1, 0, 5);
  EXPECT_TRUE(AllClose(a, b, 1e-6, 1e-6)) << "logits at positions 0..4 may only depend on tokens 0..4";
}

TEST_F(CausalLMTest, APackedRowGivesEveryDocumentItsLogitsRunAlone) {
  const auto config = TinyConfig();
  llm::CausalLM model(config);
  model->eval();
  torch::NoGradGuard no_grad;
  // Row 0 packs documents of 4 and 5 tokens, row 1 documents of 2, 3 and 4; positions restart at 0.
  auto ids = torch::randint(0, config.vocab_size, {B, T});
  auto position_ids = torch::tensor({{0, 1, 2, 3, 0, 1, 2, 3, 4}, {0, 1, 0, 1, 2, 0, 1, 2, 3}}, torch::kLong);
  auto logits = model(ids, /*offset=*/0, /*key_padding_mask=*/torch::Tensor(), /*cache=*/nullptr, position_ids);
  ASSERT_EQ(logits.sizes(), (std::vector<int64_t>{B, T, config.vocab_size}));
  const std::vector<std::vector<std::pair<int64_t, int64_t>>> documents = {{{0, 4}, {4, 5}}, {{0, 2}, {2, 3}, {5, 4}}};
  for (int64_t b = 0; b < B; ++b) {
    for (const auto& [start, length] : documents[b]) {
      auto alone = model(ids.narrow(0, b, 1).narrow(1, start, length));  // (1, length, V)
      // Two layers of fp32 through differently shaped matrix products: rounding ~1e-7.
      EXPECT_TRUE(AllClose(logits.narrow(0, b, 1).narrow(1, start, length), alone, /*rtol=*/1e-5, /*atol=*/1e-5))
          << "row " << b << ", tokens " << start << ".." << start + length - 1
          << ": pass position_ids through every block, so no document sees another";
    }
  }
}

TEST_F(CausalLMTest, LossScoresEachPositionAgainstTheNextToken) {
  // V = 2, T = 3. logits row t predicts token t+1; the last row predicts nothing.
  //   position 0: logits (0, ln 3) -> p(token 1) = 3/4; the next token is 1 -> -ln(3/4) = 0.28768
  //   position 1: logits (0, 0)    -> p = 1/2;  next token 0  -> ln 2 = 0.69315
  // mean = 0.49041
  auto logits = torch::tensor({0.0f, std::log(3.0f), 0.0f, 0.0f, 5.0f, -5.0f}).view({1, 3, 2});
  auto labels = torch::tensor({{0, 1, 0}}, torch::kLong);
  EXPECT_NEAR(llm::causal_lm_loss(logits, labels).item<double>(), 0.49041, 1e-5);
}

TEST_F(KVCacheTest, DecodingWithTheCacheGivesTheFullForwardsLogits) {
  const auto config = TinyConfig();
  llm::CausalLM model(config);
  model->eval();
  torch::NoGradGuard no_grad;
  auto ids = torch::randint(0, config.vocab_size, {B, T});
  auto full = model(ids);  // (B, T, V)

  llm::KVCache cache(config, B, T);
  auto prefill = model(ids.narrow(1, 0, 4), /*offset=*/0, torch::Tensor(), &cache);  // positions 0..3 in one pass
  EXPECT_TRUE(AllClose(prefill, full.narrow(1, 0, 4), 1e-5, 1e-5)) << "prefill";
  for (int64_t t = 4; t < T; ++t) {  // then one token at a time
    auto step = model(ids.narrow(1, t, 1), /*offset=*/t, torch::Tensor(), &cache);
    EXPECT_TRUE(AllClose(step, full.narrow(1, t, 1), 1e-5, 1e-5)) << "position " << t;
  }
  EXPECT_EQ(cache.length(), T);
}

TEST_F(SamplingTest, GreedyPicksTheArgmax) {
  auto logits = torch::tensor({{0.1f, 2.0f, -1.0f, 1.9f}, {3.0f, 0.0f, 0.0f, 0.0f}});
  llm::SamplingOptions greedy;
  greedy.temperature = 0;
  auto next = llm::sample_next(logits, greedy);
  ASSERT_EQ(next.sizes(), (std::vector<int64_t>{2}));
  EXPECT_EQ(next[0].item<int64_t>(), 1);
  EXPECT_EQ(next[1].item<int64_t>(), 0);
}

TEST_F(SamplingTest, TopKNeverSamplesOutsideTheKBest) {
  auto logits = torch::tensor({1.0f, 0.5f, 3.0f, 2.9f, -1.0f, 2.8f}).repeat({4000, 1});  // best 3: ids 2, 3, 5
  llm::SamplingOptions options;
  options.top_k = 3;
  auto gen = lesson05::SeededGenerator(7);
  auto next = llm::sample_next(logits, options, {}, gen);
  auto allowed = (next == 2) | (next == 3) | (next == 5);
  EXPECT_TRUE(allowed.all().item<bool>()) << "a token outside the top 3 was sampled";
  for (int64_t id : {2, 3, 5}) EXPECT_GT((next == id).sum().item<int64_t>(), 800) << "id " << id << " is never drawn";
}

TEST_F(SamplingTest, TopPKeepsTheSmallestSetWhoseMassReachesP) {
  // probabilities 0.5, 0.3, 0.15, 0.05 (ids 0..3)
  auto logits = torch::tensor({0.5f, 0.3f, 0.15f, 0.05f}).log().view({1, 4});
  auto kept = [&](double p) { return torch::isfinite(llm::top_p_filter(logits, p)).sum().item<int64_t>(); };
  EXPECT_EQ(kept(0.4), 1) << "0.5 alone reaches 0.4";
  EXPECT_EQ(kept(0.79), 2) << "0.5 + 0.3 reaches 0.79";
  EXPECT_EQ(kept(0.81), 3) << "0.8 is not enough for 0.81";
  EXPECT_EQ(kept(1.0), 4);
  auto filtered = llm::top_p_filter(logits, 0.79);
  EXPECT_TRUE(AllClose(filtered.narrow(1, 0, 2), logits.narrow(1, 0, 2), 0, 0)) << "kept logits are unchanged";
}

TEST_F(SamplingTest, RepetitionPenaltyDividesPositiveAndMultipliesNegativeLogits) {
  auto logits = torch::tensor({{2.0f, -2.0f, 1.0f, -1.0f}});
  // ids 0 and 1 were seen: 2 / 2 = 1 and -2 * 2 = -4; ids 2 and 3 are untouched.
  auto out = llm::apply_repetition_penalty(logits, {{0, 1}}, 2.0);
  EXPECT_TRUE(AllClose(out, torch::tensor({{1.0f, -4.0f, 1.0f, -1.0f}}), 0, 0));
}

TEST_F(GenerateTest, GreedyGenerationIsDeterministicAndStopsAtAStopToken) {
  const auto config = TinyConfig();
  llm::CausalLM model(config);
  llm::GenerationConfig gen;
  gen.max_new_tokens = 12;
  gen.sampling.temperature = 0;
  const std::vector<std::vector<int64_t>> prompt = {{1, 2, 3, 4}};
  auto first = llm::generate(model, prompt, gen);
  auto second = llm::generate(model, prompt, gen);
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0].size(), 12u);
  EXPECT_EQ(first, second) << "greedy decoding must not depend on anything random";

  gen.stop_tokens = {first[0][3]};  // the 4th greedy token becomes a stop token
  auto stopped = llm::generate(model, prompt, gen);
  const auto stop_at = std::find(first[0].begin(), first[0].end(), first[0][3]) - first[0].begin();
  ASSERT_EQ(static_cast<int64_t>(stopped[0].size()), stop_at + 1) << "ends with the first stop token";
  EXPECT_EQ(stopped[0].back(), first[0][3]);
}

}  // namespace
