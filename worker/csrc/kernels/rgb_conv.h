// Convolution of images with few channels, channels-last (kernels.h: rgb_conv_*).
//
// The forward pass keeps a block of P output pixels x OB vectors of output channels in registers
// while the 3 x 3 x ci taps stream past: per tap, OB weight vectors (from a 9 x ci x oc table that
// stays in L1) and one broadcast input value per pixel.

#pragma once

#include "common.h"

namespace {

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

}  // namespace
