// Lesson 10 - data parallelism on PyTorch's c10d: W processes, one model each, one gradient.
//
// Every process (a "rank", 0 .. W-1) holds a full copy of the model and trains on its own share of
// each global batch (lesson 06's loader splits it). Two collective operations keep the copies
// identical:
//
//   start:        broadcast every parameter from rank 0, so all ranks begin from the same weights;
//   every step:   all-reduce the gradients after backward, so every rank applies the same update.
//
// The trainer (trainer.h) normalises each rank's loss by the *global* number of trained tokens
// (itself all-reduced), so each rank's gradient is its share of the global mean; the all-reduce
// SUMs them into exactly the gradient one process would compute on the whole batch. (PyTorch's
// DistributedDataParallel instead *averages* the ranks' gradients - its docstring in
// torch/nn/parallel/distributed.py, PyTorch 1.13: "gradients from each node are averaged" - so
// per-rank means give the global mean only when every rank has the same number of tokens.)
//
// Buckets. One all-reduce per parameter would pay the per-message latency L times; flattening the
// gradients into a few large buffers (DDP's buckets, 25 MB by default) pays it a few times. Here:
// consecutive gradients are packed into flat buffers of up to bucket_bytes, each all-reduced once
// and copied back.
//
// Configuration is torchrun's: the environment variables RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR
// and MASTER_PORT. Rank 0 runs a TCPStore server on MASTER_ADDR:MASTER_PORT where the ranks meet;
// then Gloo (Debian's libgloo, built into LibTorch's c10d) moves the tensors over TCP. The same
// program therefore runs across machines, and `llm launch` starts W local processes for one.
#pragma once

#include <llm/common/todo.h>

#include <torch/torch.h>
#include <torch/csrc/distributed/c10d/FileStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <chrono>
#include <cstdlib>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace llm {

struct DistributedEnv {
  int64_t rank = 0;
  int64_t world_size = 1;
  int64_t local_rank = 0;
  std::string master_addr = "127.0.0.1";
  int64_t master_port = 29500;

  // Reads torchrun's variables; absent ones keep the defaults above (one process). A malformed or
  // inconsistent value is an error naming the variable, its value and what is valid.
  static DistributedEnv from_environment() {
    DistributedEnv env;
    auto read = [](const char* name, int64_t fallback, int64_t lo, int64_t hi) {
      const char* text = std::getenv(name);
      if (text == nullptr || *text == '\0') return fallback;
      char* end = nullptr;
      const long long v = std::strtoll(text, &end, 10);
      if (*end != '\0' || v < lo || v > hi) {
        throw std::invalid_argument(std::string(name) + "='" + text + "' is not an integer in " + std::to_string(lo) +
                                    ".." + std::to_string(hi));
      }
      return static_cast<int64_t>(v);
    };
    env.world_size = read("WORLD_SIZE", 1, 1, 1 << 16);
    env.rank = read("RANK", 0, 0, env.world_size - 1);
    env.local_rank = read("LOCAL_RANK", env.rank, 0, env.world_size - 1);
    env.master_port = read("MASTER_PORT", env.master_port, 1, 65535);
    if (const char* addr = std::getenv("MASTER_ADDR"); addr != nullptr && *addr != '\0') env.master_addr = addr;
    return env;
  }
};

