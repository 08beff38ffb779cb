#include "qins/util/files.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <mutex>
#include <random>
#include <vector>

#include "qins/util/errors.h"

namespace qins {

namespace {

std::string errno_text() { return std::strerror(errno); }

std::string parent_dir(const std::string& path) {
  const auto slash = path.find_last_of('/');
  return slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
}

// ---- Temporary files that must not outlive their writer ----------------------------------------
// Each live AtomicFile's temp path sits in a fixed table that a SIGINT/SIGTERM handler can walk
// without allocating: the handler unlinks every one, then lets the signal do what it did before.
// (SIGKILL cannot be caught: its leftovers are removed by the next write to the same target, see
// remove_stale_temps.)

constexpr int kMaxLiveTemps = 64;
constexpr std::size_t kMaxTempPath = 4096;
char g_temp_paths[kMaxLiveTemps][kMaxTempPath];
std::atomic<bool> g_temp_used[kMaxLiveTemps];
std::mutex g_temp_mutex;  // slot allocation only (never taken by the handler)
struct sigaction g_old_int {}, g_old_term {};

void unlink_live_temps_and_reraise(int sig) {
  for (int i = 0; i < kMaxLiveTemps; ++i)
    if (g_temp_used[i].load()) ::unlink(g_temp_paths[i]);
  ::sigaction(sig, sig == SIGINT ? &g_old_int : &g_old_term, nullptr);
  ::raise(sig);
}

void install_handlers_once() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa {};
    sa.sa_handler = unlink_live_temps_and_reraise;
    sigemptyset(&sa.sa_mask);
    // Keep a handler the program installed itself (the CLI's Ctrl-C during chat): only take over
    // signals still at their default action.
    struct sigaction cur {};
    if (::sigaction(SIGINT, nullptr, &cur) == 0 && cur.sa_handler == SIG_DFL) ::sigaction(SIGINT, &sa, &g_old_int);
    if (::sigaction(SIGTERM, nullptr, &cur) == 0 && cur.sa_handler == SIG_DFL) ::sigaction(SIGTERM, &sa, &g_old_term);
  });
}

int register_temp(const std::string& path) {
  if (path.size() >= kMaxTempPath) return -1;
  install_handlers_once();
  std::lock_guard<std::mutex> lock(g_temp_mutex);
  for (int i = 0; i < kMaxLiveTemps; ++i)
    if (!g_temp_used[i].load()) {
      std::memcpy(g_temp_paths[i], path.c_str(), path.size() + 1);
      g_temp_used[i].store(true);
      return i;
    }
  return -1;  // more than 64 at once: still removed on failure, just not on a signal
}

void unregister_temp(int slot) {
  if (slot >= 0) g_temp_used[slot].store(false);
}

// Removes `<path>.tmp-XXXXXX` files of our own naming that no living process holds: every writer
// keeps an exclusive flock on its temp file for its whole life, so a temp file whose lock can be
// taken was left by a writer that died (SIGKILL, power loss).
void remove_stale_temps(const std::string& path) {
  const std::string dir = parent_dir(path);
  const auto slash = path.find_last_of('/');
  const std::string prefix = (slash == std::string::npos ? path : path.substr(slash + 1)) + ".tmp-";
  DIR* d = ::opendir(dir.c_str());
  if (!d) return;
  while (const dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name.size() != prefix.size() + 6 || name.compare(0, prefix.size(), prefix) != 0) continue;
    const std::string full = dir + "/" + name;
    const int fd = ::open(full.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) continue;
    struct stat st {};
    if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && ::flock(fd, LOCK_EX | LOCK_NB) == 0) ::unlink(full.c_str());
    ::close(fd);
  }
  ::closedir(d);
}

}  // namespace

