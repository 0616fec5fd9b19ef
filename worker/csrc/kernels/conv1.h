// Convolution of single-channel images, the first layer on MNIST and Fashion-MNIST
// (kernels.h: conv_forward, conv_grad).
//
// Each output row is vectorised along its columns, every kernel tap one unaligned load of the
// input row and one FMA per output channel, with blocks of output channels sized to the register
// file (B x 2 accumulators) so the FMA units never wait on one accumulator's latency. The weight
// gradient keeps B x KW per-lane partial sums in registers while an image's rows stream past.

#pragma once

#include "common.h"

namespace {

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
    default: f(Int<7>{}); break;  // conv_op.cpp allows 3, 5, 7
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

}  // namespace
