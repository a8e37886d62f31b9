// The safetensors reader and writer declared in llm/common/safetensors.h. Compiled once into
// llm_common rather than inline in the header: its JSON handling is about 0.8 s of template
// instantiation, which every test file that includes a checkpoint would otherwise pay again.
#include <llm/common/safetensors.h>

#include <llm/common/files.h>

#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <utility>
#include <vector>

namespace llm {

namespace {

struct DtypeName {
  const char* name;
  torch::Dtype dtype;
};

const std::vector<DtypeName>& dtype_table() {
  static const std::vector<DtypeName> table = {
      {"F64", torch::kFloat64}, {"F32", torch::kFloat32}, {"F16", torch::kFloat16}, {"BF16", torch::kBFloat16},
      {"I64", torch::kInt64},   {"I32", torch::kInt32},   {"I16", torch::kInt16},   {"I8", torch::kInt8},
      {"U8", torch::kUInt8},    {"BOOL", torch::kBool}};
  return table;
}

std::string dtype_name(torch::Dtype dtype) {
  for (const auto& [name, d] : dtype_table()) {
    if (d == dtype) return name;
  }
  throw SafetensorsError(std::string("safetensors: cannot store dtype ") + c10::toString(dtype));
}

torch::Dtype dtype_of(const std::string& name, const std::string& where) {
  for (const auto& [n, d] : dtype_table()) {
    if (name == n) return d;
  }
  throw SafetensorsError(where + ": unknown dtype '" + name + "'");
}

}  // namespace

std::string encode_safetensors(const TensorMap& tensors, const std::map<std::string, std::string>& metadata) {
  static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors are little-endian");
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  nlohmann::ordered_json meta = {{"format", "pt"}};
  for (const auto& [k, v] : metadata) meta[k] = v;
  header["__metadata__"] = meta;
  std::vector<torch::Tensor> data;
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    if (name == "__metadata__") throw SafetensorsError("safetensors: '__metadata__' cannot name a tensor");
    auto t = tensor.detach().to(torch::kCPU).contiguous();
    const uint64_t bytes = static_cast<uint64_t>(t.numel()) * t.element_size();
    header[name] = {
        {"dtype", dtype_name(t.scalar_type())}, {"shape", t.sizes().vec()}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    data.push_back(t);
  }
  std::string json = header.dump();
  json.append((8 - json.size() % 8) % 8, ' ');
  const uint64_t n = json.size();
  std::string out(8, '\0');
  std::memcpy(&out[0], &n, 8);
  out += json;
  out.reserve(out.size() + offset);
  for (const auto& t : data) out.append(static_cast<const char*>(t.data_ptr()), t.numel() * t.element_size());
  return out;
}

void save_safetensors(const std::string& path, const TensorMap& tensors,
                      const std::map<std::string, std::string>& metadata) {
  write_file_atomically(path, encode_safetensors(tensors, metadata));
}

namespace {

// Parses and checks a header: every entry well formed, every offset inside the `data_size` data
// bytes, each byte count matching its shape, the data covered exactly once.
void parse_header(const char* json, uint64_t n, uint64_t data_size, const std::string& where,
                  std::map<std::string, SafetensorsEntry>& entries, std::map<std::string, std::string>& metadata) {
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(json, json + n);
  } catch (const nlohmann::json::exception& e) {
    throw SafetensorsError(where + ": the header is not valid JSON: " + e.what());
  }
  if (!header.is_object()) throw SafetensorsError(where + ": the header is not a JSON object");
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (const auto& [name, entry] : header.items()) {
    const std::string at = where + ": tensor '" + name + "'";
    if (name == "__metadata__") {
      if (!entry.is_object()) throw SafetensorsError(where + ": __metadata__ is not an object");
      for (const auto& [k, v] : entry.items()) {
        if (!v.is_string()) throw SafetensorsError(where + ": __metadata__['" + k + "'] is not a string");
        metadata[k] = v.get<std::string>();
      }
      continue;
    }
    if (!entry.is_object() || !entry.contains("dtype") || !entry.contains("shape") || !entry.contains("data_offsets") ||
        !entry["dtype"].is_string() || !entry["shape"].is_array() || !entry["data_offsets"].is_array() ||
        entry["data_offsets"].size() != 2) {
      throw SafetensorsError(at + ": expected {dtype, shape, data_offsets: [begin, end]}");
    }
    const torch::Dtype dtype = dtype_of(entry["dtype"].get<std::string>(), at);
    std::vector<int64_t> shape;
    uint64_t numel = 1;
    for (const auto& d : entry["shape"]) {
      if (!d.is_number_unsigned()) throw SafetensorsError(at + ": a shape entry is not a non-negative integer");
      const uint64_t v = d.get<uint64_t>();
      if (v > (uint64_t{1} << 40) || (v != 0 && numel > (uint64_t{1} << 40) / v)) {
        throw SafetensorsError(at + ": the shape is implausibly large");
      }
      numel *= v;
      shape.push_back(static_cast<int64_t>(v));
    }
    const auto& offsets = entry["data_offsets"];
    if (!offsets[0].is_number_unsigned() || !offsets[1].is_number_unsigned()) {
      throw SafetensorsError(at + ": data_offsets must be non-negative integers");
    }
    const uint64_t begin = offsets[0].get<uint64_t>(), end = offsets[1].get<uint64_t>();
    const uint64_t element = static_cast<uint64_t>(c10::elementSize(dtype));
    if (begin > end || end > data_size) {
      throw SafetensorsError(at + ": data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                             "] are outside the " + std::to_string(data_size) + " data bytes");
    }
    if (end - begin != numel * element) {
      throw SafetensorsError(at + ": " + std::to_string(end - begin) + " bytes for a shape of " +
                             std::to_string(numel) + " elements of " + std::to_string(element) + " bytes");
    }
    ranges.emplace_back(begin, end);
    entries[name] = {dtype, shape, begin, end};
  }
  // The data must be covered exactly once, without gaps or overlaps (the format's own rule).
  std::sort(ranges.begin(), ranges.end());
  uint64_t covered = 0;
  for (const auto& [b, e] : ranges) {
    if (b != covered) {
      throw SafetensorsError(where + ": tensor data " + (b < covered ? "overlaps" : "has a gap") + " at byte " +
                             std::to_string(std::min(b, covered)));
    }
    covered = e;
  }
  if (covered != data_size) {
    throw SafetensorsError(where + ": " + std::to_string(data_size - covered) + " bytes after the last tensor");
  }
}

}  // namespace

