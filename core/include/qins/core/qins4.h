// QINS-4: the 4-bit lookup-table code. Each weight is a 4-bit index k into a per-tensor signed
// table of 16 int8 levels; each group of `group` consecutive weights of a row has one fp16 scale:
//   w[r, i] = scale[r, i / group] * lut[code(r, i)]          (lut int8 in [-127, 127])
// At group 32: 4 + 16/32 = 4.5 bits per weight (plus 16 bytes per tensor); group 64: 4.25.
// Group 16 stores one 8-bit log-scale code per group of 16 and one fp32 `top` per tensor:
// scale[r, g] = sub_table[sub[r, g]], sub_table[k] = top * 2^((k - 255) / 16) for k >= 1 and
// sub_table[0] = 0 (steps of 4.4 %, a range of 2^15.9): 4 + 8/16 = 4.5 bits per weight plus 4
// bytes per tensor. Finer groups at the same bits: on the demo model it measured a lower KL than
// group 32 with fp16 scales (docs/qins.md).
//
// Layout of one row: the columns are padded to a multiple of `group` (padding codes are 0 and
// never contribute: kernels pad x with zeros). Every 32-column block is 16 bytes; byte b holds
// column b in its low nibble and column b + 16 in its high nibble (one 16-byte load gives the
// block's 32 weights with one nibble split, in natural order).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

namespace qins::core {

// How the 16-entry table is fitted (on the tensor's weights divided by their group's absmax).
enum class Table4 : uint8_t {
  Lloyd = 0,       // Lloyd-Max (1-D k-means, weighted by the group scales), started from Projective
  Projective = 1,  // the projective family mirrored: sign(p) |p|/(C-|p|), p = +-0.5..+-7.5, C fitted
  Uniform = 2,     // 16 evenly spaced levels (what Q4_0's -8..7 is, made symmetric)
};
const char* table4_name(Table4 t);
Table4 table4_from_name(const std::string& name);  // throws std::invalid_argument

struct Quantize4Options {
  Table4 table = Table4::Lloyd;
  int group = 32;             // 16 (8-bit sub-scales + a row scale), 32 or 64 (fp16 scales) columns per scale
  bool refine_scales = true;  // per-group scale search by squared error (off: absmax only, fast)
  int threads = 0;            // 0 = at::get_num_threads()
};

struct Quantized4Tensor {
  torch::Tensor codes;   // [out, in_pad / 2] uint8, nibble-packed (see the layout above)
  torch::Tensor scales;      // [out, in_pad / group]: float16 (group 32, 64) or uint8 sub-scales (group 16)
  torch::Tensor lut;         // [16] int8, the signed levels
  torch::Tensor sub_table;   // [256] float32, group 16 only (undefined otherwise): sub_scale_table(top)
  int64_t in_features = 0;
  int group = 32;
  Table4 table = Table4::Lloyd;

