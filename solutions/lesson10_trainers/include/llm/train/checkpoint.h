// Lesson 10 - checkpoints: everything a run needs to continue exactly where it stopped, written so
// that a crash at any instant leaves either the old checkpoint or the new one, never half of one.
//
// A resumed run is bit-identical to an uninterrupted one only if it gets back *all* of its state:
//
//   model.safetensors      the weights, under Hugging Face's names (lesson 05)
//   optimizer.safetensors  the optimizer's moments and step counts (lesson 07), and the CPU random
//                          generator's state ("rng/cpu": dropout and sampling draw from it)
//   trainer_state.json     the step (the schedule is a pure function of it: lesson 07), the data
//                          cursor (the loader is a pure function of it: lesson 06), tokens seen,
//                          elapsed time, the world size, the model config, and a checksum of each
//                          file above
//   COMPLETE               written last: its presence says the directory is whole
//
// nanoGPT saves no RNG and no data position (train.py's checkpoint dictionary), so its resume is not
// exact; llm.c saves the generator and the data loader's position too (train_gpt2.cu, save_state and
// load_state). Weights and trainer state are separate files so the next stage can load the weights
// alone.
//
// Atomic writes. Everything goes into a temporary directory ".tmp-step_00000120" next to the
// final one; each file is fsync'ed, then COMPLETE, then the directory, and only then is it renamed
// to "step_00000120" (a rename within a directory is atomic) and the parent directory fsync'ed. A
// SIGKILL or a power cut at any point leaves no directory named step_* that is not whole, at most
// a ".tmp-" leftover that the next save removes. The last `keep` checkpoints are kept.
//
// Resume takes the newest step_* directory that loads. A directory without COMPLETE, with a
// trainer_state.json that does not parse, or whose files do not match their recorded size and
// xxHash64 checksum (a truncated copy, a flipped bit) is skipped with a message saying why, and the
// previous one is used. A checkpoint whose model config or world size differs from the run's is
// refused, naming the difference: silently loading weights into a different model, or a data cursor
// counted for another number of ranks, would train something other than what was asked for.
#pragma once

#include <llm/common/files.h>
#include <llm/common/safetensors.h>
#include <llm/common/todo.h>
#include <llm/config/fields.h>
#include <llm/train/optimizer.h>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>
#include <xxhash.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace llm {

inline constexpr int64_t kCheckpointFormat = 1;

struct CheckpointState {
  int64_t step = 0;         // optimizer steps done
  int64_t data_cursor = 0;  // items the data loader has handed out, all ranks together
  int64_t tokens_seen = 0;
  double elapsed_seconds = 0;
  int64_t world_size = 1;
  nlohmann::json model_config = nlohmann::json::object();  // config_to_json(model config)
  nlohmann::json extra = nlohmann::json::object();         // a stage's own scalars
};

struct Checkpoint {
  TensorMap model;
  OptimizerState optimizer;
  torch::Tensor rng_state;  // uint8, from capture_rng_state()
  CheckpointState state;
};

// ---- helpers: given ----

// Every field of a lesson 01 config struct as a JSON object, in the order of Config::fields().
template <typename Config>
nlohmann::json config_to_json(const Config& config) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& field : Config::fields()) {
    std::visit([&](auto member) { out[field.name] = config.*member; }, field.member);
  }
  return out;
}

// The parameters (and buffers) of a module by name, as detached CPU tensors.
inline TensorMap capture_parameters(const torch::nn::Module& module) {
  TensorMap out;
  for (const auto& p : module.named_parameters()) out[p.key()] = p.value().detach().clone();
  for (const auto& b : module.named_buffers()) out[b.key()] = b.value().detach().clone();
  return out;
}

// Copies `tensors` into the module's parameters and buffers. Every one of them must be present
// with its shape; a name the module does not have is an error too (a different architecture).
inline void restore_parameters(torch::nn::Module& module, const TensorMap& tensors, const std::string& where) {
  torch::NoGradGuard no_grad;
  size_t used = 0;
  auto copy = [&](const std::string& name, torch::Tensor& target) {
    auto it = tensors.find(name);
    if (it == tensors.end()) throw std::runtime_error(where + ": no tensor '" + name + "'");
    if (it->second.sizes() != target.sizes()) {
      std::ostringstream message;
      message << where << ": '" << name << "' has shape " << it->second.sizes() << ", the model expects "
              << target.sizes();
      throw std::runtime_error(message.str());
    }
    target.copy_(it->second);
    ++used;
  };
  for (auto& p : module.named_parameters()) copy(p.key(), p.value());
  for (auto& b : module.named_buffers()) copy(b.key(), b.value());
  if (used != tensors.size()) {
    for (const auto& [name, t] : tensors) {
      if (!module.named_parameters().contains(name) && !module.named_buffers().contains(name)) {
        throw std::runtime_error(where + ": '" + name + "' is not a parameter of this model");
      }
    }
  }
}

