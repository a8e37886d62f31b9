// Lesson 12, advanced: bf16 and huge logits scored in fp32 with logsumexp, nothing counted giving
// infinity, shape errors that name the shapes; the joint encoding split after the context's own
// tokens and several trailing spaces; right padding that changes nothing, left truncation to
// max_position_embeddings + 1, eval mode restored to training; characters against bytes on UTF-8
// choices; gold indices and mismatched lists rejected; pass@k at n = 200 against exact binomials,
// monotone in k, and its range errors; Kaplan's 12 L C^2, tied and GQA counts, the attention term's
// growth in T; the T^2 activation term, the GELU MLP's 2 F, and the memory estimate's errors.
// Grade with:  ctest --preset default -R lesson12.advanced
#include "fixtures.h"

#include <llm/common/testing.h>
#include <llm/eval/flops.h>
#include <llm/eval/memory.h>
#include <llm/eval/multiple_choice.h>
#include <llm/eval/pass_at_k.h>
#include <llm/eval/perplexity.h>
#include <llm/model/causal_lm.h>

#include <cmath>
#include <limits>
#include <string>
#include <utility>
#include <vector>

namespace {

using lesson12::DirectLoglikelihood;
using lesson12::EvalTest;
using lesson12::kAr;
using lesson12::kIs;
using lesson12::kSpaceParis;
using lesson12::Longs;
using lesson12::ParisTokenizer;
using lesson12::RandomIds;
using lesson12::TinyConfig;
using llm::testing::ThrowsWith;
namespace F = torch::nn::functional;

class LossTotalsAdvanced : public EvalTest {};
class EncodePairAdvanced : public EvalTest {};
class ContinuationLoglikelihoodsAdvanced : public EvalTest {};
class PredictChoiceAdvanced : public EvalTest {};
class ScoreMultipleChoiceAdvanced : public EvalTest {};
class PassAtKAdvanced : public EvalTest {};
class FlopsAdvanced : public EvalTest {};
class MemoryAdvanced : public EvalTest {};

double TorchNatsSum(const torch::Tensor& logits, const torch::Tensor& targets) {
  return F::cross_entropy(logits.to(torch::kFloat64), targets, F::CrossEntropyFuncOptions().reduction(torch::kSum))
      .item<double>();
}

constexpr double kInf = std::numeric_limits<double>::infinity();

// --------------------------------------------------------------------------------- loss totals

TEST_F(LossTotalsAdvanced, Bf16LogitsAreScoredInFp32) {
  // The logits come out of a bf16 model; their values are exact in float64. A logsumexp in bf16
  // rounds every term to 3 significant digits (~0.05 nats per token here).
  auto logits = (8.0 * torch::randn({16, 64})).to(torch::kBFloat16);
  auto targets = torch::randint(0, 64, {16}, torch::kLong);
  const auto t = llm::loss_totals(logits, targets, torch::ones({64}, torch::kLong));
  const double expected = TorchNatsSum(logits, targets);
  EXPECT_NEAR(t.nats, expected, 1e-5 * std::abs(expected)) << "upcast to fp32 before logsumexp";
}

TEST_F(LossTotalsAdvanced, HugeLogitsNeedLogSumExpNotTheLogOfASoftmax) {
  // Logits of size 1e4: exp overflows fp32, and log(softmax) of a far-behind target is log(0).
  auto logits = 1e4 * torch::randn({6, 8});
  auto targets = Longs({0, 1, 2, 3, 4, 5});
  const auto t = llm::loss_totals(logits, targets, torch::ones({8}, torch::kLong));
  const double expected = TorchNatsSum(logits, targets);
  ASSERT_TRUE(std::isfinite(t.nats)) << "got " << t.nats;
  EXPECT_NEAR(t.nats, expected, 1e-5 * std::abs(expected));
}

TEST_F(LossTotalsAdvanced, NothingCountedGivesInfinityNotNaN) {
  // Only ignored targets and a special token: no nats, no tokens, no bytes; 0 / 0 would be NaN.
  auto token_bytes = Longs({1, 1, 0, 1});
  const auto t = llm::loss_totals(torch::randn({3, 4}), Longs({-100, 2, -100}), token_bytes);
  EXPECT_EQ(t.nats, 0.0);
  EXPECT_EQ(t.tokens, 0);
  EXPECT_EQ(t.bytes, 0);
  EXPECT_EQ(llm::bits_per_byte(t), kInf) << "nanochat: 0 bytes -> inf";
  EXPECT_EQ(llm::perplexity(t), kInf);
  EXPECT_EQ(llm::perplexity(llm::LossTotals{1e4, 1, 4}), kInf) << "exp(10000) overflows to inf, as run_clm reports";
}

TEST_F(LossTotalsAdvanced, RejectsMismatchedShapesNamingThem) {
  auto bytes8 = torch::ones({8}, torch::kLong);
  EXPECT_TRUE(ThrowsWith(
      [&] {
        llm::loss_totals(torch::randn({4, 8}), Longs({1, 2, 3}), bytes8);
      },
      {"[4, 8]", "[3]"}))
      << "4 rows of logits, 3 targets";
  EXPECT_TRUE(ThrowsWith(
      [&] {
        llm::loss_totals(torch::randn({2, 3, 8}), torch::zeros({6}, torch::kLong), bytes8);
      },
      {"[2, 3, 8]"}))
      << "logits must be flattened to (N, V) first";
  EXPECT_TRUE(ThrowsWith(
      [&] {
        llm::loss_totals(torch::randn({4, 8}), Longs({1, 2, 3, 4}), torch::ones({7}, torch::kLong));
      },
      {"[7]"}))
      << "token_bytes for 7 tokens, logits over 8";
}

// ------------------------------------------------------------------------------ encode_pair

TEST_F(EncodePairAdvanced, TheJointEncodingIsSplitAfterTheContextsOwnTokenCount) {
  // encode("Pa") = P a (2 tokens); encode("Paris") = P ar is. lm-evaluation-harness keeps the first
  // 2 tokens of the joint encoding as the context (P ar) and scores the rest (is), not
  // encode("ris") = r is.
  const auto& tok = ParisTokenizer();
  ASSERT_EQ(tok.encode("Pa"), (std::vector<llm::TokenId>{'P', 'a'}));
  const auto r = llm::encode_pair(tok, "Pa", "ris");
  EXPECT_EQ(r.context, (std::vector<llm::TokenId>{'P', kAr}));
  EXPECT_EQ(r.continuation, (std::vector<llm::TokenId>{kIs}));
}

TEST_F(EncodePairAdvanced, EveryTrailingSpaceMoves) {
  // "A:  " + "Paris": both spaces move. Jointly, GPT-2's pre-tokenizer cuts "  Paris" into " " and
  // " Paris" (a run of spaces leaves its last one to the word), so the continuation is 2 tokens.
  // Left in the context, "A:  " would encode as A : " " " " and swallow all of "A:  Paris"'s tokens
  // but " Paris"'s.
  const auto& tok = ParisTokenizer();
  const auto r = llm::encode_pair(tok, "A:  ", "Paris");
  EXPECT_EQ(r.context, (std::vector<llm::TokenId>{'A', ':'}));
  EXPECT_EQ(r.continuation, (std::vector<llm::TokenId>{' ', kSpaceParis}));
}

// ----------------------------------------------------------------------- continuation loglikelihoods

TEST_F(ContinuationLoglikelihoodsAdvanced, RightPaddingChangesNothing) {
  // A short request scored alone and next to one 5 times as long: right padding sits after every real
  // position, and a causal row never looks right, so nothing changes.
  llm::CausalLM model(TinyConfig());
  std::vector<llm::ContinuationRequest> requests = {{RandomIds(2, 32), RandomIds(1, 32)},
                                                    {RandomIds(12, 32), RandomIds(3, 32)},
                                                    {RandomIds(5, 32), RandomIds(2, 32)}};
  const auto alone = llm::continuation_loglikelihoods(model, requests, /*batch_size=*/1);
  const auto batched = llm::continuation_loglikelihoods(model, requests, /*batch_size=*/3);
  ASSERT_EQ(alone.size(), 3u);
  ASSERT_EQ(batched.size(), 3u);
  for (size_t i = 0; i < requests.size(); ++i) {
    EXPECT_NEAR(batched[i], alone[i], 1e-5) << "request " << i << ": padding must not leak into real positions";
    EXPECT_NEAR(alone[i], DirectLoglikelihood(model, requests[i].context, requests[i].continuation), 1e-4);
  }
}

TEST_F(ContinuationLoglikelihoodsAdvanced, LongRequestsKeepTheirLastMaxPositionsPlusOneTokens) {
  // max_position_embeddings 8: a request of 12 + 3 = 15 tokens keeps its last 9, the model reads 8 of
  // them. Its score equals that of the request with only the context's last 6 tokens, which fits.
  llm::CausalLM model(TinyConfig(32, /*max_positions=*/8));
  const auto context = RandomIds(12, 32), continuation = RandomIds(3, 32);
  const std::vector<llm::TokenId> last6(context.end() - 6, context.end());
  std::vector<llm::ContinuationRequest> requests = {
      {context, continuation}, {last6, continuation}, {RandomIds(2, 32), RandomIds(2, 32)}};
  const auto lls = llm::continuation_loglikelihoods(model, requests, /*batch_size=*/3);
  ASSERT_EQ(lls.size(), 3u);
  const double fits = DirectLoglikelihood(model, last6, continuation);
  EXPECT_NEAR(lls[0], fits, 1e-4) << "left truncation (lm-evaluation-harness keeps the end, next to the answer)";
  EXPECT_NEAR(lls[1], fits, 1e-4) << "exactly max_position_embeddings + 1 tokens: nothing cut";
  EXPECT_NEAR(lls[2], DirectLoglikelihood(model, requests[2].context, requests[2].continuation), 1e-4);
}

TEST_F(ContinuationLoglikelihoodsAdvanced, ScoresInEvalModeAndRestoresTrainingMode) {
  // With dropout 0.5 a score in training mode is random; evaluation runs in eval() and hands the
  // model back as it found it.
  auto config = TinyConfig();
  config.dropout = 0.5;
  llm::CausalLM model(config);
  std::vector<llm::ContinuationRequest> requests = {{RandomIds(6, 32), RandomIds(3, 32)},
                                                    {RandomIds(3, 32), RandomIds(4, 32)}};
  model->train();
  const auto lls = llm::continuation_loglikelihoods(model, requests);
  EXPECT_TRUE(model->is_training()) << "the caller's mode is restored";
  model->eval();
  ASSERT_EQ(lls.size(), 2u);
  for (size_t i = 0; i < requests.size(); ++i)
    EXPECT_NEAR(lls[i], DirectLoglikelihood(model, requests[i].context, requests[i].continuation), 1e-4)
        << "request " << i << " without dropout";
}

TEST_F(ContinuationLoglikelihoodsAdvanced, RejectsAnEmptyContinuationOrContextAndABadBatchSize) {
  llm::CausalLM model(TinyConfig());
  const llm::ContinuationRequest good{{5, 6, 7}, {8}};
  const auto ll = llm::continuation_loglikelihoods(model, {good});
  ASSERT_EQ(ll.size(), 1u);
  ASSERT_NEAR(ll[0], DirectLoglikelihood(model, good.context, good.continuation), 1e-4);
  const llm::ContinuationRequest no_continuation{{5, 6}, {}}, no_context{{}, {8, 9}};
  EXPECT_TRUE(ThrowsWith(
      [&] {
        llm::continuation_loglikelihoods(model, {good, no_continuation});
      },
      {"non-empty continuation"}));
  EXPECT_TRUE(ThrowsWith([&] { llm::continuation_loglikelihoods(model, {no_context}); }, {"context"}))
      << "the first continuation token needs something before it";
  EXPECT_TRUE(
      ThrowsWith([&] { llm::continuation_loglikelihoods(model, {good}, /*batch_size=*/0); }, {"batch_size", "got 0"}));
}

// ------------------------------------------------------------------------------ predict_choice

TEST_F(PredictChoiceAdvanced, CharactersAndBytesDisagreeOnUtf8Choices) {
  // "é" is 1 character and 2 bytes; "ab" is 2 of each. lls -1.5 and -2.5:
  //   per character -1.5 and -1.25 -> "ab";  per byte -0.75 and -1.25 -> "é".
  const auto p = llm::predict_choice({-1.5, -2.5}, {"\xC3\xA9", "ab"});
  EXPECT_EQ(p.acc, 0);
  EXPECT_EQ(p.acc_norm, 1) << "lm-evaluation-harness' code: len(str) counts characters (code points)";
  EXPECT_EQ(p.acc_bytes, 0) << "its paper: len in UTF-8 bytes";
  // "café" (4 characters, 5 bytes) against "cafe!" (5 and 5), lls -4.2 and -5.0:
  //   per character -1.05 and -1.0 -> "cafe!";  per byte -0.84 and -1.0 -> "café".
  const auto q = llm::predict_choice({-4.2, -5.0}, {"caf\xC3\xA9", "cafe!"});
  EXPECT_EQ(q.acc_norm, 1);
  EXPECT_EQ(q.acc_bytes, 0);
}

// ------------------------------------------------------------------------ score_multiple_choice

TEST_F(ScoreMultipleChoiceAdvanced, RejectsAGoldOutsideTheChoicesAndMismatchedLists) {
  const auto& tok = ParisTokenizer();
  llm::CausalLM model(TinyConfig(tok.vocab_size()));
  const llm::MultipleChoiceItem good{"A:", {"Paris", "Rome"}, 0};
  const auto ok = llm::score_multiple_choice(model, tok, {good});
  ASSERT_EQ(ok.n, 1);
  // The second item's gold is checked after the first item has been encoded.
  EXPECT_TRUE(ThrowsWith(
      [&] {
        llm::score_multiple_choice(model, tok, {good, {"B:", {"x", "y"}, 3}});
      },
      {"gold 3", "2 choices", "B:"}));
  EXPECT_TRUE(ThrowsWith(
      [&] {
        llm::score_multiple_choice(model, tok, {good, {"C:", {"x", "y"}, -1}});
      },
      {"gold -1", "2 choices"}));
  ASSERT_EQ(llm::predict_choice({-1.0, -2.0}, {"a", "b"}).acc, 0);
  EXPECT_TRUE(ThrowsWith([&] { llm::predict_choice({-1.0, -2.0}, {"a"}); }, {"2 log-likelihoods", "1 choices"}));
}

// ------------------------------------------------------------------------------------ pass@k

// C(n - c, k) / C(n, k) from log-gamma: exact binomials, no product formula.
double NoneCorrect(int64_t n, int64_t c, int64_t k) {
  auto log_choose = [](int64_t a, int64_t b) {
    return std::lgamma(a + 1.0) - std::lgamma(b + 1.0) - std::lgamma(a - b + 1.0);
  };
  if (n - c < k) return 0.0;
  return std::exp(log_choose(n - c, k) - log_choose(n, k));
}

TEST_F(PassAtKAdvanced, LargeNMatchesExactBinomialsAndGrowsWithK) {
  for (int64_t k : {1, 10, 50, 100, 150, 190, 191, 200})
    for (int64_t c : {0, 1, 10, 100, 199, 200})
      EXPECT_NEAR(llm::pass_at_k(200, c, k), 1.0 - NoneCorrect(200, c, k), 1e-9) << "n 200, c " << c << ", k " << k;
  for (int64_t c = 0; c <= 20; ++c) {
    EXPECT_NEAR(llm::pass_at_k(20, c, 1), c / 20.0, 1e-12) << "pass@1 = c / n";
    for (int64_t k = 1; k < 20; ++k)
      EXPECT_LE(llm::pass_at_k(20, c, k), llm::pass_at_k(20, c, k + 1) + 1e-15)
          << "one more try never hurts: c " << c << ", k " << k;
  }
}

TEST_F(PassAtKAdvanced, RejectsKOutsideOneToNAndCAboveN) {
  ASSERT_NEAR(llm::pass_at_k(5, 2, 5), 1.0, 1e-12);
  EXPECT_TRUE(ThrowsWith([] { llm::pass_at_k(5, 2, 6); }, {"[1, 5]", "got 6"})) << "6 draws from 5 samples";
  EXPECT_TRUE(ThrowsWith([] { llm::pass_at_k(5, 2, 0); }, {"[1, 5]", "got 0"}));
  EXPECT_TRUE(ThrowsWith([] { llm::pass_at_k(5, 6, 1); }, {"n = 5", "c = 6"})) << "more correct than sampled";
  EXPECT_TRUE(ThrowsWith([] { llm::mean_pass_at_k({}, 1); }, {"no problems"}));
}

// ------------------------------------------------------------------------------------- FLOPs

TEST_F(FlopsAdvanced, GeluMhaIsKaplans12LC2PlusTheHeadAndGqaSavesKeysAndValues) {
  // GPT-2's block (H = Hkv, MLP 4 C, two matrices): 4 C^2 + 8 C^2 per layer, Kaplan's N = 12 L C^2;
  // plus lm_head's V C. C 64, L 3, V 100: 147456 + 6400.
  llm::ModelConfig gpt;
  gpt.vocab_size = 100;
  gpt.hidden_size = 64;
  gpt.num_hidden_layers = 3;
  gpt.num_attention_heads = 4;
  gpt.num_key_value_heads = 4;
  gpt.mlp_type = "gelu";
  gpt.intermediate_size = 256;
  EXPECT_EQ(llm::matmul_parameters(gpt), 12 * 3 * 64 * 64 + 100 * 64);
  // Tied: the parameter count loses lm_head, the matmul count does not (nanochat's num_matmul_params
  // counts Linear weights; the tied embedding still does the output matmul).
  auto tied = gpt;
  tied.tie_word_embeddings = true;
  EXPECT_EQ(llm::matmul_parameters(tied), 12 * 3 * 64 * 64 + 100 * 64);
  EXPECT_EQ(llm::matmul_parameters(tied), tied.num_parameters() - 3 * 2 * 64 - 64) << "everything but the norms";
  // MQA on the tiny config: k and v shrink from 16 x 8 to 16 x 4 each, 128 fewer per layer.
  auto mqa = TinyConfig();
  mqa.num_key_value_heads = 1;
  EXPECT_EQ(llm::matmul_parameters(mqa), 6656 - 2 * 128);
  EXPECT_DOUBLE_EQ(llm::training_flops_per_token(mqa, 8), 6.0 * 6400 + 12.0 * 2 * 4 * 4 * 8)
      << "the attention term counts query heads: GQA shares keys and values, not the score matmuls";
}

TEST_F(FlopsAdvanced, TheAttentionTermGrowsLinearlyWithTAndBadInputsAreRejected) {
  const auto config = TinyConfig();
  const double six_n = 6.0 * 6656;
  EXPECT_DOUBLE_EQ(llm::training_flops_per_token(config, 1024) - six_n, 12.0 * 2 * 4 * 4 * 1024)
      << "12 L H D T: the full T x T scores (PaLM, nanochat), not the causal half";
  EXPECT_DOUBLE_EQ(llm::training_flops_per_token(config, 2048) - llm::training_flops_per_token(config, 1024),
                   12.0 * 2 * 4 * 4 * 1024);
  EXPECT_DOUBLE_EQ(llm::forward_flops_per_token(config, 100), 2.0 * 6656 + 4.0 * 2 * 4 * 4 * 100)
      << "a generated token attends to the 100 visible ones";
  EXPECT_TRUE(ThrowsWith([&] { llm::training_flops_per_token(config, 0); }, {"seq_len", "positive", "got 0"}));
  EXPECT_TRUE(ThrowsWith([&] { llm::model_flops_utilisation(six_n, 100.0, 0.0); }, {"peak_flops", "positive"}));
}

// ------------------------------------------------------------------------------------ memory

TEST_F(MemoryAdvanced, TheSoftmaxMakesActivationsQuadraticInT) {
  // Per token and layer H T floats of softmax output, so per sequence H T^2: with everything else
  // linear in T, A(3T) - 2 A(2T) + A(T) = 4 bytes * B * L * H * 2 T^2 = 4 * 1 * 2 * 4 * 2 * 64 at T = 8.
  const auto config = TinyConfig();
  EXPECT_EQ(llm::activation_floats_per_layer(config, 16) - llm::activation_floats_per_layer(config, 8), 4 * 8)
      << "H more floats per token for every extra position";
  auto A = [&](int64_t T) { return llm::estimate_training_memory(config, /*batch=*/1, T).activations; };
  EXPECT_EQ(A(24) - 2 * A(16) + A(8), 4 * 1 * 2 * 4 * 2 * 8 * 8);
  EXPECT_EQ(llm::estimate_training_memory(config, 3, 8).activations, 3 * A(8)) << "linear in the batch";
}

TEST_F(MemoryAdvanced, TheGeluMlpSavesTwoFAndTiedWeightsAreCountedOnce) {
  // Plain GELU MLP: up's output and gelu's output, 2 F, where SwiGLU keeps gate, silu(gate), up and
  // the product, 4 F. C 16, Hkv 2, D 4, H 4, F 64 at T = 8: 128 + 16 + 32 + 128 = 304.
  auto gelu = TinyConfig();
  gelu.mlp_type = "gelu";
  gelu.intermediate_size = 64;
  EXPECT_EQ(llm::activation_floats_per_layer(gelu, 8), 304);
  // Tied: 7248 - lm_head's 512 parameters, weights + gradients + optimizer 16 bytes each.
  auto tied = TinyConfig();
  tied.tie_word_embeddings = true;
  const auto m = llm::estimate_training_memory(tied, 1, 8);
  EXPECT_EQ(m.weights + m.gradients + m.optimizer, 16 * (7248 - 512));
}

TEST_F(MemoryAdvanced, RejectsAnEmptyBatchOrSequenceNamingBoth) {
  const auto config = TinyConfig();
  ASSERT_EQ(llm::estimate_training_memory(config, 2, 8).activations, 54272);
  EXPECT_TRUE(ThrowsWith([&] { llm::estimate_training_memory(config, 0, 8); }, {"batch", "seq_len", "0 and 8"}));
  EXPECT_TRUE(ThrowsWith([&] { llm::estimate_training_memory(config, 2, 0); }, {"2 and 0"}));
}

}  // namespace
