// One blob's download into the cache (see hub.h): resumable (a partial file is re-hashed and
// continued with a Range request under the same ETag), verified (every size, the LFS sha256 or
// the git blob id) before it gets its final name, with bounded retries for transient failures.
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "hub_internal.h"
#include "qins/util/files.h"

namespace fs = std::filesystem;

namespace qins::hub::detail {

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
// One blob

// The download of one file to <blobs>/<blob name>, through the pull's HTTP, progress and options.
class BlobDownload {
 public:
  BlobDownload(Puller& pull, const std::string& repo, const std::string& commit, const RepoFile& f,
               const std::string& blobs, const std::string& locks)
      : pull_(pull), repo_(repo), f_(f), blobs_(blobs), who_(repo + ": " + f.path),
        final_path_(blobs + "/" + f.blob_name()), part_path_(final_path_ + ".incomplete"),
        etag_path_(locks + "/" + f.blob_name() + ".etag"), lock_path_(locks + "/" + f.blob_name() + ".lock"),
        resolve_url_(pull.endpoint_ + "/" + repo + "/resolve/" + commit + "/" + escape_path(f.path)),
        git_blob_(!f.lfs() && is_hex(f.blob_id, 40)) {}

  void run();

 private:
  // Where the bytes are (after the Hub's redirect) and what the headers say about them.
  struct Location {
    std::string url, etag;
    uint64_t size = 0;
    bool have_size = false;
  };

  void open_part();
  void resume_partial();
  bool locate(Location& loc);  // false: a transient failure was waited out, try again
  void retry_head(const Response& head);
  void check_location(const Location& loc) const;
  void match_etag(const std::string& etag);
  bool fetch_rest(const std::string& url);  // false: try again
  bool on_bytes(const char* data, size_t n, const Response& r);
  bool after_get(const Response& r, uint64_t before);  // false: try again
  void retry_get(const Response& r, uint64_t before);
  void finish();
  [[noreturn]] void refuse(const std::string& what);
  void reset_hashes();
  void restart();
  void account(uint64_t n);

  Puller& pull_;
  const HubOptions& opt() const { return pull_.opt_; }
  PullProgress& progress() { return pull_.p_; }

