// Winograd F(4x4, 3x3) convolution (Lavin and Gray, "Fast Algorithms for Convolutional Neural
// Networks", 2016), the algorithm cuDNN and oneDNN offer beside direct convolution, for the 3x3
// layers of VGG-style networks on CPUs with AVX-512 or AVX2.
//
// Each 4 x 4 output tile comes from a 6 x 6 input tile: Y = A^T [(G g G^T) * (B^T d B)] A, summed
// over input channels. Transformed, the sum over channels is 36 independent matrix products,
//   M[e] = V[e] U[e]   (e = 0..35; V[e]: tiles x C, U[e]: C x K, M[e]: tiles x K),
// which take 36 multiplications per tile and channel pair where direct convolution takes 144 (16
// pixels x 9 taps). They run as one batched product (at::bmm: MKL), the transforms as our kernels
// (kernels/winograd_tiles.h), vectorised across channels. The gradients are the same steps' adjoints:
//   dM[e] = A dY A^T's elements, dU[e] = V[e]^T dM[e], dV[e] = dM[e] U[e]^T, dX = B dV B^T
// (overlapping tiles summed), and the weight gradient flows back through U = G g G^T, an ATen
// matrix product that autograd differentiates.
//
// Precision: the transforms' constants (up to 8, and 1/24 in G) cost a few bits against direct
// convolution; outputs agree with aten's to about 1e-5 of their scale (the unit tests' bound).
// cuDNN's and oneDNN's F(4x4, 3x3) make the same trade.

#include "winograd.h"

#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

namespace dlgrid {

namespace {

// Tiles a convolution must have for Winograd (see winograd_applies).
constexpr int64_t kMinTiles = 128;

// Tiles per thread at least, so small tensors stay on one thread.
int64_t grain_tiles(int64_t c) {
  return std::max<int64_t>(1, at::internal::GRAIN_SIZE / std::max<int64_t>(1, 36 * c));
}

WinoShape shape(int64_t n, int64_t h, int64_t w, int64_t c) {
  const int64_t th = (h + 3) / 4, tw = (w + 3) / 4;
  return {h, w, c, th, tw, n * th * tw};
}

// U = G g G^T for every (output, input) channel pair, as [36][C][K], differentiable in `weight`
// [K][C][3][3].
at::Tensor transformed_weight(const at::Tensor& weight) {
  static const float g[6][3] = {{1.f / 4, 0, 0},
                                {-1.f / 6, -1.f / 6, -1.f / 6},
                                {-1.f / 6, 1.f / 6, -1.f / 6},
                                {1.f / 24, 1.f / 12, 1.f / 6},
                                {1.f / 24, -1.f / 12, 1.f / 6},
                                {0, 0, 1}};
  const auto G = at::from_blob(const_cast<float*>(&g[0][0]), {6, 3}, at::kFloat);
  const auto GG = at::kron(G, G).to(weight.options());  // [36][9]: (a*6+b, i*3+j)
  const int64_t k = weight.size(0), c = weight.size(1);
  return at::mm(GG, weight.permute({2, 3, 1, 0}).reshape({9, c * k})).view({36, c, k});
}

// [36][tiles][C] from x (channels-last).
at::Tensor input_transform(const Kernels* k, const at::Tensor& x) {
  const auto s = shape(x.size(0), x.size(2), x.size(3), x.size(1));
  auto v = at::empty({36, s.tiles, s.c}, x.options());
  const float* xp = x.const_data_ptr<float>();
  float* vp = v.mutable_data_ptr<float>();
  at::parallel_for(0, s.tiles, grain_tiles(s.c),
                   [&](int64_t begin, int64_t end) { k->wino_input(xp, vp, begin, end, s); });
  return v;
}

at::Tensor output_transform(const Kernels* k, const at::Tensor& m, const at::Tensor& bias,
                            int64_t n, int64_t h, int64_t w) {
  const auto s = shape(n, h, w, m.size(2));
  auto y = at::empty({n, s.c, h, w}, m.options().memory_format(at::MemoryFormat::ChannelsLast));
  const auto b = bias.defined() ? bias.contiguous() : bias;
  const float* mp = m.const_data_ptr<float>();
  const float* bp = b.defined() ? b.const_data_ptr<float>() : nullptr;
  float* yp = y.mutable_data_ptr<float>();
  at::parallel_for(0, s.tiles, grain_tiles(s.c), [&](int64_t begin, int64_t end) {
    k->wino_output(mp, bp, yp, begin, end, s);
  });
  return y;
}

at::Tensor run_forward(const Kernels* k, const at::Tensor& x, const at::Tensor& u,
                       const at::Tensor& bias, at::Tensor* v_out) {
  const auto v = input_transform(k, x);
  if (v_out) *v_out = v;
  return output_transform(k, at::bmm(v, u).contiguous(), bias, x.size(0), x.size(2), x.size(3));
}

struct WinogradConv : public torch::autograd::Function<WinogradConv> {
  // `x` channels-last, `u` the transformed weight [36][C][K], `kernels` the address of the
  // kernel table to use (a static table, so it outlives the graph).
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x,
                            const at::Tensor& u, const at::Tensor& bias, int64_t kernels) {
    const auto* k = reinterpret_cast<const Kernels*>(kernels);
    at::Tensor v;
    auto y = run_forward(k, x, u, bias, &v);
    ctx->save_for_backward({v, u});
    ctx->saved_data["kernels"] = kernels;
    ctx->saved_data["n"] = x.size(0);
    ctx->saved_data["h"] = x.size(2);
    ctx->saved_data["w"] = x.size(3);
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto* k = reinterpret_cast<const Kernels*>(ctx->saved_data["kernels"].toInt());
    const auto saved = ctx->get_saved_variables();
    const auto &v = saved[0], &u = saved[1];
    const int64_t n = ctx->saved_data["n"].toInt(), h = ctx->saved_data["h"].toInt(),
                  w = ctx->saved_data["w"].toInt();
    const auto dy = grads[0].contiguous(at::MemoryFormat::ChannelsLast);
    const auto out = shape(n, h, w, u.size(2));
    auto dm = at::empty({36, out.tiles, out.c}, dy.options());
    const float* dyp = dy.const_data_ptr<float>();
    float* dmp = dm.mutable_data_ptr<float>();
    at::parallel_for(0, out.tiles, grain_tiles(out.c), [&](int64_t begin, int64_t end) {
      k->wino_output_grad(dyp, dmp, begin, end, out);
    });
    at::Tensor dx, du, db;
    if (ctx->needs_input_grad(1)) du = at::bmm(v.transpose(1, 2), dm);
    if (ctx->needs_input_grad(0)) {
      // The kernel reads [36][tiles][C], densely.
      const auto dv = at::bmm(dm, u.transpose(1, 2)).contiguous();
      const auto in = shape(n, h, w, u.size(1));
      // (at::zeros ignores a memory format among its options.)
      dx = at::empty({n, in.c, h, w}, dy.options().memory_format(at::MemoryFormat::ChannelsLast))
               .zero_();
      const float* dvp = dv.const_data_ptr<float>();
      float* dxp = dx.mutable_data_ptr<float>();
      // By image: an image's overlapping tiles add into the same pixels.
      at::parallel_for(0, n, 1, [&](int64_t begin, int64_t end) {
        k->wino_input_grad(dvp, dxp, begin, end, in);
      });
    }
    if (ctx->needs_input_grad(2))
      db = dy.sum(at::IntArrayRef{0, 2, 3});
    return {dx, du, db, at::Tensor()};
  }
};

}  // namespace

