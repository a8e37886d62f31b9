// llm serve: the model behind OpenAI's HTTP API, so any OpenAI client can talk to it.
//
//   llm serve --model runs/demo/grpo/final                      http://127.0.0.1:8000
//   llm serve --model runs/demo/grpo/final --port 0             a free port, printed at start
//
//   GET  /health                 {"status": "ok"}
//   GET  /v1/models              the one model, id = its folder's name (or --name)
//   POST /v1/chat/completions    messages -> an answer in the model's chat template (lesson 06's for
//                                ours, a downloaded model's own: chat_format.h), stop at its end of turn;
//                                "chat_template_kwargs": {"enable_thinking": false} as vLLM takes it (Qwen3)
//   POST /v1/completions         a prompt string continued (any model), stop at its end-of-text tokens
//
// Both POSTs take model, max_tokens, temperature, top_p, seed and stream. With "stream": true the
// answer arrives as server-sent events, one "data: {chunk}" per piece of text and "data: [DONE]"
// at the end; a piece is always whole UTF-8 characters (lesson 01's byte-level tokens can split
// one). Bad requests get a 4xx and OpenAI's error body {"error": {"message", "type", "param",
// "code"}}: invalid JSON or fields 400, an unknown model 404, a body over --max-body 413, more
// tokens than the context holds 400 (code context_length_exceeded).
//
// One model, one request at a time: requests wait in line for it (a mutex), so two requests never
// share a KV cache or fight over the cores; HTTP parsing and waiting happen on the server's
// threads. SIGTERM or SIGINT stops accepting, lets the running request finish, and exits 0.
#include "commands.h"

#include <llm/cli/chat_format.h>
#include <llm/cli/hf_folder.h>
#include <llm/cli/text.h>
#include <llm/generate/generate.h>
#include <llm/tokenizer/normalizer.h>

#include <ATen/CPUGeneratorImpl.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <mutex>
#include <optional>
#include <thread>

namespace llm::cli {

namespace {

using nlohmann::json;

struct ServeOptions {
  std::string model_dir, name, host = "127.0.0.1";
  int port = 8000;
  int64_t max_tokens = 256;   // the most a request may ask for
  size_t max_body = 1 << 20;  // bytes of a request body
  int64_t threads = 0, http_threads = 8;
};

// An error the client caused: HTTP status, OpenAI's error type and code.
struct ApiError {
  ApiError(int status, std::string message, std::string param = "", std::string code = "")
      : status(status), message(std::move(message)), param(std::move(param)), code(std::move(code)) {}
  int status;
  std::string message, type = "invalid_request_error", param, code;
};

void send_error(httplib::Response& res, const ApiError& e) {
  res.status = e.status;
  json body = {{"error",
                {{"message", e.message},
                 {"type", e.type},
                 {"param", e.param.empty() ? json(nullptr) : json(e.param)},
                 {"code", e.code.empty() ? json(nullptr) : json(e.code)}}}};
  res.set_content(body.dump(), "application/json");
}

// Text as valid UTF-8: a byte-level model can emit bytes that form no character (a stray
// continuation byte, a sequence cut off by max_tokens); each such byte becomes U+FFFD, as a
// decoder with errors="replace" does. JSON (and every OpenAI client) needs valid UTF-8.
std::string valid_utf8(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size();) {
    const size_t n = utf8_sequence_length(s, i);  // lesson 01's normalizer.h: 0 for invalid bytes
    if (n > 0) {
      out.append(s, i, n);
      i += n;
    } else {
      out += "\xEF\xBF\xBD";
      i += 1;
    }
  }
  return out;
}

// A request, validated, ready to generate.
struct Job {
  std::vector<int64_t> prompt;
  GenerationConfig gen;
  uint64_t seed = 0;
  bool stream = false, chat = false;
  std::string id;
};

class Service {
 public:
  Service(HfModel m, std::string name, int64_t max_tokens)
      : m_(std::move(m)), name_(std::move(name)), max_tokens_(max_tokens) {
    m_.model->eval();
    try {
      chat_ = ChatFormat::of(m_);
    } catch (const UsageError& e) {
      chat_error_ = e.what();  // no chat template: /v1/chat/completions refuses, /v1/completions works
    }
    eos_ = m_.eos_ids();
    if (eos_.empty() && special_or_none(m_.tokenizer, "<|endoftext|>") >= 0)
      eos_ = {special_or_none(m_.tokenizer, "<|endoftext|>")};
  }

