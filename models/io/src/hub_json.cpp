// The Hub's JSON answers, parsed defensively (hub_json.h).
#include "hub_json.h"

#include <algorithm>
#include <cctype>

#include <nlohmann/json.hpp>

namespace qins::hub::detail {

namespace {

using json = nlohmann::json;

// Where an error happened, for its message: "org/name: the file listing's entry 3".
struct Where {
  const std::string& repo;
  std::string what;
  [[noreturn]] void fail(const std::string& problem) const {
    throw HubError(HubErrorKind::Protocol, repo + ": " + what + ": " + problem);
  }
};

json parse_object_or_array(const std::string& body, const Where& w) {
  try {
    return json::parse(body);
  } catch (const json::exception& e) {
    w.fail(std::string("not valid JSON (") + e.what() + ")");
  }
}

// A member that must be a string when present (absent or null: `fallback`).
std::string string_member(const json& o, const char* name, const Where& w, const std::string& fallback = "") {
  const auto it = o.find(name);
  if (it == o.end() || it->is_null()) return fallback;
  if (!it->is_string()) w.fail(std::string("'") + name + "' is not a string");
  return it->get<std::string>();
}

// A size: an unsigned integer, or absent (`has` false).
uint64_t size_member(const json& o, const char* name, bool* has) {
  const auto it = o.find(name);
  *has = it != o.end() && it->is_number_unsigned();
  return *has ? it->get<uint64_t>() : 0;
}

// The "lfs" object of an entry, when it has one: its sha256 and size.
void read_lfs(const json& o, const char* sha_name, const char* alt_sha_name, RepoFile* f, const Where& w) {
  const auto it = o.find("lfs");
  if (it == o.end() || !it->is_object()) return;
  const Where lw{w.repo, w.what + "'s lfs"};
  f->sha256 = string_member(*it, sha_name, lw, alt_sha_name ? string_member(*it, alt_sha_name, lw) : std::string());
  bool has = false;
  const uint64_t size = size_member(*it, "size", &has);
  if (has) f->size = size;
}

}  // namespace

bool is_hex(const std::string& s, size_t n) {
  return s.size() == n && std::all_of(s.begin(), s.end(), [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); });
}

RevisionAnswer parse_revision(const std::string& body, const std::string& repo, const std::string& revision) {
  const Where w{repo, "the answer for revision " + revision};
  const json rev = parse_object_or_array(body, w);
  if (!rev.is_object()) w.fail("not a JSON object");
  RevisionAnswer a;
  a.commit = string_member(rev, "sha", w);
  if (!is_hex(a.commit, 40)) throw HubError(HubErrorKind::Protocol, repo + ": revision " + revision + " did not resolve to a commit");
  const auto siblings = rev.find("siblings");
  a.complete = siblings != rev.end() && siblings->is_array();
  if (!a.complete) return a;
  size_t i = 0;
  for (const json& s : *siblings) {
    const Where sw{repo, w.what + ", sibling " + std::to_string(i++)};
    if (!s.is_object()) sw.fail("not a JSON object");
    bool has_size = false;
    RepoFile f;
    f.size = size_member(s, "size", &has_size);
    if (!s.contains("rfilename") || !has_size) {  // an answer without sizes: the tree listing has them
      a.complete = false;
      a.files.clear();
      return a;
    }
    f.path = string_member(s, "rfilename", sw);
    f.blob_id = string_member(s, "blobId", sw);
    read_lfs(s, "sha256", nullptr, &f, sw);
    a.files.push_back(std::move(f));
  }
  return a;
}

std::vector<RepoFile> parse_tree_page(const std::string& body, const std::string& repo) {
  const Where w{repo, "the file listing"};
  const json entries = parse_object_or_array(body, w);
  if (!entries.is_array()) w.fail("not a list");
  std::vector<RepoFile> files;
  size_t i = 0;
  for (const json& e : entries) {
    const Where ew{repo, "the file listing's entry " + std::to_string(i++)};
    if (!e.is_object()) ew.fail("not a JSON object");
    if (string_member(e, "type", ew, "file") != "file" || !e.contains("path")) continue;
    RepoFile f;
    f.path = string_member(e, "path", ew);
    bool has_size = false;
    f.size = size_member(e, "size", &has_size);
    f.blob_id = string_member(e, "oid", ew);
    read_lfs(e, "oid", "sha256", &f, ew);
    files.push_back(std::move(f));
  }
  return files;
}

void check_listing(const std::vector<RepoFile>& files, const std::string& repo) {
  for (const auto& f : files) {
    if (!f.sha256.empty() && !is_hex(f.sha256, 64))
      throw HubError(HubErrorKind::Protocol, repo + ": " + f.path + ": the listing's sha256 is not 64 hex digits");
    if (f.path.empty() || f.path.find("..") != std::string::npos || f.path[0] == '/')
      throw HubError(HubErrorKind::Protocol, repo + ": the listing names an unsafe path '" + f.path + "'");
  }
}

}  // namespace qins::hub::detail
