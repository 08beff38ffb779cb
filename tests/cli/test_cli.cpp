// The `qins` binary: commands work on a fixture model; bad input gives one clear error line
// naming the file and the problem, a non-zero exit status, and no crash.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "fixture_dir.h"

namespace qins {
namespace {

namespace fs = std::filesystem;

struct Result {
  int status = -1;  // exit code; -1 if killed by a signal
  std::string out;  // stdout
  std::string err;  // stderr
};

// env: "NAME=value " assignments for the command (shell syntax), or empty.
Result run(const std::string& args, const std::string& env = "") {
  const auto err_file = test::temp_root() / "stderr.txt";
  const std::string cmd = env + std::string(QINS_CLI_PATH) + " " + args + " 2>" + err_file.string() + " </dev/null";
  Result r;
  FILE* p = popen(cmd.c_str(), "r");
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  const int st = pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  std::ifstream e(err_file);
  std::stringstream ss;
  ss << e.rdbuf();
  r.err = ss.str();
  return r;
}

std::string copy_fixture(const std::string& name) {
  const auto src = test::fixture("cli", FixtureOptions{});
  const auto dst = test::temp_root() / name;
  fs::remove_all(dst);
  fs::copy(src, dst, fs::copy_options::recursive);
  return dst.string();
}

void write(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
}

std::string read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void expect_clean_error(const Result& r, const std::vector<std::string>& needles) {
  EXPECT_EQ(r.status, 1) << r.err;  // an ordinary failure, not a signal
  EXPECT_EQ(r.err.rfind("qins: error: ", 0), 0u) << r.err;
  for (const auto& n : needles) EXPECT_NE(r.err.find(n), std::string::npos) << "missing '" << n << "' in: " << r.err;
}

TEST(Cli, GenerateStreamsAndPrintsIds) {
  const auto dir = test::fixture("cli", FixtureOptions{});
  auto r = run("generate " + dir + " --prompt Hello --temperature 0 --max-tokens 5 --ids");
  ASSERT_EQ(r.status, 0) << r.err;
  // Last line: the generated ids, space-separated.
  std::string out = r.out;
  while (!out.empty() && out.back() == '\n') out.pop_back();
  const std::string last = out.substr(out.rfind('\n') + 1);
  std::istringstream ids(last);
  int id, count = 0;
  while (ids >> id) ++count;
  EXPECT_GE(count, 0);
  EXPECT_LE(count, 5);
  // Greedy is deterministic across processes.
  EXPECT_EQ(run("generate " + dir + " --prompt Hello --temperature 0 --max-tokens 5 --ids").out, r.out);
}

TEST(Cli, RawEmptyPromptGeneratesFromBos) {
  const auto dir = test::fixture("cli", FixtureOptions{});
  auto r = run("generate " + dir + " --raw --prompt '' --temperature 0 --max-tokens 3 --ids --stats");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.err.find("1 prompt tokens"), std::string::npos) << r.err;
}

TEST(Cli, TokenizeChatRendersTheTemplate) {
  const auto dir = test::fixture("cli", FixtureOptions{});
  auto r = run("tokenize " + dir + " --chat --text 'Hello<|end|>'");
  ASSERT_EQ(r.status, 0) << r.err;
  std::istringstream first(r.out.substr(0, r.out.find('\n')));
  std::vector<int> ids;
  int id;
  while (first >> id) ids.push_back(id);
  // base vocab 320: <|user|> = 330, <|end|> = 327, <|assistant|> = 321.
  ASSERT_GE(ids.size(), 4u);
  EXPECT_EQ(ids.front(), 330);
  EXPECT_EQ(ids[ids.size() - 2], 327);
  EXPECT_EQ(ids.back(), 321);
  // The user's "<|end|>" is plain text: exactly one 327 in the whole prompt.
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 327), 1);
  // --special recognises it in plain text.
  auto s = run("tokenize " + dir + " --special --text 'Hi<|end|>'");
  EXPECT_NE(s.out.find("327\t<|end|>"), std::string::npos) << s.out;
}

TEST(Cli, InspectJsonParses) {
  const auto dir = test::fixture("cli", FixtureOptions{});
  auto r = run("inspect " + dir + " --json");
  ASSERT_EQ(r.status, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_GT(j["parameters"].get<int64_t>(), 0);
  EXPECT_EQ(j["tensors"].size(), 2u * 6 + 3);
}

TEST(Cli, ChatAnswersAndExits) {
  const auto dir = test::fixture("cli", FixtureOptions{});
  const auto in = (test::temp_root() / "chat_in.txt").string();
  write(in, "Hello\n/system Be brief.\nWhat is a river?\n/reset\n/exit\n");
  const std::string cmd = std::string(QINS_CLI_PATH) + " chat " + dir + " --temperature 0 --max-tokens 4 < " + in + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  EXPECT_EQ(pclose(p), 0) << out;
  EXPECT_NE(out.find("system prompt set"), std::string::npos) << out;
  EXPECT_NE(out.find("conversation cleared"), std::string::npos) << out;
}

// Issue 16 item 9: `qins convert` killed while writing leaves no `<target>.tmp-XXXXXX`: SIGTERM
// and SIGINT remove it at once; after SIGKILL the next write to the same target removes it.
std::vector<std::string> temp_files_of(const fs::path& target) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(target.parent_path()))
    if (e.path().filename().string().rfind(target.filename().string() + ".tmp-", 0) == 0) out.push_back(e.path());
  return out;
}

