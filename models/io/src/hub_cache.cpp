// The Hub client's side of the Hugging Face cache layout (see hub.h): where a repo's blobs, locks,
// snapshots and refs live, the free-space check, one flock per blob, and the snapshot links.
#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>

#include "hub_internal.h"
#include "qins/util/files.h"

namespace fs = std::filesystem;

namespace qins::hub {

using namespace detail;

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

namespace detail {

void fsync_dir(const std::string& dir) {
  const int d = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (d >= 0) {
    ::fsync(d);
    ::close(d);
  }
}

void write_ref(const std::string& repo_dir, const std::string& revision, const std::string& commit) {
  std::error_code ec;
  fs::create_directories(fs::path(repo_dir + "/refs/" + revision).parent_path(), ec);
  write_file_atomic(repo_dir + "/refs/" + revision, commit);
}

CacheLayout Puller::prepare_cache(const std::string& repo, const std::string& commit) const {
  CacheLayout c;
  c.repo_dir = repo_cache_dir(cache_, repo);
  c.blobs = c.repo_dir + "/blobs";
  c.locks = cache_ + "/.locks/" + fs::path(c.repo_dir).filename().string();
  std::error_code ec;
  fs::create_directories(c.blobs, ec);
  if (ec) throw HubError(HubErrorKind::Protocol, "cannot create the cache folder " + c.blobs + ": " + ec.message());
  fs::create_directories(c.locks, ec);
  fs::create_directories(c.repo_dir + "/snapshots/" + commit, ec);
  return c;
}

// Throws DiskFull (before the first byte) when `need` more bytes and the margin do not fit.
void Puller::check_free_space(const std::string& repo, const std::string& blobs, uint64_t need) const {
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
}

// One process per blob: the others wait (and then find the file done).
void Puller::lock_blob(Fd& lock, const std::string& lock_path, const RepoFile& f) {
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

}  // namespace detail
}  // namespace qins::hub
