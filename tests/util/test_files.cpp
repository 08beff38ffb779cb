// util/files: read_file refuses what is not a regular file or too large; AtomicFile leaves the old
// file or the whole new one, and no temporary file behind after a failure, SIGINT/SIGTERM, or
// (on the next write) SIGKILL.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "qins/util/errors.h"
#include "qins/util/files.h"

namespace fs = std::filesystem;

namespace {

class TempDir {
 public:
  TempDir() {
    std::string t = (fs::temp_directory_path() / "qins_util_XXXXXX").string();
    path_ = ::mkdtemp(t.data());
  }
  ~TempDir() { fs::remove_all(path_); }
  fs::path operator/(const std::string& s) const { return path_ / s; }
  int temp_files() const {
    int n = 0;
    for (const auto& e : fs::directory_iterator(path_)) n += e.path().filename().string().find(".tmp-") != std::string::npos;
    return n;
  }

 private:
  fs::path path_;
};

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const qins::Error& e) {
    return e.what();
  }
  return "";
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

TEST(ReadFile, ReadsARegularFile) {
  TempDir d;
  qins::write_file_atomic((d / "a.json").string(), "{\"x\": 1}");
  EXPECT_EQ(qins::read_file((d / "a.json").string()), "{\"x\": 1}");
}

TEST(ReadFile, RefusesADeviceAFifoAndADirectoryWithoutBlocking) {
  TempDir d;
  const auto fifo = (d / "model.safetensors").string();
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  EXPECT_NE(error_of([&] { qins::read_file(fifo); }).find("not a regular file"), std::string::npos);
  const auto zero = (d / "config.json").string();
  fs::create_symlink("/dev/zero", zero);
  const std::string e = error_of([&] { qins::read_file(zero); });
  EXPECT_NE(e.find(zero), std::string::npos) << e;
  EXPECT_NE(e.find("not a regular file"), std::string::npos) << e;
  EXPECT_NE(error_of([&] { qins::read_file((d / "").string()); }).find("not a regular file"), std::string::npos);
}

TEST(ReadFile, RefusesAFileOverItsCap) {
  TempDir d;
  const auto p = (d / "tokenizer.json").string();
  qins::write_file_atomic(p, std::string(1000, 'x'));
  const std::string e = error_of([&] { qins::read_file(p, 999); });
  EXPECT_NE(e.find(p), std::string::npos);
  EXPECT_NE(e.find("1000 bytes"), std::string::npos) << e;
  EXPECT_EQ(qins::read_file(p, 1000).size(), 1000u);
}

TEST(AtomicFile, UncommittedLeavesTheOldFileAndNoTemp) {
  TempDir d;
  const auto p = (d / "out.bin").string();
  qins::write_file_atomic(p, "old");
  {
    qins::AtomicFile f(p);
    f.write("new bytes", 9);
    EXPECT_EQ(d.temp_files(), 1);
  }
  EXPECT_EQ(slurp(p), "old");
  EXPECT_EQ(d.temp_files(), 0);
}

TEST(AtomicFile, WriteAtFillsAHeaderLast) {
  TempDir d;
  const auto p = (d / "out.bin").string();
  qins::AtomicFile f(p);
  f.write("....body", 8);
  f.write_at(0, "HEAD", 4);
  f.commit();
  EXPECT_EQ(slurp(p), "HEADbody");
  EXPECT_EQ(d.temp_files(), 0);
}

TEST(AtomicFile, AStaleTempIsRemovedButALiveOneIsNot) {
  TempDir d;
  const auto p = (d / "model.qins").string();
  std::ofstream(p + ".tmp-AbC123") << "left by a writer killed with SIGKILL";
  std::ofstream(p + ".tmp-keep") << "not our naming (6 characters after .tmp-)";
  std::ofstream(p + ".other") << "not ours";
  qins::AtomicFile live(p);  // removes the stale one
  EXPECT_FALSE(fs::exists(p + ".tmp-AbC123"));
  EXPECT_TRUE(fs::exists(p + ".tmp-keep"));
  EXPECT_TRUE(fs::exists(p + ".other"));
  {
    qins::AtomicFile second(p);  // must not remove `live`'s temp file: its writer holds the lock
    EXPECT_TRUE(fs::exists(live.temp_path()));
  }
  live.write("x", 1);
  live.commit();
  EXPECT_EQ(slurp(p), "x");
}

// A child process opens an AtomicFile, writes, and waits; the parent kills it with `sig`.
void kill_writer_with(int sig, bool expect_cleanup) {
  TempDir d;
  const auto p = (d / "big.qins").string();
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(ready[0]);
    qins::AtomicFile f(p);
    f.write("partial", 7);
    (void)!::write(ready[1], "r", 1);
    ::pause();
    ::_exit(0);
  }
  ::close(ready[1]);
  char c = 0;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  ::close(ready[0]);
  EXPECT_EQ(d.temp_files(), 1);
  ::kill(pid, sig);
  int status = 0;
  ::waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFSIGNALED(status)) << "the signal's default action still ends the process";
  EXPECT_EQ(d.temp_files(), expect_cleanup ? 0 : 1);
  if (!expect_cleanup) {  // SIGKILL: the next write to the same target removes the leftover
    qins::write_file_atomic(p, "whole");
    EXPECT_EQ(d.temp_files(), 0);
    EXPECT_EQ(slurp(p), "whole");
  }
}

TEST(AtomicFile, SigtermRemovesTheTempFile) { kill_writer_with(SIGTERM, true); }
TEST(AtomicFile, SigintRemovesTheTempFile) { kill_writer_with(SIGINT, true); }
TEST(AtomicFile, SigkillLeftoverIsRemovedByTheNextWrite) { kill_writer_with(SIGKILL, false); }
