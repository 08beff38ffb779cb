// BatchScheduler (batch.h): continuous batching over `parallel` sessions. One thread runs the
// model: each turn of its loop admits waiting requests into free slots, prefills one chunk of one
// joining prompt, then runs one decode step for every decoding sequence together
// (decode_step_batch: one [B, hidden] pass through every projection) and samples each.
#include "qins/runtime/batch.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>

#include "qins/graph/phi3_model.h"
#include "qins/runtime/internal.h"
#include "qins/runtime/sampler.h"
#include "qins/tokenizer/tokenizer.h"
#include "qins/util/timing.h"
#include "session_impl.h"

namespace qins {

namespace {

constexpr size_t kMaxStopStrings = 16;
constexpr size_t kMaxStopBytes = 1024;

// What submit() and cancel() share with the scheduler thread; outlives the scheduler when a
// handle does.
struct Wake {
  std::mutex m;
  std::condition_variable cv;
};

struct Request final : BatchHandle {
  BatchRequest req;
  BatchCallbacks cb;
  std::vector<int> prompt;
  Clock::time_point t_submit;
  std::shared_ptr<Wake> wake;
  std::atomic<bool> cancel_flag{false};
  std::atomic<bool> done_flag{false};

  void cancel() override {
    cancel_flag = true;
    std::lock_guard<std::mutex> lock(wake->m);
    wake->cv.notify_all();
  }
  bool done() const override { return done_flag.load(); }
};

void check_range(bool ok, const std::string& field, const std::string& what) {
  if (!ok) throw Error("request: " + field + " " + what);
}

void validate(const BatchRequest& r) {
  const SamplingParams& p = r.params;
  check_range(std::isfinite(p.temperature) && p.temperature >= 0.0f, "temperature",
              "must be a finite number >= 0, got " + std::to_string(p.temperature));
  check_range(std::isfinite(p.top_p) && p.top_p > 0.0f && p.top_p <= 1.0f, "top_p",
              "must be in (0, 1], got " + std::to_string(p.top_p));
  check_range(p.top_k >= 0, "top_k", "must be >= 0 (0 = off), got " + std::to_string(p.top_k));
  check_range(std::isfinite(p.min_p) && p.min_p >= 0.0f && p.min_p <= 1.0f, "min_p",
              "must be in [0, 1], got " + std::to_string(p.min_p));
  check_range(std::isfinite(p.repetition_penalty) && p.repetition_penalty > 0.0f, "repetition_penalty",
              "must be a finite number > 0 (1 = off), got " + std::to_string(p.repetition_penalty));
  check_range(p.max_new_tokens >= 1, "max_new_tokens", "must be >= 1, got " + std::to_string(p.max_new_tokens));
  check_range(std::isfinite(r.frequency_penalty) && std::fabs(r.frequency_penalty) <= 2.0f, "frequency_penalty",
              "must be in [-2, 2], got " + std::to_string(r.frequency_penalty));
  check_range(std::isfinite(r.presence_penalty) && std::fabs(r.presence_penalty) <= 2.0f, "presence_penalty",
              "must be in [-2, 2], got " + std::to_string(r.presence_penalty));
  check_range(r.stop.size() <= kMaxStopStrings, "stop",
              "has " + std::to_string(r.stop.size()) + " strings, at most " + std::to_string(kMaxStopStrings) +
                  " are allowed");
  for (size_t i = 0; i < r.stop.size(); ++i) {
    const std::string field = "stop[" + std::to_string(i) + "]";
    check_range(!r.stop[i].empty(), field, "is empty");
    check_range(r.stop[i].size() <= kMaxStopBytes, field,
                "is " + std::to_string(r.stop[i].size()) + " bytes, at most " + std::to_string(kMaxStopBytes));
  }
  if (!r.raw) check_range(!r.messages.empty(), "messages", "is empty");
}

}  // namespace

struct BatchScheduler::Impl {
  // One sequence slot: a session (its KV cache and cached tokens) and the request it serves.
  struct Slot {
    std::unique_ptr<Session> session;
    Session::Impl* s = nullptr;
    std::shared_ptr<Request> req;  // null: free (the cache keeps its tokens for prefix reuse)
    bool decoding = false;         // false: prefilling the prompt
    size_t prefill_pos = 0;        // next prompt position to prefill
    bool rows_prefill = false;     // the prompt is prefilled through the row paths (rows_prefill_max)
    size_t generated_from = 0;     // where the generated tokens start in s->cached
    std::optional<Sampler> sampler;
    std::optional<tok::StreamDecoder> decoder;
    std::string held;              // text held back: it may be the start of a stop string
    int pending = -1;              // sampled, not yet run through the model
    uint64_t admitted = 0;         // admission order (prefill goes first come, first served)
    GenerationStats stats;
    Clock::time_point t_admit, t_first;
    std::vector<float> row;        // the sampler's copy of the logits [tokenizer vocab]
    std::vector<float> step_logits;
    torch::Tensor logits;
  };

