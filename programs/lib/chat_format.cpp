#include <llm/cli/chat_format.h>
#include <llm/cli/run.h>
#include <llm/tokenizer/normalizer.h>

#include <cctype>
#include <ctime>

namespace llm::cli {

namespace {

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

bool starts_with(const std::string& text, const std::string& prefix) {
  return text.size() >= prefix.size() && text.compare(0, prefix.size(), prefix) == 0;
}

bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Python's str.strip('\n') and friends: only newlines.
std::string lstrip_newlines(const std::string& s) {
  const size_t i = s.find_first_not_of('\n');
  return i == std::string::npos ? "" : s.substr(i);
}
std::string rstrip_newlines(const std::string& s) {
  const size_t i = s.find_last_not_of('\n');
  return i == std::string::npos ? "" : s.substr(0, i + 1);
}
std::string strip_newlines(const std::string& s) {
  return rstrip_newlines(lstrip_newlines(s));
}

// Python's text.split(sep)[0] and [-1].
std::string before_first(const std::string& text, const std::string& sep) {
  return text.substr(0, text.find(sep));
}
std::string after_last(const std::string& text, const std::string& sep) {
  const size_t i = text.rfind(sep);
  return i == std::string::npos ? text : text.substr(i + sep.size());
}

// A special token of tokenizer_config.json: a string, or an AddedToken dict {"content": ...}; "" if unset.
std::string config_token(const nlohmann::json& config, const char* key) {
  if (!config.is_object() || !config.contains(key)) return "";
  const auto& v = config[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  return "";
}

// The default system message a ChatML template writes when the conversation has none: the text
// between "<|im_start|>system\n" and "<|im_end|>" inside one string literal of the template
// (Qwen2.5: 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.').
std::optional<std::string> chatml_default_system(const std::string& t) {
  for (const std::string opening : {"<|im_start|>system\\n", "<|im_start|>system\n"}) {
    for (size_t at = t.find(opening); at != std::string::npos; at = t.find(opening, at + 1)) {
      const size_t start = at + opening.size();
      const size_t end = t.find("<|im_end|>", start);
      if (end == std::string::npos) continue;
      const std::string literal = t.substr(start, end - start);
      if (literal.empty() || literal.find_first_of("'\"+{}") != std::string::npos) continue;  // not literal text
      std::string text;  // Jinja's (Python's) string escapes
      for (size_t i = 0; i < literal.size(); ++i) {
        if (literal[i] == '\\' && i + 1 < literal.size()) {
          const char e = literal[++i];
          text += e == 'n' ? '\n' : e == 't' ? '\t' : e;
        } else {
          text += literal[i];
        }
      }
      return text;
    }
  }
  return std::nullopt;
}

void check_roles(const std::vector<ChatTurn>& turns, bool system_allowed) {
  for (size_t i = 0; i < turns.size(); ++i) {
    const std::string& role = turns[i].role;
    if (role == "user" || role == "assistant" || (role == "system" && system_allowed)) continue;
    throw UsageError(
        "message " + std::to_string(i) + " has role '" + role + "'; valid roles: " +
        (system_allowed ? "system, user, assistant" : "user, assistant (this model's template has no system role)") +
        (role == "tool" || role == "ipython" ? " (tool calls are not rendered)" : ""));
  }
}

std::string today() {
  const std::time_t now = std::time(nullptr);
  char buffer[32];
  std::strftime(buffer, sizeof(buffer), "%d %b %Y", std::localtime(&now));
  return buffer;
}

Conversation to_conversation(const std::vector<ChatTurn>& turns) {
  Conversation c;
  for (const auto& t : turns) c.push_back({t.role, t.content});
  return c;
}

}  // namespace

bool python_isspace(uint32_t cp) {
  // Unicode Zs, or bidirectional class WS, B or S (Python's Objects/unicodetype_db.h).
  return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

std::string python_strip(const std::string& text) {
  size_t begin = 0, end = text.size();
  while (begin < end) {
    const size_t n = utf8_sequence_length(text, begin);
    if (n == 0 || !python_isspace(utf8_codepoint(text, begin, n))) break;
    begin += n;
  }
  while (end > begin) {
    size_t start = end - 1;
    while (start > begin && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
    const size_t n = utf8_sequence_length(text, start);
    if (n != end - start || !python_isspace(utf8_codepoint(text, start, n))) break;
    end = start;
  }
  return text.substr(begin, end - begin);
}

std::string ChatFormat::supported_families() {
  return "Llama 3 (3.0, 3.1, 3.2: <|start_header_id|> ... <|eot_id|>), ChatML (Qwen2.5, SmolLM2: <|im_start|> ... "
         "<|im_end|>), Qwen3 (ChatML with <think>), and this project's own (<|user|> ... <|end|>)";
}

std::string ChatFormat::name() const {
  switch (family_) {
    case Family::kOurs:
      return "ours";
    case Family::kLlama3:
      return "llama3";
    case Family::kLlama31:
      return "llama3.1";
    case Family::kChatml:
      return "chatml";
    case Family::kQwen3:
      return "qwen3";
  }
  return "?";
}

ChatFormat ChatFormat::of(const HfModel& model) {
  return recognize(model.chat_template, model.tokenizer, model.tokenizer_config, model.dir, model.eos_ids());
}

ChatFormat ChatFormat::recognize(const std::string& t, const BpeTokenizer& tokenizer,
                                 const nlohmann::json& tokenizer_config, const std::string& where,
                                 const std::vector<int64_t>& eos_ids) {
  ChatFormat f;
  const bool our_tokens = special_or_none(tokenizer, ChatTemplate::kUser) >= 0 &&
                          special_or_none(tokenizer, ChatTemplate::kAssistant) >= 0 &&
                          special_or_none(tokenizer, ChatTemplate::kEnd) >= 0 &&
                          special_or_none(tokenizer, ChatTemplate::kEndOfText) >= 0;
  auto token = [&](const std::string& text) -> int64_t {
    const int64_t id = tokenizer.added_id(text);
    if (id < 0) {
      throw UsageError(where + ": the chat template writes " + text + " but the tokenizer has no such token");
    }
    return id;
  };
  // Lesson 06's template only when the folder says so (our template exactly, or none with our
  // tokens): another model's template that happens to use <|user|> (Phi-3's puts newlines around
  // every message) must not be rendered as ours.
  std::string ours = t;
  while (!ours.empty() && std::isspace(static_cast<unsigned char>(ours.back()))) ours.pop_back();
  if (our_tokens && (ours.empty() || ours == our_chat_template())) {
    f.family_ = Family::kOurs;
    f.ours_ = ChatTemplate::from(tokenizer);
    f.end_id_ = f.ours_.end;
    f.pad_id_ = f.ours_.pad;
    f.end_text_ = ChatTemplate::kEnd;
    f.stop_ids_ = {f.end_id_};
    return f;
  }
  if (t.empty()) {
    throw UsageError(where +
                     " has no chat template (tokenizer_config.json's chat_template or chat_template.jinja): "
                     "it is a base model; use llm generate without --chat, or an instruct model");
  }
  if (contains(t, "<|start_header_id|>") && contains(t, "<|end_header_id|>") && contains(t, "<|eot_id|>")) {
    f.family_ = contains(t, "Cutting Knowledge Date") ? Family::kLlama31 : Family::kLlama3;
    f.guarded_generation_prompt_ = contains(t, "add_generation_prompt");
    f.today_by_default_ = contains(t, "strftime_now");
    f.bos_ = config_token(tokenizer_config, "bos_token");
    f.end_text_ = "<|eot_id|>";
  } else if (contains(t, "<|im_start|>") && contains(t, "<|im_end|>")) {
    if (contains(t, "</think>") || contains(t, "reasoning_content") || contains(t, "enable_thinking")) {
      f.family_ = Family::kQwen3;
    } else {
      f.family_ = Family::kChatml;
      f.default_system_ = chatml_default_system(t);
    }
    f.end_text_ = "<|im_end|>";
  } else {
    throw UsageError(
        where + ": its chat template is not one this program knows how to render; supported: " + supported_families());
  }
  f.end_id_ = token(f.end_text_);
  f.stop_ids_ = {f.end_id_};
  std::vector<int64_t> more(eos_ids);
  const std::string eos = config_token(tokenizer_config, "eos_token");
  if (!eos.empty() && tokenizer.added_id(eos) >= 0) more.push_back(tokenizer.added_id(eos));
  for (int64_t id : more) {
    if (std::find(f.stop_ids_.begin(), f.stop_ids_.end(), id) == f.stop_ids_.end()) f.stop_ids_.push_back(id);
  }
  const std::string pad = config_token(tokenizer_config, "pad_token");
  f.pad_id_ = !pad.empty() && tokenizer.added_id(pad) >= 0 ? tokenizer.added_id(pad) : f.end_id_;
  return f;
}

std::string ChatFormat::render(const std::vector<ChatTurn>& turns, const ChatRenderOptions& o) const {
  check_roles(turns, has_system_role());
  std::string out;
  switch (family_) {
    case Family::kOurs:
      for (const auto& t : turns) {
        out += (t.role == "user" ? ChatTemplate::kUser : ChatTemplate::kAssistant) + t.content + ChatTemplate::kEnd;
      }
      if (o.add_generation_prompt) out += ChatTemplate::kAssistant;
      break;
    case Family::kLlama3:  // Llama 3.0: every message trimmed; BOS before the first
      for (size_t i = 0; i < turns.size(); ++i) {
        out += (i == 0 ? bos_ : "") + "<|start_header_id|>" + turns[i].role + "<|end_header_id|>\n\n" +
               python_strip(turns[i].content) + "<|eot_id|>";
      }
      if (o.add_generation_prompt || !guarded_generation_prompt_)
        out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
      break;
    case Family::kLlama31: {  // Llama 3.1 / 3.2: a system block first, always, with the dates
      size_t first = 0;
      std::string system;
      if (!turns.empty() && turns[0].role == "system") system = python_strip(turns[0].content), first = 1;
      const std::string date = !o.date_string.empty() ? o.date_string : today_by_default_ ? today() : "26 Jul 2024";
      out +=
          bos_ +
          "<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: " + date +
          "\n\n" + system + "<|eot_id|>";
      for (size_t i = first; i < turns.size(); ++i) {
        out += "<|start_header_id|>" + turns[i].role + "<|end_header_id|>\n\n" + python_strip(turns[i].content) +
               "<|eot_id|>";
      }
      if (o.add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
      break;
    }
    case Family::kChatml:  // Qwen2.5, SmolLM2: a default system message unless the first message is one
      if (!turns.empty() && turns[0].role != "system" && default_system_) {
        out += "<|im_start|>system\n" + *default_system_ + "<|im_end|>\n";
      }
      for (const auto& t : turns) out += "<|im_start|>" + t.role + "\n" + t.content + "<|im_end|>\n";
      if (o.add_generation_prompt) out += "<|im_start|>assistant\n";
      break;
    case Family::kQwen3: {
      // The last "real" user message (not a wrapped tool response); assistant turns after it keep
      // their reasoning, earlier ones lose it (Qwen3's template: ns.last_query_index).
      int64_t last_query = static_cast<int64_t>(turns.size()) - 1;
      for (int64_t i = last_query; i >= 0; --i) {
        const auto& c = turns[i].content;
        if (turns[i].role == "user" && !(starts_with(c, "<tool_response>") && ends_with(c, "</tool_response>"))) {
          last_query = i;
          break;
        }
      }
      for (size_t i = 0; i < turns.size(); ++i) {
        const auto& t = turns[i];
        if (t.role == "system") {
          out += "<|im_start|>system\n" + t.content + "<|im_end|>\n";
        } else if (t.role == "user") {
          out += "<|im_start|>user\n" + t.content + "<|im_end|>\n";
        } else {
          std::string content = t.content, reasoning;
          if (t.reasoning_content) {
            reasoning = *t.reasoning_content;
          } else if (contains(t.content, "</think>")) {
            content = lstrip_newlines(after_last(t.content, "</think>"));
            reasoning = lstrip_newlines(after_last(rstrip_newlines(before_first(t.content, "</think>")), "<think>"));
          }
          if (static_cast<int64_t>(i) > last_query && (i + 1 == turns.size() || !reasoning.empty())) {
            out += "<|im_start|>assistant\n<think>\n" + strip_newlines(reasoning) + "\n</think>\n\n" +
                   lstrip_newlines(content);
          } else {
            out += "<|im_start|>assistant\n" + content;
          }
          out += "<|im_end|>\n";
        }
      }
      if (o.add_generation_prompt) {
        out += "<|im_start|>assistant\n";
        if (o.enable_thinking && !*o.enable_thinking) out += "<think>\n\n</think>\n\n";
      }
      break;
    }
  }
  return out;
}

std::vector<int64_t> ChatFormat::prompt(const BpeTokenizer& tokenizer, const std::vector<ChatTurn>& turns,
                                        const ChatRenderOptions& options) const {
  if (family_ == Family::kOurs) {
    check_roles(turns, false);
    return render_prompt(tokenizer, ours_, to_conversation(turns));
  }
  auto o = options;
  o.add_generation_prompt = true;
  std::vector<int64_t> ids;
  for (TokenId id : tokenizer.encode(render(turns, o), /*allow_special=*/true)) ids.push_back(id);
  return ids;
}

TokenizedExample ChatFormat::example(const BpeTokenizer& tokenizer, const std::vector<ChatTurn>& turns,
                                     const ChatRenderOptions& options) const {
  if (family_ == Family::kOurs) {
    check_roles(turns, false);
    return render_conversation(tokenizer, ours_, to_conversation(turns));
  }
  // The trained spans, in bytes of the rendered text: for each assistant turn, what its rendering
  // adds after the generation prompt of the turns before it, through its end-of-turn marker.
  auto normalized = [&](const std::string& text) {
    return tokenizer.options().normalizer == Normalizer::kNfc ? nfc(text) : text;  // offsets after NFC
  };
  auto o = options;
  o.add_generation_prompt = false;
  const std::string full = normalized(render(turns, o));
  std::vector<std::pair<size_t, size_t>> spans;
  for (size_t i = 0; i < turns.size(); ++i) {
    if (turns[i].role != "assistant") continue;
    const std::vector<ChatTurn> before(turns.begin(), turns.begin() + i), through(turns.begin(), turns.begin() + i + 1);
    auto with_prompt = options;
    with_prompt.add_generation_prompt = true;
    const std::string prefix = normalized(render(before, with_prompt));
    const std::string upto = normalized(render(through, o));
    if (!starts_with(upto, prefix) || !starts_with(full, upto.substr(0, prefix.size()))) {
      throw UsageError("the " + name() + " template renders assistant turn " + std::to_string(i) +
                       " differently once later turns follow (Qwen3 drops earlier reasoning), so a multi-turn example "
                       "cannot be masked turn by turn; train on conversations that end with that turn");
    }
    const size_t end = upto.find(end_text_, prefix.size());
    spans.emplace_back(prefix.size(), end == std::string::npos ? upto.size() : end + end_text_.size());
  }
  TokenizedExample ex;
  size_t offset = 0;
  for (TokenId id : tokenizer.encode(full, /*allow_special=*/true)) {
    bool trained = false;
    for (const auto& [b, e] : spans) trained = trained || (offset >= b && offset < e);
    ex.ids.push_back(id);
    ex.trained.push_back(trained ? 1 : 0);
    offset += tokenizer.token_bytes(id).size();
  }
  return ex;
}

std::vector<int64_t> ChatFormat::completion(const BpeTokenizer& tokenizer, const std::vector<ChatTurn>& turns,
                                            const std::string& answer, const ChatRenderOptions& options) const {
  if (family_ == Family::kOurs) {
    std::vector<int64_t> ids;
    for (TokenId id : tokenizer.encode(answer, /*allow_special=*/false)) ids.push_back(id);
    ids.push_back(end_id_);
    return ids;
  }
  const auto asked = prompt(tokenizer, turns, options);
  auto with_answer = turns;
  with_answer.push_back({"assistant", answer, std::nullopt});
  const auto ex = example(tokenizer, with_answer, options);
  if (ex.ids.size() < asked.size() || !std::equal(asked.begin(), asked.end(), ex.ids.begin())) {
    throw std::runtime_error("the " + name() +
                             " template's prompt is not the start of the same conversation with its "
                             "answer, token for token");
  }
  std::vector<int64_t> ids;
  for (size_t i = asked.size(); i < ex.ids.size(); ++i) {
    ids.push_back(ex.ids[i]);
    if (ex.ids[i] == end_id_) break;
  }
  return ids;
}

}  // namespace llm::cli
