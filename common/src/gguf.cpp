// The GGUF writer and reader declared in llm/common/gguf.h.
#include <llm/common/gguf.h>

#include <llm/common/files.h>

#include <cstring>
#include <filesystem>
#include <fstream>

namespace llm {

namespace {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "GGUF is little-endian");

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" in the file's first four bytes
constexpr uint32_t kVersion = 3;
constexpr int64_t kQ8Block = 32;

// GGUF's value types (gguf.h, enum gguf_type).
enum ValueType : uint32_t {
  kU8 = 0,
  kI8 = 1,
  kU16 = 2,
  kI16 = 3,
  kU32 = 4,
  kI32 = 5,
  kF32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kU64 = 10,
  kI64 = 11,
  kF64 = 12
};

template <typename T>
void put(std::string& out, T value) {
  out.append(reinterpret_cast<const char*>(&value), sizeof(T));
}
void put_string(std::string& out, const std::string& s) {
  put<uint64_t>(out, s.size());
  out += s;
}

void put_value(std::string& out, const GgufValue& value) {
  std::visit(
      [&](const auto& v) {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, uint32_t>) {
          put<uint32_t>(out, kU32), put(out, v);
        } else if constexpr (std::is_same_v<T, int32_t>) {
          put<uint32_t>(out, kI32), put(out, v);
        } else if constexpr (std::is_same_v<T, float>) {
          put<uint32_t>(out, kF32), put(out, v);
        } else if constexpr (std::is_same_v<T, bool>) {
          put<uint32_t>(out, kBool), put<uint8_t>(out, v ? 1 : 0);
        } else if constexpr (std::is_same_v<T, uint64_t>) {
          put<uint32_t>(out, kU64), put(out, v);
        } else if constexpr (std::is_same_v<T, std::string>) {
          put<uint32_t>(out, kString), put_string(out, v);
        } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
          put<uint32_t>(out, kArray), put<uint32_t>(out, kString), put<uint64_t>(out, v.size());
          for (const auto& s : v) put_string(out, s);
        } else {  // std::vector<int32_t>
          put<uint32_t>(out, kArray), put<uint32_t>(out, kI32), put<uint64_t>(out, v.size());
          for (int32_t x : v) put(out, x);
        }
      },
      value);
}

uint64_t padded(uint64_t n, uint64_t alignment) {
  return (n + alignment - 1) / alignment * alignment;
}

int64_t numel_of(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// A bounds-checked cursor over a file's bytes.
struct Reader {
  const std::string& bytes;
  std::string where;
  size_t at = 0;

  [[noreturn]] void fail(const std::string& message) const {
    throw GgufError(where + ": " + message + " (at byte " + std::to_string(at) + ")");
  }
  template <typename T>
  T get() {
    if (bytes.size() - at < sizeof(T)) fail("the file ends in the middle of a value: truncated");
    T v;
    std::memcpy(&v, bytes.data() + at, sizeof(T));
    at += sizeof(T);
    return v;
  }
  std::string string() {
    const uint64_t n = get<uint64_t>();
    if (n > bytes.size() - at) fail("a string of " + std::to_string(n) + " bytes runs past the end of the file");
    std::string s = bytes.substr(at, n);
    at += n;
    return s;
  }
  GgufValue value(uint32_t type) {
    switch (type) {
      case kU32:
        return get<uint32_t>();
      case kI32:
        return get<int32_t>();
      case kF32:
        return get<float>();
      case kU64:
        return get<uint64_t>();
      case kBool: {
        const uint8_t b = get<uint8_t>();
        if (b > 1) fail("a bool holds " + std::to_string(b));
        return b == 1;
      }
      case kString:
        return string();
      case kArray: {
        const uint32_t element = get<uint32_t>();
        const uint64_t n = get<uint64_t>();
        if (n > bytes.size() - at) fail("an array of " + std::to_string(n) + " values runs past the end of the file");
        if (element == kString) {
          std::vector<std::string> v;
          for (uint64_t i = 0; i < n; ++i) v.push_back(string());
          return v;
        }
        if (element == kI32) {
          std::vector<int32_t> v;
          for (uint64_t i = 0; i < n; ++i) v.push_back(get<int32_t>());
          return v;
        }
        fail("arrays of value type " + std::to_string(element) + " are not read here (strings and i32 are)");
      }
      default:
        fail("value type " + std::to_string(type) + " is not read here (u32, i32, f32, bool, u64, string, arrays)");
    }
  }
};

}  // namespace

std::string ggml_type_name(GgmlType type) {
  switch (type) {
    case GgmlType::kF32:
      return "F32";
    case GgmlType::kF16:
      return "F16";
    case GgmlType::kQ8_0:
      return "Q8_0";
    case GgmlType::kBF16:
      return "BF16";
  }
  return "type " + std::to_string(static_cast<uint32_t>(type));
}

const GgufValue* GgufFile::find(const std::string& key) const {
  for (const auto& [k, v] : metadata) {
    if (k == key) return &v;
  }
  return nullptr;
}

