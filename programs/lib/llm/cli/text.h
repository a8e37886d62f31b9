// Text handling the programs share: cutting a corpus into documents, and streaming decoded tokens
// without ever printing half of a UTF-8 character.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace llm::cli {

// How a text file is cut into documents:
//   chapters     a new document at every line that starts with "Chapter " or "CHAPTER " (the
//                built-in Austen corpus: 246 chapters in train.txt, 24 in val.txt); text before
//                the first heading is a document of its own
//   paragraphs   at every blank line
//   file         the whole file is one document
// Documents that are only whitespace are dropped.
std::vector<std::string> split_documents(const std::string& text, const std::string& mode);
inline const std::vector<std::string> kSplitModes = {"chapters", "paragraphs", "file"};

// Feeds bytes in, hands out the longest prefix that is whole UTF-8 characters. A token may end in
// the middle of a character (a BPE token is bytes): printing it at once would show a replacement
// character, and a client decoding a stream would see invalid UTF-8.
class Utf8Stream {
 public:
  std::string push(std::string_view bytes);  // the complete characters now available
  std::string flush();                       // whatever is left (possibly invalid), at the end
 private:
  std::string pending_;
};

// The number of bytes at the end of `s` that start an incomplete UTF-8 sequence (0 if s ends whole).
size_t incomplete_utf8_suffix(std::string_view s);

}  // namespace llm::cli
