// Training-engine operations that tch does not expose, compiled against the same libtorch.
//
// - max_pool2x2: 2x2/stride-2 max pooling for float32 CPU tensors (NCHW or channels-last) on
//   AVX-512 CPUs, forward and backward, with exactly aten::max_pool2d's results (first maximum
//   in window order wins; a NaN propagates). ATen's NCHW kernel is scalar, and its channels-last
//   kernel vectorises across whole vectors of channels only (the paper CNN's 10 channels run
//   scalar); their int64 indices and zero-filled gradients cost more memory traffic than the
//   pooling itself. On the paper CNN these took ~15% of a CPU training step. Other inputs fall
//   back to aten::max_pool2d.
// - conv2d: the first layer on single-channel images (see below), aten::conv2d otherwise.
// - fused_adam: one call of aten::_fused_adam_ (torch.optim.Adam(fused=True)) for all
//   parameters, in place of ~9 dispatched element-wise ops per parameter tensor.
// - set_grads_to_none: optimizer.zero_grad(set_to_none=True).
// - autocast_enter/exit: autocast with a chosen dtype (tch only offers float16 on CUDA).
// - cuda_backend, cuda_runtime_version, cudnn_version: torch.backends settings and versions.
//
// Every entry point catches C++ exceptions and reports them through dlgrid_last_error().

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>
#include <torch/csrc/autograd/custom_function.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <cstdint>
#include <string>

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

// ---- 2x2 max pooling -------------------------------------------------------------------------
//
// aten scans a window in the order (0,0) (0,1) (1,0) (1,1) and takes a new element when
// `val > max || isnan(val)`. Applying that rule within each row and then between the two rows'
// winners picks the same element; `idx` records its window position 0..3 for the backward pass.
// Both layouts run on AVX-512 with lane masks: channels-last vectorises across channels (so 10
// or 20 channels cost one or two vector operations per pixel), NCHW across output columns
// (even and odd input columns separated with a permute).

#define DLGRID_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl")))

struct Pick {
  __m512 value;
  __mmask16 tb, td, t1;  // b beat a, d beat c, the second row's winner beat the first's
};

DLGRID_AVX512 inline Pick pick(__m512 a, __m512 b, __m512 c, __m512 d) {
  Pick p;
  p.tb = _mm512_cmp_ps_mask(b, a, _CMP_GT_OQ) | _mm512_cmp_ps_mask(b, b, _CMP_UNORD_Q);
  const __m512 m0 = _mm512_mask_blend_ps(p.tb, a, b);
  p.td = _mm512_cmp_ps_mask(d, c, _CMP_GT_OQ) | _mm512_cmp_ps_mask(d, d, _CMP_UNORD_Q);
  const __m512 m1 = _mm512_mask_blend_ps(p.td, c, d);
  p.t1 = _mm512_cmp_ps_mask(m1, m0, _CMP_GT_OQ) | _mm512_cmp_ps_mask(m1, m1, _CMP_UNORD_Q);
  p.value = _mm512_mask_blend_ps(p.t1, m0, m1);
  return p;
}

DLGRID_AVX512 inline void store_index(const Pick& p, uint8_t* at, __mmask16 lanes) {
  const __m128i i0 = _mm_maskz_mov_epi8(p.tb, _mm_set1_epi8(1));
  const __m128i i1 = _mm_mask_blend_epi8(p.td, _mm_set1_epi8(2), _mm_set1_epi8(3));
  _mm_mask_storeu_epi8(at, lanes, _mm_mask_blend_epi8(p.t1, i0, i1));
}

// The gradient `g` routed by window positions `k`: one vector per window position.
struct Routed {
  __m512 a, b, c, d;
};

DLGRID_AVX512 inline Routed route(__m512 g, __m128i k) {
  return {_mm512_maskz_mov_ps(_mm_cmpeq_epi8_mask(k, _mm_setzero_si128()), g),
          _mm512_maskz_mov_ps(_mm_cmpeq_epi8_mask(k, _mm_set1_epi8(1)), g),
          _mm512_maskz_mov_ps(_mm_cmpeq_epi8_mask(k, _mm_set1_epi8(2)), g),
          _mm512_maskz_mov_ps(_mm_cmpeq_epi8_mask(k, _mm_set1_epi8(3)), g)};
}

