// ProjectiveLinear and the kernel dispatch: batch 1 -> fused lookup GEMV over row blocks,
// many rows -> expand a tile of rows into an L2-sized fp32 buffer and GEMM it.
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <stdexcept>
#include <vector>

#include "qins/core/projective_linear.h"

#include "qins/core/blas_threads.h"
#include "qins/core/device_expand.h"
#include "parallel_rows.h"
#include "qins_kernels.h"
#include "thread_scratch.h"
#include "tiled_prefill.h"

namespace qins::core {

namespace {

using kernels::Kernel;

const Kernel* kernel_by_name(const std::string& name) {
  if (name == "scalar") return &kernels::scalar_kernel();
  if (name == "avx2") return kernels::avx2_kernel();
  if (name == "avx512") return kernels::avx512_kernel();
  if (name == "avx512bf16") return kernels::avx512bf16_kernel();
  if (name == "neon") return kernels::neon_kernel();
  return nullptr;
}

// The bf16 kernel first: ~2x the exact AVX-512 kernel's decode speed and a real GEMM for prefill,
// at a precision cost far below the 8-bit code's own (docs/qins.md); QINS_KERNEL=avx512 keeps
// every product exact in fp32.
const Kernel* best_kernel() {
  if (const Kernel* k = kernels::avx512bf16_kernel()) return k;
  if (const Kernel* k = kernels::avx512_kernel()) return k;
  if (const Kernel* k = kernels::avx2_kernel()) return k;
  if (const Kernel* k = kernels::neon_kernel()) return k;
  return &kernels::scalar_kernel();
}

const Kernel* initial_kernel() {
  const char* env = std::getenv("QINS_KERNEL");
  if (env && *env && std::string(env) != "auto") {
    if (const Kernel* k = kernel_by_name(env)) return k;
    throw std::invalid_argument(std::string("QINS_KERNEL=") + env +
                                ": not available on this CPU/build (use scalar, avx2, avx512, avx512bf16, neon or auto)");
  }
  return best_kernel();
}

std::atomic<const Kernel*>& active_slot() {
  static std::atomic<const Kernel*> slot{initial_kernel()};
  return slot;
}

const Kernel& active_kernel() { return *active_slot().load(std::memory_order_relaxed); }

// Rows per GEMM tile: wide enough for the GEMM to run at full speed (measured: 128 rows at
// in = 3072 and 8192 match an untiled fp32 GEMM; 16-32 rows were ~1.5x slower), small enough that
// the expanded tile (1.5-4 MB) is nothing next to a full fp32 matrix.
// Rows per task of a batch-1 GEMV: ~4096 x 64 bytes of codes, at least 16 rows.
int64_t gemv_grain(int64_t in) { return std::max<int64_t>(16, 4096 / std::max<int64_t>(in / 64, 1)); }

int64_t tile_rows(int64_t in) {
  (void)in;
  return 128;
}

}  // namespace

const char* kernel_isa() { return active_kernel().name; }

bool kernel_uses_bf16() { return active_kernel().pack_x != nullptr; }

int parallel_threads_used() {
  std::vector<std::atomic<int>> hit(static_cast<size_t>(std::max(1, at::get_num_threads())));
  for (auto& h : hit) h = 0;
  // One item per thread (grain 1): each thread of the region marks its slot.
  at::parallel_for(0, static_cast<int64_t>(hit.size()), 1, [&](int64_t, int64_t) {
    const int t = at::get_thread_num();
    if (t >= 0 && t < static_cast<int>(hit.size())) hit[static_cast<size_t>(t)] = 1;
  });
  int n = 0;
  for (auto& h : hit) n += h.load();
  return n;
}

void set_kernel_isa(const std::string& isa) {
  if (isa.empty() || isa == "auto") {
    active_slot().store(best_kernel());
    return;
  }
  const Kernel* k = kernel_by_name(isa);
  if (!k) throw std::invalid_argument("kernel path '" + isa + "' is not available on this CPU/build");
  active_slot().store(k);
}

std::vector<std::string> available_kernel_isas() {
  std::vector<std::string> out{"scalar"};
  for (const char* n : {"neon", "avx2", "avx512", "avx512bf16"})
    if (kernel_by_name(n)) out.emplace_back(n);
  return out;
}

namespace {
void check_kernel_operands(const QuantizedTensor& q) {
  TORCH_CHECK(q.codes.device().is_cpu() && q.codes.is_contiguous() && q.codes.dim() == 2 &&
                  q.codes.scalar_type() == torch::kUInt8,
              "qins_matmul: codes must be contiguous CPU [out, in] uint8");
  TORCH_CHECK(q.scales.device().is_cpu() && q.scales.is_contiguous() && q.scales.numel() == q.codes.size(0),
              "qins_matmul: scales must be contiguous CPU [out] float32");
  TORCH_CHECK(q.lut.device().is_cpu() && q.lut.is_contiguous() && q.lut.numel() == 128,
              "qins_matmul: lut must be contiguous CPU [128] float32");
}
}  // namespace

void qins_matmul_rows(const QuantizedTensor& q, const float* x, int64_t n_rows, float* y) {
  const Kernel& k = active_kernel();
  check_kernel_operands(q);
  const int64_t out = q.codes.size(0), in = q.codes.size(1);
  if (n_rows <= 0 || out == 0) return;
  if (n_rows == 1 || !k.gemv_rows) {
    for (int64_t r = 0; r < n_rows; ++r) qins_matmul(q, x + r * in, 1, y + r * out);
    return;
  }
  const uint8_t* codes = q.codes.data_ptr<uint8_t>();
  const float* scales = q.scales.data_ptr<float>();
  kernels::LutTables t;
  kernels::build_tables(q.lut.data_ptr<float>(), &t);
  // x as the kernel's gemv reads it, row by row (per-thread scratch, reused: no heap allocation
  // per step after warm-up; the parallel loop gets a raw pointer).
  const void* xk = nullptr;
  if (k.pack_x) {
    uint16_t* xb = thread_scratch<uint16_t, 10>(static_cast<size_t>(n_rows * in));
    for (int64_t r = 0; r < n_rows; ++r) k.pack_x(x + r * in, in, xb + r * in);
    xk = xb;
  } else {
    float* xr = thread_scratch<float, 10>(static_cast<size_t>(n_rows * in));
    for (int64_t r = 0; r < n_rows; ++r) kernels::to_kernel_order(k.order, x + r * in, in, xr + r * in);
    xk = xr;
  }
  // Like the GEMV: each thread streams a contiguous block of code rows once, for all rows of x.
  parallel_rows(out, gemv_grain(in), [&](int64_t b, int64_t e) {
    k.gemv_rows(codes, in, b, e, scales, t, xk, n_rows, y + b, out);
  });
}

void qins_matmul(const QuantizedTensor& q, const float* x, int64_t n_rows, float* y) {
  const Kernel& k = active_kernel();
  check_kernel_operands(q);
  const int64_t out = q.codes.size(0), in = q.codes.size(1);
  const uint8_t* codes = q.codes.data_ptr<uint8_t>();
  const float* scales = q.scales.data_ptr<float>();
  kernels::LutTables t;
  kernels::build_tables(q.lut.data_ptr<float>(), &t);
  if (n_rows <= 0 || out == 0) return;

  if (k.pack_x) {
    // bf16 kernels: x rounded to bf16 once per call, in the kernel's layout (per-thread scratch,
    // reused: no heap allocation per token after warm-up). The parallel loops below get raw
    // pointers: inside them a thread_local name would mean the worker thread's own (empty) copy.
    if (n_rows == 1) {
      uint16_t* xb = thread_scratch<uint16_t, 11>(static_cast<size_t>(in));
      k.pack_x(x, in, xb);
      const uint16_t* xbp = xb;
      parallel_rows(out, gemv_grain(in), [&](int64_t b, int64_t e) {
        k.gemv(codes, in, b, e, scales, t, xbp, y + b);
      });
      return;
    }
    // Prefill: each thread expands tiles of its own rows to bf16 and runs the blocked GEMM.
    const int64_t need = k.gemm_x_size(n_rows, in);
    uint16_t* xb = thread_scratch<uint16_t, 11>(static_cast<size_t>(need));
    k.pack_gemm_x(x, n_rows, in, xb);
    const uint16_t* xbp = xb;
    at::parallel_for(0, out, 48, [&](int64_t b, int64_t e) {
      k.gemm(codes, in, b, e, scales, t, xbp, n_rows, y, out);
    });
    return;
  }

  // x rows in the kernel's element order (a permutation inside 64-column blocks for AVX-512).
  // Per-thread scratch, reused across calls: no heap allocation per decoded token after warm-up.
  // The parallel loops take raw pointers (a thread_local name inside them is the worker's copy).
  float* xp = thread_scratch<float, 11>(static_cast<size_t>(n_rows * in));  // [n, in] fp32, kernel order
  for (int64_t r = 0; r < n_rows; ++r) kernels::to_kernel_order(k.order, x + r * in, in, xp + r * in);

  const float* xpp = xp;
  if (n_rows == 1) {
    // Decoding: memory-bound, each thread streams a contiguous block of code rows once.
    parallel_rows(out, gemv_grain(in), [&](int64_t b, int64_t e) {
      k.gemv(codes, in, b, e, scales, t, xpp, y + b);
    });
    return;
  }

  // Prefill: Y[:, tile] = Xp @ Wtile^T, tile by tile: expand the tile (kernel order, scale
  // applied) into a buffer, then one GEMM (tiled_prefill.h).
  tiled_prefill(xpp, n_rows, in, in, out, std::min(out, tile_rows(in)), y, [&](int64_t r0, int64_t r1, float* tile) {
    k.expand(codes, in, r0, r1, scales, t, tile);
  });
}

ProjectiveLinearImpl::ProjectiveLinearImpl(QuantizedTensor q, torch::Tensor bias) : q_(std::move(q)) {
  TORCH_CHECK(q_.codes.defined() && q_.codes.dim() == 2 && q_.codes.scalar_type() == torch::kUInt8,
              "ProjectiveLinear: codes must be [out, in] uint8");
  TORCH_CHECK(q_.scales.defined() && q_.scales.numel() == q_.codes.size(0) &&
                  q_.scales.scalar_type() == torch::kFloat32,
              "ProjectiveLinear: scales must be [out] float32");
  TORCH_CHECK(q_.lut.defined() && q_.lut.numel() == 128 && q_.lut.scalar_type() == torch::kFloat32,
              "ProjectiveLinear: lut must be [128] float32");
  q_.codes = q_.codes.to(torch::kCPU).contiguous();
  q_.scales = q_.scales.to(torch::kCPU).contiguous().view({-1});
  q_.lut = q_.lut.to(torch::kCPU).contiguous().view({-1});
  register_buffer("codes", q_.codes);
  register_buffer("scales", q_.scales);
  register_buffer("lut", q_.lut);
  if (bias.defined()) {
    TORCH_CHECK(bias.numel() == q_.codes.size(0), "ProjectiveLinear: bias must have ", q_.codes.size(0),
                " elements, got ", bias.numel());
    bias_ = register_buffer("bias", bias.to(torch::kCPU, torch::kFloat32).contiguous().view({-1}));
  }
}

std::shared_ptr<ProjectiveLinearImpl> ProjectiveLinearImpl::from_linear(const torch::Tensor& weight,
                                                                        const torch::Tensor& bias,
                                                                        const QuantizeOptions& opts) {
  return std::make_shared<ProjectiveLinearImpl>(quantize(weight, opts), bias);
}

torch::Tensor ProjectiveLinearImpl::forward(const torch::Tensor& x) {
  TORCH_CHECK(x.dim() >= 1 && x.size(-1) == in_features(), "ProjectiveLinear: input last dim ",
              x.dim() >= 1 ? x.size(-1) : -1, " != in_features ", in_features());
  TORCH_CHECK(x.is_floating_point(), "ProjectiveLinear: input must be floating point");
  if (!x.device().is_cpu()) return forward_on_device(x);
  const int64_t in = in_features(), out = out_features();
  const torch::Tensor x2 = x.reshape({-1, in}).to(torch::kFloat32).contiguous();  // [n, in] fp32
  const int64_t n = x2.size(0);
  torch::Tensor y = torch::empty({n, out}, torch::kFloat32);  // [n, out] fp32
  qins_matmul(q_, x2.data_ptr<float>(), n, y.data_ptr<float>());
  if (bias_.defined()) y.add_(bias_);
  std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
  shape.back() = out;
  return y.view(shape).to(x.scalar_type());
}

void ProjectiveLinearImpl::forward_row(const float* x, float* y) const {
  qins_matmul(q_, x, 1, y);
  if (bias_.defined()) {
    const float* b = bias_.data_ptr<float>();
    for (int64_t i = 0, n = out_features(); i < n; ++i) y[i] += b[i];
  }
}

void ProjectiveLinearImpl::forward_rows(const float* x, int64_t n, float* y) const {
  qins_matmul_rows(q_, x, n, y);
  if (bias_.defined()) {
    const float* b = bias_.data_ptr<float>();
    const int64_t out = out_features();
    for (int64_t r = 0; r < n; ++r)
      for (int64_t i = 0; i < out; ++i) y[r * out + i] += b[i];
  }
}

// A non-CPU input (MPS / CUDA): codes, scales and the signed table are copied to the device once;
// each call expands this layer's weight there in x's dtype through the signed table (int32
// indices, one gather; core/device_expand.h) and calls torch::linear. The engine's device graph
// uses qins::DeviceQinsLinear instead (a scratch buffer shared by the layers); this keeps a lone
// module usable on a device.
torch::Tensor ProjectiveLinearImpl::forward_on_device(const torch::Tensor& x) {
  const auto dt = x.scalar_type();
  if (!dev_codes_.defined() || dev_codes_.device() != x.device() || dev_lut_.scalar_type() != dt) {
    dev_codes_ = q_.codes.to(x.device());
    dev_scales_ = q_.scales.to(x.device(), dt);
    dev_lut_ = signed_table(q_, dt, x.device());  // [256] signed
    dev_bias_ = bias_.defined() ? bias_.to(x.device(), dt) : torch::Tensor();
  }
  const torch::Tensor w = expand_rows(dev_codes_, dev_lut_, dev_scales_);  // [out, in] in x's dtype
  return torch::linear(x, w, dev_bias_);
}

torch::Tensor ProjectiveLinearImpl::forward_reference(const torch::Tensor& x) {
  const torch::Tensor w = dequantize().to(x.device());  // [out, in] fp32
  const torch::Tensor b = bias_.defined() ? bias_.to(x.device()) : torch::Tensor();
  return torch::linear(x.to(torch::kFloat32), w, b).to(x.scalar_type());
}

torch::Tensor ProjectiveLinearImpl::dequantize() const { return core::dequantize(q_); }

int64_t ProjectiveLinearImpl::weight_bytes() const {
  int64_t bytes = q_.codes.numel() + q_.scales.numel() * 4 + q_.lut.numel() * 4;
  if (bias_.defined()) bytes += bias_.numel() * 4;
  return bytes;
}

}  // namespace qins::core
