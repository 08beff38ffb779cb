// The Hub client (models/io/hub.h) and `qins pull` against a fake Hub on loopback (fake_hub.h):
// the cache layout, resume, verification, every fault switch, kill -9, a size-limited disk, and the
// end-to-end pull -> convert -> generate. No test touches the real network; no test asserts a time.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <random>
#include <thread>

#include "fake_hub.h"
#include "hub_json.h"
#include "qins/io/hub.h"
#include "qins/tools/fixture.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace qins::hub;
using qins_test::FakeFile;
using qins_test::FakeHub;
using qins_test::TempDir;

extern char** environ;

namespace {

// Loopback must never go through a proxy of the environment the tests run in.
const bool kNoProxy = [] {
  for (const char* v : {"http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"}) unsetenv(v);
  setenv("no_proxy", "127.0.0.1,localhost", 1);
  return true;
}();

std::string random_bytes(size_t n, uint32_t seed) {
  std::mt19937 g(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(g());
  return s;
}

std::vector<FakeFile> repo_files() {
  return {
      {"config.json", R"({"model_type": "phi3", "hidden_size": 64})", false},
      {"tokenizer.json", random_bytes(300000, 1), false},
      {"model.safetensors", random_bytes(2000000, 2), true},
      {"README.md", "# a model\n", false},
      {"onnx/model.onnx", random_bytes(1000, 3), true},
  };
}

HubOptions fast_options(const FakeHub& hub, const std::string& cache) {
  HubOptions o;
  o.endpoint = hub.endpoint();
  o.cache_dir = cache;
  o.token = std::string("hf_test_token");
  // Long enough that a loaded CI machine never looks stalled (tests count requests exactly), short
  // enough for the stall tests; the fake Hub holds a stall up to 30 s.
  o.stall_timeout_s = 3.0;
  o.max_retries = 3;
  o.backoff_initial_s = 0.01;
  o.backoff_max_s = 0.05;
  return o;
}

std::string repo_dir(const std::string& cache) { return repo_cache_dir(cache, "org/model"); }

std::string blob_path(const std::string& cache, const FakeHub& hub, const std::string& path) {
  const auto& f = hub.file(path);
  return repo_dir(cache) + "/blobs/" + (f.lfs ? hub.sha256(path) : hub.blob_id(path));
}

// The snapshot holds exactly the needed files, each a link to its verified blob.
void expect_complete_snapshot(const std::string& cache, const FakeHub& hub) {
  const std::string snap = repo_dir(cache) + "/snapshots/" + hub.commit();
  for (const char* p : {"config.json", "tokenizer.json", "model.safetensors"}) {
    EXPECT_TRUE(fs::is_symlink(snap + "/" + p)) << p;
    EXPECT_EQ(qins_test::read_bytes(snap + "/" + p), hub.file(p).content) << p;
    EXPECT_TRUE(fs::is_regular_file(blob_path(cache, hub, p))) << p;
    EXPECT_FALSE(fs::exists(blob_path(cache, hub, p) + ".incomplete")) << p;
  }
  EXPECT_FALSE(fs::exists(snap + "/README.md"));
  EXPECT_FALSE(fs::exists(snap + "/onnx"));
}

HubErrorKind kind_of(const std::function<void()>& f, std::string* message = nullptr) {
  try {
    f();
  } catch (const HubError& e) {
    if (message) *message = e.what();
    return e.kind();
  }
  ADD_FAILURE() << "expected a HubError";
  return HubErrorKind::Protocol;
}

TEST(Hub, ParsesRepoRefsAndCachePaths) {
  EXPECT_EQ(parse_repo_ref("microsoft/Phi-3.5-mini-instruct"),
            std::make_pair(std::string("microsoft/Phi-3.5-mini-instruct"), std::string("main")));
  EXPECT_EQ(parse_repo_ref("a/b@v1.0").second, "v1.0");
  EXPECT_THROW(parse_repo_ref("no-slash"), HubError);
  EXPECT_THROW(parse_repo_ref("a/../b"), HubError);
  EXPECT_THROW(parse_repo_ref("a/b@"), HubError);
  EXPECT_EQ(repo_cache_dir("/c", "org/name"), "/c/models--org--name");
  EXPECT_TRUE(is_needed_file("model-00001-of-00002.safetensors"));
  EXPECT_TRUE(is_needed_file("special_tokens_map.json"));
  EXPECT_FALSE(is_needed_file("README.md"));
  EXPECT_FALSE(is_needed_file("sub/model.safetensors"));
  const std::string saved_cache = getenv("HF_HUB_CACHE") ? getenv("HF_HUB_CACHE") : "";
  const std::string saved_home = getenv("HF_HOME") ? getenv("HF_HOME") : "";
  setenv("HF_HUB_CACHE", "/x/hub", 1);
  EXPECT_EQ(default_cache_dir(), "/x/hub");
  unsetenv("HF_HUB_CACHE");
  setenv("HF_HOME", "/y", 1);
  EXPECT_EQ(default_cache_dir(), "/y/hub");
  unsetenv("HF_HOME");
  if (!saved_cache.empty()) setenv("HF_HUB_CACHE", saved_cache.c_str(), 1);
  if (!saved_home.empty()) setenv("HF_HOME", saved_home.c_str(), 1);
}

TEST(Hub, PullsWhatAModelNeedsIntoTheHfCacheLayout) {
  FakeHub hub("org/model", repo_files());
  TempDir cache;
  HubClient client(fast_options(hub, cache.path()));
  std::vector<PullProgress> seen;
  const PullResult r = client.pull("org/model", "main", [&](const PullProgress& p) {
    seen.push_back(p);
    return true;
  });
  EXPECT_EQ(r.info.commit, hub.commit());
  EXPECT_EQ(r.files.size(), 3u);
  EXPECT_EQ(r.snapshot_dir, repo_dir(cache.path()) + "/snapshots/" + hub.commit());
  EXPECT_EQ(r.downloaded_bytes, 300000u + 2000000u + hub.file("config.json").content.size());
  expect_complete_snapshot(cache.path(), hub);
  EXPECT_EQ(qins_test::read_bytes(repo_dir(cache.path()) + "/refs/main"), hub.commit());
  // LFS blobs are named by their sha256, the others by their git blob id (as huggingface_hub does).
  EXPECT_EQ(fs::read_symlink(r.snapshot_dir + "/model.safetensors").string(), "../../blobs/" + hub.sha256("model.safetensors"));
  // The token went to the Hub, never to the CDN; files nobody needs were not fetched.
  EXPECT_EQ(hub.cdn_auth_refusals(), 0);
  bool hub_auth = false, cdn_seen = false;
  for (const auto& e : hub.log()) {
    if (e.server == "hub") hub_auth = hub_auth || e.auth;
    if (e.server == "cdn") {
      cdn_seen = true;
      EXPECT_FALSE(e.auth) << e.path;
    }
    EXPECT_EQ(e.path.find("README"), std::string::npos);
    EXPECT_EQ(e.path.find("onnx"), std::string::npos);
  }
  EXPECT_TRUE(hub_auth);
  EXPECT_TRUE(cdn_seen);
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen.back().done, seen.back().total);
  EXPECT_EQ(seen.back().total, r.downloaded_bytes);
  EXPECT_EQ(seen.back().stage, "done");
  for (size_t i = 1; i < seen.size(); ++i) EXPECT_GE(seen[i].file_index, seen[i - 1].file_index);

  // A second pull finds everything in the cache and fetches nothing.
  const size_t before = hub.log().size();
  const PullResult again = client.pull("org/model", "main");
  EXPECT_EQ(again.downloaded_bytes, 0u);
  EXPECT_EQ(again.reused_bytes, r.downloaded_bytes);
  for (size_t i = before; i < hub.log().size(); ++i) EXPECT_EQ(hub.log()[i].path.find("/resolve/"), std::string::npos);
}

TEST(Hub, PagesTheTreeListingWhenTheRevisionHasNoSizes) {
  FakeHub hub("org/model", repo_files());
  hub.tree_only = true;
  TempDir cache;
  HubClient client(fast_options(hub, cache.path()));
  const RepoInfo info = client.resolve("org/model", "main");
  EXPECT_EQ(info.files.size(), 5u);
  int pages = 0;
  for (const auto& e : hub.log()) pages += e.path.find("/tree/") != std::string::npos;
  EXPECT_EQ(pages, 3);  // 5 files, 2 per page
  client.pull("org/model");
  expect_complete_snapshot(cache.path(), hub);
}

TEST(Hub, ResumesFromTheByteItHadAfterADroppedConnection) {
  FakeHub hub("org/model", repo_files());
  hub.fault_file = "model.safetensors";
  hub.drop = 1;
  TempDir cache;
  HubClient(fast_options(hub, cache.path())).pull("org/model");
  expect_complete_snapshot(cache.path(), hub);
  const auto gets = hub.data_gets("model.safetensors");
  ASSERT_EQ(gets.size(), 2u);
  EXPECT_EQ(gets[0].range, "");
  EXPECT_EQ(gets[1].range, "bytes=1000000-");
  EXPECT_EQ(gets[1].status, 206);
}

TEST(Hub, AStallIsRetriedAndResumed) {
  FakeHub hub("org/model", repo_files());
  hub.fault_file = "model.safetensors";
  hub.stall = 1;
  TempDir cache;
  HubClient(fast_options(hub, cache.path())).pull("org/model");
  expect_complete_snapshot(cache.path(), hub);
  const auto gets = hub.data_gets("model.safetensors");
  ASSERT_EQ(gets.size(), 2u);
  EXPECT_EQ(gets[1].range, "bytes=1000000-");
}

TEST(Hub, StallsBeyondTheRetriesAreAResumableErrorThatKeepsThePartialFile) {
  FakeHub hub("org/model", repo_files());
  hub.fault_file = "model.safetensors";
  hub.stall = 100;
  TempDir cache;
  HubOptions o = fast_options(hub, cache.path());
  o.max_retries = 1;
  std::string msg;
  try {
    HubClient(o).pull("org/model");
    ADD_FAILURE() << "expected a stall error";
  } catch (const HubError& e) {
    EXPECT_EQ(e.kind(), HubErrorKind::Stalled);
    EXPECT_TRUE(e.resumable());
    msg = e.what();
  }
  EXPECT_NE(msg.find("model.safetensors"), std::string::npos) << msg;
  EXPECT_NE(msg.find("resume"), std::string::npos) << msg;
  const std::string blob = blob_path(cache.path(), hub, "model.safetensors");
  EXPECT_FALSE(fs::exists(blob));
  EXPECT_EQ(fs::file_size(blob + ".incomplete"), 1000000u);
  // The same pull later continues from there.
  hub.stall = 0;
  hub.release_stall = true;
  HubClient(o).pull("org/model");
  expect_complete_snapshot(cache.path(), hub);
  EXPECT_EQ(hub.data_gets("model.safetensors").back().range, "bytes=1000000-");
}

TEST(Hub, ARangeIgnoredByTheServerRestartsTheFile) {
  FakeHub hub("org/model", repo_files());
  hub.fault_file = "model.safetensors";
  hub.drop = 1;
  hub.ignore_range = 1;
  TempDir cache;
  HubClient(fast_options(hub, cache.path())).pull("org/model");
  expect_complete_snapshot(cache.path(), hub);
  const auto gets = hub.data_gets("model.safetensors");
  ASSERT_EQ(gets.size(), 2u);
  EXPECT_EQ(gets[1].range, "bytes=1000000-");
  EXPECT_EQ(gets[1].status, 200);  // the whole file again, written from byte 0
}

TEST(Hub, WrongBytesAreRefusedAndNothingIsSavedUnderTheFinalName) {
  for (const char* path : {"model.safetensors", "tokenizer.json"}) {  // sha256 (LFS) and git blob id
    FakeHub hub("org/model", repo_files());
    hub.fault_file = path;
    hub.corrupt = 1;
    TempDir cache;
    std::string msg;
    EXPECT_EQ(kind_of([&] { HubClient(fast_options(hub, cache.path())).pull("org/model"); }, &msg),
              HubErrorKind::Verification);
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find("mismatch"), std::string::npos) << msg;
    const std::string blob = blob_path(cache.path(), hub, path);
    EXPECT_FALSE(fs::exists(blob));
    EXPECT_FALSE(fs::exists(blob + ".incomplete"));
    EXPECT_FALSE(fs::exists(repo_dir(cache.path()) + "/snapshots/" + hub.commit() + "/" + path));
    // The next pull starts that file afresh and succeeds.
    HubClient(fast_options(hub, cache.path())).pull("org/model");
    expect_complete_snapshot(cache.path(), hub);
  }
}