// A mask of the first n of 16 lanes (none for n <= 0).
inline __mmask16 first_lanes(int64_t n) {
  return n <= 0 ? __mmask16(0) : n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1);
}

// Channels-last: `r0`, `r1` are two input rows of W pixels x C channels; `out`, `idx` one
// output row of OW x C.
DLGRID_AVX512 void pool_row_nhwc(const float* __restrict r0, const float* __restrict r1,
                                 float* __restrict out, uint8_t* __restrict idx, int64_t ow_count,
                                 int64_t c) {
  for (int64_t ow = 0; ow < ow_count; ++ow) {
    const float* a = r0 + 2 * ow * c;
    const float* d0 = r1 + 2 * ow * c;
    for (int64_t c0 = 0; c0 < c; c0 += 16) {
      const __mmask16 lanes = first_lanes(c - c0);
      const Pick p = pick(_mm512_maskz_loadu_ps(lanes, a + c0),
                          _mm512_maskz_loadu_ps(lanes, a + c + c0),
                          _mm512_maskz_loadu_ps(lanes, d0 + c0),
                          _mm512_maskz_loadu_ps(lanes, d0 + c + c0));
      _mm512_mask_storeu_ps(out + ow * c + c0, lanes, p.value);
      if (idx) store_index(p, idx + ow * c + c0, lanes);
    }
  }
}

// Writes every element of the two input rows' gradient, so it needs no zero fill first.
DLGRID_AVX512 void unpool_row_nhwc(const float* __restrict g, const uint8_t* __restrict idx,
                                   float* __restrict r0, float* __restrict r1, int64_t ow_count,
                                   int64_t c) {
  for (int64_t ow = 0; ow < ow_count; ++ow) {
    float* a = r0 + 2 * ow * c;
    float* d0 = r1 + 2 * ow * c;
    for (int64_t c0 = 0; c0 < c; c0 += 16) {
      const __mmask16 lanes = first_lanes(c - c0);
      const Routed r = route(_mm512_maskz_loadu_ps(lanes, g + ow * c + c0),
                             _mm_maskz_loadu_epi8(lanes, idx + ow * c + c0));
      _mm512_mask_storeu_ps(a + c0, lanes, r.a);
      _mm512_mask_storeu_ps(a + c + c0, lanes, r.b);
      _mm512_mask_storeu_ps(d0 + c0, lanes, r.c);
      _mm512_mask_storeu_ps(d0 + c + c0, lanes, r.d);
    }
  }
}

// NCHW: `r0`, `r1` are two input rows of W floats; `out`, `idx` one output row of OW.
DLGRID_AVX512 void pool_row_nchw(const float* __restrict r0, const float* __restrict r1,
                                 float* __restrict out, uint8_t* __restrict idx,
                                 int64_t ow_count) {
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  for (int64_t o0 = 0; o0 < ow_count; o0 += 16) {
    const int64_t n = std::min<int64_t>(16, ow_count - o0);
    const __mmask16 lanes = first_lanes(n), lo = first_lanes(2 * n), hi = first_lanes(2 * n - 16);
    const float* x0 = r0 + 2 * o0;
    const float* x1 = r1 + 2 * o0;
    const __m512 l0 = _mm512_maskz_loadu_ps(lo, x0), h0 = _mm512_maskz_loadu_ps(hi, x0 + 16);
    const __m512 l1 = _mm512_maskz_loadu_ps(lo, x1), h1 = _mm512_maskz_loadu_ps(hi, x1 + 16);
    const Pick p = pick(_mm512_permutex2var_ps(l0, even, h0), _mm512_permutex2var_ps(l0, odd, h0),
                        _mm512_permutex2var_ps(l1, even, h1), _mm512_permutex2var_ps(l1, odd, h1));
    _mm512_mask_storeu_ps(out + o0, lanes, p.value);
    if (idx) store_index(p, idx + o0, lanes);
  }
}