uint64_t ggml_nbytes(GgmlType type, const std::vector<int64_t>& shape) {
  const auto n = static_cast<uint64_t>(numel_of(shape));
  switch (type) {
    case GgmlType::kF32:
      return 4 * n;
    case GgmlType::kF16:
    case GgmlType::kBF16:
      return 2 * n;
    case GgmlType::kQ8_0:
      if (shape.empty() || shape.back() % kQ8Block != 0) {
        throw GgufError("Q8_0 needs the innermost dimension to be a multiple of 32, got shape " +
                        c10::str(c10::IntArrayRef(shape)));
      }
      return n / kQ8Block * (2 + kQ8Block);
  }
  throw GgufError("unknown ggml type " + std::to_string(static_cast<uint32_t>(type)));
}

std::string encode_ggml(const torch::Tensor& t, GgmlType type) {
  torch::NoGradGuard no_grad;
  auto x = t.detach().to(torch::kCPU).to(torch::kFloat32).contiguous();
  torch::Tensor stored;
  switch (type) {
    case GgmlType::kF32:
      stored = x;
      break;
    case GgmlType::kF16:
      stored = x.to(torch::kHalf);
      break;
    case GgmlType::kBF16:
      stored = x.to(torch::kBFloat16);
      break;
    case GgmlType::kQ8_0: {
      ggml_nbytes(type, x.sizes().vec());                                        // checks the shape
      auto blocks = x.view({-1, kQ8Block});                                      // (nb, 32)
      auto d = std::get<0>(blocks.abs().max(1)) / 127;                           // (nb,)
      auto id = torch::where(d > 0, 1 / d, torch::zeros_like(d));                // 0 for an all-zero block
      auto scaled = blocks * id.unsqueeze(1);                                    // in [-127, 127]
      auto q = (scaled.sign() * (scaled.abs() + 0.5).floor()).to(torch::kInt8);  // C's roundf: half away from 0
      auto d16 = d.to(torch::kHalf).contiguous().view(torch::kUInt8).view({-1, 2});
      stored = torch::cat({d16, q.view(torch::kUInt8)}, 1).contiguous();  // (nb, 34): d, then the 32 q
      break;
    }
  }
  return std::string(static_cast<const char*>(stored.data_ptr()), stored.numel() * stored.element_size());
}

torch::Tensor decode_ggml(const std::string& bytes, GgmlType type, const std::vector<int64_t>& shape) {
  if (bytes.size() != ggml_nbytes(type, shape)) {
    throw GgufError("decode_ggml: " + std::to_string(bytes.size()) + " bytes for " + ggml_type_name(type) + " " +
                    c10::str(c10::IntArrayRef(shape)));
  }
  auto raw = torch::empty({static_cast<int64_t>(bytes.size())}, torch::kUInt8);
  if (!bytes.empty()) std::memcpy(raw.data_ptr(), bytes.data(), bytes.size());
  switch (type) {
    case GgmlType::kF32:
      return raw.view(torch::kFloat32).view(shape).clone();
    case GgmlType::kF16:
      return raw.view(torch::kHalf).to(torch::kFloat32).view(shape);
    case GgmlType::kBF16:
      return raw.view(torch::kBFloat16).to(torch::kFloat32).view(shape);
    case GgmlType::kQ8_0: {
      auto blocks = raw.view({-1, 2 + kQ8Block});
      auto d = blocks.narrow(1, 0, 2).contiguous().view(torch::kHalf).to(torch::kFloat32);  // (nb, 1)
      auto q = blocks.narrow(1, 2, kQ8Block).contiguous().view(torch::kInt8).to(torch::kFloat32);
      return (q * d).view(shape);
    }
  }
  throw GgufError("unknown ggml type");
}

void write_gguf(const std::string& path, const GgufFile& file) {
  if (file.alignment == 0 || (file.alignment & (file.alignment - 1)) != 0)
    throw GgufError("GGUF alignment must be a power of two, got " + std::to_string(file.alignment));
  std::string header;
  put(header, kMagic);
  put(header, kVersion);
  put<uint64_t>(header, file.tensors.size());
  const bool custom_alignment = file.alignment != 32;
  put<uint64_t>(header, file.metadata.size() + (custom_alignment ? 1 : 0));
  for (const auto& [key, value] : file.metadata) {
    put_string(header, key);
    put_value(header, value);
  }
  if (custom_alignment) put_string(header, "general.alignment"), put_value(header, file.alignment);
  uint64_t offset = 0;
  for (const auto& t : file.tensors) {
    if (t.data.defined() && t.data.sizes().vec() != t.shape) {
      throw GgufError("GGUF tensor " + t.name + ": data of shape " + c10::str(t.data.sizes()) + " for shape " +
                      c10::str(c10::IntArrayRef(t.shape)));
    }
    put_string(header, t.name);
    put<uint32_t>(header, static_cast<uint32_t>(t.shape.size()));
    for (auto d = t.shape.rbegin(); d != t.shape.rend(); ++d) put<uint64_t>(header, static_cast<uint64_t>(*d));
    put<uint32_t>(header, static_cast<uint32_t>(t.type));
    put<uint64_t>(header, offset);
    offset = padded(offset + ggml_nbytes(t.type, t.shape), file.alignment);
  }
  header.append(padded(header.size(), file.alignment) - header.size(), '\0');

  const std::string tmp = path + ".tmp";
  try {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw GgufError("cannot write '" + tmp + "'");
    out << header;
    for (const auto& t : file.tensors) {  // one tensor converted at a time
      const std::string data = encode_ggml(t.data, t.type);
      out << data;
      out << std::string(padded(data.size(), file.alignment) - data.size(), '\0');
    }
    if (!out.flush()) throw GgufError("cannot write '" + tmp + "' (disk full?)");
  } catch (...) {
    std::filesystem::remove(tmp);  // never a half-written file, under either name
    throw;
  }
  std::filesystem::rename(tmp, path);
}

