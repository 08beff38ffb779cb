// The Hub's JSON answers, parsed (hub_json.cpp): the revision answer
// (GET /api/models/REPO/revision/REV?blobs=true) and the pages of the tree listing
// (GET /api/models/REPO/tree/COMMIT?recursive=true). Private to qins_hub. No HTTP here: the fuzz
// target fuzz_hub compiles hub_json.cpp alone.
//
// Every answer comes from a server the user named (HF_ENDPOINT, a mirror): anything but the
// documented shape is HubError(Protocol) naming the repo, the answer and the field, never a JSON
// library exception.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "qins/io/hub.h"

namespace qins::hub::detail {

bool is_hex(const std::string& s, size_t n);

struct RevisionAnswer {
  std::string commit;          // 40 hex digits
  bool complete = false;       // every sibling came with its size: no tree listing needed
  std::vector<RepoFile> files;  // the siblings (when complete)
};
RevisionAnswer parse_revision(const std::string& body, const std::string& repo, const std::string& revision);

// One page of the tree listing: its files (directories and entries without a path skipped).
std::vector<RepoFile> parse_tree_page(const std::string& body, const std::string& repo);

// Refuses a listing with an unsafe path (empty, absolute, "..") or a sha256 that is not 64 hex digits.
void check_listing(const std::vector<RepoFile>& files, const std::string& repo);

}  // namespace qins::hub::detail
