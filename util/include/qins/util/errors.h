// The one error type of the model libraries (graph, io, runtime, tools): a sentence naming the
// file (or field, or request) and the problem. The app sees it through runtime/engine.h.
#pragma once

#include <stdexcept>
#include <string>

namespace qins {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Thrown when a progress callback or stop flag asked to cancel a load or conversion.
class Cancelled : public Error {
 public:
  Cancelled() : Error("cancelled") {}
};

}  // namespace qins
