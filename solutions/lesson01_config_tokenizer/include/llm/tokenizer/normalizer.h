// Lesson 01 (given) - Unicode normalization before tokenizing, and the UTF-8 facts it needs.
//
// The same visible text can be different bytes: "é" is U+00E9 (C3 A9) or "e" + U+0301 COMBINING
// ACUTE ACCENT (65 CC 81). Qwen's tokenizers normalize to NFC (canonical composition; Unicode
// Standard Annex #15) before pre-tokenizing, so both spellings get the same tokens; GPT-2's and
// Llama 3's do not normalize at all (tokenizer.json "normalizer": null), so there they differ.
//
// NFC needs Unicode's composition tables, which utf8proc (JuliaStrings/utf8proc, Debian's
// libutf8proc) provides. Normalization is defined on valid UTF-8 only, while our tokenizers accept
// any bytes; so every maximal run of valid UTF-8 is normalized and the invalid bytes between runs
// are kept as they are (Hugging Face's tokenizers never see invalid bytes: Rust strings cannot hold
// them). decode(encode(x)) is then NFC(x), which is x for text already in NFC, as nearly all is.
#pragma once

#include <utf8proc.h>

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

namespace llm {

enum class Normalizer { kNone, kNfc };

// The length of the valid UTF-8 sequence starting at text[i] (1-4), or 0 if the bytes there are not
// one: a stray continuation byte, a truncated sequence, an overlong form, a surrogate (U+D800 to
// U+DFFF) or a code point above U+10FFFF are all invalid (RFC 3629).
inline size_t utf8_sequence_length(std::string_view text, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char c = byte(i);
  if (c < 0x80) return 1;
  size_t n = 0;
  uint32_t cp = 0;
  if ((c & 0xE0) == 0xC0) {
    n = 2, cp = c & 0x1F;
  } else if ((c & 0xF0) == 0xE0) {
    n = 3, cp = c & 0x0F;
  } else if ((c & 0xF8) == 0xF0) {
    n = 4, cp = c & 0x07;
  } else {
    return 0;
  }
  if (i + n > text.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (byte(i + k) & 0x3F);
  }
  static constexpr uint32_t kSmallest[5] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < kSmallest[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return n;
}

// The code point of the valid sequence of `length` bytes at text[i] (utf8_sequence_length).
inline uint32_t utf8_codepoint(std::string_view text, size_t i, size_t length) {
  static constexpr unsigned char kLeadMask[5] = {0, 0x7F, 0x1F, 0x0F, 0x07};
  uint32_t cp = static_cast<unsigned char>(text[i]) & kLeadMask[length];
  for (size_t k = 1; k < length; ++k) cp = (cp << 6) | (static_cast<unsigned char>(text[i + k]) & 0x3F);
  return cp;
}

// Unicode's White_Space property (PropList.txt): what \s means in tokenizers' regexes.
inline bool is_unicode_space(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

// A "word" character as the Rust regex crate's \w has it: letters, marks, numbers (letter-like and
// decimal), connector punctuation ('_'), and the joiners U+200C, U+200D.
inline bool is_word_char(uint32_t cp) {
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(cp))) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC:
    case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_PC:
      return true;
    default:
      return cp == 0x200C || cp == 0x200D;
  }
}

// NFC of every valid UTF-8 run of `text`; invalid bytes pass through unchanged.
inline std::string nfc(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    size_t j = i;  // [i, j): valid UTF-8
    bool ascii = true;
    while (j < text.size()) {
      const size_t n = utf8_sequence_length(text, j);
      if (n == 0) break;
      ascii = ascii && n == 1;
      j += n;
    }
    if (ascii) {
      out.append(text.substr(i, j - i));  // ASCII is its own NFC
    } else {
      utf8proc_uint8_t* mapped = nullptr;
      const auto length =
          utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data() + i), static_cast<utf8proc_ssize_t>(j - i),
                       &mapped, static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
      if (length < 0) {
        throw std::runtime_error(std::string("NFC normalization failed: ") + utf8proc_errmsg(length));
      }
      std::unique_ptr<utf8proc_uint8_t, decltype(&std::free)> owned(mapped, &std::free);
      out.append(reinterpret_cast<const char*>(mapped), static_cast<size_t>(length));
    }
    while (j < text.size() && utf8_sequence_length(text, j) == 0) out += text[j++];  // invalid bytes as they are
    i = j;
  }
  return out;
}

// `text` normalized as `normalizer` says. Returns a view of `text` itself when nothing changes
// (kNone), else of `storage`, which it fills.
inline std::string_view normalize(Normalizer normalizer, std::string_view text, std::string& storage) {
  if (normalizer == Normalizer::kNone) return text;
  storage = nfc(text);
  return storage;
}

}  // namespace llm
