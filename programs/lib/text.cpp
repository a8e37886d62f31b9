#include <llm/cli/text.h>

#include <stdexcept>

namespace llm::cli {

namespace {

bool blank(std::string_view s) {
  for (char c : s) {
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r') return false;
  }
  return true;
}

}  // namespace

std::vector<std::string> split_documents(const std::string& text, const std::string& mode) {
  std::vector<std::string> docs;
  auto push = [&](std::string_view d) {
    if (!blank(d)) docs.emplace_back(d);
  };
  if (mode == "file") {
    push(text);
  } else if (mode == "paragraphs") {
    size_t start = 0;
    while (start < text.size()) {
      size_t end = text.find("\n\n", start);
      if (end == std::string::npos) end = text.size();
      push(std::string_view(text).substr(start, end - start));
      start = end + 2;
    }
  } else if (mode == "chapters") {
    size_t start = 0;
    for (size_t pos = 0; pos < text.size();) {
      const size_t line_end = text.find('\n', pos);
      const std::string_view line =
          std::string_view(text).substr(pos, line_end == std::string::npos ? std::string::npos : line_end - pos);
      if (pos > start && (line.substr(0, 8) == "Chapter " || line.substr(0, 8) == "CHAPTER ")) {
        push(std::string_view(text).substr(start, pos - start));
        start = pos;
      }
      if (line_end == std::string::npos) break;
      pos = line_end + 1;
    }
    push(std::string_view(text).substr(start));
  } else {
    throw std::invalid_argument("split mode '" + mode + "' is not one of: chapters, paragraphs, file");
  }
  return docs;
}

size_t incomplete_utf8_suffix(std::string_view s) {
  // Walk back over at most 3 continuation bytes to the lead byte and see if its sequence is complete.
  const size_t n = s.size();
  for (size_t back = 1; back <= 4 && back <= n; ++back) {
    const unsigned char c = static_cast<unsigned char>(s[n - back]);
    if ((c & 0xC0) == 0x80) continue;  // a continuation byte
    size_t need = 1;
    if ((c & 0xE0) == 0xC0)
      need = 2;
    else if ((c & 0xF0) == 0xE0)
      need = 3;
    else if ((c & 0xF8) == 0xF0)
      need = 4;
    return need > back ? back : 0;
  }
  return 0;
}

std::string Utf8Stream::push(std::string_view bytes) {
  pending_.append(bytes);
  const size_t keep = incomplete_utf8_suffix(pending_);
  std::string out = pending_.substr(0, pending_.size() - keep);
  pending_.erase(0, pending_.size() - keep);
  return out;
}

std::string Utf8Stream::flush() {
  std::string out;
  out.swap(pending_);
  return out;
}

}  // namespace llm::cli