  const std::string& repo_;
  const RepoFile& f_;
  const std::string blobs_, who_, final_path_, part_path_, etag_path_, lock_path_, resolve_url_;
  const bool git_blob_;
  Fd lock_, out_;
  Hasher sha256_{EVP_sha256()}, sha1_{EVP_sha1()};
  uint64_t have_ = 0;
  int failures_ = 0, attempts_ = 0;
  bool first_ = true, bad_range_ = false;  // of the current GET
  std::string write_error_;
  int write_errno_ = 0;
};

void BlobDownload::run() {
  pull_.lock_blob(lock_, lock_path_, f_);
  std::error_code ec;
  if (fs::is_regular_file(final_path_, ec) && fs::file_size(final_path_, ec) == f_.size) {
    progress().done += f_.size - progress().file_done;
    progress().file_done = f_.size;
    return;  // another process finished it while we waited
  }
  open_part();
  resume_partial();
  for (;;) {
    pull_.check_cancel();
    if (++attempts_ > 10 * (opt().max_retries + 1))
      throw HubError(HubErrorKind::Network, who_ + ": too many interrupted attempts; run the same pull again to resume");
    pull_.set_stage(have_ > 0 ? "resuming " + f_.path + " at " + format_bytes(have_) : "downloading " + f_.path);
    // 1. Where the bytes are, and their ETag (HEAD on the resolve URL, token sent to the Hub only).
    Location loc;
    if (!locate(loc)) continue;
    check_location(loc);
    // 2. A partial file fetched under another ETag is not this content: start again.
    match_etag(loc.etag);
    // 3. The bytes after `have`.
    if (have_ < f_.size && !fetch_rest(loc.url)) continue;
    break;
  }
  // 4. Verify, then the final name.
  finish();
}

void BlobDownload::reset_hashes() {
  sha256_.reset();
  sha1_.reset();
  if (git_blob_) {  // git's blob id: sha1("blob <size>\0" + content)
    const std::string hdr = "blob " + std::to_string(f_.size);
    sha1_.update(hdr.data(), hdr.size() + 1);  // with the NUL
  }
}

void BlobDownload::restart() {
  if (::ftruncate(out_.fd, 0) != 0) throw HubError(HubErrorKind::Protocol, "cannot truncate " + part_path_);
  ::lseek(out_.fd, 0, SEEK_SET);
  reset_hashes();
  progress().done -= std::min(progress().done, have_);
  have_ = 0;
  progress().file_done = 0;
}

void BlobDownload::account(uint64_t n) {
  have_ += n;
  progress().file_done = have_;
  progress().done += n;
}

void BlobDownload::open_part() {
  out_.fd = ::open(part_path_.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
  if (out_.fd < 0) throw HubError(HubErrorKind::Protocol, "cannot create " + part_path_ + ": " + std::strerror(errno));
  reset_hashes();
}

// A partial file from an earlier attempt: re-hash its bytes, then resume after them.
void BlobDownload::resume_partial() {
  std::error_code ec;
  struct stat st {};
  ::fstat(out_.fd, &st);
  uint64_t existing = static_cast<uint64_t>(st.st_size);
  std::string stored_etag;
  if (fs::is_regular_file(etag_path_, ec)) stored_etag = trim(read_file(etag_path_, 4096));
  if (existing > f_.size || (existing > 0 && stored_etag.empty())) existing = 0;
  if (existing > 0) {
    pull_.set_stage("verifying the partial download of " + f_.path);
    std::vector<char> buf(1 << 20);
    uint64_t off = 0;
    while (off < existing) {
      const ssize_t n = ::pread(out_.fd, buf.data(), std::min<uint64_t>(buf.size(), existing - off), static_cast<off_t>(off));
      if (n <= 0) break;
      sha256_.update(buf.data(), static_cast<size_t>(n));
      if (git_blob_) sha1_.update(buf.data(), static_cast<size_t>(n));
      off += static_cast<uint64_t>(n);
      account(static_cast<uint64_t>(n));
      pull_.check_cancel();
    }
  }
  if (have_ != static_cast<uint64_t>(st.st_size)) {
    restart();
  }
  ::lseek(out_.fd, static_cast<off_t>(have_), SEEK_SET);
}

bool BlobDownload::locate(Location& loc) {
  loc.url = resolve_url_;
  for (int hops = 0;; ++hops) {
    const Response head = pull_.http_.request(loc.url, true, "", {}, pull_.cancel_, &pull_.tick_);
    if (head.cancelled) throw Cancelled();
    if (head.code == CURLE_OK && head.status >= 300 && head.status < 400 && !head.redirect_url.empty()) {
      const std::string linked = head.header("x-linked-etag");
      if (!linked.empty()) {
        loc.etag = bare_etag(linked);
        if (!head.header("x-linked-size").empty()) {
          loc.size = std::stoull(head.header("x-linked-size"));
          loc.have_size = true;
        }
        loc.url = head.redirect_url;
        return true;
      }
      if (hops >= 5) throw HubError(HubErrorKind::Protocol, who_ + ": too many redirects");
      loc.url = head.redirect_url;  // a renamed repo: the same file under its new name
      continue;
    }
    if (head.code == CURLE_OK && head.status >= 200 && head.status < 300) {
      loc.etag = bare_etag(head.header("etag"));
      if (!head.header("content-length").empty()) {
        loc.size = std::stoull(head.header("content-length"));
        loc.have_size = true;
      }
      return true;
    }
    retry_head(head);
    return false;
  }
}

// A HEAD that failed: throws when it is final or the retries are spent, else waits.
void BlobDownload::retry_head(const Response& head) {
  const bool transient = head.code != CURLE_OK || transient_status(head.status);
  if (!transient) throw pull_.http_error(head, repo_, "file " + f_.path, true);
  if (++failures_ > opt().max_retries) {
    if (head.code != CURLE_OK)
      throw HubError(head.stalled ? HubErrorKind::Stalled : HubErrorKind::Network,
                     who_ + ": " + describe_failure(head, opt().stall_timeout_s) + " (after " +
                         std::to_string(opt().max_retries) + " retries); the " + format_bytes(have_) +
                         " downloaded so far are kept: run the same pull again to resume");
    throw pull_.http_error(head, repo_, "file " + f_.path, true);
  }
  const double wait = head.status == 429 ? retry_after_s(head, pull_.backoff(failures_), opt().retry_after_max_s)
                                         : pull_.backoff(failures_);
  pull_.set_stage(retry_stage(wait) + f_.path + ": " +
                  describe_failure(head, opt().stall_timeout_s));
  sleep_cancellable(wait, pull_.cancel_, pull_.tick_);
}

void BlobDownload::check_location(const Location& loc) const {
  if (loc.have_size && loc.size != f_.size)
    throw HubError(HubErrorKind::Verification, who_ + ": the listing says " + std::to_string(f_.size) +
                                                   " bytes, the file's headers say " + std::to_string(loc.size));
  if (f_.lfs() && !loc.etag.empty() && is_hex(loc.etag, 64) && lower(loc.etag) != lower(f_.sha256))
    throw HubError(HubErrorKind::Verification, who_ + ": the Hub links content " + loc.etag +
                                                   " but the listing says sha256 " + f_.sha256);
}

void BlobDownload::match_etag(const std::string& etag) {
  std::error_code ec;
  std::string stored_etag;
  if (fs::is_regular_file(etag_path_, ec)) stored_etag = trim(read_file(etag_path_, 4096));
  if (have_ > 0 && stored_etag != etag) {
    pull_.set_stage("the file changed on the server since the partial download (ETag): restarting " + f_.path);
    restart();
  }
  if (stored_etag != etag) write_file_atomic(etag_path_, etag);
}

bool BlobDownload::fetch_rest(const std::string& url) {
  const uint64_t before = have_;
  const std::string range = have_ > 0 ? std::to_string(have_) + "-" : "";
  first_ = true;
  bad_range_ = false;
  BodySink sink = [this](const char* data, size_t n, const Response& r) { return on_bytes(data, n, r); };
  Response r = pull_.http_.request(url, false, range, sink, pull_.cancel_, &pull_.tick_);
  return after_get(r, before);
}

// The body of a 2xx GET: appended to the partial file and hashed; false aborts the transfer.
bool BlobDownload::on_bytes(const char* data, size_t n, const Response& r) {
  const bool first_chunk = first_;
  first_ = false;
  if (first_chunk && r.status == 200 && have_ > 0) {
    restart();  // the server ignored Range: the whole file again
  } else if (first_chunk && r.status == 206 && have_ > 0) {
    // Content-Range must start where we are.
    const std::string cr = r.header("content-range");
    const auto sp = cr.find(' '), dash = cr.find('-');
    if (sp == std::string::npos || dash == std::string::npos ||
        std::strtoull(cr.c_str() + sp + 1, nullptr, 10) != have_) {
      bad_range_ = true;
      return false;
    }
  }
  if (have_ + n > f_.size) {
    bad_range_ = true;
    return false;
  }
  size_t off = 0;
  while (off < n) {
    const ssize_t w = ::write(out_.fd, data + off, n - off);
    if (w < 0) {
      if (errno == EINTR) continue;
      write_errno_ = errno;
      write_error_ = std::strerror(errno);
      return false;
    }
    off += static_cast<size_t>(w);
  }
  sha256_.update(data, n);
  if (git_blob_) sha1_.update(data, n);
  pull_.fetched_ += n;
  account(n);
  return true;
}

bool BlobDownload::after_get(const Response& r, uint64_t before) {
  if (r.cancelled) throw Cancelled();
  if (write_errno_) {
    const bool full = write_errno_ == ENOSPC || write_errno_ == EFBIG || write_errno_ == EDQUOT;
    throw HubError(full ? HubErrorKind::DiskFull : HubErrorKind::Protocol,
                   who_ + ": writing " + part_path_ + " failed: " + write_error_ + "; the " + format_bytes(have_) +
                       " downloaded so far are kept: free some space and run the same pull again to resume");
  }
  if (bad_range_) {
    restart();
    if (++failures_ > opt().max_retries)
      throw HubError(HubErrorKind::Protocol, who_ + ": the server sends bytes that do not match the requested range");
    return false;
  }
  if (r.code == CURLE_OK && r.status == 416) {
    restart();  // the server does not have the bytes we asked for: start the file again
    if (++failures_ > opt().max_retries) throw pull_.http_error(r, repo_, "file " + f_.path, true);
    return false;
  }
  if (r.code == CURLE_OK && r.status >= 300 && !(r.status >= 200 && r.status < 300)) {
    if (!transient_status(r.status)) throw pull_.http_error(r, repo_, "file " + f_.path, true);
  }
  if (r.code != CURLE_OK || r.status >= 300 || have_ < f_.size) {
    retry_get(r, before);
    return false;
  }
  return true;
}

// A GET that failed or ended early: throws when the retries are spent, else waits (not at all
// when it brought new bytes: the next attempt resumes from there).
void BlobDownload::retry_get(const Response& r, uint64_t before) {
  if (have_ > before) failures_ = 0;  // progress: the next attempt resumes from here
  if (++failures_ > opt().max_retries) {
    if (r.code != CURLE_OK || have_ < f_.size)
      throw HubError(r.stalled ? HubErrorKind::Stalled : HubErrorKind::Network,
                     who_ + ": " +
                         (r.code == CURLE_OK ? std::string("the download ended early") :
                                               describe_failure(r, opt().stall_timeout_s)) +
                         " (after " + std::to_string(opt().max_retries) + " retries); the " + format_bytes(have_) +
                         " downloaded so far are kept: run the same pull again to resume");
    throw pull_.http_error(r, repo_, "file " + f_.path, true);
  }
  const double wait = r.status == 429 ? retry_after_s(r, pull_.backoff(failures_), opt().retry_after_max_s)
                                      : (have_ > before ? 0.0 : pull_.backoff(failures_));
  pull_.set_stage(retry_stage(wait) + f_.path + ": " +
                  (r.code == CURLE_OK && r.status < 300 ? std::string("the connection closed early")
                                                       : describe_failure(r, opt().stall_timeout_s)));
  sleep_cancellable(wait, pull_.cancel_, pull_.tick_);
}

void BlobDownload::refuse(const std::string& what) {
  ::unlink(part_path_.c_str());
  ::unlink(etag_path_.c_str());
  throw HubError(HubErrorKind::Verification,
                 who_ + ": " + what + "; the download was discarded and nothing was saved under the final name");
}

void BlobDownload::finish() {
  pull_.set_stage("verifying " + f_.path);
  if (have_ != f_.size) refuse("got " + std::to_string(have_) + " bytes, the listing says " + std::to_string(f_.size));
  if (f_.lfs()) {
    const std::string got = sha256_.hex();
    if (got != lower(f_.sha256)) refuse("sha256 mismatch (expected " + lower(f_.sha256) + ", got " + got + ")");
  } else if (git_blob_) {
    const std::string got = sha1_.hex();
    if (got != lower(f_.blob_id)) refuse("git blob id mismatch (expected " + lower(f_.blob_id) + ", got " + got + ")");
  }
  if (::fsync(out_.fd) != 0) throw HubError(HubErrorKind::DiskFull, who_ + ": fsync of " + part_path_ + " failed: " + std::strerror(errno));
  if (::rename(part_path_.c_str(), final_path_.c_str()) != 0)
    throw HubError(HubErrorKind::Protocol, who_ + ": cannot rename " + part_path_ + ": " + std::strerror(errno));
  fsync_dir(blobs_);
  ::unlink(etag_path_.c_str());
}

void Puller::fetch_file(const std::string& repo, const std::string& commit, const RepoFile& f,
                        const std::string& blobs, const std::string& locks) {
  BlobDownload(*this, repo, commit, f, blobs, locks).run();
}

}  // namespace qins::hub::detail