TEST(Hub, AGatedRepoSaysHowToSetAToken) {
  FakeHub hub("org/model", repo_files());
  hub.gated = true;
  TempDir cache;
  HubOptions o = fast_options(hub, cache.path());
  o.token = std::string();
  std::string msg;
  EXPECT_EQ(kind_of([&] { HubClient(o).pull("org/model"); }, &msg), HubErrorKind::GatedRepo);
  EXPECT_NE(msg.find("HF_TOKEN"), std::string::npos) << msg;
  EXPECT_NE(msg.find("org/model"), std::string::npos) << msg;
  EXPECT_NE(msg.find("No token was sent"), std::string::npos) << msg;
  o.token = std::string("wrong");
  EXPECT_EQ(kind_of([&] { HubClient(o).pull("org/model"); }, &msg), HubErrorKind::GatedRepo);
  EXPECT_NE(msg.find("refused"), std::string::npos) << msg;
  o.token = std::string("hf_test_token");
  HubClient(o).pull("org/model");
  expect_complete_snapshot(cache.path(), hub);
  EXPECT_EQ(hub.cdn_auth_refusals(), 0);
}

TEST(Hub, MissingReposRevisionsAndFilesAreClearErrors) {
  FakeHub hub("org/model", repo_files());
  TempDir cache;
  HubClient client(fast_options(hub, cache.path()));
  std::string msg;
  EXPECT_EQ(kind_of([&] { client.pull("org/other"); }, &msg), HubErrorKind::RepoNotFound);
  EXPECT_NE(msg.find("org/other"), std::string::npos) << msg;
  EXPECT_EQ(kind_of([&] { client.pull("org/model", "v9"); }, &msg), HubErrorKind::RevisionNotFound);
  EXPECT_NE(msg.find("v9"), std::string::npos) << msg;
  hub.fault_file = "config.json";
  hub.status_fault = 1;
  hub.status_code = 404;
  hub.error_code = "EntryNotFound";
  EXPECT_EQ(kind_of([&] { client.pull("org/model"); }, &msg), HubErrorKind::EntryNotFound);
  EXPECT_NE(msg.find("config.json"), std::string::npos) << msg;
}

