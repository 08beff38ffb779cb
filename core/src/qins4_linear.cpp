// Qins4Linear and the QINS-4 kernel dispatch: batch 1 -> x rounded to int8 per 32 columns, then
// the integer lookup GEMV over blocks of rows in parallel; many rows -> expand tiles of rows and
// multiply them: in bf16 by the 8-bit codes' GEMM where the CPU has AVX512-BF16, else in fp32 by
// the BLAS (the same tiling as the 8-bit path, core/src/projective_linear.cpp).
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <stdexcept>
#include <vector>

#include "qins/core/blas_threads.h"
#include "qins/core/qins4.h"
#include "parallel_rows.h"
#include "qins4_kernels.h"
#include "qins_kernels.h"
#include "thread_scratch.h"
#include "tiled_prefill.h"

namespace qins::core {

namespace {

using kernels4::Kernel4;

const Kernel4* kernel4_by_name(const std::string& name) {
  if (name == "scalar") return &kernels4::scalar_kernel4();
  if (name == "avx2") return kernels4::avx2_kernel4();
  if (name == "avx512") return kernels4::avx512_kernel4();
  if (name == "neon") return kernels4::neon_kernel4();
  return nullptr;
}

const Kernel4* best_kernel4() {
  if (const Kernel4* k = kernels4::avx512_kernel4()) return k;
  if (const Kernel4* k = kernels4::avx2_kernel4()) return k;
  if (const Kernel4* k = kernels4::neon_kernel4()) return k;
  return &kernels4::scalar_kernel4();
}

const Kernel4* initial_kernel4() {
  const char* env = std::getenv("QINS_KERNEL4");
  if (env && *env && std::string(env) != "auto") {
    if (const Kernel4* k = kernel4_by_name(env)) return k;
    throw std::invalid_argument(std::string("QINS_KERNEL4=") + env +
                                ": not available on this CPU/build (use scalar, avx2, avx512, neon or auto)");
  }
  return best_kernel4();
}

std::atomic<const Kernel4*>& active4_slot() {
  static std::atomic<const Kernel4*> slot{initial_kernel4()};
  return slot;
}

// The prefill GEMM: the bf16 kernel (its gemm_rows_f32), or null where the CPU lacks AVX512-BF16.
const kernels::Kernel* bf16_prefill() {
  const kernels::Kernel* b = kernels::avx512bf16_kernel();
  return b && b->gemm_rows_f32 ? b : nullptr;
}

// A prefill path by name (null: fp32); "" and "auto": the best. Unknown or unavailable: throws,
// naming `what`.
const kernels::Kernel* prefill4_by_name(const std::string& name, const std::string& what) {
  if (name.empty() || name == "auto") return bf16_prefill();
  if (name == "fp32") return nullptr;
  if (name == "bf16" && bf16_prefill()) return bf16_prefill();
  throw std::invalid_argument(what + ": not available on this CPU/build (use fp32, bf16 or auto)");
}

const kernels::Kernel* initial_prefill4() {
  const char* env = std::getenv("QINS_PREFILL4");
  return env ? prefill4_by_name(env, std::string("QINS_PREFILL4=") + env) : bf16_prefill();
}

std::atomic<const kernels::Kernel*>& prefill4_slot() {
  static std::atomic<const kernels::Kernel*> slot{initial_prefill4()};
  return slot;
}

// Rows per task of the batch-1 GEMV: ~64 KB of codes per task, at least 16 rows.
int64_t gemv4_grain(int64_t row_bytes) { return std::max<int64_t>(16, 65536 / std::max<int64_t>(row_bytes, 1)); }

struct Views {
  const uint8_t* codes;
  const uint16_t* scales;  // group 32, 64
  const uint8_t* sub;      // group 16
  const float* st;         // group 16: the 256 scales
  const int8_t* lut;
  int64_t n_blocks;
  int group_blocks;  // 0 for group 16
};

Views views(const Quantized4Tensor& q) {
  TORCH_CHECK(q.codes.device().is_cpu() && q.codes.is_contiguous() && q.scales.is_contiguous() && q.lut.is_contiguous(),
              "qins4_matmul: codes, scales and lut must be contiguous CPU tensors");
  if (q.sub_scales()) {
    TORCH_CHECK(q.sub_table.defined() && q.sub_table.device().is_cpu() && q.sub_table.is_contiguous(),
                "qins4_matmul: group 16 needs its contiguous CPU table of scales");
    return {q.codes.data_ptr<uint8_t>(), nullptr, q.scales.data_ptr<uint8_t>(), q.sub_table.data_ptr<float>(),
            q.lut.data_ptr<int8_t>(), q.padded_in() / 32, 0};
  }
  return {q.codes.data_ptr<uint8_t>(), reinterpret_cast<const uint16_t*>(q.scales.data_ptr<at::Half>()), nullptr, nullptr,
          q.lut.data_ptr<int8_t>(), q.padded_in() / 32, q.group / 32};
}

void expand_with(const Kernel4& k, const Views& v, int64_t r0, int64_t r1, float* out) {
  if (v.sub)
    k.expand16(v.codes, v.n_blocks, r0, r1, v.sub, v.st, v.lut, out);
  else
    k.expand(v.codes, v.n_blocks, v.group_blocks, r0, r1, v.scales, v.lut, out);
}

// The bf16 GEMM's row source: one weight row's columns [k0, k0 + n) (k0 a multiple of 2048), in
// fp32 through the kernel's expand (the row's blocks from k0 / 32 on as a one-row matrix; writes n
// rounded up to 32 values) or straight to bf16 (expand_row_bf16).
struct RowExpand {
  const Kernel4* k;
  Views v;
  kernels4::ExpandBf16 bf16 = nullptr;  // the direct bf16 form where the CPU has it
};

// Row r of the weights from block b0 on: its codes and its first sub-scale codes (group 16) or
// fp16 scale (other groups; b0 is a multiple of 64 there, so a group never straddles it).
struct RowFrom {
  const uint8_t* codes;
  const uint8_t* sub;        // group 16, else null
  const uint16_t* scales;    // other groups, else null
};
RowFrom row_from(const Views& v, int64_t r, int64_t b0) {
  RowFrom f{v.codes + r * v.n_blocks * 16 + b0 * 16, nullptr, nullptr};
  if (v.sub) f.sub = v.sub + r * v.n_blocks * 2 + b0 * 2;
  else f.scales = v.scales + r * (v.n_blocks / v.group_blocks) + b0 / v.group_blocks;
  return f;
}

void expand_row(const void* ctx, int64_t r, int64_t k0, int64_t n, float* out) {
  const RowExpand& e = *static_cast<const RowExpand*>(ctx);
  const Views& v = e.v;
  const RowFrom f = row_from(v, r, k0 / 32);
  const int64_t nb = (n + 31) / 32;
  if (v.sub) e.k->expand16(f.codes, nb, 0, 1, f.sub, v.st, v.lut, out);
  else e.k->expand(f.codes, nb, v.group_blocks, 0, 1, f.scales, v.lut, out);
}

// The same columns straight to the bf16 GEMM's layout (expand_bf16_avx512).
void expand_row_bf16(const void* ctx, int64_t r, int64_t k0, int64_t n, uint16_t* out) {
  const RowExpand& e = *static_cast<const RowExpand*>(ctx);
  const Views& v = e.v;
  const RowFrom f = row_from(v, r, k0 / 32);
  e.bf16(f.codes, f.sub, v.st, f.scales, v.sub ? 1 : v.group_blocks, v.lut, n, out);
}

// Their codes and scales towards L2 ahead of use (the next tile's rows are a row apart, which the
// hardware prefetchers do not follow).
void prefetch_row(const void* ctx, int64_t r, int64_t k0, int64_t n) {
  const Views& v = static_cast<const RowExpand*>(ctx)->v;
  const RowFrom f = row_from(v, r, k0 / 32);
  for (int64_t i = 0; i < n / 2; i += 64) __builtin_prefetch(f.codes + i, 0, 2);
  const uint8_t* s = v.sub ? f.sub : reinterpret_cast<const uint8_t*>(f.scales);
  const int64_t s_bytes = v.sub ? n / 16 : 2 * (n / 32) / v.group_blocks;
  for (int64_t i = 0; i < s_bytes; i += 64) __builtin_prefetch(s + i, 0, 2);
}

void gemv_with(const Kernel4& k, const Quantized4Tensor& q, const float* x, float* y) {
  const Views v = views(q);
  // x rounded to int8 once per call (per-thread scratch, reused: no allocation per token).
  thread_local std::vector<int8_t> xq;
  thread_local std::vector<float> dx;
  if (xq.size() < static_cast<size_t>(v.n_blocks * 32)) xq.resize(static_cast<size_t>(v.n_blocks * 32));
  if (dx.size() < static_cast<size_t>(v.n_blocks)) dx.resize(static_cast<size_t>(v.n_blocks));
  kernels4::quantize_x(x, q.in_features, v.n_blocks, xq.data(), dx.data());
  const int8_t* xqp = xq.data();
  const float* dxp = dx.data();
  parallel_rows(q.out_features(), gemv4_grain(v.n_blocks * 16), [&](int64_t b, int64_t e) {
    if (v.sub)
      k.gemv16(v.codes, v.n_blocks, b, e, v.sub, v.st, v.lut, xqp, dxp, y + b);
    else
      k.gemv(v.codes, v.n_blocks, v.group_blocks, b, e, v.scales, v.lut, xqp, dxp, y + b);
  });
}

// Rows of x per pass of the small-batch loop over the codes: one super-block's x for all of them
// (384 bytes a row for group 16, 640 per double super-block for 32/64) must fit the AVX-512 loop's
// L1 budget (kSbXBytes, 24 KB) or every code row re-reads it from L2: a 128-token prompt through
// the row path ran 27-31 tok/s in one pass, 42-52 in passes of 32 or 64 rows (2026-12-07, Zen 5).
// Each pass reads the codes again, ~2 % of a pass's time at 32 rows on the Phi-3 shapes.
constexpr int64_t kRowsPerPass = 32;

// n rows of x (a batched decode step): each rounded to int8 as gemv_with does, then one pass over
// the codes for all of them where the path has a small-batch loop, else the GEMV per row.
void rows_with(const Kernel4& k, const Quantized4Tensor& q, const float* x, int64_t n, float* y) {
  const Views v = views(q);
  const int64_t in = q.in_features, out = q.out_features(), nb = v.n_blocks;
  thread_local std::vector<int8_t> xq;
  thread_local std::vector<float> dx;
  if (xq.size() < static_cast<size_t>(n * nb * 32)) xq.resize(static_cast<size_t>(n * nb * 32));
  if (dx.size() < static_cast<size_t>(n * nb)) dx.resize(static_cast<size_t>(n * nb));
  for (int64_t j = 0; j < n; ++j) kernels4::quantize_x(x + j * in, in, nb, xq.data() + j * nb * 32, dx.data() + j * nb);
  const int8_t* xqp = xq.data();
  const float* dxp = dx.data();
  parallel_rows(out, gemv4_grain(nb * 16), [&](int64_t b, int64_t e) {
    if (v.sub && k.gemv16_rows) {
      k.gemv16_rows(v.codes, nb, b, e, v.sub, v.st, v.lut, xqp, dxp, n, y + b, out);
    } else if (!v.sub && k.gemv_rows) {
      k.gemv_rows(v.codes, nb, v.group_blocks, b, e, v.scales, v.lut, xqp, dxp, n, y + b, out);
    } else {
      for (int64_t j = 0; j < n; ++j) {
        if (v.sub)
          k.gemv16(v.codes, nb, b, e, v.sub, v.st, v.lut, xqp + j * nb * 32, dxp + j * nb, y + j * out + b);
        else
          k.gemv(v.codes, nb, v.group_blocks, b, e, v.scales, v.lut, xqp + j * nb * 32, dxp + j * nb, y + j * out + b);
      }
    }
  });
}

}  // namespace

const char* kernel4_isa() { return active4_slot().load(std::memory_order_relaxed)->name; }

void set_kernel4_isa(const std::string& isa) {
  if (isa.empty() || isa == "auto") {
    active4_slot().store(best_kernel4());
    return;
  }
  const Kernel4* k = kernel4_by_name(isa);
  if (!k) throw std::invalid_argument("QINS-4 kernel path '" + isa + "' is not available on this CPU/build");
  active4_slot().store(k);
}

std::vector<std::string> available_kernel4_isas() {
  std::vector<std::string> out{"scalar"};
  for (const char* n : {"neon", "avx2", "avx512"})
    if (kernel4_by_name(n)) out.emplace_back(n);
  return out;
}

const char* prefill4_path() { return prefill4_slot().load(std::memory_order_relaxed) ? "bf16" : "fp32"; }

void set_prefill4_path(const std::string& path) {
  prefill4_slot().store(prefill4_by_name(path, "QINS-4 prefill path '" + path + "'"));
}

std::vector<std::string> available_prefill4_paths() {
  std::vector<std::string> out{"fp32"};
  if (bf16_prefill()) out.emplace_back("bf16");
  return out;
}

void qins4_gemv_reference(const Quantized4Tensor& q, const float* x, float* y) {
  gemv_with(kernels4::scalar_kernel4(), q, x, y);
}

void qins4_matmul(const Quantized4Tensor& q, const float* x, int64_t n_rows, float* y) {
  const Kernel4& k = *active4_slot().load(std::memory_order_relaxed);
  const int64_t out = q.out_features(), in = q.in_features;
  if (n_rows <= 0 || out == 0) return;
  if (n_rows == 1) {
    gemv_with(k, q, x, y);
    return;
  }
  const Views v = views(q);
  if (const kernels::Kernel* b = prefill4_slot().load(std::memory_order_relaxed)) {
    // Prefill in bf16: x packed as the 8-bit codes' GEMM reads it, each thread filling tiles of its
    // own rows from the codes (expand_row) and multiplying them (kernels_bf16.cpp).
    uint16_t* xb = thread_scratch<uint16_t, 20>(static_cast<size_t>(b->gemm_x_size(n_rows, in)));
    b->pack_gemm_x(x, n_rows, in, xb);
    const uint16_t* xbp = xb;
    const RowExpand ctx{&k, v, kernels4::expand_bf16_avx512()};
    kernels::RowSource src;
    src.row = expand_row;
    if (ctx.bf16) src.row_bf16 = expand_row_bf16;
    src.prefetch = prefetch_row;
    src.ctx = &ctx;
    at::parallel_for(0, out, 48,
                     [&](int64_t r0, int64_t r1) { b->gemm_rows_f32(src, in, r0, r1, xbp, n_rows, y, out); });
    return;
  }
  // Prefill: Y[:, tile] = X @ Wtile^T, 128 rows per tile (as the 8-bit path), tiled_prefill.h.
  tiled_prefill(x, n_rows, in, v.n_blocks * 32, out, std::min<int64_t>(out, 128), y,
                [&](int64_t r0, int64_t r1, float* tile) { expand_with(k, v, r0, r1, tile); });
}

Qins4LinearImpl::Qins4LinearImpl(Quantized4Tensor q, torch::Tensor bias) : q_(std::move(q)) {
  q_.validate("Qins4Linear");
  q_.codes = q_.codes.to(torch::kCPU).contiguous();
  q_.scales = q_.scales.to(torch::kCPU).contiguous();
  q_.lut = q_.lut.to(torch::kCPU).contiguous().view({-1});
  register_buffer("codes", q_.codes);
  register_buffer("scales", q_.scales);
  register_buffer("lut", q_.lut);
  if (q_.sub_table.defined()) {
    q_.sub_table = q_.sub_table.to(torch::kCPU).contiguous();
    register_buffer("sub_table", q_.sub_table);
  }
  if (bias.defined()) {
    TORCH_CHECK(bias.numel() == q_.out_features(), "Qins4Linear: bias must have ", q_.out_features(),
                " elements, got ", bias.numel());
    bias_ = register_buffer("bias", bias.to(torch::kCPU, torch::kFloat32).contiguous().view({-1}));
  }
}

std::shared_ptr<Qins4LinearImpl> Qins4LinearImpl::from_linear(const torch::Tensor& weight, const torch::Tensor& bias,
                                                              const Quantize4Options& opts) {
  return std::make_shared<Qins4LinearImpl>(quantize4(weight, opts), bias);
}

torch::Tensor Qins4LinearImpl::forward(const torch::Tensor& x) {
  TORCH_CHECK(x.dim() >= 1 && x.size(-1) == in_features(), "Qins4Linear: input last dim ",
              x.dim() >= 1 ? x.size(-1) : -1, " != in_features ", in_features());
  TORCH_CHECK(x.is_floating_point() && x.device().is_cpu(), "Qins4Linear: input must be a floating-point CPU tensor");
  const int64_t in = in_features(), out = out_features();
  const torch::Tensor x2 = x.reshape({-1, in}).to(torch::kFloat32).contiguous();  // [n, in] fp32
  const int64_t n = x2.size(0);
  torch::Tensor y = torch::empty({n, out}, torch::kFloat32);  // [n, out] fp32
  qins4_matmul(q_, x2.data_ptr<float>(), n, y.data_ptr<float>());
  if (bias_.defined()) y.add_(bias_);
  std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
  shape.back() = out;
  return y.view(shape).to(x.scalar_type());
}

void qins4_matmul_rows(const Quantized4Tensor& q, const float* x, int64_t n_rows, float* y) {
  const Kernel4& k = *active4_slot().load(std::memory_order_relaxed);
  if (n_rows <= 0 || q.out_features() == 0) return;
  if (n_rows == 1) {
    gemv_with(k, q, x, y);
    return;
  }
  // At most kRowsPerPass rows of x per pass over the codes (a prompt through the row path has many).
  for (int64_t j = 0; j < n_rows; j += kRowsPerPass)
    rows_with(k, q, x + j * q.in_features, std::min(kRowsPerPass, n_rows - j), y + j * q.out_features());
}

void Qins4LinearImpl::forward_row(const float* x, float* y) const {
  qins4_matmul(q_, x, 1, y);
  if (bias_.defined()) {
    const float* b = bias_.data_ptr<float>();
    for (int64_t i = 0, n = out_features(); i < n; ++i) y[i] += b[i];
  }
}

void Qins4LinearImpl::forward_rows(const float* x, int64_t n, float* y) const {
  qins4_matmul_rows(q_, x, n, y);
  if (bias_.defined()) {
    const float* b = bias_.data_ptr<float>();
    const int64_t out = out_features();
    for (int64_t r = 0; r < n; ++r)
      for (int64_t i = 0; i < out; ++i) y[r * out + i] += b[i];
  }
}

torch::Tensor Qins4LinearImpl::forward_reference(const torch::Tensor& x) {
  const torch::Tensor w = dequantize4(q_);  // [out, in] fp32
  return torch::linear(x.to(torch::kFloat32), w, bias_.defined() ? bias_ : torch::Tensor()).to(x.scalar_type());
}

}  // namespace qins::core
