// A fake Hugging Face Hub on loopback for the Hub client's tests (cpp-httplib): the API routes
// (revision with ?blobs=true, a paginated tree), HEAD/GET resolve with the real headers, a 302 for
// LFS files to a second port acting as the CDN (which refuses any request carrying Authorization),
// Range/206/416, and one switch per fault. Nothing here touches the real network.
#pragma once

#include <httplib.h>
#include <openssl/evp.h>

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

namespace qins_test {

inline std::string digest_hex(const EVP_MD* md, const std::string& data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(data.data(), data.size(), out, &n, md, nullptr);
  static const char* d = "0123456789abcdef";
  std::string s;
  for (unsigned i = 0; i < n; ++i) {
    s += d[out[i] >> 4];
    s += d[out[i] & 15];
  }
  return s;
}
inline std::string sha256_hex(const std::string& data) { return digest_hex(EVP_sha256(), data); }
inline std::string git_blob_id(const std::string& data) {
  return digest_hex(EVP_sha1(), "blob " + std::to_string(data.size()) + std::string(1, '\0') + data);
}

struct FakeFile {
  std::string path, content;
  bool lfs = false;
};

class FakeHub {
 public:
  struct Logged {
    std::string server, method, path, range;
    bool auth = false;
    int status = 0;
  };

  // Faults: each counter is how many of the next matching requests get the fault. Data faults
  // apply to GETs of `fault_file`'s bytes (on the CDN for LFS files); status faults to its resolve
  // requests (HEAD and GET on the Hub).
  std::string fault_file;
  std::atomic<int> drop{0};          // send half the bytes, then close the connection
  std::atomic<int> stall{0};         // send half the bytes, then send nothing (until released)
  std::atomic<bool> release_stall{false};
  std::atomic<int> ignore_range{0};  // answer a Range request with 200 and the whole file
  std::atomic<int> corrupt{0};       // flip one byte
  std::atomic<int> status_fault{0};  // answer status_code with the headers below
  int status_code = 503;
  std::string error_code, retry_after;
  std::atomic<bool> gated{false};    // resolve answers 401 GatedRepo unless the token is right
  std::atomic<int> etag_version{0};  // appended to small files' ETags: bump it to "change" the file
  std::atomic<bool> etag_change_on_drop{false};  // a dropped transfer also changes the ETag
  std::atomic<bool> tree_only{false};  // the revision answer has no sizes: the client must page the tree
  std::string token = "hf_test_token";

