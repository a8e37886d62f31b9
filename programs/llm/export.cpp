// llm export: a training checkpoint or a model folder -> a Hugging Face model folder, or a GGUF file
// for llama.cpp.
//
//   llm export --checkpoint runs/demo/pretrain/checkpoints/step_00000400 --tokenizer runs/demo/tokenizer --out hf/
//   llm export --model runs/demo/pretrain/final --out hf-bf16/ --dtype bfloat16
//   llm export --model runs/demo/sft/final --format gguf --out sft.gguf --dtype q8_0
//   llm export --model ~/models/Qwen3-0.6B --out qwen3-fp32/ --dtype float32
//
// Every stage already ends with final/ in this format; export turns an intermediate checkpoint (or
// re-saves a folder, e.g. in bf16, half the size) into one, so transformers, or `llm generate`,
// can load it: AutoModelForCausalLM.from_pretrained("hf/") and AutoTokenizer.from_pretrained("hf/").
// --format gguf writes one file llama.cpp, ollama and LM Studio run (gguf_export.h says what is in it).
#include "commands.h"

#include <llm/cli/gguf_export.h>
#include <llm/cli/hf_folder.h>
#include <llm/tokenizer/bpe_files.h>
#include <llm/train/checkpoint.h>

#include <filesystem>

namespace llm::cli {

namespace {

// A ModelConfig from the field-by-field JSON a checkpoint records (config_to_json).
ModelConfig model_config_from_fields(const nlohmann::json& fields, const std::string& where) {
  YAML::Node node(YAML::NodeType::Map);
  for (const auto& [key, value] : fields.items()) {
    node[key] = value.is_string() ? value.get<std::string>() : value.dump();
  }
  ModelConfig config;
  try {
    apply_yaml(config, node, "model");
    config.validate();
  } catch (const ConfigError& e) {
    throw std::runtime_error(where + ": " + e.what());
  }
  return config;
}

}  // namespace

int export_main(int argc, char** argv) {
  CLI::App app{"Write a training checkpoint (or a model folder) as a Hugging Face model folder or a GGUF file.",
               "llm export"};
  std::string checkpoint_dir, model_dir, tokenizer_dir, out, dtype = "float32", format = "hf";
  auto* c = app.add_option("--checkpoint", checkpoint_dir, "a checkpoint folder (<stage>/checkpoints/step_*)")
                ->check(CLI::ExistingDirectory);
  app.add_option("--model", model_dir, "or a model folder to re-save")->check(CLI::ExistingDirectory)->excludes(c);
  app.add_option("--tokenizer", tokenizer_dir, "the tokenizer folder (with --checkpoint)")
      ->check(CLI::ExistingDirectory);
  app.add_option("--out", out, "the folder (hf) or file (gguf) to write; it must not exist")->required();
  app.add_option("--format", format, "hf: a Hugging Face model folder; gguf: one file for llama.cpp")
      ->capture_default_str()
      ->check(CLI::IsMember({"hf", "gguf"}));
  app.add_option("--dtype", dtype, "weights as float32 or bfloat16; gguf also float16 or q8_0")
      ->capture_default_str()
      ->check(CLI::IsMember({"float32", "bfloat16", "float16", "q8_0"}));
  if (int rc = parse_command_line(app, argc, argv); rc >= 0) return rc;
  return run_command("llm export", [&] {
    if (checkpoint_dir.empty() == model_dir.empty())
      throw UsageError("give exactly one of --checkpoint DIR or --model DIR");
    if (std::filesystem::exists(out))
      throw UsageError("'" + out + "' already exists; choose another --out (nothing is overwritten)");
    if (format == "hf" && (dtype == "float16" || dtype == "q8_0"))
      throw UsageError("--dtype " + dtype + " is for --format gguf; a model folder takes float32 or bfloat16");
    if (format == "gguf") {
      HfModel m;
      if (!model_dir.empty()) {
        m = load_hf_folder(model_dir, {"auto"});
      } else {
        if (tokenizer_dir.empty()) throw UsageError("--checkpoint needs --tokenizer DIR (the run's tokenizer folder)");
        const Checkpoint ck = load_checkpoint(checkpoint_dir);
        m.config = model_config_from_fields(ck.state.model_config, checkpoint_dir + "/trainer_state.json");
        m.architecture = hf_architecture(m.config);
        m.model = CausalLM(m.config);
        restore_parameters(*m.model, ck.model, checkpoint_dir + "/model.safetensors");
        m.tokenizer = load_tokenizer_dir(tokenizer_dir);
        m.config_json = hf_config_json(m.config, m.tokenizer, "float32");
        if (special_or_none(m.tokenizer, "<|user|>") >= 0) m.chat_template = our_chat_template();
        m.dir = checkpoint_dir;
      }
      export_gguf(m, out, dtype);
      fmt::print("llm export: wrote {} (GGUF, {}, {:.1f} MB)\n", out, dtype, std::filesystem::file_size(out) / 1e6);
      return 0;
    }
    SaveOptions save;
    save.dtype = dtype;
    if (!model_dir.empty()) {
      auto m = load_hf_folder(model_dir, {"auto"});
      save.source_dir = model_dir;  // its tokenizer and generation files, as they are
      save_hf_folder(out, m.model, m.tokenizer, save);
    } else {
      if (tokenizer_dir.empty()) throw UsageError("--checkpoint needs --tokenizer DIR (the run's tokenizer folder)");
      const Checkpoint ck = load_checkpoint(checkpoint_dir);
      const ModelConfig config =
          model_config_from_fields(ck.state.model_config, checkpoint_dir + "/trainer_state.json");
      CausalLM model(config);
      restore_parameters(*model, ck.model, checkpoint_dir + "/model.safetensors");
      save_hf_folder(out, model, load_tokenizer_dir(tokenizer_dir), save);
    }
    fmt::print("llm export: wrote {} ({})\n", out, dtype);
    return 0;
  });
}

}  // namespace llm::cli
