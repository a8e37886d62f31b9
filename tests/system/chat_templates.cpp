// System tests: chat templates rendered as the models' own Jinja templates render them.
//
// data/chat_template_golden.json holds what @huggingface/jinja 0.5.13 renders from the real
// templates of Llama 3, Llama 3.2, Qwen2.5 and Qwen3 (the tokenizer_config.json files that
// scripts/setup.sh fetches into .cache/hf/) and of SmolLM2-Instruct (data/hf/smollm2_style), for
// conversations with and without system messages, several turns, Qwen3's thinking switch and its
// reasoning. scripts/make_hf_golden.mjs wrote it; CI reruns it with --check against the live
// renderer (ctest -R interop.golden). Here our C++ renderer must give the same text, byte for byte.
#include <llm/cli/chat_format.h>
#include <llm/cli/run.h>
#include <llm/common/paths.h>
#include <llm/common/testing.h>
#include <llm/tokenizer/bpe_trainer.h>
#include <llm/tokenizer/tokenizer_json.h>

#include <filesystem>

namespace {

namespace fs = std::filesystem;
using llm::cli::ChatFormat;
using llm::cli::ChatRenderOptions;
using llm::cli::ChatTurn;
using llm::testing::ThrowsWith;

std::string SourcePath(const std::string& relative) {
  return std::string(llm::kSourceDir) + "/" + relative;
}

const nlohmann::json& Golden() {
  static const nlohmann::json golden =
      nlohmann::json::parse(llm::read_file(llm::testing::DataPath("chat_template_golden.json")));
  return golden;
}

struct Loaded {
  llm::BpeTokenizer tokenizer;
  nlohmann::json config;
  ChatFormat format;
};

// The template's tokenizer folder, its tokenizer_config.json and the recognised format.
Loaded Load(const std::string& name) {
  const auto& t = Golden()["templates"][name];
  const std::string config_path = SourcePath(t["source"].get<std::string>());
  if (!fs::exists(config_path)) throw std::runtime_error(config_path + " is missing: run scripts/setup.sh");
  const std::string dir = fs::path(config_path).parent_path().string();
  Loaded l{llm::load_tokenizer_folder(dir), nlohmann::json::parse(llm::read_file(config_path)), {}};
  l.format = ChatFormat::recognize(l.config["chat_template"].get<std::string>(), l.tokenizer, l.config, dir);
  return l;
}

std::vector<ChatTurn> Turns(const nlohmann::json& messages) {
  std::vector<ChatTurn> turns;
  for (const auto& m : messages) {
    ChatTurn t{m["role"].get<std::string>(), m["content"].get<std::string>(), std::nullopt};
    if (m.contains("reasoning_content")) t.reasoning_content = m["reasoning_content"].get<std::string>();
    turns.push_back(t);
  }
  return turns;
}

ChatRenderOptions Options(const nlohmann::json& render) {
  ChatRenderOptions o;
  o.add_generation_prompt = render["add_generation_prompt"].get<bool>();
  const auto& v = render["variables"];
  if (v.contains("enable_thinking")) o.enable_thinking = v["enable_thinking"].get<bool>();
  if (v.contains("date_string")) o.date_string = v["date_string"].get<std::string>();
  return o;
}

class ChatTemplates : public ::testing::TestWithParam<std::string> {};

TEST_P(ChatTemplates, RenderByteForByteAsTheModelsOwnTemplate) {
  const auto l = Load(GetParam());
  for (const auto& render : Golden()["templates"][GetParam()]["renders"]) {
    EXPECT_EQ(l.format.render(Turns(render["messages"]), Options(render)), render["text"].get<std::string>())
        << GetParam() << " (" << l.format.name() << "), case " << render["name"].get<std::string>();
  }
}

// The prompt ids are the rendered text tokenized with its special tokens and no second BOS, as
// apply_chat_template(tokenize=True) gives them.
TEST_P(ChatTemplates, PromptsAreTheRenderedTextTokenizedOnce) {
  const auto l = Load(GetParam());
  for (const auto& render : Golden()["templates"][GetParam()]["renders"]) {
    if (!render["add_generation_prompt"].get<bool>()) continue;
    const auto ids = l.format.prompt(l.tokenizer, Turns(render["messages"]), Options(render));
    const auto expected = l.tokenizer.encode(render["text"].get<std::string>(), /*allow_special=*/true);
    EXPECT_EQ(ids, std::vector<int64_t>(expected.begin(), expected.end())) << render["name"].get<std::string>();
    const auto& prefix = l.tokenizer.options().prefix_ids;  // Llama 3.2's post-processor BOS
    if (!prefix.empty() && ids.size() >= 2) EXPECT_NE(ids[1], prefix[0]) << "one BOS, from the template";
  }
}

// SFT's mask: what each assistant turn writes after its generation prompt is trained, its
// end-of-turn token included, and nothing else.
TEST_P(ChatTemplates, TrainingExamplesMaskEverythingButTheAnswers) {
  const auto l = Load(GetParam());
  const std::vector<ChatTurn> turns = {{"system", "Be brief.", std::nullopt},
                                       {"user", "What is 2 + 3?", std::nullopt},
                                       {"assistant", "5", std::nullopt}};
  ChatRenderOptions o;
  if (l.format.has_thinking_switch()) o.enable_thinking = false;
  const auto ex = l.format.example(l.tokenizer, turns, o);
  std::vector<llm::TokenId> trained;
  for (size_t i = 0; i < ex.ids.size(); ++i) {
    if (ex.trained[i]) trained.push_back(static_cast<llm::TokenId>(ex.ids[i]));
  }
  EXPECT_EQ(l.tokenizer.decode(trained), "5" + l.tokenizer.token_bytes(static_cast<llm::TokenId>(l.format.end_id())));
  const auto prompt = l.format.prompt(l.tokenizer, {turns[0], turns[1]}, o);
  ASSERT_LE(prompt.size(), ex.ids.size());
  EXPECT_TRUE(std::equal(prompt.begin(), prompt.end(), ex.ids.begin())) << "the prompt starts the example";
  EXPECT_EQ(l.format.completion(l.tokenizer, {turns[0], turns[1]}, "5", o),
            std::vector<int64_t>(ex.ids.begin() + prompt.size(),
                                 ex.ids.begin() + prompt.size() + static_cast<int64_t>(trained.size())));
}

INSTANTIATE_TEST_SUITE_P(Families, ChatTemplates,
                         ::testing::Values("llama3", "llama3_2", "qwen2_5", "qwen3", "smollm2"));

TEST(ChatTemplateFamilies, EachRealTemplateIsRecognisedAsItsFamily) {
  EXPECT_EQ(Load("llama3").format.name(), "llama3");
  EXPECT_EQ(Load("llama3_2").format.name(), "llama3.1");
  EXPECT_EQ(Load("qwen2_5").format.name(), "chatml");
  EXPECT_EQ(Load("qwen3").format.name(), "qwen3");
  EXPECT_EQ(Load("smollm2").format.name(), "chatml");
}

TEST(ChatTemplateFamilies, AnUnknownTemplateIsAnErrorNamingTheFamilies) {
  const auto tok = llm::load_tokenizer_folder(llm::testing::DataPath("hf/smollm2_style"));
  const std::string gemma =
      "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ m['role'] }}\n{{ m['content'] }}"
      "<end_of_turn>\n{% endfor %}";
  EXPECT_TRUE(ThrowsWith([&] { ChatFormat::recognize(gemma, tok, nlohmann::json::object(), "gemma/"); },
                         {"gemma/", "Llama 3", "ChatML", "Qwen3"}));
  EXPECT_TRUE(ThrowsWith([&] { ChatFormat::recognize("", tok, nlohmann::json::object(), "base/"); },
                         {"base/", "no chat template"}));
}

// Lesson 06's template is ours only when the folder says so: our template text, or none at all
// with our chat tokens. Phi-3's template also writes <|user|> and <|end|>, with newlines around
// every message: it must not be rendered as ours.
TEST(ChatTemplateFamilies, OnlyOurOwnTemplateIsRenderedAsOurs) {
  llm::BpeTrainingOptions options;
  options.vocab_size = 300;
  options.special_tokens = {"<|endoftext|>", "<|user|>", "<|assistant|>", "<|end|>"};
  const auto tok = llm::train_bpe(llm::read_file(llm::testing::DataPath("austen/train.txt")).substr(0, 20000), options);
  const auto none = nlohmann::json::object();
  EXPECT_EQ(ChatFormat::recognize(llm::cli::our_chat_template(), tok, none, "ours/").name(), "ours");
  EXPECT_EQ(ChatFormat::recognize(llm::cli::our_chat_template() + "\n", tok, none, "ours/").name(), "ours")
      << "chat_template.jinja ends with a newline";
  EXPECT_EQ(ChatFormat::recognize("", tok, none, "ours/").name(), "ours") << "an older folder of ours, no template";
  const std::string phi3 =
      "{% for message in messages %}{{'<|' + message['role'] + '|>' + '\\n' + message['content'] + '<|end|>\\n'}}"
      "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}";
  EXPECT_TRUE(ThrowsWith([&] { ChatFormat::recognize(phi3, tok, none, "phi3/"); }, {"phi3/", "ChatML"}));
}

TEST(ChatTemplateFamilies, ToolMessagesAreRefusedNamingTheRole) {
  const auto l = Load("qwen2_5");
  EXPECT_TRUE(ThrowsWith(
      [&] {
        l.format.render({{"tool", "{}", std::nullopt}});
      },
      {"tool", "system, user, assistant"}));
}

// transformers renders with Python's Jinja, whose "| trim" is str.strip(): Unicode whitespace as
// Python defines it (the JavaScript renderer's trim differs on U+FEFF and U+001C..U+001F).
TEST(ChatTemplateFamilies, TrimIsPythonsStrip) {
  EXPECT_EQ(llm::cli::python_strip(" \t\n x y \u3000\u00a0"), "x y");
  EXPECT_EQ(llm::cli::python_strip("\x1fx\x1c"), "x");
  EXPECT_EQ(llm::cli::python_strip("\ufeffx"), "\ufeffx") << "U+FEFF is not whitespace to Python";
}

}  // namespace
