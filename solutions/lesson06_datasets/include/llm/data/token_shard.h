// Lesson 06 - token shards: a corpus tokenized once, stored as raw ids, read memory-mapped.
//
// Tokenizing is slow next to training (lesson 01's encoder runs at tens of MB/s; a training step
// wants its tokens now), so the corpus is tokenized once into a binary file and every epoch reads
// the ids straight from it. nanoGPT's train.bin and llm.c's .bin shards do exactly this.
//
// Documents are joined with the end-of-text token *appended* to each one, as GPT-2 and nanoGPT do
// (nanoGPT's prepare.py: ids = encode_ordinary(text); ids.append(eot)):
//
//     doc A: a0 a1 a2      doc B: b0 b1        ->   a0 a1 a2 EOT b0 b1 EOT
//
// so the model learns where a document ends (and, after an EOT, how one begins).
//
// File layout, little-endian, a 64-byte header then the ids:
//
//     offset  type       field
//     0       char[8]    magic "LLMTOKS" + '\0'
//     8       uint32     version (1)
//     12      uint32     bytes per id: 2 (uint16, when vocab_size <= 65536) or 4 (uint32)
//     16      uint64     count: the number of ids
//     24      uint64     vocab_size: a reader checks it against its tokenizer
//     32      zeros      reserved, up to byte 64
//     64      count ids
//
// uint16 halves the file and the memory traffic for every vocabulary up to 65,536 tokens (GPT-2's
// 50,257 included); the header says which width was used, so a reader never guesses.
#pragma once

#include <llm/common/files.h>
#include <llm/common/todo.h>

#include <torch/torch.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

namespace llm {

inline constexpr char kShardMagic[8] = {'L', 'L', 'M', 'T', 'O', 'K', 'S', '\0'};
inline constexpr uint32_t kShardVersion = 1;
inline constexpr size_t kShardHeaderBytes = 64;

struct ShardHeader {
  uint32_t version = kShardVersion;
  uint32_t bytes_per_id = 2;
  uint64_t count = 0;
  uint64_t vocab_size = 0;
};

// 2 when every id of a vocab_size vocabulary fits in uint16, else 4.
inline uint32_t shard_id_width(int64_t vocab_size) {
  return vocab_size <= 65536 ? 2 : 4;
}

// The ids of every document, each followed by eot_id: the stream a shard stores.
inline std::vector<uint32_t> join_documents(const std::vector<std::vector<int32_t>>& documents, int32_t eot_id) {
  // Append each document's ids, then eot_id, in order. (A document may be empty: it still ends
  // with its EOT, so the count of EOTs is the count of documents.)
  // BEGIN SOLUTION: join_documents(): every document's ids followed by the end-of-text id
  std::vector<uint32_t> out;
  size_t total = documents.size();
  for (const auto& doc : documents) total += doc.size();
  out.reserve(total);
  for (const auto& doc : documents) {
    for (int32_t id : doc) out.push_back(static_cast<uint32_t>(id));
    out.push_back(static_cast<uint32_t>(eot_id));
  }
  return out;
  // END SOLUTION
}

// The header and ids in the layout above, as bytes (little-endian: x86 and ARM are; the check is
// at compile time).
inline std::string encode_token_shard(const std::vector<uint32_t>& ids, int64_t vocab_size) {
  static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "token shards are little-endian");
  // 1. Check vocab_size is in [1, 2^32], naming it and the value ("token shard: vocab_size must be
  //    in 1..2^32, got 0"), and every id < vocab_size, naming the id and the valid range ("token
  //    shard: id 70000 at index 2 is outside the vocabulary 0..4095"): an out-of-range id must
  //    never reach the file.
  // 2. width = shard_id_width(vocab_size). Write the 64-byte header (magic, version, width, count,
  //    vocab_size, zeros), then every id as uint16 or uint32.
  // BEGIN SOLUTION: encode_token_shard(): a 64-byte header, then every id as uint16 or uint32
  if (vocab_size < 1 || vocab_size > (int64_t{1} << 32)) {
    throw std::invalid_argument("token shard: vocab_size must be in 1..2^32, got " + std::to_string(vocab_size));
  }
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] >= static_cast<uint64_t>(vocab_size)) {
      throw std::invalid_argument("token shard: id " + std::to_string(ids[i]) + " at index " + std::to_string(i) +
                                  " is outside the vocabulary 0.." + std::to_string(vocab_size - 1));
    }
  }
  const uint32_t width = shard_id_width(vocab_size);
  std::string bytes(kShardHeaderBytes + ids.size() * width, '\0');
  const uint64_t count = ids.size(), vocab = static_cast<uint64_t>(vocab_size);
  std::memcpy(&bytes[0], kShardMagic, 8);
  std::memcpy(&bytes[8], &kShardVersion, 4);
  std::memcpy(&bytes[12], &width, 4);
  std::memcpy(&bytes[16], &count, 8);
  std::memcpy(&bytes[24], &vocab, 8);
  char* data = &bytes[kShardHeaderBytes];
  for (size_t i = 0; i < ids.size(); ++i) {
    if (width == 2) {
      const uint16_t v = static_cast<uint16_t>(ids[i]);
      std::memcpy(data + 2 * i, &v, 2);
    } else {
      std::memcpy(data + 4 * i, &ids[i], 4);
    }
  }
  return bytes;
  // END SOLUTION
}

