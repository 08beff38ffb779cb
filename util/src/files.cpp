#include "qins/util/files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "qins/util/errors.h"

namespace qins {

namespace {

std::string errno_text() { return std::strerror(errno); }

std::string parent_dir(const std::string& path) {
  const auto slash = path.find_last_of('/');
  return slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
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
  std::string templ = path_ + ".tmp-XXXXXX";
  std::vector<char> buf(templ.begin(), templ.end());
  buf.push_back('\0');
  fd_ = ::mkstemp(buf.data());
  if (fd_ < 0) throw Error(path_ + ": cannot create temporary file next to it (" + errno_text() + ")");
  tmp_ = buf.data();
  ::fchmod(fd_, 0644);
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_ && !tmp_.empty()) ::unlink(tmp_.c_str());
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
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) throw Error(path_ + ": close failed (" + errno_text() + ")");
  if (::rename(tmp_.c_str(), path_.c_str()) != 0) throw Error(path_ + ": rename failed, from temporary file (" + errno_text() + ")");
  committed_ = true;
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
