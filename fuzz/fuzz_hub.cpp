// libFuzzer entry: the Hugging Face Hub client's JSON parsers (models/io/src/hub_json.cpp, compiled
// into it; no HTTP). Byte 0 picks the answer (even: the revision answer, odd: a tree listing page),
// the rest is its body. A body parses, or throws HubError (Protocol) with a message; any other
// exception escapes to libFuzzer as a crash. What parses is then run through the listing check.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "hub_json.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  namespace d = qins::hub::detail;
  const std::string body(reinterpret_cast<const char*>(data) + 1, size - 1);
  try {
    std::vector<qins::hub::RepoFile> files;
    if (data[0] % 2 == 0) {
      const d::RevisionAnswer a = d::parse_revision(body, "org/model", "main");
      if (!d::is_hex(a.commit, 40)) std::abort();
      if (!a.complete && !a.files.empty()) std::abort();
      files = a.files;
    } else {
      files = d::parse_tree_page(body, "org/model");
    }
    d::check_listing(files, "org/model");
    for (const auto& f : files)
      if (f.path.empty() || f.path[0] == '/' || (!f.sha256.empty() && !d::is_hex(f.sha256, 64))) std::abort();
  } catch (const qins::hub::HubError& e) {
    if (e.kind() != qins::hub::HubErrorKind::Protocol || e.what()[0] == '\0') std::abort();
  }
  return 0;
}