// Writes a shard atomically (a temporary file renamed into place); refuses to replace an existing
// file unless `overwrite`.
inline void write_token_shard(const std::string& path, const std::vector<uint32_t>& ids, int64_t vocab_size,
                              bool overwrite = false) {
  if (!overwrite && std::filesystem::exists(path)) {
    throw std::runtime_error("'" + path + "' already exists; refusing to overwrite it");
  }
  write_file_atomically(path, encode_token_shard(ids, vocab_size));
}

// Reads the 64-byte header at `data` (`size` bytes in all) and checks it against the file: the
// magic, the version, the width (2 or 4), and that count ids of that width are exactly what follows
// the header. Every problem is a std::runtime_error naming `where` and what was found.
inline ShardHeader parse_shard_header(const unsigned char* data, size_t size, const std::string& where) {
  // 1. size >= 64, else "<where>: N bytes is too short for a token shard header (64 bytes)".
  // 2. The first 8 bytes are the magic, else "<where>: not a token shard (bad magic)".
  // 3. version == 1, else "<where>: token shard version 2, this reader knows 1"; bytes_per_id 2 or
  //    4, else "<where>: bytes per id must be 2 or 4, got 3"; vocab_size > 0; and
  //    64 + count * width == size, naming the two sizes and the word "truncated": "<where>: the
  //    header says 4 ids of 2 bytes but the file holds 7 bytes after the header (truncated or
  //    corrupt)".
  // BEGIN SOLUTION: parse_shard_header(): check magic, version, width and that the ids fill the file exactly
  if (size < kShardHeaderBytes) {
    throw std::runtime_error(where + ": " + std::to_string(size) + " bytes is too short for a token shard header (" +
                             std::to_string(kShardHeaderBytes) + " bytes)");
  }
  if (std::memcmp(data, kShardMagic, 8) != 0) throw std::runtime_error(where + ": not a token shard (bad magic)");
  ShardHeader h;
  std::memcpy(&h.version, data + 8, 4);
  std::memcpy(&h.bytes_per_id, data + 12, 4);
  std::memcpy(&h.count, data + 16, 8);
  std::memcpy(&h.vocab_size, data + 24, 8);
  if (h.version != kShardVersion) {
    throw std::runtime_error(where + ": token shard version " + std::to_string(h.version) + ", this reader knows " +
                             std::to_string(kShardVersion));
  }
  if (h.bytes_per_id != 2 && h.bytes_per_id != 4) {
    throw std::runtime_error(where + ": bytes per id must be 2 or 4, got " + std::to_string(h.bytes_per_id));
  }
  if (h.vocab_size == 0) throw std::runtime_error(where + ": vocab_size is 0");
  const uint64_t payload = size - kShardHeaderBytes;
  if (h.count > payload / h.bytes_per_id || h.count * h.bytes_per_id != payload) {
    throw std::runtime_error(where + ": the header says " + std::to_string(h.count) + " ids of " +
                             std::to_string(h.bytes_per_id) + " bytes but the file holds " + std::to_string(payload) +
                             " bytes after the header (truncated or corrupt)");
  }
  return h;
  // END SOLUTION
}

