// 2x2/stride-2 max pooling for float32 CPU tensors (NCHW or channels-last) through our kernels
// (kernels/pool.h), forward and backward, with exactly aten::max_pool2d's results (the first
// maximum in window order wins; a NaN propagates). ATen's NCHW kernel is scalar, and its
// channels-last kernel vectorises across whole vectors of channels only (the paper CNN's 10
// channels run scalar); their int64 indices and zero-filled gradients cost more memory traffic
// than the pooling itself. Other inputs fall back to aten::max_pool2d.

#include <torch/csrc/autograd/custom_function.h>

#include "ops.h"

using dlgrid::cpu_kernels;
using dlgrid::grain_rows;
using dlgrid::guarded;

namespace {

enum class Layout { Unsupported, Nchw, Nhwc };

// The kernels' cases; everything else (other CPUs, devices, dtypes, layouts, odd sizes) goes to
// aten's own kernel.
Layout fast_pool_layout(const at::Tensor& x) {
  if (!cpu_kernels() || !x.device().is_cpu() || x.scalar_type() != at::kFloat ||
      x.dim() != 4 || x.numel() == 0 || x.size(2) % 2 != 0 || x.size(3) % 2 != 0)
    return Layout::Unsupported;
  // Tensors that are both (one channel, or 1x1 images) take the NCHW kernel, whose output is
  // contiguous like aten's would be.
  if (x.is_contiguous()) return Layout::Nchw;
  if (x.is_contiguous(at::MemoryFormat::ChannelsLast)) return Layout::Nhwc;
  return Layout::Unsupported;
}

at::MemoryFormat memory_format(Layout layout) {
  return layout == Layout::Nhwc ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
}

dlgrid::PoolShape pool_shape(int64_t c, int64_t h, int64_t w, Layout layout) {
  return {h, w, layout == Layout::Nhwc ? c : 1, h / 2, w / 2};
}

// Output rows: n * oh of ow * c (channels-last) or n * c * oh of ow (NCHW).
std::pair<int64_t, int64_t> pool_rows(const dlgrid::PoolShape& s, int64_t n, int64_t c,
                                      Layout layout) {
  return layout == Layout::Nhwc ? std::make_pair(n * s.oh, s.ow * c)
                                : std::make_pair(n * c * s.oh, s.ow);
}

// Returns the pooled tensor and, when `with_indices`, the window positions (one byte per
// output element, in the output's memory order).
std::pair<at::Tensor, at::Tensor> pool_forward(const at::Tensor& x, Layout layout,
                                               bool with_indices) {
  const dlgrid::Kernels* k = cpu_kernels();
  const int64_t n = x.size(0), c = x.size(1);
  const auto s = pool_shape(c, x.size(2), x.size(3), layout);
  auto out = at::empty({n, c, s.oh, s.ow}, x.options().memory_format(memory_format(layout)));
  at::Tensor idx;
  if (with_indices) idx = at::empty({n * c * s.oh * s.ow}, x.options().dtype(at::kByte));
  const float* xp = x.const_data_ptr<float>();
  float* op = out.mutable_data_ptr<float>();
  uint8_t* ip = with_indices ? idx.mutable_data_ptr<uint8_t>() : nullptr;
  const auto pool = layout == Layout::Nhwc ? k->pool_nhwc : k->pool_nchw;
  const auto [rows, row_elems] = pool_rows(s, n, c, layout);
  at::parallel_for(0, rows, grain_rows(row_elems),
                   [&](int64_t begin, int64_t end) { pool(xp, op, ip, begin, end, s); });
  return {out, idx};
}

at::Tensor pool_backward(const at::Tensor& grad, const at::Tensor& idx, Layout layout, int64_t h,
                         int64_t w) {
  const dlgrid::Kernels* k = cpu_kernels();
  TORCH_CHECK(k, "max_pool2x2 backward: the kernels of its forward pass are no longer in use");
  const auto g = grad.contiguous(memory_format(layout));
  const int64_t n = g.size(0), c = g.size(1);
  const auto s = pool_shape(c, h, w, layout);
  auto gi = at::empty({n, c, h, w}, g.options().memory_format(memory_format(layout)));
  const float* gp = g.const_data_ptr<float>();
  const uint8_t* ip = idx.const_data_ptr<uint8_t>();
  float* out = gi.mutable_data_ptr<float>();
  const auto unpool = layout == Layout::Nhwc ? k->unpool_nhwc : k->unpool_nchw;
  const auto [rows, row_elems] = pool_rows(s, n, c, layout);
  at::parallel_for(0, rows, grain_rows(row_elems),
                   [&](int64_t begin, int64_t end) { unpool(gp, ip, out, begin, end, s); });
  return gi;
}

struct MaxPool2x2 : public torch::autograd::Function<MaxPool2x2> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x) {
    const Layout layout = fast_pool_layout(x);
    auto [out, idx] = pool_forward(x, layout, true);
    ctx->save_for_backward({idx});
    ctx->saved_data["layout"] = static_cast<int64_t>(layout);
    ctx->saved_data["h"] = x.size(2);
    ctx->saved_data["w"] = x.size(3);
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto idx = ctx->get_saved_variables()[0];
    const auto layout = static_cast<Layout>(ctx->saved_data["layout"].toInt());
    return {pool_backward(grads[0], idx, layout, ctx->saved_data["h"].toInt(),
                          ctx->saved_data["w"].toInt())};
  }
};

at::Tensor max_pool2x2(const at::Tensor& x) {
  const Layout layout = fast_pool_layout(x);
  if (layout == Layout::Unsupported) return at::max_pool2d(x, {2, 2}, {2, 2});
  if (at::GradMode::is_enabled() && x.requires_grad()) return MaxPool2x2::apply(x);
  return pool_forward(x, layout, false).first;
}

}  // namespace

extern "C" {

// 2x2 max pooling, stride 2; writes a new tensor to *out.
int dlgrid_max_pool2x2(const at::Tensor* x, at::Tensor** out) {
  return guarded([&] { *out = new at::Tensor(max_pool2x2(*x)); });
}

}  // extern "C"