TEST(Hub, A429WithRetryAfterIsWaitedOut) {
  FakeHub hub("org/model", repo_files());
  hub.fault_file = "model.safetensors";
  hub.status_fault = 2;
  hub.status_code = 429;
  hub.retry_after = "1";
  TempDir cache;
  std::vector<std::string> stages;
  HubClient(fast_options(hub, cache.path())).pull("org/model", "main", [&](const PullProgress& p) {
    if (stages.empty() || stages.back() != p.stage) stages.push_back(p.stage);
    return true;
  });
  expect_complete_snapshot(cache.path(), hub);
  int n429 = 0;
  for (const auto& e : hub.log()) n429 += e.status == 429;
  EXPECT_EQ(n429, 2);
  EXPECT_TRUE(std::any_of(stages.begin(), stages.end(),
                          [](const std::string& s) { return s.find("retrying in 1 s") != std::string::npos; }));
}

TEST(Hub, A503IsRetriedAndPersistentOnesAreAResumableError) {
  FakeHub hub("org/model", repo_files());
  hub.fault_file = "model.safetensors";
  hub.status_fault = 2;
  hub.status_code = 503;
  TempDir cache;
  HubClient(fast_options(hub, cache.path())).pull("org/model");
  expect_complete_snapshot(cache.path(), hub);

  FakeHub down("org/model", repo_files());
  down.fault_file = "model.safetensors";
  down.status_fault = 100;
  down.status_code = 503;
  TempDir cache2;
  try {
    HubClient(fast_options(down, cache2.path())).pull("org/model");
    ADD_FAILURE() << "expected an error";
  } catch (const HubError& e) {
    EXPECT_EQ(e.kind(), HubErrorKind::Server);
    EXPECT_TRUE(e.resumable());
    EXPECT_NE(std::string(e.what()).find("503"), std::string::npos) << e.what();
  }
}

