// Simulated llama.cpp weight formats for `qins eval`: quantize then dequantize a matrix the way
// each GGML format stores it (written from the published block layouts, not from llama.cpp's
// code), so QINS codes can be compared with them on the same weights and the same text.
//
// - q4_0: blocks of 32, one fp16 scale d = (the value of largest magnitude) / -8, codes 0..15,
//         value (q - 8) d. 4.5 bits per weight.
// - q4_1: blocks of 32, fp16 scale d = (max - min) / 15 and fp16 min m, value q d + m. 5.0 bpw.
// - q4_k: super-blocks of 256 = 8 sub-blocks of 32; each sub-block a scale and a min (fitted by a
//         weighted least-squares search), both quantized to 6 bits against the super-block's fp16
//         d and dmin; value d sc q - dmin m, q in 0..15. 4.5 bpw.
// - q8_0: blocks of 32, fp16 scale d = absmax / 127, codes -127..127. 8.5 bpw.
// Rows whose length is not a multiple of the block are padded with zeros for the fit (what a GGML
// row cannot be: llama.cpp refuses such tensors; the padding only matters for tests' odd shapes).
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

namespace qins {

// The names above. Throws qins::Error for any other.
torch::Tensor simulate_gguf(const std::string& format, const torch::Tensor& w);  // [out, in] -> fp32 [out, in]
double gguf_bits_per_weight(const std::string& format);
const std::vector<std::string>& gguf_formats();  // {"q4_0", "q4_1", "q4_k", "q8_0"}

}  // namespace qins
