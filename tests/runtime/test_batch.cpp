// BatchScheduler (batch.h) on fixture models: concurrent greedy requests match Session exactly,
// stop strings, cancellation, the queue limit, prompts that do not fit, drain, the destructor.
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "fixture_dir.h"
#include "qins/core/qins4.h"
#include "qins/io/converter.h"
#include "qins/runtime/batch.h"
#include "qins/runtime/engine.h"
#include "qins/runtime/internal.h"

namespace qins {
namespace {

using test::greedy;
using namespace std::chrono_literals;

// QINS codes (the batched decode step's path) unless a weight format is given; "qins4": the fixture
// converted to a QINS-4 file.
std::unique_ptr<Engine> load(const std::string& format = "inverse", int context = 256) {
  LoadOptions lo;
  lo.context_length = context;
  lo.kv_dtype = KvDtype::F32;
  if (format == "qins4") {  // the fixture converted as `qins convert --codebook qins4` does (group 16)
    const std::string file = (test::temp_root() / "batch-qins4.qins").string();
    if (!std::filesystem::exists(file)) {
      ConvertOptions o;
      o.qins4 = true;
      o.quant.pole = 0.0;
      o.quant4.group = 16;
      convert_to_qins(test::fixture("mha", {}), file, o);
    }
    return Engine::load(file, lo);
  }
  lo.weight_format = format;
  return Engine::load(test::fixture("mha", {}), lo);
}

// What one request produced, filled by the scheduler thread.
struct Outcome {
  std::mutex m;
  std::condition_variable cv;
  std::string text;
  std::vector<std::string> pieces;
  int done_calls = 0;
  BatchResult result;