  Engine& engine;
  Engine::Impl& e;
  SchedulerOptions opt;
  int threads = 1;
  std::shared_ptr<Wake> wake = std::make_shared<Wake>();
  // Under wake->m:
  std::deque<std::shared_ptr<Request>> queue;
  BatchCounters counts;
  bool draining = false;
  bool stopping = false;
  int64_t done_calls = 0;  // on_done calls returned
  uint64_t admissions = 0;
  // The scheduler thread's own:
  std::vector<Slot> slots;
  bool step_open = false;       // a decode step is running (its counters not yet added)
  bool step_full = false;       // every slot decoding in it
  int64_t step_rows = 0;
  Clock::time_point step_t0;
  std::vector<float> batch_logits;  // [parallel, vocab]
  std::vector<int64_t> batch_ids;
  std::vector<KvCache*> batch_caches;
  std::shared_ptr<DecodeScratch> batch_scratch;  // the batched step's activations
  std::thread worker;

  Impl(Engine& eng, SchedulerOptions o) : engine(eng), e(engine_internals(eng)), opt(o) {
    if (opt.parallel < 1 || opt.parallel > 64)
      throw Error("scheduler: parallel must be in [1, 64], got " + std::to_string(opt.parallel));
    if (opt.max_queue < 0) throw Error("scheduler: max_queue must be >= 0, got " + std::to_string(opt.max_queue));
    if (opt.prefill_chunk < 1)
      throw Error("scheduler: prefill_chunk must be >= 1, got " + std::to_string(opt.prefill_chunk));
    threads = at::get_num_threads();
    slots.resize(static_cast<size_t>(opt.parallel));
    for (Slot& sl : slots) {
      sl.session = engine.new_session();
      sl.s = sl.session->impl_.get();
    }
    worker = std::thread([this] { loop(); });
  }

  ~Impl() {
    {
      std::lock_guard<std::mutex> lock(wake->m);
      stopping = true;
      draining = true;
      wake->cv.notify_all();
    }
    if (worker.joinable()) worker.join();
  }

  std::shared_ptr<Request> make_request(BatchRequest r, BatchCallbacks cb) {
    validate(r);
    auto q = std::make_shared<Request>();
    if (r.raw) {
      check_input_size({ChatMessage{Role::User, r.prompt}});
      q->prompt = completion_ids(e, r.prompt, /*allow_special=*/false);
    } else {
      check_input_size(r.messages);
      q->prompt = e.tokenizer->encode_chat(to_turns(r.messages), /*add_generation_prompt=*/true);
    }
    const int64_t context = e.info.context_length;
    if (static_cast<int64_t>(q->prompt.size()) + 1 > context)
      throw PromptTooLong("the prompt is " + std::to_string(q->prompt.size()) +
                          " tokens; with the first generated token it needs " +
                          std::to_string(q->prompt.size() + 1) + " positions, the context holds " +
                          std::to_string(context));
    q->req = std::move(r);
    q->cb = std::move(cb);
    q->wake = wake;
    return q;
  }