  FakeHub(std::string repo, std::vector<FakeFile> files, std::string commit = std::string(40, 'c'))
      : repo_(std::move(repo)), commit_(std::move(commit)), files_(std::move(files)) {
    for (auto& f : files_) {
      sha256_[f.path] = sha256_hex(f.content);
      blob_[f.path] = git_blob_id(f.content);
    }
    setup_hub();
    setup_cdn();
    hub_port_ = hub_.bind_to_any_port("127.0.0.1");
    cdn_port_ = cdn_.bind_to_any_port("127.0.0.1");
    hub_thread_ = std::thread([this] { hub_.listen_after_bind(); });
    cdn_thread_ = std::thread([this] { cdn_.listen_after_bind(); });
    while (!hub_.is_running() || !cdn_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~FakeHub() {
    stopping_ = true;
    hub_.stop();
    cdn_.stop();
    hub_thread_.join();
    cdn_thread_.join();
  }

  std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(hub_port_); }
  const std::string& commit() const { return commit_; }
  const std::vector<FakeFile>& files() const { return files_; }
  const FakeFile& file(const std::string& path) const {
    for (auto& f : files_)
      if (f.path == path) return f;
    throw std::runtime_error("no fake file " + path);
  }
  std::string sha256(const std::string& path) const { return sha256_.at(path); }
  std::string blob_id(const std::string& path) const { return blob_.at(path); }

  std::vector<Logged> log() const {
    std::lock_guard<std::mutex> l(mu_);
    return log_;
  }
  // Data GETs of a file (Hub or CDN), in order.
  std::vector<Logged> data_gets(const std::string& path) const {
    std::vector<Logged> out;
    const std::string key = file(path).lfs ? "/cdn/" + sha256(path) : "/resolve/" + commit_ + "/" + path;
    for (const auto& e : log())
      if (e.method == "GET" && e.path.find(key) != std::string::npos) out.push_back(e);
    return out;
  }
  int cdn_auth_refusals() const { return cdn_auth_refusals_; }

 private:
  static bool take(std::atomic<int>& n) {
    int v = n.load();
    while (v > 0)
      if (n.compare_exchange_weak(v, v - 1)) return true;
    return false;
  }
  void record(const std::string& server, const httplib::Request& req, int status) {
    std::lock_guard<std::mutex> l(mu_);
    log_.push_back({server, req.method, req.path, req.get_header_value("Range"), req.has_header("Authorization"), status});
  }
  bool is_fault_file(const FakeFile& f) const { return f.path == fault_file; }

  // Serves f's bytes honouring Range (parsed here: httplib's own range handling is switched off
  // by clearing req.ranges so the faults can answer exactly what a misbehaving server would).
  void serve_bytes(const std::string& server, const httplib::Request& req, httplib::Response& res, const FakeFile& f) {
    const_cast<httplib::Request&>(req).ranges.clear();
    const bool faulty = req.method == "GET" && is_fault_file(f);
    std::string body = f.content;
    if (faulty && take(corrupt) && !body.empty()) body[body.size() / 2] ^= 0x5A;
    size_t start = 0;
    const std::string range = req.get_header_value("Range");
    const bool honour = !range.empty() && !(faulty && take(ignore_range));
    if (honour) {
      start = std::stoull(range.substr(range.find('=') + 1));
      if (start >= body.size()) {
        res.status = 416;
        res.set_header("Content-Range", "bytes */" + std::to_string(body.size()));
        record(server, req, 416);
        return;
      }
      res.status = 206;
      res.set_header("Content-Range", "bytes " + std::to_string(start) + "-" + std::to_string(body.size() - 1) + "/" +
                                          std::to_string(body.size()));
    } else {
      res.status = 200;
    }
    res.set_header("Accept-Ranges", "bytes");
    const bool drop_now = faulty && take(drop);
    if (drop_now && etag_change_on_drop) ++etag_version;
    const bool stall_now = !drop_now && faulty && take(stall);
    const size_t half = body.size() / 2;
    record(server, req, res.status);
    auto data = std::make_shared<std::string>(body.substr(start));
    res.set_content_provider(data->size(), "application/octet-stream",
                             [this, data, start, half, drop_now, stall_now](size_t offset, size_t length,
                                                                           httplib::DataSink& sink) {
                               size_t end = offset + length;
                               // the fault strikes at the middle of the file (at once when resumed past it)
                               if (drop_now || stall_now) end = std::min(end, start < half ? half - start : 0);
                               for (size_t p = offset; p < end;) {
                                 const size_t n = std::min<size_t>(16384, end - p);
                                 if (!sink.write(data->data() + p, n)) return false;
                                 p += n;
                               }
                               if (drop_now) return false;  // close the connection mid-file
                               if (stall_now) {
                                 for (int i = 0; i < 3000 && !stopping_ && !release_stall; ++i)
                                   std::this_thread::sleep_for(std::chrono::milliseconds(10));
                                 return false;
                               }
                               return true;
                             });
  }

  void setup_hub() {
    hub_.Get(R"(/api/models/([^/]+/[^/]+)/revision/([^/?]+))", [this](const httplib::Request& req, httplib::Response& res) {
      if (req.matches[1] != repo_) return not_found_repo(req, res);
      const std::string rev = req.matches[2];
      if (rev != "main" && rev != commit_) {
        res.status = 404;
        res.set_header("X-Error-Code", "RevisionNotFound");
        res.set_header("X-Error-Message", "Invalid rev id: " + rev);
        return record("hub", req, 404);
      }
      nlohmann::json siblings = nlohmann::json::array();
      for (auto& f : files_) {
        nlohmann::json s = {{"rfilename", f.path}};
        if (req.has_param("blobs") && !tree_only) {
          s["size"] = f.content.size();
          s["blobId"] = blob_[f.path];
          if (f.lfs) s["lfs"] = {{"sha256", sha256_[f.path]}, {"size", f.content.size()}, {"pointerSize", 134}};
        }
        siblings.push_back(s);
      }
      res.set_content(nlohmann::json({{"id", repo_}, {"sha", commit_}, {"siblings", siblings}}).dump(), "application/json");
      record("hub", req, 200);
    });
    hub_.Get(R"(/api/models/([^/]+/[^/]+)/tree/([^/?]+))", [this](const httplib::Request& req, httplib::Response& res) {
      if (req.matches[1] != repo_) return not_found_repo(req, res);
      const size_t page = 2, cursor = req.has_param("cursor") ? std::stoul(req.get_param_value("cursor")) : 0;
      nlohmann::json out = nlohmann::json::array();
      for (size_t i = cursor; i < files_.size() && i < cursor + page; ++i) {
        const auto& f = files_[i];
        nlohmann::json e = {{"type", "file"}, {"path", f.path}, {"size", f.content.size()}, {"oid", blob_[f.path]}};
        if (f.lfs) e["lfs"] = {{"oid", sha256_[f.path]}, {"size", f.content.size()}, {"pointerSize", 134}};
        out.push_back(e);
      }
      if (cursor + page < files_.size())
        res.set_header("Link", "<" + endpoint() + "/api/models/" + repo_ + "/tree/" + std::string(req.matches[2]) +
                                   "?recursive=true&cursor=" + std::to_string(cursor + page) + ">; rel=\"next\"");
      res.set_content(out.dump(), "application/json");
      record("hub", req, 200);
    });
    hub_.Get(R"(/([^/]+/[^/]+)/resolve/([^/]+)/(.+))", [this](const httplib::Request& req, httplib::Response& res) {
      if (req.matches[1] != repo_) return not_found_repo(req, res);
      const std::string rev = req.matches[2], path = req.matches[3];
      const FakeFile* f = nullptr;
      for (auto& x : files_)
        if (x.path == path) f = &x;
      if (rev != commit_ && rev != "main") {
        res.status = 404;
        res.set_header("X-Error-Code", "RevisionNotFound");
        return record("hub", req, 404);
      }
      if (!f) {
        res.status = 404;
        res.set_header("X-Error-Code", "EntryNotFound");
        res.set_header("X-Error-Message", "Entry not found");
        return record("hub", req, 404);
      }
      if (gated && req.get_header_value("Authorization") != "Bearer " + token) {
        res.status = 401;
        res.set_header("X-Error-Code", "GatedRepo");
        res.set_header("X-Error-Message", "Access to model " + repo_ + " is restricted.");
        return record("hub", req, 401);
      }
      if (is_fault_file(*f) && take(status_fault)) {
        res.status = status_code;
        if (!error_code.empty()) res.set_header("X-Error-Code", error_code);
        if (!retry_after.empty()) res.set_header("Retry-After", retry_after);
        res.set_content("fault", "text/plain");
        return record("hub", req, status_code);
      }
      res.set_header("X-Repo-Commit", commit_);
      if (f->lfs) {
        res.set_header("X-Linked-Etag", "\"" + sha256_[path] + "\"");
        res.set_header("X-Linked-Size", std::to_string(f->content.size()));
        res.set_header("ETag", "\"" + sha256_[path] + "\"");
        res.set_redirect("http://127.0.0.1:" + std::to_string(cdn_port_) + "/cdn/" + sha256_[path] + "?sig=x", 302);
        return record("hub", req, 302);
      }
      std::string etag = blob_[path];
      if (etag_version > 0) etag += "-v" + std::to_string(etag_version.load());
      res.set_header("ETag", "\"" + etag + "\"");
      serve_bytes("hub", req, res, *f);
    });
  }

  void setup_cdn() {
    cdn_.Get(R"(/cdn/([0-9a-f]{64}))", [this](const httplib::Request& req, httplib::Response& res) {
      if (req.has_header("Authorization")) {  // the Hub's token must never reach another host
        ++cdn_auth_refusals_;
        res.status = 400;
        res.set_content("Only one auth mechanism allowed", "text/plain");
        return record("cdn", req, 400);
      }
      for (auto& f : files_)
        if (sha256_[f.path] == std::string(req.matches[1])) return serve_bytes("cdn", req, res, f);
      res.status = 404;
      record("cdn", req, 404);
    });
  }

  void not_found_repo(const httplib::Request& req, httplib::Response& res) {
    res.status = 401;
    res.set_header("X-Error-Code", "RepoNotFound");
    res.set_header("X-Error-Message", "Repository Not Found");
    record("hub", req, 401);
  }

  std::string repo_, commit_;
  std::vector<FakeFile> files_;
  std::map<std::string, std::string> sha256_, blob_;
  httplib::Server hub_, cdn_;
  int hub_port_ = 0, cdn_port_ = 0;
  std::thread hub_thread_, cdn_thread_;
  std::atomic<bool> stopping_{false};
  std::atomic<int> cdn_auth_refusals_{0};
  mutable std::mutex mu_;
  std::vector<Logged> log_;
};

}  // namespace qins_test
