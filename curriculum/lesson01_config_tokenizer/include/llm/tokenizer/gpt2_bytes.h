// Lesson 01 - GPT-2's printable stand-ins for bytes, used by its files (vocab.json, merges.txt).
//
// BPE works on bytes, but GPT-2 stores its vocabulary as JSON text, and bytes such as 0x20 (space)
// or 0x0A (newline) would make merges.txt ambiguous (it separates the two tokens of a merge with a
// space). GPT-2's `bytes_to_unicode()` (openai/gpt-2, encoder.py) therefore maps each of the 256 bytes
// to a printable Unicode character:
//
//   - the 188 bytes that are already printable Latin-1 ('!'..'~', '¡'..'¬', '®'..'ÿ') map to themselves;
//   - the other 68 (control bytes, space, 0x7F-0xA0, 0xAD) map, in increasing byte order, to
//     U+0100, U+0101, ... So space 0x20 becomes U+0120 'Ġ' and newline 0x0A becomes U+010A 'Ċ',
//     the characters everybody sees in GPT-2 token dumps.
//
// This mapping only exists in the files: token ids and encode/decode work on raw bytes.
#pragma once

#include <llm/common/todo.h>

#include <array>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

namespace llm {

// codepoints[b] = the Unicode code point GPT-2 writes for byte b.
inline std::array<uint32_t, 256> gpt2_byte_codepoints() {
  // 1. A byte b is "printable" if 33 <= b <= 126, or 161 <= b <= 172, or 174 <= b <= 255.
  // 2. Printable bytes map to themselves.
  // 3. The others, taken in increasing order, map to 256, 257, 258, ...
  LLM_TODO("lesson01: gpt2_byte_codepoints(): printable Latin-1 bytes map to themselves, the rest to 256, 257, ...");
}

// UTF-8 encoding of one code point below U+0800 (all GPT-2's stand-ins are below U+0144).
inline void append_utf8(std::string& out, uint32_t codepoint) {
  if (codepoint < 0x80) {
    out += static_cast<char>(codepoint);
  } else {
    out += static_cast<char>(0xC0 | (codepoint >> 6));
    out += static_cast<char>(0x80 | (codepoint & 0x3F));
  }
}

// Raw token bytes -> the text GPT-2's files hold for them, e.g. " the" -> "Ġthe".
inline std::string bytes_to_gpt2_text(std::string_view bytes) {
  static const std::array<uint32_t, 256> codepoints = gpt2_byte_codepoints();
  std::string out;
  for (unsigned char b : bytes) append_utf8(out, codepoints[b]);
  return out;
}

// The inverse: "Ġthe" -> " the". Throws std::invalid_argument on a character that stands for no byte.
inline std::string gpt2_text_to_bytes(std::string_view text) {
  static const std::array<int, 0x800> byte_of = [] {
    std::array<int, 0x800> table{};
    table.fill(-1);
    const auto codepoints = gpt2_byte_codepoints();
    for (int b = 0; b < 256; ++b) table[codepoints[b]] = b;
    return table;
  }();
  std::string out;
  for (size_t i = 0; i < text.size();) {
    const auto c0 = static_cast<unsigned char>(text[i]);
    uint32_t codepoint = 0x800;  // "not a stand-in" unless decoded below
    size_t length = 1;
    if (c0 < 0x80) {
      codepoint = c0;
    } else if ((c0 & 0xE0) == 0xC0 && i + 1 < text.size()) {
      codepoint = ((c0 & 0x1Fu) << 6) | (static_cast<unsigned char>(text[i + 1]) & 0x3Fu);
      length = 2;
    }
    if (codepoint >= byte_of.size() || byte_of[codepoint] < 0) {
      throw std::invalid_argument("'" + std::string(text) + "' holds a character at byte " + std::to_string(i) +
                                  " that is not one of GPT-2's 256 byte stand-ins");
    }
    out += static_cast<char>(byte_of[codepoint]);
    i += length;
  }
  return out;
}

}  // namespace llm
