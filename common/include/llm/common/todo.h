// The one line every stub ends with.
//
//   LLM_TODO("lesson02: RMSNorm::forward(): x * rsqrt(mean(x^2) + eps) * weight, in fp32");
//
// It throws llm::NotImplemented, whose message names the lesson and the function, so a test run
// against an unfinished lesson says "not implemented: lesson02: RMSNorm::forward() ..." instead of
// failing on a plausible-looking wrong number.
#pragma once

#include <stdexcept>
#include <string>

namespace llm {

struct NotImplemented : std::logic_error {
  explicit NotImplemented(const std::string& what) : std::logic_error("not implemented: " + what) {}
};

}  // namespace llm

#define LLM_TODO(message) throw ::llm::NotImplemented(message)
