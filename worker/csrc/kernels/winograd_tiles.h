// The tile transforms of Winograd F(4x4, 3x3) and their adjoints (kernels.h: wino_*).
//
// Y = A^T [(G g G^T) * (B^T d B)] A over 6 x 6 input tiles d (Lavin and Gray, 2016), with
//   B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1]
//   A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1]
// (G, for the weights, is applied by winograd.cpp). Each 2-D transform is a 1-D one over the rows
// and then over the columns, vectorised across channels (contiguous in channels-last memory).

#pragma once

#include "common.h"

namespace {

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

}  // namespace