  const std::string& name() const { return name_; }
  int64_t context() const { return m_.config.max_position_embeddings; }

  // Parses and checks a request body; throws ApiError.
  Job parse(const std::string& body, bool chat) {
    json r;
    try {
      r = json::parse(body);
    } catch (const json::parse_error& e) {
      throw ApiError{400, std::string("the request body is not valid JSON: ") + e.what()};
    }
    if (!r.is_object()) throw ApiError{400, "the request body must be a JSON object"};
    if (!r.contains("model") || !r["model"].is_string()) throw ApiError{400, "'model' is required (a string)", "model"};
    if (r["model"] != name_) {
      throw ApiError{
          404, "the model '" + r["model"].get<std::string>() + "' does not exist; this server has '" + name_ + "'",
          "model", "model_not_found"};
    }
    Job job;
    job.chat = chat;
    job.stream = number_or(r, "stream", false);
    if (chat) {
      if (!chat_) throw ApiError{400, chat_error_ + "; use /v1/completions", "messages"};
      if (!r.contains("messages") || !r["messages"].is_array() || r["messages"].empty()) {
        throw ApiError{400, "'messages' must be a non-empty array of {role, content}", "messages"};
      }
      std::vector<ChatTurn> conversation;
      for (size_t i = 0; i < r["messages"].size(); ++i) {
        const auto& msg = r["messages"][i];
        const std::string where = "messages[" + std::to_string(i) + "]";
        if (!msg.is_object() || !msg.contains("role") || !msg["role"].is_string() || !msg.contains("content") ||
            !msg["content"].is_string()) {
          throw ApiError{400, where + " must be {\"role\": string, \"content\": string}", "messages"};
        }
        const auto role = msg["role"].get<std::string>();
        const bool system_ok = chat_->has_system_role();
        if (role != "user" && role != "assistant" && !(role == "system" && system_ok)) {
          throw ApiError{
              400,
              where + ".role '" + role + "' is not one of: " +
                  (system_ok ? "system, user, assistant" : "user, assistant (the chat template has no system role)"),
              "messages"};
        }
        ChatTurn turn{role, msg["content"].get<std::string>(), std::nullopt};
        if (msg.contains("reasoning_content") && msg["reasoning_content"].is_string())
          turn.reasoning_content = msg["reasoning_content"].get<std::string>();
        conversation.push_back(std::move(turn));
      }
      if (conversation.back().role != "user") throw ApiError{400, "the last message must be the user's", "messages"};
      ChatRenderOptions render;
      if (r.contains("chat_template_kwargs") && r["chat_template_kwargs"].is_object()) {
        const auto& kwargs = r["chat_template_kwargs"];
        if (kwargs.contains("enable_thinking") && kwargs["enable_thinking"].is_boolean())
          render.enable_thinking = kwargs["enable_thinking"].get<bool>();
      }
      job.prompt = chat_->prompt(m_.tokenizer, conversation, render);
      job.gen.stop_tokens = chat_->stop_ids();
      job.gen.pad_id = chat_->pad_id();
    } else {
      if (!r.contains("prompt") || !r["prompt"].is_string() || r["prompt"].get<std::string>().empty()) {
        throw ApiError{400, "'prompt' must be a non-empty string", "prompt"};
      }
      const auto& prefix = m_.tokenizer.options().prefix_ids;  // Llama 3's BOS, as vLLM's completions add it
      job.prompt.assign(prefix.begin(), prefix.end());
      for (TokenId id : m_.tokenizer.encode(r["prompt"].get<std::string>(), false)) job.prompt.push_back(id);
      job.gen.stop_tokens = eos_;
      if (!eos_.empty()) job.gen.pad_id = eos_.front();
    }
    const int64_t max_tokens =
        number_or<int64_t>(r, chat ? "max_completion_tokens" : "max_tokens", number_or<int64_t>(r, "max_tokens", 64));
    if (max_tokens < 1 || max_tokens > max_tokens_) {
      throw ApiError{400,
                     "max_tokens " + std::to_string(max_tokens) + " must be in [1, " + std::to_string(max_tokens_) +
                         "] (llm serve --max-tokens)",
                     "max_tokens"};
    }
    const int64_t need = static_cast<int64_t>(job.prompt.size()) + max_tokens;
    if (need > context()) {
      throw ApiError{400,
                     "this model's context is " + std::to_string(context()) + " tokens; the prompt has " +
                         std::to_string(job.prompt.size()) + " and max_tokens asks for " + std::to_string(max_tokens),
                     "messages", "context_length_exceeded"};
    }
    job.gen.max_new_tokens = max_tokens;
    job.gen.sampling.temperature = number_or(r, "temperature", 1.0);
    job.gen.sampling.top_p = number_or(r, "top_p", 1.0);
    if (job.gen.sampling.temperature < 0 || job.gen.sampling.temperature > 2) {
      throw ApiError{400, "temperature must be in [0, 2]", "temperature"};
    }
    if (job.gen.sampling.top_p <= 0 || job.gen.sampling.top_p > 1)
      throw ApiError{400, "top_p must be in (0, 1]", "top_p"};
    job.seed = number_or<uint64_t>(r, "seed", next_seed_++);
    job.id = std::string(chat ? "chatcmpl-" : "cmpl-") + std::to_string(++requests_);
    return job;
  }