SafetensorsFile decode_safetensors(const std::string& bytes, const std::string& where) {
  if (bytes.size() < 8)
    throw SafetensorsError(where + ": " + std::to_string(bytes.size()) + " bytes, too short for safetensors");
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  if (n > bytes.size() - 8) {
    throw SafetensorsError(where + ": the header length " + std::to_string(n) + " exceeds the file (" +
                           std::to_string(bytes.size()) + " bytes): truncated or not safetensors");
  }
  std::map<std::string, SafetensorsEntry> entries;
  SafetensorsFile file;
  parse_header(bytes.data() + 8, n, bytes.size() - 8 - n, where, entries, file.metadata);
  const char* data = bytes.data() + 8 + n;
  for (const auto& [name, e] : entries) {
    auto t = torch::empty(e.shape, torch::dtype(e.dtype));
    if (e.end > e.begin) std::memcpy(t.data_ptr(), data + e.begin, e.end - e.begin);
    file.tensors[name] = t;
  }
  return file;
}

SafetensorsFile load_safetensors(const std::string& path) {
  std::string bytes;
  try {
    bytes = read_file(path);
  } catch (const std::runtime_error& e) {
    throw SafetensorsError(e.what());
  }
  return decode_safetensors(bytes, path);
}

namespace {

// pread() until `size` bytes are in; a short file or an I/O error throws naming the file.
void read_at(int fd, char* out, uint64_t size, uint64_t offset, const std::string& where) {
  while (size > 0) {
    const ssize_t got = ::pread(fd, out, size, static_cast<off_t>(offset));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      throw SafetensorsError(where + ": cannot read " + std::to_string(size) + " bytes at offset " +
                             std::to_string(offset) +
                             (got < 0 ? std::string(": ") + std::strerror(errno) : ": the file ends"));
    }
    out += got, size -= static_cast<uint64_t>(got), offset += static_cast<uint64_t>(got);
  }
}

