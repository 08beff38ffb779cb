// qins pull: download a model from the Hugging Face Hub (resumable, verified) into the Hugging Face
// cache, then convert it to .qins (into the app's models folder, or -o).
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <memory>

#include "code_options.h"
#include "commands.h"
#include "progress_bar.h"
#include "qins/io/converter.h"
#include "qins/io/hub.h"

namespace fs = std::filesystem;

namespace qins::cli {

namespace {

std::string fmt_duration(double s) {
  char buf[32];
  if (s < 0) return "--";
  if (s < 60) std::snprintf(buf, sizeof buf, "%.0f s", s);
  else if (s < 3600) std::snprintf(buf, sizeof buf, "%dm%02ds", static_cast<int>(s) / 60, static_cast<int>(s) % 60);
  else std::snprintf(buf, sizeof buf, "%dh%02dm", static_cast<int>(s) / 3600, (static_cast<int>(s) % 3600) / 60);
  return buf;
}

// One status line on a terminal: total bytes, rate, ETA, the current file. Elsewhere (logs, tests)
// only the stage changes worth keeping are printed, one per line.
class DownloadBar {
 public:
  explicit DownloadBar(bool enabled) : tty_(enabled && isatty(STDERR_FILENO)), quiet_(!enabled) {}
  void update(const hub::PullProgress& p) {
    if (p.stage != stage_) {
      stage_ = p.stage;
      const bool worth_a_line = stage_.rfind("retrying", 0) == 0 || stage_.rfind("resuming", 0) == 0 ||
                                stage_.rfind("waiting", 0) == 0 || stage_.rfind("the file changed", 0) == 0;
      if (!tty_ && !quiet_ && worth_a_line)
        std::fprintf(stderr, "qins pull: %s\n", stage_.c_str());
    }
    if (!tty_) return;
    const double f = p.total ? static_cast<double>(p.done) / static_cast<double>(p.total) : 0.0;
    const int width = 24, filled = static_cast<int>(f * width + 0.5);
    std::string bar(static_cast<size_t>(filled), '#');
    bar.resize(width, '.');
    std::fprintf(stderr, "\r[%s] %5.1f%% %s / %s  %s/s  ETA %s  %d/%d %-32.32s", bar.c_str(), 100.0 * f,
                 hub::format_bytes(p.done).c_str(), hub::format_bytes(p.total).c_str(),
                 hub::format_bytes(static_cast<uint64_t>(p.bytes_per_second)).c_str(),
                 fmt_duration(p.eta_seconds).c_str(), p.file_index, p.file_count,
                 p.stage.rfind("downloading", 0) == 0 ? p.file.c_str() : p.stage.c_str());
    std::fflush(stderr);
    shown_ = true;
  }
  void finish() {
    if (tty_ && shown_) std::fprintf(stderr, "\n");
    shown_ = false;
  }

