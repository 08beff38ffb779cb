// The Hugging Face Hub client: resolve a revision to a commit, list a model repo's files, and
// download the ones a Phi-3 model needs into the standard Hugging Face cache, with resume,
// verification (sha256 for LFS files, the git blob id for the others, and every size), stall
// detection with bounded retries, and a lock per blob. libcurl does the HTTP (TLS, proxies from
// the usual environment variables); OpenSSL's EVP does the hashing. Torch-free and Qt-free: a Qt
// worker thread drives it through the progress callback and the cancel flag.
//
// Cache layout (shared with huggingface_hub and other tools):
//   <cache>/models--ORG--NAME/blobs/<sha256 or git blob id>     verified files
//   <cache>/models--ORG--NAME/blobs/<id>.incomplete             a partial download (resumed later)
//   <cache>/models--ORG--NAME/snapshots/<commit>/<path>         relative symlinks to the blobs
//   <cache>/models--ORG--NAME/refs/<revision>                   the commit the revision resolved to
//   <cache>/.locks/models--ORG--NAME/<id>.lock                  one flock per blob
// <cache> = $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "qins/util/errors.h"

namespace qins::hub {

// What went wrong, for a caller that reacts differently (the app: "set a token", "free space").
enum class HubErrorKind {
  Network,       // connection failed / dropped, retries exhausted (resumable)
  Stalled,       // no bytes for stall_timeout_s, retries exhausted (resumable)
  Server,        // 5xx after retries (resumable)
  RateLimited,   // 429 after retries (resumable)
  GatedRepo,     // 401/403 GatedRepo: accept the licence and set HF_TOKEN
  Unauthorized,  // 401/403 otherwise (bad or missing token)
  RepoNotFound,
  RevisionNotFound,
  EntryNotFound,
  NotAModel,     // the repo has no config.json or no safetensors
  DiskFull,      // not enough free space (checked before the first byte), or ENOSPC/EFBIG on write
  Verification,  // size or hash mismatch: the partial file was removed
  Protocol,      // an answer the client cannot use (bad JSON, missing headers)
};

class HubError : public Error {
 public:
  HubError(HubErrorKind kind, const std::string& message) : Error(message), kind_(kind) {}
  HubErrorKind kind() const { return kind_; }
  // True when running the same pull again continues where this one stopped.
  bool resumable() const {
    return kind_ == HubErrorKind::Network || kind_ == HubErrorKind::Stalled || kind_ == HubErrorKind::Server ||
           kind_ == HubErrorKind::RateLimited;
  }