std::string read_file(const std::string& path, uint64_t max_bytes) {
  // O_NONBLOCK: opening a FIFO must not wait for a writer; the type is checked before any read.
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) throw Error(path + ": cannot open for reading (" + errno_text() + ")");
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error(path + ": not a regular file");
  }
  if (static_cast<uint64_t>(st.st_size) > max_bytes) {
    ::close(fd);
    throw Error(path + ": " + std::to_string(st.st_size) + " bytes, more than the " + std::to_string(max_bytes) +
                " this file may have");
  }
  std::string out(static_cast<std::size_t>(st.st_size), '\0');
  std::size_t done = 0;
  while (done < out.size()) {
    const ssize_t n = ::read(fd, out.data() + done, out.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const std::string why = errno_text();
      ::close(fd);
      throw Error(path + ": read failed (" + why + ")");
    }
    if (n == 0) break;  // shrank while reading
    done += static_cast<std::size_t>(n);
  }
  ::close(fd);
  out.resize(done);
  return out;
}

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  remove_stale_temps(path_);
  // The name is registered with the signal handler before the file exists, so a SIGINT/SIGTERM
  // delivered to any thread at any moment finds it (mkostemp named the file only after creating
  // it, and a signal on another thread in between left it behind). On this thread the signals
  // are also held back until the file is created and locked.
  sigset_t block, old;
  sigemptyset(&block);
  sigaddset(&block, SIGINT);
  sigaddset(&block, SIGTERM);
  ::pthread_sigmask(SIG_BLOCK, &block, &old);
  static const char kChars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  std::random_device rd;
  int err = EEXIST;
  for (int attempt = 0; attempt < 100 && fd_ < 0 && err == EEXIST; ++attempt) {
    std::string name = path_ + ".tmp-";
    for (int i = 0; i < 6; ++i) name += kChars[rd() % (sizeof kChars - 1)];
    slot_ = register_temp(name);
    fd_ = ::open(name.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    err = errno;
    if (fd_ >= 0) {
      tmp_ = name;
      ::flock(fd_, LOCK_EX);  // held until close: marks the temp file as in use (remove_stale_temps)
    } else {
      unregister_temp(slot_);  // not ours (EEXIST: another writer's) or not created
      slot_ = -1;
    }
  }
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (fd_ < 0) throw Error(path_ + ": cannot create temporary file next to it (" + std::strerror(err) + ")");
  ::fchmod(fd_, 0644);
}

AtomicFile::~AtomicFile() {
  if (!committed_ && !tmp_.empty()) ::unlink(tmp_.c_str());
  unregister_temp(slot_);
  if (fd_ >= 0) ::close(fd_);
}

void AtomicFile::write_at(uint64_t offset, const void* data, std::size_t n) {
  if (fd_ < 0) throw Error(path_ + ": write after commit or failure");
  const auto* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::pwrite(fd_, p, n, static_cast<off_t>(offset));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) throw Error(path_ + ": write failed (" + (w < 0 ? errno_text() : std::string("no progress")) + ")");
    p += w;
    n -= static_cast<std::size_t>(w);
    offset += static_cast<uint64_t>(w);
    if (offset > size_) size_ = offset;
  }
}

void AtomicFile::write(const void* data, std::size_t n) { write_at(size_, data, n); }

void AtomicFile::commit() {
  if (fd_ < 0) throw Error(path_ + ": commit after commit or failure");
  if (::fsync(fd_) != 0) throw Error(path_ + ": fsync failed (" + errno_text() + ")");
  // Rename while the file is still open and locked: a writer starting meanwhile must not take the
  // temp file for a dead one's (remove_stale_temps).
  if (::rename(tmp_.c_str(), path_.c_str()) != 0) throw Error(path_ + ": rename failed, from temporary file (" + errno_text() + ")");
  committed_ = true;
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) throw Error(path_ + ": close failed (" + errno_text() + ")");
  unregister_temp(slot_);
  slot_ = -1;
  // Make the rename itself durable (best effort: some file systems refuse fsync on a directory).
  const int dfd = ::open(parent_dir(path_).c_str(), O_RDONLY);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

void write_file_atomic(const std::string& path, std::string_view bytes) {
  AtomicFile f(path);
  f.write(bytes.data(), bytes.size());
  f.commit();
}

}  // namespace qins
