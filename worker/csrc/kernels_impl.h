// The kernels of kernels.h, written once over a vector type V and compiled once per instruction
// set. Include only from a kernels_<isa>.cpp that defines V first (see kernels_avx512.cpp for what
// V provides). Everything here has internal linkage.
//
// Pooling: aten scans a window in the order (0,0) (0,1) (1,0) (1,1) and takes a new element when
// `val > max || isnan(val)`. Applying that rule within each row and then between the two rows'
// winners picks the same element (so results equal aten's bit for bit, ties and NaNs included);
// the byte index records its window position 0..3 for the backward pass. Channels-last
// vectorises across channels (10 or 20 channels cost one or two vector operations per pixel),
// NCHW across output columns (even and odd input columns separated with a shuffle).
//
// Convolution of single-channel images (the first layer on MNIST and Fashion-MNIST): each output
// row is vectorised along its columns, every kernel tap one unaligned load of the input row and
// one FMA per output channel, with blocks of output channels sized to the register file (B x 2
// accumulators) so the FMA units never wait on one accumulator's latency. The weight gradient
// keeps B x KW per-lane partial sums in registers while an image's rows stream past.

#pragma once

#include "kernels.h"

namespace {

using dlgrid::ConvShape;
using dlgrid::PoolShape;
using dlgrid::RgbConvShape;
using dlgrid::WinoShape;

constexpr int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

// std::integral_constant without its header (see kernels.h on headers).
template <int X>
struct Int {
  static constexpr int value = X;
};

template <typename V>
struct Pick {
  typename V::F value;
  typename V::M tb, td, t1;  // b beat a, d beat c, the second row's winner beat the first's
};

template <typename V>
inline Pick<V> pick(typename V::F a, typename V::F b, typename V::F c, typename V::F d) {
  Pick<V> p;
  p.tb = V::beats(b, a);
  const auto m0 = V::blend(p.tb, a, b);
  p.td = V::beats(d, c);
  const auto m1 = V::blend(p.td, c, d);
  p.t1 = V::beats(m1, m0);
  p.value = V::blend(p.t1, m0, m1);
  return p;
}

template <typename V>
void pool_nhwc(const float* __restrict x, float* __restrict out, uint8_t* __restrict idx,
               int64_t begin, int64_t end, const PoolShape& s) {
  const int64_t c = s.c, w = s.w;
  for (int64_t r = begin; r < end; ++r) {
    const float* r0 = x + (r / s.oh * s.h + 2 * (r % s.oh)) * w * c;
    const float* r1 = r0 + w * c;
    float* o = out + r * s.ow * c;
    uint8_t* k = idx ? idx + r * s.ow * c : nullptr;
    for (int64_t ow = 0; ow < s.ow; ++ow) {
      const float* a = r0 + 2 * ow * c;
      const float* d0 = r1 + 2 * ow * c;
      for (int64_t c0 = 0; c0 < c; c0 += V::N) {
        const int64_t n = min64(V::N, c - c0);
        const auto t = V::tail(n);
        const Pick<V> p = pick<V>(V::load(t, a + c0), V::load(t, a + c + c0), V::load(t, d0 + c0),
                                  V::load(t, d0 + c + c0));
        V::store(t, o + ow * c + c0, p.value);
        if (k) V::store_index(p.tb, p.td, p.t1, k + ow * c + c0, n);
      }
    }
  }
}

template <typename V>
void unpool_nhwc(const float* __restrict grad, const uint8_t* __restrict idx,
                 float* __restrict gi, int64_t begin, int64_t end, const PoolShape& s) {
  const int64_t c = s.c, w = s.w;
  for (int64_t r = begin; r < end; ++r) {
    float* r0 = gi + (r / s.oh * s.h + 2 * (r % s.oh)) * w * c;
    float* r1 = r0 + w * c;
    const float* g = grad + r * s.ow * c;
    const uint8_t* k = idx + r * s.ow * c;
    for (int64_t ow = 0; ow < s.ow; ++ow) {
      float* a = r0 + 2 * ow * c;
      float* d0 = r1 + 2 * ow * c;
      for (int64_t c0 = 0; c0 < c; c0 += V::N) {
        const int64_t n = min64(V::N, c - c0);
        const auto t = V::tail(n);
        const auto gv = V::load(t, g + ow * c + c0);
        const auto pos = V::load_index(k + ow * c + c0, n);
        V::store(t, a + c0, V::route(gv, pos, 0));
        V::store(t, a + c + c0, V::route(gv, pos, 1));
        V::store(t, d0 + c0, V::route(gv, pos, 2));
        V::store(t, d0 + c + c0, V::route(gv, pos, 3));
      }
    }
  }
}

template <typename V>
void pool_nchw(const float* __restrict x, float* __restrict out, uint8_t* __restrict idx,
               int64_t begin, int64_t end, const PoolShape& s) {
  for (int64_t r = begin; r < end; ++r) {
    const float* x0 = x + (r / s.oh * s.h + 2 * (r % s.oh)) * s.w;
    const float* x1 = x0 + s.w;
    for (int64_t o0 = 0; o0 < s.ow; o0 += V::N) {
      const int64_t n = min64(V::N, s.ow - o0);
      const auto lo = V::tail(2 * n), hi = V::tail(2 * n - V::N);
      typename V::F a, b, c, d;
      V::deinterleave(V::load(lo, x0 + 2 * o0), V::load(hi, x0 + 2 * o0 + V::N), a, b);
      V::deinterleave(V::load(lo, x1 + 2 * o0), V::load(hi, x1 + 2 * o0 + V::N), c, d);
      const Pick<V> p = pick<V>(a, b, c, d);
      V::store(V::tail(n), out + r * s.ow + o0, p.value);
      if (idx) V::store_index(p.tb, p.td, p.t1, idx + r * s.ow + o0, n);
    }
  }
}

template <typename V>
void unpool_nchw(const float* __restrict grad, const uint8_t* __restrict idx,
                 float* __restrict gi, int64_t begin, int64_t end, const PoolShape& s) {
  for (int64_t r = begin; r < end; ++r) {
    float* x0 = gi + (r / s.oh * s.h + 2 * (r % s.oh)) * s.w;
    float* x1 = x0 + s.w;
    for (int64_t o0 = 0; o0 < s.ow; o0 += V::N) {
      const int64_t n = min64(V::N, s.ow - o0);
      const auto lo = V::tail(2 * n), hi = V::tail(2 * n - V::N);
      const auto gv = V::load(V::tail(n), grad + r * s.ow + o0);
      const auto pos = V::load_index(idx + r * s.ow + o0, n);
      typename V::F first, second;
      V::interleave(V::route(gv, pos, 0), V::route(gv, pos, 1), first, second);
      V::store(lo, x0 + 2 * o0, first);
      V::store(hi, x0 + 2 * o0 + V::N, second);
      V::interleave(V::route(gv, pos, 2), V::route(gv, pos, 3), first, second);
      V::store(lo, x1 + 2 * o0, first);
      V::store(hi, x1 + 2 * o0 + V::N, second);
    }
  }
}

// One output row (image `img`, row `oy`) of output channels [oc0, oc0 + B), VC vectors of
// columns at a time from column ox0.
template <typename V, int B, int VC>
inline void conv_row(const float* __restrict x, const float* __restrict w,
                     const float* __restrict bias, float* __restrict out, int64_t img, int64_t oy,
                     int64_t ox0, int64_t oc0, const ConvShape& s) {
  typename V::T lanes[VC];
#pragma GCC unroll 32
  for (int v = 0; v < VC; ++v) lanes[v] = V::tail(s.ow - ox0 - V::N * v);
  typename V::F acc[B][VC];
#pragma GCC unroll 32
  for (int j = 0; j < B; ++j)
#pragma GCC unroll 32
    for (int v = 0; v < VC; ++v) acc[j][v] = V::set1(bias ? bias[oc0 + j] : 0.0f);
  const int64_t taps = s.kh * s.kw;
  for (int64_t ky = 0; ky < s.kh; ++ky) {
    const float* row = x + (img * s.h + oy + ky) * s.wd + ox0;
    for (int64_t kx = 0; kx < s.kw; ++kx) {
      typename V::F in[VC];
#pragma GCC unroll 32
      for (int v = 0; v < VC; ++v) in[v] = V::load(lanes[v], row + kx + V::N * v);
      const int64_t t = ky * s.kw + kx;
#pragma GCC unroll 32
      for (int j = 0; j < B; ++j) {
        const auto wv = V::set1(w[(oc0 + j) * taps + t]);
#pragma GCC unroll 32
        for (int v = 0; v < VC; ++v) acc[j][v] = V::fmadd(in[v], wv, acc[j][v]);
      }
    }
  }
#pragma GCC unroll 32
  for (int j = 0; j < B; ++j)
#pragma GCC unroll 32
    for (int v = 0; v < VC; ++v)
      V::store(lanes[v], out + ((img * s.oc + oc0 + j) * s.oh + oy) * s.ow + ox0 + V::N * v,
               acc[j][v]);
}

template <typename V, int B>
void conv_rows(const float* __restrict x, const float* __restrict w, const float* __restrict bias,
               float* __restrict out, int64_t begin, int64_t end, const ConvShape& s) {
  for (int64_t r = begin; r < end; ++r) {
    const int64_t img = r / s.oh, oy = r % s.oh;
    for (int64_t oc0 = 0; oc0 < s.oc; oc0 += B)
      for (int64_t ox0 = 0; ox0 < s.ow; ox0 += 2 * V::N) {
        if (s.ow - ox0 > V::N)
          conv_row<V, B, 2>(x, w, bias, out, img, oy, ox0, oc0, s);
        else
          conv_row<V, B, 1>(x, w, bias, out, img, oy, ox0, oc0, s);
      }
  }
}

template <typename V, int B, int KW>
void conv_grad_image(const float* __restrict x, const float* __restrict g, float* __restrict dw,
                     float* __restrict db, int64_t img, const ConvShape& s) {
  constexpr int N = V::N;
  for (int64_t oc0 = 0; oc0 < s.oc; oc0 += B) {
    for (int64_t ky = 0; ky < s.kh; ++ky) {
      typename V::F acc[B][KW];
      typename V::F bacc[B];
#pragma GCC unroll 32
      for (int j = 0; j < B; ++j) {
#pragma GCC unroll 32
        for (int k = 0; k < KW; ++k) acc[j][k] = V::load(dw + (((oc0 + j) * s.kh + ky) * KW + k) * N);
        bacc[j] = V::load(db + (oc0 + j) * N);
      }
      for (int64_t oy = 0; oy < s.oh; ++oy) {
        const float* row = x + (img * s.h + oy + ky) * s.wd;
        for (int64_t ox0 = 0; ox0 < s.ow; ox0 += N) {
          const auto lanes = V::tail(s.ow - ox0);
          typename V::F gv[B];
#pragma GCC unroll 32
          for (int j = 0; j < B; ++j)
            gv[j] = V::load(lanes, g + ((img * s.oc + oc0 + j) * s.oh + oy) * s.ow + ox0);
          if (ky == 0)
#pragma GCC unroll 32
            for (int j = 0; j < B; ++j) bacc[j] = V::add(bacc[j], gv[j]);
#pragma GCC unroll 32
          for (int k = 0; k < KW; ++k) {
            const auto v = V::load(lanes, row + ox0 + k);
#pragma GCC unroll 32
            for (int j = 0; j < B; ++j) acc[j][k] = V::fmadd(gv[j], v, acc[j][k]);
          }
        }
      }
#pragma GCC unroll 32
      for (int j = 0; j < B; ++j) {
#pragma GCC unroll 32
        for (int k = 0; k < KW; ++k) V::store(dw + (((oc0 + j) * s.kh + ky) * KW + k) * N, acc[j][k]);
        V::store(db + (oc0 + j) * N, bacc[j]);
      }
    }
  }
}

// The largest block of output channels dividing `oc` with at most `limit` channels.
inline int channel_block(int64_t oc, int limit) {
  constexpr int blocks[] = {10, 8, 5, 4, 3, 2};
  for (int b : blocks)
    if (b <= limit && oc % b == 0) return b;
  return 1;
}

template <typename F>
void with_block(int b, F f) {
  switch (b) {
    case 10: f(Int<10>{}); break;
    case 8: f(Int<8>{}); break;
    case 5: f(Int<5>{}); break;
    case 4: f(Int<4>{}); break;
    case 3: f(Int<3>{}); break;
    case 2: f(Int<2>{}); break;
    default: f(Int<1>{}); break;
  }
}

template <typename F>
void with_kernel_width(int64_t kw, F f) {
  switch (kw) {
    case 3: f(Int<3>{}); break;
    case 5: f(Int<5>{}); break;
    default: f(Int<7>{}); break;  // ops.cpp allows 3, 5, 7
  }
}

// Blocks of output channels: B x 2 accumulators, 2 input vectors and a broadcast weight fit in
// V::kRegisters.
template <typename V>
void conv_forward(const float* x, const float* w, const float* bias, float* out, int64_t begin,
                  int64_t end, const ConvShape& s) {
  constexpr int limit = (V::kRegisters - 3) / 2;
  with_block(channel_block(s.oc, limit), [&](auto bc) {
    constexpr int B = decltype(bc)::value;
    if constexpr (B <= limit) conv_rows<V, B>(x, w, bias, out, begin, end, s);
  });
}

// B x KW accumulators, B gradient vectors, B bias sums and one input vector fit in the registers
// (AVX-512 allows a little more: spilling the bias sums costs less than halving B).
template <typename V>
void conv_grad(const float* x, const float* g, float* dw, float* db, int64_t begin, int64_t end,
               const ConvShape& s) {
  with_kernel_width(s.kw, [&](auto kc) {
    constexpr int KW = decltype(kc)::value;
    constexpr int limit = V::kGradRegisters / (KW + 2);
    with_block(channel_block(s.oc, limit), [&](auto bc) {
      constexpr int B = decltype(bc)::value;
      if constexpr (B <= limit)
        for (int64_t img = begin; img < end; ++img) conv_grad_image<V, B, KW>(x, g, dw, db, img, s);
    });
  });
}

// ---- Convolution of images with few channels, channels-last -----------------------------------
//
// The forward pass keeps a block of P output pixels x OB vectors of output channels in registers
// while the 3 x 3 x ci taps stream past: per tap, OB weight vectors (from a 9 x ci x oc table that
// stays in L1) and one broadcast input value per pixel.

template <typename V, int P, int OB>
inline void rgb_block(const float* __restrict x, const float* __restrict w,
                      const float* __restrict bias, float* __restrict out, int64_t img,
                      int64_t oy, int64_t ox0, int64_t oc0, const RgbConvShape& s) {
  constexpr int N = V::N;
  typename V::F acc[P][OB];
#pragma GCC unroll 32
  for (int v = 0; v < OB; ++v) {
    const auto b0 = bias ? V::load(bias + oc0 + N * v) : V::set1(0.0f);
#pragma GCC unroll 32
    for (int p = 0; p < P; ++p) acc[p][v] = b0;
  }
  for (int64_t ky = 0; ky < 3; ++ky) {
    const float* row = x + ((img * s.hp + oy + ky) * s.wp + ox0) * s.ci;
    for (int64_t kx = 0; kx < 3; ++kx)
      for (int64_t c = 0; c < s.ci; ++c) {
        const float* wt = w + ((ky * 3 + kx) * s.ci + c) * s.oc + oc0;
        typename V::F wv[OB];
#pragma GCC unroll 32
        for (int v = 0; v < OB; ++v) wv[v] = V::load(wt + N * v);
#pragma GCC unroll 32
        for (int p = 0; p < P; ++p) {
          const auto xv = V::set1(row[(p + kx) * s.ci + c]);
#pragma GCC unroll 32
          for (int v = 0; v < OB; ++v) acc[p][v] = V::fmadd(xv, wv[v], acc[p][v]);
        }
      }
  }
  float* o = out + ((img * s.oh + oy) * s.ow + ox0) * s.oc + oc0;
#pragma GCC unroll 32
  for (int p = 0; p < P; ++p)
#pragma GCC unroll 32
    for (int v = 0; v < OB; ++v) V::store(o + p * s.oc + N * v, acc[p][v]);
}

template <typename V, int P, int OB>
void rgb_rows(const float* x, const float* w, const float* bias, float* out, int64_t begin,
              int64_t end, const RgbConvShape& s) {
  for (int64_t r = begin; r < end; ++r) {
    const int64_t img = r / s.oh, oy = r % s.oh;
    for (int64_t oc0 = 0; oc0 < s.oc; oc0 += OB * V::N) {
      int64_t ox0 = 0;
      for (; ox0 + P <= s.ow; ox0 += P) rgb_block<V, P, OB>(x, w, bias, out, img, oy, ox0, oc0, s);
      for (; ox0 < s.ow; ++ox0) rgb_block<V, 1, OB>(x, w, bias, out, img, oy, ox0, oc0, s);
    }
  }
}

// OB vectors of output channels (dividing oc's), P pixels: P x OB accumulators, OB weights and a
// broadcast fit in V::kRegisters.
template <typename V>
void rgb_conv_forward(const float* x, const float* w, const float* bias, float* out,
                      int64_t begin, int64_t end, const RgbConvShape& s) {
  const int64_t vecs = s.oc / V::N;
  if (vecs % 4 == 0)
    rgb_rows<V, (V::kRegisters - 5) / 4, 4>(x, w, bias, out, begin, end, s);
  else if (vecs % 2 == 0)
    rgb_rows<V, min64(8, (V::kRegisters - 3) / 2), 2>(x, w, bias, out, begin, end, s);
  else
    rgb_rows<V, 8, 1>(x, w, bias, out, begin, end, s);
}

// The weight gradient: for each block of OB channel vectors, kernel row and input channel, the
// three taps' sums (and the bias sum, on the first pass) stay in registers while the image's
// gradient streams past (from L2: 256 KiB for 64 channels at 32 x 32).
template <typename V, int OB, bool Bias>
inline void rgb_grad_pass(const float* __restrict x, const float* __restrict g,
                          typename V::F (&acc)[3][OB], typename V::F (&bacc)[OB], int64_t img,
                          int64_t ky, int64_t c, int64_t oc0, const RgbConvShape& s) {
  constexpr int N = V::N;
  for (int64_t oy = 0; oy < s.oh; ++oy) {
    const float* xr = x + ((img * s.hp + oy + ky) * s.wp) * s.ci + c;
    const float* gr = g + (img * s.oh + oy) * s.ow * s.oc + oc0;
    for (int64_t ox = 0; ox < s.ow; ++ox) {
      typename V::F gv[OB];
#pragma GCC unroll 32
      for (int v = 0; v < OB; ++v) gv[v] = V::load(gr + ox * s.oc + N * v);
      if constexpr (Bias)
#pragma GCC unroll 32
        for (int v = 0; v < OB; ++v) bacc[v] = V::add(bacc[v], gv[v]);
#pragma GCC unroll 32
      for (int k = 0; k < 3; ++k) {
        const auto xv = V::set1(xr[(ox + k) * s.ci]);
#pragma GCC unroll 32
        for (int v = 0; v < OB; ++v) acc[k][v] = V::fmadd(xv, gv[v], acc[k][v]);
      }
    }
  }
}

// One image at a time, so its gradient is read from L2 by every pass.
template <typename V, int OB>
void rgb_grad_images(const float* x, const float* g, float* dw, float* db, int64_t begin,
                     int64_t end, const RgbConvShape& s) {
  constexpr int N = V::N;
  for (int64_t img = begin; img < end; ++img)
    for (int64_t oc0 = 0; oc0 < s.oc; oc0 += OB * N)
      for (int64_t ky = 0; ky < 3; ++ky)
        for (int64_t c = 0; c < s.ci; ++c) {
          typename V::F acc[3][OB], bacc[OB];
          float* d = dw + (ky * 3 * s.ci + c) * s.oc + oc0;  // tap (ky, k): d + k * ci * oc
#pragma GCC unroll 32
          for (int v = 0; v < OB; ++v) {
#pragma GCC unroll 32
            for (int k = 0; k < 3; ++k) acc[k][v] = V::load(d + k * s.ci * s.oc + N * v);
            bacc[v] = V::load(db + oc0 + N * v);
          }
          if (ky == 0 && c == 0)
            rgb_grad_pass<V, OB, true>(x, g, acc, bacc, img, ky, c, oc0, s);
          else
            rgb_grad_pass<V, OB, false>(x, g, acc, bacc, img, ky, c, oc0, s);
#pragma GCC unroll 32
          for (int v = 0; v < OB; ++v) {
#pragma GCC unroll 32
            for (int k = 0; k < 3; ++k) V::store(d + k * s.ci * s.oc + N * v, acc[k][v]);
            V::store(db + oc0 + N * v, bacc[v]);
          }
        }
}

// 3 x OB tap sums, OB gradient vectors, OB bias sums and a broadcast fit in the registers.
template <typename V>
void rgb_conv_grad(const float* x, const float* g, float* dw, float* db, int64_t begin,
                   int64_t end, const RgbConvShape& s) {
  const int64_t vecs = s.oc / V::N;
  if constexpr (5 * 4 + 1 <= V::kRegisters) {
    if (vecs % 4 == 0) return rgb_grad_images<V, 4>(x, g, dw, db, begin, end, s);
  }
  if (vecs % 2 == 0)
    rgb_grad_images<V, 2>(x, g, dw, db, begin, end, s);
  else
    rgb_grad_images<V, 1>(x, g, dw, db, begin, end, s);
}

// ---- Winograd F(4x4, 3x3) transforms ----------------------------------------------------------
//
// Y = A^T [(G g G^T) * (B^T d B)] A over 6 x 6 input tiles d (Lavin and Gray, 2016), with
//   B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1]
//   A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1]
// (G, for the weights, is applied by winograd.cpp). Each 2-D transform is a 1-D one over the rows
// and then over the columns, vectorised across channels (contiguous in channels-last memory).

// r = B^T d (6 from 6).
template <typename V>
inline void wino_bt(const typename V::F (&d)[6], typename V::F (&r)[6]) {
  const auto c2 = V::set1(2), c4 = V::set1(4), m5 = V::set1(-5);
  r[0] = V::fmadd(c4, d[0], V::fmadd(m5, d[2], d[4]));
  r[1] = V::fmadd(V::set1(-4), V::add(d[1], d[2]), V::add(d[3], d[4]));
  r[2] = V::fmadd(c4, V::sub(d[1], d[2]), V::sub(d[4], d[3]));
  r[3] = V::fmadd(c2, V::sub(d[3], d[1]), V::sub(d[4], d[2]));
  r[4] = V::fmadd(c2, V::sub(d[1], d[3]), V::sub(d[4], d[2]));
  r[5] = V::fmadd(c4, d[1], V::fmadd(m5, d[3], d[5]));
}

// d = B v (6 from 6): the adjoint of wino_bt.
template <typename V>
inline void wino_b(const typename V::F (&v)[6], typename V::F (&d)[6]) {
  const auto c2 = V::set1(2), c4 = V::set1(4), m5 = V::set1(-5);
  const auto s12 = V::add(v[1], v[2]), d21 = V::sub(v[2], v[1]);
  const auto s34 = V::add(v[3], v[4]), d43 = V::sub(v[4], v[3]);
  d[0] = V::mul(c4, v[0]);
  d[1] = V::fmadd(c4, V::add(d21, v[5]), V::mul(c2, d43));
  d[2] = V::sub(V::mul(m5, v[0]), V::fmadd(c4, s12, s34));
  d[3] = V::fmadd(m5, v[5], V::fmadd(c2, V::sub(v[3], v[4]), V::sub(v[1], v[2])));
  d[4] = V::add(V::add(v[0], s12), s34);
  d[5] = v[5];
}

// o = A^T m (4 from 6).
template <typename V>
inline void wino_at(const typename V::F (&m)[6], typename V::F (&o)[4]) {
  const auto s12 = V::add(m[1], m[2]), d12 = V::sub(m[1], m[2]);
  const auto s34 = V::add(m[3], m[4]), d34 = V::sub(m[3], m[4]);
  o[0] = V::add(V::add(m[0], s12), s34);
  o[1] = V::fmadd(V::set1(2), d34, d12);
  o[2] = V::fmadd(V::set1(4), s34, s12);
  o[3] = V::add(V::fmadd(V::set1(8), d34, d12), m[5]);
}

// m = A o (6 from 4): the adjoint of wino_at.
template <typename V>
inline void wino_a(const typename V::F (&o)[4], typename V::F (&m)[6]) {
  const auto e = V::add(o[0], o[2]), f = V::add(o[1], o[3]);
  const auto e4 = V::fmadd(V::set1(4), o[2], o[0]);
  const auto f2 = V::fmadd(V::set1(8), o[3], V::add(o[1], o[1]));
  m[0] = o[0];
  m[1] = V::add(e, f);
  m[2] = V::sub(e, f);
  m[3] = V::add(e4, f2);
  m[4] = V::sub(e4, f2);
  m[5] = o[3];
}

// Tile t's place (see WinoShape), as offsets into a channels-last tensor of the image's shape:
// the corner of its 6 x 6 input window (one row and column into the padding from its 4 x 4
// output tile; negative for the image's first tile, never read there) and which of the window's
// rows and columns lie inside the image; the corner of the output tile and how many of its rows
// and columns do.
struct WinoTile {
  int64_t corner, out_corner, out_rows, out_cols;
  bool row_in[6], col_in[6];
};

inline WinoTile wino_tile(int64_t t, const WinoShape& s) {
  const int64_t per_image = s.th * s.tw, r = t % per_image, img = t / per_image;
  const int64_t y0 = 4 * (r / s.tw) - 1, x0 = 4 * (r % s.tw) - 1;
  WinoTile p;
  p.corner = ((img * s.h + y0) * s.w + x0) * s.c;
  p.out_corner = ((img * s.h + y0 + 1) * s.w + x0 + 1) * s.c;
  p.out_rows = min64(4, s.h - (y0 + 1));
  p.out_cols = min64(4, s.w - (x0 + 1));
  for (int i = 0; i < 6; ++i) {
    p.row_in[i] = y0 + i >= 0 && y0 + i < s.h;
    p.col_in[i] = x0 + i >= 0 && x0 + i < s.w;
  }
  return p;
}

// One vector of channels of a K x K window into the tile's 36 transformed elements, `plane`
// floats apart from `out`: the 1-D transform `tf` (K values to 6) along each of the window's
// rows, then along each column. `at(i, j)` loads the window's element (i, j).
template <typename V, int K, typename At, typename Tf>
inline void window_to_planes(At at, Tf tf, typename V::T lanes, float* out, int64_t plane) {
  using F = typename V::F;
  F rows[K][6];
  for (int i = 0; i < K; ++i) {
    F d[K];
    for (int j = 0; j < K; ++j) d[j] = at(i, j);
    tf(d, rows[i]);
  }
  for (int b = 0; b < 6; ++b) {
    F col[K], r[6];
    for (int i = 0; i < K; ++i) col[i] = rows[i][b];
    tf(col, r);
    for (int a = 0; a < 6; ++a) V::store(lanes, out + (a * 6 + b) * plane, r[a]);
  }
}

// The way back: a tile's 36 transformed elements (one vector of channels, `plane` floats apart
// from `in`) into a K x K window through the 1-D transform `tf` (6 values to K) along rows and
// then columns; `put(i, j, value)` writes the window's element (i, j).
template <typename V, int K, typename Tf, typename Put>
inline void planes_to_window(const float* in, int64_t plane, typename V::T lanes, Tf tf,
                             Put put) {
  using F = typename V::F;
  F rows[6][K];
  for (int a = 0; a < 6; ++a) {
    F row[6];
    for (int b = 0; b < 6; ++b) row[b] = V::load(lanes, in + (a * 6 + b) * plane);
    tf(row, rows[a]);
  }
  for (int j = 0; j < K; ++j) {
    F col[6], d[K];
    for (int a = 0; a < 6; ++a) col[a] = rows[a][j];
    tf(col, d);
    for (int i = 0; i < K; ++i) put(i, j, d[i]);
  }
}

template <typename V>
void wino_input(const float* __restrict x, float* __restrict v, int64_t begin, int64_t end,
                const WinoShape& s) {
  using F = typename V::F;
  const int64_t plane = s.tiles * s.c;  // between two of a tile's 36 transformed elements
  const auto bt = [](const F(&d)[6], F(&r)[6]) { wino_bt<V>(d, r); };
  for (int64_t t = begin; t < end; ++t) {
    const WinoTile p = wino_tile(t, s);
    for (int64_t c0 = 0; c0 < s.c; c0 += V::N) {
      const auto lanes = V::tail(s.c - c0);
      const auto at = [&](int i, int j) {
        return p.row_in[i] && p.col_in[j]
                   ? V::load(lanes, x + p.corner + (i * s.w + j) * s.c + c0)
                   : V::set1(0);
      };
      window_to_planes<V, 6>(at, bt, lanes, v + t * s.c + c0, plane);
    }
  }
}

template <typename V>
void wino_output(const float* __restrict m, const float* __restrict bias, float* __restrict y,
                 int64_t begin, int64_t end, const WinoShape& s) {
  using F = typename V::F;
  const int64_t plane = s.tiles * s.c;
  const auto at_ = [](const F(&m6)[6], F(&o)[4]) { wino_at<V>(m6, o); };
  for (int64_t t = begin; t < end; ++t) {
    const WinoTile p = wino_tile(t, s);
    for (int64_t c0 = 0; c0 < s.c; c0 += V::N) {
      const auto lanes = V::tail(s.c - c0);
      const F b = bias ? V::load(lanes, bias + c0) : V::set1(0);
      const auto put = [&](int i, int j, F o) {
        if (i < p.out_rows && j < p.out_cols)
          V::store(lanes, y + p.out_corner + (i * s.w + j) * s.c + c0, V::add(o, b));
      };
      planes_to_window<V, 4>(m + t * s.c + c0, plane, lanes, at_, put);
    }
  }
}

template <typename V>
void wino_output_grad(const float* __restrict dy, float* __restrict dm, int64_t begin,
                      int64_t end, const WinoShape& s) {
  using F = typename V::F;
  const int64_t plane = s.tiles * s.c;
  const auto a = [](const F(&g)[4], F(&r)[6]) { wino_a<V>(g, r); };
  for (int64_t t = begin; t < end; ++t) {
    const WinoTile p = wino_tile(t, s);
    for (int64_t c0 = 0; c0 < s.c; c0 += V::N) {
      const auto lanes = V::tail(s.c - c0);
      const auto at = [&](int i, int j) {
        return i < p.out_rows && j < p.out_cols
                   ? V::load(lanes, dy + p.out_corner + (i * s.w + j) * s.c + c0)
                   : V::set1(0);
      };
      window_to_planes<V, 4>(at, a, lanes, dm + t * s.c + c0, plane);
    }
  }
}

template <typename V>
void wino_input_grad(const float* __restrict dv, float* __restrict dx, int64_t begin,
                     int64_t end, const WinoShape& s) {
  using F = typename V::F;
  const int64_t plane = s.tiles * s.c, per_image = s.th * s.tw;
  const auto b6 = [](const F(&v6)[6], F(&d)[6]) { wino_b<V>(v6, d); };
  for (int64_t t = begin * per_image; t < end * per_image; ++t) {
    const WinoTile p = wino_tile(t, s);
    for (int64_t c0 = 0; c0 < s.c; c0 += V::N) {
      const auto lanes = V::tail(s.c - c0);
      const auto put = [&](int i, int j, F d) {
        if (!p.row_in[i] || !p.col_in[j]) return;
        float* at = dx + p.corner + (i * s.w + j) * s.c + c0;
        V::store(lanes, at, V::add(V::load(lanes, at), d));
      };
      planes_to_window<V, 6>(dv + t * s.c + c0, plane, lanes, b6, put);
    }
  }
}

template <typename V>
constexpr dlgrid::Kernels table(const char* name) {
  return {name,           V::N,            pool_nhwc<V>,       pool_nchw<V>,
          unpool_nhwc<V>, unpool_nchw<V>,  conv_forward<V>,    conv_grad<V>,
          rgb_conv_forward<V>, rgb_conv_grad<V>, wino_input<V>,   wino_output<V>,
          wino_output_grad<V>, wino_input_grad<V>};
}

}  // namespace