  std::shared_ptr<BatchHandle> submit(BatchRequest r, BatchCallbacks cb) {
    auto q = make_request(std::move(r), std::move(cb));
    std::lock_guard<std::mutex> lock(wake->m);
    if (draining) throw Error("the scheduler is draining: it takes no new requests");
    const int64_t waiting = static_cast<int64_t>(queue.size());
    const int free = opt.parallel - counts.active;
    // Requests that will not get a slot at once count against max_queue.
    if (waiting - free + 1 > opt.max_queue)
      throw QueueFull("the queue is full: " + std::to_string(waiting) + " requests wait and " +
                      std::to_string(opt.parallel - free) + " run (parallel " + std::to_string(opt.parallel) +
                      ", max queue " + std::to_string(opt.max_queue) + ")");
    q->t_submit = Clock::now();
    queue.push_back(q);
    ++counts.submitted;
    counts.queued = static_cast<int>(queue.size());
    wake->cv.notify_all();
    return q;
  }

  // ---- the scheduler thread -------------------------------------------------------------------

  void loop() {
    if (at::get_num_threads() != threads) at::set_num_threads(threads);
    torch::NoGradGuard no_grad;
    for (;;) {
      std::vector<std::shared_ptr<Request>> dropped;  // cancelled while waiting
      {
        std::unique_lock<std::mutex> lock(wake->m);
        wake->cv.wait(lock, [&] { return stopping || has_work_locked(); });
        if (stopping) {
          for (auto& q : queue) dropped.push_back(q);
          queue.clear();
        } else {
          for (auto it = queue.begin(); it != queue.end();) {
            if ((*it)->cancel_flag.load()) {
              dropped.push_back(*it);
              it = queue.erase(it);
            } else {
              ++it;
            }
          }
          admit_locked();
        }
        counts.queued = static_cast<int>(queue.size());
      }
      for (auto& q : dropped) finish_unadmitted(*q);
      if (stopping_now()) {
        for (Slot& sl : slots)
          if (sl.req) finish(sl, "cancelled", "cancelled", "");
        return;
      }
      for (Slot& sl : slots)
        if (sl.req && sl.req->cancel_flag.load()) finish(sl, "cancelled", "cancelled", "");
      prefill_one_chunk();
      decode_all();
    }
  }

  bool stopping_now() {
    std::lock_guard<std::mutex> lock(wake->m);
    return stopping;
  }

  bool has_work_locked() const {
    for (const Slot& sl : slots)
      if (sl.req) return true;
    return !queue.empty();
  }

  // Waiting requests into free slots; each takes the free slot whose cache shares the longest
  // prefix with its prompt (a chat client resends the whole conversation each turn).
  void admit_locked() {
    while (!queue.empty()) {
      Slot* best = nullptr;
      size_t best_common = 0;
      const std::vector<int>& p = queue.front()->prompt;
      for (Slot& sl : slots) {
        if (sl.req) continue;
        size_t common = 0;
        const auto& c = sl.s->cached;
        while (common < c.size() && common < p.size() && c[common] == p[common]) ++common;
        if (!best || common > best_common) best = &sl, best_common = common;
      }
      if (!best) return;
      start(*best, queue.front());
      queue.pop_front();
    }
  }

  void start(Slot& sl, std::shared_ptr<Request> q) {
    sl.req = std::move(q);
    sl.admitted = ++admissions;
    sl.t_admit = Clock::now();
    sl.stats = GenerationStats{};
    sl.stats.prompt_tokens = static_cast<int>(sl.req->prompt.size());
    const size_t common = sl.s->reuse_cache(sl.req->prompt);
    sl.prefill_pos = common;
    sl.rows_prefill = static_cast<int64_t>(sl.req->prompt.size() - common) <= rows_prefill_max(e.weights);
    sl.stats.prefilled_tokens = static_cast<int>(sl.req->prompt.size() - common);
    sl.generated_from = sl.req->prompt.size();
    sl.decoding = false;
    sl.pending = -1;
    sl.held.clear();
    sl.sampler.emplace(sl.req->req.params, sl.req->req.frequency_penalty, sl.req->req.presence_penalty);
    sl.decoder.emplace(*e.tokenizer);
    ++counts.active;
  }