  // Generates under the model's lock, calling on_text with whole UTF-8 pieces; returns the finish
  // reason ("stop" or "length") and the token counts. on_text returning false stops early.
  struct Done {
    std::string finish_reason;
    int64_t prompt_tokens = 0, completion_tokens = 0;
  };
  Done run(Job& job, const std::function<bool(const std::string&)>& on_text) {
    std::lock_guard<std::mutex> lock(model_mutex_);
    struct Cancelled {};
    Utf8Stream stream;
    Done d;
    d.prompt_tokens = static_cast<int64_t>(job.prompt.size());
    job.gen.on_token = [&](size_t, int64_t token) {
      ++d.completion_tokens;
      if (std::find(job.gen.stop_tokens.begin(), job.gen.stop_tokens.end(), token) != job.gen.stop_tokens.end()) return;
      const auto text = valid_utf8(stream.push(m_.tokenizer.token_bytes(static_cast<TokenId>(token))));
      if (!text.empty() && !on_text(text)) throw Cancelled{};
    };
    std::vector<std::vector<int64_t>> out;
    try {
      out = generate(m_.model, {job.prompt}, job.gen, at::make_generator<at::CPUGeneratorImpl>(job.seed));
    } catch (const Cancelled&) {
      d.finish_reason = "cancelled";
      return d;
    }
    const auto rest = valid_utf8(stream.flush());
    if (!rest.empty()) on_text(rest);
    const bool stopped = !out[0].empty() && std::find(job.gen.stop_tokens.begin(), job.gen.stop_tokens.end(),
                                                      out[0].back()) != job.gen.stop_tokens.end();
    d.finish_reason = stopped ? "stop" : "length";
    return d;
  }

 private:
  template <typename T>
  static T number_or(const json& r, const char* key, T fallback) {
    if (!r.contains(key) || r[key].is_null()) return fallback;
    try {
      return r[key].get<T>();
    } catch (const json::exception&) {
      throw ApiError{400, std::string("'") + key + "' has the wrong type: " + r[key].dump(), "invalid_request_error",
                     key};
    }
  }

