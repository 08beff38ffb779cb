// The generic device path: see qins/graph/device.h.
#include <algorithm>
#include <map>
#include <stdexcept>

#include "qins/core/device_expand.h"
#include "qins/graph/device.h"

namespace qins {

namespace {

// Rows of codes turned into int32 indices at a time: 4 Mi indices (16 MiB) stay in a GPU's L2
// cache, so the int32 copy of the codes costs no memory traffic to speak of.
constexpr int64_t kIndexBlock = int64_t{1} << 22;

void grow(torch::Tensor& buf, int64_t numel, const torch::TensorOptions& opts) {
  if (!buf.defined() || buf.numel() < numel || buf.device() != opts.device() ||
      buf.scalar_type() != opts.dtype().toScalarType())
    buf = torch::empty({std::max<int64_t>(numel, buf.defined() ? buf.numel() : 0)}, opts);
}

}  // namespace

DeviceQinsLinear::DeviceQinsLinear(const core::QuantizedTensor& q, const torch::Tensor& bias,
                                   const torch::Device& device, torch::ScalarType compute,
                                   std::shared_ptr<DeviceScratch> scratch, bool resident)
    : out_(q.codes.size(0)), in_(q.codes.size(1)), compute_(compute), resident_(resident),
      scratch_(std::move(scratch)) {
  const auto opts = torch::TensorOptions().device(device).dtype(compute);
  table_ = core::signed_table(q, compute, device);
  scales_ = q.scales.to(device, compute);
  if (bias.defined()) bias_ = bias.to(device, compute);
  if (resident_) {
    const auto codes = q.codes.to(device);
    weight_ = core::expand_rows(codes, table_, scales_);  // [out, in] compute dtype, kept
    return;
  }
  codes_ = q.codes.to(device);
  grow(scratch_->weight, out_ * in_, opts);
  grow(scratch_->index, std::min(out_ * in_, std::max(kIndexBlock, in_)), opts.dtype(torch::kInt32));
}

torch::Tensor DeviceQinsLinear::expanded_weight() {
  if (resident_) return weight_;
  auto w = scratch_->weight.narrow(0, 0, out_ * in_).view({out_, in_});
  core::expand_rows_into(codes_, table_, scales_, scratch_->index, w);
  return w;
}

torch::Tensor DeviceQinsLinear::forward(const torch::Tensor& x) {
  const torch::Tensor w = expanded_weight();  // valid until the next op expands into the scratch
  if (x.scalar_type() == compute_) return torch::linear(x, w, bias_);
  return torch::linear(x.to(compute_), w, bias_).to(x.scalar_type());
}

int64_t DeviceQinsLinear::weight_bytes() const {
  const int64_t e = c10::elementSize(compute_);
  const int64_t small = table_.numel() * e + scales_.numel() * e + (bias_.defined() ? bias_.numel() * e : 0);
  return small + (resident_ ? out_ * in_ * e : out_ * in_);
}

DeviceEmbedding::DeviceEmbedding(const core::QuantizedTensor& q, const torch::Device& device)
    : rows_(q.codes.size(0)), dim_(q.codes.size(1)), device_(device) {
  codes_ = q.codes.to(device);
  scales_ = q.scales.to(device, torch::kFloat32);
  table_ = core::signed_table(q, torch::kFloat32, device);
}

DeviceEmbedding::DeviceEmbedding(const torch::Tensor& dense_table, const torch::Device& device)
    : rows_(dense_table.size(0)), dim_(dense_table.size(1)), device_(device) {
  dense_ = dense_table.to(device);
}

torch::Tensor DeviceEmbedding::lookup(const torch::Tensor& ids) {
  const auto idx = ids.reshape({-1}).to(device_, torch::kInt32);  // [n] int32 on the device
  torch::Tensor rows;                                              // [n, dim] f32
  if (dense_.defined()) {
    rows = dense_.index_select(0, idx).to(torch::kFloat32);
  } else {
    rows = core::expand_rows(codes_.index_select(0, idx), table_, scales_.index_select(0, idx));
  }
  auto shape = ids.sizes().vec();
  shape.push_back(dim_);
  return rows.view(shape);
}

void DeviceEmbedding::lookup_row(int64_t id, float* out) {
  if (id < 0 || id >= rows_)
    throw std::out_of_range("embedding: token id " + std::to_string(id) + " outside [0, " + std::to_string(rows_) + ")");
  const auto row = lookup(torch::full({1}, id, torch::kInt64)).to(torch::kCPU).contiguous();  // [1, dim] f32
  std::copy_n(row.data_ptr<float>(), dim_, out);
}

int64_t DeviceEmbedding::weight_bytes() const {
  if (dense_.defined()) return dense_.numel() * dense_.element_size();
  return codes_.numel() + scales_.numel() * 4 + table_.numel() * 4;
}

torch::ScalarType default_compute_dtype(const torch::Device& device) {
  if (device.is_cpu()) return torch::kFloat32;
  if (device.is_mps()) return torch::kHalf;  // bf16 on MPS needs macOS 14 and a recent libtorch
  if (device.is_cuda()) {
    try {  // bf16 products need a GPU and a libtorch that run them; f16 otherwise
      const auto a = torch::ones({8, 8}, torch::TensorOptions().device(device).dtype(torch::kBFloat16));
      (void)torch::matmul(a, a).sum().item<float>();
      return torch::kBFloat16;
    } catch (const std::exception&) {
      return torch::kHalf;
    }
  }
  return torch::kHalf;
}

Phi3Weights to_device_graph(const Phi3Weights& w, const DeviceOptions& o, DeviceReport* report) {
  DeviceReport rep;
  Phi3Weights d;
  d.config = w.config;
  d.device = o.device;
  d.generic = true;
  auto scratch = std::make_shared<DeviceScratch>();
  // One device copy per CPU buffer: a tied lm_head shares the embedding's codes.
  std::map<const void*, torch::Tensor> moved;
  auto move = [&](const torch::Tensor& t) {
    auto it = moved.find(t.data_ptr());
    if (it != moved.end()) return it->second;
    auto m = t.to(o.device);
    moved.emplace(t.data_ptr(), m);
    return m;
  };
  auto on_device = [&](const core::QuantizedTensor& q) {
    core::QuantizedTensor m = q;
    m.codes = move(q.codes);
    return m;
  };
  bool resident = o.resident;
  auto linear = [&](LinearOp* op) -> std::unique_ptr<LinearOp> {
    ++rep.projections;
    if (auto* ql = dynamic_cast<QinsLinear*>(op)) {
      ++rep.qins_projections;
      const auto& m = ql->module();
      if (resident) {
        try {
          auto r = std::make_unique<DeviceQinsLinear>(m->quantized(), m->bias(), o.device, o.compute, scratch, true);
          ++rep.resident_projections;
          return r;
        } catch (const std::exception& e) {  // out of device memory: expand the rest per call
          resident = false;
          rep.note = "resident weights stopped after " + std::to_string(rep.resident_projections) +
                     " projections (" + std::string(e.what()).substr(0, 120) + "); the rest expand per layer";
        }
      }
      return std::make_unique<DeviceQinsLinear>(on_device(m->quantized()), m->bias(), o.device, o.compute, scratch,
                                                false);
    }
    if (auto* dl = dynamic_cast<DenseLinear*>(op)) {
      const auto& wt = dl->weight();
      return std::make_unique<DenseLinear>(wt.detach().to(o.device, o.compute == torch::kFloat32 ? wt.scalar_type() : o.compute));
    }
    throw std::invalid_argument("the device path cannot run a '" + op->kind() + "' projection");
  };
  auto norm = [&](const torch::Tensor& t) { return t.detach().to(o.device, torch::kFloat32).contiguous(); };

  if (auto* qe = dynamic_cast<QinsEmbedding*>(w.embed.get())) d.embed = std::make_unique<DeviceEmbedding>(on_device(qe->quantized()), o.device);
  else if (auto* de = dynamic_cast<DenseEmbedding*>(w.embed.get())) d.embed = std::make_unique<DeviceEmbedding>(de->table().detach(), o.device);
  else throw std::invalid_argument("the device path needs a QINS or dense embedding");
  for (const Phi3Layer& L : w.layers) {
    Phi3Layer n;
    n.input_norm = norm(L.input_norm);
    n.post_norm = norm(L.post_norm);
    n.qkv = linear(L.qkv.get());
    n.o = linear(L.o.get());
    n.gate_up = linear(L.gate_up.get());
    n.down = linear(L.down.get());
    d.layers.push_back(std::move(n));
  }
  d.final_norm = norm(w.final_norm);
  d.lm_head = linear(w.lm_head.get());

  if (scratch->weight.defined()) rep.scratch_bytes += scratch->weight.numel() * scratch->weight.element_size();
  if (scratch->index.defined()) rep.scratch_bytes += scratch->index.numel() * 4;
  rep.device_bytes = d.weight_bytes() + rep.scratch_bytes;
  if (report) *report = rep;
  return d;
}

}  // namespace qins