// A shard opened read-only with mmap: the kernel pages ids in as they are read, so opening a
// multi-gigabyte shard costs nothing and several processes (data-parallel ranks) share one copy.
class TokenShard {
 public:
  explicit TokenShard(const std::string& path) : path_(path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw std::runtime_error("cannot open token shard '" + path + "': " + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      ::close(fd);
      throw std::runtime_error("cannot stat '" + path + "'");
    }
    size_ = static_cast<size_t>(st.st_size);
    if (size_ > 0) {
      void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
      ::close(fd);
      if (p == MAP_FAILED) throw std::runtime_error("cannot mmap '" + path + "': " + std::strerror(errno));
      data_ = static_cast<const unsigned char*>(p);
    } else {
      ::close(fd);
    }
    try {
      header_ = parse_shard_header(data_, size_, path);
    } catch (...) {
      unmap();
      throw;
    }
  }
  ~TokenShard() { unmap(); }
  TokenShard(const TokenShard&) = delete;
  TokenShard& operator=(const TokenShard&) = delete;

  int64_t size() const { return static_cast<int64_t>(header_.count); }  // number of ids
  int64_t vocab_size() const { return static_cast<int64_t>(header_.vocab_size); }
  uint32_t bytes_per_id() const { return header_.bytes_per_id; }
  const std::string& path() const { return path_; }

  // ids start .. start + length - 1 as an int64 tensor (length,), the dtype embeddings and losses take.
  torch::Tensor slice(int64_t start, int64_t length) const {
    // 1. Check 0 <= start, 0 <= length and start + length <= size(), naming the range and the size:
    //    "ids 95..104 requested from a shard of 100".
    // 2. Wrap the mapped bytes after the header in a tensor without copying (torch::from_blob with
    //    kUInt16-like width: LibTorch 1.13 has no uint16 dtype, so read int16 and mask with 0xFFFF,
    //    or int32 for 4-byte ids), narrow to the range, and convert to int64 (this copies).
    // BEGIN SOLUTION: TokenShard::slice(): view the mapped ids, narrow to the range, widen to int64
    TORCH_CHECK(start >= 0 && length >= 0 && start + length <= size(), "token shard: ids ", start, "..",
                start + length - 1, " requested from a shard of ", size(), " ('", path_, "')");
    void* base = const_cast<unsigned char*>(data_ + kShardHeaderBytes);
    if (header_.bytes_per_id == 2) {
      auto raw = torch::from_blob(base, {size()}, torch::kInt16).narrow(0, start, length);
      return raw.to(torch::kLong).bitwise_and(0xFFFF);  // int16 -> the unsigned value
    }
    auto raw = torch::from_blob(base, {size()}, torch::kInt32).narrow(0, start, length);
    return raw.to(torch::kLong).bitwise_and(int64_t{0xFFFFFFFF});
    // END SOLUTION
  }

 private:
  void unmap() {
    if (data_ != nullptr) ::munmap(const_cast<unsigned char*>(data_), size_);
    data_ = nullptr;
  }

  std::string path_;
  const unsigned char* data_ = nullptr;
  size_t size_ = 0;
  ShardHeader header_;
};

}  // namespace llm
