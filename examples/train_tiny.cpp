// Train a tiny Llama on a text file of your own, lesson by lesson, then save it as a model folder
// that the llm program (llm generate, llm evaluate, llm export) and the other examples read.
//
//   example_train_tiny my-text.txt my-model [steps]          (300 steps unless given)
#include <llm/cli/hf_folder.h>  // the model folder's format (programs/lib): no lesson writes one
#include <llm/common/files.h>
#include <llm/data/pretrain_batches.h>
#include <llm/generate/generate.h>
#include <llm/tokenizer/bpe_trainer.h>
#include <llm/train/adamw.h>
#include <llm/train/cross_entropy.h>
#include <llm/train/grad_clip.h>
#include <llm/train/schedule.h>

#include <ATen/CPUGeneratorImpl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <filesystem>

namespace fs = std::filesystem;

int usage(const std::string& problem) {
  fmt::print(stderr, "example_train_tiny: {}\nusage: example_train_tiny TEXT_FILE OUT_DIR [STEPS]\n", problem);
  return 2;
}

int main(int argc, char** argv) try {
  if (argc < 3 || argc > 4) return usage("expected 2 or 3 arguments, got " + std::to_string(argc - 1));
  const std::string text_path = argv[1], out_dir = argv[2];
  char* end = nullptr;
  const int64_t steps = argc == 4 ? std::strtoll(argv[3], &end, 10) : 300;
  if (argc == 4 && (*end != '\0' || steps < 1))
    return usage("STEPS '" + std::string(argv[3]) + "' is not a whole number >= 1");
  if (!fs::is_regular_file(text_path)) return usage("no text file '" + text_path + "'");
  if (fs::exists(out_dir)) return usage("'" + out_dir + "' already exists; name a new folder");
  torch::manual_seed(1337);

  // 1. Tokenizer (lesson 01): byte-level BPE with 512 tokens learned from the text, and an end-of-text token.
  const std::string text = llm::read_file(text_path);
  const llm::BpeTokenizer tok = llm::train_bpe(text, {512, {"<|endoftext|>"}});
  const std::vector<llm::TokenId> ids = tok.encode(text, /*allow_special=*/false);
  if (ids.size() < 65)
    return usage("'" + text_path + "' is " + std::to_string(ids.size()) + " tokens, too short for one block of 64");

  // 2. Data (lesson 06): the ids (one document, then <|endoftext|>) as a token shard, read in blocks
  //    of T + 1 ids in a seeded order: inputs (B, T), targets (B, T) = the inputs shifted by one.
  const std::string shard_path = fs::temp_directory_path() / ("train_tiny_" + std::to_string(getpid()) + ".bin");
  llm::write_token_shard(shard_path, llm::join_documents({ids}, tok.special_id("<|endoftext|>")), tok.vocab_size());
  const llm::TokenShard shard(shard_path);
  fs::remove(shard_path);  // the shard is memory-mapped: its ids stay readable, no file is left behind
  llm::PretrainLoader loader(shard, {/*batch_size=*/8, /*seq_len=*/64});

  // 3. Model (lessons 02-05): 2 layers of width 64, 4 query heads sharing 2 key/value heads.
  llm::ModelConfig config;
  config.vocab_size = tok.vocab_size(), config.hidden_size = 64, config.num_hidden_layers = 2;
  config.num_attention_heads = 4, config.num_key_value_heads = 2, config.max_position_embeddings = 128;
  llm::CausalLM model(config);
  fmt::print("{} tokens of text, a vocabulary of {}, a model of {} parameters\n", ids.size(), tok.vocab_size(),
             model->num_parameters());

  // 4. Optimizer (lesson 07): AdamW, weight decay on the matrices only; 10% warmup, then cosine decay.
  llm::AdamW optimizer(llm::decay_param_groups(model->named_parameters(), 3e-3, 0.1));
  const llm::ScheduleOptions schedule{"cosine", /*peak_lr=*/3e-3, /*min_lr=*/3e-4, steps / 10, steps};

  // 5. Train: predict every next id, backpropagate, clip the gradient's norm to 1 (lesson 10), step.
  for (int64_t step = 0; step < steps; ++step) {
    const llm::PretrainBatch batch = loader.next();
    const torch::Tensor logits = model->forward(batch.input_ids);  // (B, T, V)
    const torch::Tensor loss = llm::cross_entropy(logits.reshape({-1, config.vocab_size}), batch.targets.reshape({-1}));
    optimizer.zero_grad();
    loss.backward();
    llm::clip_grad_norm(model->parameters(), 1.0);
    optimizer.set_lr(llm::learning_rate_at(schedule, step));
    optimizer.step();
    if (step % 25 == 0 || step + 1 == steps) fmt::print("step {:4}  loss {:.3f}\n", step, loss.item<double>());
  }

  // 6. Save the model folder, then continue the text's first 8 tokens (lesson 05: temperature 0.8, top-k 40).
  llm::cli::save_hf_folder(out_dir, model, tok);
  fmt::print("saved the model folder {}\n", out_dir);
  llm::GenerationConfig gen;
  gen.max_new_tokens = 60, gen.sampling.temperature = 0.8, gen.sampling.top_k = 40;
  std::vector<int64_t> prompt(ids.begin(), ids.begin() + std::min<size_t>(8, ids.size()));
  const auto out = llm::generate(model, {prompt}, gen, at::make_generator<at::CPUGeneratorImpl>(7));
  prompt.insert(prompt.end(), out[0].begin(), out[0].end());
  fmt::print("sample: {}\n", tok.decode(std::vector<llm::TokenId>(prompt.begin(), prompt.end()), true));
  return 0;
} catch (const c10::Error& e) {  // a LibTorch check (TORCH_CHECK): its message without the C++ backtrace
  fmt::print(stderr, "example_train_tiny: error: {}\n", e.what_without_backtrace());
  return 1;
} catch (const std::exception& e) {
  fmt::print(stderr, "example_train_tiny: error: {}\n", e.what());
  return 1;
}
