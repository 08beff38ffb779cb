// SentencePiece behind the qins_spm shim (see tokenizer/spm_shim/spm_shim.h for why): the
// handful of processor calls the tokenizer makes, with SentencePiece's own names.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

struct qspm;

namespace qins::tok::detail {

struct SpmStatus {
  bool good = true;
  std::string message;
  bool ok() const { return good; }
  const std::string& ToString() const { return message; }
};

class SentencePiece {
 public:
  SentencePiece();
  ~SentencePiece();
  SentencePiece(const SentencePiece&) = delete;
  SentencePiece& operator=(const SentencePiece&) = delete;

  SpmStatus LoadFromSerializedProto(std::string_view model);
  int GetPieceSize() const;
  int bos_id() const;
  int PieceToId(std::string_view piece) const;
  std::string IdToPiece(int id) const;
  bool IsControl(int id) const;
  bool IsByte(int id) const;
  bool IsUnknown(int id) const;
  SpmStatus Encode(std::string_view text, std::vector<int>* ids) const;

 private:
  qspm* p_ = nullptr;
};

SpmStatus spm_train(const std::unordered_map<std::string, std::string>& args, std::string* model);

}  // namespace qins::tok::detail