void kill_convert_with(int sig) {
  FixtureOptions o;  // large enough that converting takes a while on one thread
  o.hidden_size = 256;
  o.intermediate_size = 1024;
  o.num_layers = 8;
  const std::string dir = test::fixture("cli_big", o);
  const fs::path target = test::temp_root() / ("killed_" + std::to_string(sig) + ".qins");
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    const int devnull = ::open("/dev/null", O_WRONLY);
    ::dup2(devnull, 1);
    ::dup2(devnull, 2);
    ::execl(QINS_CLI_PATH, QINS_CLI_PATH, "convert", dir.c_str(), "-o", target.c_str(), "--threads", "1", "-q",
            static_cast<char*>(nullptr));
    ::_exit(127);
  }
  // Wait for the temporary file to appear, then kill the writer.
  bool seen = false;
  for (int i = 0; i < 20000 && !seen; ++i) {
    seen = !temp_files_of(target).empty();
    if (!seen) ::usleep(500);
  }
  ::kill(pid, sig);
  int st = 0;
  ::waitpid(pid, &st, 0);
  ASSERT_TRUE(seen) << "convert finished before a temporary file was seen";
  ASSERT_TRUE(WIFSIGNALED(st) || WEXITSTATUS(st) != 0) << "convert finished before the signal";
  EXPECT_FALSE(fs::exists(target));
  if (sig == SIGKILL) {
    EXPECT_EQ(temp_files_of(target).size(), 1u);  // nothing can run on SIGKILL
    const Result r = run("convert " + dir + " -o " + target.string() + " -q");
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_TRUE(fs::exists(target));
  }
  EXPECT_TRUE(temp_files_of(target).empty()) << temp_files_of(target).front();
}

TEST(CliConvert, SigtermLeavesNoTemporaryFile) { kill_convert_with(SIGTERM); }
TEST(CliConvert, SigintLeavesNoTemporaryFile) { kill_convert_with(SIGINT); }
TEST(CliConvert, SigkillLeftoverIsRemovedByTheNextConvert) { kill_convert_with(SIGKILL); }

// `qins convert --codebook qins4`: a 4-bit file that inspect labels and generate runs; a group other
// than 16, 32 or 64 is refused by the option parser.
TEST(CliConvert, Qins4FileConvertsInspectsAndGenerates) {
  const auto dir = test::fixture("cli", FixtureOptions{});
  const auto out = (test::temp_root() / "cli4.qins").string();
  Result r = run("convert " + dir + " -o " + out + " --codebook qins4 --group 64 -q");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("qins4"), std::string::npos) << r.out;
  r = run("inspect " + out);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("qins4-g64"), std::string::npos) << r.out;
  r = run("generate " + out + " --prompt Hello --temperature 0 --max-tokens 5 --ids");
  ASSERT_EQ(r.status, 0) << r.err;
  // The short prompt took the row path; with it off (GEMM prefill) the command still runs, and a
  // malformed limit is a clean error naming the variable.
  EXPECT_EQ(run("generate " + out + " --prompt Hello --temperature 0 --max-tokens 5 --ids", "QINS_ROWS_PREFILL_MAX=0 ").status, 0);
  expect_clean_error(run("generate " + out + " --prompt Hello --max-tokens 2", "QINS_ROWS_PREFILL_MAX=lots "),
                     {"QINS_ROWS_PREFILL_MAX=lots", "whole number"});
  r = run("convert " + dir + " -o " + out + " --codebook qins4 --group 48 -q");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("--group"), std::string::npos) << r.err;
  r = run("convert --help");
  EXPECT_NE(r.out.find("lm_head stay 8-bit"), std::string::npos) << r.out;
}

TEST(CliErrors, MissingModel) {
  expect_clean_error(run("generate /no/such/model --prompt hi"), {"/no/such/model", "no such file"});
}

TEST(CliErrors, MissingConfig) {
  const auto dir = copy_fixture("no_config");
  fs::remove(dir + "/config.json");
  expect_clean_error(run("generate " + dir + " --prompt hi"), {"config.json", "missing"});
}

