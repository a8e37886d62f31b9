// Whole-file reading, and writing a file so that nothing is ever half-written.
//
// write_file_atomically writes to "<path>.tmp" and renames it over <path>: a rename within one
// directory is atomic on POSIX, so after a crash <path> holds either the old file or the new one,
// never a truncated mix. Whether an existing file may be replaced is the caller's decision (a
// tokenizer checks both of its files before writing either).
//
// Atomic is not durable: after a power cut the rename may be on disk before the data is. Where that
// matters (checkpoints), sync_path() flushes a file's data, or a directory's entries, to the disk.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
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

// fsync() a file or a directory (for a directory: its entries, so a rename into it is on disk).
inline void sync_path(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error("cannot open '" + path + "' to sync it: " + std::strerror(errno));
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) throw std::runtime_error("cannot sync '" + path + "': " + std::strerror(errno));
}

}  // namespace llm
