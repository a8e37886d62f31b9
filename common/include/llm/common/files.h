// Whole-file reading, and writing a file so that nothing is ever half-written.
//
// write_file_atomically writes to "<path>.tmp" and renames it over <path>: a rename within one
// directory is atomic on POSIX, so after a crash <path> holds either the old file or the new one,
// never a truncated mix. Whether an existing file may be replaced is the caller's decision (a
// tokenizer checks both of its files before writing either).
#pragma once

#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>

namespace llm {

// Throws std::runtime_error naming the path if it cannot be read.
inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read '" + path + "'");
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Throws std::runtime_error naming the temporary file if it cannot be written; <path> is untouched then.
inline void write_file_atomically(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
    if (!out.flush()) throw std::runtime_error("cannot write '" + tmp + "'");
  }
  std::filesystem::rename(tmp, path);
}

}  // namespace llm
