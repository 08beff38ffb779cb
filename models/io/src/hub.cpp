// The Hugging Face Hub client (see hub.h): HubClient, the steps of a pull, and the public helpers.
// The rest lives beside it: hub_http.cpp (libcurl transport, token, retry rules), hub_api.cpp
// (resolve and listing), hub_download.cpp (one blob's resumable verified download), hub_cache.cpp
// (the cache layout, locks, snapshot links); hub_internal.h is what they share.
#include "qins/io/hub.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <regex>

#include "hub_internal.h"

namespace fs = std::filesystem;

namespace qins::hub {

namespace detail {

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

std::string trim(std::string s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  size_t i = 0;
  while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
  return s.substr(i);
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string home_dir() {
  const std::string h = env("HOME");
  return h.empty() ? std::string("/tmp") : h;
}

}  // namespace detail

using namespace detail;

// ---------------------------------------------------------------------------------------------
// Public helpers

std::pair<std::string, std::string> parse_repo_ref(const std::string& ref) {
  const auto at = ref.find('@');
  std::string repo = ref.substr(0, at);
  std::string rev = at == std::string::npos ? "main" : ref.substr(at + 1);
  static const std::regex ok(R"(^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$)");
  if (!std::regex_match(repo, ok) || repo.find("..") != std::string::npos || repo.find("--") != std::string::npos)
    throw HubError(HubErrorKind::RepoNotFound,
                   "'" + ref + "' is not a Hugging Face model id (expected ORG/NAME, optionally @REVISION)");
  if (rev.empty() || rev.find("..") != std::string::npos)
    throw HubError(HubErrorKind::RevisionNotFound, "'" + ref + "': the revision after @ is empty or invalid");
  return {repo, rev};
}

std::string app_models_dir() {
  if (const std::string d = env("QINS_MODELS_DIR"); !d.empty()) return d;
#ifdef __APPLE__
  return home_dir() + "/Library/Application Support/QINS/QINS Chat/models";
#else
  const std::string xdg = env("XDG_DATA_HOME");
  return (xdg.empty() ? home_dir() + "/.local/share" : xdg) + "/QINS/QINS Chat/models";
#endif
}

std::string format_bytes(uint64_t n) {
  char buf[32];
  const double d = static_cast<double>(n);
  if (n < 1000) std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(n));
  else if (n < 1000 * 1000) std::snprintf(buf, sizeof buf, "%.1f kB", d / 1e3);
  else if (n < uint64_t{1000} * 1000 * 1000) std::snprintf(buf, sizeof buf, "%.1f MB", d / 1e6);
  else std::snprintf(buf, sizeof buf, "%.2f GB", d / 1e9);
  return buf;
}

bool is_needed_file(const std::string& path) {
  if (path.find('/') != std::string::npos) return false;
  static const char* names[] = {"config.json",           "generation_config.json", "tokenizer.model",
                                "tokenizer_config.json", "tokenizer.json",         "special_tokens_map.json",
                                "model.safetensors.index.json"};
  for (const char* n : names)
    if (path == n) return true;
  const std::string ext = ".safetensors";
  return path.size() > ext.size() && path.compare(path.size() - ext.size(), ext.size(), ext) == 0;
}

std::vector<RepoFile> needed_files(const std::vector<RepoFile>& all) {
  std::vector<RepoFile> out;
  for (const auto& f : all)
    if (is_needed_file(f.path)) out.push_back(f);
  // Small files first: a config or tokenizer problem shows before gigabytes are fetched.
  std::stable_sort(out.begin(), out.end(), [](const RepoFile& a, const RepoFile& b) { return a.size < b.size; });
  return out;
}

// ---------------------------------------------------------------------------------------------
// A pull

namespace detail {

bool Puller::report(bool force) {
  if (!progress_) return true;
  const auto now = Clock::now();
  if (!force && now - last_report_ < std::chrono::milliseconds(100)) return true;
  last_report_ = now;
  samples_.emplace_back(now, fetched_);
  while (samples_.size() > 2 && now - samples_.front().first > std::chrono::seconds(5)) samples_.pop_front();
  const double dt = std::chrono::duration<double>(now - samples_.front().first).count();
  p_.bytes_per_second = dt > 0.2 ? static_cast<double>(fetched_ - samples_.front().second) / dt : 0.0;
  p_.eta_seconds = p_.bytes_per_second > 0 && p_.total >= p_.done
                       ? static_cast<double>(p_.total - p_.done) / p_.bytes_per_second
                       : -1.0;
  return progress_(p_);
}

// The needed files must make a model qins can convert, each with a name under blobs/.
void Puller::check_is_model(const PullResult& res, const std::string& repo) const {
  const std::string& commit = res.info.commit;
  const auto has = [&](const std::string& p) {
    return std::any_of(res.files.begin(), res.files.end(), [&](const RepoFile& f) { return f.path == p; });
  };
  const bool any_st = std::any_of(res.files.begin(), res.files.end(), [](const RepoFile& f) {
    return f.path.size() > 12 && f.path.compare(f.path.size() - 12, 12, ".safetensors") == 0;
  });
  if (!has("config.json") || !any_st)
    throw HubError(HubErrorKind::NotAModel, repo + "@" + commit.substr(0, 12) +
                                                " has no config.json or no .safetensors weights at the top level: it is "
                                                "not a model folder qins can convert (GGUF-only and adapter repos are not)");
  for (const auto& f : res.files)
    if (f.blob_name().empty())
      throw HubError(HubErrorKind::Protocol, repo + ": " + f.path + ": the listing gives neither an LFS sha256 nor a blob id");
}

// What is already in the cache (counted as done and reused); returns the bytes still to fetch.
uint64_t Puller::count_present(PullResult& res, const std::string& blobs) {
  std::error_code ec;
  p_.file_count = static_cast<int>(res.files.size());
  uint64_t need = 0;
  for (const auto& f : res.files) {
    p_.total += f.size;
    const std::string final_path = blobs + "/" + f.blob_name();
    if (fs::is_regular_file(final_path, ec) && fs::file_size(final_path, ec) == f.size) {
      p_.done += f.size;
      res.reused_bytes += f.size;
      continue;
    }
    const std::string part = final_path + ".incomplete";
    uint64_t partial = fs::is_regular_file(part, ec) ? fs::file_size(part, ec) : 0;
    need += f.size - std::min(partial, f.size);
  }
  return need;
}

void Puller::download_all(const std::string& repo, const std::string& commit, const std::vector<RepoFile>& files,
                          const CacheLayout& cache) {
  std::error_code ec;
  int index = 0;
  for (const auto& f : files) {
    ++index;
    p_.file = f.path;
    p_.file_index = index;
    p_.file_total = f.size;
    p_.file_done = 0;
    const std::string final_path = cache.blobs + "/" + f.blob_name();
    if (!(fs::is_regular_file(final_path, ec) && fs::file_size(final_path, ec) == f.size)) {
      fetch_file(repo, commit, f, cache.blobs, cache.locks);
    } else {
      p_.file_done = f.size;
    }
    link_snapshot(cache.repo_dir, commit, f);
    if (!report(true)) throw Cancelled();
  }
}

PullResult Puller::pull(const std::string& repo, const std::string& revision) {
  PullResult res;
  res.info = resolve(repo, revision);
  const std::string& commit = res.info.commit;
  res.files = needed_files(res.info.files);
  check_is_model(res, repo);
  const CacheLayout cache = prepare_cache(repo, commit);
  // What is already here, and the space the rest needs (checked before the first byte).
  const uint64_t need = count_present(res, cache.blobs);
  check_free_space(repo, cache.blobs, need);
  download_all(repo, commit, res.files, cache);
  res.downloaded_bytes = fetched_;
  if (revision != commit) write_ref(cache.repo_dir, revision, commit);
  res.snapshot_dir = cache.repo_dir + "/snapshots/" + commit;
  p_.file.clear();
  p_.stage = "done";
  report(true);
  return res;
}

}  // namespace detail

HubClient::HubClient(HubOptions options) : opt_(std::move(options)) {
  endpoint_ = !opt_.endpoint.empty() ? opt_.endpoint : env("HF_ENDPOINT");
  if (endpoint_.empty()) endpoint_ = "https://huggingface.co";
  while (!endpoint_.empty() && endpoint_.back() == '/') endpoint_.pop_back();
  cache_dir_ = !opt_.cache_dir.empty() ? opt_.cache_dir : default_cache_dir();
  token_ = opt_.token ? *opt_.token : read_token();
}

RepoInfo HubClient::resolve(const std::string& repo, const std::string& revision, const std::atomic<bool>* cancel) {
  static const PullProgressFn none;
  Puller p(opt_, endpoint_, cache_dir_, token_, none, cancel);
  return p.resolve(repo, revision);
}

PullResult HubClient::pull(const std::string& repo, const std::string& revision, const PullProgressFn& progress,
                           const std::atomic<bool>* cancel) {
  Puller p(opt_, endpoint_, cache_dir_, token_, progress, cancel);
  return p.pull(repo, revision);
}

}  // namespace qins::hub
