// Lesson 01, basic: configs and tokenizers doing their core job.
// Grade with:  ctest --preset default -R lesson01.basic
#include "tokenizer_files.h"

#include <llm/common/testing.h>
#include <llm/config/run_config.h>
#include <llm/tokenizer/bpe_files.h>
#include <llm/tokenizer/bpe_trainer.h>
#include <llm/tokenizer/byte_tokenizer.h>
#include <llm/tokenizer/gpt2_bytes.h>
#include <llm/tokenizer/pretokenizer.h>
#include <llm/tokenizer/tokenizer_json.h>

#include <filesystem>

namespace {

using llm::testing::ThrowsWith;
using Ids = std::vector<llm::TokenId>;

// ------------------------------------------------------------------------------------------ config

TEST(ModelConfigTest, DerivesHeadDimGroupsAndFeedForwardWidth) {
  llm::ModelConfig c;  // C 256, H 8, Hkv 4, multiple_of 16
  EXPECT_EQ(c.head_dim(), 32) << "D = C / H = 256 / 8";
  EXPECT_EQ(c.kv_groups(), 2) << "H / Hkv = 8 / 4 query heads share each key/value head";
  EXPECT_EQ(c.ffn_hidden_size(), 688) << "floor(2 * 4 * 256 / 3) = 682, rounded up to a multiple of 16";
  c.intermediate_size = 1000;
  EXPECT_EQ(c.ffn_hidden_size(), 1000) << "an explicit intermediate_size wins";
}

TEST(ModelConfigTest, AnExplicitHeadDimReplacesCOverH) {
  llm::ModelConfig c;  // Qwen3-0.6B: C 1024, 16 heads of D 128 (H D = 2048 != C)
  c.hidden_size = 1024, c.num_attention_heads = 16, c.num_key_value_heads = 8, c.head_dim_override = 128;
  EXPECT_EQ(c.head_dim(), 128) << "head_dim_override when it is set";
  c.head_dim_override = 0;
  EXPECT_EQ(c.head_dim(), 64) << "C / H when it is not";
}

TEST(ModelConfigTest, LlamaFeedForwardRuleGivesLlama7BWidth) {
  EXPECT_EQ(llm::llama_ffn_hidden_size(4096, 256), 11008) << "Llama-7B's intermediate_size";
  EXPECT_EQ(llm::llama_ffn_hidden_size(128, 16), 352) << "floor(1024 / 3) = 341 -> 352";
}

TEST(ModelConfigTest, CountsTheParametersOfTheTinyPreset) {
  auto c = llm::ModelConfig::preset("tiny");  // V 4096, C 128, L 4, H 4, Hkv 2, D 32, F 352
  // embed 4096*128 = 524,288; per layer: q 16,384 + k 8,192 + v 8,192 + o 16,384 + MLP 3*128*352 =
  // 135,168 + norms 256 = 184,576, times 4 = 738,304; final norm 128; lm_head 524,288.
  EXPECT_EQ(c.num_parameters(), 1787008);
  c.tie_word_embeddings = true;
  EXPECT_EQ(c.num_parameters(), 1787008 - 524288) << "a tied lm_head adds no parameters";
}

TEST(RunConfigTest, ParsesAPresetWithOverrides) {
  auto config = llm::parse_run_config(R"(
model:
  preset: tiny
  num_hidden_layers: 6
  tie_word_embeddings: true
train:
  batch_size: 32
  learning_rate: 3e-4
  dtype: bfloat16
)");
  EXPECT_EQ(config.model.hidden_size, 128) << "from the preset";
  EXPECT_EQ(config.model.num_hidden_layers, 6) << "overridden";
  EXPECT_TRUE(config.model.tie_word_embeddings);
  EXPECT_EQ(config.train.batch_size, 32);
  EXPECT_DOUBLE_EQ(config.train.learning_rate, 3e-4);
  EXPECT_EQ(config.train.dtype, "bfloat16");
  EXPECT_EQ(config.train.seq_len, llm::TrainConfig{}.seq_len) << "unnamed keys keep their defaults";
}

TEST(RunConfigTest, SavedFileLoadsBackEqual) {
  llm::RunConfig config;
  config.model = llm::ModelConfig::preset("medium");
  config.train.max_steps = 1234;
  config.train.out_dir = "runs/some where";
  const auto dir = std::filesystem::temp_directory_path() / ("lesson01_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "run.yaml").string();
  llm::save_run_config(config, path);
  auto loaded = llm::load_run_config(path);
  std::filesystem::remove_all(dir);
  EXPECT_EQ(llm::to_yaml_string(loaded), llm::to_yaml_string(config));
  EXPECT_EQ(loaded.model.vocab_size, 8192);
  EXPECT_EQ(loaded.train.max_steps, 1234);
}

TEST(RunConfigTest, UnknownKeySuggestsTheNearestValidKey) {
  EXPECT_TRUE(ThrowsWith([] { llm::parse_run_config("model:\n  num_hiden_layers: 3\n"); },
                         {"num_hiden_layers", "did you mean 'num_hidden_layers'"}));
}

TEST(RunConfigTest, HeadsThatDoNotDivideTheWidthAreRejected) {
  EXPECT_TRUE(ThrowsWith([] { llm::parse_run_config("model:\n  hidden_size: 250\n  num_attention_heads: 8\n"); },
                         {"hidden_size 250", "num_attention_heads 8", "248", "256"}));
}

// -------------------------------------------------------------------------------------- tokenizers

TEST(ByteTokenizerTest, OneIdPerByteAndBack) {
  llm::ByteTokenizer tok;
  EXPECT_EQ(tok.vocab_size(), 256);
  // "é" is two UTF-8 bytes, 0xC3 0xA9: ids must be 195 and 169, never negative.
  const Ids expected = {104, 195, 169, 108, 108, 111};
  EXPECT_EQ(tok.encode("h\xC3\xA9llo"), expected);
  EXPECT_EQ(tok.decode(expected), "h\xC3\xA9llo");
}

TEST(ByteTokenizerTest, SpecialTokensAreSingleIdsAfterTheBytes) {
  llm::ByteTokenizer tok({"<|endoftext|>"});
  EXPECT_EQ(tok.vocab_size(), 257);
  EXPECT_EQ(tok.encode("a<|endoftext|>b"), (Ids{97, 256, 98}));
  EXPECT_EQ(tok.decode({97, 256, 98}), "a<|endoftext|>b");
}

TEST(Gpt2BytesTest, SpaceAndNewlineGetGpt2sStandIns) {
  const auto cp = llm::gpt2_byte_codepoints();
  EXPECT_EQ(cp['A'], static_cast<uint32_t>('A')) << "printable bytes stand for themselves";
  EXPECT_EQ(cp[' '], 0x120u) << "space is 'Ġ' (U+0120)";
  EXPECT_EQ(cp['\n'], 0x10Au) << "newline is 'Ċ' (U+010A)";
  EXPECT_EQ(cp[0], 0x100u) << "the first non-printable byte gets U+0100";
  EXPECT_EQ(llm::bytes_to_gpt2_text(" the"), "\xC4\xA0the") << "' the' is written 'Ġthe'";
}

TEST(PreTokenizerTest, SplitsLikeGpt2) {
  llm::Gpt2PreTokenizer pre;
  const std::vector<std::string_view> expected = {"Hello", " world", "'s", " ", " end", "!!", " 42"};
  EXPECT_EQ(pre.split("Hello world's  end!! 42"), expected)
      << "letters, a contraction, whitespace leaving one space for the next word, punctuation, digits";
}

// Hugging Face's Split behaviours on the example of their docs (tokenizers, normalizer.rs,
// SplitDelimiterBehavior): "the-final--countdown" cut at "-".
TEST(PreTokenizerTest, SplitBehavioursFollowHuggingFacesExample) {
  const llm::RegexPreTokenizer dash("-");
  const auto pieces = dash.find_matches("the-final--countdown");
  using V = std::vector<std::string_view>;
  using B = llm::SplitBehavior;
  EXPECT_EQ(llm::apply_split_behavior(pieces, B::kIsolated), (V{"the", "-", "final", "-", "-", "countdown"}));
  EXPECT_EQ(llm::apply_split_behavior(pieces, B::kRemoved), (V{"the", "final", "countdown"}));
  EXPECT_EQ(llm::apply_split_behavior(pieces, B::kMergedWithPrevious), (V{"the-", "final-", "-", "countdown"}));
  EXPECT_EQ(llm::apply_split_behavior(pieces, B::kMergedWithNext), (V{"the", "-final", "-", "-countdown"}));
  EXPECT_EQ(llm::apply_split_behavior(pieces, B::kContiguous), (V{"the", "-", "final", "--", "countdown"}));
}

// SmolLM2's pre-tokenizer puts every digit in a piece of its own before GPT-2's regex, so no merge
// ever joins two digits: the tokenizer of data/hf/smollm2_style has merges "1 2", "Ġ 1" and "2 0"
// (ids 259-261) that a correct pipeline can never use.
TEST(HfTokenizerTest, SmolLM2StyleSplitsEveryDigitAlone) {
  ASSERT_TRUE(lesson01::HfTokenizerPresent("smollm2_style"));
  auto tok = llm::load_tokenizer_folder(lesson01::HfTokenizerDir("smollm2_style"));
  const Ids ids = tok.encode("In 2024, 12 of the 120 apples were there.");
  for (llm::TokenId unreachable : {259, 260, 261}) {
    EXPECT_EQ(std::count(ids.begin(), ids.end(), unreachable), 0) << "token " << unreachable << " joins digits";
  }
  for (const auto& c : lesson01::HfGolden("smollm2_style")["cases"]) {
    EXPECT_EQ(tok.encode(c["text"].get<std::string>()), c["ids"].get<Ids>()) << c["name"];
  }
}

// Llama 3 and Qwen3 on short texts where their regexes differ from GPT-2's: numbers in groups of
// three (Llama 3) or one by one (Qwen), upper-case contractions, a symbol glued to a word, and the
// special tokens each one knows. Expected ids: Hugging Face's own implementation (the golden file).
TEST(HfTokenizerTest, Llama3AndQwen3EncodeLikeTheReference) {
  for (const std::string name : {"llama3", "qwen3"}) {
    ASSERT_TRUE(lesson01::HfTokenizerPresent(name));
    auto tok = llm::load_tokenizer_folder(lesson01::HfTokenizerDir(name));
    for (const auto& c : lesson01::HfGolden(name)["cases"]) {
      const std::string case_name = c["name"];
      if (case_name != "digits_12345" && case_name != "space_digits_12345" && case_name != "contractions_upper" &&
          case_name != "chatml_in_text" && case_name != "short_sentence" && case_name != "punctuation_mix")
        continue;
      EXPECT_EQ(tok.encode(c["text"].get<std::string>()), c["ids"].get<Ids>()) << name << ": " << case_name;
    }
  }
}

TEST(BpeTrainerTest, MergesTheMostFrequentPairFirst) {
  // Pieces: "ab", " ab", " ab", " ab". Pairs: (a, b) x4, (' ', a) x3.
  // Merge 1: a+b -> 256 "ab". Then (' ', 256) x3 -> 257 " ab". Then nothing occurs twice.
  llm::BpeTrainingOptions options;
  options.vocab_size = 300;
  auto tok = llm::train_bpe("ab ab ab ab", options);
  ASSERT_EQ(tok.merges().size(), 2u) << "training stops when no pair occurs at least twice";
  EXPECT_EQ(tok.token_bytes(256), "ab");
  EXPECT_EQ(tok.token_bytes(257), " ab");
  EXPECT_EQ(tok.encode("ab ab"), (Ids{256, 257}));
}

TEST(BpeTrainerTest, TrainedTokenizerRoundTripsAndCompresses) {
  const std::string train = lesson01::ReadText(llm::testing::DataPath("austen/train.txt"), 200000);
  const std::string val = lesson01::ReadText(llm::testing::DataPath("austen/val.txt"), 50000);
  ASSERT_GT(train.size(), 100000u) << "the built-in corpus is missing";
  llm::BpeTrainingOptions options;
  options.vocab_size = 1024;
  auto tok = llm::train_bpe(train, options);
  EXPECT_EQ(tok.vocab_size(), 1024);
  const auto ids = tok.encode(val);
  EXPECT_EQ(tok.decode(ids), val) << "decode(encode(x)) == x on held-out text";
  const double bytes_per_token = static_cast<double>(val.size()) / ids.size();
  // Measured in this setting (200 KB to train, 50 KB held out): 2.61 bytes/token; bytes alone give
  // 1.0, and GPT-2's 50k vocabulary 4.06 on the whole held-out novel.
  EXPECT_GT(bytes_per_token, 2.5) << "1024 tokens trained on 200 KB of Austen compress her prose past 2.5 bytes/token";
}

TEST(Gpt2TokenizerTest, EncodesExactlyLikeGpt2) {
  ASSERT_TRUE(lesson01::Gpt2FilesPresent());
  auto tok = llm::load_gpt2_files(lesson01::Gpt2Dir() + "/encoder.json", lesson01::Gpt2Dir() + "/vocab.bpe");
  EXPECT_EQ(tok.vocab_size(), 50257);
  // GPT-2's ids for this string, as npm's tiktoken and gpt-tokenizer both give them.
  const Ids expected = {15496, 995, 11, 6184, 120, 77, 26884, 66, 9101, 67, 2634, 12520, 248, 222};
  EXPECT_EQ(tok.encode("Hello world, \xC3\xBCn\xC3\xAF"
                       "c\xC3\xB6"
                       "d\xC3\xA9 \xF0\x9F\x9A\x80"),
            expected);
  EXPECT_EQ(tok.decode(expected),
            "Hello world, \xC3\xBCn\xC3\xAF"
            "c\xC3\xB6"
            "d\xC3\xA9 \xF0\x9F\x9A\x80");
}

}  // namespace