inline torch::Tensor capture_rng_state() {
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  return gen.get_state();
}

inline void restore_rng_state(const torch::Tensor& state) {
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_state(state);
}

inline std::string checkpoint_name(int64_t step) {
  char name[32];
  std::snprintf(name, sizeof name, "step_%08lld", static_cast<long long>(step));
  return name;
}

// The step of a directory named like checkpoint_name() (8 digits or more), or -1.
inline int64_t checkpoint_step(const std::string& name) {
  if (name.size() < 13 || name.size() > 23 || name.compare(0, 5, "step_") != 0) return -1;
  if (!std::all_of(name.begin() + 5, name.end(), [](char c) { return c >= '0' && c <= '9'; })) return -1;
  return std::stoll(name.substr(5));
}

inline std::string xxh64_hex(const std::string& bytes) {
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(XXH64(bytes.data(), bytes.size(), 0)));
  return hex;
}

// Directories under `root` that are named step_* and hold a COMPLETE marker, newest first.
inline std::vector<std::string> list_checkpoints(const std::string& root) {
  namespace fs = std::filesystem;
  std::vector<std::pair<int64_t, std::string>> found;
  if (!fs::is_directory(root)) return {};
  for (const auto& entry : fs::directory_iterator(root)) {
    const int64_t step = checkpoint_step(entry.path().filename().string());
    if (step >= 0 && entry.is_directory() && fs::exists(entry.path() / "COMPLETE")) {
      found.emplace_back(step, entry.path().string());
    }
  }
  std::sort(found.rbegin(), found.rend());
  std::vector<std::string> out;
  for (auto& [step, path] : found) out.push_back(std::move(path));
  return out;
}

// ---- the lesson ----

// Writes `checkpoint` to <root>/step_XXXXXXXX atomically, then keeps only the newest `keep`
// complete checkpoints (keep >= 1). Returns the directory written.
inline std::string save_checkpoint(const std::string& root, const Checkpoint& checkpoint, int64_t keep) {
  // 1. Check keep >= 1, or throw std::invalid_argument naming it, e.g. "save_checkpoint: keep must be
  //    >= 1, got 0". final = root / checkpoint_name(step); tmp = root / (".tmp-" + that name).
  //    create_directories(root); remove_all(tmp) (a leftover of a killed save); create tmp.
  // 2. Encode model.safetensors (checkpoint.model) and optimizer.safetensors (the optimizer state
  //    plus "rng/cpu" = rng_state); write each into tmp and sync_path() it.
  // 3. trainer_state.json: {"format": kCheckpointFormat, "step", "data_cursor", "tokens_seen",
  //    "elapsed_seconds", "world_size", "model_config", "extra",
  //    "files": {"model.safetensors": {"bytes": n, "xxh64": xxh64_hex(bytes)}, ...}}; write, sync.
  // 4. COMPLETE (its text: the step); sync it; sync tmp itself.
  // 5. If final exists it cannot be whole (resume starts from the newest that is): remove_all it.
  //    rename(tmp, final); sync_path(root).
  // 6. Prune: for every complete checkpoint after the first `keep` of list_checkpoints(root),
  //    remove_all it.
  // BEGIN SOLUTION: save_checkpoint(): write every file into a temporary directory, sync, mark COMPLETE, rename, prune
  namespace fs = std::filesystem;
  if (keep < 1) throw std::invalid_argument("save_checkpoint: keep must be >= 1, got " + std::to_string(keep));
  const std::string name = checkpoint_name(checkpoint.state.step);
  const fs::path final_dir = fs::path(root) / name, tmp = fs::path(root) / (".tmp-" + name);
  fs::create_directories(root);
  fs::remove_all(tmp);
  fs::create_directory(tmp);

  TensorMap optimizer(checkpoint.optimizer.begin(), checkpoint.optimizer.end());
  optimizer["rng/cpu"] = checkpoint.rng_state;
  nlohmann::json files = nlohmann::json::object();
  auto write = [&](const std::string& file, const std::string& bytes) {
    const std::string path = (tmp / file).string();
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out.flush()) throw std::runtime_error("cannot write '" + path + "'");
    out.close();
    sync_path(path);
    return nlohmann::json{{"bytes", bytes.size()}, {"xxh64", xxh64_hex(bytes)}};
  };
  files["model.safetensors"] = write("model.safetensors", encode_safetensors(checkpoint.model));
  files["optimizer.safetensors"] = write("optimizer.safetensors", encode_safetensors(optimizer));
  const auto& s = checkpoint.state;
  nlohmann::json state = {{"format", kCheckpointFormat},
                          {"step", s.step},
                          {"data_cursor", s.data_cursor},
                          {"tokens_seen", s.tokens_seen},
                          {"elapsed_seconds", s.elapsed_seconds},
                          {"world_size", s.world_size},
                          {"model_config", s.model_config},
                          {"extra", s.extra},
                          {"files", files}};
  write("trainer_state.json", state.dump(2) + "\n");
  write("COMPLETE", std::to_string(s.step) + "\n");
  sync_path(tmp.string());
  fs::remove_all(final_dir);
  fs::rename(tmp, final_dir);
  sync_path(root);

  const auto complete = list_checkpoints(root);
  for (size_t i = static_cast<size_t>(keep); i < complete.size(); ++i) fs::remove_all(complete[i]);
  return final_dir.string();
  // END SOLUTION
}

