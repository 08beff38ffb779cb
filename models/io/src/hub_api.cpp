// The Hub client's API calls: resolving a revision to a commit and listing a repo's files (the
// revision answer, else the paginated tree listing), API GETs with retries, and the mapping of
// failed answers to HubError kinds with messages that say what to do.
#include <nlohmann/json.hpp>

#include <regex>

#include "hub_internal.h"

namespace qins::hub::detail {

HubError Puller::http_error(const Response& r, const std::string& repo, const std::string& what, bool file) const {
  const std::string code = r.header("x-error-code");
  const std::string detail = describe_failure(r, opt_.stall_timeout_s);
  const std::string page = endpoint_ + "/" + repo;
  if ((r.status == 401 || r.status == 403) && code == "GatedRepo")
    return HubError(HubErrorKind::GatedRepo,
                    repo + " is a gated repository (" + what + ": " + detail + "). Accept its conditions at " + page +
                        " while logged in, create a read token at https://huggingface.co/settings/tokens, then set "
                        "HF_TOKEN=hf_... or write the token to $HF_HOME/token (~/.cache/huggingface/token). " +
                        (has_token_ ? "The token that was sent was refused." : "No token was sent."));
  if (code == "RepoNotFound" || (!file && (r.status == 401 || r.status == 404) && code.empty()))
    return HubError(HubErrorKind::RepoNotFound,
                    "repository " + repo + " was not found on " + endpoint_ + " (" + detail +
                        "); check the id, or if it is private set HF_TOKEN to a token that can read it" +
                        (has_token_ ? "" : " (no token was sent)"));
  if (code == "RevisionNotFound")
    return HubError(HubErrorKind::RevisionNotFound, repo + ": " + what + " was not found (" + detail + ")");
  if (r.status == 404)
    return HubError(HubErrorKind::EntryNotFound, repo + ": " + what + " was not found (" + detail + ")");
  if (r.status == 401 || r.status == 403)
    return HubError(HubErrorKind::Unauthorized,
                    repo + ": " + what + ": access refused (" + detail + "); " +
                        (has_token_ ? "check that HF_TOKEN is valid and can read this repository"
                                    : "set HF_TOKEN to a token that can read this repository"));
  if (r.status == 429)
    return HubError(HubErrorKind::RateLimited, repo + ": " + what + ": the Hub keeps answering 429 (rate limited) after " +
                                                   std::to_string(opt_.max_retries) +
                                                   " retries; wait and run the same pull again to resume");
  if (r.status >= 500)
    return HubError(HubErrorKind::Server, repo + ": " + what + ": the Hub answered " + detail + " after " +
                                              std::to_string(opt_.max_retries) +
                                              " retries; run the same pull again later to resume");
  return HubError(HubErrorKind::Protocol, repo + ": " + what + ": unexpected answer " + detail);
}

Response Puller::api_get(const std::string& url0, const std::string& repo, const std::string& what) {
  std::string url = url0;
  int failures = 0, hops = 0;
  for (;;) {
    check_cancel();
    Response r = http_.request(url, false, "", {}, cancel_, &tick_);
    if (r.cancelled) throw Cancelled();
    if (r.code == CURLE_OK && r.status >= 300 && r.status < 400 && !r.redirect_url.empty()) {
      if (++hops > 5) throw HubError(HubErrorKind::Protocol, repo + ": " + what + ": too many redirects");
      url = r.redirect_url;
      continue;
    }
    if (r.code == CURLE_OK && r.status >= 200 && r.status < 300) return r;
    const bool transient = r.code != CURLE_OK || transient_status(r.status);
    if (!transient) throw http_error(r, repo, what, false);
    if (++failures > opt_.max_retries) {
      if (r.code != CURLE_OK)
        throw HubError(r.stalled ? HubErrorKind::Stalled : HubErrorKind::Network,
                       repo + ": " + what + ": " + describe_failure(r, opt_.stall_timeout_s) + " (after " +
                           std::to_string(opt_.max_retries) + " retries, endpoint " + endpoint_ +
                           "); check the network or proxy settings and run the same pull again");
      throw http_error(r, repo, what, false);
    }
    const double wait = r.status == 429 ? retry_after_s(r, backoff(failures), opt_.retry_after_max_s) : backoff(failures);
    set_stage(retry_stage(wait) + what + ": " +
              describe_failure(r, opt_.stall_timeout_s));
    sleep_cancellable(wait, cancel_, tick_);
  }
}

// The tree listing at `commit`, page by page (the Link header names the next page).
std::vector<RepoFile> Puller::list_tree(const std::string& base, const std::string& repo, const std::string& commit) {
  std::vector<RepoFile> files;
  std::string url = base + "/tree/" + commit + "?recursive=true";
  for (int page = 0; !url.empty(); ++page) {
    if (page > 10000) throw HubError(HubErrorKind::Protocol, repo + ": the file listing does not end");
    const Response r = api_get(url, repo, "file listing");
    for (auto& f : parse_tree_page(r.body, repo)) files.push_back(std::move(f));
    // Link: <https://...>; rel="next"
    url.clear();
    static const std::regex next_re(R"re(<([^>]+)>\s*;\s*rel="?next"?)re");
    std::smatch m;
    const std::string link = r.header("link");
    if (std::regex_search(link, m, next_re)) url = m[1];
  }
  return files;
}

RepoInfo Puller::resolve(const std::string& repo, const std::string& revision) {
  RepoInfo info;
  info.repo = repo;
  info.revision = revision;
  set_stage("listing");
  const std::string base = endpoint_ + "/api/models/" + repo;
  RevisionAnswer rev =
      parse_revision(api_get(base + "/revision/" + escape(revision) + "?blobs=true", repo, "revision " + revision).body,
                     repo, revision);
  info.commit = rev.commit;
  // No sizes in the revision answer: the tree listing has them.
  info.files = rev.complete ? std::move(rev.files) : list_tree(base, repo, info.commit);
  check_listing(info.files, repo);
  return info;
}

}  // namespace qins::hub::detail

namespace qins::hub {

std::string origin_json(const std::string& endpoint, const std::string& repo, const std::string& revision,
                        const PullResult& r) {
  nlohmann::json files = nlohmann::json::array();
  for (const auto& f : r.files) {
    nlohmann::json jf = {{"path", f.path}, {"size", f.size}};
    if (f.lfs()) jf["sha256"] = f.sha256;
    if (!f.blob_id.empty()) jf["git_blob"] = f.blob_id;
    files.push_back(jf);
  }
  return nlohmann::json(
             {{"hub", endpoint}, {"repo", repo}, {"revision", revision}, {"commit", r.info.commit}, {"files", files}})
      .dump();
}

}  // namespace qins::hub
