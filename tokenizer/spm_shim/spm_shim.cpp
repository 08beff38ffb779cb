#include "spm_shim.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <unordered_map>
#include <vector>

struct qspm {
  sentencepiece::SentencePieceProcessor sp;
};

namespace {
thread_local std::string g_error;
int fail(const std::string& what) {
  g_error = what;
  return -1;
}
}  // namespace

extern "C" {

const char* qspm_last_error(void) { return g_error.c_str(); }

qspm* qspm_new(void) { return new (std::nothrow) qspm(); }
void qspm_free(qspm* p) { delete p; }

int qspm_load(qspm* p, const char* model, size_t size) {
  const auto status = p->sp.LoadFromSerializedProto(std::string_view(model, size));
  return status.ok() ? 0 : fail(status.ToString());
}

int qspm_piece_size(const qspm* p) { return p->sp.GetPieceSize(); }
int qspm_bos_id(const qspm* p) { return p->sp.bos_id(); }
int qspm_piece_to_id(const qspm* p, const char* piece, size_t size) {
  return p->sp.PieceToId(std::string_view(piece, size));
}

size_t qspm_id_to_piece(const qspm* p, int id, char* buf, size_t cap) {
  const std::string& s = p->sp.IdToPiece(id);
  std::memcpy(buf, s.data(), s.size() < cap ? s.size() : cap);
  return s.size();
}

int qspm_is_control(const qspm* p, int id) { return p->sp.IsControl(id) ? 1 : 0; }
int qspm_is_byte(const qspm* p, int id) { return p->sp.IsByte(id) ? 1 : 0; }
int qspm_is_unknown(const qspm* p, int id) { return p->sp.IsUnknown(id) ? 1 : 0; }

long qspm_encode(const qspm* p, const char* text, size_t size, int* ids, size_t cap) {
  std::vector<int> out;
  const auto status = p->sp.Encode(std::string_view(text, size), &out);
  if (!status.ok()) return fail(status.ToString());
  for (size_t i = 0; i < out.size() && i < cap; ++i) ids[i] = out[i];
  return static_cast<long>(out.size());
}

int qspm_train(const char* const* keys, const char* const* values, size_t n, char** model, size_t* model_size) {
  std::unordered_map<std::string, std::string> args;
  for (size_t i = 0; i < n; ++i) args[keys[i]] = values[i];
  std::string bytes;
  const auto status = sentencepiece::SentencePieceTrainer::Train(args, nullptr, &bytes);
  if (!status.ok()) return fail(status.ToString());
  *model = static_cast<char*>(std::malloc(bytes.size() ? bytes.size() : 1));
  if (*model == nullptr) return fail("out of memory");
  std::memcpy(*model, bytes.data(), bytes.size());
  *model_size = bytes.size();
  return 0;
}

void qspm_free_buffer(char* buf) { std::free(buf); }

}  // extern "C"
