// Training-engine operations that tch does not expose, compiled against the same libtorch.
//
// - max_pool2x2: 2x2/stride-2 max pooling for float32 CPU tensors (NCHW or channels-last) on
//   x86-64 CPUs with AVX-512 or AVX2 (kernels.h), forward and backward, with exactly
//   aten::max_pool2d's results (first maximum in window order wins; a NaN propagates). ATen's NCHW kernel is scalar, and its channels-last
//   kernel vectorises across whole vectors of channels only (the paper CNN's 10 channels run
//   scalar); their int64 indices and zero-filled gradients cost more memory traffic than the
//   pooling itself. On the paper CNN these took ~15% of a CPU training step. Other inputs fall
//   back to aten::max_pool2d.
// - conv2d: the first layer on single-channel or RGB images (see below), Winograd F(4x4, 3x3)
//   for 3x3 layers with 16 channels or more (winograd.cpp), aten::conv2d otherwise.
// - fused_adam: one call of aten::_fused_adam_ (torch.optim.Adam(fused=True)) for all
//   parameters, in place of ~9 dispatched element-wise ops per parameter tensor.
// - set_grads_to_none: optimizer.zero_grad(set_to_none=True).
// - autocast_enter/exit: autocast with a chosen dtype (tch only offers float16 on CUDA).
// - cuda_backend, cuda_runtime_version, cudnn_version: torch.backends settings and versions.
// - kernels_set/get/supported: which of our kernel tables runs (0 aten's, 1 AVX2, 2 AVX-512).
//
// Every entry point catches C++ exceptions and reports them through dlgrid_last_error().

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>
#include <torch/csrc/autograd/custom_function.h>

#include <atomic>
#include <cstdint>
#include <string>

#include "kernels.h"
#include "winograd.h"

