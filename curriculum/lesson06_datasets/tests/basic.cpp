// Lesson 06, basic: the core behaviour a first correct attempt must show - token shards that round
// trip, pretraining blocks in a seeded resumable order, packing, SFT and preference batches, the
// Gopher rules on CS336's documents, exact and MinHash deduplication, and the classifier's features.
// Grade with:  ctest --preset default -R lesson06.basic
#include "data_fixtures.h"

#include <llm/common/testing.h>
#include <llm/data/dedup.h>
#include <llm/data/filters.h>
#include <llm/data/preference.h>
#include <llm/data/pretrain_batches.h>
#include <llm/data/quality.h>
#include <llm/data/sft.h>
#include <llm/data/token_shard.h>

#include <algorithm>
#include <cstring>
#include <numeric>
#include <set>
#include <string>
#include <vector>

namespace {

using lesson06::AustenText;
using lesson06::BlocksOf;
using lesson06::Concat;
using lesson06::DataTest;
using lesson06::Encode;
using lesson06::LoaderOptions;
using lesson06::LongTensor;
using lesson06::Repeat;
using lesson06::StreamShard;
using lesson06::ToVector;
using llm::testing::SeededTest;

class TokenShardTest : public DataTest {};
class PretrainLoaderTest : public DataTest {};
class PackingTest : public SeededTest {};
class SftTest : public SeededTest {};
class PreferenceTest : public SeededTest {};
class GopherTest : public SeededTest {};
class DedupTest : public SeededTest {};
class QualityTest : public SeededTest {};

// ---------------------------------------------------------------------------------- token shards

TEST_F(TokenShardTest, JoinDocumentsAppendsEndOfTextAfterEveryDocument) {
  const std::vector<std::vector<int32_t>> documents = {{1, 2, 3}, {4, 5}, {}, {6}};
  EXPECT_EQ(llm::join_documents(documents, /*eot_id=*/9), (std::vector<uint32_t>{1, 2, 3, 9, 4, 5, 9, 9, 6, 9}))
      << "nanoGPT's prepare.py: ids.append(eot) after each document (not before it); an empty document "
         "still ends with its EOT";
}

TEST_F(TokenShardTest, HeaderHoldsMagicVersionWidthCountAndVocabSize) {
  const std::string bytes = llm::encode_token_shard({1, 2, 258}, /*vocab_size=*/300);
  ASSERT_EQ(bytes.size(), 64u + 3 * 2) << "a 64-byte header, then 3 ids of 2 bytes (vocab 300 <= 65536)";
  std::vector<unsigned char> expected(bytes.size(), 0);
  std::memcpy(expected.data(), "LLMTOKS", 8);                      // 7 letters and the '\0'
  expected[8] = 1;                                                 // version 1, uint32 little-endian
  expected[12] = 2;                                                // bytes per id
  expected[16] = 3;                                                // count, uint64
  expected[24] = 300 & 0xFF, expected[25] = 300 >> 8;              // vocab_size 300 = 0x012C, uint64
  const unsigned char ids[] = {1, 0, 2, 0, 258 & 0xFF, 258 >> 8};  // little-endian uint16 ids
  std::memcpy(expected.data() + 64, ids, sizeof(ids));
  for (size_t i = 0; i < bytes.size(); ++i) {
    EXPECT_EQ(static_cast<unsigned char>(bytes[i]), expected[i]) << "byte " << i;
  }
}

TEST_F(TokenShardTest, WriteThenReadRoundTripsSixteenBitIds) {
  // 32768 and 65535 do not fit in int16: they must come back unsigned, never as -32768 or -1.
  const std::vector<uint32_t> ids = {0, 1, 255, 256, 32767, 32768, 65535, 7};
  const std::string path = Path("train.bin");
  llm::write_token_shard(path, ids, /*vocab_size=*/65536);
  EXPECT_EQ(std::filesystem::file_size(path), 64u + ids.size() * 2) << "V = 65536 still fits in uint16";
  llm::TokenShard shard(path);
  EXPECT_EQ(shard.size(), 8);
  EXPECT_EQ(shard.vocab_size(), 65536);
  EXPECT_EQ(shard.bytes_per_id(), 2u);
  auto all = shard.slice(0, 8);
  ASSERT_EQ(all.sizes(), (std::vector<int64_t>{8}));
  EXPECT_EQ(all.scalar_type(), torch::kLong) << "embeddings and losses take int64 ids";
  EXPECT_EQ(ToVector(all), (std::vector<int64_t>{0, 1, 255, 256, 32767, 32768, 65535, 7}));
  EXPECT_EQ(ToVector(shard.slice(2, 3)), (std::vector<int64_t>{255, 256, 32767}));
  EXPECT_EQ(shard.slice(8, 0).numel(), 0) << "an empty slice at the end is a valid range";
}

TEST_F(TokenShardTest, VocabulariesAbove65536UseThirtyTwoBitIds) {
  EXPECT_EQ(llm::encode_token_shard({0}, 65537).size(), 64u + 4) << "65537 ids do not fit in uint16";
  const std::vector<uint32_t> ids = {65536, 69999, 3};
  const std::string path = Path("wide.bin");
  llm::write_token_shard(path, ids, /*vocab_size=*/70000);
  EXPECT_EQ(std::filesystem::file_size(path), 64u + 3 * 4);
  llm::TokenShard shard(path);
  EXPECT_EQ(shard.bytes_per_id(), 4u);
  EXPECT_EQ(shard.vocab_size(), 70000);
  EXPECT_EQ(ToVector(shard.slice(0, 3)), (std::vector<int64_t>{65536, 69999, 3}));

  // The widest vocabulary, 2^32: ids at and above 2^31 must read back unsigned.
  const std::string widest = Path("widest.bin");
  llm::write_token_shard(widest, {4294967295u, 2147483648u, 1}, /*vocab_size=*/int64_t{1} << 32);
  EXPECT_EQ(ToVector(llm::TokenShard(widest).slice(0, 3)), (std::vector<int64_t>{4294967295LL, 2147483648LL, 1}));
}

// ------------------------------------------------------------------------------ pretrain loader

TEST_F(PretrainLoaderTest, InputsAndTargetsAreOneBlockShiftedByOne) {
  constexpr int64_t B = 4, T = 10;
  StreamShard shard(Path("s.bin"), /*count=*/101);
  llm::PretrainLoader loader(*shard, LoaderOptions(B, T));
  EXPECT_EQ(loader.num_blocks(), 10)
      << "(101 - 1) / 10: block i is ids i*T .. i*T + T, consecutive blocks share one id";
  auto batch = loader.next();
  ASSERT_EQ(batch.input_ids.sizes(), (std::vector<int64_t>{B, T}));
  ASSERT_EQ(batch.targets.sizes(), (std::vector<int64_t>{B, T}));
  EXPECT_EQ(batch.input_ids.scalar_type(), torch::kLong);
  EXPECT_FALSE(batch.position_ids.defined()) << "position ids only with packing";
  for (int64_t b = 0; b < B; ++b) {
    const int64_t start = batch.input_ids[b][0].item<int64_t>();
    EXPECT_EQ(start % T, 0) << "row " << b << " starts at id " << start << ", not at a block start i * T";
    auto expected = torch::arange(start, start + T, torch::kLong);
    EXPECT_TRUE(torch::equal(batch.input_ids[b], expected)) << "row " << b << ": " << batch.input_ids[b];
    EXPECT_TRUE(torch::equal(batch.targets[b], expected + 1)) << "targets[t] is the id after inputs[t]";
  }
  StreamShard short_tail(Path("t.bin"), /*count=*/100);
  EXPECT_EQ(llm::PretrainLoader(*short_tail, LoaderOptions(B, T)).num_blocks(), 9)
      << "99 ids after the first fill 9 blocks of 10; the tail that does not fill one is left out";
}

TEST_F(PretrainLoaderTest, EveryBlockIsVisitedOncePerEpoch) {
  constexpr int64_t B = 5, T = 8, N = 15;
  StreamShard shard(Path("s.bin"), /*count=*/N * T + 1);
  llm::PretrainLoader loader(*shard, LoaderOptions(B, T));
  ASSERT_EQ(loader.num_blocks(), N);
  for (int64_t epoch = 0; epoch < 2; ++epoch) {
    std::vector<int64_t> seen;
    std::vector<int64_t> targets;
    for (int64_t step = 0; step < N / B; ++step) {
      auto batch = loader.next();
      for (int64_t b : BlocksOf(batch, T)) seen.push_back(b);
      for (int64_t id : ToVector(batch.targets)) targets.push_back(id);
    }
    std::sort(seen.begin(), seen.end());
    std::vector<int64_t> all(N);
    std::iota(all.begin(), all.end(), 0);
    EXPECT_EQ(seen, all) << "epoch " << epoch << " must visit each of the " << N << " blocks exactly once";
    std::sort(targets.begin(), targets.end());
    std::vector<int64_t> every_id(N * T);
    std::iota(every_id.begin(), every_id.end(), 1);
    EXPECT_EQ(targets, every_id) << "every id after the first is a target exactly once per epoch";
  }
  EXPECT_EQ(loader.epoch(), 2);
  for (int64_t n : {1, 2, 7, 100}) {
    auto perm = llm::epoch_permutation(n, /*seed=*/42, /*epoch=*/3);
    std::sort(perm.begin(), perm.end());
    std::vector<int64_t> iota(n);
    std::iota(iota.begin(), iota.end(), 0);
    EXPECT_EQ(perm, iota) << "epoch_permutation(" << n << ") must be a permutation of 0.." << n - 1;
  }
}

TEST_F(PretrainLoaderTest, OrderIsAPureFunctionOfSeedAndEpoch) {
  constexpr int64_t T = 4, N = 12;
  StreamShard shard(Path("s.bin"), /*count=*/N * T + 1);
  auto order = [&](uint64_t seed) {  // the blocks of two epochs, one batch of N per epoch
    llm::PretrainLoader loader(*shard, LoaderOptions(N, T, seed));
    auto first = BlocksOf(loader.next(), T);
    auto second = BlocksOf(loader.next(), T);
    return std::make_pair(first, second);
  };
  const auto a = order(7), again = order(7), other = order(8);
  EXPECT_EQ(a, again) << "the same seed must give the same order: nothing may depend on time or a global RNG";
  EXPECT_NE(a.first, other.first) << "another seed must give another order";
  EXPECT_NE(a.first, a.second) << "every epoch gets its own permutation";
  std::vector<int64_t> identity(N);
  std::iota(identity.begin(), identity.end(), 0);
  EXPECT_NE(a.first, identity) << "the blocks must be shuffled";
  llm::PretrainLoader fresh(*shard, LoaderOptions(1, T, 7));
  for (int64_t k = 0; k < 2 * N; ++k) {
    EXPECT_EQ(fresh.block_at(k), k < N ? a.first[k] : a.second[k - N]) << "block_at(" << k << ")";
  }
}

TEST_F(PretrainLoaderTest, SetCursorResumesExactlyWhereARunStopped) {
  constexpr int64_t B = 3, T = 5, N = 10;  // batches of 3 cross the epoch boundaries at 10 and 20
  StreamShard shard(Path("s.bin"), /*count=*/N * T + 1);
  llm::PretrainLoader run(*shard, LoaderOptions(B, T));
  std::vector<llm::PretrainBatch> uninterrupted;
  int64_t saved_cursor = 0;
  for (int64_t step = 0; step < 7; ++step) {
    if (step == 3) saved_cursor = run.cursor();
    uninterrupted.push_back(run.next());
  }
  EXPECT_EQ(saved_cursor, 3 * B) << "the cursor counts the blocks consumed";
  llm::PretrainLoader resumed(*shard, LoaderOptions(B, T));
  resumed.set_cursor(saved_cursor);
  for (int64_t step = 3; step < 7; ++step) {
    auto batch = resumed.next();
    EXPECT_TRUE(torch::equal(batch.input_ids, uninterrupted[step].input_ids)) << "step " << step;
    EXPECT_TRUE(torch::equal(batch.targets, uninterrupted[step].targets)) << "step " << step;
  }
  EXPECT_EQ(resumed.cursor(), run.cursor());
}

TEST_F(PretrainLoaderTest, DataParallelRanksSplitTheOneProcessBatch) {
  constexpr int64_t B = 3, T = 4, W = 2;
  StreamShard shard(Path("s.bin"), /*count=*/40 * T + 1);
  llm::PretrainLoader rank0(*shard, LoaderOptions(B, T, 5, /*rank=*/0, W));
  llm::PretrainLoader rank1(*shard, LoaderOptions(B, T, 5, /*rank=*/1, W));
  llm::PretrainLoader single(*shard, LoaderOptions(B * W, T, 5));
  for (int64_t step = 0; step < 4; ++step) {
    auto r0 = rank0.next(), r1 = rank1.next(), all = single.next();
    for (int64_t j = 0; j < B; ++j) {
      // Rank r takes the global positions r, r + W, r + 2W, ...
      EXPECT_TRUE(torch::equal(r0.input_ids[j], all.input_ids[j * W])) << "step " << step << ", rank 0 row " << j;
      EXPECT_TRUE(torch::equal(r1.input_ids[j], all.input_ids[j * W + 1])) << "step " << step << ", rank 1 row " << j;
      EXPECT_TRUE(torch::equal(r1.targets[j], all.targets[j * W + 1]));
    }
    EXPECT_EQ(rank0.cursor(), single.cursor()) << "each rank's cursor counts the blocks of all ranks (B * W)";
  }
}

// ----------------------------------------------------------------------------------- packing

TEST_F(PackingTest, PositionsRestartAfterEachEndOfTextAndItsTargetIsIgnored) {
  constexpr int64_t E = 0, X = llm::kIgnoreTarget;  // the end-of-text id; an ignored target
  llm::PretrainBatch batch;
  batch.input_ids = LongTensor({{5, 6, E, 7, 8, 9, E, 4},  //
                                {E, 1, 2, E, E, 3, 4, 5}});
  batch.targets = LongTensor({{6, E, 7, 8, 9, E, 4, 3},  //
                              {1, 2, E, E, 3, 4, 5, 6}});
  llm::pack_documents(batch, E);
  ASSERT_TRUE(batch.position_ids.defined());
  // A document starts at column 0 and right after every EOT; the EOT itself ends its document.
  auto positions = LongTensor({{0, 1, 2, 0, 1, 2, 3, 0},  //
                               {0, 0, 1, 2, 0, 0, 1, 2}});
  EXPECT_TRUE(torch::equal(batch.position_ids, positions)) << "got\n" << batch.position_ids;
  // An EOT's target is the first token of the next document: nothing before it predicts it. The
  // EOT itself stays a target (the model must learn to end a document).
  auto targets = LongTensor({{6, E, X, 8, 9, E, X, 3},  //
                             {X, 2, E, X, X, 4, 5, 6}});
  EXPECT_TRUE(torch::equal(batch.targets, targets)) << "got\n" << batch.targets;
}

// ------------------------------------------------------------------------------------------ SFT

TEST_F(SftTest, RenderConversationTrainsOnlyTheAssistantsTextAndEnd) {
  const auto& tok = lesson06::ChatTokenizer();
  const auto chat = llm::ChatTemplate::from(tok);
  const std::string question = "Who has taken Netherfield Park?", answer = "A young man of large fortune.";
  auto example = llm::render_conversation(tok, chat, {{"user", question}, {"assistant", answer}});
  const auto q = Encode(question), a = Encode(answer);
  const auto expected = Concat({{chat.user}, q, {chat.end}, {chat.assistant}, a, {chat.end}});
  ASSERT_EQ(example.ids, expected) << "<|user|> question <|end|> <|assistant|> answer <|end|>";
  std::vector<uint8_t> trained(expected.size(), 0);
  std::fill(trained.end() - static_cast<int64_t>(a.size()) - 1, trained.end(), 1);
  EXPECT_EQ(example.trained, trained)
      << "trained: the answer and its <|end|> (the model learns to stop); not the user turn, not <|assistant|>";
}

TEST_F(SftTest, RenderPromptEndsWithTheAssistantToken) {
  const auto& tok = lesson06::ChatTokenizer();
  const auto chat = llm::ChatTemplate::from(tok);
  const llm::Conversation conversation = {
      {"user", "Is he married or single?"}, {"assistant", "Oh! Single, my dear."}, {"user", "How so?"}};
  auto prompt = llm::render_prompt(tok, chat, conversation);
  auto rendered = llm::render_conversation(tok, chat, conversation).ids;
  rendered.push_back(chat.assistant);
  EXPECT_EQ(prompt, rendered) << "the conversation so far, then <|assistant|> for the model to answer after";
  EXPECT_EQ(llm::render_prompt(tok, chat, {{"user", "Hello"}}),
            Concat({{chat.user}, Encode("Hello"), {chat.end}, {chat.assistant}}));
}

TEST_F(SftTest, CollateShiftsTargetsPadsOnTheRightAndMasks) {
  constexpr int64_t X = llm::kIgnoreTarget;
  const std::vector<llm::TokenizedExample> examples = {
      {{10, 11, 12, 13}, {0, 0, 1, 1}},  // a 2-token prompt, a 2-token answer
      {{20, 21, 22}, {0, 1, 1}},
  };
  auto batch = llm::collate_sft(examples, /*pad_id=*/0);
  ASSERT_EQ(batch.input_ids.sizes(), (std::vector<int64_t>{2, 3})) << "T = longest example - 1 = 3";
  ASSERT_EQ(batch.targets.sizes(), (std::vector<int64_t>{2, 3}));
  ASSERT_EQ(batch.attention_mask.sizes(), (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(batch.attention_mask.scalar_type(), torch::kBool);
  EXPECT_TRUE(torch::equal(batch.input_ids, LongTensor({{10, 11, 12}, {20, 21, 0}})))
      << "inputs ids[:-1], right-padded with pad_id; got\n"
      << batch.input_ids;
  EXPECT_TRUE(torch::equal(batch.targets, LongTensor({{X, 12, 13}, {21, 22, X}})))
      << "targets ids[1:] where trained, -100 on the prompt and the padding; got\n"
      << batch.targets;
  EXPECT_TRUE(torch::equal(batch.attention_mask, LongTensor({{1, 1, 1}, {1, 1, 0}}).to(torch::kBool)));
  EXPECT_EQ(batch.num_targets(), 4);
}

TEST_F(SftTest, TruncationKeepsTheStartAndDropsExamplesWithNothingToTrain) {
  const llm::TokenizedExample example = {{1, 2, 3, 4, 5, 6}, {0, 0, 1, 1, 1, 1}};
  auto cut = llm::truncate_example(example, 4);
  ASSERT_TRUE(cut.has_value());
  EXPECT_EQ(cut->ids, (std::vector<int64_t>{1, 2, 3, 4})) << "keep_start: the first max_length tokens";
  EXPECT_EQ(cut->trained, (std::vector<uint8_t>{0, 0, 1, 1}));
  auto whole = llm::truncate_example(example, 10);
  ASSERT_TRUE(whole.has_value());
  EXPECT_EQ(whole->ids, example.ids) << "a short example is left as it is";
  EXPECT_FALSE(llm::truncate_example(example, 2).has_value())
      << "ids {1, 2} keep no trained token: a batch of only ignored targets has loss 0/0";
  EXPECT_FALSE(llm::truncate_example({{1, 2, 3}, {0, 0, 0}}, 10).has_value()) << "a prompt without an answer";
  EXPECT_FALSE(llm::truncate_example({{7, 8, 9}, {1, 0, 0}}, 10).has_value())
      << "position 0 is never a target (nothing precedes it), so its flag trains nothing";
}

// ----------------------------------------------------------------------------------- preference

TEST_F(PreferenceTest, CollateMatchesTrlsDocstringExample) {
  // TRL's DataCollatorForPreference docstring: all chosen rows, then all rejected rows, right-padded.
  const std::vector<llm::TokenizedPair> pairs = {{{1, 2, 3}, {4, 5}, {6}}, {{7, 8}, {9}, {10, 11}}};
  auto batch = llm::collate_preference(pairs, /*pad_id=*/0);
  ASSERT_EQ(batch.input_ids.sizes(), (std::vector<int64_t>{4, 5}));
  EXPECT_EQ(batch.num_pairs(), 2);
  auto ids = LongTensor({{1, 2, 3, 4, 5}, {7, 8, 9, 0, 0}, {1, 2, 3, 6, 0}, {7, 8, 10, 11, 0}});
  auto completion = LongTensor({{0, 0, 0, 1, 1}, {0, 0, 1, 0, 0}, {0, 0, 0, 1, 0}, {0, 0, 1, 1, 0}});
  auto attention = LongTensor({{1, 1, 1, 1, 1}, {1, 1, 1, 0, 0}, {1, 1, 1, 1, 0}, {1, 1, 1, 1, 0}});
  EXPECT_TRUE(torch::equal(batch.input_ids, ids)) << "got\n" << batch.input_ids;
  EXPECT_TRUE(torch::equal(batch.completion_mask.to(torch::kLong), completion)) << "got\n" << batch.completion_mask;
  EXPECT_TRUE(torch::equal(batch.attention_mask.to(torch::kLong), attention)) << "got\n" << batch.attention_mask;
}

TEST_F(PreferenceTest, TokenizePairSharesThePromptAndEndsEachCompletionWithEnd) {
  const auto& tok = lesson06::ChatTokenizer();
  const auto chat = llm::ChatTemplate::from(tok);
  const llm::PreferenceExample example = {"What do you think of Mr. Darcy?", "He is proud, but he is honest.",
                                          "He is the worst man in the world."};
  auto pair = llm::tokenize_pair(tok, chat, example, /*max_length=*/1000);
  ASSERT_TRUE(pair.has_value());
  EXPECT_EQ(pair->prompt, Concat({{chat.user}, Encode(example.prompt), {chat.end}, {chat.assistant}}))
      << "the prompt is render_prompt of the user's message";
  EXPECT_EQ(pair->chosen, Concat({Encode(example.chosen), {chat.end}})) << "the end token is part of the answer";
  EXPECT_EQ(pair->rejected, Concat({Encode(example.rejected), {chat.end}}));
  auto batch = llm::collate_preference({*pair}, chat.pad);
  const auto P = static_cast<int64_t>(pair->prompt.size());
  EXPECT_TRUE(torch::equal(batch.input_ids[0].narrow(0, 0, P), batch.input_ids[1].narrow(0, 0, P)))
      << "DPO compares two completions of the very same prompt ids";
}

// -------------------------------------------------------------------------------------- filters

TEST_F(GopherTest, Cs336GoldenDocumentsPassAndFailAsItsTestsSay) {
  // stanford-cs336/assignment4-data tests/test_quality.py.
  auto valid = llm::gopher_quality(
      Repeat("This should definitely be a valid input text and of high quality according to Gopher rules. ", 100));
  EXPECT_TRUE(valid.keep) << "rejected by " << valid.rule << " (" << valid.value << ")";
  auto snippet = llm::gopher_quality("The string you are reading is a short snippet of text.");
  EXPECT_FALSE(snippet.keep);
  EXPECT_EQ(snippet.rule, "gopher_short_doc");
  EXPECT_EQ(snippet.value, 11) << "11 words";
  auto huge = llm::gopher_quality(Repeat("The string you are reading is too long of a text. ", 50000));
  EXPECT_EQ(huge.rule, "gopher_long_doc");
  EXPECT_EQ(huge.value, 550000);
  auto short_words = llm::gopher_quality(Repeat("the be ", 100));
  EXPECT_EQ(short_words.rule, "gopher_below_avg_threshold");
  EXPECT_DOUBLE_EQ(short_words.value, 2.5) << "(3 + 2) / 2";
  auto fine_words = llm::gopher_quality(Repeat("the with ", 100));
  EXPECT_TRUE(fine_words.keep) << "mean 3.5; rejected by " << fine_words.rule;

  std::string ellipses, fewer;
  for (int i = 0; i < 70; ++i) ellipses += "The line here is an example of line ending with an ellipsis...\n";
  for (int i = 0; i < 30; ++i) ellipses += std::string("This is a normal line.") + (i < 29 ? "\n" : "");
  auto many = llm::gopher_quality(ellipses);
  EXPECT_EQ(many.rule, "gopher_too_many_end_ellipsis");
  EXPECT_DOUBLE_EQ(many.value, 0.7) << "70 of 100 lines";
  for (int i = 0; i < 30; ++i) fewer += "The line here is an example of ending with ellipsis...\n";
  for (int i = 0; i < 230; ++i) fewer += std::string("This is a normal line.") + (i < 229 ? "\n" : "");
  auto few = llm::gopher_quality(fewer);
  EXPECT_TRUE(few.keep) << "30 of 260 lines = 0.115 <= 0.3; rejected by " << few.rule;
}

TEST_F(GopherTest, RepetitionCountsDuplicatesAndNgramsAsDatatroveDoes) {
  using Words = std::vector<std::string_view>;
  // Elements seen earlier: the 2nd and 3rd "a" and the 2nd "cc".
  EXPECT_EQ(llm::count_duplicates(Words{"a", "b", "a", "a", "cc", "cc"}), (std::pair<int64_t, int64_t>{3, 4}));
  EXPECT_EQ(llm::count_duplicates(Words{"x", "y"}), (std::pair<int64_t, int64_t>{0, 0}));
  // 2-grams of "a b a b c": "a b" twice, "b a", "b c": the top one is "a b", 3 characters (with the
  // space) times 2.
  EXPECT_EQ(llm::top_ngram_chars(Words{"a", "b", "a", "b", "c"}, 2), 6);
  EXPECT_EQ(llm::top_ngram_chars(Words{"a", "b"}, 3), 0) << "fewer words than n";
  // 5-grams of "a b c d e a b c d e": the second "abcde" (5 characters, no spaces) is the repeat.
  EXPECT_EQ(llm::duplicate_ngram_chars(Words{"a", "b", "c", "d", "e", "a", "b", "c", "d", "e"}, 5), 5);
  EXPECT_EQ(llm::duplicate_ngram_chars(Words{"a", "b", "c", "d", "e", "f"}, 5), 0);
}

TEST_F(GopherTest, AustenChaptersPassEveryRule) {
  const std::string text = AustenText("austen/train.txt", 200000);
  std::vector<size_t> starts;
  for (size_t pos = text.find("\nChapter "); pos != std::string::npos; pos = text.find("\nChapter ", pos + 1)) {
    starts.push_back(pos + 1);
  }
  ASSERT_GE(starts.size(), 6u);
  for (size_t i = 0; i + 1 < 6; ++i) {
    const std::string chapter = text.substr(starts[i], starts[i + 1] - starts[i]);
    auto quality = llm::gopher_quality(chapter);
    EXPECT_TRUE(quality.keep) << "chapter " << i + 1 << " rejected by " << quality.rule << " (" << quality.value
                              << ", limit " << quality.limit << ")";
    auto repetition = llm::gopher_repetition(chapter);
    EXPECT_TRUE(repetition.keep) << "chapter " << i + 1 << " rejected by " << repetition.rule << " ("
                                 << repetition.value << ", limit " << repetition.limit << ")";
  }
}

// ---------------------------------------------------------------------------------------- dedup

TEST_F(DedupTest, ExactDedupKeepsTheFirstCopy) {
  const std::vector<std::string> docs = {"a cat", "a dog", "a cat", "a bird", "a dog", "A cat", "a cat "};
  EXPECT_EQ(llm::exact_dedup(docs), (std::vector<bool>{true, true, false, true, false, true, true}))
      << "exact means byte-for-byte: \"A cat\" and \"a cat \" are different documents";
}

TEST_F(DedupTest, RepeatedLinesAreRemovedFromEveryDocument) {
  // CS336's exact line deduplication: a line that occurs twice anywhere is boilerplate, and every
  // copy goes, the first one too.
  const std::vector<std::string> docs = {"Home | About\nIt is a truth universally acknowledged\nCopyright 2024",
                                         "Home | About\nMr. Bennet replied that he had not.",
                                         "Chapter 1\nChapter 1\nCopyright 2024\nThis was invitation enough."};
  EXPECT_EQ(llm::remove_repeated_lines(docs),
            (std::vector<std::string>{"It is a truth universally acknowledged", "Mr. Bennet replied that he had not.",
                                      "This was invitation enough."}));
}

TEST_F(DedupTest, ShinglesAreTheDistinctHashedWordNgramsOfTheNormalisedText) {
  auto sorted = [](std::vector<uint64_t> v) {
    std::sort(v.begin(), v.end());
    return v;
  };
  // normalised: "the cat sat the cat sat"; its 2-grams "the cat", "cat sat", "sat the" (the rest repeat).
  EXPECT_EQ(llm::shingles("The cat sat. The CAT sat!", 2),
            sorted({llm::hash64("the cat"), llm::hash64("cat sat"), llm::hash64("sat the")}));
  EXPECT_EQ(llm::shingles("Hello,   world", 5), std::vector<uint64_t>{llm::hash64("hello world")})
      << "fewer words than n: one shingle of all the words";
  EXPECT_TRUE(llm::shingles(" ... ", 3).empty()) << "no words, no shingles";
  // Unigram sets {a, b, c, d} and {c, d, e, f}: 2 shared of 6.
  EXPECT_NEAR(llm::jaccard(llm::shingles("a b c d", 1), llm::shingles("c d e f", 1)), 2.0 / 6.0, 1e-12);
}

TEST_F(DedupTest, ShinglesIgnoreCaseAccentsPunctuationAndSpacing) {
  EXPECT_EQ(llm::normalize_for_dedup("Caf\xC3\xA9"), "cafe");
  EXPECT_EQ(llm::normalize_for_dedup("Cafe\xCC\x81"), "cafe") << "NFD: e + a combining acute accent";
  EXPECT_EQ(llm::normalize_for_dedup("  Hello,\tWORLD!!\n "), "hello world");
  EXPECT_EQ(llm::normalize_for_dedup("\xC3\x9Cn\xC3\xAF"
                                     "c\xC3\xB6"
                                     "d\xC3\xA9 fa\xC3\xA7"
                                     "ade"),
            "unicode facade");
  EXPECT_EQ(llm::shingles("Caf\xC3\xA9 au lait, s'il vous pla\xC3\xAEt!", 3),
            llm::shingles("cafe AU   lait s il\nvous plait", 3));
  EXPECT_NE(llm::shingles("cafe au lait", 3), llm::shingles("cafe au the", 3));
}

TEST_F(DedupTest, MinHashDedupRemovesANearDuplicateAndKeepsTheLowerIndex) {
  const auto paragraphs = lesson06::Paragraphs(AustenText("austen/train.txt", 60000), 90, 3);
  ASSERT_EQ(paragraphs.size(), 3u);
  // One word changed in a ~100-word paragraph: 5 of ~100 word 5-grams differ, Jaccard ~0.9.
  std::string edited = paragraphs[0];
  const size_t at = edited.find(" the ", edited.size() / 2);
  ASSERT_NE(at, std::string::npos);
  edited.replace(at, 5, " a ");
  const std::vector<std::string> docs = {edited, paragraphs[1], paragraphs[2], paragraphs[0]};
  llm::MinHashOptions options;
  options.num_hashes = 100, options.bands = 20;  // r = 5: P(candidate | J = 0.9) = 1 - (1 - 0.9^5)^20 > 0.9999
  auto result = llm::minhash_dedup(docs, options);
  EXPECT_EQ(result.keep, (std::vector<bool>{true, true, true, false})) << "the copy with the higher index goes";
  EXPECT_EQ(result.cluster, (std::vector<size_t>{0, 1, 2, 0}));
  EXPECT_EQ(result.duplicates, (std::vector<std::pair<size_t, size_t>>{{0, 3}}))
      << "unrelated paragraphs are not duplicates";
}

// -------------------------------------------------------------------------------------- quality

TEST_F(QualityTest, HashedFeaturesAreFnv1aUnigramsThenBigrams) {
  using lesson06::ReferenceFnv1a32;
  // FNV-1a test vectors (Fowler-Noll-Vo reference code).
  ASSERT_EQ(ReferenceFnv1a32(""), 2166136261u);
  ASSERT_EQ(ReferenceFnv1a32("a"), 0xE40C292Cu);
  ASSERT_EQ(ReferenceFnv1a32("foobar"), 0xBF9CF968u);
  EXPECT_EQ(llm::fnv1a32("foobar"), 0xBF9CF968u);
  for (int64_t K : {int64_t{1} << 18, int64_t{1009}}) {
    const uint64_t the = ReferenceFnv1a32("the"), cat = ReferenceFnv1a32("cat"), sat = ReferenceFnv1a32("sat");
    // fastText's bigram hash h(u) * 116049371 + h(v), in 64 bits, then mod K.
    const std::vector<int64_t> expected = {
        static_cast<int64_t>(the % K), static_cast<int64_t>(cat % K), static_cast<int64_t>(sat % K),
        static_cast<int64_t>((the * 116049371ull + cat) % K), static_cast<int64_t>((cat * 116049371ull + sat) % K)};
    EXPECT_EQ(llm::hashed_features("The CAT  sat", K), expected)
        << "K = " << K << ": lowercased words, every unigram, then every adjacent pair";
  }
  EXPECT_TRUE(llm::hashed_features(" \n ", 100).empty());
  EXPECT_EQ(llm::hashed_features("word", 100).size(), 1u) << "one word: one unigram, no bigram";
}

TEST_F(QualityTest, RocAucIsTheShareOfPositiveNegativePairsRankedRightWithTiesHalf) {
  EXPECT_DOUBLE_EQ(llm::roc_auc({0.5, 0.5}, {0.5, 0.5, 0.5}), 0.5) << "all tied: every pair counts one half";
  EXPECT_DOUBLE_EQ(llm::roc_auc({0.9, 0.8}, {0.1, 0.2, 0.3}), 1.0);
  EXPECT_DOUBLE_EQ(llm::roc_auc({0.1}, {0.9, 0.8}), 0.0);
  // Pairs (positive, negative): (0.9, 0.4) 1, (0.9, 0.2) 1, (0.4, 0.4) 1/2, (0.4, 0.2) 1, (0.6, 0.4) 1,
  // (0.6, 0.2) 1: 5.5 of 6.
  EXPECT_NEAR(llm::roc_auc({0.9, 0.4, 0.6}, {0.4, 0.2}), 5.5 / 6.0, 1e-12);
}

}  // namespace
