// conv2d with stride 1 and zero padding: the first layer on single-channel or RGB images
// through our kernels (kernels/conv1.h, kernels/rgb_conv.h), Winograd F(4x4, 3x3) for 3x3 layers
// with 16 channels or more (winograd.cpp), aten::conv2d for everything else.

#include <ATen/autocast_mode.h>
#include <torch/csrc/autograd/custom_function.h>

#include "ops.h"
#include "winograd.h"

using dlgrid::cpu_kernels;
using dlgrid::grain_rows;
using dlgrid::guarded;

namespace {

// ---- Convolution of single-channel images (kernels/conv1.h) ------------------------------------
//
// The first layer on grayscale data (MNIST, Fashion-MNIST): one input channel, stride 1, no
// padding. oneDNN's kernels block over input channels and 16 output channels, so one input
// channel and 10 outputs leave most of each vector idle (timings: docs/benchmarks.md). The
// output is NCHW.

bool fast_conv_applies(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b,
                       int64_t padding) {
  if (!cpu_kernels() || padding != 0 || !x.device().is_cpu() || !w.device().is_cpu() ||
      x.scalar_type() != at::kFloat || w.scalar_type() != at::kFloat || x.dim() != 4 ||
      w.dim() != 4 || x.size(1) != 1 || w.size(1) != 1 || x.numel() == 0)
    return false;
  if (b.defined() && (b.scalar_type() != at::kFloat || !b.device().is_cpu() || b.dim() != 1 ||
                      b.size(0) != w.size(0)))
    return false;
  const int64_t h = x.size(2), wd = x.size(3);
  // One channel: NCHW and channels-last are the same memory when the rows are dense.
  const bool dense = x.stride(3) == 1 && x.stride(2) == wd && x.stride(0) == h * wd;
  const int64_t kw = w.size(3);
  return dense && w.size(2) <= h && kw <= wd && (kw == 3 || kw == 5 || kw == 7);
}

dlgrid::ConvShape conv_shape(const at::Tensor& x, const at::Tensor& weight) {
  const int64_t h = x.size(2), wd = x.size(3), kh = weight.size(2), kw = weight.size(3);
  return {h, wd, weight.size(0), kh, kw, h - kh + 1, wd - kw + 1};
}

at::Tensor conv_forward(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  const dlgrid::Kernels* k = cpu_kernels();
  const auto s = conv_shape(x, weight);
  const int64_t n = x.size(0);
  const auto w = weight.contiguous();
  const auto b = bias.defined() ? bias.contiguous() : bias;
  auto out = at::empty({n, s.oc, s.oh, s.ow}, x.options());
  const float* xp = x.const_data_ptr<float>();
  const float* wp = w.const_data_ptr<float>();
  const float* bp = b.defined() ? b.const_data_ptr<float>() : nullptr;
  float* op = out.mutable_data_ptr<float>();
  at::parallel_for(0, n * s.oh, grain_rows(s.ow * s.oc * s.kh * s.kw),
                   [&](int64_t begin, int64_t end) { k->conv_forward(xp, wp, bp, op, begin, end, s); });
  return out;
}

// Gradient sums over n images: one part per thread (at most n), each summing a fixed range of
// images into its own zeroed slice of `dw` [parts][dw_size] and `db` [parts][db_size] through
// grad(dw, db, begin, end). The caller adds the parts up in a fixed order, so results are
// reproducible for a given thread count and instruction set.
template <typename F>
std::pair<at::Tensor, at::Tensor> sums_in_parts(int64_t n, int64_t dw_size, int64_t db_size,
                                                const at::TensorOptions& options, F grad) {
  const int64_t parts = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), n));
  auto dw = at::zeros({parts, dw_size}, options);
  auto db = at::zeros({parts, db_size}, options);
  float* dwp = dw.mutable_data_ptr<float>();
  float* dbp = db.mutable_data_ptr<float>();
  at::parallel_for(0, parts, 1, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p)
      grad(dwp + p * dw_size, dbp + p * db_size, n * p / parts, n * (p + 1) / parts);
  });
  return {dw, db};
}