GgufFile decode_gguf(const std::string& bytes, const std::string& where) {
  Reader r{bytes, where};
  if (r.get<uint32_t>() != kMagic) r.fail("not a GGUF file (the first four bytes are not \"GGUF\")");
  const uint32_t version = r.get<uint32_t>();
  if (version != 3 && version != 2) r.fail("GGUF version " + std::to_string(version) + " is not 2 or 3");
  const uint64_t n_tensors = r.get<uint64_t>(), n_kv = r.get<uint64_t>();
  if (n_tensors > bytes.size() || n_kv > bytes.size()) r.fail("implausible tensor or metadata counts");
  GgufFile file;
  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key = r.string();
    const uint32_t type = r.get<uint32_t>();
    GgufValue value = r.value(type);
    if (key == "general.alignment") {
      if (!std::holds_alternative<uint32_t>(value)) r.fail("general.alignment must be a u32");
      file.alignment = std::get<uint32_t>(value);
      if (file.alignment == 0 || (file.alignment & (file.alignment - 1)) != 0)
        r.fail("the alignment is no power of two");
      continue;
    }
    file.metadata.emplace_back(std::move(key), std::move(value));
  }
  struct Info {
    uint64_t offset;
  };
  std::vector<Info> infos;
  for (uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensor t;
    t.name = r.string();
    const uint32_t dims = r.get<uint32_t>();
    if (dims > 4) r.fail("tensor '" + t.name + "' has " + std::to_string(dims) + " dimensions; ggml has at most 4");
    std::vector<int64_t> ne;
    // At most 2^40 elements, counting only the nonzero dimensions: a zero one makes the tensor empty,
    // but [0, 2^39, 2^39] would still overflow a shape's products (found by fuzz/fuzz_gguf.cpp).
    uint64_t nonzero = 1;
    for (uint32_t d = 0; d < dims; ++d) {
      const uint64_t n = r.get<uint64_t>();
      if (n > (uint64_t{1} << 40) || (n != 0 && nonzero > (uint64_t{1} << 40) / n))
        r.fail("tensor '" + t.name + "' is implausibly large");
      if (n != 0) nonzero *= n;
      ne.push_back(static_cast<int64_t>(n));
    }
    t.shape.assign(ne.rbegin(), ne.rend());
    const uint32_t type = r.get<uint32_t>();
    if (type != 0 && type != 1 && type != 8 && type != 30) {
      r.fail("tensor '" + t.name + "' has ggml type " + std::to_string(type) +
             "; this reader takes F32, F16, BF16, Q8_0");
    }
    t.type = static_cast<GgmlType>(type);
    infos.push_back({r.get<uint64_t>()});
    file.tensors.push_back(std::move(t));
  }
  const uint64_t data_start = padded(r.at, file.alignment);
  if (data_start > bytes.size()) r.fail("the file ends before its tensor data");
  for (size_t i = 0; i < file.tensors.size(); ++i) {
    auto& t = file.tensors[i];
    uint64_t n = 0;
    try {
      n = ggml_nbytes(t.type, t.shape);
    } catch (const GgufError& e) {
      r.fail("tensor '" + t.name + "': " + e.what());
    }
    const uint64_t offset = infos[i].offset;
    if (offset % file.alignment != 0) r.fail("tensor '" + t.name + "' is not aligned");
    if (offset > bytes.size() - data_start || n > bytes.size() - data_start - offset)
      r.fail("tensor '" + t.name + "' runs past the end of the file");
    t.data = decode_ggml(bytes.substr(data_start + offset, n), t.type, t.shape);
  }
  return file;
}

GgufFile read_gguf(const std::string& path) {
  std::string bytes;
  try {
    bytes = read_file(path);
  } catch (const std::runtime_error& e) {
    throw GgufError(e.what());
  }
  return decode_gguf(bytes, path);
}

}  // namespace llm
