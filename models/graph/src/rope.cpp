// Rotary position embedding (PHI3.md §3): LongRoPE's frequencies, the cos/sin tables and the
// half-split rotation, batched over tensors and per head row for the decode step.
#include <cmath>

#include "graph_ops.h"

namespace qins {

bool rope_needs_long(const Phi3Config& c, int64_t max_pos) {
  return c.has_longrope() && max_pos + 1 > c.original_max_position_embeddings;
}

torch::Tensor rope_inv_freq(const Phi3Config& c, bool long_factors) {
  const int64_t half = c.rotary_dim / 2;
  // theta^(2j / rotary_dim), computed in fp32 as the reference does.
  auto exponent = torch::arange(0, c.rotary_dim, 2, torch::kInt64).to(torch::kFloat32) / static_cast<float>(c.rotary_dim);
  auto base = torch::pow(static_cast<float>(c.rope_theta), exponent);  // [half] f32
  torch::Tensor ext = torch::ones({half}, torch::kFloat32);
  if (c.has_longrope()) {
    const auto& f = long_factors ? c.long_factor : c.short_factor;
    ext = torch::from_blob(const_cast<float*>(f.data()), {half}, torch::kFloat32).clone();
  }
  return 1.0f / (ext * base);
}

RopeTables rope_tables(const Phi3Config& c, const torch::Tensor& positions, bool long_factors) {
  auto inv_freq = rope_inv_freq(c, long_factors);                                  // [half] f32
  auto freqs = positions.to(torch::kFloat32).unsqueeze(1) * inv_freq.unsqueeze(0);  // [T, half]
  auto emb = torch::cat({freqs, freqs}, 1);                                          // [T, rotary_dim]
  const auto factor = static_cast<float>(c.attention_factor);
  return {emb.cos() * factor, emb.sin() * factor};
}

namespace graph_detail {

// Half-split rotation: dim j pairs with dim j + rotary_dim/2. x: [B, H, T, head_dim].
torch::Tensor apply_rope(const torch::Tensor& x, const RopeTables& rope, int64_t rotary_dim) {
  const int64_t half = rotary_dim / 2;
  auto xf = x.to(torch::kFloat32);
  auto rot = xf.narrow(-1, 0, rotary_dim);
  auto x1 = rot.narrow(-1, 0, half);
  auto x2 = rot.narrow(-1, half, half);
  auto rotate_half = torch::cat({-x2, x1}, -1);
  auto out = rot * rope.cos + rotate_half * rope.sin;  // cos/sin [T, rotary_dim] broadcast
  if (rotary_dim < x.size(-1)) out = torch::cat({out, xf.narrow(-1, rotary_dim, x.size(-1) - rotary_dim)}, -1);
  return out.to(x.scalar_type());
}

// cos/sin [T, half] (attention factor applied) for positions q0 .. q0+T-1 from inv_freq [half],
// computed the way rope_tables does it (fp32 throughout).
void rope_rows_from(const float* inv, float factor, int64_t q0, int64_t T, int64_t half, float* cos_tab,
                    float* sin_tab) {
  for (int64_t t = 0; t < T; ++t)
    for (int64_t j = 0; j < half; ++j) {
      const float f = static_cast<float>(q0 + t) * inv[j];
      cos_tab[t * half + j] = std::cos(f) * factor;
      sin_tab[t * half + j] = std::sin(f) * factor;
    }
}

void rope_rows(const Phi3Config& c, bool long_rope, int64_t q0, int64_t T, std::vector<float>& cos_tab,
               std::vector<float>& sin_tab) {
  const int64_t half = c.rotary_dim / 2;
  const auto inv = rope_inv_freq(c, long_rope);  // [half] f32
  cos_tab.resize(static_cast<size_t>(T * half));
  sin_tab.resize(static_cast<size_t>(T * half));
  rope_rows_from(inv.data_ptr<float>(), static_cast<float>(c.attention_factor), q0, T, half, cos_tab.data(),
                 sin_tab.data());
}

// Rotates head vector x (hd floats) in place at table row t: cos/sin [T, half] with the
// attention factor applied (both halves of the rotary dims use the same angle).
void rope_in_place(float* x, const float* cos_t, const float* sin_t, int64_t half) {
  for (int64_t j = 0; j < half; ++j) {
    const float a = x[j], b = x[j + half];
    x[j] = a * cos_t[j] - b * sin_t[j];
    x[j + half] = b * cos_t[j] + a * sin_t[j];
  }
}

}  // namespace graph_detail
}  // namespace qins