TEST(Hub, AnETagChangeBetweenAttemptsRestartsThatFile) {
  FakeHub hub("org/model", repo_files());
  hub.fault_file = "tokenizer.json";
  hub.drop = 1;
  hub.etag_change_on_drop = true;
  TempDir cache;
  HubClient(fast_options(hub, cache.path())).pull("org/model");
  expect_complete_snapshot(cache.path(), hub);
  const auto gets = hub.data_gets("tokenizer.json");
  ASSERT_EQ(gets.size(), 2u);
  EXPECT_EQ(gets[1].range, "");  // not resumed: the partial bytes belonged to another ETag
}

TEST(Hub, FreeSpaceIsCheckedBeforeTheFirstByte) {
  FakeHub hub("org/model", repo_files());
  TempDir cache;
  HubOptions o = fast_options(hub, cache.path());
  o.free_space_override = 1000000;
  std::string msg;
  EXPECT_EQ(kind_of([&] { HubClient(o).pull("org/model"); }, &msg), HubErrorKind::DiskFull);
  EXPECT_NE(msg.find("disk space"), std::string::npos) << msg;
  EXPECT_NE(msg.find("nothing was downloaded"), std::string::npos) << msg;
  for (const auto& e : hub.log()) EXPECT_EQ(e.path.find("/resolve/"), std::string::npos) << e.path;
}

