#include "spm_backend.h"

#include <cstdlib>
#include <mutex>
#include <stdexcept>

#include "../spm_shim/spm_shim.h"
#include "qins/tokenizer/tokenizer.h"

#if defined(QINS_SPM_DLOPEN)
#include <dlfcn.h>
#include <unistd.h>

#include <climits>
#endif

namespace qins::tok::detail {
namespace {

struct Api {
  decltype(&qspm_last_error) last_error = nullptr;
  decltype(&qspm_new) make = nullptr;
  decltype(&qspm_free) destroy = nullptr;
  decltype(&qspm_load) load = nullptr;
  decltype(&qspm_piece_size) piece_size = nullptr;
  decltype(&qspm_bos_id) bos_id = nullptr;
  decltype(&qspm_piece_to_id) piece_to_id = nullptr;
  decltype(&qspm_id_to_piece) id_to_piece = nullptr;
  decltype(&qspm_is_control) is_control = nullptr;
  decltype(&qspm_is_byte) is_byte = nullptr;
  decltype(&qspm_is_unknown) is_unknown = nullptr;
  decltype(&qspm_encode) encode = nullptr;
  decltype(&qspm_train) train = nullptr;
  decltype(&qspm_free_buffer) free_buffer = nullptr;
};

#if defined(QINS_SPM_DLOPEN)
// Sanitizer runtimes refuse RTLD_DEEPBIND; without it the shim works only in processes that do
// not also load libtorch's protobuf (tokenizer tests and fuzzers).
#if defined(__SANITIZE_ADDRESS__)
#define QINS_NO_DEEPBIND 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(memory_sanitizer) || __has_feature(thread_sanitizer)
#define QINS_NO_DEEPBIND 1
#endif
#endif
#if defined(QINS_NO_DEEPBIND)
constexpr int kOpenFlags = RTLD_NOW | RTLD_LOCAL;
#else
constexpr int kOpenFlags = RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND;
#endif

std::string exe_dir() {
  char buf[PATH_MAX];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return {};
  std::string p(buf, static_cast<size_t>(n));
  return p.substr(0, p.rfind('/'));
}

Api load_api() {
  // Search order: $QINS_SPM_SHIM, beside the executable, the install lib dir, the build tree.
  std::vector<std::string> candidates;
  if (const char* env = std::getenv("QINS_SPM_SHIM")) candidates.emplace_back(env);
  const std::string dir = exe_dir();
  if (!dir.empty()) {
    candidates.push_back(dir + "/libqins_spm.so");
    candidates.push_back(dir + "/../lib/qins/libqins_spm.so");
  }
  candidates.emplace_back(QINS_SPM_BUILD_PATH);
  std::string tried;
  void* h = nullptr;
  for (const auto& c : candidates) {
    h = dlopen(c.c_str(), kOpenFlags);
    if (h != nullptr) break;
    const char* err = dlerror();
    tried += "\n  " + c + ": " + (err ? err : "not loadable");
  }
  if (h == nullptr) throw TokenizerError("cannot load the SentencePiece shim libqins_spm.so; tried:" + tried);
  Api a;
  auto sym = [&](auto& fn, const char* name) {
    fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(h, name));
    if (fn == nullptr) throw TokenizerError(std::string("SentencePiece shim lacks ") + name);
  };
  sym(a.last_error, "qspm_last_error");
  sym(a.make, "qspm_new");
  sym(a.destroy, "qspm_free");
  sym(a.load, "qspm_load");
  sym(a.piece_size, "qspm_piece_size");
  sym(a.bos_id, "qspm_bos_id");
  sym(a.piece_to_id, "qspm_piece_to_id");
  sym(a.id_to_piece, "qspm_id_to_piece");
  sym(a.is_control, "qspm_is_control");
  sym(a.is_byte, "qspm_is_byte");
  sym(a.is_unknown, "qspm_is_unknown");
  sym(a.encode, "qspm_encode");
  sym(a.train, "qspm_train");
  sym(a.free_buffer, "qspm_free_buffer");
  return a;
}
#else
Api load_api() {
  return Api{qspm_last_error, qspm_new,        qspm_free,     qspm_load,      qspm_piece_size,
             qspm_bos_id,     qspm_piece_to_id, qspm_id_to_piece, qspm_is_control, qspm_is_byte,
             qspm_is_unknown, qspm_encode,     qspm_train,    qspm_free_buffer};
}
#endif

const Api& api() {
  static const Api a = load_api();
  return a;
}

}  // namespace

SentencePiece::SentencePiece() {
  p_ = api().make();
  if (p_ == nullptr) throw std::bad_alloc();
}
SentencePiece::~SentencePiece() {
  if (p_ != nullptr) api().destroy(p_);
}

SpmStatus SentencePiece::LoadFromSerializedProto(std::string_view model) {
  if (api().load(p_, model.data(), model.size()) == 0) return {};
  return {false, api().last_error()};
}
int SentencePiece::GetPieceSize() const { return api().piece_size(p_); }
int SentencePiece::bos_id() const { return api().bos_id(p_); }
int SentencePiece::PieceToId(std::string_view piece) const { return api().piece_to_id(p_, piece.data(), piece.size()); }
std::string SentencePiece::IdToPiece(int id) const {
  char buf[64];
  const size_t n = api().id_to_piece(p_, id, buf, sizeof buf);
  if (n <= sizeof buf) return std::string(buf, n);
  std::string s(n, '\0');
  api().id_to_piece(p_, id, s.data(), n);
  return s;
}
bool SentencePiece::IsControl(int id) const { return api().is_control(p_, id) != 0; }
bool SentencePiece::IsByte(int id) const { return api().is_byte(p_, id) != 0; }
bool SentencePiece::IsUnknown(int id) const { return api().is_unknown(p_, id) != 0; }

SpmStatus SentencePiece::Encode(std::string_view text, std::vector<int>* ids) const {
  ids->resize(text.size() + 8);  // at most one piece per byte, plus the dummy prefix
  long n = api().encode(p_, text.data(), text.size(), ids->data(), ids->size());
  if (n < 0) return {false, api().last_error()};
  if (static_cast<size_t>(n) > ids->size()) {
    ids->resize(static_cast<size_t>(n));
    n = api().encode(p_, text.data(), text.size(), ids->data(), ids->size());
    if (n < 0) return {false, api().last_error()};
  }
  ids->resize(static_cast<size_t>(n));
  return {};
}

SpmStatus spm_train(const std::unordered_map<std::string, std::string>& args, std::string* model) {
  std::vector<const char*> keys, values;
  for (const auto& [k, v] : args) {
    keys.push_back(k.c_str());
    values.push_back(v.c_str());
  }
  char* buf = nullptr;
  size_t size = 0;
  if (api().train(keys.data(), values.data(), keys.size(), &buf, &size) != 0) return {false, api().last_error()};
  model->assign(buf, size);
  api().free_buffer(buf);
  return {};
}

}  // namespace qins::tok::detail