// Weight and bias gradients, as per-lane partial sums per part (see sums_in_parts).
std::pair<at::Tensor, at::Tensor> conv_backward(const at::Tensor& x, const at::Tensor& grad,
                                                const at::Tensor& weight, bool with_bias) {
  const dlgrid::Kernels* k = cpu_kernels();
  TORCH_CHECK(k, "conv2d backward: the kernels of its forward pass are no longer in use");
  const auto g = grad.contiguous();
  const auto s = conv_shape(x, weight);
  const float* xp = x.const_data_ptr<float>();
  const float* gp = g.const_data_ptr<float>();
  auto [dw, db] = sums_in_parts(x.size(0), s.oc * s.kh * s.kw * k->lanes, s.oc * k->lanes,
                                x.options(), [&](float* dw, float* db, int64_t begin, int64_t end) {
                                  k->conv_grad(xp, gp, dw, db, begin, end, s);
                                });
  return {dw.view({-1, s.oc, s.kh, s.kw, k->lanes}).sum(at::IntArrayRef{0, 4}).view(weight.sizes()),
          with_bias ? db.view({-1, s.oc, k->lanes}).sum(at::IntArrayRef{0, 2}) : at::Tensor()};
}

struct Conv1Channel : public torch::autograd::Function<Conv1Channel> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x,
                            const at::Tensor& weight, const at::Tensor& bias) {
    ctx->save_for_backward({x, weight});
    ctx->saved_data["bias"] = bias.defined();
    return conv_forward(x, weight, bias);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    auto [dw, db] = conv_backward(saved[0], grads[0], saved[1], ctx->saved_data["bias"].toBool());
    // The input never needs a gradient here (see conv2d below).
    return {at::Tensor(), dw, db};
  }
};

// ---- Convolution of images with few channels (kernels/rgb_conv.h) ---------------------------
//
// VGG's first layer on RGB images: 3 input channels, 3x3, padding 1, channels-last, an input that
// needs no gradient. oneDNN blocks input channels by 16, so 3 channels leave most of each vector
// idle (timings: docs/benchmarks.md).

bool fast_rgb_conv_applies(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b,
                           int64_t padding) {
  if (!cpu_kernels() || padding != 1 || !x.device().is_cpu() || !w.device().is_cpu() ||
      x.scalar_type() != at::kFloat || w.scalar_type() != at::kFloat || x.dim() != 4 ||
      w.dim() != 4 || x.numel() == 0 || x.size(1) < 2 || x.size(1) > 4 ||
      w.size(1) != x.size(1) || w.size(2) != 3 || w.size(3) != 3 || w.size(0) % 16 != 0 ||
      !x.is_contiguous(at::MemoryFormat::ChannelsLast))
    return false;
  return !b.defined() || (b.scalar_type() == at::kFloat && b.device().is_cpu() && b.dim() == 1 &&
                          b.size(0) == w.size(0));
}

dlgrid::RgbConvShape rgb_shape(const at::Tensor& x, const at::Tensor& weight) {
  const int64_t h = x.size(2), wd = x.size(3);
  return {h + 2, wd + 2, x.size(1), weight.size(0), h, wd};
}

// The input with its one-pixel zero border, as [n][h+2][w+2][c].
at::Tensor rgb_padded(const at::Tensor& x) {
  auto xp = at::zeros({x.size(0), x.size(2) + 2, x.size(3) + 2, x.size(1)}, x.options());
  xp.narrow(1, 1, x.size(2)).narrow(2, 1, x.size(3)).copy_(x.permute({0, 2, 3, 1}));
  return xp;
}

at::Tensor rgb_forward(const at::Tensor& xp, const at::Tensor& weight, const at::Tensor& bias,
                       const dlgrid::RgbConvShape& s) {
  const dlgrid::Kernels* k = cpu_kernels();
  const int64_t n = xp.size(0);
  const auto wt = weight.permute({2, 3, 1, 0}).contiguous();  // [3][3][ci][oc]
  const auto b = bias.defined() ? bias.contiguous() : bias;
  auto out = at::empty({n, s.oc, s.oh, s.ow},
                       xp.options().memory_format(at::MemoryFormat::ChannelsLast));
  const float* xq = xp.const_data_ptr<float>();
  const float* wp = wt.const_data_ptr<float>();
  const float* bp = b.defined() ? b.const_data_ptr<float>() : nullptr;
  float* op = out.mutable_data_ptr<float>();
  at::parallel_for(0, n * s.oh, grain_rows(s.ow * s.oc * 9 * s.ci),
                   [&](int64_t begin, int64_t end) { k->rgb_conv_forward(xq, wp, bp, op, begin, end, s); });
  return out;
}