DLGRID_AVX512 void unpool_row_nchw(const float* __restrict g, const uint8_t* __restrict idx,
                                   float* __restrict r0, float* __restrict r1,
                                   int64_t ow_count) {
  const __m512i first = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const __m512i second =
      _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  for (int64_t o0 = 0; o0 < ow_count; o0 += 16) {
    const int64_t n = std::min<int64_t>(16, ow_count - o0);
    const __mmask16 lanes = first_lanes(n), lo = first_lanes(2 * n), hi = first_lanes(2 * n - 16);
    const Routed r =
        route(_mm512_maskz_loadu_ps(lanes, g + o0), _mm_maskz_loadu_epi8(lanes, idx + o0));
    float* x0 = r0 + 2 * o0;
    float* x1 = r1 + 2 * o0;
    _mm512_mask_storeu_ps(x0, lo, _mm512_permutex2var_ps(r.a, first, r.b));
    _mm512_mask_storeu_ps(x0 + 16, hi, _mm512_permutex2var_ps(r.a, second, r.b));
    _mm512_mask_storeu_ps(x1, lo, _mm512_permutex2var_ps(r.c, first, r.d));
    _mm512_mask_storeu_ps(x1 + 16, hi, _mm512_permutex2var_ps(r.c, second, r.d));
  }
}

bool cpu_has_avx512() {
  static const bool has = __builtin_cpu_supports("avx512f") &&
                          __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
  return has;
}

enum class Layout { Unsupported, Nchw, Nhwc };

// The kernels' cases; everything else (other CPUs, devices, dtypes, layouts, odd sizes) goes to
// aten's own kernel.
Layout fast_pool_layout(const at::Tensor& x) {
  if (!cpu_has_avx512() || !x.device().is_cpu() || x.scalar_type() != at::kFloat ||
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

// Returns the pooled tensor and, when `with_indices`, the window positions (one byte per
// output element, in the output's memory order).
std::pair<at::Tensor, at::Tensor> pool_forward(const at::Tensor& x, Layout layout,
                                               bool with_indices) {
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  const int64_t oh = h / 2, ow = w / 2;
  auto out = at::empty({n, c, oh, ow}, x.options().memory_format(memory_format(layout)));
  at::Tensor idx;
  if (with_indices) idx = at::empty({n * c * oh * ow}, x.options().dtype(at::kByte));
  const float* xp = x.const_data_ptr<float>();
  float* op = out.mutable_data_ptr<float>();
  uint8_t* ip = with_indices ? idx.mutable_data_ptr<uint8_t>() : nullptr;
  if (layout == Layout::Nhwc) {
    at::parallel_for(0, n * oh, grain_rows(ow * c), [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const float* r0 = xp + (r / oh * h + 2 * (r % oh)) * w * c;
        pool_row_nhwc(r0, r0 + w * c, op + r * ow * c, ip ? ip + r * ow * c : nullptr, ow, c);
      }
    });
  } else {
    at::parallel_for(0, n * c * oh, grain_rows(ow), [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const float* r0 = xp + (r / oh * h + 2 * (r % oh)) * w;
        pool_row_nchw(r0, r0 + w, op + r * ow, ip ? ip + r * ow : nullptr, ow);
      }
    });
  }
  return {out, idx};
}

