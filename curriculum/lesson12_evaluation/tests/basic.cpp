// Lesson 12, basic: the nats, tokens and bytes of held-out targets against torch's cross_entropy,
// with ignored targets and special tokens left out of every sum; bits per byte on nanochat's
// docstring golden and summed over the corpus; perplexity as exp of the mean NLL; lm-evaluation-harness'
// _encode_pair (" Paris" stays one token); continuation log-likelihoods equal to one unbatched
// forward per request; acc against acc_norm and the first-wins tie rule; a whole multiple-choice
// score; pass@k's goldens and a brute-force count of k-subsets; the matmul parameters of a real
// CausalLM, 6 N + 12 L H D T worked by hand, and the training-memory table on a small config.
// Grade with:  ctest --preset default -R lesson12.basic
#include "fixtures.h"

#include <llm/common/testing.h>
#include <llm/eval/flops.h>
#include <llm/eval/memory.h>
#include <llm/eval/multiple_choice.h>
#include <llm/eval/pass_at_k.h>
#include <llm/eval/perplexity.h>
#include <llm/model/causal_lm.h>

#include <cmath>
#include <string>
#include <utility>
#include <vector>

namespace {

using lesson12::DirectLoglikelihood;
using lesson12::EvalTest;
using lesson12::kAr;
using lesson12::kEndOfText;
using lesson12::kIs;
using lesson12::kSpaceParis;
using lesson12::Longs;
using lesson12::ParisTokenizer;
using lesson12::RandomIds;
using lesson12::TinyConfig;
namespace F = torch::nn::functional;

class LossTotalsTest : public EvalTest {};
class BitsPerByteTest : public EvalTest {};
class PerplexityTest : public EvalTest {};
class EncodePairTest : public EvalTest {};
class ContinuationLoglikelihoodsTest : public EvalTest {};
class PredictChoiceTest : public EvalTest {};
class ScoreMultipleChoiceTest : public EvalTest {};
class PassAtKTest : public EvalTest {};
class FlopsTest : public EvalTest {};
class MemoryTest : public EvalTest {};

// torch's own cross entropy, summed, in float64: the independent reference for the nats.
double TorchNatsSum(const torch::Tensor& logits, const torch::Tensor& targets) {
  return F::cross_entropy(logits.to(torch::kFloat64), targets, F::CrossEntropyFuncOptions().reduction(torch::kSum))
      .item<double>();
}

// --------------------------------------------------------------------------------- loss totals

TEST_F(LossTotalsTest, NatsAreTorchsCrossEntropySumAndBytesTheTargetsByteCounts) {
  auto logits = torch::randn({6, 8});
  auto targets = Longs({1, 7, 3, 0, 5, 2});
  auto token_bytes = Longs({1, 2, 3, 1, 4, 1, 2, 5});  // no special token here
  const auto t = llm::loss_totals(logits, targets, token_bytes);
  EXPECT_NEAR(t.nats, TorchNatsSum(logits, targets), 1e-5) << "sum of -log p(target), as cross_entropy(sum)";
  EXPECT_EQ(t.tokens, 6);
  EXPECT_EQ(t.bytes, 2 + 5 + 1 + 1 + 1 + 3) << "token_bytes looked up at each target (not at each row's argmax)";
}

TEST_F(LossTotalsTest, IgnoredTargetsAndSpecialTokensAreLeftOutOfEverySum) {
  // Rows 1 and 4 are ignored (-100); row 3's target, token 6, is a special token (0 bytes). Only rows
  // 0, 2 and 5 count: their nats, 3 tokens and 2 + 1 + 3 bytes. Rows 1 and 4 get huge logits, so
  // counting them by mistake cannot go unnoticed.
  auto logits = torch::randn({6, 8});
  logits[1] = 50.0 * torch::arange(8, torch::kFloat32);
  logits[4] = -50.0 * torch::arange(8, torch::kFloat32);
  auto targets = Longs({1, -100, 3, 6, -100, 2});
  auto token_bytes = Longs({1, 2, 3, 1, 4, 1, 0, 5});
  const auto t = llm::loss_totals(logits, targets, token_bytes);
  auto rows = Longs({0, 2, 5});
  EXPECT_NEAR(t.nats, TorchNatsSum(logits.index_select(0, rows), targets.index_select(0, rows)), 1e-5)
      << "nats of rows 0, 2, 5 only: not the ignored ones and not the special token's (nanochat's evaluate_bpb)";
  EXPECT_EQ(t.tokens, 3) << "6 targets, 2 ignored, 1 special";
  EXPECT_EQ(t.bytes, 6) << "2 + 1 + 3";
}

TEST_F(LossTotalsTest, ByteCountsOfARealTokenizerAddUpToTheTextsBytes) {
  // "Paris is<|endoftext|> é" -> P ar is | " " is | <|endoftext|> | " " é: 8 tokens, and the bytes
  // of the counted ones are the bytes of the text without the special token, 8 + 3 = 11.
  const auto& tok = ParisTokenizer();
  const auto ids = tok.encode("Paris is<|endoftext|> \xC3\xA9", /*allow_special=*/true);
  ASSERT_EQ(ids, (std::vector<llm::TokenId>{'P', kAr, kIs, ' ', kIs, kEndOfText, ' ', lesson12::kEAcute}));
  const auto token_bytes = llm::token_byte_counts(tok);
  auto targets = Longs(std::vector<int64_t>(ids.begin(), ids.end()));
  auto logits = torch::randn({8, tok.vocab_size()});
  const auto t = llm::loss_totals(logits, targets, token_bytes);
  EXPECT_EQ(t.bytes, static_cast<int64_t>(std::string("Paris is").size() + std::string(" \xC3\xA9").size()));
  EXPECT_EQ(t.tokens, 7) << "<|endoftext|> stands for no text";
  auto text_rows = Longs({0, 1, 2, 3, 4, 6, 7});
  EXPECT_NEAR(t.nats, TorchNatsSum(logits.index_select(0, text_rows), targets.index_select(0, text_rows)), 1e-4);
}

// ------------------------------------------------------------------------------ bits per byte

TEST_F(BitsPerByteTest, HundredNatsOverTwoHundredFiftyBytesIsTheGolden) {
  const llm::LossTotals t{/*nats=*/100.0, /*tokens=*/40, /*bytes=*/250};
  EXPECT_NEAR(llm::bits_per_byte(t), 0.5770780, 5e-8) << "100 / (ln 2 * 250), nanochat's docstring arithmetic";
  EXPECT_NEAR(llm::perplexity(t), std::exp(2.5), 1e-9) << "exp(100 / 40): per token, not per byte";
}

TEST_F(BitsPerByteTest, IsCorpusLevelNotTheMeanOfPerBatchRatios) {
  // A short batch the model gets badly wrong (2 targets of 1 byte) and a long one it gets right
  // (10 targets of 3 bytes). Summing first weighs every byte alike; averaging the two ratios would
  // weigh the 2 bytes like the 30.
  auto short_logits = torch::zeros({2, 8});
  short_logits.select(1, 0).fill_(6.0);  // mass on token 0, the targets are 1 and 2
  auto short_targets = Longs({1, 2});
  auto long_logits = torch::randn({10, 8});
  auto long_targets = torch::randint(0, 8, {10}, torch::kLong);
  long_logits.scatter_(1, long_targets.unsqueeze(1), 6.0);
  auto short_bytes = torch::ones({8}, torch::kLong), long_bytes = 3 * torch::ones({8}, torch::kLong);

  auto a = llm::loss_totals(short_logits, short_targets, short_bytes);
  const auto b = llm::loss_totals(long_logits, long_targets, long_bytes);
  const double na = TorchNatsSum(short_logits, short_targets), nb = TorchNatsSum(long_logits, long_targets);
  a += b;
  EXPECT_EQ(a.tokens, 12);
  EXPECT_EQ(a.bytes, 2 + 30);
  const double corpus = (na + nb) / (std::log(2.0) * 32.0);
  EXPECT_NEAR(llm::bits_per_byte(a), corpus, 1e-6) << "sum(nats) / (ln 2 * sum(bytes)) over both batches";
  const double mean_of_ratios = (na / (std::log(2.0) * 2.0) + nb / (std::log(2.0) * 30.0)) / 2.0;
  EXPECT_GT(std::abs(mean_of_ratios - corpus), 1.0) << "the two summaries really differ on this data";
}

// ------------------------------------------------------------------------------ perplexity

TEST_F(PerplexityTest, IsExpOfTorchsMeanCrossEntropyOverTheCountedTargets) {
  auto logits = torch::randn({5, 8});
  auto targets = Longs({3, -100, 0, 7, 7});
  const auto t = llm::loss_totals(logits, targets, torch::ones({8}, torch::kLong));
  const double mean = F::cross_entropy(logits.to(torch::kFloat64), targets).item<double>();  // ignore_index -100
  EXPECT_NEAR(llm::perplexity(t), std::exp(mean), 1e-5 * std::exp(mean))
      << "exp(nats / tokens), run_clm's math.exp(eval_loss)";
  EXPECT_NEAR(llm::bits_per_byte(t), mean / std::log(2.0), 1e-6) << "1 byte per token: bpb = nats per token / ln 2";
}

// ------------------------------------------------------------------------------ encode_pair

TEST_F(EncodePairTest, TrailingSpaceMovesToTheContinuationAndSpaceParisStaysOneToken) {
  // Encoded separately, "... is " ends in a lone " " and "Paris" is P + ar + is: three tokens the
  // model never saw after "is". lm-evaluation-harness moves the space and encodes jointly.
  const auto& tok = ParisTokenizer();
  const auto r = llm::encode_pair(tok, "The capital of France is ", "Paris");
  EXPECT_EQ(r.continuation, (std::vector<llm::TokenId>{kSpaceParis})) << "the continuation is the one token \" Paris\"";
  EXPECT_EQ(r.continuation, tok.encode(" Paris"));
  EXPECT_EQ(r.context, tok.encode("The capital of France is")) << "the context without its trailing space";

  // The delimiter form score_multiple_choice uses: context "...A:" and continuation " Paris".
  const auto d = llm::encode_pair(tok, "Q: What is the capital of France?\nA:", " Paris");
  EXPECT_EQ(d.context, tok.encode("Q: What is the capital of France?\nA:"));
  EXPECT_EQ(d.continuation, (std::vector<llm::TokenId>{kSpaceParis}));
}

// ----------------------------------------------------------------------- continuation loglikelihoods

TEST_F(ContinuationLoglikelihoodsTest, EqualsOneUnbatchedForwardPerRequest) {
  // Five requests of different lengths in batches of 4 and 1: the first batch is right-padded to its
  // longest row. Each must equal log_softmax + gather over a forward of that request alone.
  llm::CausalLM model(TinyConfig());
  const std::vector<std::pair<int64_t, int64_t>> lengths = {{3, 1}, {7, 4}, {1, 2}, {5, 3}, {10, 1}};
  std::vector<llm::ContinuationRequest> requests;
  for (auto [ctx, cont] : lengths) requests.push_back({RandomIds(ctx, 32), RandomIds(cont, 32)});
  const auto lls = llm::continuation_loglikelihoods(model, requests, /*batch_size=*/4);
  ASSERT_EQ(lls.size(), requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    const double expected = DirectLoglikelihood(model, requests[i].context, requests[i].continuation);
    EXPECT_NEAR(lls[i], expected, 1e-4) << "request " << i << " (" << lengths[i].first << " context + "
                                        << lengths[i].second << " continuation tokens)";
    EXPECT_LT(lls[i], 0.0) << "a sum of log-probabilities";
  }
}

// ------------------------------------------------------------------------------ predict_choice

TEST_F(PredictChoiceTest, AccTakesTheLargestLoglikelihoodAndAccNormTheLargestPerCharacter) {
  // "Paris": ll -6 over 5 characters = -1.2 each; "the city of Rome": ll -8 over 16 = -0.5 each.
  // The total favours the short answer, the per-character average the long one.
  const auto p = llm::predict_choice({-6.0, -8.0}, {"Paris", "the city of Rome"});
  EXPECT_EQ(p.acc, 0) << "argmax of ll: -6 > -8";
  EXPECT_EQ(p.acc_norm, 1) << "argmax of ll / len: -0.5 > -1.2";
  EXPECT_EQ(p.acc_bytes, 1) << "ASCII: bytes = characters";
}

TEST_F(PredictChoiceTest, TiesGoToTheFirstChoice) {
  // np.argmax's rule: choices 1 and 2 tie on every measure; choice 1 wins, not the last one.
  const auto p = llm::predict_choice({-3.0, -2.0, -2.0}, {"a", "bb", "cc"});
  EXPECT_EQ(p.acc, 1);
  EXPECT_EQ(p.acc_norm, 1);
  EXPECT_EQ(p.acc_bytes, 1);
  const auto all = llm::predict_choice({-2.0, -2.0, -2.0}, {"ab", "cd", "ef"});
  EXPECT_EQ(all.acc, 0);
  EXPECT_EQ(all.acc_norm, 0);
}

// ------------------------------------------------------------------------ score_multiple_choice

TEST_F(ScoreMultipleChoiceTest, ScoresContextPlusSpaceChoiceAndCountsTheAccuracies) {
  // Every context ends in a non-space and every choice starts a new pre-token after the delimiter, so
  // the request's tokens are encode(context) and encode(" " + choice): scored here with one forward
  // per choice, the predictions and the three accuracies worked out from those numbers.
  const auto& tok = ParisTokenizer();
  llm::CausalLM model(TinyConfig(tok.vocab_size()));
  const std::vector<llm::MultipleChoiceItem> items = {
      {"Q: What is the capital of France?\nA:", {"Paris", "Rome", "Lyon"}, 0},
      {"The answer is", {"is", "ar", "Paris", "a longer answer"}, 2},
      {"A:", {"x", "Paris is"}, 1},
      {"Pick one:", {"\xC3\xA9t\xC3\xA9", "ete", "Paris"}, 0},
  };
  double acc = 0, acc_norm = 0, acc_bytes = 0;
  std::vector<int64_t> predictions;
  for (const auto& item : items) {
    std::vector<double> ll, per_char, per_byte;
    for (const auto& choice : item.choices) {
      ll.push_back(DirectLoglikelihood(model, tok.encode(item.context), tok.encode(" " + choice)));
      int64_t chars = 0;
      for (unsigned char c : choice) chars += (c & 0xC0) != 0x80;
      per_char.push_back(ll.back() / static_cast<double>(chars));
      per_byte.push_back(ll.back() / static_cast<double>(choice.size()));
    }
    auto first_max = [](const std::vector<double>& v) {
      size_t best = 0;
      for (size_t i = 1; i < v.size(); ++i)
        if (v[i] > v[best]) best = i;
      return static_cast<int64_t>(best);
    };
    predictions.push_back(first_max(ll));
    acc += first_max(ll) == item.gold;
    acc_norm += first_max(per_char) == item.gold;
    acc_bytes += first_max(per_byte) == item.gold;
  }
  const auto r = llm::score_multiple_choice(model, tok, items, /*delimiter=*/" ", /*batch_size=*/5);
  EXPECT_EQ(r.n, 4);
  EXPECT_EQ(r.predictions, predictions) << "acc's prediction per item";
  EXPECT_DOUBLE_EQ(r.acc, acc / 4.0);
  EXPECT_DOUBLE_EQ(r.acc_norm, acc_norm / 4.0);
  EXPECT_DOUBLE_EQ(r.acc_bytes, acc_bytes / 4.0);
}

// ------------------------------------------------------------------------------------ pass@k

TEST_F(PassAtKTest, GivesTheGoldenValues) {
  EXPECT_NEAR(llm::pass_at_k(10, 3, 1), 0.3, 1e-12) << "k = 1: c / n";
  EXPECT_NEAR(llm::pass_at_k(10, 3, 5), 0.9166667, 5e-8) << "1 - C(7, 5) / C(10, 5) = 1 - 21 / 252";
  EXPECT_EQ(llm::pass_at_k(10, 0, 5), 0.0) << "nothing correct";
  EXPECT_EQ(llm::pass_at_k(5, 3, 3), 1.0) << "n - c = 2 < k = 3: every 3-subset holds a correct sample";
  EXPECT_NEAR(llm::pass_at_k(200, 10, 100), 0.9992290, 5e-8) << "C(200, 100) overflows 64-bit integers";
}

TEST_F(PassAtKTest, EqualsTheShareOfKSubsetsWithACorrectSampleForEveryNUpToEight) {
  // The definition itself: over all C(n, k) ways to pick k of the n samples (the first c correct),
  // the fraction that picks at least one correct sample.
  for (int n = 1; n <= 8; ++n) {
    for (int c = 0; c <= n; ++c) {
      for (int k = 1; k <= n; ++k) {
        int64_t subsets = 0, hits = 0;
        for (unsigned mask = 0; mask < (1u << n); ++mask) {
          if (__builtin_popcount(mask) != k) continue;
          ++subsets;
          hits += (mask & ((1u << c) - 1)) != 0;
        }
        EXPECT_NEAR(llm::pass_at_k(n, c, k), static_cast<double>(hits) / static_cast<double>(subsets), 1e-12)
            << "n = " << n << ", c = " << c << ", k = " << k;
      }
    }
  }
}

TEST_F(PassAtKTest, TheBenchmarkFigureIsTheMeanOverProblems) {
  const std::vector<std::pair<int64_t, int64_t>> problems = {{10, 3}, {5, 3}, {10, 0}, {4, 4}};
  EXPECT_NEAR(llm::mean_pass_at_k(problems, 1), (0.3 + 0.6 + 0.0 + 1.0) / 4.0, 1e-12);
  // k = 3: 1 - C(7, 3) / C(10, 3) = 1 - 35 / 120; 1 (n - c = 2 < 3); 0; 1.
  EXPECT_NEAR(llm::mean_pass_at_k(problems, 3), ((1.0 - 35.0 / 120.0) + 1.0 + 0.0 + 1.0) / 4.0, 1e-12);
}

// ------------------------------------------------------------------------------------- FLOPs

// The weights that take part in matmuls, counted on the module itself: every *_proj.weight and
// lm_head.weight; a tied model's output matmul uses embed_tokens.weight, counted once.
int64_t LinearWeightsOf(const llm::ModelConfig& config) {
  llm::CausalLM model(config);
  int64_t n = 0;
  for (const auto& p : model->named_parameters()) {
    const auto& name = p.key();
    const bool proj = name.size() > 12 && name.compare(name.size() - 12, 12, "_proj.weight") == 0;
    if (proj || name == "lm_head.weight") n += p.value().numel();
    if (config.tie_word_embeddings && name == "model.embed_tokens.weight") n += p.value().numel();
  }
  return n;
}

TEST_F(FlopsTest, MatmulParametersAreTheModelsProjectionsAndItsOutputLayer) {
  auto swiglu = TinyConfig();
  auto gelu = TinyConfig();
  gelu.mlp_type = "gelu";
  gelu.intermediate_size = 64;
  auto tied = TinyConfig();
  tied.tie_word_embeddings = true;
  auto mqa = TinyConfig();
  mqa.num_key_value_heads = 1;
  for (const auto& [name, config] : std::vector<std::pair<std::string, llm::ModelConfig>>{
           {"swiglu", swiglu}, {"gelu", gelu}, {"tied", tied}, {"mqa", mqa}}) {
    EXPECT_EQ(llm::matmul_parameters(config), LinearWeightsOf(config))
        << name << ": q, k, v, o, the MLP's matrices and the output layer; no embedding lookup, no norms";
  }
  EXPECT_EQ(llm::matmul_parameters(tied), llm::matmul_parameters(swiglu))
      << "tied or not, the output matmul is V C multiply-adds per token";
}

TEST_F(FlopsTest, TrainingIsSixNPlusTwelveLHDTOnAHandWorkedConfig) {
  // V 32, C 16, L 2, H 4, Hkv 2, D 4, F 48: per layer q 256 + k 128 + v 128 + o 256 + MLP 3 * 768,
  // = 3072; N = 2 * 3072 + lm_head 512 = 6656. At T = 8: 6 N = 39936, 12 L H D T = 3072.
  const auto config = TinyConfig();
  ASSERT_EQ(config.ffn_hidden_size(), 48) << "floor(8 * 16 / 3) = 42, rounded up to a multiple of 8";
  EXPECT_EQ(llm::matmul_parameters(config), 6656);
  const double train = llm::training_flops_per_token(config, 8);
  EXPECT_DOUBLE_EQ(train, 39936.0 + 3072.0);
  EXPECT_DOUBLE_EQ(llm::forward_flops_per_token(config, 8), 14336.0) << "2 N + 4 L H D T: a third of training's";
  EXPECT_DOUBLE_EQ(llm::forward_flops_per_token(config, 8) * 3.0, train);
  // MFU: 43008 FLOPs per token at 1000 tokens per second on a 4.3008e8 FLOP/s machine is 10%.
  EXPECT_NEAR(llm::model_flops_utilisation(train, 1000.0, 4.3008e8), 0.1, 1e-12);
}

// ------------------------------------------------------------------------------------ memory

TEST_F(MemoryTest, WeightsGradientsAdamAndActivationsOnAHandWorkedConfig) {
  // P = embedding 512 + 2 layers * (attention 768 + MLP 2304 + norms 32) + final norm 16 + lm_head 512
  //   = 7248. Per layer and token at T = 8: a = 8 C + 2 Hkv D + H T + 4 F = 128 + 16 + 32 + 192 = 368;
  // outside the layers 3 C + 2 V = 112. Activations: 4 bytes * B 2 * T 8 * (2 * 368 + 112) = 54272.
  const auto config = TinyConfig();
  llm::CausalLM model(config);
  int64_t P = 0;
  for (const auto& p : model->parameters()) P += p.numel();
  ASSERT_EQ(P, 7248);
  EXPECT_EQ(llm::activation_floats_per_layer(config, 8), 368);
  const auto m = llm::estimate_training_memory(config, /*batch=*/2, /*seq_len=*/8);
  EXPECT_EQ(m.weights, 4 * 7248) << "fp32 weights";
  EXPECT_EQ(m.gradients, 4 * 7248) << "one fp32 gradient per trainable weight";
  EXPECT_EQ(m.optimizer, 8 * 7248) << "AdamW's m and v";
  EXPECT_EQ(m.weights + m.gradients + m.optimizer, 16 * P) << "16 bytes per parameter before activations";
  EXPECT_EQ(m.activations, 54272);
  EXPECT_EQ(m.total(), 16 * 7248 + 54272);

  // LoRA-like: 1000 trainable parameters. The frozen weights and the activations stay.
  const auto lora = llm::estimate_training_memory(config, 2, 8, /*trainable=*/1000);
  EXPECT_EQ(lora.weights, 4 * 7248);
  EXPECT_EQ(lora.gradients, 4000);
  EXPECT_EQ(lora.optimizer, 8000);
  EXPECT_EQ(lora.activations, 54272);
}

}  // namespace