// Weight and bias gradients, per part (see sums_in_parts).
std::pair<at::Tensor, at::Tensor> rgb_backward(const at::Tensor& xp, const at::Tensor& grad,
                                               const at::Tensor& weight, bool with_bias) {
  const dlgrid::Kernels* k = cpu_kernels();
  TORCH_CHECK(k, "conv2d backward: the kernels of its forward pass are no longer in use");
  const auto g = grad.contiguous(at::MemoryFormat::ChannelsLast);
  const dlgrid::RgbConvShape s{xp.size(1), xp.size(2), xp.size(3), weight.size(0),
                               xp.size(1) - 2, xp.size(2) - 2};
  const float* xq = xp.const_data_ptr<float>();
  const float* gp = g.const_data_ptr<float>();
  auto [dw, db] = sums_in_parts(xp.size(0), 9 * s.ci * s.oc, s.oc, xp.options(),
                                [&](float* dw, float* db, int64_t begin, int64_t end) {
                                  k->rgb_conv_grad(xq, gp, dw, db, begin, end, s);
                                });
  // [3][3][ci][oc] -> [oc][ci][3][3], in the weight's own memory format.
  auto w_grad = dw.sum(0).view({3, 3, s.ci, s.oc}).permute({3, 2, 0, 1}).contiguous(
      weight.suggest_memory_format());
  return {w_grad, with_bias ? db.sum(0) : at::Tensor()};
}

struct ConvRgb : public torch::autograd::Function<ConvRgb> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x,
                            const at::Tensor& weight, const at::Tensor& bias) {
    const auto xp = rgb_padded(x);
    ctx->save_for_backward({xp, weight});
    ctx->saved_data["bias"] = bias.defined();
    return rgb_forward(xp, weight, bias, rgb_shape(x, weight));
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    auto [dw, db] = rgb_backward(saved[0], grads[0], saved[1], ctx->saved_data["bias"].toBool());
    // The input never needs a gradient here (see conv2d below).
    return {at::Tensor(), dw, db};
  }
};

at::Tensor conv2d(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& b,
                  int64_t padding) {
  const bool grad = at::GradMode::is_enabled();
  // Images with a few channels (RGB): the same rules as for one channel below.
  if (fast_rgb_conv_applies(x, weight, b, padding) && !(grad && x.requires_grad()) &&
      !at::autocast::is_autocast_enabled(x.device().type())) {
    if (grad && (weight.requires_grad() || (b.defined() && b.requires_grad())))
      return ConvRgb::apply(x, weight, b);
    return rgb_forward(rgb_padded(x), weight, b, rgb_shape(x, weight));
  }
  // 3x3 layers with enough channels (VGG's): Winograd, input gradient included.
  if (cpu_kernels() && dlgrid::winograd_applies(x, weight, b, padding) &&
      !at::autocast::is_autocast_enabled(x.device().type()))
    return dlgrid::winograd_conv3x3(cpu_kernels(), x, weight, b);
  // The fast path computes no input gradient, so an input that needs one goes to aten; so does
  // everything under autocast, which aten's conv2d honours (reduced precision).
  if (!fast_conv_applies(x, weight, b, padding) || (grad && x.requires_grad()) ||
      at::autocast::is_autocast_enabled(x.device().type()))
    return at::conv2d(x, weight, b, {1, 1}, {padding, padding});
  if (grad && (weight.requires_grad() || (b.defined() && b.requires_grad())))
    return Conv1Channel::apply(x, weight, b);
  return conv_forward(x, weight, b);
}

}  // namespace

extern "C" {

// conv2d with stride 1 and the given zero padding; writes a new tensor to *out. `bias` may be
// null.
int dlgrid_conv2d(const at::Tensor* x, const at::Tensor* weight, const at::Tensor* bias,
                  int64_t padding, at::Tensor** out) {
  return guarded([&] {
    *out = new at::Tensor(conv2d(*x, *weight, bias ? *bias : at::Tensor(), padding));
  });
}

}  // extern "C"