TEST(Hub, CancelKeepsThePartialFileAndTheNextPullResumes) {
  FakeHub hub("org/model", repo_files());
  hub.fault_file = "model.safetensors";
  hub.stall = 1;
  TempDir cache;
  HubOptions o = fast_options(hub, cache.path());
  o.stall_timeout_s = 600;  // the stall is ended by the cancel, not by the timeout
  std::atomic<bool> cancel{false};
  const std::string part = blob_path(cache.path(), hub, "model.safetensors") + ".incomplete";
  std::thread pauser([&] {
    std::error_code ec;
    while (!(fs::exists(part, ec) && fs::file_size(part, ec) == 1000000u)) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    cancel = true;
  });
  EXPECT_THROW(HubClient(o).pull("org/model", "main", {}, &cancel), qins::Cancelled);
  pauser.join();
  EXPECT_EQ(fs::file_size(part), 1000000u);
  hub.release_stall = true;
  HubClient(o).pull("org/model");
  expect_complete_snapshot(cache.path(), hub);
  EXPECT_EQ(hub.data_gets("model.safetensors").back().range, "bytes=1000000-");
}

TEST(Hub, TwoPullsOfTheSameRepoAtOnceDoNotCorruptEachOther) {
  FakeHub hub("org/model", repo_files());
  TempDir cache;
  std::string errors[2];
  std::thread t[2];
  for (int i = 0; i < 2; ++i)
    t[i] = std::thread([&, i] {
      try {
        HubClient(fast_options(hub, cache.path())).pull("org/model");
      } catch (const std::exception& e) {
        errors[i] = e.what();
      }
    });
  for (auto& x : t) x.join();
  EXPECT_EQ(errors[0], "");
  EXPECT_EQ(errors[1], "");
  expect_complete_snapshot(cache.path(), hub);
}

TEST(Hub, ARepoWithoutWeightsIsNotAModel) {
  FakeHub hub("org/model", {{"config.json", "{}", false}, {"model.gguf", "GGUF", true}});
  TempDir cache;
  EXPECT_EQ(kind_of([&] { HubClient(fast_options(hub, cache.path())).pull("org/model"); }), HubErrorKind::NotAModel);
}

