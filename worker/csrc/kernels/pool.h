// 2x2/stride-2 max pooling and its backward pass (kernels.h: pool_*, unpool_*).
//
// aten scans a window in the order (0,0) (0,1) (1,0) (1,1) and takes a new element when
// `val > max || isnan(val)`. Applying that rule within each row and then between the two rows'
// winners picks the same element (so results equal aten's bit for bit, ties and NaNs included);
// the byte index records its window position 0..3 for the backward pass. Channels-last
// vectorises across channels (10 or 20 channels cost one or two vector operations per pixel),
// NCHW across output columns (even and odd input columns separated with a shuffle).

#pragma once

#include "common.h"

namespace {

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

}  // namespace
