// Lesson 05, advanced: the cache under GQA and tied weights, batched prompts of different lengths,
// sampling statistics, min/max new tokens, initialization, and clear errors.
// Grade with:  ctest --preset default -R lesson05.advanced
#include "lm_fixtures.h"

#include <llm/common/testing.h>
#include <llm/generate/generate.h>
#include <llm/generate/sampling.h>
#include <llm/model/causal_lm.h>
#include <llm/model/kv_cache.h>

#include <cmath>

namespace {

using lesson05::LmTest;
using lesson05::SeededGenerator;
using lesson05::TinyConfig;
using llm::testing::AllClose;
using llm::testing::ThrowsWith;
using Tokens = std::vector<std::vector<int64_t>>;

class CausalLMAdvanced : public LmTest {};
class KVCacheAdvanced : public LmTest {};
class SamplingAdvanced : public LmTest {};
class GenerateAdvanced : public LmTest {};

llm::GenerationConfig Greedy(int64_t max_new_tokens) {
  llm::GenerationConfig gen;
  gen.max_new_tokens = max_new_tokens;
  gen.sampling.temperature = 0;
  return gen;
}

// ------------------------------------------------------------------------------------------ model

TEST_F(CausalLMAdvanced, InitialisationScalesTheResidualProjections) {
  auto config = TinyConfig();
  config.hidden_size = 64, config.num_hidden_layers = 4, config.num_attention_heads = 4, config.num_key_value_heads = 4;
  llm::CausalLM model(config);
  auto p = model->named_parameters();
  // o_proj and down_proj: 0.02 / sqrt(2 L) = 0.00707; everything else 0.02; norms exactly 1.
  // Each tensor has >= 4096 entries: the sample std is within 5% of the true one.
  const double residual = 0.02 / std::sqrt(8.0);
  EXPECT_NEAR(p["model.layers.2.self_attn.o_proj.weight"].std().item<double>(), residual, 0.05 * residual);
  EXPECT_NEAR(p["model.layers.3.mlp.down_proj.weight"].std().item<double>(), residual, 0.05 * residual);
  EXPECT_NEAR(p["model.layers.1.self_attn.q_proj.weight"].std().item<double>(), 0.02, 0.001);
  EXPECT_NEAR(p["model.layers.0.mlp.gate_proj.weight"].std().item<double>(), 0.02, 0.001);
  EXPECT_NEAR(p["model.embed_tokens.weight"].std().item<double>(), 0.02, 0.001);
  EXPECT_NEAR(p["lm_head.weight"].std().item<double>(), 0.02, 0.001);
  EXPECT_TRUE(AllClose(p["model.layers.0.input_layernorm.weight"], torch::ones({64}), 0, 0));
  EXPECT_TRUE(AllClose(p["model.norm.weight"], torch::ones({64}), 0, 0));
}

TEST_F(CausalLMAdvanced, TiedEmbeddingsReadAndWriteWithOneMatrix) {
  auto config = TinyConfig();
  config.tie_word_embeddings = true;
  llm::CausalLM model(config);
  EXPECT_EQ(model->named_parameters().find("lm_head.weight"), nullptr) << "no separate output matrix";
  auto ids = torch::randint(0, config.vocab_size, {1, 6});
  auto logits = model(ids);
  auto expected = torch::matmul(model->model(ids), model->model->embed_tokens->weight.t());
  EXPECT_TRUE(AllClose(logits, expected, 1e-5, 1e-6)) << "logits = h @ embed_tokens.weight^T";
  llm::causal_lm_loss(logits, ids).backward();
  EXPECT_GT(model->model->embed_tokens->weight.grad().abs().sum().item<double>(), 0);
}

TEST_F(CausalLMAdvanced, GradientsReachEveryParameter) {
  const auto config = TinyConfig();
  llm::CausalLM model(config);
  auto ids = torch::randint(0, config.vocab_size, {2, 12});
  llm::causal_lm_loss(model(ids), ids).backward();
  for (const auto& item : model->named_parameters()) {
    ASSERT_TRUE(item.value().grad().defined()) << item.key() << " got no gradient";
    EXPECT_GT(item.value().grad().abs().sum().item<double>(), 0) << item.key() << " got a zero gradient";
  }
}

TEST_F(CausalLMAdvanced, IgnoredLabelsDoNotCount) {
  auto logits = torch::randn({2, 5, 7});
  auto labels = torch::randint(0, 7, {2, 5});
  auto masked = labels.clone();
  masked[0][2] = llm::kIgnoreIndex;  // position 1 of row 0 predicts nothing
  masked[1][4] = llm::kIgnoreIndex;  // position 3 of row 1 predicts nothing
  // Reference: the mean of -log softmax over the 6 positions that count.
  auto logp = torch::log_softmax(logits.to(torch::kFloat64), -1);
  double sum = 0;
  int count = 0;
  for (int b = 0; b < 2; ++b) {
    for (int t = 0; t < 4; ++t) {
      if (masked[b][t + 1].item<int64_t>() == llm::kIgnoreIndex) continue;
      sum -= logp[b][t][labels[b][t + 1].item<int64_t>()].item<double>();
      ++count;
    }
  }
  EXPECT_NEAR(llm::causal_lm_loss(logits, masked).item<double>(), sum / count, 1e-5);
}

TEST_F(CausalLMAdvanced, SequencesLongerThanTheModelAreRejected) {
  const auto config = TinyConfig();  // max_position_embeddings 64
  llm::CausalLM model(config);
  EXPECT_TRUE(ThrowsWith([&] { model(torch::zeros({1, 65}, torch::kLong)); }, {"64", "max_position_embeddings"}));
  EXPECT_TRUE(ThrowsWith(
      [&] {
        model(torch::zeros({1, 5}, torch::kLong), /*offset=*/60);
      },
      {"64", "max_position_embeddings"}));
}

TEST_F(CausalLMAdvanced, PositionIdsWithAKvCacheAreAClearError) {
  // Packed rows are for training; decoding takes its positions from the cache.
  const auto config = TinyConfig();
  llm::CausalLM model(config);
  torch::NoGradGuard no_grad;
  llm::KVCache cache(config, 1, 8);
  auto position_ids = torch::tensor({{0, 1, 0, 1}}, torch::kLong);
  EXPECT_TRUE(ThrowsWith(
      [&] {
        model(torch::zeros({1, 4}, torch::kLong), /*offset=*/0, torch::Tensor(), &cache, position_ids);
      },
      {"position_ids", "cache"}));
}

// -------------------------------------------------------------------------------------- KV cache

TEST_F(KVCacheAdvanced, MatchesFullForwardWithTiedWeightsAndMultiQueryAttention) {
  auto config = TinyConfig();
  config.num_key_value_heads = 1;
  config.tie_word_embeddings = true;
  llm::CausalLM model(config);
  model->eval();
  torch::NoGradGuard no_grad;
  auto ids = torch::randint(0, config.vocab_size, {3, 20});
  auto full = model(ids);
  llm::KVCache cache(config, 3, 20);
  // Chunks of uneven sizes: 7 tokens, then 1, then 5, then 7.
  int64_t t = 0;
  for (int64_t n : {7, 1, 5, 7}) {
    auto part = model(ids.narrow(1, t, n), t, torch::Tensor(), &cache);
    EXPECT_TRUE(AllClose(part, full.narrow(1, t, n), 1e-5, 1e-5)) << "positions " << t << ".." << t + n - 1;
    t += n;
  }
}

TEST_F(KVCacheAdvanced, AnOffsetThatDoesNotContinueTheCacheIsAClearError) {
  const auto config = TinyConfig();
  llm::CausalLM model(config);
  torch::NoGradGuard no_grad;
  llm::KVCache cache(config, 1, 16);
  model(torch::zeros({1, 5}, torch::kLong), 0, torch::Tensor(), &cache);
  // The next token sits at position 5; offset 3 would silently rotate it as if it were at 3.
  EXPECT_TRUE(ThrowsWith(
      [&] {
        model(torch::zeros({1, 1}, torch::kLong), 3, torch::Tensor(), &cache);
      },
      {"offset 3", "5 positions"}));
}

TEST_F(KVCacheAdvanced, AppendsInPlaceIntoPreallocatedBuffers) {
  llm::KVCacheLayer layer(/*batch=*/2, /*kv_heads=*/2, /*max_len=*/10, /*head_dim=*/4, torch::dtype(torch::kFloat32));
  auto k1 = torch::randn({2, 2, 3, 4}), v1 = torch::randn({2, 2, 3, 4});
  auto [k_all, v_all] = layer.append(k1, v1);
  ASSERT_EQ(k_all.sizes(), (std::vector<int64_t>{2, 2, 3, 4}));
  auto k2 = torch::randn({2, 2, 1, 4}), v2 = torch::randn({2, 2, 1, 4});
  auto [k_all2, v_all2] = layer.append(k2, v2);
  ASSERT_EQ(k_all2.sizes(), (std::vector<int64_t>{2, 2, 4, 4}));
  EXPECT_EQ(k_all2.data_ptr(), k_all.data_ptr()) << "the same storage: nothing was reallocated or copied";
  EXPECT_TRUE(AllClose(k_all2.narrow(2, 0, 3), k1, 0, 0));
  EXPECT_TRUE(AllClose(v_all2.narrow(2, 3, 1), v2, 0, 0));
  EXPECT_EQ(layer.length(), 4);
}

TEST_F(KVCacheAdvanced, OverflowIsAClearError) {
  llm::KVCacheLayer layer(1, 2, /*max_len=*/12, 4, torch::dtype(torch::kFloat32));
  layer.append(torch::randn({1, 2, 10, 4}), torch::randn({1, 2, 10, 4}));
  EXPECT_TRUE(ThrowsWith(
      [&] {
        layer.append(torch::randn({1, 2, 4, 4}), torch::randn({1, 2, 4, 4}));
      },
      {"10 positions cached", "4 new", "max_len 12"}));
  EXPECT_TRUE(ThrowsWith(
      [&] {
        layer.append(torch::randn({1, 3, 1, 4}), torch::randn({1, 3, 1, 4}));
      },
      {"[1, 3, 1, 4]"}));
}

// ------------------------------------------------------------------------------------- sampling

TEST_F(SamplingAdvanced, SampledFrequenciesMatchTheSoftmax) {
  auto logits = torch::tensor({1.0f, 0.0f, -1.0f, 2.0f, 0.5f});
  const int64_t N = 20000;
  auto next = llm::sample_next(logits.repeat({N, 1}), llm::SamplingOptions{}, {}, SeededGenerator(11));
  auto p = torch::softmax(logits.to(torch::kFloat64), 0);
  for (int64_t v = 0; v < 5; ++v) {
    const double expected = N * p[v].item<double>();
    const double sigma = std::sqrt(N * p[v].item<double>() * (1 - p[v].item<double>()));
    // 5 standard deviations: a correct sampler lands outside with probability ~6e-7 per token.
    EXPECT_NEAR((next == v).sum().item<double>(), expected, 5 * sigma) << "token " << v;
  }
}

TEST_F(SamplingAdvanced, TemperatureChangesTheDistributionAsTheFormulaSays) {
  auto logits = torch::tensor({1.0f, 0.0f});
  const int64_t N = 20000;
  llm::SamplingOptions options;
  options.temperature = 0.5;  // p(0) = e^2 / (e^2 + 1) = 0.8808
  auto next = llm::sample_next(logits.repeat({N, 1}), options, {}, SeededGenerator(3));
  const double p0 = std::exp(2.0) / (std::exp(2.0) + 1), sigma = std::sqrt(N * p0 * (1 - p0));
  EXPECT_NEAR((next == 0).sum().item<double>(), N * p0, 5 * sigma);
}

TEST_F(SamplingAdvanced, NearZeroTemperatureEqualsGreedy) {
  auto logits = torch::randn({64, 50});
  llm::SamplingOptions cold, greedy;
  cold.temperature = 1e-6;
  greedy.temperature = 0;
  auto a = llm::sample_next(logits, cold, {}, SeededGenerator(5));
  EXPECT_TRUE(torch::equal(a, llm::sample_next(logits, greedy))) << "T -> 0 concentrates all mass on the argmax";
}

TEST_F(SamplingAdvanced, ASeededGeneratorReproducesTheSample) {
  auto logits = torch::randn({16, 30});
  llm::SamplingOptions options;
  options.top_p = 0.9;
  auto a = llm::sample_next(logits, options, {}, SeededGenerator(42));
  auto b = llm::sample_next(logits, options, {}, SeededGenerator(42));
  EXPECT_TRUE(torch::equal(a, b));
}

TEST_F(SamplingAdvanced, RepeatedTokensArePenalisedOnceAndOtherRowsAreUntouched) {
  auto logits = torch::tensor({{3.0f, -3.0f, 1.0f}, {3.0f, -3.0f, 1.0f}});
  auto out = llm::apply_repetition_penalty(logits, {{0, 0, 0, 1}, {}}, 1.5);
  EXPECT_TRUE(AllClose(out[0], torch::tensor({2.0f, -4.5f, 1.0f}), 1e-6, 1e-6)) << "3 / 1.5 once, not three times";
  EXPECT_TRUE(AllClose(out[1], logits[1], 0, 0));
}

TEST_F(SamplingAdvanced, TopKIsAppliedBeforeTopP) {
  // Probabilities 0.4, 0.3, 0.2, 0.1 with top_k = 2 and top_p = 0.5. Hugging Face's order, top-k
  // first: ids 0 and 1 stay, renormalised to 0.571 and 0.429; then id 0 alone reaches 0.5, so top-p
  // keeps only id 0 and every draw is 0. Top-p first would keep ids 0 and 1 (0.4 < 0.5 needs the
  // 0.3 as well), top-k would keep both, and id 1 would come up 43% of the time.
  auto logits = torch::tensor({0.4f, 0.3f, 0.2f, 0.1f}).log().repeat({2000, 1});
  llm::SamplingOptions options;
  options.top_k = 2;
  options.top_p = 0.5;
  auto next = llm::sample_next(logits, options, {}, SeededGenerator(13));
  ASSERT_EQ(next.sizes(), (std::vector<int64_t>{2000}));
  EXPECT_EQ((next != 0).sum().item<int64_t>(), 0) << "top-p must see the top-k survivors' renormalised mass";
  options.top_p = 1.0;  // top-k alone: id 1 is drawn ~857 times (so 2000 draws would have shown a leak)
  EXPECT_GT((llm::sample_next(logits, options, {}, SeededGenerator(13)) == 1).sum().item<int64_t>(), 700);
}

TEST_F(SamplingAdvanced, TopKAndTopPRejectInvalidSettings) {
  auto logits = torch::randn({1, 5});
  EXPECT_TRUE(ThrowsWith([&] { llm::top_k_filter(logits, 0); }, {"top_k", "0"}));
  EXPECT_TRUE(ThrowsWith([&] { llm::top_p_filter(logits, 1.5); }, {"top_p", "1.5"}));
  llm::SamplingOptions too_wide;
  too_wide.top_p = 1.5;  // must not silently mean "off"
  EXPECT_TRUE(ThrowsWith([&] { llm::sample_next(logits, too_wide); }, {"top_p", "1.5"}));
  EXPECT_TRUE(ThrowsWith([&] { llm::apply_temperature(logits, -1.0); }, {"temperature", "-1"}));
}

// ----------------------------------------------------------------------------------- generation

TEST_F(GenerateAdvanced, TheCacheChangesTheSpeedNotTheTokens) {
  const auto config = TinyConfig();
  llm::CausalLM model(config);
  auto gen = Greedy(20);
  const Tokens prompts = {{5, 6, 7}};
  auto with_cache = llm::generate(model, prompts, gen);
  gen.use_cache = false;
  EXPECT_EQ(llm::generate(model, prompts, gen), with_cache);
}

TEST_F(GenerateAdvanced, BatchedPromptsOfDifferentLengthsMatchOneAtATime) {
  const auto config = TinyConfig();
  llm::CausalLM model(config);
  const auto gen = Greedy(10);
  const Tokens prompts = {{3}, {10, 11, 12, 13, 14, 15}, {20, 21, 22}};
  auto batched = llm::generate(model, prompts, gen);
  for (size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_EQ(batched[i], llm::generate(model, {prompts[i]}, gen)[0])
        << "prompt " << i << ": left padding and the padding mask must make batching invisible";
  }
}

TEST_F(GenerateAdvanced, MinNewTokensHoldsBackStopTokens) {
  const auto config = TinyConfig();
  llm::CausalLM model(config);
  auto gen = Greedy(8);
  const Tokens prompt = {{1, 2}};
  const int64_t first = llm::generate(model, prompt, gen)[0][0];
  gen.stop_tokens = {first};
  EXPECT_EQ(llm::generate(model, prompt, gen)[0], (std::vector<int64_t>{first})) << "stops right away";
  gen.min_new_tokens = 3;
  auto held = llm::generate(model, prompt, gen)[0];
  ASSERT_GE(held.size(), 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_NE(held[i], first) << "a stop token among the first min_new_tokens = 3";
}

TEST_F(GenerateAdvanced, MinNewTokensSuppressesTheStopTokenForExactlyThatManySteps) {
  // A model whose greedy choice is known: every block adds 0 (all its weights are 0), every token
  // embeds to ones, the final norm keeps ones, and lm_head row v is -0.01 v, so the logits are
  // -0.32 v: strictly decreasing, no ties. Greedy picks id 0, and id 1 while 0 is held back.
  const auto config = TinyConfig();
  llm::CausalLM model(config);
  {
    torch::NoGradGuard no_grad;
    for (auto& p : model->parameters()) p.zero_();
    model->model->embed_tokens->weight.fill_(1.0);
    model->model->norm->weight.fill_(1.0);
    model->lm_head->weight.copy_(
        -0.01 *
        torch::arange(config.vocab_size, torch::kFloat32).unsqueeze(1).expand({config.vocab_size, config.hidden_size}));
  }
  auto gen = Greedy(8);
  gen.stop_tokens = {0};
  const Tokens prompt = {{5, 6, 7}};
  for (int64_t min_new : {0, 1, 3}) {
    gen.min_new_tokens = min_new;
    std::vector<int64_t> expected(static_cast<size_t>(min_new), 1);  // id 1 while the stop token is held back
    expected.push_back(0);                                           // then the stop token, at step min_new
    EXPECT_EQ(llm::generate(model, prompt, gen)[0], expected)
        << "min_new_tokens = " << min_new << ": the stop token is held back before step " << min_new
        << " and allowed from that step on";
  }
}

TEST_F(GenerateAdvanced, GenerationSwitchesDropoutOff) {
  auto config = TinyConfig();
  config.dropout = 0.5;  // in training mode every forward pass would drop differently
  llm::CausalLM model(config);
  model->train();
  const Tokens prompt = {{1, 2, 3}};
  auto first = llm::generate(model, prompt, Greedy(10));
  EXPECT_EQ(llm::generate(model, prompt, Greedy(10)), first) << "generate() must run the model in eval mode";
  model->eval();
  EXPECT_EQ(llm::generate(model, prompt, Greedy(10)), first);
}

TEST_F(GenerateAdvanced, SamplingWithAGivenSeedIsReproducible) {
  const auto config = TinyConfig();
  llm::CausalLM model(config);
  llm::GenerationConfig gen;
  gen.max_new_tokens = 15;
  gen.sampling.temperature = 1.2;
  gen.sampling.top_k = 20;
  gen.sampling.repetition_penalty = 1.3;
  const Tokens prompts = {{1, 2, 3}, {4}};
  EXPECT_EQ(llm::generate(model, prompts, gen, SeededGenerator(9)),
            llm::generate(model, prompts, gen, SeededGenerator(9)));
}

TEST_F(GenerateAdvanced, RestoresTrainingModeAndRejectsInvalidRequests) {
  const auto config = TinyConfig();  // max_position_embeddings 64
  llm::CausalLM model(config);
  model->train();
  llm::generate(model, {{1, 2}}, Greedy(2));
  EXPECT_TRUE(model->is_training()) << "generate() must leave the model as it found it";
  EXPECT_TRUE(ThrowsWith([&] { llm::generate(model, {{1, 2, 3, 4}}, Greedy(61)); }, {"4", "61", "64"}));
  EXPECT_TRUE(ThrowsWith([&] { llm::generate(model, {{}}, Greedy(2)); }, {"prompt 0", "empty"}));
  auto bad = Greedy(2);
  bad.min_new_tokens = 3;
  EXPECT_TRUE(ThrowsWith([&] { llm::generate(model, {{1}}, bad); }, {"min_new_tokens", "3", "2"}));
  auto bad_stop = Greedy(2);
  bad_stop.stop_tokens = {64};
  EXPECT_TRUE(ThrowsWith([&] { llm::generate(model, {{1}}, bad_stop); }, {"stop token id 64", "0..63"}));
  EXPECT_TRUE(ThrowsWith([&] { llm::generate(model, {{1, 99}}, Greedy(2)); }, {"prompt token id 99"}));
}

}  // namespace