// ---------------------------------------------------------------------------------------------
// `qins pull` as a process

struct Proc {
  int rc = -1;
  std::string out, err;
};

// Starts qins with `args`, the environment plus `env`; stdout/stderr to files in `dir`.
pid_t spawn_qins(const std::vector<std::string>& args, const std::vector<std::string>& env, const std::string& dir,
                 rlim_t fsize_limit = RLIM_INFINITY) {
  std::vector<std::string> envs;
  for (char** e = environ; *e; ++e) envs.emplace_back(*e);
  for (const auto& e : env) envs.push_back(e);
  std::vector<char*> argv{const_cast<char*>(QINS_CLI_PATH)}, envp;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (auto& e : envs) envp.push_back(e.data());
  envp.push_back(nullptr);
  const std::string out = dir + "/stdout", err = dir + "/stderr";
  const pid_t pid = fork();
  if (pid == 0) {
    const int o = ::open(out.c_str(), O_CREAT | O_TRUNC | O_WRONLY, 0644), e = ::open(err.c_str(), O_CREAT | O_TRUNC | O_WRONLY, 0644);
    ::dup2(o, 1);
    ::dup2(e, 2);
    if (fsize_limit != RLIM_INFINITY) {
      ::signal(SIGXFSZ, SIG_IGN);  // a write past the limit fails with EFBIG, like a full disk
      rlimit rl{fsize_limit, fsize_limit};
      ::setrlimit(RLIMIT_FSIZE, &rl);
    }
    ::execve(argv[0], argv.data(), envp.data());
    ::_exit(127);
  }
  return pid;
}

Proc wait_qins(pid_t pid, const std::string& dir) {
  Proc p;
  int status = 0;
  ::waitpid(pid, &status, 0);
  p.rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  p.out = qins_test::read_bytes(dir + "/stdout");
  p.err = qins_test::read_bytes(dir + "/stderr");
  return p;
}

Proc run_qins(const std::vector<std::string>& args, const std::vector<std::string>& env, const std::string& dir,
              rlim_t fsize_limit = RLIM_INFINITY) {
  return wait_qins(spawn_qins(args, env, dir, fsize_limit), dir);
}

TEST(QinsPull, KilledWithSigkillMidDownloadThenASecondPullFinishesAndVerifies) {
  FakeHub hub("org/model", repo_files());
  hub.fault_file = "model.safetensors";
  hub.stall = 1;
  TempDir cache, logs;
  const std::vector<std::string> env{"HF_ENDPOINT=" + hub.endpoint(), "HF_HUB_CACHE=" + cache.path(), "HF_TOKEN="};
  const std::string part = blob_path(cache.path(), hub, "model.safetensors") + ".incomplete";
  const pid_t pid = spawn_qins({"pull", "org/model", "--no-convert"}, env, logs.path());
  std::error_code ec;
  while (!(fs::exists(part, ec) && fs::file_size(part, ec) == 1000000u)) {
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, WNOHANG), 0) << "qins pull ended before the kill: "
                                                   << qins_test::read_bytes(logs.file("stderr"));
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ::kill(pid, SIGKILL);
  EXPECT_EQ(wait_qins(pid, logs.path()).rc, 128 + SIGKILL);
  EXPECT_FALSE(fs::exists(blob_path(cache.path(), hub, "model.safetensors")));
  hub.release_stall = true;
  const Proc p = run_qins({"pull", "org/model", "--no-convert"}, env, logs.path());
  ASSERT_EQ(p.rc, 0) << p.err;
  EXPECT_NE(p.out.find("verified"), std::string::npos) << p.out;
  expect_complete_snapshot(cache.path(), hub);
  EXPECT_EQ(hub.data_gets("model.safetensors").back().range, "bytes=1000000-");
}