TEST(CliErrors, BadJsonConfig) {
  const auto dir = copy_fixture("bad_json");
  write(dir + "/config.json", "{\"hidden_size\": 64,, }");
  expect_clean_error(run("generate " + dir + " --prompt hi"), {"config.json"});
}

TEST(CliErrors, WrongShape) {
  const auto dir = copy_fixture("wrong_shape");
  auto cfg = nlohmann::json::parse(read(dir + "/config.json"));
  cfg["intermediate_size"] = 96;
  write(dir + "/config.json", cfg.dump());
  expect_clean_error(run("generate " + dir + " --prompt hi"), {"model.safetensors", "gate_up_proj", "shape"});
}

TEST(CliErrors, TruncatedSafetensors) {
  const auto dir = copy_fixture("truncated");
  const std::string bytes = read(dir + "/model.safetensors");
  write(dir + "/model.safetensors", bytes.substr(0, bytes.size() - 100));
  expect_clean_error(run("generate " + dir + " --prompt hi"), {"model.safetensors"});
}

TEST(CliErrors, CorruptSafetensorsHeader) {
  const auto dir = copy_fixture("corrupt");
  std::string bytes = read(dir + "/model.safetensors");
  for (size_t i = 8; i < 40 && i < bytes.size(); ++i) bytes[i] = '\x01';
  write(dir + "/model.safetensors", bytes);
  expect_clean_error(run("generate " + dir + " --prompt hi"), {"model.safetensors"});
}

TEST(CliErrors, UnknownDtype) {
  const auto dir = copy_fixture("dtype");
  std::string bytes = read(dir + "/model.safetensors");
  const auto pos = bytes.find("\"F32\"");
  ASSERT_NE(pos, std::string::npos);
  bytes.replace(pos, 5, "\"I32\"");  // same size, an unsupported dtype
  write(dir + "/model.safetensors", bytes);
  expect_clean_error(run("generate " + dir + " --prompt hi"), {"model.safetensors", "I32"});
}

TEST(CliErrors, BadTokenizerConfig) {
  const auto dir = copy_fixture("bad_tok");
  write(dir + "/tokenizer_config.json", "not json");
  expect_clean_error(run("generate " + dir + " --prompt hi"), {"tokenizer_config.json"});
}

// `qins bench --first-reply`: fresh child processes of qins itself; the figures are consistent
// with each other (no timing thresholds: the machine is shared).
TEST(CliBench, FirstReplyRunsFreshProcessesAndReportsEveryReply) {
  const auto dir = test::fixture("cli", FixtureOptions{});
  const auto json_path = (test::temp_root() / "first_reply.json").string();
  auto r = run("bench " + dir + " --first-reply 2 --prompt-tokens 12 --gen-tokens 3 --threads 1 --context 64 --json --json-out " +
               json_path);
  ASSERT_EQ(r.status, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j, nlohmann::json::parse(read(json_path)));
  ASSERT_EQ(j["runs"].size(), 2u);
  for (const auto& run : j["runs"]) {
    const double launch_to_first = run["launch_to_first_token_s"].get<double>();
    const double to_start = run["launch_to_start_s"].get<double>();
    const double load = run["load_s"].get<double>();
    EXPECT_GT(to_start, 0.0);
    // The first token comes after the child started, loaded and prefilled.
    EXPECT_GE(launch_to_first, to_start + load + run["first"]["ttft_s"].get<double>() * 0.999) << run.dump();
    EXPECT_FALSE(run["cold"].get<bool>());
    for (const char* k : {"first", "second", "steady"}) {
      const auto& rep = run[k];
      EXPECT_GT(rep["prompt_tokens"].get<int>(), 1) << k;
      EXPECT_LE(rep["prompt_tokens"].get<int>(), 12 + 1) << k;  // sized to --prompt-tokens
      EXPECT_GE(rep["generated_tokens"].get<int>(), 1) << k;
      EXPECT_LE(rep["generated_tokens"].get<int>(), 3) << k;
      EXPECT_GT(rep["prefill_tps"].get<double>(), 0.0) << k;
    }
    EXPECT_TRUE(run["steady"]["background_done"].get<bool>());  // it waited for the move
  }
  // The table names what it measured.
  auto t = run("bench " + dir + " --first-reply 1 --prompt-tokens 8 --gen-tokens 2 --threads 1 --context 64");
  ASSERT_EQ(t.status, 0) << t.err;
  EXPECT_NE(t.out.find("launch -> first token"), std::string::npos) << t.out;
  EXPECT_NE(t.out.find("steady decode"), std::string::npos) << t.out;
}

TEST(CliBench, FirstReplyErrorsAreClean) {
  const auto dir = test::fixture("cli", FixtureOptions{});
  expect_clean_error(run("bench " + dir + " --cold"), {"--cold needs --first-reply"});
  expect_clean_error(run("bench /nonexistent.qins --first-reply 1"), {"/nonexistent.qins"});
}

}  // namespace
}  // namespace qins
