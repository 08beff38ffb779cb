// The Hub client's HTTP transport (libcurl): one request at a time, redirects not followed, the
// token sent only to the endpoint's own origin, stall detection and cancellation; and the retry
// rules (backoff, Retry-After, how a failure is described) the API and the downloads share.
#include <nlohmann/json.hpp>

#include <cctype>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <thread>

#include "hub_internal.h"
#include "qins/util/files.h"

namespace fs = std::filesystem;

namespace qins::hub::detail {

// An ETag as a bare value: W/"abc" -> abc.
std::string bare_etag(std::string e) {
  e = trim(e);
  if (e.rfind("W/", 0) == 0) e = e.substr(2);
  if (e.size() >= 2 && e.front() == '"' && e.back() == '"') e = e.substr(1, e.size() - 2);
  return e;
}

namespace {

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

}  // namespace

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

// ---------------------------------------------------------------------------------------------
// One HTTP exchange

namespace {

constexpr size_t kMaxBody = size_t{64} << 20;

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

}  // namespace

Http::Http(const HubOptions& opt, std::string endpoint, std::string token)
    : opt_(opt), endpoint_origin_(origin_of(endpoint)), token_(std::move(token)) {
  curl_init_once();
  curl_ = curl_easy_init();
  if (!curl_) throw Error("libcurl: cannot create a handle");
}

Http::~Http() { curl_easy_cleanup(curl_); }

Response Http::request(const std::string& url, bool head, const std::string& range, const BodySink& sink,
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

}  // namespace qins::hub::detail