  int64_t out_features() const { return codes.defined() ? codes.size(0) : 0; }
  int64_t padded_in() const { return codes.defined() ? codes.size(1) * 2 : 0; }
  bool sub_scales() const { return group == 16; }
  // codes + scales + table (+ group 16's top), in bytes: what a file stores.
  int64_t bytes() const;
  // Checks shapes, dtypes, group and table against each other; throws std::invalid_argument
  // naming `what` and the problem.
  void validate(const std::string& what) const;
};

// Deterministic (same input and options, same bytes; threads do not change the result).
Quantized4Tensor quantize4(const torch::Tensor& w, const Quantize4Options& opts = {});
// The slow twin: the full fp32 matrix [out, in] (reference, tests, accuracy report).
torch::Tensor dequantize4(const Quantized4Tensor& q);
// Group 16's table of scales for its 8-bit codes: [256] float32, [0] = 0, [k] = top * 2^((k - 255) / 16).
torch::Tensor sub_scale_table(float top);
// The scale of group g of a row (fp16, or sub_table[code] for group 16); CPU tensors.
float group_scale4(const Quantized4Tensor& q, int64_t row, int64_t g);
// One row into out[in] fp32; throws std::out_of_range for a row outside [0, out).
void dequantize4_row_into(const Quantized4Tensor& q, int64_t row, float* out);

// y[n, out] = x[n, in] W^T, fp32. n == 1 (decode): x is rounded to int8 per block of 32 columns
// (one fp32 scale per block, as llama.cpp's Q8 activations) and the kernels take integer dot
// products; n > 1 (prefill): tiles of rows are expanded to fp32, then multiplied by the BLAS
// (prefill path "fp32", exact) or rounded to bf16 with x and multiplied by the 8-bit codes' bf16
// GEMM ("bf16": each product off by at most ~2^-8 relative, far below the 4-bit code's own error).
void qins4_matmul(const Quantized4Tensor& q, const float* x, int64_t n_rows, float* y);
// The batch-1 path computed by the scalar twin with the same int8 rounding of x (tests compare
// every SIMD path to this).
void qins4_gemv_reference(const Quantized4Tensor& q, const float* x, float* y);
// The small-batch decode path: y[n, out] for n independent rows of x (one token of each of n
// sequences). Row i is bit for bit what qins4_matmul(q, x + i * in, 1, ...) (the int8 GEMV) gives
// it; where the kernel path has a small-batch loop (AVX2, AVX-512, NEON) each code is looked up once
// for several rows at a time (passes of at most 32 rows over the codes), elsewhere the GEMV runs once
// per row. (Not the prefill GEMM, which rounds differently: exact fp32, or bf16.)
void qins4_matmul_rows(const Quantized4Tensor& q, const float* x, int64_t n_rows, float* y);

// Kernel paths for QINS-4: "scalar", "avx2", "avx512" (AVX-512BW), "neon". The default is the best
// this CPU runs; QINS_KERNEL4=<name> sets the initial choice.
const char* kernel4_isa();
void set_kernel4_isa(const std::string& isa);  // "" or "auto" = best; throws std::invalid_argument
std::vector<std::string> available_kernel4_isas();

// The prefill GEMM of QINS-4 (n > 1 in qins4_matmul): "bf16" where the CPU has AVX512-BF16 (the
// default there: the 8-bit codes' GEMM), else "fp32" (expand + BLAS). QINS_PREFILL4=<name> sets
// the initial choice; set_prefill4_path("" or "auto") the best; an unavailable name throws
// std::invalid_argument.
const char* prefill4_path();
void set_prefill4_path(const std::string& path);
std::vector<std::string> available_prefill4_paths();

// A linear layer over QINS-4 codes, with the interfaces of ProjectiveLinear.
class Qins4LinearImpl : public torch::nn::Module {
 public:
  Qins4LinearImpl() = default;
  explicit Qins4LinearImpl(Quantized4Tensor q, torch::Tensor bias = {});
  static std::shared_ptr<Qins4LinearImpl> from_linear(const torch::Tensor& weight, const torch::Tensor& bias = {},
                                                      const Quantize4Options& opts = {});

  // x: [..., in] float32 or bfloat16 (CPU) -> [..., out], same dtype.
  torch::Tensor forward(const torch::Tensor& x);
  // One row, fp32 in and out (the decode step): y[out] = W x[in] (+ bias).
  void forward_row(const float* x, float* y) const;
  // n such rows (a batched decode step): row i of y is exactly forward_row(x + i * in)
  // (qins4_matmul_rows).
  void forward_rows(const float* x, int64_t n, float* y) const;
  // dequantize4() then torch::linear: the slow twin.
  torch::Tensor forward_reference(const torch::Tensor& x);
  torch::Tensor dequantize() const { return dequantize4(q_); }
  const torch::Tensor& bias() const { return bias_; }
  const Quantized4Tensor& quantized() const { return q_; }
  int64_t in_features() const { return q_.in_features; }
  int64_t out_features() const { return q_.out_features(); }
  int64_t weight_bytes() const { return q_.bytes() + (bias_.defined() ? bias_.numel() * 4 : 0); }

 private:
  Quantized4Tensor q_;
  torch::Tensor bias_;  // [out] fp32 or undefined
};
TORCH_MODULE(Qins4Linear);

}  // namespace qins::core