at::Tensor pool_backward(const at::Tensor& grad, const at::Tensor& idx, Layout layout, int64_t h,
                         int64_t w) {
  const auto g = grad.contiguous(memory_format(layout));
  const int64_t n = g.size(0), c = g.size(1), oh = g.size(2), ow = g.size(3);
  auto gi = at::empty({n, c, h, w}, g.options().memory_format(memory_format(layout)));
  const float* gp = g.const_data_ptr<float>();
  const uint8_t* ip = idx.const_data_ptr<uint8_t>();
  float* out = gi.mutable_data_ptr<float>();
  if (layout == Layout::Nhwc) {
    at::parallel_for(0, n * oh, grain_rows(ow * c), [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        float* r0 = out + (r / oh * h + 2 * (r % oh)) * w * c;
        unpool_row_nhwc(gp + r * ow * c, ip + r * ow * c, r0, r0 + w * c, ow, c);
      }
    });
  } else {
    at::parallel_for(0, n * c * oh, grain_rows(ow), [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        float* r0 = out + (r / oh * h + 2 * (r % oh)) * w;
        unpool_row_nchw(gp + r * ow, ip + r * ow, r0, r0 + w, ow);
      }
    });
  }
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

// ---- Convolution of single-channel images ---------------------------------------------------
//
// The first layer on grayscale data (MNIST, Fashion-MNIST): one input channel, stride 1, no
// padding. oneDNN's kernels block over input channels and 16 output channels, so one input
// channel and 10 outputs leave most of each vector idle (paper-CNN step of 128 images on the
// 2-core CPU: forward 0.56 ms, ours 0.25; forward and gradients 1.47 ms, ours 0.97). Here each
// output row is vectorised along its columns: every kernel tap is one (unaligned) load of the
// input row and one FMA per output channel. The output is NCHW.