 private:
  bool tty_, quiet_, shown_ = false;
  std::string stage_;
};

struct PullOpts {
  std::string ref, out, codebook = "projective", cache_dir, table = "lloyd";
  int group = 16;
  CLI::Option* pole_opt = nullptr;
  double pole = 300.0, stall_timeout = 30.0;
  int retries = 5, threads = 0;
  bool no_convert = false, quiet = false;
};

void add_pull_options(CLI::App& app, PullOpts& o) {
  app.add_option("repo", o.ref, "Hugging Face model id, optionally with a revision: ORG/NAME[@REVISION]")->required();
  app.add_flag("--no-convert", o.no_convert, "Only download (into the Hugging Face cache); print the folder");
  app.add_option("-o,--output", o.out,
                 "Output .qins file (default: the app's models folder, " + hub::app_models_dir() + ")");
  app.add_option("--codebook", o.codebook, codebook_help())
      ->capture_default_str()
      ->check(CLI::IsMember({"inverse", "projective", "uniform", "qins4"}));
  add_qins4_options(app, o.group, o.table);
  o.pole_opt = app.add_option("--pole", o.pole, "projective: the pole C of s*j/(C-j); 0 = fit per tensor")->capture_default_str();
  app.add_option("--threads", o.threads, "Conversion threads (0 = all cores)")->capture_default_str();
  app.add_option("--cache-dir", o.cache_dir, "Hugging Face cache (default: $HF_HUB_CACHE, $HF_HOME/hub, ~/.cache/huggingface/hub)");
  app.add_option("--stall-timeout", o.stall_timeout, "Seconds without data before an attempt is retried")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--retries", o.retries, "Failed attempts in a row before giving up (the pull can be resumed)")
      ->capture_default_str()
      ->check(CLI::Range(0, 100));
  app.add_flag("-q,--quiet", o.quiet, "No progress output");
}

// The download, with the progress bar; prints what it pulled.
hub::PullResult download(const PullOpts& o, hub::HubClient& client, const std::string& repo,
                         const std::string& revision) {
  DownloadBar bar(!o.quiet);
  hub::PullResult r;
  try {
    r = client.pull(repo, revision, [&](const hub::PullProgress& p) {
      bar.update(p);
      return true;
    });
  } catch (...) {
    bar.finish();
    throw;
  }
  bar.finish();
  std::printf("%s@%s: %zu files, %s downloaded, %s already in the cache, verified\n  %s\n", repo.c_str(),
              r.info.commit.c_str(), r.files.size(), hub::format_bytes(r.downloaded_bytes).c_str(),
              hub::format_bytes(r.reused_bytes).c_str(), r.snapshot_dir.c_str());
  std::fflush(stdout);
  return r;
}

// -o, else <app models folder>/<NAME>-<codebook>.qins (the folder created).
std::string output_path(const PullOpts& o, const std::string& repo) {
  std::string out = o.out;
  if (out.empty()) {
    const std::string dir = hub::app_models_dir();
    fs::create_directories(dir);
    out = dir + "/" + repo.substr(repo.find('/') + 1) + "-" + o.codebook + ".qins";
  }
  return out;
}

void convert(const PullOpts& o, const hub::HubClient& client, const std::string& repo, const std::string& revision,
             const hub::PullResult& r) {
  if (!fs::exists(r.snapshot_dir + "/tokenizer.model"))
    throw Error(repo + " has no tokenizer.model (SentencePiece), which qins needs to convert it; the downloaded "
                       "files are in " + r.snapshot_dir);
  const std::string out = output_path(o, repo);
  ConvertOptions co;
  co.qins4 = apply_code_choice(o.codebook, o.pole, o.pole_opt && o.pole_opt->count() > 0, o.group, o.table, co.quant, co.quant4);
  co.quant.threads = o.threads;
  co.source_name = repo.substr(repo.find('/') + 1);
  co.origin_json = hub::origin_json(client.endpoint(), repo, revision, r);
  ProgressBar cbar("converting", !o.quiet);
  const ConvertReport cr = convert_to_qins(r.snapshot_dir, out, co, [&](double f, const std::string& name) {
    cbar.update(f, name);
    return true;
  });
  cbar.finish();
  std::printf("wrote %s: %lld parameters, %.1f MB (%s codebook), %.1f s\n", out.c_str(),
              static_cast<long long>(cr.params), cr.output_bytes / 1e6, o.codebook.c_str(), cr.seconds);
}

}  // namespace

Runner add_pull(CLI::App& app) {
  auto o = std::make_shared<PullOpts>();
  add_pull_options(app, *o);
  return [o]() {
    // Past a file size limit (ulimit -f), a write fails with EFBIG (a clear error, the partial
    // file kept) instead of the signal killing the process.
    std::signal(SIGXFSZ, SIG_IGN);
    const auto [repo, revision] = hub::parse_repo_ref(o->ref);
    hub::HubOptions ho;
    ho.cache_dir = o->cache_dir;
    ho.stall_timeout_s = o->stall_timeout;
    ho.max_retries = o->retries;
    hub::HubClient client(ho);
    const hub::PullResult r = download(*o, client, repo, revision);
    if (o->no_convert) return 0;
    convert(*o, client, repo, revision, r);
    return 0;
  };
}

}  // namespace qins::cli
