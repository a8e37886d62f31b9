// Lesson 01 - the training run's settings: batch, schedule, optimizer, precision, threads, files.
//
// Names follow nanoGPT's train.py where one exists (batch_size, learning_rate, min_lr,
// warmup_steps, weight_decay, beta1, beta2, grad_clip, eval_interval). Lessons 07 and 10 consume
// them; lesson 01 only has to load, save and validate them.
#pragma once

#include <llm/common/todo.h>
#include <llm/config/fields.h>

#include <string>
#include <vector>

namespace llm {

struct TrainConfig {
  int64_t batch_size = 16;       // B sequences per micro-batch
  int64_t seq_len = 256;         // T tokens per sequence
  int64_t grad_accum_steps = 1;  // micro-batches per optimizer step
  int64_t max_steps = 2000;      // optimizer steps
  double learning_rate = 1e-3;   // peak, reached after warmup
  double min_lr = 1e-4;          // the cosine schedule ends here
  int64_t warmup_steps = 100;
  std::string schedule = "cosine";  // cosine | wsd | constant (lesson 07)
  double decay_fraction = 0.2;      // wsd: the share of max_steps spent decaying
  double weight_decay = 0.1;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double grad_clip = 1.0;           // max global gradient norm; 0 = no clipping
  std::string optimizer = "adamw";  // adamw | lion
  std::string dtype = "float32";    // float32 | bfloat16 (autocast-style mixed precision)
  int64_t threads = 0;              // 0 = every core
  int64_t seed = 1337;
  int64_t eval_interval = 200;  // steps between validation passes
  int64_t eval_batches = 20;    // micro-batches per validation pass
  int64_t log_interval = 10;
  int64_t checkpoint_interval = 500;
  int64_t keep_checkpoints = 3;  // the newest this many are kept
  bool pack_documents = false;   // positions restart and attention stays inside each document (lesson 06)
  std::string train_data = "data/austen/train.txt";
  std::string val_data = "data/austen/val.txt";
  std::string out_dir = "runs/default";  // the run folder (llm pretrain --run overrides it)

  static inline const std::vector<std::string> kOptimizers = {"adamw", "lion"};
  static inline const std::vector<std::string> kSchedules = {"cosine", "wsd", "constant"};
  static inline const std::vector<std::string> kDtypes = {"float32", "bfloat16"};

  static const std::vector<Field<TrainConfig>>& fields() {
    static const std::vector<Field<TrainConfig>> table = {
        {"batch_size", &TrainConfig::batch_size, "B, sequences per micro-batch"},
        {"seq_len", &TrainConfig::seq_len, "T, tokens per sequence"},
        {"grad_accum_steps", &TrainConfig::grad_accum_steps, "micro-batches per optimizer step"},
        {"max_steps", &TrainConfig::max_steps, "optimizer steps"},
        {"learning_rate", &TrainConfig::learning_rate, "peak learning rate"},
        {"min_lr", &TrainConfig::min_lr, "learning rate at the end of the cosine decay"},
        {"warmup_steps", &TrainConfig::warmup_steps, "linear warmup steps"},
        {"schedule", &TrainConfig::schedule, "cosine, wsd or constant"},
        {"decay_fraction", &TrainConfig::decay_fraction, "wsd: share of max_steps spent decaying, in [0, 1]"},
        {"weight_decay", &TrainConfig::weight_decay, "decoupled weight decay"},
        {"beta1", &TrainConfig::beta1, "first-moment decay"},
        {"beta2", &TrainConfig::beta2, "second-moment decay"},
        {"grad_clip", &TrainConfig::grad_clip, "max global gradient norm; 0 = off"},
        {"optimizer", &TrainConfig::optimizer, "adamw or lion"},
        {"dtype", &TrainConfig::dtype, "float32 or bfloat16"},
        {"threads", &TrainConfig::threads, "compute threads; 0 = every core"},
        {"seed", &TrainConfig::seed, "random seed"},
        {"eval_interval", &TrainConfig::eval_interval, "steps between validation passes"},
        {"eval_batches", &TrainConfig::eval_batches, "micro-batches per validation pass"},
        {"log_interval", &TrainConfig::log_interval, "steps between log lines"},
        {"checkpoint_interval", &TrainConfig::checkpoint_interval, "steps between checkpoints"},
        {"keep_checkpoints", &TrainConfig::keep_checkpoints, "how many of the newest checkpoints are kept"},
        {"pack_documents", &TrainConfig::pack_documents, "restart positions and attention at every document"},
        {"train_data", &TrainConfig::train_data, "training text file"},
        {"val_data", &TrainConfig::val_data, "validation text file"},
        {"out_dir", &TrainConfig::out_dir, "the run folder: runs/NAME, with one folder per stage"},
    };
    return table;
  }

  // Throws ConfigError naming the first problem and what would be valid. The tests look for the
  // key, the value and the valid range or names, in these words (<v> is the value found):
  //   - batch_size, seq_len, grad_accum_steps, max_steps, eval_interval, eval_batches, log_interval,
  //     checkpoint_interval, keep_checkpoints positive: require_positive writes
  //     "train.<key> must be positive, got <v>"
  //   - threads >= 0: "train.threads must be >= 0 (0 = every core), got -1"
  //   - 0 <= warmup_steps <= max_steps: "train.warmup_steps must be in [0, max_steps = 10], got 20"
  //   - learning_rate > 0: "train.learning_rate must be positive, got <v>"; 0 <= min_lr <= learning_rate:
  //     "train.min_lr must be in [0, learning_rate = <lr>], got <v>"; weight_decay >= 0 and
  //     grad_clip >= 0: "train.<key> must be >= 0, got <v>" (test !(x >= 0), so that NaN fails)
  //   - beta1 and beta2 in [0, 1): "train.<key> must be in [0, 1), got <v>"
  //   - decay_fraction in [0, 1]: "train.decay_fraction must be in [0, 1], got 1.500000"
  //   - optimizer one of kOptimizers, schedule one of kSchedules, dtype one of kDtypes, the value
  //     quoted and the valid names listed (join_names): "train.optimizer 'sgd' is not one of: adamw,
  //     lion", "train.schedule 'linear' is not one of: cosine, wsd, constant", "train.dtype 'float16'
  //     is not one of: float32, bfloat16"
  void validate() const {
    LLM_TODO("lesson01: TrainConfig::validate(): positive counts, 0 <= min_lr <= lr, betas in [0, 1), known names");
  }
};

}  // namespace llm