bool winograd_applies(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                      int64_t padding) {
  if (padding != 1 || !x.device().is_cpu() || !weight.device().is_cpu() ||
      x.scalar_type() != at::kFloat || weight.scalar_type() != at::kFloat || x.dim() != 4 ||
      weight.dim() != 4 || x.size(0) == 0 || x.size(1) < 16 || x.size(2) < 4 || x.size(3) < 4 ||
      weight.size(0) < 16 || weight.size(1) != x.size(1) || weight.size(2) != 3 ||
      weight.size(3) != 3 || !x.is_contiguous(at::MemoryFormat::ChannelsLast))
    return false;
  if (bias.defined() && (bias.scalar_type() != at::kFloat || !bias.device().is_cpu() ||
                         bias.dim() != 1 || bias.size(0) != weight.size(0)))
    return false;
  const auto s = shape(x.size(0), x.size(2), x.size(3), 1);
  // The weight transform (36 values per 9, made anew each call) and reading it in the products
  // cost the same however few tiles there are, so few tiles go to direct convolution: a single
  // image (DAWNBench's latency) took up to 19 times as long through Winograd. Forward only, on
  // the 2-core AMD EPYC with AVX-512, Winograd against oneDNN at 32, 64 and 128 tiles:
  // 1.02-1.97x, 0.83-1.36x and 0.77-1.30x the time; in training, where the transform also
  // serves the backward pass, batches of 128 images (128 tiles at 4x4) run 1.7-1.8x faster.
  if (s.tiles < kMinTiles) return false;
  // The transformed input and output take 2.25 times the input's and output's memory (36
  // values per 16 pixels); past 1 GiB each (large images), direct convolution, which needs no
  // such buffers, is the safer choice.
  return 36 * s.tiles * std::max(x.size(1), weight.size(0)) * 4 <= (int64_t{1} << 30);
}

at::Tensor winograd_conv3x3(const Kernels* k, const at::Tensor& x, const at::Tensor& weight,
                            const at::Tensor& bias) {
  const auto u = transformed_weight(weight);
  if (at::GradMode::is_enabled() &&
      (x.requires_grad() || u.requires_grad() || (bias.defined() && bias.requires_grad())))
    // A zero bias stands for none: autograd's custom functions take defined tensors only.
    return WinogradConv::apply(x, u, bias.defined() ? bias : at::zeros({u.size(2)}, u.options()),
                               reinterpret_cast<int64_t>(k));
  return run_forward(k, x, u, bias, nullptr);
}

}  // namespace dlgrid