// Readies `size` bytes of fresh memory at `p` for being written in one go. Memory a process has never
// touched is mapped in by the kernel one 4 KB page fault at a time, and on the virtual machines this
// project runs on a fault costs ~16 us: reading Llama-3.2-1B's 2.5 GB into its tensors took 9.9 s.
// Asking for transparent huge pages (2 MB) on the range and populating it in one call (Linux 5.14's
// MADV_POPULATE_WRITE) took the same read to 0.3 s (measured 2026-12-07, pread from the page cache
// into an anonymous mapping). Both are hints: an older kernel refuses them and nothing changes.
void prepare_destination(void* p, uint64_t size) {
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
  constexpr uintptr_t kPage = 4096;
  const auto begin = (reinterpret_cast<uintptr_t>(p) + kPage - 1) & ~(kPage - 1);
  const auto end = (reinterpret_cast<uintptr_t>(p) + size) & ~(kPage - 1);
  if (end <= begin || end - begin < (uintptr_t{2} << 20)) return;  // small tensors: not worth a syscall
  ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
  ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_POPULATE_WRITE);
}

}  // namespace

SafetensorsReader::SafetensorsReader(const std::string& path) : path_(path) {
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) throw SafetensorsError("cannot read '" + path + "': " + std::strerror(errno));
  try {
    struct stat st {};
    if (::fstat(fd_, &st) != 0) throw SafetensorsError("cannot stat '" + path + "': " + std::strerror(errno));
    const uint64_t size = static_cast<uint64_t>(st.st_size);
    if (size < 8) throw SafetensorsError(path + ": " + std::to_string(size) + " bytes, too short for safetensors");
    uint64_t n = 0;
    read_at(fd_, reinterpret_cast<char*>(&n), 8, 0, path);
    if (n > size - 8) {
      throw SafetensorsError(path + ": the header length " + std::to_string(n) + " exceeds the file (" +
                             std::to_string(size) + " bytes): truncated or not safetensors");
    }
    std::string header(n, '\0');
    read_at(fd_, header.data(), n, 8, path);
    data_start_ = 8 + n;
    parse_header(header.data(), n, size - data_start_, path, entries_, metadata_);
  } catch (...) {
    ::close(fd_);
    throw;
  }
}

SafetensorsReader::~SafetensorsReader() {
  if (fd_ >= 0) ::close(fd_);
}

void SafetensorsReader::read_into(const std::string& name, torch::Tensor& out) const {
  auto it = entries_.find(name);
  if (it == entries_.end()) throw SafetensorsError(path_ + ": no tensor '" + name + "'");
  const SafetensorsEntry& e = it->second;
  if (out.sizes().vec() != e.shape) {
    throw SafetensorsError(path_ + ": tensor '" + name + "' has shape " + c10::str(c10::IntArrayRef(e.shape)) +
                           " but " + c10::str(out.sizes()) + " is expected");
  }
  if (e.end == e.begin) return;
  if (out.scalar_type() == e.dtype && out.is_contiguous() && out.device().is_cpu()) {
    prepare_destination(out.data_ptr(), e.end - e.begin);
    read_at(fd_, static_cast<char*>(out.data_ptr()), e.end - e.begin, data_start_ + e.begin,
            path_ + ": tensor '" + name + "'");
    return;
  }
  auto stored = torch::empty(e.shape, torch::dtype(e.dtype));
  prepare_destination(stored.data_ptr(), e.end - e.begin);
  read_at(fd_, static_cast<char*>(stored.data_ptr()), e.end - e.begin, data_start_ + e.begin,
          path_ + ": tensor '" + name + "'");
  torch::NoGradGuard no_grad;
  out.copy_(stored);
}

torch::Tensor SafetensorsReader::read(const std::string& name) const {
  auto it = entries_.find(name);
  if (it == entries_.end()) throw SafetensorsError(path_ + ": no tensor '" + name + "'");
  auto t = torch::empty(it->second.shape, torch::dtype(it->second.dtype));
  read_into(name, t);
  return t;
}

}  // namespace llm
