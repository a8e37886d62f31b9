// System tests of what the programs share (programs/lib and common/): file formats, model
// folders, configuration overrides, streaming text. Not a lesson: these run against the reference
// build only (ctest -L system).
#include <llm/cli/config.h>
#include <llm/cli/hf_folder.h>
#include <llm/cli/run.h>
#include <llm/cli/tasks.h>
#include <llm/cli/text.h>
#include <llm/common/paths.h>
#include <llm/common/safetensors.h>
#include <llm/common/testing.h>
#include <llm/config/train_config.h>
#include <llm/data/sft.h>
#include <llm/tokenizer/bpe_files.h>
#include <llm/tokenizer/bpe_trainer.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>

namespace {

namespace fs = std::filesystem;
using llm::testing::AllClose;
using llm::testing::ThrowsWith;

std::string TempDir(const std::string& name) {
  const auto dir = fs::temp_directory_path() / ("llm-system-" + name + "-" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir.string();
}

llm::BpeTokenizer SmallTokenizer() {
  llm::BpeTrainingOptions options;
  options.vocab_size = 300;
  options.special_tokens = {"<|endoftext|>", "<|user|>", "<|assistant|>", "<|end|>"};
  std::ifstream in(llm::testing::DataPath("austen/train.txt"));
  std::string text(20000, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  return llm::train_bpe(text, options);
}

llm::ModelConfig SmallModel(int64_t vocab) {
  llm::ModelConfig c;
  c.vocab_size = vocab;
  c.hidden_size = 32;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.max_position_embeddings = 64;
  c.multiple_of = 8;
  return c;
}

class Safetensors : public llm::testing::SeededTest {};
class HfFolder : public llm::testing::SeededTest {};
class Config : public ::testing::Test {};
class Text : public ::testing::Test {};
class Metrics : public ::testing::Test {};
class Tasks : public ::testing::Test {};

TEST_F(Safetensors, RoundTripsEveryDtypeAndTheMetadata) {
  llm::TensorMap tensors = {{"a", torch::randn({2, 3})},
                            {"b", torch::randn({4}).to(torch::kBFloat16)},
                            {"c", torch::arange(5, torch::kLong)},
                            {"d", torch::zeros({0, 3})},
                            {"e", torch::tensor(7, torch::kInt32)}};
  const auto bytes = llm::encode_safetensors(tensors, {{"note", "hello"}});
  const auto file = llm::decode_safetensors(bytes, "<memory>");
  ASSERT_EQ(file.tensors.size(), tensors.size());
  for (const auto& [name, t] : tensors) {
    ASSERT_EQ(file.tensors.at(name).scalar_type(), t.scalar_type()) << name;
    EXPECT_TRUE(torch::equal(file.tensors.at(name), t)) << name;
  }
  EXPECT_EQ(file.metadata.at("format"), "pt") << "transformers refuses a file without format: pt";
  EXPECT_EQ(file.metadata.at("note"), "hello");
}

TEST_F(Safetensors, FollowsTheFormatByteForByte) {
  // One F32 tensor [1, 2]: 8-byte little-endian header length, the JSON padded with spaces to a
  // multiple of 8, then the raw floats.
  const auto bytes = llm::encode_safetensors({{"x", torch::tensor({1.0f, 2.0f})}});
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ(n % 8, 0u);
  ASSERT_EQ(bytes.size(), 8 + n + 8);
  const auto header = nlohmann::json::parse(bytes.substr(8, n));
  EXPECT_EQ(header["x"]["dtype"], "F32");
  EXPECT_EQ(header["x"]["shape"], nlohmann::json::array({2}));
  EXPECT_EQ(header["x"]["data_offsets"], nlohmann::json::array({0, 8}));
  float values[2];
  std::memcpy(values, bytes.data() + 8 + n, 8);
  EXPECT_EQ(values[0], 1.0f);
  EXPECT_EQ(values[1], 2.0f);
}

TEST_F(Safetensors, RejectsTruncatedAndInconsistentFilesWithClearErrors) {
  const auto bytes = llm::encode_safetensors({{"x", torch::randn({4, 4})}});
  EXPECT_TRUE(ThrowsWith([&] { llm::decode_safetensors(bytes.substr(0, 5), "f"); }, {"f", "too short"}));
  EXPECT_TRUE(ThrowsWith([&] { llm::decode_safetensors(bytes.substr(0, bytes.size() - 4), "f"); }, {"f", "x"}));
  EXPECT_TRUE(ThrowsWith([&] { llm::decode_safetensors(bytes + "junk", "f"); }, {"bytes after the last tensor"}));
  std::string bad = bytes;
  bad[8] = '[';  // the header is no longer a JSON object
  EXPECT_TRUE(ThrowsWith([&] { llm::decode_safetensors(bad, "f"); }, {"f"}));
  std::string huge = bytes;
  const uint64_t n = uint64_t{1} << 40;
  std::memcpy(huge.data(), &n, 8);
  EXPECT_TRUE(ThrowsWith([&] { llm::decode_safetensors(huge, "f"); }, {"header length", "exceeds"}));
}

TEST_F(HfFolder, RoundTripGivesTheSameLogits) {
  const auto tok = SmallTokenizer();
  for (bool tied : {false, true}) {
    auto config = SmallModel(tok.vocab_size());
    config.tie_word_embeddings = tied;
    llm::CausalLM model(config);
    model->eval();
    const auto dir = TempDir(tied ? "hf-tied" : "hf") + "/final";
    llm::cli::save_hf_folder(dir, model, tok);
    for (const char* f :
         {"model.safetensors", "config.json", "generation_config.json", "vocab.json", "merges.txt", "tokenizer.json",
          "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"}) {
      EXPECT_TRUE(fs::exists(fs::path(dir) / f)) << f;
    }
    auto loaded = llm::cli::load_hf_folder(dir);
    EXPECT_EQ(loaded.tokenizer.vocab_size(), tok.vocab_size());
    EXPECT_EQ(loaded.config.tie_word_embeddings, tied);
    auto ids = torch::randint(0, config.vocab_size, {2, 11});
    torch::NoGradGuard no_grad;
    EXPECT_TRUE(AllClose(loaded.model(ids), model(ids), 0, 0)) << "fp32 weights are stored exactly";
    const std::string text = "It is a truth universally acknowledged.";
    EXPECT_EQ(loaded.tokenizer.encode(text), tok.encode(text)) << "the tokenizer travels with the model";
  }
}

TEST_F(HfFolder, AnIndependentPyTorchLlamaComputesTheSameLogits) {
  // benchmarks/peer_llama.py is Hugging Face's LlamaForCausalLM written in plain PyTorch (Debian's
  // python3-torch): it reads only config.json and model.safetensors. Equal logits mean the folder
  // says what the C++ model computes: names, shapes, GQA layout, RoPE pairing, norms, tying.
  const auto tok = SmallTokenizer();
  for (bool tied : {false, true}) {
    auto config = SmallModel(tok.vocab_size());
    config.tie_word_embeddings = tied;
    llm::CausalLM model(config);
    {
      torch::NoGradGuard no_grad;  // norm weights away from 1, so a norm applied wrongly shows
      for (auto& p : model->named_parameters()) {
        if (p.key().find("norm") != std::string::npos) p.value().uniform_(0.5, 1.5);
      }
    }
    model->eval();
    const auto dir = TempDir(tied ? "peer-tied" : "peer") + "/m";
    llm::cli::save_hf_folder(dir, model, tok);
    const std::vector<int64_t> ids = {5, 77, 3, 250, 299, 41, 8, 8, 120};
    std::string command = "/usr/bin/python3 " + std::string(llm::kSourceDir) +
                          "/benchmarks/peer_llama.py logits --model " + dir + " --ids " +
                          fmt::format("{}", fmt::join(ids, ","));
    FILE* pipe = popen(command.c_str(), "r");
    ASSERT_NE(pipe, nullptr);
    std::string out;
    char buffer[65536];
    for (size_t n; (n = fread(buffer, 1, sizeof buffer, pipe)) > 0;) out.append(buffer, n);
    ASSERT_EQ(pclose(pipe), 0) << "the peer failed (is python3-torch installed? scripts/setup.sh installs it): "
                               << command;
    const auto peer = nlohmann::json::parse(out).get<std::vector<std::vector<double>>>();
    torch::NoGradGuard no_grad;
    auto ours = model(torch::tensor(ids).view({1, -1}))[0];
    ASSERT_EQ(static_cast<int64_t>(peer.size()), ours.size(0));
    auto theirs = torch::empty_like(ours);
    for (size_t t = 0; t < peer.size(); ++t) theirs[t] = torch::tensor(peer[t]);
    // Two fp32 implementations with different op orders (and RoPE angles in fp64 vs fp32): ~1e-6.
    EXPECT_TRUE(AllClose(ours, theirs, 1e-4, 1e-4)) << (tied ? "tied" : "untied");
  }
}

TEST_F(HfFolder, WritesLlamaConfigAndTheMergesVersionLine) {
  const auto tok = SmallTokenizer();
  llm::CausalLM model(SmallModel(tok.vocab_size()));
  const auto dir = TempDir("hf-config") + "/m";
  llm::cli::save_hf_folder(dir, model, tok);
  const auto config = nlohmann::json::parse(llm::read_file(dir + "/config.json"));
  EXPECT_EQ(config["architectures"][0], "LlamaForCausalLM");
  EXPECT_EQ(config["model_type"], "llama");
  EXPECT_EQ(config["num_key_value_heads"], 2);
  EXPECT_EQ(config["hidden_act"], "silu");
  EXPECT_EQ(config["intermediate_size"], model->config.ffn_hidden_size());
  EXPECT_EQ(config["rope_parameters"]["rope_theta"], config["rope_theta"]);
  const auto merges = llm::read_file(dir + "/merges.txt");
  EXPECT_EQ(merges.rfind("#version: 0.2\n", 0), 0u) << "GPT2Tokenizer drops the first line of merges.txt";
  const auto weights = llm::load_safetensors(dir + "/model.safetensors");
  EXPECT_EQ(weights.metadata.at("format"), "pt");
  EXPECT_TRUE(weights.tensors.count("model.layers.1.mlp.down_proj.weight"));
  EXPECT_TRUE(weights.tensors.count("lm_head.weight"));
}

TEST_F(HfFolder, Bf16ExportHalvesTheWeightsAndStaysClose) {
  const auto tok = SmallTokenizer();
  llm::CausalLM model(SmallModel(tok.vocab_size()));
  model->eval();
  const auto root = TempDir("hf-bf16");
  llm::cli::save_hf_folder(root + "/f32", model, tok);
  llm::cli::SaveOptions bf16;
  bf16.dtype = "bfloat16";
  llm::cli::save_hf_folder(root + "/bf16", model, tok, bf16);
  const auto small = fs::file_size(root + "/bf16/model.safetensors"),
             big = fs::file_size(root + "/f32/model.safetensors");
  EXPECT_LT(small, big * 0.51 + 4096);
  auto loaded = llm::cli::load_hf_folder(root + "/bf16");
  auto ids = torch::randint(0, tok.vocab_size(), {1, 9});
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(AllClose(loaded.model(ids), model(ids), 0.05, 0.05)) << "weights rounded to bf16";
}

TEST_F(HfFolder, NeverOverwritesAndNamesWhatIsMissing) {
  const auto tok = SmallTokenizer();
  llm::CausalLM model(SmallModel(tok.vocab_size()));
  const auto dir = TempDir("hf-exists");
  EXPECT_TRUE(ThrowsWith([&] { llm::cli::save_hf_folder(dir, model, tok); }, {"already exists"}));
  EXPECT_TRUE(ThrowsWith([&] { llm::cli::load_hf_folder(dir); }, {"config.json"}));
  EXPECT_TRUE(ThrowsWith([&] { llm::cli::load_hf_folder(dir + "/nope"); }, {"no such directory"}));
}

TEST_F(HfFolder, RefusesArchitecturesAndSettingsItCannotRun) {
  nlohmann::json j = {{"model_type", "gpt2"}, {"architectures", {"GPT2LMHeadModel"}}};
  EXPECT_TRUE(ThrowsWith([&] { llm::cli::model_config_from_hf_json(j, "config.json"); },
                         {"GPT2LMHeadModel", "LlamaForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM"}));
  const auto tok = SmallTokenizer();
  auto good = llm::cli::hf_config_json(SmallModel(tok.vocab_size()), tok, "float32");
  good["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 2.0}};
  EXPECT_TRUE(ThrowsWith([&] { llm::cli::model_config_from_hf_json(good, "c.json"); }, {"yarn", "llama3", "linear"}));
  good["rope_scaling"] = nullptr;
  good["hidden_act"] = "relu";
  EXPECT_TRUE(ThrowsWith([&] { llm::cli::model_config_from_hf_json(good, "c.json"); }, {"relu", "silu"}));
  good["hidden_act"] = "silu";
  good["mlp_bias"] = true;
  EXPECT_TRUE(ThrowsWith([&] { llm::cli::model_config_from_hf_json(good, "c.json"); }, {"mlp_bias"}));
  good["mlp_bias"] = false;
  good["architectures"] = {"Qwen2ForCausalLM"};
  EXPECT_TRUE(ThrowsWith([&] { llm::cli::model_config_from_hf_json(good, "c.json"); }, {"qwen2", "llama"}))
      << "architectures and model_type must agree";
  good["model_type"] = "qwen2";
  good["use_sliding_window"] = true;
  EXPECT_TRUE(ThrowsWith([&] { llm::cli::model_config_from_hf_json(good, "c.json"); }, {"use_sliding_window"}));
}

TEST_F(Config, OverridesGoThroughTheSameValidationAsTheFile) {
  llm::ModelConfig model;
  llm::TrainConfig train;
  llm::cli::ConfigSections sections;
  sections.add_model("model", model);
  sections.add("train", train);
  const auto dir = TempDir("config");
  llm::write_file_atomically(dir + "/c.yaml", "model:\n  preset: small\ntrain:\n  max_steps: 50\n");
  sections.load(dir + "/c.yaml", {"train.learning_rate=3e-4", "model.num_hidden_layers=6", "train.max_steps=700",
                                  "train.warmup_steps=7"});
  EXPECT_EQ(model.hidden_size, 256) << "the preset";
  EXPECT_EQ(model.num_hidden_layers, 6) << "an override after the preset";
  EXPECT_DOUBLE_EQ(train.learning_rate, 3e-4);
  EXPECT_EQ(train.max_steps, 700) << "the override wins over the file";
  EXPECT_NE(sections.to_yaml_string().find("learning_rate: 0.0003"), std::string::npos);
}

// dtype: auto is decided by the CPU, said in the resolved configuration, and never overrides a
// dtype the user named. The mistake it catches: bf16 chosen on a CPU without bf16 instructions,
// where it is emulated (a 250-step test pretraining took over 10 minutes instead of ~30 s).
TEST_F(Config, AutoDtypeIsBfloat16OnlyWhereTheCpuHasBf16InstructionsAndSaysSo) {
  llm::ModelConfig model;
  llm::TrainConfig train;
  llm::cli::ConfigSections sections;
  sections.add_model("model", model);
  sections.add("train", train);
  std::string why;
  const std::string expected = llm::cli::cpu_has_bf16_instructions(&why) ? "bfloat16" : "float32";
  std::string flags;
  {
    std::ifstream in("/proc/cpuinfo");
    for (std::string line; std::getline(in, line);) {
      if (line.rfind("flags", 0) == 0) {
        flags = line + " ";
        break;
      }
    }
  }
  const bool listed = flags.find(" avx512_bf16 ") != std::string::npos || flags.find(" amx_bf16 ") != std::string::npos;
  EXPECT_EQ(expected, listed ? "bfloat16" : "float32") << why;

  sections.load("", {"train.dtype=auto"});
  EXPECT_EQ(train.dtype, expected);
  ASSERT_EQ(sections.notes().size(), 1u);
  EXPECT_EQ(sections.notes()[0].rfind("train.dtype: auto -> " + expected + " (", 0), 0u) << sections.notes()[0];
  EXPECT_EQ(sections.to_yaml_string().rfind("# train.dtype: auto -> " + expected, 0), 0u)
      << "the resolved configuration, printed and saved, starts with the decision";

  sections.load("", {"train.dtype=bfloat16"});
  EXPECT_EQ(train.dtype, "bfloat16") << "a dtype the user names is kept";
  EXPECT_TRUE(sections.notes().empty());
  EXPECT_TRUE(ThrowsWith([&] { sections.load("", {"train.dtype=bf16"}); }, {"bf16", "float32", "bfloat16"}));
}

TEST_F(Config, UnknownKeysAndBadValuesAreErrorsThatSayWhatIsValid) {
  llm::ModelConfig model;
  llm::TrainConfig train;
  llm::cli::ConfigSections sections;
  sections.add_model("model", model);
  sections.add("train", train);
  EXPECT_TRUE(ThrowsWith([&] { sections.load("", {"train.lerning_rate=1"}); }, {"lerning_rate", "learning_rate"}));
  EXPECT_TRUE(ThrowsWith([&] { sections.load("", {"trian.max_steps=1"}); }, {"trian", "train"}));
  EXPECT_TRUE(ThrowsWith([&] { sections.load("", {"train.max_steps=ten"}); }, {"train.max_steps", "integer", "ten"}));
  EXPECT_TRUE(ThrowsWith([&] { sections.load("", {"max_steps=10"}); }, {"section.key=value"}));
  EXPECT_TRUE(ThrowsWith([&] { sections.load("", {"train.warmup_steps=5000"}); }, {"warmup_steps"}));
}

TEST_F(Text, ChaptersAreDocumentsAndBlankOnesAreDropped) {
  const std::string text = "Title\n\nChapter 1\n\nOne.\nCHAPTER 2\nTwo.\n  \n";
  const auto docs = llm::cli::split_documents(text, "chapters");
  ASSERT_EQ(docs.size(), 3u);
  EXPECT_EQ(docs[0], "Title\n\n");
  EXPECT_EQ(docs[1], "Chapter 1\n\nOne.\n");
  EXPECT_EQ(docs[2], "CHAPTER 2\nTwo.\n  \n");
  EXPECT_EQ(llm::cli::split_documents("a\n\nb\n\n\n", "paragraphs").size(), 2u);
  EXPECT_EQ(llm::cli::split_documents(llm::read_file(llm::testing::DataPath("austen/val.txt")), "chapters").size(), 25u)
      << "Persuasion: the title page and 24 chapters";
}

TEST_F(Text, Utf8StreamNeverSplitsACharacter) {
  const std::string text = "a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x9A\x80z";  // a é € 🚀 z
  for (size_t cut = 0; cut <= text.size(); ++cut) {
    for (size_t cut2 = cut; cut2 <= text.size(); ++cut2) {
      llm::cli::Utf8Stream s;
      std::vector<std::string> pieces = {s.push(text.substr(0, cut)), s.push(text.substr(cut, cut2 - cut)),
                                         s.push(text.substr(cut2)), s.flush()};
      std::string joined;
      for (const auto& p : pieces) {
        EXPECT_EQ(llm::cli::incomplete_utf8_suffix(p), 0u)
            << "a piece ends inside a character: cuts " << cut << ", " << cut2;
        joined += p;
      }
      EXPECT_EQ(joined, text);
    }
  }
}

TEST_F(Metrics, AResumedLogDropsTheLinesAfterItsCheckpoint) {
  const auto path = TempDir("metrics") + "/m.jsonl";
  {
    llm::cli::MetricsLog log(path);
    for (int s = 1; s <= 7; ++s) log.log({{"step", s}, {"loss", 10 - s}});
  }
  std::ofstream(path, std::ios::app) << "{\"step\": 8, \"lo";  // a line cut by a kill
  {
    llm::cli::MetricsLog log(path, /*keep_until_step=*/4);
    log.log({{"step", 5}, {"loss", 0.5}});
  }
  const auto records = llm::cli::read_metrics(path);
  ASSERT_EQ(records.size(), 5u);
  EXPECT_EQ(records.back()["step"], 5);
  EXPECT_EQ(records.back()["loss"], 0.5);
}

}  // namespace

// ---- the built-in tasks (programs/lib/tasks.cpp) ----

TEST_F(Tasks, ExamplesArePureFunctionsOfTaskSplitSeedAndIndex) {
  using llm::cli::Split;
  for (const auto& task : llm::cli::task_names()) {
    const auto a = llm::cli::make_task_example(task, Split::kTrain, 7, 42);
    const auto b = llm::cli::make_task_example(task, Split::kTrain, 7, 42);
    EXPECT_EQ(a.prompt, b.prompt) << task;
    EXPECT_EQ(a.answer, b.answer) << task;
    EXPECT_NE(llm::cli::make_task_example(task, Split::kTrain, 8, 42).prompt + "|" +
                  llm::cli::make_task_example(task, Split::kTrain, 7, 43).prompt,
              a.prompt + "|" + a.prompt)
        << task << ": another seed or index gives another example";
  }
  const auto add = llm::cli::make_task_example("add", Split::kTrain, 1, 0);
  int x = 0, y = 0;
  ASSERT_EQ(std::sscanf(add.prompt.c_str(), "What is %d + %d?", &x, &y), 2) << add.prompt;
  EXPECT_EQ(add.answer, std::to_string(x + y));
  EXPECT_TRUE(
      ThrowsWith([] { llm::cli::make_task_example("mul", Split::kTrain, 1, 0); }, {"mul", "add, sub, capital"}));
  EXPECT_TRUE(ThrowsWith([] { llm::cli::parse_task_list("add,,sub"); }, {"''", "valid tasks"}));
}

TEST_F(Tasks, TrainAndTestSplitsNeverShareAnArithmeticProblem) {
  using llm::cli::Split;
  for (const std::string task : {"add", "sub"}) {
    std::set<std::string> train, test;
    for (int64_t i = 0; i < 3000; ++i) train.insert(llm::cli::make_task_example(task, Split::kTrain, 3, i).prompt);
    for (int64_t i = 0; i < 600; ++i) test.insert(llm::cli::make_task_example(task, Split::kTest, 3, i).prompt);
    for (const auto& p : test) EXPECT_EQ(train.count(p), 0u) << task << ": '" << p << "' is in both splits";
    const int64_t n_train = llm::cli::task_problem_count(task, Split::kTrain);
    const int64_t n_test = llm::cli::task_problem_count(task, Split::kTest);
    EXPECT_EQ(n_train + n_test, task == "add" ? 90 * 90 : 90 * 91 / 2) << task;
    EXPECT_NEAR(static_cast<double>(n_test) / (n_train + n_test), 0.2, 0.03) << task;
  }
  // Capitals: the same facts, but test phrasings that training never uses.
  std::set<std::string> train_forms, test_forms;
  for (int64_t i = 0; i < 200; ++i) {
    auto t = llm::cli::make_task_example("capital", Split::kTrain, 3, i);
    train_forms.insert(t.prompt.substr(0, 12));
    auto e = llm::cli::make_task_example("capital", Split::kTest, 3, i);
    test_forms.insert(e.prompt.substr(0, 12));
  }
  for (const auto& f : test_forms) EXPECT_EQ(train_forms.count(f), 0u) << f;
}

TEST_F(Tasks, CapitalsComeFromTheQuizFilesWithTheirAlternatives) {
  bool france = false, austria = false;
  for (int64_t i = 0; i < 4000 && !(france && austria); ++i) {
    const auto e = llm::cli::make_task_example("capital", llm::cli::Split::kTrain, 5, i);
    if (e.prompt.find(" France") != std::string::npos) {
      france = true;
      EXPECT_EQ(e.answer, "Paris");
    }
    if (e.prompt.find(" Austria") != std::string::npos) {
      austria = true;
      EXPECT_EQ(e.answer, "Vienna");  // quiz line "Austria:Vienna|Wien"
      EXPECT_TRUE(llm::cli::is_correct(e, " wien. "));
    }
  }
  EXPECT_TRUE(france && austria) << "France and Austria should be among the quiz facts";
}

TEST_F(Tasks, AnswersAreNormalisedAndRewardedAsDocumented) {
  EXPECT_EQ(llm::cli::normalise_answer("  Little   Rock. "), "little rock");
  EXPECT_EQ(llm::cli::normalise_answer("72"), "72");
  llm::cli::TaskExample add{"add", "What is 47 + 25?", "72", {"72"}};
  EXPECT_DOUBLE_EQ(llm::cli::task_reward(add, " 72 ", true), 1.0);
  EXPECT_DOUBLE_EQ(llm::cli::task_reward(add, "72", false), 0.0) << "an answer that never ended earns nothing";
  EXPECT_DOUBLE_EQ(llm::cli::task_reward(add, "71", true), llm::cli::kFormatCredit) << "a number: well formed";
  EXPECT_DOUBLE_EQ(llm::cli::task_reward(add, "seventy", true), 0.0);
  llm::cli::TaskExample cap{"capital", "What is the capital of France?", "Paris", {"paris"}};
  EXPECT_DOUBLE_EQ(llm::cli::task_reward(cap, "paris", true), 1.0);
  EXPECT_DOUBLE_EQ(llm::cli::task_reward(cap, "Rome", true), llm::cli::kFormatCredit);
  EXPECT_DOUBLE_EQ(llm::cli::task_reward(cap, "it is a city in the north", true), 0.0);
}

TEST_F(Tasks, PreferencePairsPreferTheCorrectAnswer) {
  int malformed = 0;
  for (int64_t i = 0; i < 200; ++i) {
    const auto e = llm::cli::make_task_example(llm::cli::task_names()[i % 3], llm::cli::Split::kTrain, 9, i);
    const auto p = llm::cli::make_preference_pair(e, 9, i);
    EXPECT_EQ(p.prompt, e.prompt);
    EXPECT_TRUE(llm::cli::is_correct(e, p.chosen)) << p.chosen;
    EXPECT_FALSE(llm::cli::is_correct(e, p.rejected)) << p.rejected;
    malformed += p.rejected == e.prompt;
    const auto again = llm::cli::make_preference_pair(e, 9, i);
    EXPECT_EQ(again.rejected, p.rejected) << "deterministic";
  }
  EXPECT_GT(malformed, 25);
  EXPECT_LT(malformed, 80);  // about one in four
}
