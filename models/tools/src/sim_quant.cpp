// Simulated GGML formats (see qins/tools/sim_quant.h): per block, the stored values are rounded
// exactly as the format stores them (fp16 scales, 6-bit sub-scales), then expanded to fp32.
#include "qins/tools/sim_quant.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "qins/util/errors.h"

namespace qins {

namespace {

float fp16(float v) { return static_cast<float>(c10::Half(v)); }

int nearest_int(float v) { return static_cast<int>(std::nearbyint(v)); }

void q4_0_block(const float* x, float* y) {
  float amax = 0.f, max = 0.f;
  for (int i = 0; i < 32; ++i)
    if (std::fabs(x[i]) > amax) amax = std::fabs(x[i]), max = x[i];
  const float d = fp16(max / -8.f);
  const float id = d != 0.f ? 1.f / d : 0.f;
  for (int i = 0; i < 32; ++i) {
    const int q = std::clamp(nearest_int(x[i] * id) + 8, 0, 15);
    y[i] = static_cast<float>(q - 8) * d;
  }
}

void q4_1_block(const float* x, float* y) {
  float mn = x[0], mx = x[0];
  for (int i = 1; i < 32; ++i) mn = std::min(mn, x[i]), mx = std::max(mx, x[i]);
  const float d = fp16((mx - mn) / 15.f), m = fp16(mn);
  const float id = d != 0.f ? 1.f / d : 0.f;
  for (int i = 0; i < 32; ++i) {
    const int q = std::clamp(nearest_int((x[i] - m) * id), 0, 15);
    y[i] = static_cast<float>(q) * d + m;
  }
}

void q8_0_block(const float* x, float* y) {
  float amax = 0.f;
  for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[i]));
  const float d = fp16(amax / 127.f);
  const float id = d != 0.f ? 1.f / d : 0.f;
  for (int i = 0; i < 32; ++i) y[i] = static_cast<float>(std::clamp(nearest_int(x[i] * id), -127, 127)) * d;
}

// One sub-block of 32: value = scale * q + offset (offset <= 0), q in 0..15, weights
// w_i = rms(x) + |x_i|. Tries 21 inverse scales around 15 / (max - min); for each assignment the
// weighted least-squares (scale, offset). Returns scale >= 0 and min = -offset >= 0.
void fit_scale_min(const float* x, float* scale, float* min_out) {
  float mn = x[0], mx = x[0], sum_x2 = 0.f;
  for (int i = 0; i < 32; ++i) mn = std::min(mn, x[i]), mx = std::max(mx, x[i]), sum_x2 += x[i] * x[i];
  mn = std::min(mn, 0.f);
  if (mx <= mn) {
    *scale = 0.f;
    *min_out = -mn;
    return;
  }
  const float av = std::sqrt(sum_x2 / 32.f);
  float w[32];
  for (int i = 0; i < 32; ++i) w[i] = av + std::fabs(x[i]);
  auto err_of = [&](float s, float off) {
    double e = 0;
    const float is = s > 0 ? 1.f / s : 0.f;
    for (int i = 0; i < 32; ++i) {
      const int q = std::clamp(nearest_int((x[i] - off) * is), 0, 15);
      const float d = s * static_cast<float>(q) + off - x[i];
      e += static_cast<double>(w[i]) * d * d;
    }
    return e;
  };
  float best_s = (mx - mn) / 15.f, best_off = mn;
  double best = err_of(best_s, best_off);
  for (int step = 0; step <= 20; ++step) {
    const float iscale = (-1.f + 0.1f * static_cast<float>(step) + 15.f) / (mx - mn);
    double sw = 0, sl = 0, sl2 = 0, sx = 0, slx = 0;
    for (int i = 0; i < 32; ++i) {
      const int q = std::clamp(nearest_int(iscale * (x[i] - mn)), 0, 15);
      sw += w[i], sl += w[i] * q, sl2 += w[i] * q * q, sx += w[i] * x[i], slx += w[i] * q * x[i];
    }
    const double det = sw * sl2 - sl * sl;
    if (det <= 0) continue;
    double s = (sw * slx - sx * sl) / det, off = (sl2 * sx - sl * slx) / det;
    if (off > 0) off = 0, s = sl2 > 0 ? slx / sl2 : 0;
    if (s <= 0) continue;
    const double e = err_of(static_cast<float>(s), static_cast<float>(off));
    if (e < best) best = e, best_s = static_cast<float>(s), best_off = static_cast<float>(off);
  }
  *scale = best_s;
  *min_out = -best_off;
}

void q4_k_superblock(const float* x, float* y) {
  float sc[8], mn[8];
  for (int j = 0; j < 8; ++j) fit_scale_min(x + 32 * j, &sc[j], &mn[j]);
  const float max_sc = *std::max_element(sc, sc + 8), max_mn = *std::max_element(mn, mn + 8);
  const float d = fp16(max_sc / 63.f), dmin = fp16(max_mn / 63.f);
  for (int j = 0; j < 8; ++j) {
    const int ls = d > 0 ? std::clamp(nearest_int(sc[j] / d), 0, 63) : 0;
    const int lm = dmin > 0 ? std::clamp(nearest_int(mn[j] / dmin), 0, 63) : 0;
    const float s = d * static_cast<float>(ls), m = dmin * static_cast<float>(lm);
    const float is = s > 0 ? 1.f / s : 0.f;
    for (int i = 0; i < 32; ++i) {
      const float v = x[32 * j + i];
      const int q = std::clamp(nearest_int((v + m) * is), 0, 15);
      y[32 * j + i] = s * static_cast<float>(q) - m;
    }
  }
}

}  // namespace

const std::vector<std::string>& gguf_formats() {
  static const std::vector<std::string> f{"q4_0", "q4_1", "q4_k", "q8_0"};
  return f;
}

double gguf_bits_per_weight(const std::string& format) {
  if (format == "q4_0") return 4.5;
  if (format == "q4_1") return 5.0;
  if (format == "q4_k") return 4.5;
  if (format == "q8_0") return 8.5;
  throw Error("unknown simulated format '" + format + "' (expected q4_0, q4_1, q4_k or q8_0)");
}

torch::Tensor simulate_gguf(const std::string& format, const torch::Tensor& w_in) {
  gguf_bits_per_weight(format);  // checks the name
  if (!w_in.defined() || w_in.dim() != 2) throw Error("simulate " + format + ": expected a [out, in] matrix");
  const int64_t block = format == "q4_k" ? 256 : 32;
  const int64_t out = w_in.size(0), in = w_in.size(1), in_pad = (in + block - 1) / block * block;
  torch::Tensor w = torch::zeros({out, in_pad}, torch::kFloat32);  // [out, in_pad], zero padding
  w.narrow(1, 0, in).copy_(w_in.to(torch::kFloat32));
  torch::Tensor y = torch::empty({out, in_pad}, torch::kFloat32);
  const float* wp = w.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  void (*fn)(const float*, float*) = format == "q4_0" ? q4_0_block
                                     : format == "q4_1" ? q4_1_block
                                     : format == "q4_k" ? q4_k_superblock
                                                        : q8_0_block;
  at::parallel_for(0, out, std::max<int64_t>(1, 65536 / in_pad), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t b = 0; b < in_pad; b += block) fn(wp + r * in_pad + b, yp + r * in_pad + b);
  });
  return y.narrow(1, 0, in).contiguous();
}

}  // namespace qins