  HfModel m_;
  std::string name_;
  int64_t max_tokens_;
  std::optional<ChatFormat> chat_;
  std::string chat_error_;
  std::vector<int64_t> eos_;
  std::mutex model_mutex_;
  std::atomic<uint64_t> next_seed_{1}, requests_{0};
};

json chunk(const Job& job, const std::string& model, int64_t created, const json& delta_or_text,
           const json& finish_reason) {
  json choice = {{"index", 0}, {"finish_reason", finish_reason}};
  if (job.chat) {
    choice["delta"] = delta_or_text;
  } else {
    choice["text"] = delta_or_text;
    choice["logprobs"] = nullptr;
  }
  return {{"id", job.id},
          {"object", job.chat ? "chat.completion.chunk" : "text_completion"},
          {"created", created},
          {"model", model},
          {"choices", json::array({choice})}};
}

void handle(Service& service, const httplib::Request& req, httplib::Response& res, bool chat) {
  Job job;
  try {
    job = service.parse(req.body, chat);
  } catch (const ApiError& e) {
    return send_error(res, e);
  }
  const int64_t created =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  if (!job.stream) {
    std::string text;
    const auto d = service.run(job, [&](const std::string& piece) {
      text += piece;
      return true;
    });
    json choice = {{"index", 0}, {"finish_reason", d.finish_reason}};
    if (chat) {
      choice["message"] = {{"role", "assistant"}, {"content", text}};
    } else {
      choice["text"] = text;
      choice["logprobs"] = nullptr;
    }
    json body = {{"id", job.id},
                 {"object", chat ? "chat.completion" : "text_completion"},
                 {"created", created},
                 {"model", service.name()},
                 {"choices", json::array({choice})},
                 {"usage",
                  {{"prompt_tokens", d.prompt_tokens},
                   {"completion_tokens", d.completion_tokens},
                   {"total_tokens", d.prompt_tokens + d.completion_tokens}}}};
    res.set_content(body.dump(), "application/json");
    return;
  }
  // Server-sent events, written as the tokens come; the provider runs once, on this connection's thread.
  auto shared = std::make_shared<Job>(std::move(job));
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream", [&service, shared, created, chat](size_t, httplib::DataSink& sink) {
        auto send = [&](const json& j) {
          const std::string line = "data: " + j.dump() + "\n\n";
          return sink.write(line.data(), line.size());
        };
        if (chat && !send(chunk(*shared, service.name(), created, {{"role", "assistant"}, {"content", ""}}, nullptr)))
          return false;
        const auto d = service.run(*shared, [&](const std::string& piece) {
          return send(chunk(*shared, service.name(), created, chat ? json{{"content", piece}} : json(piece), nullptr));
        });
        if (d.finish_reason == "cancelled") return false;  // the client went away
        send(chunk(*shared, service.name(), created, chat ? json::object() : json(""), d.finish_reason));
        const std::string done = "data: [DONE]\n\n";
        sink.write(done.data(), done.size());
        sink.done();
        return true;
      });
}

