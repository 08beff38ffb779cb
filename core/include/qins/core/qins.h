// The QINS number system: 8-bit codes (sign bit + 7-bit magnitude index j, j = 0 is exactly 0),
// value = sign * scale[row] * lut[j]. The codebook decides what lut holds and how scales are fitted.
#pragma once

#include <torch/torch.h>

#include <atomic>
#include <cstdint>
#include <string>

namespace qins::core {

enum class Codebook : uint8_t { Inverse = 0, Projective = 1, Uniform = 2 };

const char* codebook_name(Codebook cb);
Codebook codebook_from_name(const std::string& name);  // throws std::invalid_argument

struct QuantizeOptions {
  Codebook codebook = Codebook::Projective;
  double pole = 300.0;   // projective: the pole C of s*j/(C-j); <= 0 means fit per tensor by MSE
  int threads = 0;       // 0 = at::get_num_threads()
};

// One quantized matrix. Code byte: bit 7 = sign (1 = negative), bits 0..6 = magnitude index j.
struct QuantizedTensor {
  torch::Tensor codes;   // [out, in] uint8, contiguous
  torch::Tensor scales;  // [out] float32, per row
  torch::Tensor lut;     // [128] float32, per tensor; lut[0] == 0
  Codebook codebook = Codebook::Projective;
  double pole = 0.0;     // projective only (informative)
};

// The per-tensor table of a codebook: [128] fp32, lut[0] == 0, monotone, lut[127] == 1 (so the
// row scale is the largest representable magnitude). Inverse: 1/(128-j). Uniform: j/127.
// Projective: (j/(C-j)) / (127/(C-127)), i.e. s*j/(C-j) with s = scale*(C-127)/127. Needs C > 127.
torch::Tensor make_lut(Codebook cb, double pole = 300.0);

// Deterministic (same input, same bytes), multi-threaded over rows. `w`: [out, in], any float dtype.
QuantizedTensor quantize(const torch::Tensor& w, const QuantizeOptions& opts = {});
// Full fp32 matrix [out, in] (reference / tests / accuracy report only).
torch::Tensor dequantize(const QuantizedTensor& q);
// Only the requested rows, fp32 [ids.size(), in] (embedding lookup).
torch::Tensor dequantize_rows(const QuantizedTensor& q, const torch::Tensor& row_ids);
// One row into out[in] (fp32), no allocation; codes and scales must be contiguous CPU tensors.
// Throws std::out_of_range for a row outside [0, out).
void dequantize_row_into(const QuantizedTensor& q, int64_t row, float* out);

// An uninitialised CPU tensor for a large weight buffer: on Linux, buffers of 4 MiB and more get
// their own 2 MiB-aligned mapping, so that promote_to_huge_pages can later put every whole 2 MiB
// on one transparent huge page; otherwise the same as torch::empty. See core/src/large_buffer.cpp.
torch::Tensor empty_large(at::IntArrayRef shape, torch::ScalarType dtype);
// The same, filled with zeros: a fresh mapping is zero already and is not written, so its pages
// are only mapped (and counted in the resident memory) as they are first used; small buffers and
// other systems get torch::zeros.
torch::Tensor zeros_large(at::IntArrayRef shape, torch::ScalarType dtype);
// Collapses the tensor's memory onto huge pages in place (Linux MADV_COLLAPSE, in 32 MiB pieces,
// stopping early when *cancel turns true). Streaming the weights is ~1.5x faster afterwards on
// this machine. Returns the bytes collapsed (0 where unsupported, or with QINS_HUGEPAGES=0).
int64_t promote_to_huge_pages(const torch::Tensor& t, const std::atomic<bool>* cancel = nullptr);
bool huge_pages_enabled();  // false when QINS_HUGEPAGES=0

// Weight error statistics.
struct ErrorStats {
  double sqnr_db = 0.0;       // 10 log10(|W|^2 / |W-Q|^2)
  double rel_error = 0.0;     // |W-Q| / |W|
};
ErrorStats measure_error(const torch::Tensor& w, const QuantizedTensor& q);

}  // namespace qins::core
