// QINS-8 grouped: kernel dispatch and the matmul. Batch 1 (and every row of a batch, one after
// another): x padded with zeros to the stored columns and put in the kernel's order once, then the
// GEMV over blocks of rows in parallel. There is no tiled prefill path for this code yet.
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "parallel_rows.h"
#include "qins/core/qins8g.h"
#include "qins8g_kernels.h"

namespace qins::core {

namespace {

using kernels8g::Kernel8g;

const Kernel8g* kernel8g_by_name(const std::string& name) {
  if (name == "scalar") return &kernels8g::scalar_kernel8g();
  if (name == "avx2") return kernels8g::avx2_kernel8g();
  if (name == "neon") return kernels8g::neon_kernel8g();
  return nullptr;
}

const Kernel8g* best_kernel8g() {
  if (const Kernel8g* k = kernels8g::avx2_kernel8g()) return k;
  if (const Kernel8g* k = kernels8g::neon_kernel8g()) return k;
  return &kernels8g::scalar_kernel8g();
}

const Kernel8g* initial_kernel8g() {
  const char* env = std::getenv("QINS_KERNEL8G");
  if (env && *env && std::string(env) != "auto") {
    if (const Kernel8g* k = kernel8g_by_name(env)) return k;
    throw std::invalid_argument(std::string("QINS_KERNEL8G=") + env +
                                ": not available on this CPU/build (use scalar, avx2, neon or auto)");
  }
  return best_kernel8g();
}

std::atomic<const Kernel8g*>& active8g_slot() {
  static std::atomic<const Kernel8g*> slot{initial_kernel8g()};
  return slot;
}

// Rows per task: ~64 KB of codes per task, at least 16 rows.
int64_t gemv8g_grain(int64_t row_bytes) { return std::max<int64_t>(16, 65536 / std::max<int64_t>(row_bytes, 1)); }

void gemv_with(const Kernel8g& k, const Quantized8gTensor& q, const float* x, int64_t n_rows, float* y) {
  TORCH_CHECK(q.codes.defined() && q.scales.defined() && q.lut.defined() && q.codes.device().is_cpu() &&
                  q.codes.is_contiguous() && q.scales.is_contiguous() && q.lut.is_contiguous(),
              "qins8g_matmul: codes, scales and lut must be contiguous CPU tensors");
  const int64_t out = q.out_features(), in = q.in_features, in_pad = q.padded_in();
  TORCH_CHECK(in_pad % q.group == 0 && in_pad >= in && q.n_groups() == in_pad / q.group,
              "qins8g_matmul: codes and scales do not match the group size");
  kernels8g::Scales s;
  if (q.log_scales()) {
    TORCH_CHECK(q.sub_table.defined() && q.sub_table.is_contiguous() && q.sub_table.numel() == 256,
                "qins8g_matmul: log-scale codes need their [256] table");
    s.sub = q.scales.data_ptr<uint8_t>();
    s.st = q.sub_table.data_ptr<float>();
  } else {
    s.half = reinterpret_cast<const uint16_t*>(q.scales.data_ptr<at::Half>());
  }
  const uint8_t* codes = q.codes.data_ptr<uint8_t>();
  const float* lut = q.lut.data_ptr<float>();
  thread_local std::vector<float> xpad, xp;  // per-thread scratch, reused: no allocation per token
  xpad.assign(static_cast<size_t>(in_pad), 0.f);
  xp.resize(static_cast<size_t>(in_pad));
  for (int64_t i = 0; i < n_rows; ++i) {
    std::memcpy(xpad.data(), x + i * in, sizeof(float) * static_cast<size_t>(in));
    if (k.block32)
      kernels8g::to_block32(xpad.data(), in_pad, xp.data());
    else
      std::copy(xpad.begin(), xpad.end(), xp.begin());
    const float* xk = xp.data();
    float* yi = y + i * out;
    parallel_rows(out, gemv8g_grain(in_pad), [&](int64_t b, int64_t e) {
      k.gemv(codes, in_pad, q.group, b, e, s, lut, xk, yi + b);
    });
  }
}

}  // namespace

const char* kernel8g_isa() { return active8g_slot().load(std::memory_order_relaxed)->name; }

void set_kernel8g_isa(const std::string& isa) {
  if (isa.empty() || isa == "auto") {
    active8g_slot().store(best_kernel8g());
    return;
  }
  const Kernel8g* k = kernel8g_by_name(isa);
  if (!k) throw std::invalid_argument("QINS-8 grouped kernel path '" + isa + "' is not available on this CPU/build");
  active8g_slot().store(k);
}

std::vector<std::string> available_kernel8g_isas() {
  std::vector<std::string> out{"scalar"};
  for (const char* n : {"neon", "avx2"})
    if (kernel8g_by_name(n)) out.emplace_back(n);
  return out;
}

void qins8g_gemv_reference(const Quantized8gTensor& q, const float* x, float* y) {
  gemv_with(kernels8g::scalar_kernel8g(), q, x, 1, y);
}

void qins8g_matmul(const Quantized8gTensor& q, const float* x, int64_t n_rows, float* y) {
  if (n_rows <= 0 || q.out_features() == 0) return;
  gemv_with(*active8g_slot().load(std::memory_order_relaxed), q, x, n_rows, y);
}

}  // namespace qins::core