  BatchCallbacks callbacks() {
    BatchCallbacks cb;
    cb.on_piece = [this](std::string_view p) {
      std::lock_guard<std::mutex> lock(m);
      text.append(p);
      pieces.emplace_back(p);
      return true;
    };
    cb.on_done = [this](const BatchResult& r) {
      std::lock_guard<std::mutex> lock(m);
      result = r;
      ++done_calls;
      cv.notify_all();
    };
    return cb;
  }
  void wait() {
    std::unique_lock<std::mutex> lock(m);
    ASSERT_TRUE(cv.wait_for(lock, 120s, [&] { return done_calls > 0; })) << "request never finished";
  }
};

struct Alone {
  std::string text;
  GenerationStats stats;
};

Alone alone_chat(Engine& e, const std::vector<ChatMessage>& m, const SamplingParams& p) {
  auto s = e.new_session();
  Alone a;
  a.stats = s->generate(m, p, [&](std::string_view piece) { a.text.append(piece); return true; });
  return a;
}

Alone alone_raw(Engine& e, const std::string& prompt, const SamplingParams& p) {
  auto s = e.new_session();
  Alone a;
  a.stats = s->complete(prompt, p, [&](std::string_view piece) { a.text.append(piece); return true; });
  return a;
}

BatchRequest chat_request(const std::string& text, const SamplingParams& p) {
  BatchRequest r;
  r.messages = {{Role::User, text}};
  r.params = p;
  return r;
}

std::string words(int n) {
  std::string s;
  for (int i = 0; i < n; ++i) s += (i % 3 == 0 ? "river " : i % 3 == 1 ? "harbour " : "stone ");
  return s;
}

void wait_until(const std::function<bool()>& f) {
  const auto t0 = std::chrono::steady_clock::now();
  while (!f()) {
    ASSERT_LT(std::chrono::steady_clock::now() - t0, 120s) << "condition never became true";
    std::this_thread::sleep_for(1ms);
  }
}

void expect_matches(const Alone& a, Outcome& o, const std::string& what) {
  EXPECT_EQ(o.done_calls, 1) << what;
  EXPECT_EQ(o.text, a.text) << what;
  EXPECT_EQ(o.result.stats.generated_tokens, a.stats.generated_tokens) << what;
  EXPECT_EQ(o.result.stats.prompt_tokens, a.stats.prompt_tokens) << what;
  const std::string want = a.stats.stop_reason == "stop_token" ? "stop" : "length";
  EXPECT_EQ(o.result.finish_reason, want) << what;
}

// Four greedy requests of different prompt lengths, submitted at different times (each while the
// earlier ones decode), produce exactly what each produces alone. parallel 4 and parallel 2 (the
// later requests wait for a slot); a small prefill chunk so long prompts join in several chunks.
void concurrent_matches_alone(const std::string& format, int parallel) {
  auto e = load(format, 1024);
  // The third prompt is long enough for the prefill GEMM (past rows_prefill_max where it is set).
  std::string long_prompt = words(24);
  while (static_cast<int64_t>(e->tokenize_chat({{Role::User, long_prompt}}, true).size()) <=
         rows_prefill_max(engine_internals(*e).weights))
    long_prompt += words(24);
  const std::vector<std::string> prompts{"Hello", "What does the word harbour mean? " + words(6), long_prompt,
                                         "Tell me about rivers and stones."};
  std::vector<Alone> want;
  for (size_t i = 0; i < prompts.size(); ++i)
    want.push_back(alone_chat(*e, {{Role::User, prompts[i]}}, greedy(16 + 4 * static_cast<int>(i))));
  SchedulerOptions so;
  so.parallel = parallel;
  so.prefill_chunk = 16;
  BatchScheduler sched(*e, so);
  std::vector<std::unique_ptr<Outcome>> out;
  for (size_t i = 0; i < prompts.size(); ++i) {
    out.push_back(std::make_unique<Outcome>());
    sched.submit(chat_request(prompts[i], greedy(16 + 4 * static_cast<int>(i))), out.back()->callbacks());
    // The next one joins while this one runs.
    const int64_t before = sched.counters().generated_tokens;
    if (i + 1 < prompts.size() && want[i].stats.generated_tokens > 2)
      wait_until([&] { return sched.counters().generated_tokens > before || sched.counters().active == 0; });
  }
  for (auto& o : out) o->wait();
  for (size_t i = 0; i < prompts.size(); ++i) expect_matches(want[i], *out[i], format + " request " + std::to_string(i));
  const BatchCounters c = sched.counters();
  // The prompts short enough for the row paths (QINS-4 only) went through them, the others not.
  int64_t short_tokens = 0;
  for (const auto& o : out) {
    const int64_t n = o->result.stats.prefilled_tokens;  // after the prefix a slot's cache kept
    if (n <= rows_prefill_max(engine_internals(*e).weights)) short_tokens += n;
  }
  EXPECT_EQ(c.row_path_prefilled_tokens, short_tokens) << format;
  if (format == "qins4") {
    EXPECT_GT(c.row_path_prefilled_tokens, 0);
    EXPECT_LT(c.row_path_prefilled_tokens, c.prefilled_tokens);
  }
  EXPECT_EQ(c.submitted, 4);
  EXPECT_EQ(c.completed, 4);
  EXPECT_EQ(c.active, 0);
  EXPECT_EQ(c.queued, 0);
  int64_t gen = 0;
  for (const Alone& a : want) gen += a.stats.generated_tokens;
  EXPECT_EQ(c.generated_tokens, gen);
  EXPECT_GT(c.decode_steps, 0);
  // Some step ran more than one sequence: fewer steps than tokens decoded after the first ones.
  EXPECT_LT(c.decode_steps, gen);
  // Decode-step accounting (what `qins bench --concurrent` reports as decode-only speed): every
  // token after a request's first (which its prefill gives) comes from one decode step's row.
  EXPECT_EQ(c.decode_rows, gen - 4);
  EXPECT_GT(c.decode_s, 0.0);
  EXPECT_LE(c.full_decode_rows, c.decode_rows);
  EXPECT_EQ(c.full_decode_rows % parallel, 0);  // steps with every slot decoding run `parallel` rows
  EXPECT_LE(c.full_decode_s, c.decode_s);
  if (c.full_decode_rows == 0) {
    EXPECT_EQ(c.full_decode_s, 0.0);
  }
}

TEST(BatchScheduler, ConcurrentGreedyRequestsMatchSessionsExactly) { concurrent_matches_alone("inverse", 4); }
TEST(BatchScheduler, MoreRequestsThanSlotsWaitAndStillMatch) { concurrent_matches_alone("inverse", 2); }
TEST(BatchScheduler, DenseWeightsTakeTheOneSequencePathAndMatch) { concurrent_matches_alone("f32", 4); }
// A QINS-4 file: its batched decode steps run the small-batch rows path, row for row the GEMV, and
// its short prompts ("Hello") prefill through the row paths, its long ones (24 words) through the
// GEMM, in Session and in the scheduler alike (whose chunks of 16 differ from Session's).
TEST(BatchScheduler, Qins4ConcurrentGreedyRequestsMatchSessionsExactly) { concurrent_matches_alone("qins4", 4); }

// Short prompts of a QINS-4 model prefill through the projections' row paths (rows_prefill_max):
// up to 24 tokens (256 on AVX-512 VNNI without the bf16 prefill GEMM) for QINS-4 layer projections,
// up to 8 for 8-bit ones with the bf16 kernel, never for dense ones. With
// ForwardOptions::rows_path each prompt row gets the decode step's numerics (x rounded to int8):
// logits within that budget of the GEMM prefill's but not equal to them, the same greedy token
// here; for dense weights (no row path) the option changes nothing.
TEST(Engine, ShortPromptsOfAQins4ModelPrefillThroughTheRowPaths) {
  auto e4 = load("qins4");
  auto e8 = load("inverse");
  auto ef = load("f32");
  // 256 where the QINS-4 kernel is AVX-512 VNNI and the prefill GEMM fp32, 24 elsewhere.
  const bool vnni_fp32 = std::string(core::kernel4_isa()) == "avx512" && std::string(core::prefill4_path()) == "fp32";
  EXPECT_EQ(rows_prefill_max(engine_internals(*e4).weights), vnni_fp32 ? 256 : 24);
  // 8-bit codes: up to 8 tokens with the bf16 kernel (measured there only), else never.
  EXPECT_EQ(rows_prefill_max(engine_internals(*e8).weights), std::string(core::kernel_isa()) == "avx512bf16" ? 8 : 0);
  EXPECT_EQ(rows_prefill_max(engine_internals(*ef).weights), 0);

  Engine::Impl& in = engine_internals(*e4);
  const std::vector<int> prompt = e4->tokenize_chat({{Role::User, "Hello there"}}, true);
  ASSERT_LE(static_cast<int64_t>(prompt.size()), 24);
  const torch::Tensor ids = torch::tensor(std::vector<int64_t>(prompt.begin(), prompt.end()), torch::kInt64).unsqueeze(0);
  auto run = [&](Engine::Impl& m, bool rows) {
    KvCache cache = make_kv_cache(m.weights.config, 64, torch::kFloat32);
    ForwardOptions fo;
    fo.rows_path = rows;
    return forward(m.weights, ids, &cache, fo);  // [1, T, vocab]
  };
  const torch::Tensor gemm = run(in, false), rows = run(in, true);
  EXPECT_FALSE(torch::equal(gemm, rows)) << "the row path should round x to int8 (the decode numerics)";
  EXPECT_LT((rows - gemm).norm().item<double>(), 0.05 * gemm.norm().item<double>());
  EXPECT_EQ(rows[0][-1].argmax().item<int64_t>(), gemm[0][-1].argmax().item<int64_t>());
  // Dense weights have no row path: the option changes nothing.
  Engine::Impl& dense = engine_internals(*ef);
  EXPECT_TRUE(torch::equal(run(dense, false), run(dense, true)));
}

// Why the row-path choice is made per prompt and not per call: Session (one call per prompt) and
// the scheduler (chunks of prefill_chunk tokens) must put a prompt's rows through the same
// numerics. Within one path, chunking moves the last logits by float rounding only (the batched
// attention sums in another order: neither path is bitwise chunk-invariant); between the paths
// they differ by the int8 rounding of x, orders of magnitude more. A 20-token prompt as one call
// and as chunks of 16 + 4 and 7 + 7 + 6.
TEST(Engine, RowPathPrefillInChunksStaysOnItsNumerics) {
  auto e4 = load("qins4");
  Engine::Impl& in = engine_internals(*e4);
  std::vector<int64_t> ids;
  for (int i = 0; i < 20; ++i) ids.push_back(5 + 7 * i);
  auto prefill = [&](const std::vector<int64_t>& chunks, bool rows) {
    KvCache cache = make_kv_cache(in.weights.config, 64, torch::kFloat32);
    ForwardOptions fo;
    fo.rows_path = rows;
    fo.last_only = true;
    torch::Tensor logits;
    int64_t pos = 0;
    for (int64_t n : chunks) {
      const torch::Tensor part = torch::tensor(std::vector<int64_t>(ids.begin() + pos, ids.begin() + pos + n), torch::kInt64);
      logits = forward(in.weights, part.unsqueeze(0), &cache, fo);
      pos += n;
    }
    return logits.reshape({-1});
  };
  auto rel = [](const torch::Tensor& a, const torch::Tensor& b) {
    return (a - b).abs().max().item<double>() / b.abs().max().item<double>();
  };
  const torch::Tensor rows = prefill({20}, true), gemm = prefill({20}, false);
  const double between = rel(rows, gemm);
  EXPECT_GT(between, 1e-4);
  for (const std::vector<int64_t>& chunks : {std::vector<int64_t>{16, 4}, std::vector<int64_t>{7, 7, 6}}) {
    EXPECT_LT(rel(prefill(chunks, true), rows), between / 100) << chunks.size() << " chunks, row path";
    EXPECT_LT(rel(prefill(chunks, false), gemm), between / 100) << chunks.size() << " chunks, GEMM path";
  }
}

TEST(BatchScheduler, RawCompletionsAndSeededSamplingMatchSessions) {
  auto e = load();
  SamplingParams sampled;
  sampled.temperature = 0.9f;
  sampled.top_p = 0.9f;
  sampled.random_seed = false;
  sampled.seed = 7;
  sampled.max_new_tokens = 20;
  const Alone a = alone_raw(*e, "Once upon a time", greedy(20));
  const Alone b = alone_raw(*e, "The harbour", sampled);
  const Alone c = alone_chat(*e, {{Role::User, "Rivers?"}}, sampled);
  BatchScheduler sched(*e);
  Outcome oa, ob, oc;
  BatchRequest ra;
  ra.raw = true;
  ra.prompt = "Once upon a time";
  ra.params = greedy(20);
  BatchRequest rb = ra;
  rb.prompt = "The harbour";
  rb.params = sampled;
  sched.submit(ra, oa.callbacks());
  sched.submit(rb, ob.callbacks());
  sched.submit(chat_request("Rivers?", sampled), oc.callbacks());
  oa.wait();
  ob.wait();
  oc.wait();
  expect_matches(a, oa, "raw greedy");
  expect_matches(b, ob, "raw sampled");
  expect_matches(c, oc, "chat sampled");
}

// A long seeded reply (the fixture's random weights stop early on some seeds).
SamplingParams long_reply(int n) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_p = 1.0f;
  p.random_seed = false;
  p.seed = 3;
  p.max_new_tokens = n;
  return p;
}

TEST(BatchScheduler, StopStringsEndBeforeTheMatchAndNeverEmitIt) {
  auto e = load();
  const std::string prompt = "Tell me a story.";
  const Alone a = alone_chat(*e, {{Role::User, prompt}}, long_reply(60));
  ASSERT_GE(a.text.size(), 40u) << "the fixture's reply is too short for this test";
  // A stop string from the middle of the reply (it spans several pieces), and a decoy that never occurs.
  const std::string stop = a.text.substr(20, 7);
  const size_t at = a.text.find(stop);
  BatchScheduler sched(*e);
  Outcome o;
  BatchRequest r = chat_request(prompt, long_reply(60));
  r.stop = {"\x01never\x02", stop};
  sched.submit(r, o.callbacks());
  o.wait();
  EXPECT_EQ(o.text, a.text.substr(0, at));
  EXPECT_EQ(o.result.finish_reason, "stop");
  EXPECT_EQ(o.result.stats.stop_reason, "stop_string");
  EXPECT_GT(o.pieces.size(), 1u);
  // A stop string that never matches changes nothing (the held-back text comes out at the end).
  Outcome o2;
  BatchRequest r2 = chat_request(prompt, long_reply(60));
  r2.stop = {a.text.substr(a.text.size() - 3) + "\x01"};
  sched.submit(r2, o2.callbacks());
  o2.wait();
  EXPECT_EQ(o2.text, a.text);
}

TEST(BatchScheduler, CancelStopsTheWorkAtTheNextToken) {
  auto e = load();
  // A seed whose reply runs past 60 tokens on this CPU's kernel path (the bf16 kernel's rounding
  // ends some seeds' replies early, the exact kernels' others).
  SamplingParams params = long_reply(200);
  int64_t alone_tokens = 0;
  for (uint64_t seed = 3; seed < 40 && alone_tokens < 60; ++seed) {
    params.seed = seed;
    alone_tokens = alone_chat(*e, {{Role::User, "Go on."}}, params).stats.generated_tokens;
  }
  ASSERT_GE(alone_tokens, 60) << "no seed gives the fixture a reply long enough for this test";
  BatchScheduler sched(*e);
  Outcome o;
  auto h = sched.submit(chat_request("Go on.", params), o.callbacks());
  wait_until([&] { return sched.counters().generated_tokens >= 5; });
  h->cancel();
  o.wait();
  wait_until([&] { return h->done(); });  // true once on_done has returned
  EXPECT_EQ(o.result.finish_reason, "cancelled");
  EXPECT_LT(o.result.stats.generated_tokens, 60);
  const BatchCounters c1 = sched.counters();
  EXPECT_EQ(c1.cancelled, 1);
  EXPECT_EQ(c1.active, 0);
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(sched.counters().generated_tokens, c1.generated_tokens);  // nothing runs for it any more
  EXPECT_EQ(sched.counters().decode_steps, c1.decode_steps);

  // on_piece returning false cancels too.
  Outcome o2;
  BatchCallbacks cb = o2.callbacks();
  int seen = 0;
  auto inner = cb.on_piece;
  cb.on_piece = [&](std::string_view p) { inner(p); return ++seen < 3; };
  sched.submit(chat_request("Go on.", params), cb);
  o2.wait();
  EXPECT_EQ(o2.result.finish_reason, "cancelled");
  EXPECT_EQ(seen, 3);
  EXPECT_EQ(sched.counters().cancelled, 2);
}

TEST(BatchScheduler, CancelBeforeAdmissionNeverRuns) {
  auto e = load();
  SchedulerOptions so;
  so.parallel = 1;
  BatchScheduler sched(*e, so);
  std::mutex gate;
  std::unique_lock<std::mutex> hold(gate);  // the first request's first piece blocks the thread
  Outcome first, second;
  BatchCallbacks cb = first.callbacks();
  auto inner = cb.on_piece;
  cb.on_piece = [&](std::string_view p) { std::lock_guard<std::mutex> wait_here(gate); return inner(p); };
  sched.submit(chat_request("Go on.", long_reply(8)), cb);
  wait_until([&] { return sched.counters().generated_tokens >= 1; });
  auto h = sched.submit(chat_request("Hello", greedy(8)), second.callbacks());
  EXPECT_EQ(sched.counters().queued, 1);
  h->cancel();
  hold.unlock();
  second.wait();
  first.wait();
  EXPECT_EQ(second.result.finish_reason, "cancelled");
  EXPECT_EQ(second.result.stats.generated_tokens, 0);
  EXPECT_EQ(second.text, "");
}

TEST(BatchScheduler, FullQueueIsRefused) {
  auto e = load();
  SchedulerOptions so;
  so.parallel = 1;
  so.max_queue = 1;
  BatchScheduler sched(*e, so);
  std::mutex gate;
  std::unique_lock<std::mutex> hold(gate);
  Outcome a, b;
  BatchCallbacks cb = a.callbacks();
  auto inner = cb.on_piece;
  cb.on_piece = [&](std::string_view p) { std::lock_guard<std::mutex> wait_here(gate); return inner(p); };
  sched.submit(chat_request("Go on.", long_reply(8)), cb);
  wait_until([&] { return sched.counters().active == 1; });
  sched.submit(chat_request("Hello", greedy(4)), b.callbacks());  // waits: the one queue place
  int calls = 0;
  BatchCallbacks counted;
  counted.on_piece = [&](std::string_view) { ++calls; return true; };
  counted.on_done = [&](const BatchResult&) { ++calls; };
  try {
    sched.submit(chat_request("Hello", greedy(4)), counted);
    ADD_FAILURE() << "a third request was accepted";
  } catch (const QueueFull& ex) {
    EXPECT_NE(std::string(ex.what()).find("queue is full"), std::string::npos) << ex.what();
  }
  hold.unlock();
  a.wait();
  b.wait();
  EXPECT_EQ(calls, 0);
  EXPECT_EQ(sched.counters().submitted, 2);
}

TEST(BatchScheduler, PromptTooLongAndBadParamsAreRefusedAtSubmit) {
  auto e = load("inverse", 64);
  BatchScheduler sched(*e);
  int calls = 0;
  BatchCallbacks counted;
  counted.on_piece = [&](std::string_view) { ++calls; return true; };
  counted.on_done = [&](const BatchResult&) { ++calls; };
  const size_t n = e->tokenize_chat({{Role::User, words(80)}}, true).size();
  ASSERT_GT(n, 64u);
  try {
    sched.submit(chat_request(words(80), greedy(4)), counted);
    ADD_FAILURE() << "a prompt longer than the context was accepted";
  } catch (const PromptTooLong& ex) {
    const std::string m = ex.what();
    EXPECT_NE(m.find(std::to_string(n) + " tokens"), std::string::npos) << m;
    EXPECT_NE(m.find("context holds 64"), std::string::npos) << m;
  }
  auto bad = [&](const std::function<void(BatchRequest&)>& set, const std::string& field) {
    BatchRequest r = chat_request("Hello", greedy(4));
    set(r);
    try {
      sched.submit(r, counted);
      ADD_FAILURE() << field << ": accepted";
    } catch (const PromptTooLong&) {
      ADD_FAILURE() << field << ": PromptTooLong";
    } catch (const QueueFull&) {
      ADD_FAILURE() << field << ": QueueFull";
    } catch (const Error& ex) {
      EXPECT_NE(std::string(ex.what()).find(field), std::string::npos) << ex.what();
    }
  };
  bad([](BatchRequest& r) { r.params.temperature = -1; }, "temperature");
  bad([](BatchRequest& r) { r.params.top_p = 0; }, "top_p");
  bad([](BatchRequest& r) { r.params.top_k = -2; }, "top_k");
  bad([](BatchRequest& r) { r.params.min_p = 1.5f; }, "min_p");
  bad([](BatchRequest& r) { r.params.repetition_penalty = 0; }, "repetition_penalty");
  bad([](BatchRequest& r) { r.params.max_new_tokens = 0; }, "max_new_tokens");
  bad([](BatchRequest& r) { r.frequency_penalty = 3; }, "frequency_penalty");
  bad([](BatchRequest& r) { r.presence_penalty = -2.5f; }, "presence_penalty");
  bad([](BatchRequest& r) { r.stop = {"a", ""}; }, "stop[1]");
  bad([](BatchRequest& r) { r.messages.clear(); }, "messages");
  EXPECT_EQ(calls, 0);
  EXPECT_EQ(sched.counters().submitted, 0);
}

TEST(BatchScheduler, DrainFinishesEverythingThenRefuses) {
  auto e = load();
  SchedulerOptions so;
  so.parallel = 2;
  BatchScheduler sched(*e, so);
  std::vector<std::unique_ptr<Outcome>> out;
  std::vector<std::shared_ptr<BatchHandle>> handles;
  for (int i = 0; i < 5; ++i) {
    out.push_back(std::make_unique<Outcome>());
    handles.push_back(sched.submit(chat_request("Hello " + words(i), greedy(6)), out.back()->callbacks()));
  }
  sched.drain();
  for (size_t i = 0; i < out.size(); ++i) {
    EXPECT_TRUE(handles[i]->done());
    EXPECT_EQ(out[i]->done_calls, 1);
    EXPECT_NE(out[i]->result.finish_reason, "cancelled");
  }
  EXPECT_EQ(sched.counters().completed, 5);
  EXPECT_THROW(sched.submit(chat_request("Hello", greedy(2)), {}), Error);
}

TEST(BatchScheduler, DestructorCancelsInFlightRequestsAndCallsEveryOnDone) {
  auto e = load();
  std::vector<std::unique_ptr<Outcome>> out;
  std::vector<std::shared_ptr<BatchHandle>> handles;
  {
    SchedulerOptions so;
    so.parallel = 2;
    BatchScheduler sched(*e, so);
    for (int i = 0; i < 6; ++i) {
      out.push_back(std::make_unique<Outcome>());
      handles.push_back(sched.submit(chat_request("Go on.", long_reply(200)), out.back()->callbacks()));
    }
    wait_until([&] { return sched.counters().generated_tokens >= 2; });
  }
  int cancelled = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    EXPECT_EQ(out[i]->done_calls, 1) << i;
    EXPECT_TRUE(handles[i]->done()) << i;
    cancelled += out[i]->result.finish_reason == "cancelled";
  }
  EXPECT_GE(cancelled, 4);
  handles[0]->cancel();  // a handle outliving its scheduler stays safe to use
}

TEST(BatchScheduler, PrefixOfTheLastTurnIsReused) {
  auto e = load();
  SchedulerOptions so;
  so.parallel = 2;
  BatchScheduler sched(*e, so);
  Outcome first;
  const std::vector<ChatMessage> turn1{{Role::User, "Tell me about rivers."}};
  BatchRequest r1;
  r1.messages = turn1;
  r1.params = greedy(8);
  sched.submit(r1, first.callbacks());
  first.wait();
  std::vector<ChatMessage> turn2 = turn1;
  turn2.push_back({Role::Assistant, first.text});
  turn2.push_back({Role::User, "And stones?"});
  const Alone a = alone_chat(*e, turn2, greedy(8));
  Outcome second;
  BatchRequest r2;
  r2.messages = turn2;
  r2.params = greedy(8);
  sched.submit(r2, second.callbacks());
  second.wait();
  expect_matches(a, second, "second turn");
  EXPECT_LT(second.result.stats.prefilled_tokens, second.result.stats.prompt_tokens);
}

}  // namespace
}  // namespace qins