bool fast_conv_applies(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b,
                       int64_t padding) {
  if (!cpu_has_avx512() || padding != 0 || !x.device().is_cpu() || !w.device().is_cpu() ||
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

// One output row (image `img`, row `oy`) of output channels [oc0, oc0 + B), V vectors of 16
// columns at a time from column ox0: B x V independent accumulators keep both FMA units busy
// (one accumulator per channel would wait on FMA latency). `w` is [OC][KH*KW] contiguous.
template <int B, int V>
DLGRID_AVX512 inline void conv_row(const float* __restrict x, const float* __restrict w,
                                   const float* __restrict bias, float* __restrict out,
                                   int64_t img, int64_t oy, int64_t ox0, int64_t oc0,
                                   int64_t oc_count, int64_t h, int64_t wd, int64_t kh, int64_t kw,
                                   int64_t oh, int64_t ow) {
  __mmask16 lanes[V];
  #pragma GCC unroll 32
  for (int v = 0; v < V; ++v) lanes[v] = first_lanes(ow - ox0 - 16 * v);
  __m512 acc[B][V];
  #pragma GCC unroll 32
  for (int j = 0; j < B; ++j)
    #pragma GCC unroll 32
    for (int v = 0; v < V; ++v) acc[j][v] = _mm512_set1_ps(bias ? bias[oc0 + j] : 0.0f);
  const int64_t taps = kh * kw;
  for (int64_t ky = 0; ky < kh; ++ky) {
    const float* row = x + (img * h + oy + ky) * wd + ox0;
    for (int64_t kx = 0; kx < kw; ++kx) {
      __m512 in[V];
      #pragma GCC unroll 32
      for (int v = 0; v < V; ++v) in[v] = _mm512_maskz_loadu_ps(lanes[v], row + kx + 16 * v);
      const int64_t t = ky * kw + kx;
      #pragma GCC unroll 32
      for (int j = 0; j < B; ++j) {
        const __m512 wv = _mm512_set1_ps(w[(oc0 + j) * taps + t]);
        #pragma GCC unroll 32
        for (int v = 0; v < V; ++v) acc[j][v] = _mm512_fmadd_ps(in[v], wv, acc[j][v]);
      }
    }
  }
  #pragma GCC unroll 32
  for (int j = 0; j < B; ++j)
    #pragma GCC unroll 32
    for (int v = 0; v < V; ++v)
      _mm512_mask_storeu_ps(out + ((img * oc_count + oc0 + j) * oh + oy) * ow + ox0 + 16 * v,
                            lanes[v], acc[j][v]);
}

template <int B>
DLGRID_AVX512 void conv_rows(const float* __restrict x, const float* __restrict w,
                             const float* __restrict bias, float* __restrict out, int64_t img,
                             int64_t oy, int64_t oc0, int64_t oc_count, int64_t h, int64_t wd,
                             int64_t kh, int64_t kw, int64_t oh, int64_t ow) {
  for (int64_t ox0 = 0; ox0 < ow; ox0 += 32) {
    if (ow - ox0 > 16)
      conv_row<B, 2>(x, w, bias, out, img, oy, ox0, oc0, oc_count, h, wd, kh, kw, oh, ow);
    else
      conv_row<B, 1>(x, w, bias, out, img, oy, ox0, oc0, oc_count, h, wd, kh, kw, oh, ow);
  }
}

// Weight and bias gradient contributions of image `img`, added to per-lane partial sums:
// `dw` is [OC][KH][KW][16] and `db` [OC][16]. For each block of B channels and kernel row, the
// B x KW partial sums live in registers while the image's rows stream past (the image and its
// gradient stay in L1 across the passes).
template <int B, int KW>
DLGRID_AVX512 void conv_grad_image(const float* __restrict x, const float* __restrict g,
                                   float* __restrict dw, float* __restrict db, int64_t img,
                                   int64_t oc_count, int64_t h, int64_t wd, int64_t kh,
                                   int64_t oh, int64_t ow) {
  for (int64_t oc0 = 0; oc0 < oc_count; oc0 += B) {
    for (int64_t ky = 0; ky < kh; ++ky) {
      __m512 acc[B][KW];
      __m512 bacc[B];
      #pragma GCC unroll 32
      for (int j = 0; j < B; ++j) {
        #pragma GCC unroll 32
        for (int k = 0; k < KW; ++k)
          acc[j][k] = _mm512_loadu_ps(dw + (((oc0 + j) * kh + ky) * KW + k) * 16);
        bacc[j] = _mm512_loadu_ps(db + (oc0 + j) * 16);
      }
      for (int64_t oy = 0; oy < oh; ++oy) {
        const float* row = x + (img * h + oy + ky) * wd;
        for (int64_t ox0 = 0; ox0 < ow; ox0 += 16) {
          const __mmask16 lanes = first_lanes(ow - ox0);
          __m512 gv[B];
          #pragma GCC unroll 32
          for (int j = 0; j < B; ++j)
            gv[j] = _mm512_maskz_loadu_ps(
                lanes, g + ((img * oc_count + oc0 + j) * oh + oy) * ow + ox0);
          if (ky == 0)
            #pragma GCC unroll 32
            for (int j = 0; j < B; ++j) bacc[j] = _mm512_add_ps(bacc[j], gv[j]);
          #pragma GCC unroll 32
          for (int k = 0; k < KW; ++k) {
            const __m512 v = _mm512_maskz_loadu_ps(lanes, row + ox0 + k);
            #pragma GCC unroll 32
            for (int j = 0; j < B; ++j) acc[j][k] = _mm512_fmadd_ps(gv[j], v, acc[j][k]);
          }
        }
      }
      #pragma GCC unroll 32
      for (int j = 0; j < B; ++j) {
        #pragma GCC unroll 32
        for (int k = 0; k < KW; ++k)
          _mm512_storeu_ps(dw + (((oc0 + j) * kh + ky) * KW + k) * 16, acc[j][k]);
        _mm512_storeu_ps(db + (oc0 + j) * 16, bacc[j]);
      }
    }
  }
}

// The largest block of output channels dividing `oc` with at most `limit` channels.
int channel_block(int64_t oc, int limit) {
  for (int b : {10, 8, 5, 4, 3, 2})
    if (b <= limit && oc % b == 0) return b;
  return 1;
}

template <typename F>
void with_block(int b, F f) {
  switch (b) {
    case 10: f(std::integral_constant<int, 10>{}); break;
    case 8: f(std::integral_constant<int, 8>{}); break;
    case 5: f(std::integral_constant<int, 5>{}); break;
    case 4: f(std::integral_constant<int, 4>{}); break;
    case 3: f(std::integral_constant<int, 3>{}); break;
    case 2: f(std::integral_constant<int, 2>{}); break;
    default: f(std::integral_constant<int, 1>{}); break;
  }
}

template <typename F>
void with_kernel_width(int64_t kw, F f) {
  switch (kw) {
    case 3: f(std::integral_constant<int, 3>{}); break;
    case 5: f(std::integral_constant<int, 5>{}); break;
    default: f(std::integral_constant<int, 7>{}); break;  // fast_conv_applies allows 3, 5, 7
  }
}

at::Tensor conv_forward(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  const int64_t n = x.size(0), h = x.size(2), wd = x.size(3);
  const int64_t oc = weight.size(0), kh = weight.size(2), kw = weight.size(3);
  const int64_t oh = h - kh + 1, ow = wd - kw + 1;
  const auto w = weight.contiguous();
  const auto b = bias.defined() ? bias.contiguous() : bias;
  auto out = at::empty({n, oc, oh, ow}, x.options());
  const float* xp = x.const_data_ptr<float>();
  const float* wp = w.const_data_ptr<float>();
  const float* bp = b.defined() ? b.const_data_ptr<float>() : nullptr;
  float* op = out.mutable_data_ptr<float>();
  // B x 2 accumulators plus 2 input vectors within the 32 vector registers.
  with_block(channel_block(oc, 10), [&](auto bc) {
    constexpr int B = decltype(bc)::value;
    at::parallel_for(0, n * oh, grain_rows(ow * oc * kh * kw), [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r)
        for (int64_t oc0 = 0; oc0 < oc; oc0 += B)
          conv_rows<B>(xp, wp, bp, op, r / oh, r % oh, oc0, oc, h, wd, kh, kw, oh, ow);
    });
  });
  return out;
}

// Weight and bias gradients. Each thread sums a fixed range of images into its own per-lane
// partial sums; those are added up in a fixed order, so results are reproducible for a given
// thread count.
std::pair<at::Tensor, at::Tensor> conv_backward(const at::Tensor& x, const at::Tensor& grad,
                                                const at::Tensor& weight, bool with_bias) {
  const auto g = grad.contiguous();
  const int64_t n = x.size(0), h = x.size(2), wd = x.size(3);
  const int64_t oc = weight.size(0), kh = weight.size(2), kw = weight.size(3);
  const int64_t oh = g.size(2), ow = g.size(3);
  const int64_t parts = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), n));
  auto dw = at::zeros({parts, oc, kh, kw, 16}, x.options());
  auto db = at::zeros({parts, oc, 16}, x.options());
  const float* xp = x.const_data_ptr<float>();
  const float* gp = g.const_data_ptr<float>();
  float* dwp = dw.mutable_data_ptr<float>();
  float* dbp = db.mutable_data_ptr<float>();
  // B x KW accumulators, B gradient vectors and one input vector within 32 registers.
  with_block(channel_block(oc, 25 / kw), [&](auto bc) {
    with_kernel_width(kw, [&](auto kc) {
      constexpr int B = decltype(bc)::value, KW = decltype(kc)::value;
      if constexpr (B * KW <= 25) {
        at::parallel_for(0, parts, 1, [&](int64_t begin, int64_t end) {
          for (int64_t p = begin; p < end; ++p)
            for (int64_t img = n * p / parts; img < n * (p + 1) / parts; ++img)
              conv_grad_image<B, KW>(xp, gp, dwp + p * oc * kh * kw * 16, dbp + p * oc * 16,
                                     img, oc, h, wd, kh, oh, ow);
        });
      } else {
        // channel_block keeps B x KW <= 25; the branch only spares compiling larger kernels.
        TORCH_CHECK(false, "single-channel conv: no kernel for ", B, " channels x ", KW);
      }
    });
  });
  return {dw.sum(at::IntArrayRef{0, 4}).view(weight.sizes()),
          with_bias ? db.sum(at::IntArrayRef{0, 2}) : at::Tensor()};
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

at::Tensor conv2d(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& b,
                  int64_t padding) {
  const bool grad = at::GradMode::is_enabled();
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

}  // extern "C"