namespace {

thread_local std::string last_error;

template <typename F>
int guarded(F f) {
  try {
    f();
    return 0;
  } catch (const std::exception& e) {
    last_error = e.what();
  } catch (...) {
    last_error = "unknown C++ exception";
  }
  return -1;
}

#if defined(__x86_64__)

// ---- Which kernels -------------------------------------------------------------------------
//
// Our kernels come in one table per instruction set (kernels.h); the CPU's best is used unless a
// caller chose otherwise (the worker's measured choice, tests forcing each variant), and aten's
// own kernels when the CPU has neither or "aten" was chosen.

// The most capable set allowed (DLGRID_MAX_CPU_ISA, as oneDNN's ONEDNN_MAX_CPU_ISA): lets one
// machine run as an older CPU would, for benchmarks and tests.
std::atomic<int> isa_cap{2};

bool cpu_supports(int isa) {
  if (isa > isa_cap.load(std::memory_order_relaxed)) return false;
  static const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  static const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") &&
                             __builtin_cpu_supports("avx512bw") &&
                             __builtin_cpu_supports("avx512vl");
  switch (isa) {
    case 0: return true;  // aten
    case 1: return avx2;
    case 2: return avx512;
    default: return false;
  }
}

int best_isa() { return cpu_supports(2) ? 2 : cpu_supports(1) ? 1 : 0; }

constexpr int kFollowProcess = -2;
std::atomic<int> chosen_isa{-1};                // the process's choice; -1: the best the CPU has
thread_local int thread_isa = kFollowProcess;  // a thread's own (tests compare the variants)

int current_isa() {
  const int c =
      thread_isa != kFollowProcess ? thread_isa : chosen_isa.load(std::memory_order_relaxed);
  return c < 0 ? best_isa() : c;
}

// The kernels to use now; null for aten's.
const dlgrid::Kernels* cpu_kernels() {
  switch (current_isa()) {
    case 2: return &dlgrid::kAvx512Kernels;
    case 1: return &dlgrid::kAvx2Kernels;
    default: return nullptr;
  }
}

// ---- 2x2 max pooling (kernels in kernels_impl.h) --------------------------------------------

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

// Output rows to hand each thread at least, so small tensors stay on one thread.
int64_t grain_rows(int64_t row_elems) {
  return std::max<int64_t>(1, at::internal::GRAIN_SIZE / std::max<int64_t>(1, 4 * row_elems));
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

// ---- Convolution of single-channel images (kernels in kernels_impl.h) -------------------------
//
// The first layer on grayscale data (MNIST, Fashion-MNIST): one input channel, stride 1, no
// padding. oneDNN's kernels block over input channels and 16 output channels, so one input
// channel and 10 outputs leave most of each vector idle (paper-CNN step of 128 images on the
// 2-core CPU: forward 0.56 ms, ours 0.25; forward and gradients 1.47 ms, ours 0.97). The output
// is NCHW.

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

// ---- Convolution of images with few channels (kernels in kernels_impl.h) ----------------------
//
// VGG's first layer on RGB images: 3 input channels, 3x3, padding 1, channels-last, an input that
// needs no gradient. oneDNN blocks input channels by 16, so 3 channels leave most of each vector
// idle. 128 CIFAR-10 images to 64 channels on the project's 2-core AMD EPYC, AVX-512, medians of
// 27 interleaved runs: forward 3.46 ms (oneDNN) vs 2.95 (ours, near the cost of writing the 33.5 MB
// output), forward and gradients 17.9 vs 13.8 ms (an element-wise product of the output included
// in both). About 0.7% of a VGG-11 training step.

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

at::Tensor max_pool2x2(const at::Tensor& x) {
  const Layout layout = fast_pool_layout(x);
  if (layout == Layout::Unsupported) return at::max_pool2d(x, {2, 2}, {2, 2});
  if (at::GradMode::is_enabled() && x.requires_grad()) return MaxPool2x2::apply(x);
  return pool_forward(x, layout, false).first;
}

#else  // not x86-64: aten's kernels throughout.

std::atomic<int> isa_cap{0};
bool cpu_supports(int isa) { return isa == 0; }
int best_isa() { return 0; }
constexpr int kFollowProcess = -2;
std::atomic<int> chosen_isa{-1};
thread_local int thread_isa = kFollowProcess;
int current_isa() { return 0; }

at::Tensor conv2d(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& b,
                  int64_t padding) {
  return at::conv2d(x, weight, b, {1, 1}, {padding, padding});
}

at::Tensor max_pool2x2(const at::Tensor& x) { return at::max_pool2d(x, {2, 2}, {2, 2}); }

#endif

}  // namespace

extern "C" {

const char* dlgrid_last_error() { return last_error.c_str(); }

// conv2d with stride 1 and the given zero padding; writes a new tensor to *out. `bias` may be
// null.
int dlgrid_conv2d(const at::Tensor* x, const at::Tensor* weight, const at::Tensor* bias,
                  int64_t padding, at::Tensor** out) {
  return guarded([&] {
    *out = new at::Tensor(conv2d(*x, *weight, bias ? *bias : at::Tensor(), padding));
  });
}

// 2x2 max pooling, stride 2; writes a new tensor to *out.
int dlgrid_max_pool2x2(const at::Tensor* x, at::Tensor** out) {
  return guarded([&] { *out = new at::Tensor(max_pool2x2(*x)); });
}

// torch.optim.Adam(fused=True).step() over the parameters that have a gradient. `steps` are
// per-parameter float32 scalars on the parameters' device, incremented here as PyTorch does.
int dlgrid_fused_adam(at::Tensor** params, at::Tensor** exp_avgs, at::Tensor** exp_avg_sqs,
                      at::Tensor** steps, int64_t count, double lr, double beta1, double beta2,
                      double weight_decay, double eps) {
  return guarded([&] {
    std::vector<at::Tensor> p, g, m, v, s;
    for (int64_t i = 0; i < count; ++i) {
      const auto& grad = params[i]->grad();
      if (!grad.defined()) continue;
      p.push_back(*params[i]);
      g.push_back(grad);
      m.push_back(*exp_avgs[i]);
      v.push_back(*exp_avg_sqs[i]);
      s.push_back(*steps[i]);
    }
    if (p.empty()) return;
    at::NoGradGuard no_grad;
    at::_foreach_add_(s, 1.0);
    at::_fused_adam_(p, g, m, v, {}, s, lr, beta1, beta2, weight_decay, eps,
                     /*amsgrad=*/false, /*maximize=*/false);
  });
}

int dlgrid_set_grads_to_none(at::Tensor** params, int64_t count) {
  return guarded([&] {
    for (int64_t i = 0; i < count; ++i) params[i]->mutable_grad().reset();
  });
}

// device_type: 0 = CPU, 1 = CUDA. dtype: 0 = float16, 1 = bfloat16. Returns the previous
// enabled state in *was_enabled.
int dlgrid_autocast_enter(int device_type, int dtype, int* was_enabled) {
  return guarded([&] {
    const auto dev = device_type == 1 ? at::kCUDA : at::kCPU;
    *was_enabled = at::autocast::is_autocast_enabled(dev) ? 1 : 0;
    at::autocast::set_autocast_dtype(dev, dtype == 1 ? at::kBFloat16 : at::kHalf);
    at::autocast::set_autocast_enabled(dev, true);
    at::autocast::increment_nesting();
  });
}

int dlgrid_autocast_exit(int device_type, int was_enabled) {
  return guarded([&] {
    const auto dev = device_type == 1 ? at::kCUDA : at::kCPU;
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    at::autocast::set_autocast_enabled(dev, was_enabled != 0);
  });
}

// CUDA backend settings for a job, as torch.backends.* sets them: TF32 for convolutions and for
// matrix products, cuDNN's benchmark mode (autotuning per input shape), and deterministic
// algorithms (cuDNN's and ATen's; an op without a deterministic implementation then fails).
int dlgrid_cuda_backend(int tf32_conv, int tf32_matmul, int benchmark, int deterministic) {
  return guarded([&] {
    auto& ctx = at::globalContext();
    using at::Float32Backend;
    using at::Float32Op;
    using at::Float32Precision;
    ctx.setFloat32Precision(Float32Backend::CUDA, Float32Op::CONV,
                            tf32_conv ? Float32Precision::TF32 : Float32Precision::IEEE);
    ctx.setFloat32Precision(Float32Backend::CUDA, Float32Op::MATMUL,
                            tf32_matmul ? Float32Precision::TF32 : Float32Precision::IEEE);
    ctx.setBenchmarkCuDNN(benchmark != 0);
    ctx.setDeterministicCuDNN(deterministic != 0);
    ctx.setDeterministicAlgorithms(deterministic != 0, /*warn_only=*/false);
  });
}

// The CUDA runtime version libtorch was built with (e.g. 13000 for 13.0); -1 without CUDA.
long dlgrid_cuda_runtime_version() {
  try {
    return at::detail::getCUDAHooks().versionCUDART();
  } catch (...) {
    return -1;
  }
}

// The cuDNN version libtorch was built with (e.g. 91300 for 9.13.0); -1 without it.
long dlgrid_cudnn_version() {
  try {
    return at::detail::getCUDAHooks().versionCuDNN();
  } catch (...) {
    return -1;
  }
}

// Which kernels run from now on: 0 = aten's throughout, 1 = AVX2, 2 = AVX-512, -1 = the best
// this CPU has (the default); in the whole process, or (`this_thread`) for calls made on this
// thread only, where -2 returns it to the process's choice. Fails, naming the reason, for a set
// the CPU lacks.
int dlgrid_kernels_set(int isa, int this_thread) {
  return guarded([&] {
    TORCH_CHECK(isa >= (this_thread ? kFollowProcess : -1) && isa <= 2, "unknown kernel set ",
                isa);
    TORCH_CHECK(isa < 0 || cpu_supports(isa), "this CPU cannot run the ",
                isa == 2 ? "AVX-512" : "AVX2", " kernels");
    if (this_thread)
      thread_isa = isa;
    else
      chosen_isa.store(isa, std::memory_order_relaxed);
  });
}

// Makes the kernel sets above `isa` unavailable (0, 1, 2 as above), as if the CPU lacked them.
void dlgrid_kernels_cap(int isa) { isa_cap.store(isa, std::memory_order_relaxed); }

// The kernels calls on this thread use now (0, 1, 2 as above).
int dlgrid_kernels_get() { return current_isa(); }

// Whether this CPU can run kernel set `isa`.
int dlgrid_kernels_supported(int isa) { return cpu_supports(isa) ? 1 : 0; }

}  // extern "C"