  void finish_unadmitted(Request& q) {
    BatchResult r;
    r.finish_reason = "cancelled";
    r.stats.prompt_tokens = static_cast<int>(q.prompt.size());
    r.stats.stop_reason = "cancelled";
    r.stats.total_s = seconds_since(q.t_submit);
    call_done(q, r);
  }

  // The counters, then on_done (which sees them updated); drain() returns once every on_done has.
  void call_done(Request& q, const BatchResult& r) {
    {
      std::lock_guard<std::mutex> lock(wake->m);
      close_step_locked();
      if (r.finish_reason == "cancelled") ++counts.cancelled;
      else if (r.finish_reason == "error") ++counts.failed;
      else ++counts.completed;
    }
    if (q.cb.on_done) {
      try {
        q.cb.on_done(r);
      } catch (...) {  // a callback's failure is its own; the scheduler goes on
      }
    }
    q.done_flag = true;
    std::lock_guard<std::mutex> lock(wake->m);
    ++done_calls;
    wake->cv.notify_all();
  }

  // Ends the slot's request: flushes what the decoder and the stop-string hold (unless cancelled
  // or failed), calls on_done, frees the slot.
  void finish(Slot& sl, const std::string& finish_reason, const std::string& stop_reason, const std::string& error) {
    Request& q = *sl.req;
    BatchResult r;
    r.finish_reason = finish_reason;
    r.error = error;
    if (finish_reason == "stop" || finish_reason == "length") {
      std::string rest = sl.decoder->flush();
      if (stop_reason != "stop_string") emit(sl, rest, /*final=*/true);
    }
    sl.stats.stop_reason = stop_reason;
    if (r.finish_reason != "error" && r.finish_reason != "cancelled" && q.cancel_flag.load()) {
      // on_piece asked to stop while the last text went out.
      r.finish_reason = "cancelled";
      sl.stats.stop_reason = "cancelled";
    }
    sl.stats.total_s = seconds_since(q.t_submit);
    if (sl.stats.generated_tokens > 1) {
      const double decode_s = seconds_since(sl.t_first);
      sl.stats.tokens_per_s = decode_s > 0 ? (sl.stats.generated_tokens - 1) / decode_s : 0.0;
    }
    r.stats = sl.stats;
    auto keep = sl.req;  // the callback runs after the slot is free for the next admission
    sl.req.reset();
    sl.decoding = false;
    // A cancelled or failed prefill may leave the cache mid-prompt: what is cached stays valid.
    {
      std::lock_guard<std::mutex> lock(wake->m);
      --counts.active;
    }
    call_done(*keep, r);
  }

  // Text out through the stop strings: holds back a suffix that may begin one; returns false when
  // a stop string matched (the text before it went out).
  bool emit(Slot& sl, const std::string& piece, bool final) {
    Request& q = *sl.req;
    const auto& stops = q.req.stop;
    if (stops.empty()) {
      send(sl, piece);
      return true;
    }
    sl.held += piece;
    size_t hit = std::string::npos;
    for (const std::string& s : stops) hit = std::min(hit, sl.held.find(s));
    if (hit != std::string::npos) {
      send(sl, sl.held.substr(0, hit));
      sl.held.clear();
      return false;
    }
    size_t keep = 0;
    if (!final) {
      for (const std::string& s : stops)
        for (size_t k = std::min(s.size() - 1, sl.held.size()); k > keep; --k)
          if (sl.held.compare(sl.held.size() - k, k, s, 0, k) == 0) {
            keep = k;
            break;
          }
    }
    size_t cut = sl.held.size() - keep;
    while (cut > 0 && cut < sl.held.size() && (static_cast<unsigned char>(sl.held[cut]) & 0xC0) == 0x80) --cut;
    send(sl, sl.held.substr(0, cut));
    sl.held.erase(0, cut);
    return true;
  }