int run(const ServeOptions& o) {
  // SIGTERM and SIGINT are taken by one thread with sigwait, blocked everywhere else (set before any
  // thread starts, so LibTorch's and the server's threads inherit the mask).
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  configure_threads(o.threads);
  auto loaded = load_hf_folder(o.model_dir, {"auto"});
  std::string name = o.name;
  if (name.empty()) {  // runs/demo/grpo/final -> "demo/grpo"; any other folder -> its name
    auto path = std::filesystem::path(o.model_dir).lexically_normal();
    if (path.filename().empty()) path = path.parent_path();
    name = path.filename() == "final"
               ? path.parent_path().parent_path().filename().string() + "/" + path.parent_path().filename().string()
               : path.filename().string();
  }
  const int64_t parameters = loaded.config.num_parameters();
  Service service(std::move(loaded), name, o.max_tokens);

  httplib::Server server;
  server.new_task_queue = [n = o.http_threads] { return new httplib::ThreadPool(static_cast<size_t>(n)); };
  server.set_payload_max_length(o.max_body);
  server.Get("/health", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(R"({"status":"ok"})", "application/json");
  });
  server.Get("/v1/models", [&](const httplib::Request&, httplib::Response& res) {
    json body = {
        {"object", "list"},
        {"data",
         json::array(
             {{{"id", service.name()}, {"object", "model"}, {"created", 0}, {"owned_by", "llm-from-scratch"}}})}};
    res.set_content(body.dump(), "application/json");
  });
  server.Post("/v1/chat/completions",
              [&](const httplib::Request& req, httplib::Response& res) { handle(service, req, res, true); });
  server.Post("/v1/completions",
              [&](const httplib::Request& req, httplib::Response& res) { handle(service, req, res, false); });
  server.set_exception_handler([](const httplib::Request& req, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "unknown error";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    fmt::print(stderr, "llm serve: {} {} failed: {}\n", req.method, req.path, what);
    ApiError e{500, "the server failed on this request: " + what};
    e.type = "server_error";
    send_error(res, e);
  });
  server.set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (!res.body.empty()) return;  // an error body we wrote ourselves
    if (res.status == 413)
      return send_error(res, {413, "the request body is larger than the server accepts (llm serve --max-body)"});
    if (res.status == 404)
      return send_error(res, {404,
                              "no such endpoint; this server has GET /health, GET /v1/models, POST "
                              "/v1/chat/completions and POST /v1/completions"});
    send_error(res, {res.status, "request failed with HTTP status " + std::to_string(res.status)});
  });

  const int port = o.port == 0 ? server.bind_to_any_port(o.host) : (server.bind_to_port(o.host, o.port) ? o.port : -1);
  if (port < 0)
    throw UsageError("cannot listen on " + o.host + ":" + std::to_string(o.port) + " (in use, or not an address here)");
  std::thread waiter([&] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    fmt::print("llm serve: {} received, stopping\n", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    std::fflush(stdout);
    server.stop();
  });
  fmt::print("llm serve: model '{}' ({} parameters, context {}) on http://{}:{}\n", service.name(),
             format_count(static_cast<double>(parameters)), service.context(), o.host, port);
  std::fflush(stdout);
  const bool ok = server.listen_after_bind();
  if (waiter.joinable()) {
    if (ok) {
      waiter.join();
    } else {
      pthread_kill(waiter.native_handle(), SIGTERM);
      waiter.join();
    }
  }
  fmt::print("llm serve: stopped\n");
  return 0;
}

}  // namespace

int serve_main(int argc, char** argv) {
  CLI::App app{"Serve a model folder with OpenAI's HTTP API (chat completions, completions, models, health).",
               "llm serve"};
  ServeOptions o;
  app.add_option("--model", o.model_dir, "a model folder, e.g. runs/demo/grpo/final")
      ->required()
      ->check(CLI::ExistingDirectory);
  app.add_option("--name", o.name, "the model id clients send (default: <run>/<stage> from the folder)");
  app.add_option("--host", o.host, "address to listen on (127.0.0.1: this machine only)")->capture_default_str();
  app.add_option("--port", o.port, "port; 0 = any free port (printed)")
      ->capture_default_str()
      ->check(CLI::Range(0, 65535));
  app.add_option("--max-tokens", o.max_tokens, "the most tokens a request may ask for")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--max-body", o.max_body, "the largest request body in bytes")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--threads", o.threads, "compute threads; 0 = every core")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--http-threads", o.http_threads,
                 "connections handled at once (requests still take turns on the model)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  if (int rc = parse_command_line(app, argc, argv); rc >= 0) return rc;
  return run_command("llm serve", [&] { return run(o); });
}

}  // namespace llm::cli