// Reads one checkpoint directory, checking it is whole. Throws std::runtime_error naming the
// directory and the problem: no COMPLETE marker, an unreadable or unknown-format trainer_state.json,
// a file whose size or checksum differs from the recorded one, a safetensors file that does not parse.
inline Checkpoint load_checkpoint(const std::string& dir) {
  // 1. No dir/COMPLETE: "<dir>: incomplete checkpoint (no COMPLETE marker)".
  // 2. Parse trainer_state.json (nlohmann::json::parse; a parse error names the file); its
  //    "format" must be kCheckpointFormat: "<dir>/trainer_state.json: format 2, this program reads 1".
  // 3. For model.safetensors and optimizer.safetensors: read the bytes; their size and xxh64_hex must
  //    equal the recorded ones, or the error starts with the file's path: "<dir>/model.safetensors:
  //    checksum mismatch (corrupted)", "<dir>/optimizer.safetensors: 1234 bytes, 2468 were written
  //    (truncated?)"; decode_safetensors.
  // 4. model = the first file's tensors; optimizer = the second's, except "rng/cpu" -> rng_state;
  //    state = the scalars, model_config and extra of trainer_state.json.
  // BEGIN SOLUTION: load_checkpoint(): require COMPLETE, parse the state, verify sizes and checksums, decode the tensors
  namespace fs = std::filesystem;
  const fs::path d(dir);
  if (!fs::exists(d / "COMPLETE")) throw std::runtime_error(dir + ": incomplete checkpoint (no COMPLETE marker)");
  nlohmann::json state;
  const std::string state_path = (d / "trainer_state.json").string();
  try {
    state = nlohmann::json::parse(read_file(state_path));
    if (state.at("format").get<int64_t>() != kCheckpointFormat) {
      throw std::runtime_error("format " + state.at("format").dump() + ", this program reads " +
                               std::to_string(kCheckpointFormat));
    }
  } catch (const std::exception& e) {
    throw std::runtime_error(state_path + ": " + e.what());
  }
  auto verified = [&](const std::string& file) {
    const std::string path = (d / file).string();
    const std::string bytes = read_file(path);
    try {
      const auto& recorded = state.at("files").at(file);
      if (recorded.at("bytes").get<uint64_t>() != bytes.size()) {
        throw std::runtime_error(std::to_string(bytes.size()) + " bytes, " + recorded.at("bytes").dump() +
                                 " were written (truncated?)");
      }
      if (recorded.at("xxh64").get<std::string>() != xxh64_hex(bytes))
        throw std::runtime_error("checksum mismatch (corrupted)");
    } catch (const nlohmann::json::exception& e) {
      throw std::runtime_error(state_path + ": no valid record of " + file + ": " + e.what());
    } catch (const std::runtime_error& e) {
      throw std::runtime_error(path + ": " + e.what());
    }
    return decode_safetensors(bytes, path).tensors;
  };
  Checkpoint c;
  c.model = verified("model.safetensors");
  for (auto& [name, tensor] : verified("optimizer.safetensors")) {
    if (name == "rng/cpu") {
      c.rng_state = tensor;
    } else {
      c.optimizer[name] = tensor;
    }
  }
  try {
    c.state.step = state.at("step").get<int64_t>();
    c.state.data_cursor = state.at("data_cursor").get<int64_t>();
    c.state.tokens_seen = state.at("tokens_seen").get<int64_t>();
    c.state.elapsed_seconds = state.at("elapsed_seconds").get<double>();
    c.state.world_size = state.at("world_size").get<int64_t>();
    c.state.model_config = state.at("model_config");
    c.state.extra = state.at("extra");
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(state_path + ": " + e.what());
  }
  if (!c.rng_state.defined()) throw std::runtime_error(dir + ": optimizer.safetensors has no 'rng/cpu'");
  return c;
  // END SOLUTION
}

