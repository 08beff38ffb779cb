// What the Hub client's sources share (hub.cpp, hub_http.cpp, hub_api.cpp, hub_download.cpp,
// hub_cache.cpp); private to qins_hub. See qins/io/hub.h for the public interface.
#pragma once

#include <curl/curl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "qins/io/hub.h"
#include "hub_json.h"

namespace qins::hub::detail {

using Clock = std::chrono::steady_clock;

// Small string and environment helpers (hub.cpp).
std::string env(const char* name);
std::string trim(std::string s);
std::string lower(std::string s);
std::string home_dir();

// URL and header helpers (hub_http.cpp).
std::string bare_etag(std::string e);  // W/"abc" -> abc
std::string escape(const std::string& s);
std::string escape_path(const std::string& path);  // escapes each /-separated part
// The token from $HF_TOKEN, $HUGGING_FACE_HUB_TOKEN, else $HF_HOME/token; "" when none.
std::string read_token();

// ---------------------------------------------------------------------------------------------
// One HTTP exchange (hub_http.cpp)

struct Response {
  long status = 0;
  CURLcode code = CURLE_OK;
  std::string curl_error;
  std::map<std::string, std::string> headers;  // lower-case names, last value wins
  std::string body;                            // API answers and error bodies (capped)
  std::string redirect_url;                    // absolute Location of a 3xx
  bool stalled = false, cancelled = false;
  std::string header(const std::string& name) const {
    const auto it = headers.find(name);
    return it == headers.end() ? std::string() : it->second;
  }
};

// Called with body bytes of a 2xx answer; returns false to abort (the sink sets its own reason).
using BodySink = std::function<bool(const char*, size_t, const Response&)>;

class Http {
 public:
  Http(const HubOptions& opt, std::string endpoint, std::string token);
  ~Http();
  Http(const Http&) = delete;
  Http& operator=(const Http&) = delete;

  // One request, redirects not followed. The token goes only to the endpoint's own origin.
  Response request(const std::string& url, bool head, const std::string& range, const BodySink& sink,
                   const std::atomic<bool>* cancel, std::function<bool()>* tick);

 private:
  const HubOptions& opt_;
  std::string endpoint_origin_, token_;
  CURL* curl_ = nullptr;
};

// Retries (hub_http.cpp).
// Sleeps `seconds` in short slices; throws Cancelled when asked to stop.
void sleep_cancellable(double seconds, const std::atomic<bool>* cancel, const std::function<bool()>& tick);
std::string retry_stage(double wait);
bool transient_status(long s);
double retry_after_s(const Response& r, double fallback, double cap);
std::string describe_failure(const Response& r, double stall_s);

// ---------------------------------------------------------------------------------------------
// Files (hub_cache.cpp)

// Closes a file descriptor at scope exit.
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

void fsync_dir(const std::string& dir);
// <repo_dir>/refs/<revision>: the commit the revision resolved to.
void write_ref(const std::string& repo_dir, const std::string& revision, const std::string& commit);

// Where one repo lives in the cache.
struct CacheLayout {
  std::string repo_dir;  // <cache>/models--ORG--NAME
  std::string blobs;     // <repo_dir>/blobs
  std::string locks;     // <cache>/.locks/models--ORG--NAME
};

// ---------------------------------------------------------------------------------------------
// The state of one pull: HTTP, progress accounting, options.

class BlobDownload;

class Puller {
 public:
  Puller(const HubOptions& opt, const std::string& endpoint, const std::string& cache, const std::string& token,
         const PullProgressFn& progress, const std::atomic<bool>* cancel)
      : opt_(opt), endpoint_(endpoint), cache_(cache), has_token_(!token.empty()), http_(opt, endpoint, token),
        progress_(progress), cancel_(cancel) {
    tick_ = [this] { return report(false); };
  }

  RepoInfo resolve(const std::string& repo, const std::string& revision);  // hub_api.cpp
  PullResult pull(const std::string& repo, const std::string& revision);   // hub.cpp

 private:
  friend class BlobDownload;  // hub_download.cpp: one blob's download, driven through this state

  // hub_api.cpp
  // An API GET with retries for transient failures; follows same-origin redirects (renamed repos).
  Response api_get(const std::string& url, const std::string& repo, const std::string& what);
  HubError http_error(const Response& r, const std::string& repo, const std::string& what, bool file) const;
  std::vector<RepoFile> list_tree(const std::string& base, const std::string& repo, const std::string& commit);

  // hub.cpp: the steps of pull()
  void check_is_model(const PullResult& res, const std::string& repo) const;
  uint64_t count_present(PullResult& res, const std::string& blobs);  // returns the bytes still to fetch
  void download_all(const std::string& repo, const std::string& commit, const std::vector<RepoFile>& files,
                    const CacheLayout& cache);

  // hub_cache.cpp
  CacheLayout prepare_cache(const std::string& repo, const std::string& commit) const;
  void check_free_space(const std::string& repo, const std::string& blobs, uint64_t need) const;
  void lock_blob(Fd& lock, const std::string& lock_path, const RepoFile& f);
  void link_snapshot(const std::string& repo_dir, const std::string& commit, const RepoFile& f);

  // hub_download.cpp
  void fetch_file(const std::string& repo, const std::string& commit, const RepoFile& f, const std::string& blobs,
                  const std::string& locks);

  bool report(bool force);
  void check_cancel() {
    if ((cancel_ && cancel_->load()) || !report(false)) throw Cancelled();
  }
  void set_stage(const std::string& stage) {
    p_.stage = stage;
    if (!report(true)) throw Cancelled();
  }
  double backoff(int failures) const {
    double d = opt_.backoff_initial_s;
    for (int i = 1; i < failures && d < opt_.backoff_max_s; ++i) d *= 2;
    return std::min(d, opt_.backoff_max_s);
  }

  const HubOptions& opt_;
  std::string endpoint_, cache_;
  bool has_token_;
  Http http_;
  const PullProgressFn& progress_;
  const std::atomic<bool>* cancel_;
  std::function<bool()> tick_;
  PullProgress p_;
  Clock::time_point last_report_{};
  std::deque<std::pair<Clock::time_point, uint64_t>> samples_;  // (time, bytes fetched) for the rate
  uint64_t fetched_ = 0;
};

}  // namespace qins::hub::detail