TEST(QinsPull, AFullDiskIsAClearErrorAndKeepsNothingUnverified) {
  FakeHub hub("org/model", repo_files());
  TempDir cache, logs;
  const std::vector<std::string> env{"HF_ENDPOINT=" + hub.endpoint(), "HF_HUB_CACHE=" + cache.path(), "HF_TOKEN="};
  // Files may grow to 1 MB (RLIMIT_FSIZE): the 2 MB weights cannot be written.
  const Proc p = run_qins({"pull", "org/model", "--no-convert"}, env, logs.path(), 1000000);
  EXPECT_EQ(p.rc, 1);
  EXPECT_NE(p.err.find("model.safetensors"), std::string::npos) << p.err;
  EXPECT_NE(p.err.find("File too large"), std::string::npos) << p.err;
  EXPECT_NE(p.err.find("free some space"), std::string::npos) << p.err;
  EXPECT_FALSE(fs::exists(blob_path(cache.path(), hub, "model.safetensors")));
}

// The fixture model's folder, served as a Hub repo (safetensors as LFS files).
std::vector<FakeFile> fixture_repo(const std::string& dir) {
  qins::write_fixture_model(dir);
  std::vector<FakeFile> files;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    files.push_back({name, qins_test::read_bytes(e.path().string()), e.path().extension() == ".safetensors"});
  }
  files.push_back({"README.md", "# fixture\n", false});
  return files;
}

TEST(QinsPull, EndToEndPullVerifiesConvertsAndTheResultAnswers) {
  TempDir model, cache, logs, data;
  FakeHub hub("some/repo", fixture_repo(model.path()));
  const std::vector<std::string> env{"HF_ENDPOINT=" + hub.endpoint(), "HF_HUB_CACHE=" + cache.path(), "HF_TOKEN=",
                                     "QINS_MODELS_DIR=" + data.path()};
  const Proc pull = run_qins({"pull", "some/repo"}, env, logs.path());
  ASSERT_EQ(pull.rc, 0) << pull.err;
  const std::string qins = data.path() + "/repo-projective.qins";
  ASSERT_TRUE(fs::is_regular_file(qins)) << pull.out;
  EXPECT_NE(pull.out.find("wrote " + qins), std::string::npos) << pull.out;

  const Proc gen = run_qins({"generate", qins, "--prompt", "hello", "--max-tokens", "8", "--seed", "1"}, {}, logs.path());
  ASSERT_EQ(gen.rc, 0) << gen.err;
  EXPECT_FALSE(gen.out.empty());

  const Proc inspect = run_qins({"inspect", qins}, {}, logs.path());
  ASSERT_EQ(inspect.rc, 0) << inspect.err;
  EXPECT_NE(inspect.out.find("origin: some/repo at commit " + hub.commit()), std::string::npos) << inspect.out;
  const Proc json = run_qins({"inspect", qins, "--json"}, {}, logs.path());
  const auto j = nlohmann::json::parse(json.out);
  const auto& origin = j["qins"]["converter"]["origin"];
  EXPECT_EQ(origin["repo"], "some/repo");
  EXPECT_EQ(origin["commit"], hub.commit());
  bool has_sha = false;
  for (const auto& f : origin["files"])
    if (f["path"] == "model.safetensors") has_sha = f["sha256"] == hub.sha256("model.safetensors");
  EXPECT_TRUE(has_sha) << origin.dump();

  // -o, and a second pull reuses the cache.
  const Proc again = run_qins({"pull", "some/repo@main", "-o", data.file("x.qins"), "--codebook", "uniform"}, env, logs.path());
  ASSERT_EQ(again.rc, 0) << again.err;
  EXPECT_NE(again.out.find("0 B downloaded"), std::string::npos) << again.out;
  EXPECT_TRUE(fs::is_regular_file(data.file("x.qins")));
}

}  // namespace

