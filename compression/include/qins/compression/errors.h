// Error types of the compression module.
//
// CodecError: a single chunk payload is malformed (the codec layer does not know file names).
// FormatError: a .qins container is malformed; the message names the file and the problem
//   (the container wraps CodecErrors with "tensor X section Y chunk N").
// Cancelled: a progress callback returned false during a parallel decode.
#pragma once

#include <stdexcept>
#include <string>

namespace qins::comp {

class CodecError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class FormatError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Cancelled : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace qins::comp
