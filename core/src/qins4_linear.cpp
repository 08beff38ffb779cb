// Qins4Linear and the QINS-4 kernel dispatch: batch 1 -> x rounded to int8 per 32 columns, then
// the integer lookup GEMV over blocks of rows in parallel; many rows -> expand a tile of rows to
// fp32 and GEMM it (the same tiling as the 8-bit path, core/src/projective_linear.cpp).
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
  // Prefill: Y[:, tile] = X @ Wtile^T, 128 rows per tile (as the 8-bit path), tiled_prefill.h.
  const Views v = views(q);
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
  rows_with(k, q, x, n_rows, y);
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
