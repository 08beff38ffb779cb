// The Hugging Face Hub client (see hub.h): libcurl for HTTP, OpenSSL EVP for sha256 / sha1.
#include "qins/io/hub.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <nlohmann/json.hpp>
#include <openssl/evp.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <regex>
#include <thread>

#include "qins/util/files.h"

namespace fs = std::filesystem;

namespace qins::hub {

namespace {

using Clock = std::chrono::steady_clock;

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

bool is_hex(const std::string& s, size_t n) {
  return s.size() == n && std::all_of(s.begin(), s.end(), [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); });
}

// An ETag as a bare value: W/"abc" -> abc.
std::string bare_etag(std::string e) {
  e = trim(e);
  if (e.rfind("W/", 0) == 0) e = e.substr(2);
  if (e.size() >= 2 && e.front() == '"' && e.back() == '"') e = e.substr(1, e.size() - 2);
  return e;
}

void curl_init_once() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

// scheme://host:port of a URL, lower case, with the default port filled in.
std::string origin_of(const std::string& url) {
  CURLU* u = curl_url();
  std::string out;
  if (curl_url_set(u, CURLUPART_URL, url.c_str(), 0) == CURLUE_OK) {
    char *scheme = nullptr, *host = nullptr, *port = nullptr;
    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
    curl_url_get(u, CURLUPART_HOST, &host, 0);
    curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT);
    if (scheme && host) out = lower(scheme) + "://" + lower(host) + ":" + (port ? port : "");
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
  }
  curl_url_cleanup(u);
  return out;
}

std::string escape(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%%%02X", c);
      out += buf;
    }
  }
  return out;
}