// A Hub (or a mirror named by HF_ENDPOINT) answering with the wrong shapes: every answer is a
// Protocol error naming the repo, the answer and the field; never a JSON library exception.
TEST(HubJson, MalformedAnswersAreProtocolErrorsNamingTheField) {
  namespace d = qins::hub::detail;
  const std::string sha(40, 'a'), sha256(64, 'b');
  auto revision_error = [&](const std::string& body) {
    try {
      d::parse_revision(body, "org/m", "main");
    } catch (const HubError& e) {
      EXPECT_EQ(e.kind(), HubErrorKind::Protocol) << body;
      return std::string(e.what());
    }
    return std::string("(accepted)");
  };
  auto tree_error = [&](const std::string& body) {
    try {
      d::parse_tree_page(body, "org/m");
    } catch (const HubError& e) {
      EXPECT_EQ(e.kind(), HubErrorKind::Protocol) << body;
      return std::string(e.what());
    }
    return std::string("(accepted)");
  };
  EXPECT_EQ(revision_error("[]"), "org/m: the answer for revision main: not a JSON object");
  EXPECT_NE(revision_error("{\"sha\": 1e999}").find("not valid JSON"), std::string::npos);
  EXPECT_EQ(revision_error("{\"sha\": 5}"), "org/m: the answer for revision main: 'sha' is not a string");
  EXPECT_EQ(revision_error("{\"sha\": \"abc\"}"), "org/m: revision main did not resolve to a commit");
  const std::string head = "{\"sha\": \"" + sha + "\", \"siblings\": ";
  EXPECT_EQ(revision_error(head + "[1]}"), "org/m: the answer for revision main, sibling 0: not a JSON object");
  EXPECT_EQ(revision_error(head + "[{\"rfilename\": 7, \"size\": 3}]}"),
            "org/m: the answer for revision main, sibling 0: 'rfilename' is not a string");
  EXPECT_EQ(revision_error(head + "[{\"rfilename\": \"a\", \"size\": 3, \"lfs\": {\"sha256\": []}}]}"),
            "org/m: the answer for revision main, sibling 0's lfs: 'sha256' is not a string");
  // A sibling without a size: not an error, the tree listing is asked instead.
  const d::RevisionAnswer partial = d::parse_revision(head + "[{\"rfilename\": \"a\", \"size\": 3}, {\"rfilename\": \"b\"}]}", "org/m", "main");
  EXPECT_FALSE(partial.complete);
  EXPECT_TRUE(partial.files.empty());
  const d::RevisionAnswer full = d::parse_revision(
      head + "[{\"rfilename\": \"w.safetensors\", \"size\": 3, \"blobId\": \"" + sha +
          "\", \"lfs\": {\"sha256\": \"" + sha256 + "\", \"size\": 9}}]}",
      "org/m", "main");
  ASSERT_TRUE(full.complete);
  ASSERT_EQ(full.files.size(), 1u);
  EXPECT_EQ(full.files[0].size, 9u);
  EXPECT_EQ(full.files[0].sha256, sha256);

  EXPECT_EQ(tree_error("{}"), "org/m: the file listing: not a list");
  EXPECT_EQ(tree_error("[5]"), "org/m: the file listing's entry 0: not a JSON object");
  EXPECT_EQ(tree_error("[{\"path\": \"a\"}, {\"type\": 1, \"path\": \"b\"}]"),
            "org/m: the file listing's entry 1: 'type' is not a string");
  EXPECT_EQ(tree_error("[{\"path\": [\"x\"]}]"), "org/m: the file listing's entry 0: 'path' is not a string");
  EXPECT_EQ(tree_error("[{\"path\": \"a\", \"oid\": {}}]"), "org/m: the file listing's entry 0: 'oid' is not a string");
  const auto files = d::parse_tree_page(
      "[{\"type\": \"directory\", \"path\": \"d\"}, {\"path\": \"w\", \"size\": 3, \"oid\": \"" + sha +
          "\", \"lfs\": {\"oid\": \"" + sha256 + "\", \"size\": 9}}]",
      "org/m");
  ASSERT_EQ(files.size(), 1u);
  EXPECT_EQ(files[0].path, "w");
  EXPECT_EQ(files[0].size, 9u);
  EXPECT_EQ(files[0].blob_id, sha);
  EXPECT_EQ(files[0].sha256, sha256);

  RepoFile unsafe;
  unsafe.path = "../escape";
  EXPECT_THROW(d::check_listing({unsafe}, "org/m"), HubError);
  unsafe.path = "ok";
  unsafe.sha256 = "xyz";
  EXPECT_THROW(d::check_listing({unsafe}, "org/m"), HubError);
}