 private:
  HubErrorKind kind_;
};

struct HubOptions {
  std::string endpoint;   // "" = $HF_ENDPOINT, else https://huggingface.co
  std::string cache_dir;  // "" = default_cache_dir()
  std::optional<std::string> token;  // unset = $HF_TOKEN, else the file $HF_HOME/token; "" = no token
  double stall_timeout_s = 30.0;     // no bytes for this long: the attempt fails (and is retried)
  double connect_timeout_s = 30.0;
  int max_retries = 5;               // failed attempts in a row (without new bytes) per request
  double backoff_initial_s = 1.0;    // doubled per failed attempt, capped at backoff_max_s
  double backoff_max_s = 30.0;
  double retry_after_max_s = 300.0;  // a 429's Retry-After is honoured up to this
  uint64_t free_space_margin = uint64_t{64} << 20;  // kept free beyond what the files need
  // Tests: pretend the cache's file system has this many bytes free (instead of statvfs).
  std::optional<uint64_t> free_space_override;
  std::string user_agent = "qins/1.0";
};

// One file of a repo at a commit.
struct RepoFile {
  std::string path;    // "model-00001-of-00002.safetensors"
  uint64_t size = 0;
  std::string sha256;  // LFS files: the sha256 of the content (hex); "" otherwise
  std::string blob_id; // the git blob id (sha1 hex) when known; "" otherwise
  bool lfs() const { return !sha256.empty(); }
  // The name under blobs/ (what huggingface_hub uses: the sha256 for LFS files, else the git blob id).
  std::string blob_name() const { return lfs() ? sha256 : blob_id; }
};

struct RepoInfo {
  std::string repo;      // "org/name"
  std::string revision;  // as asked ("main", a tag, a commit)
  std::string commit;    // 40 hex digits
  std::vector<RepoFile> files;  // every file of the repo (the whole tree)
};

// Progress of a pull. Bytes are whole-pull totals unless prefixed with file_.
struct PullProgress {
  std::string stage;          // "listing", "downloading", "verifying", "waiting for ...", "retrying ..."
  std::string file;           // the current file ("" between files)
  int file_index = 0, file_count = 0;  // 1-based index among the needed files
  uint64_t file_done = 0, file_total = 0;
  uint64_t done = 0, total = 0;        // bytes present in the cache / needed (reused files count as done)
  double bytes_per_second = 0.0;       // recent download rate (0 when unknown)
  double eta_seconds = -1.0;           // -1 when unknown
};
// Called from the pulling thread at most ~10 times a second and at every stage change; returning
// false cancels (the pull throws qins::Cancelled and keeps the partial files for a later resume).
using PullProgressFn = std::function<bool(const PullProgress&)>;

struct PullResult {
  RepoInfo info;
  std::vector<RepoFile> files;   // the files pulled (the ones a model needs)
  std::string snapshot_dir;      // <cache>/models--ORG--NAME/snapshots/<commit>: a Hugging Face folder
  uint64_t downloaded_bytes = 0; // fetched by this pull
  uint64_t reused_bytes = 0;     // already in the cache
};

class HubClient {
 public:
  explicit HubClient(HubOptions options = {});

  const std::string& endpoint() const { return endpoint_; }
  const std::string& cache_dir() const { return cache_dir_; }
  bool has_token() const { return !token_.empty(); }

  // The commit `revision` points at and the repo's files (sizes, LFS sha256, blob ids).
  RepoInfo resolve(const std::string& repo, const std::string& revision = "main",
                   const std::atomic<bool>* cancel = nullptr);

  // resolve() + download what needed_files() picks. Cancel: `cancel` set to true, or the progress
  // callback returning false; both throw qins::Cancelled with the partial files kept (pause =
  // cancel, then pull again later to resume). Errors: HubError naming the repo and the file.
  PullResult pull(const std::string& repo, const std::string& revision = "main", const PullProgressFn& progress = {},
                  const std::atomic<bool>* cancel = nullptr);

 private:
  HubOptions opt_;
  std::string endpoint_, cache_dir_, token_;
};

// The files of a repo a Phi-3 model needs: config.json, generation_config.json, tokenizer.model,
// tokenizer_config.json, tokenizer.json, special_tokens_map.json, model.safetensors.index.json and
// every *.safetensors at the top level.
bool is_needed_file(const std::string& path);
std::vector<RepoFile> needed_files(const std::vector<RepoFile>& all);

// $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub.
std::string default_cache_dir();
// <cache>/models--ORG--NAME
std::string repo_cache_dir(const std::string& cache_dir, const std::string& repo);
// "org/name@rev" -> {"org/name", "rev"} ("main" when no @). Throws HubError for a bad repo id.
std::pair<std::string, std::string> parse_repo_ref(const std::string& ref);
// Where the app keeps converted models (Qt's AppDataLocation + "/models" for "QINS"/"QINS Chat"):
// Linux $XDG_DATA_HOME (else ~/.local/share)/QINS/QINS Chat/models; macOS
// ~/Library/Application Support/QINS/QINS Chat/models. $QINS_MODELS_DIR overrides.
std::string app_models_dir();
// "12.3 MB", "1.20 GB"
std::string format_bytes(uint64_t n);
// Where a pulled model came from, for the .qins metadata: JSON with the Hub endpoint, repo,
// revision, commit and the files (path, size, sha256 of LFS files, git blob id).
std::string origin_json(const std::string& endpoint, const std::string& repo, const std::string& revision,
                        const PullResult& r);

}  // namespace qins::hub