std::string escape_path(const std::string& path) {
  std::string out;
  size_t start = 0;
  for (;;) {
    const size_t slash = path.find('/', start);
    out += escape(path.substr(start, slash == std::string::npos ? std::string::npos : slash - start));
    if (slash == std::string::npos) break;
    out += '/';
    start = slash + 1;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Hashing (OpenSSL EVP)

class Hasher {
 public:
  explicit Hasher(const EVP_MD* md) : md_(md), ctx_(EVP_MD_CTX_new()) { reset(); }
  ~Hasher() { EVP_MD_CTX_free(ctx_); }
  Hasher(const Hasher&) = delete;
  Hasher& operator=(const Hasher&) = delete;
  void reset() {
    if (EVP_DigestInit_ex(ctx_, md_, nullptr) != 1) throw Error("OpenSSL: cannot initialise a digest");
  }
  void update(const void* p, size_t n) { EVP_DigestUpdate(ctx_, p, n); }
  std::string hex() {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_MD_CTX* copy = EVP_MD_CTX_new();
    EVP_MD_CTX_copy_ex(copy, ctx_);
    EVP_DigestFinal_ex(copy, md, &n);
    EVP_MD_CTX_free(copy);
    static const char* digits = "0123456789abcdef";
    std::string s;
    for (unsigned int i = 0; i < n; ++i) {
      s += digits[md[i] >> 4];
      s += digits[md[i] & 15];
    }
    return s;
  }

 private:
  const EVP_MD* md_;
  EVP_MD_CTX* ctx_;
};

// ---------------------------------------------------------------------------------------------
// One HTTP exchange

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

constexpr size_t kMaxBody = size_t{64} << 20;

// Called with body bytes of a 2xx answer; returns false to abort (the sink sets its own reason).
using BodySink = std::function<bool(const char*, size_t, const Response&)>;

struct Exchange {
  Response* resp;
  CURL* curl;
  const BodySink* sink;
  Clock::time_point last_activity;
  double stall_s;
  const std::atomic<bool>* cancel;
  std::function<bool()>* tick;  // progress hook, returns false to cancel
  bool first_body = true;
};

size_t on_header(char* data, size_t size, size_t n, void* user) {
  auto* x = static_cast<Exchange*>(user);
  x->last_activity = Clock::now();
  std::string line(data, size * n);
  if (line.rfind("HTTP/", 0) == 0) {
    x->resp->headers.clear();  // a new response (1xx, or after a redirect)
  } else if (const auto colon = line.find(':'); colon != std::string::npos) {
    x->resp->headers[lower(trim(line.substr(0, colon)))] = trim(line.substr(colon + 1));
  }
  return size * n;
}

size_t on_body(char* data, size_t size, size_t n, void* user) {
  auto* x = static_cast<Exchange*>(user);
  x->last_activity = Clock::now();
  const size_t bytes = size * n;
  if (x->first_body) {
    x->first_body = false;
    curl_easy_getinfo(x->curl, CURLINFO_RESPONSE_CODE, &x->resp->status);
  }
  if (x->resp->status >= 200 && x->resp->status < 300 && x->sink && *x->sink) {
    return (*x->sink)(data, bytes, *x->resp) ? bytes : 0;
  }
  if (x->resp->body.size() + bytes > kMaxBody) return 0;
  x->resp->body.append(data, bytes);
  return bytes;
}

int on_xfer(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* x = static_cast<Exchange*>(user);
  if (x->cancel && x->cancel->load()) {
    x->resp->cancelled = true;
    return 1;
  }
  if (x->tick && *x->tick && !(*x->tick)()) {
    x->resp->cancelled = true;
    return 1;
  }
  if (std::chrono::duration<double>(Clock::now() - x->last_activity).count() > x->stall_s) {
    x->resp->stalled = true;
    return 1;
  }
  return 0;
}

class Http {
 public:
  Http(const HubOptions& opt, std::string endpoint, std::string token)
      : opt_(opt), endpoint_origin_(origin_of(endpoint)), token_(std::move(token)) {
    curl_init_once();
    curl_ = curl_easy_init();
    if (!curl_) throw Error("libcurl: cannot create a handle");
  }
  ~Http() { curl_easy_cleanup(curl_); }
  Http(const Http&) = delete;
  Http& operator=(const Http&) = delete;

  // One request, redirects not followed. The token goes only to the endpoint's own origin.
  Response request(const std::string& url, bool head, const std::string& range, const BodySink& sink,
                   const std::atomic<bool>* cancel, std::function<bool()>* tick) {
    Response r;
    curl_easy_reset(curl_);
    curl_easy_setopt(curl_, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl_, CURLOPT_NOBODY, head ? 1L : 0L);
    curl_easy_setopt(curl_, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(curl_, CURLOPT_NOSIGNAL, 1L);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(curl_, CURLOPT_PROTOCOLS_STR, "http,https");
#endif
    curl_easy_setopt(curl_, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(opt_.connect_timeout_s * 1000));
    curl_easy_setopt(curl_, CURLOPT_USERAGENT, opt_.user_agent.c_str());
    char errbuf[CURL_ERROR_SIZE] = {};
    curl_easy_setopt(curl_, CURLOPT_ERRORBUFFER, errbuf);
    curl_slist* headers = nullptr;
    const bool same_origin = origin_of(url) == endpoint_origin_;
    if (!token_.empty() && same_origin) headers = curl_slist_append(headers, ("Authorization: Bearer " + token_).c_str());
    if (headers) curl_easy_setopt(curl_, CURLOPT_HTTPHEADER, headers);
    if (!range.empty()) curl_easy_setopt(curl_, CURLOPT_RANGE, range.c_str());
    Exchange x{&r, curl_, &sink, Clock::now(), opt_.stall_timeout_s, cancel, tick};
    curl_easy_setopt(curl_, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(curl_, CURLOPT_HEADERDATA, &x);
    curl_easy_setopt(curl_, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl_, CURLOPT_WRITEDATA, &x);
    curl_easy_setopt(curl_, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(curl_, CURLOPT_XFERINFOFUNCTION, on_xfer);
    curl_easy_setopt(curl_, CURLOPT_XFERINFODATA, &x);
    r.code = curl_easy_perform(curl_);
    curl_slist_free_all(headers);
    long status = 0;
    curl_easy_getinfo(curl_, CURLINFO_RESPONSE_CODE, &status);
    if (status) r.status = status;
    char* location = nullptr;
    if (curl_easy_getinfo(curl_, CURLINFO_REDIRECT_URL, &location) == CURLE_OK && location) r.redirect_url = location;
    r.curl_error = errbuf[0] ? std::string(errbuf) : std::string(curl_easy_strerror(r.code));
    return r;
  }

 private:
  const HubOptions& opt_;
  std::string endpoint_origin_, token_;
  CURL* curl_ = nullptr;
};

// ---------------------------------------------------------------------------------------------
// Retries

// Sleeps `seconds` in short slices; throws Cancelled when asked to stop.
void sleep_cancellable(double seconds, const std::atomic<bool>* cancel, const std::function<bool()>& tick) {
  const auto until = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  while (Clock::now() < until) {
    if ((cancel && cancel->load()) || (tick && !tick())) throw Cancelled();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

std::string retry_stage(double wait) {
  return wait < 0.5 ? std::string("retrying now: ") : "retrying in " + std::to_string(static_cast<int>(wait + 0.5)) + " s: ";
}

bool transient_status(long s) { return s == 429 || s >= 500; }

double retry_after_s(const Response& r, double fallback, double cap) {
  const std::string v = r.header("retry-after");
  if (!v.empty() && std::all_of(v.begin(), v.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); }))
    return std::min(std::stod(v), cap);
  return fallback;
}

std::string describe_failure(const Response& r, double stall_s) {
  if (r.stalled) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "no data for %g s (stalled)", stall_s);
    return buf;
  }
  if (r.code != CURLE_OK) return r.curl_error;
  std::string s = "HTTP " + std::to_string(r.status);
  if (!r.header("x-error-message").empty()) s += " (" + r.header("x-error-message") + ")";
  return s;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Public helpers

std::string default_cache_dir() {
  if (const std::string c = env("HF_HUB_CACHE"); !c.empty()) return c;
  if (const std::string h = env("HF_HOME"); !h.empty()) return h + "/hub";
  const std::string xdg = env("XDG_CACHE_HOME");
  return (xdg.empty() ? home_dir() + "/.cache" : xdg) + "/huggingface/hub";
}

std::string repo_cache_dir(const std::string& cache_dir, const std::string& repo) {
  std::string name = "models--";
  for (char c : repo) name += c == '/' ? std::string("--") : std::string(1, c);
  return cache_dir + "/" + name;
}

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
// The client

namespace {

std::string read_token() {
  for (const char* v : {"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"})
    if (const std::string t = trim(env(v)); !t.empty()) return t;
  std::string home = env("HF_HOME");
  if (home.empty()) {
    const std::string xdg = env("XDG_CACHE_HOME");
    home = (xdg.empty() ? home_dir() + "/.cache" : xdg) + "/huggingface";
  }
  std::error_code ec;
  const std::string path = home + "/token";
  if (fs::is_regular_file(path, ec)) {
    try {
      return trim(read_file(path, 4096));
    } catch (const Error&) {
    }
  }
  return {};
}

// The state of one pull: HTTP, progress accounting, options.
class Puller {
 public:
  Puller(const HubOptions& opt, const std::string& endpoint, const std::string& cache, const std::string& token,
         const PullProgressFn& progress, const std::atomic<bool>* cancel)
      : opt_(opt), endpoint_(endpoint), cache_(cache), has_token_(!token.empty()), http_(opt, endpoint, token),
        progress_(progress), cancel_(cancel) {
    tick_ = [this] { return report(false); };
  }

  RepoInfo resolve(const std::string& repo, const std::string& revision);
  PullResult pull(const std::string& repo, const std::string& revision);

 private:
  // An API GET with retries for transient failures; follows same-origin redirects (renamed repos).
  Response api_get(const std::string& url, const std::string& repo, const std::string& what);
  HubError http_error(const Response& r, const std::string& repo, const std::string& what, bool file) const;
  void fetch_file(const std::string& repo, const std::string& commit, const RepoFile& f, const std::string& blobs,
                  const std::string& locks);
  void link_snapshot(const std::string& repo_dir, const std::string& commit, const RepoFile& f);
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

HubError Puller::http_error(const Response& r, const std::string& repo, const std::string& what, bool file) const {
  const std::string code = r.header("x-error-code");
  const std::string detail = describe_failure(r, opt_.stall_timeout_s);
  const std::string page = endpoint_ + "/" + repo;
  if ((r.status == 401 || r.status == 403) && code == "GatedRepo")
    return HubError(HubErrorKind::GatedRepo,
                    repo + " is a gated repository (" + what + ": " + detail + "). Accept its conditions at " + page +
                        " while logged in, create a read token at https://huggingface.co/settings/tokens, then set "
                        "HF_TOKEN=hf_... or write the token to $HF_HOME/token (~/.cache/huggingface/token). " +
                        (has_token_ ? "The token that was sent was refused." : "No token was sent."));
  if (code == "RepoNotFound" || (!file && (r.status == 401 || r.status == 404) && code.empty()))
    return HubError(HubErrorKind::RepoNotFound,
                    "repository " + repo + " was not found on " + endpoint_ + " (" + detail +
                        "); check the id, or if it is private set HF_TOKEN to a token that can read it" +
                        (has_token_ ? "" : " (no token was sent)"));
  if (code == "RevisionNotFound")
    return HubError(HubErrorKind::RevisionNotFound, repo + ": " + what + " was not found (" + detail + ")");
  if (r.status == 404)
    return HubError(HubErrorKind::EntryNotFound, repo + ": " + what + " was not found (" + detail + ")");
  if (r.status == 401 || r.status == 403)
    return HubError(HubErrorKind::Unauthorized,
                    repo + ": " + what + ": access refused (" + detail + "); " +
                        (has_token_ ? "check that HF_TOKEN is valid and can read this repository"
                                    : "set HF_TOKEN to a token that can read this repository"));
  if (r.status == 429)
    return HubError(HubErrorKind::RateLimited, repo + ": " + what + ": the Hub keeps answering 429 (rate limited) after " +
                                                   std::to_string(opt_.max_retries) +
                                                   " retries; wait and run the same pull again to resume");
  if (r.status >= 500)
    return HubError(HubErrorKind::Server, repo + ": " + what + ": the Hub answered " + detail + " after " +
                                              std::to_string(opt_.max_retries) +
                                              " retries; run the same pull again later to resume");
  return HubError(HubErrorKind::Protocol, repo + ": " + what + ": unexpected answer " + detail);
}

Response Puller::api_get(const std::string& url0, const std::string& repo, const std::string& what) {
  std::string url = url0;
  int failures = 0, hops = 0;
  for (;;) {
    check_cancel();
    Response r = http_.request(url, false, "", {}, cancel_, &tick_);
    if (r.cancelled) throw Cancelled();
    if (r.code == CURLE_OK && r.status >= 300 && r.status < 400 && !r.redirect_url.empty()) {
      if (++hops > 5) throw HubError(HubErrorKind::Protocol, repo + ": " + what + ": too many redirects");
      url = r.redirect_url;
      continue;
    }
    if (r.code == CURLE_OK && r.status >= 200 && r.status < 300) return r;
    const bool transient = r.code != CURLE_OK || transient_status(r.status);
    if (!transient) throw http_error(r, repo, what, false);
    if (++failures > opt_.max_retries) {
      if (r.code != CURLE_OK)
        throw HubError(r.stalled ? HubErrorKind::Stalled : HubErrorKind::Network,
                       repo + ": " + what + ": " + describe_failure(r, opt_.stall_timeout_s) + " (after " +
                           std::to_string(opt_.max_retries) + " retries, endpoint " + endpoint_ +
                           "); check the network or proxy settings and run the same pull again");
      throw http_error(r, repo, what, false);
    }
    const double wait = r.status == 429 ? retry_after_s(r, backoff(failures), opt_.retry_after_max_s) : backoff(failures);
    set_stage(retry_stage(wait) + what + ": " +
              describe_failure(r, opt_.stall_timeout_s));
    sleep_cancellable(wait, cancel_, tick_);
  }
}

RepoInfo Puller::resolve(const std::string& repo, const std::string& revision) {
  RepoInfo info;
  info.repo = repo;
  info.revision = revision;
  set_stage("listing");
  const std::string base = endpoint_ + "/api/models/" + repo;
  nlohmann::json rev;
  try {
    rev = nlohmann::json::parse(api_get(base + "/revision/" + escape(revision) + "?blobs=true", repo,
                                        "revision " + revision)
                                    .body);
  } catch (const nlohmann::json::exception& e) {
    throw HubError(HubErrorKind::Protocol, repo + ": the revision answer is not valid JSON (" + e.what() + ")");
  }
  info.commit = rev.value("sha", "");
  if (!is_hex(info.commit, 40))
    throw HubError(HubErrorKind::Protocol, repo + ": revision " + revision + " did not resolve to a commit");
  bool complete = rev.contains("siblings") && rev["siblings"].is_array();
  if (complete) {
    for (const auto& s : rev["siblings"]) {
      if (!s.contains("rfilename") || !s.contains("size") || !s["size"].is_number_unsigned()) {
        complete = false;
        break;
      }
      RepoFile f;
      f.path = s["rfilename"].get<std::string>();
      f.size = s["size"].get<uint64_t>();
      f.blob_id = s.value("blobId", "");
      if (s.contains("lfs") && s["lfs"].is_object()) {
        f.sha256 = s["lfs"].value("sha256", "");
        if (s["lfs"].contains("size") && s["lfs"]["size"].is_number_unsigned()) f.size = s["lfs"]["size"].get<uint64_t>();
      }
      info.files.push_back(f);
    }
  }
  if (!complete) {  // no sizes in the revision answer: the tree listing (paginated)
    info.files.clear();
    std::string url = base + "/tree/" + info.commit + "?recursive=true";
    for (int page = 0; !url.empty(); ++page) {
      if (page > 10000) throw HubError(HubErrorKind::Protocol, repo + ": the file listing does not end");
      const Response r = api_get(url, repo, "file listing");
      nlohmann::json entries;
      try {
        entries = nlohmann::json::parse(r.body);
      } catch (const nlohmann::json::exception& e) {
        throw HubError(HubErrorKind::Protocol, repo + ": the file listing is not valid JSON (" + e.what() + ")");
      }
      if (!entries.is_array()) throw HubError(HubErrorKind::Protocol, repo + ": the file listing is not a list");
      for (const auto& e : entries) {
        if (e.value("type", "file") != "file" || !e.contains("path")) continue;
        RepoFile f;
        f.path = e["path"].get<std::string>();
        f.size = e.contains("size") && e["size"].is_number_unsigned() ? e["size"].get<uint64_t>() : 0;
        f.blob_id = e.value("oid", "");
        if (e.contains("lfs") && e["lfs"].is_object()) {
          f.sha256 = e["lfs"].value("oid", e["lfs"].value("sha256", ""));
          if (e["lfs"].contains("size") && e["lfs"]["size"].is_number_unsigned()) f.size = e["lfs"]["size"].get<uint64_t>();
        }
        info.files.push_back(f);
      }
      // Link: <https://...>; rel="next"
      url.clear();
      static const std::regex next_re(R"re(<([^>]+)>\s*;\s*rel="?next"?)re");
      std::smatch m;
      const std::string link = r.header("link");
      if (std::regex_search(link, m, next_re)) url = m[1];
    }
  }
  for (auto& f : info.files) {
    if (!f.sha256.empty() && !is_hex(f.sha256, 64))
      throw HubError(HubErrorKind::Protocol, repo + ": " + f.path + ": the listing's sha256 is not 64 hex digits");
    if (f.path.empty() || f.path.find("..") != std::string::npos || f.path[0] == '/')
      throw HubError(HubErrorKind::Protocol, repo + ": the listing names an unsafe path '" + f.path + "'");
  }
  return info;
}

void Puller::link_snapshot(const std::string& repo_dir, const std::string& commit, const RepoFile& f) {
  const fs::path link = fs::path(repo_dir) / "snapshots" / commit / f.path;
  fs::create_directories(link.parent_path());
  std::string target = "../../blobs/" + f.blob_name();
  for (char c : f.path)
    if (c == '/') target = "../" + target;
  std::error_code ec;
  if (fs::is_symlink(link, ec) && fs::read_symlink(link, ec).string() == target) return;
  const fs::path tmp = link.string() + ".tmp-link";
  fs::remove(tmp, ec);
  fs::create_symlink(target, tmp, ec);
  if (ec) throw HubError(HubErrorKind::Protocol, "cannot create the link " + link.string() + ": " + ec.message());
  fs::rename(tmp, link, ec);
  if (ec) throw HubError(HubErrorKind::Protocol, "cannot create the link " + link.string() + ": " + ec.message());
}

// Closes a file descriptor at scope exit.
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

void fsync_dir(const std::string& dir) {
  const int d = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (d >= 0) {
    ::fsync(d);
    ::close(d);
  }
}

void Puller::fetch_file(const std::string& repo, const std::string& commit, const RepoFile& f,
                        const std::string& blobs, const std::string& locks) {
  const std::string who = repo + ": " + f.path;
  const std::string final_path = blobs + "/" + f.blob_name();
  const std::string part_path = final_path + ".incomplete";
  const std::string etag_path = locks + "/" + f.blob_name() + ".etag";
  const std::string lock_path = locks + "/" + f.blob_name() + ".lock";

  // One process per blob: the others wait (and then find the file done).
  Fd lock;
  lock.fd = ::open(lock_path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
  if (lock.fd < 0) throw HubError(HubErrorKind::Protocol, "cannot open the lock file " + lock_path + ": " + std::strerror(errno));
  bool waited = false;
  while (::flock(lock.fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK && errno != EINTR)
      throw HubError(HubErrorKind::Protocol, "cannot lock " + lock_path + ": " + std::strerror(errno));
    if (!waited) set_stage("waiting for another download of " + f.path);
    waited = true;
    sleep_cancellable(0.1, cancel_, tick_);
  }
  std::error_code ec;
  if (fs::is_regular_file(final_path, ec) && fs::file_size(final_path, ec) == f.size) {
    p_.done += f.size - p_.file_done;
    p_.file_done = f.size;
    return;  // another process finished it while we waited
  }

  const std::string resolve_url = endpoint_ + "/" + repo + "/resolve/" + commit + "/" + escape_path(f.path);
  Fd out;
  out.fd = ::open(part_path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
  if (out.fd < 0) throw HubError(HubErrorKind::Protocol, "cannot create " + part_path + ": " + std::strerror(errno));
  const bool git_blob = !f.lfs() && is_hex(f.blob_id, 40);
  Hasher sha256(EVP_sha256()), sha1(EVP_sha1());
  uint64_t have = 0;
  auto reset_hashes = [&] {
    sha256.reset();
    sha1.reset();
    if (git_blob) {  // git's blob id: sha1("blob <size>\0" + content)
      const std::string hdr = "blob " + std::to_string(f.size);
      sha1.update(hdr.data(), hdr.size() + 1);  // with the NUL
    }
  };
  auto restart = [&] {
    if (::ftruncate(out.fd, 0) != 0) throw HubError(HubErrorKind::Protocol, "cannot truncate " + part_path);
    ::lseek(out.fd, 0, SEEK_SET);
    reset_hashes();
    p_.done -= std::min(p_.done, have);
    have = 0;
    p_.file_done = 0;
  };
  auto account = [&](uint64_t n) {
    have += n;
    p_.file_done = have;
    p_.done += n;
  };
  reset_hashes();
  // A partial file from an earlier attempt: re-hash its bytes, then resume after them.
  {
    struct stat st {};
    ::fstat(out.fd, &st);
    uint64_t existing = static_cast<uint64_t>(st.st_size);
    std::string stored_etag;
    if (fs::is_regular_file(etag_path, ec)) stored_etag = trim(read_file(etag_path, 4096));
    if (existing > f.size || (existing > 0 && stored_etag.empty())) existing = 0;
    if (existing > 0) {
      set_stage("verifying the partial download of " + f.path);
      std::vector<char> buf(1 << 20);
      uint64_t off = 0;
      while (off < existing) {
        const ssize_t n = ::pread(out.fd, buf.data(), std::min<uint64_t>(buf.size(), existing - off), static_cast<off_t>(off));
        if (n <= 0) break;
        sha256.update(buf.data(), static_cast<size_t>(n));
        if (git_blob) sha1.update(buf.data(), static_cast<size_t>(n));
        off += static_cast<uint64_t>(n);
        account(static_cast<uint64_t>(n));
        check_cancel();
      }
    }
    if (have != static_cast<uint64_t>(st.st_size)) {
      restart();
    }
    ::lseek(out.fd, static_cast<off_t>(have), SEEK_SET);
  }

  int failures = 0, attempts = 0;
  std::string write_error;
  int write_errno = 0;
  for (;;) {
    check_cancel();
    if (++attempts > 10 * (opt_.max_retries + 1))
      throw HubError(HubErrorKind::Network, who + ": too many interrupted attempts; run the same pull again to resume");
    set_stage(have > 0 ? "resuming " + f.path + " at " + format_bytes(have) : "downloading " + f.path);
    // 1. Where the bytes are, and their ETag (HEAD on the resolve URL, token sent to the Hub only).
    std::string url = resolve_url, etag;
    Response head;
    uint64_t linked_size = 0;
    bool have_size = false;
    bool retry = false;
    for (int hops = 0;; ++hops) {
      head = http_.request(url, true, "", {}, cancel_, &tick_);
      if (head.cancelled) throw Cancelled();
      if (head.code == CURLE_OK && head.status >= 300 && head.status < 400 && !head.redirect_url.empty()) {
        const std::string linked = head.header("x-linked-etag");
        if (!linked.empty()) {
          etag = bare_etag(linked);
          if (!head.header("x-linked-size").empty()) {
            linked_size = std::stoull(head.header("x-linked-size"));
            have_size = true;
          }
          url = head.redirect_url;
          break;
        }
        if (hops >= 5) throw HubError(HubErrorKind::Protocol, who + ": too many redirects");
        url = head.redirect_url;  // a renamed repo: the same file under its new name
        continue;
      }
      if (head.code == CURLE_OK && head.status >= 200 && head.status < 300) {
        etag = bare_etag(head.header("etag"));
        if (!head.header("content-length").empty()) {
          linked_size = std::stoull(head.header("content-length"));
          have_size = true;
        }
        break;
      }
      retry = true;
      break;
    }
    if (retry) {
      const bool transient = head.code != CURLE_OK || transient_status(head.status);
      if (!transient) throw http_error(head, repo, "file " + f.path, true);
      if (++failures > opt_.max_retries) {
        if (head.code != CURLE_OK)
          throw HubError(head.stalled ? HubErrorKind::Stalled : HubErrorKind::Network,
                         who + ": " + describe_failure(head, opt_.stall_timeout_s) + " (after " +
                             std::to_string(opt_.max_retries) + " retries); the " + format_bytes(have) +
                             " downloaded so far are kept: run the same pull again to resume");
        throw http_error(head, repo, "file " + f.path, true);
      }
      const double wait =
          head.status == 429 ? retry_after_s(head, backoff(failures), opt_.retry_after_max_s) : backoff(failures);
      set_stage(retry_stage(wait) + f.path + ": " +
                describe_failure(head, opt_.stall_timeout_s));
      sleep_cancellable(wait, cancel_, tick_);
      continue;
    }
    if (have_size && linked_size != f.size)
      throw HubError(HubErrorKind::Verification, who + ": the listing says " + std::to_string(f.size) +
                                                     " bytes, the file's headers say " + std::to_string(linked_size));
    if (f.lfs() && !etag.empty() && is_hex(etag, 64) && lower(etag) != lower(f.sha256))
      throw HubError(HubErrorKind::Verification, who + ": the Hub links content " + etag +
                                                     " but the listing says sha256 " + f.sha256);
    // 2. A partial file fetched under another ETag is not this content: start again.
    std::string stored_etag;
    if (fs::is_regular_file(etag_path, ec)) stored_etag = trim(read_file(etag_path, 4096));
    if (have > 0 && stored_etag != etag) {
      set_stage("the file changed on the server since the partial download (ETag): restarting " + f.path);
      restart();
    }
    if (stored_etag != etag) write_file_atomic(etag_path, etag);

    // 3. The bytes after `have`.
    if (have < f.size) {
      const uint64_t before = have;
      const std::string range = have > 0 ? std::to_string(have) + "-" : "";
      bool bad_range = false, first = true;
      BodySink sink = [&](const char* data, size_t n, const Response& r) -> bool {
        const bool first_chunk = first;
        first = false;
        if (first_chunk && r.status == 200 && have > 0) {
          restart();  // the server ignored Range: the whole file again
        } else if (first_chunk && r.status == 206 && have > 0) {
          // Content-Range must start where we are.
          const std::string cr = r.header("content-range");
          const auto sp = cr.find(' '), dash = cr.find('-');
          if (sp == std::string::npos || dash == std::string::npos ||
              std::strtoull(cr.c_str() + sp + 1, nullptr, 10) != have) {
            bad_range = true;
            return false;
          }
        }
        if (have + n > f.size) {
          bad_range = true;
          return false;
        }
        size_t off = 0;
        while (off < n) {
          const ssize_t w = ::write(out.fd, data + off, n - off);
          if (w < 0) {
            if (errno == EINTR) continue;
            write_errno = errno;
            write_error = std::strerror(errno);
            return false;
          }
          off += static_cast<size_t>(w);
        }
        sha256.update(data, n);
        if (git_blob) sha1.update(data, n);
        fetched_ += n;
        account(n);
        return true;
      };
      Response r = http_.request(url, false, range, sink, cancel_, &tick_);
      if (r.cancelled) throw Cancelled();
      if (write_errno) {
        const bool full = write_errno == ENOSPC || write_errno == EFBIG || write_errno == EDQUOT;
        throw HubError(full ? HubErrorKind::DiskFull : HubErrorKind::Protocol,
                       who + ": writing " + part_path + " failed: " + write_error + "; the " + format_bytes(have) +
                           " downloaded so far are kept: free some space and run the same pull again to resume");
      }
      if (bad_range) {
        restart();
        if (++failures > opt_.max_retries)
          throw HubError(HubErrorKind::Protocol, who + ": the server sends bytes that do not match the requested range");
        continue;
      }
      if (r.code == CURLE_OK && r.status == 416) {
        restart();  // the server does not have the bytes we asked for: start the file again
        if (++failures > opt_.max_retries) throw http_error(r, repo, "file " + f.path, true);
        continue;
      }
      if (r.code == CURLE_OK && r.status >= 300 && !(r.status >= 200 && r.status < 300)) {
        if (!transient_status(r.status)) throw http_error(r, repo, "file " + f.path, true);
      }
      if (r.code != CURLE_OK || r.status >= 300 || have < f.size) {
        if (have > before) failures = 0;  // progress: the next attempt resumes from here
        if (++failures > opt_.max_retries) {
          if (r.code != CURLE_OK || have < f.size)
            throw HubError(r.stalled ? HubErrorKind::Stalled : HubErrorKind::Network,
                           who + ": " +
                               (r.code == CURLE_OK ? std::string("the download ended early") :
                                                     describe_failure(r, opt_.stall_timeout_s)) +
                               " (after " + std::to_string(opt_.max_retries) + " retries); the " + format_bytes(have) +
                               " downloaded so far are kept: run the same pull again to resume");
          throw http_error(r, repo, "file " + f.path, true);
        }
        const double wait = r.status == 429 ? retry_after_s(r, backoff(failures), opt_.retry_after_max_s)
                                            : (have > before ? 0.0 : backoff(failures));
        set_stage(retry_stage(wait) + f.path + ": " +
                  (r.code == CURLE_OK && r.status < 300 ? std::string("the connection closed early")
                                                       : describe_failure(r, opt_.stall_timeout_s)));
        sleep_cancellable(wait, cancel_, tick_);
        continue;
      }
    }
    break;
  }

  // 4. Verify, then the final name.
  set_stage("verifying " + f.path);
  auto refuse = [&](const std::string& what) {
    ::unlink(part_path.c_str());
    ::unlink(etag_path.c_str());
    throw HubError(HubErrorKind::Verification,
                   who + ": " + what + "; the download was discarded and nothing was saved under the final name");
  };
  if (have != f.size) refuse("got " + std::to_string(have) + " bytes, the listing says " + std::to_string(f.size));
  if (f.lfs()) {
    const std::string got = sha256.hex();
    if (got != lower(f.sha256)) refuse("sha256 mismatch (expected " + lower(f.sha256) + ", got " + got + ")");
  } else if (git_blob) {
    const std::string got = sha1.hex();
    if (got != lower(f.blob_id)) refuse("git blob id mismatch (expected " + lower(f.blob_id) + ", got " + got + ")");
  }
  if (::fsync(out.fd) != 0) throw HubError(HubErrorKind::DiskFull, who + ": fsync of " + part_path + " failed: " + std::strerror(errno));
  if (::rename(part_path.c_str(), final_path.c_str()) != 0)
    throw HubError(HubErrorKind::Protocol, who + ": cannot rename " + part_path + ": " + std::strerror(errno));
  fsync_dir(blobs);
  ::unlink(etag_path.c_str());
}

PullResult Puller::pull(const std::string& repo, const std::string& revision) {
  PullResult res;
  res.info = resolve(repo, revision);
  const std::string& commit = res.info.commit;
  res.files = needed_files(res.info.files);
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

  const std::string repo_dir = repo_cache_dir(cache_, repo);
  const std::string blobs = repo_dir + "/blobs";
  const std::string locks = cache_ + "/.locks/" + fs::path(repo_dir).filename().string();
  std::error_code ec;
  fs::create_directories(blobs, ec);
  if (ec) throw HubError(HubErrorKind::Protocol, "cannot create the cache folder " + blobs + ": " + ec.message());
  fs::create_directories(locks, ec);
  fs::create_directories(repo_dir + "/snapshots/" + commit, ec);

  // What is already here, and the space the rest needs (checked before the first byte).
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
  uint64_t free_bytes = 0;
  if (opt_.free_space_override) {
    free_bytes = *opt_.free_space_override;
  } else {
    struct statvfs sv {};
    if (::statvfs(blobs.c_str(), &sv) == 0) free_bytes = static_cast<uint64_t>(sv.f_bavail) * sv.f_frsize;
    else free_bytes = UINT64_MAX;
  }
  if (need > 0 && need + opt_.free_space_margin > free_bytes)
    throw HubError(HubErrorKind::DiskFull,
                   repo + ": not enough disk space in " + cache_ + ": the download needs " + format_bytes(need) +
                       " more (plus " + format_bytes(opt_.free_space_margin) + " to spare) and " +
                       format_bytes(free_bytes) +
                       " are free; free some space or point HF_HUB_CACHE at a larger disk (nothing was downloaded)");

  int index = 0;
  for (const auto& f : res.files) {
    ++index;
    p_.file = f.path;
    p_.file_index = index;
    p_.file_total = f.size;
    p_.file_done = 0;
    const std::string final_path = blobs + "/" + f.blob_name();
    if (!(fs::is_regular_file(final_path, ec) && fs::file_size(final_path, ec) == f.size)) {
      fetch_file(repo, commit, f, blobs, locks);
    } else {
      p_.file_done = f.size;
    }
    link_snapshot(repo_dir, commit, f);
    if (!report(true)) throw Cancelled();
  }
  res.downloaded_bytes = fetched_;
  if (revision != commit) {
    fs::create_directories(fs::path(repo_dir + "/refs/" + revision).parent_path(), ec);
    write_file_atomic(repo_dir + "/refs/" + revision, commit);
  }
  res.snapshot_dir = repo_dir + "/snapshots/" + commit;
  p_.file.clear();
  p_.stage = "done";
  report(true);
  return res;
}

}  // namespace

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