// A process group: Gloo over a store. Single-process runs use none (a null pointer).
class ProcessGroup {
 public:
  // torchrun-style rendezvous: a TCPStore on master_addr:master_port (rank 0 serves it).
  static std::shared_ptr<ProcessGroup> connect(const DistributedEnv& env,
                                               std::chrono::seconds timeout = std::chrono::seconds(120)) {
    c10d::TCPStoreOptions options;
    options.port = static_cast<uint16_t>(env.master_port);
    options.isServer = env.rank == 0;
    options.numWorkers = static_cast<int>(env.world_size);
    options.waitWorkers = true;
    options.timeout = timeout;
    auto store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, options);
    return std::make_shared<ProcessGroup>(store, env.rank, env.world_size, env.master_addr, timeout);
  }

  // A rendezvous through a file that every rank can open (tests: no ports needed).
  static std::shared_ptr<ProcessGroup> with_file_store(const std::string& path, int64_t rank, int64_t world_size) {
    auto store = c10::make_intrusive<c10d::FileStore>(path, static_cast<int>(world_size));
    return std::make_shared<ProcessGroup>(store, rank, world_size, "127.0.0.1", std::chrono::seconds(120));
  }

  ProcessGroup(c10::intrusive_ptr<c10d::Store> store, int64_t rank, int64_t world_size, const std::string& host,
               std::chrono::seconds timeout)
      : rank_(rank), world_size_(world_size) {
    auto options = c10d::ProcessGroupGloo::Options::create();
    options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(host));
    options->timeout = timeout;
    group_ = c10::make_intrusive<c10d::ProcessGroupGloo>(store, static_cast<int>(rank), static_cast<int>(world_size),
                                                         options);
  }

  int64_t rank() const { return rank_; }
  int64_t world_size() const { return world_size_; }

  void all_reduce_sum(std::vector<torch::Tensor>& tensors) {
    c10d::AllreduceOptions options;
    options.reduceOp = c10d::ReduceOp::SUM;
    group_->allreduce(tensors, options)->wait();
  }
  double all_reduce_sum(double value) {
    std::vector<torch::Tensor> t{torch::tensor(value, torch::kFloat64)};
    all_reduce_sum(t);
    return t[0].item<double>();
  }
  // Gloo takes a list with one tensor per device: pass one CPU tensor (for_each_bucket packs many).
  void broadcast(std::vector<torch::Tensor>& tensors, int64_t root = 0) {
    c10d::BroadcastOptions options;
    options.rootRank = static_cast<int>(root);
    group_->broadcast(tensors, options)->wait();
  }
  void barrier() { group_->barrier()->wait(); }

 private:
  int64_t rank_, world_size_;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group_;
};

// DDP's default bucket size.
inline constexpr int64_t kBucketBytes = 25 * 1024 * 1024;

// Packs `tensors` into flat buffers of at most bucket_bytes (a dtype change, or a tensor larger
// than that, starts a new one), calls collective(flat) on each, and copies the results back.
// Gloo's collectives take one tensor per device, so a list of differently shaped tensors has to
// travel as one flat buffer anyway; bucketing also pays the per-message latency once per bucket.
inline void for_each_bucket(const std::vector<torch::Tensor>& tensors, int64_t bucket_bytes,
                            const std::function<void(torch::Tensor&)>& collective) {
  // 1. Walk the tensors in order, collecting them into a bucket until adding the next would pass
  //    bucket_bytes or change the dtype.
  // 2. For each bucket: flat = cat of the tensors reshaped to 1-D; collective(flat); copy each slice
  //    of flat back into its tensor (narrow, view_as).
  LLM_TODO("lesson10: for_each_bucket(): pack tensors into flat same-dtype buffers, run the collective on each, unpack");
}

// Every rank gets rank 0's parameters (and buffers), in place.
inline void broadcast_parameters(ProcessGroup& group, torch::nn::Module& module, int64_t bucket_bytes = kBucketBytes) {
  // The parameters' and buffers' data, through for_each_bucket with a broadcast from root 0.
  LLM_TODO("lesson10: broadcast_parameters(): every parameter and buffer from rank 0, in flat buckets");
}

// Sums the gradients of `params` over all ranks, in place, in flat buckets. Parameters without a
// gradient get a zero one first, so every rank sends the same layout (a parameter may be unused on
// one rank's batch and used on another's).
inline void all_reduce_gradients(ProcessGroup& group, const std::vector<torch::Tensor>& params,
                                 int64_t bucket_bytes = kBucketBytes) {
  // 1. For params without a defined grad: mutable_grad() = zeros_like(p).
  // 2. for_each_bucket over the grads with group.all_reduce_sum.
  LLM_TODO("lesson10: all_reduce_gradients(): zero-fill missing gradients, then SUM them over ranks in flat buckets");
}

}  // namespace llm