struct LatestCheckpoint {
  std::optional<Checkpoint> checkpoint;
  std::string dir;                   // the one loaded, if any
  std::vector<std::string> skipped;  // "<dir>: <why>" for every newer one that did not load
};

// The newest checkpoint under root that loads. Directories named step_* without COMPLETE are
// reported as skipped as well (a save that was killed).
inline LatestCheckpoint load_latest_checkpoint(const std::string& root) {
  // 1. Candidates: every directory under root named like a checkpoint (checkpoint_step >= 0),
  //    complete or not, newest (highest step) first.
  // 2. Try load_checkpoint on each in turn; on success return it; on failure record "<dir>: <error>"
  //    in skipped and go on. None: an empty checkpoint with the list of skipped ones.
  // BEGIN SOLUTION: load_latest_checkpoint(): newest first, skip (and say why) every directory that does not load
  namespace fs = std::filesystem;
  LatestCheckpoint latest;
  if (!fs::is_directory(root)) return latest;
  std::vector<std::pair<int64_t, std::string>> candidates;
  for (const auto& entry : fs::directory_iterator(root)) {
    const int64_t step = checkpoint_step(entry.path().filename().string());
    if (step >= 0 && entry.is_directory()) candidates.emplace_back(step, entry.path().string());
  }
  std::sort(candidates.rbegin(), candidates.rend());
  for (const auto& [step, dir] : candidates) {
    try {
      latest.checkpoint = load_checkpoint(dir);
      latest.dir = dir;
      return latest;
    } catch (const std::exception& e) {
      latest.skipped.push_back(e.what());
    }
  }
  return latest;
  // END SOLUTION
}

// Throws std::runtime_error if the checkpoint cannot continue this run. The model configs are
// compared in both directions, and every difference is named in one error, with both values:
//   a field both have, valued differently:  "model.hidden_size: the checkpoint has 32, this run 48"
//   a field only this run has:              "model.<name>: the checkpoint has nothing, this run <value>"
//   a field only the checkpoint has:        "model.<name>: the checkpoint has <value>, this run nothing"
// joined with "; " after "cannot resume, the model differs: ". Then another world size: "cannot
// resume: world size: the checkpoint was written by 1 processes, this run has 2 (...)". The tests
// look for the field names and both values of each.
inline void check_resumable(const CheckpointState& saved, const nlohmann::json& model_config, int64_t world_size) {
  // BEGIN SOLUTION: check_resumable(): the same model config, field by field, and the same world size
  std::string differences;
  for (const auto& [key, value] : model_config.items()) {
    const auto it = saved.model_config.find(key);
    const std::string theirs = it == saved.model_config.end() ? "nothing" : it->dump();
    if (it == saved.model_config.end() || *it != value) {
      differences += (differences.empty() ? "" : "; ") + std::string("model.") + key + ": the checkpoint has " +
                     theirs + ", this run " + value.dump();
    }
  }
  for (const auto& [key, value] : saved.model_config.items()) {
    if (!model_config.contains(key)) {
      differences += (differences.empty() ? "" : "; ") + std::string("model.") + key + ": the checkpoint has " +
                     value.dump() + ", this run nothing";
    }
  }
  if (!differences.empty()) throw std::runtime_error("cannot resume, the model differs: " + differences);
  if (saved.world_size != world_size) {
    throw std::runtime_error("cannot resume: world size: the checkpoint was written by " +
                             std::to_string(saved.world_size) + " processes, this run has " +
                             std::to_string(world_size) + " (its data cursor and batch split assume the same number)");
  }
  // END SOLUTION
}

}  // namespace llm