  void send(Slot& sl, const std::string& text) {
    if (text.empty() || !sl.req->cb.on_piece) return;
    bool go = false;
    try {
      go = sl.req->cb.on_piece(text);
    } catch (...) {
      go = false;
    }
    if (!go) sl.req->cancel_flag = true;
  }

  // The token just sampled for the slot: stop, emit, or keep going (pending = id).
  void take_token(Slot& sl, int id) {
    Request& q = *sl.req;
    const int n = sl.stats.generated_tokens;
    if (n == 0) {
      sl.t_first = Clock::now();
      sl.stats.time_to_first_token_s = seconds_since(q.t_submit);
    }
    if (std::find(e.stop_ids.begin(), e.stop_ids.end(), id) != e.stop_ids.end()) {
      finish(sl, "stop", "stop_token", "");
      return;
    }
    ++sl.stats.generated_tokens;
    {
      std::lock_guard<std::mutex> lock(wake->m);
      ++counts.generated_tokens;
    }
    if (!emit(sl, sl.decoder->push(id), /*final=*/false)) {
      finish(sl, "stop", "stop_string", "");
      return;
    }
    if (q.cancel_flag.load()) {
      finish(sl, "cancelled", "cancelled", "");
      return;
    }
    if (sl.stats.generated_tokens >= q.req.params.max_new_tokens) {
      finish(sl, "length", "max_tokens", "");
      return;
    }
    if (sl.s->cache.n_past + 1 > sl.s->cache.capacity()) {
      finish(sl, "length", "context_full", "");
      return;
    }
    sl.pending = id;
    sl.decoding = true;
  }

  // Samples the slot's next token from `lp` (the logits after its last token).
  void sample_from(Slot& sl, const float* lp) {
    const size_t n_vocab = std::min<size_t>(sl.step_logits.size(), static_cast<size_t>(e.tokenizer->vocab_size()));
    sl.row.resize(n_vocab);
    std::copy_n(lp, n_vocab, sl.row.begin());
    const int id = sl.s->sample_or_explain(*sl.sampler, sl.row, sl.stats.generated_tokens, sl.generated_from);
    take_token(sl, id);
  }

  void fail(Slot& sl, const std::exception& ex) { finish(sl, "error", "error", ex.what()); }

  // One chunk of the earliest-admitted prefilling prompt.
  void prefill_one_chunk() {
    Slot* sl = nullptr;
    for (Slot& s : slots)
      if (s.req && !s.decoding && (!sl || s.admitted < sl->admitted)) sl = &s;
    if (!sl) return;
    try {
      const auto& p = sl->req->prompt;
      const size_t n = std::min<size_t>(static_cast<size_t>(opt.prefill_chunk), p.size() - sl->prefill_pos);
      torch::Tensor logits = sl->s->prefill_chunk(p, sl->prefill_pos, n, sl->rows_prefill);
      sl->prefill_pos += n;
      {
        std::lock_guard<std::mutex> lock(wake->m);
        counts.prefilled_tokens += static_cast<int64_t>(n);
        if (sl->rows_prefill) counts.row_path_prefilled_tokens += static_cast<int64_t>(n);
      }
      if (sl->prefill_pos < p.size()) return;
      const double prefill_s = seconds_since(sl->t_admit);
      sl->stats.prefill_tokens_per_s = prefill_s > 0 ? sl->stats.prefilled_tokens / prefill_s : 0.0;
      sl->logits = logits.reshape({-1}).contiguous();
      sl->step_logits.resize(static_cast<size_t>(sl->logits.numel()));
      sl->s->cached.reserve(static_cast<size_t>(sl->s->cache.capacity()));
      sample_from(*sl, sl->logits.data_ptr<float>());
    } catch (const std::exception& ex) {
      fail(*sl, ex);
    }
  }

  // One decode step for every decoding sequence: together through decode_step_batch (one pass
  // over the weights for all of them) where the graph has the row path; one by one through
  // Session's step where it has not, or for a sequence crossing into LongRoPE (it re-runs).
  void decode_all() {
    std::vector<Slot*> run, alone;
    for (Slot& s : slots)
      if (s.req && s.decoding && s.pending >= 0) (s.s->crosses_into_long_rope() ? alone : run).push_back(&s);
    if (run.empty() && alone.empty()) return;
    step_open = true;
    step_rows = static_cast<int64_t>(run.size() + alone.size());
    step_full = step_rows == static_cast<int64_t>(slots.size());
    step_t0 = Clock::now();
    {
      std::lock_guard<std::mutex> lock(wake->m);
      ++counts.decode_steps;
    }
    if (run.size() > 1 && !decode_together(run)) alone.insert(alone.end(), run.begin(), run.end());
    else if (run.size() == 1) alone.push_back(run[0]);
    for (Slot* sl : alone) {
      try {
        const float* lp = sl->s->step(sl->pending, sl->logits, sl->step_logits, nullptr);
        sl->pending = -1;
        sample_from(*sl, lp);
      } catch (const std::exception& ex) {
        fail(*sl, ex);
      }
    }
    std::lock_guard<std::mutex> lock(wake->m);
    close_step_locked();
  }

  // The decode step's rows and time into the counters: at its end, or when a request it finishes
  // calls on_done (so a caller that waited for on_done / drain() sees the step counted; the
  // sampling of the step's remaining rows is then not timed).
  void close_step_locked() {
    if (!step_open) return;
    step_open = false;
    const double dt = seconds_since(step_t0);
    counts.decode_rows += step_rows;
    counts.decode_s += dt;
    if (step_full) {
      counts.full_decode_rows += step_rows;
      counts.full_decode_s += dt;
    }
  }

  // False (nothing run) where the graph has no batched row path.
  bool decode_together(const std::vector<Slot*>& run) {
    const int64_t B = static_cast<int64_t>(run.size());
    const int64_t vocab = e.weights.lm_head ? e.weights.lm_head->out_features() : 0;
    batch_ids.resize(run.size());
    batch_caches.resize(run.size());
    for (size_t i = 0; i < run.size(); ++i) {
      batch_ids[i] = run[i]->pending;
      batch_caches[i] = &run[i]->s->cache;
    }
    if (batch_logits.size() < static_cast<size_t>(B * vocab)) batch_logits.resize(static_cast<size_t>(B * vocab));
    try {
      if (!decode_step_batch(e.weights, batch_ids.data(), batch_caches.data(), B, batch_logits.data(), batch_scratch,
                             e.act_dtype))
        return false;
    } catch (const std::exception& ex) {
      for (Slot* sl : run) fail(*sl, ex);
      return true;
    }
    for (size_t i = 0; i < run.size(); ++i) {
      Slot& sl = *run[i];
      sl.s->cached.push_back(sl.pending);
      sl.pending = -1;
      try {
        sample_from(sl, batch_logits.data() + static_cast<int64_t>(i) * vocab);
      } catch (const std::exception& ex) {
        fail(sl, ex);
      }
    }
    return true;
  }

  BatchCounters counters() const {
    std::lock_guard<std::mutex> lock(wake->m);
    return counts;
  }

  void drain() {
    std::unique_lock<std::mutex> lock(wake->m);
    draining = true;
    wake->cv.wait(lock, [&] { return done_calls == counts.submitted; });
  }
};

BatchScheduler::BatchScheduler(Engine& engine, SchedulerOptions options)
    : impl_(std::make_unique<Impl>(engine, options)) {}
BatchScheduler::~BatchScheduler() = default;

std::shared_ptr<BatchHandle> BatchScheduler::submit(BatchRequest request, BatchCallbacks callbacks) {
  return impl_->submit(std::move(request), std::move(callbacks));
}
BatchCounters BatchScheduler::counters() const { return impl_->counters(); }
void BatchScheduler::drain() { impl_->drain(); }
const ModelInfo& BatchScheduler::info() const { return impl_->e.info; }

}  // namespace qins
