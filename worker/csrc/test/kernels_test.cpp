// Each kernel family of ../kernels against a naive reference, for every kernel table this CPU
// can run (AVX-512, AVX2), without libtorch: `make -C worker/csrc/test` builds and runs it in
// seconds. The worker's own unit tests (worker/src/ops.rs) check the same kernels through
// libtorch against aten's operations.
//
// Pooling must equal the reference bit for bit (aten's rule: within a window scanned (0,0) (0,1)
// (1,0) (1,1), a later element wins when it is greater or NaN); everything that sums is compared
// within a relative tolerance, as the order of the sums differs.

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "kernels.h"

namespace {

using dlgrid::Kernels;

int passed = 0, failed = 0;

void check(bool ok, const std::string& what) {
  if (ok) {
    ++passed;
  } else {
    ++failed;
    std::printf("FAILED: %s\n", what.c_str());
  }
}

// A fixed pseudo-random sequence (xorshift), so a failure repeats.
struct Rng {
  uint64_t s = 0x9E3779B97F4A7C15ull;
  float next() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return static_cast<float>((s >> 40) % 2001) / 1000.0f - 1.0f;  // [-1, 1] in steps of 1e-3
  }
  std::vector<float> fill(size_t n) {
    std::vector<float> v(n);
    for (auto& x : v) x = next();
    return v;
  }
};

// Relative closeness of two arrays, against the largest magnitude of the reference.
bool close(const std::vector<float>& got, const std::vector<double>& want, double rtol,
           std::string* why) {
  double scale = 1e-12;
  for (double w : want) scale = std::fmax(scale, std::fabs(w));
  for (size_t i = 0; i < want.size(); ++i) {
    if (!(std::fabs(got[i] - want[i]) <= rtol * scale)) {
      *why = "element " + std::to_string(i) + ": " + std::to_string(got[i]) + " vs " +
             std::to_string(want[i]);
      return false;
    }
  }
  return true;
}

// Checks `got` against `want` (see close), naming the first element that differs.
void expect_close(const std::vector<float>& got, const std::vector<double>& want,
                  const std::string& what) {
  std::string why;
  const bool ok = close(got, want, 1e-5, &why);
  check(ok, what + ": " + why);
}

bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

// ---- 2x2 max pooling ---------------------------------------------------------------------------

// The window of output (image, channel, oy, ox) as input offsets, in aten's scan order.
struct Window {
  int64_t at[4];
};

void pool_case(const Kernels& k, bool nhwc, int64_t n, int64_t c, int64_t h, int64_t w) {
  Rng rng;
  const int64_t oh = h / 2, ow = w / 2;
  auto x = rng.fill(n * c * h * w);
  // Ties and NaNs, where aten's rule decides.
  for (size_t i = 0; i < x.size(); i += 7) x[i] = 0.5f;
  for (size_t i = 3; i < x.size(); i += 29) x[i] = NAN;
  // Element offsets: NCHW is [n][c][h][w]; channels-last [n][h][w][c].
  auto in = [&](int64_t img, int64_t ch, int64_t y, int64_t xx) {
    return nhwc ? ((img * h + y) * w + xx) * c + ch : ((img * c + ch) * h + y) * w + xx;
  };
  auto out_at = [&](int64_t img, int64_t ch, int64_t y, int64_t xx) {
    return nhwc ? ((img * oh + y) * ow + xx) * c + ch : ((img * c + ch) * oh + y) * ow + xx;
  };
  const dlgrid::PoolShape s{h, w, nhwc ? c : 1, oh, ow};
  const int64_t rows = nhwc ? n * oh : n * c * oh;
  std::vector<float> out(n * c * oh * ow, -7.0f);
  std::vector<uint8_t> idx(out.size(), 255);
  (nhwc ? k.pool_nhwc : k.pool_nchw)(x.data(), out.data(), idx.data(), 0, rows, s);
  // Backward: every input element written (no zero fill), the gradient routed to the winner.
  auto grad = rng.fill(out.size());
  std::vector<float> gi(x.size(), -9.0f);
  (nhwc ? k.unpool_nhwc : k.unpool_nchw)(grad.data(), idx.data(), gi.data(), 0, rows, s);
  bool fwd = true, bwd = true;
  std::vector<float> gi_want(x.size(), 0.0f);
  for (int64_t img = 0; img < n; ++img)
    for (int64_t ch = 0; ch < c; ++ch)
      for (int64_t y = 0; y < oh; ++y)
        for (int64_t xx = 0; xx < ow; ++xx) {
          const Window win{{in(img, ch, 2 * y, 2 * xx), in(img, ch, 2 * y, 2 * xx + 1),
                            in(img, ch, 2 * y + 1, 2 * xx), in(img, ch, 2 * y + 1, 2 * xx + 1)}};
          int best = 0;
          for (int p = 1; p < 4; ++p) {
            const float v = x[win.at[p]], m = x[win.at[best]];
            if (v > m || std::isnan(v)) best = p;
          }
          const int64_t o = out_at(img, ch, y, xx);
          fwd = fwd && same_bits(out[o], x[win.at[best]]) && idx[o] == best;
          gi_want[win.at[best]] = grad[o];
        }
  for (size_t i = 0; i < gi.size(); ++i) bwd = bwd && same_bits(gi[i], gi_want[i]);
  const std::string name = std::string(k.name) + (nhwc ? " pool_nhwc " : " pool_nchw ") +
                           std::to_string(n) + "x" + std::to_string(c) + "x" + std::to_string(h) +
                           "x" + std::to_string(w);
  check(fwd, name + ": values and indices equal aten's rule");
  check(bwd, name + ": the backward pass routes each gradient to its window's winner");
}

// ---- Convolution of single-channel images ------------------------------------------------------

void conv1_case(const Kernels& k, int64_t n, int64_t oc, int64_t h, int64_t wd, int64_t kh,
                int64_t kw, bool bias) {
  Rng rng;
  const int64_t oh = h - kh + 1, ow = wd - kw + 1;
  const dlgrid::ConvShape s{h, wd, oc, kh, kw, oh, ow};
  auto x = rng.fill(n * h * wd);
  auto w = rng.fill(oc * kh * kw);
  auto b = rng.fill(oc);
  std::vector<float> out(n * oc * oh * ow);
  k.conv_forward(x.data(), w.data(), bias ? b.data() : nullptr, out.data(), 0, n * oh, s);
  std::vector<double> want(out.size());
  for (int64_t img = 0; img < n; ++img)
    for (int64_t o = 0; o < oc; ++o)
      for (int64_t y = 0; y < oh; ++y)
        for (int64_t xx = 0; xx < ow; ++xx) {
          double acc = bias ? b[o] : 0.0;
          for (int64_t ky = 0; ky < kh; ++ky)
            for (int64_t kx = 0; kx < kw; ++kx)
              acc += double(x[(img * h + y + ky) * wd + xx + kx]) * w[o * kh * kw + ky * kw + kx];
          want[((img * oc + o) * oh + y) * ow + xx] = acc;
        }
  const std::string name = std::string(k.name) + " conv1 " + std::to_string(oc) + " channels " +
                           std::to_string(kh) + "x" + std::to_string(kw) + " on " +
                           std::to_string(h) + "x" + std::to_string(wd);
  expect_close(out, want, name + " forward");
  // Gradients: per-lane partial sums, added to what is there (zero here).
  auto g = rng.fill(out.size());
  std::vector<float> dw(oc * kh * kw * k.lanes, 0.0f), db(oc * k.lanes, 0.0f);
  k.conv_grad(x.data(), g.data(), dw.data(), db.data(), 0, n, s);
  std::vector<float> dw_sum(oc * kh * kw, 0.0f), db_sum(oc, 0.0f);
  for (int64_t i = 0; i < oc * kh * kw; ++i)
    for (int l = 0; l < k.lanes; ++l) dw_sum[i] += dw[i * k.lanes + l];
  for (int64_t o = 0; o < oc; ++o)
    for (int l = 0; l < k.lanes; ++l) db_sum[o] += db[o * k.lanes + l];
  std::vector<double> dw_want(dw_sum.size(), 0.0), db_want(oc, 0.0);
  for (int64_t img = 0; img < n; ++img)
    for (int64_t o = 0; o < oc; ++o)
      for (int64_t y = 0; y < oh; ++y)
        for (int64_t xx = 0; xx < ow; ++xx) {
          const double gv = g[((img * oc + o) * oh + y) * ow + xx];
          db_want[o] += gv;
          for (int64_t ky = 0; ky < kh; ++ky)
            for (int64_t kx = 0; kx < kw; ++kx)
              dw_want[o * kh * kw + ky * kw + kx] += gv * x[(img * h + y + ky) * wd + xx + kx];
        }
  expect_close(dw_sum, dw_want, name + " weight gradient");
  expect_close(db_sum, db_want, name + " bias gradient");
}

// ---- Convolution of images with few channels (channels-last, 3x3, padded input) -----------------

void rgb_case(const Kernels& k, int64_t n, int64_t ci, int64_t oc, int64_t h, int64_t wd) {
  Rng rng;
  const int64_t hp = h + 2, wp = wd + 2;
  const dlgrid::RgbConvShape s{hp, wp, ci, oc, h, wd};
  // The padded input: a zero border around random pixels, [n][hp][wp][ci].
  std::vector<float> x(n * hp * wp * ci, 0.0f);
  for (int64_t img = 0; img < n; ++img)
    for (int64_t y = 1; y <= h; ++y)
      for (int64_t xx = 1; xx <= wd; ++xx)
        for (int64_t c = 0; c < ci; ++c) x[((img * hp + y) * wp + xx) * ci + c] = rng.next();
  auto w = rng.fill(9 * ci * oc);  // [3][3][ci][oc]
  auto b = rng.fill(oc);
  std::vector<float> out(n * h * wd * oc);
  k.rgb_conv_forward(x.data(), w.data(), b.data(), out.data(), 0, n * h, s);
  auto xi = [&](int64_t img, int64_t y, int64_t xx, int64_t c) {
    return x[((img * hp + y) * wp + xx) * ci + c];
  };
  std::vector<double> want(out.size());
  for (int64_t img = 0; img < n; ++img)
    for (int64_t y = 0; y < h; ++y)
      for (int64_t xx = 0; xx < wd; ++xx)
        for (int64_t o = 0; o < oc; ++o) {
          double acc = b[o];
          for (int64_t ky = 0; ky < 3; ++ky)
            for (int64_t kx = 0; kx < 3; ++kx)
              for (int64_t c = 0; c < ci; ++c)
                acc += double(xi(img, y + ky, xx + kx, c)) * w[((ky * 3 + kx) * ci + c) * oc + o];
          want[((img * h + y) * wd + xx) * oc + o] = acc;
        }
  const std::string name = std::string(k.name) + " rgb_conv " + std::to_string(ci) + "->" +
                           std::to_string(oc) + " on " + std::to_string(h) + "x" +
                           std::to_string(wd);
  expect_close(out, want, name + " forward");
  auto g = rng.fill(out.size());
  std::vector<float> dw(9 * ci * oc, 0.0f), db(oc, 0.0f);
  k.rgb_conv_grad(x.data(), g.data(), dw.data(), db.data(), 0, n, s);
  std::vector<double> dw_want(dw.size(), 0.0), db_want(oc, 0.0);
  for (int64_t img = 0; img < n; ++img)
    for (int64_t y = 0; y < h; ++y)
      for (int64_t xx = 0; xx < wd; ++xx)
        for (int64_t o = 0; o < oc; ++o) {
          const double gv = g[((img * h + y) * wd + xx) * oc + o];
          db_want[o] += gv;
          for (int64_t ky = 0; ky < 3; ++ky)
            for (int64_t kx = 0; kx < 3; ++kx)
              for (int64_t c = 0; c < ci; ++c)
                dw_want[((ky * 3 + kx) * ci + c) * oc + o] += gv * xi(img, y + ky, xx + kx, c);
        }
  expect_close(dw, dw_want, name + " weight gradient");
  expect_close(db, db_want, name + " bias gradient");
}

// ---- Winograd F(4x4, 3x3) tile transforms ----------------------------------------------------

const double kBT[6][6] = {{4, 0, -5, 0, 1, 0},  {0, -4, -4, 1, 1, 0}, {0, 4, -4, -1, 1, 0},
                          {0, -2, -1, 2, 1, 0}, {0, 2, -1, -2, 1, 0}, {0, 4, 0, -5, 0, 1}};
const double kAT[4][6] = {
    {1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 0}, {0, 1, 1, 4, 4, 0}, {0, 1, -1, 8, -8, 1}};

void wino_case(const Kernels& k, int64_t n, int64_t c, int64_t h, int64_t w) {
  Rng rng;
  const int64_t th = (h + 3) / 4, tw = (w + 3) / 4, tiles = n * th * tw;
  const dlgrid::WinoShape s{h, w, c, th, tw, tiles};
  const std::string name = std::string(k.name) + " winograd " + std::to_string(c) +
                           " channels on " + std::to_string(h) + "x" + std::to_string(w);
  auto pixel = [&](int64_t img, int64_t y, int64_t xx, int64_t ch) {
    return ((img * h + y) * w + xx) * c + ch;
  };
  // The input tile d of tile t (zero outside the image) at (4 ty - 1, 4 tx - 1).
  auto corner = [&](int64_t t, int64_t* img, int64_t* y0, int64_t* x0) {
    const int64_t r = t % (th * tw);
    *img = t / (th * tw);
    *y0 = 4 * (r / tw) - 1;
    *x0 = 4 * (r % tw) - 1;
  };
  // wino_input: V = B^T d B.
  auto x = rng.fill(n * h * w * c);
  std::vector<float> v(36 * tiles * c);
  k.wino_input(x.data(), v.data(), 0, tiles, s);
  std::vector<double> v_want(v.size(), 0.0);
  for (int64_t t = 0; t < tiles; ++t) {
    int64_t img, y0, x0;
    corner(t, &img, &y0, &x0);
    for (int64_t ch = 0; ch < c; ++ch)
      for (int a = 0; a < 6; ++a)
        for (int b = 0; b < 6; ++b) {
          double acc = 0;
          for (int i = 0; i < 6; ++i)
            for (int j = 0; j < 6; ++j) {
              const int64_t y = y0 + i, xx = x0 + j;
              if (y < 0 || y >= h || xx < 0 || xx >= w) continue;
              acc += kBT[a][i] * x[pixel(img, y, xx, ch)] * kBT[b][j];
            }
          v_want[((a * 6 + b) * tiles + t) * c + ch] = acc;
        }
  }
  expect_close(v, v_want, name + " input transform");
  // wino_output: Y = A^T M A + bias, the parts of each 4x4 tile inside the image.
  auto m = rng.fill(36 * tiles * c);
  auto bias = rng.fill(c);
  std::vector<float> y(n * h * w * c, 123.0f);
  k.wino_output(m.data(), bias.data(), y.data(), 0, tiles, s);
  std::vector<double> y_want(y.size(), 123.0);
  for (int64_t t = 0; t < tiles; ++t) {
    int64_t img, y0, x0;
    corner(t, &img, &y0, &x0);
    for (int64_t ch = 0; ch < c; ++ch)
      for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 4; ++j) {
          const int64_t yy = y0 + 1 + i, xx = x0 + 1 + j;
          if (yy >= h || xx >= w) continue;
          double acc = bias[ch];
          for (int a = 0; a < 6; ++a)
            for (int b = 0; b < 6; ++b) acc += kAT[i][a] * m[((a * 6 + b) * tiles + t) * c + ch] * kAT[j][b];
          y_want[pixel(img, yy, xx, ch)] = acc;
        }
  }
  expect_close(y, y_want, name + " output transform");
  // wino_output_grad: the adjoint of the output transform, dM = A dY A^T (dY zero outside).
  auto dy = rng.fill(n * h * w * c);
  std::vector<float> dm(36 * tiles * c);
  k.wino_output_grad(dy.data(), dm.data(), 0, tiles, s);
  std::vector<double> dm_want(dm.size(), 0.0);
  for (int64_t t = 0; t < tiles; ++t) {
    int64_t img, y0, x0;
    corner(t, &img, &y0, &x0);
    for (int64_t ch = 0; ch < c; ++ch)
      for (int a = 0; a < 6; ++a)
        for (int b = 0; b < 6; ++b) {
          double acc = 0;
          for (int i = 0; i < 4; ++i)
            for (int j = 0; j < 4; ++j) {
              const int64_t yy = y0 + 1 + i, xx = x0 + 1 + j;
              if (yy >= h || xx >= w) continue;
              acc += kAT[i][a] * dy[pixel(img, yy, xx, ch)] * kAT[j][b];
            }
          dm_want[((a * 6 + b) * tiles + t) * c + ch] = acc;
        }
  }
  expect_close(dm, dm_want, name + " output transform's adjoint");
  // wino_input_grad: the adjoint of the input transform, dX += B dV B^T over overlapping tiles.
  auto dv = rng.fill(36 * tiles * c);
  std::vector<float> dx(n * h * w * c, 0.0f);
  k.wino_input_grad(dv.data(), dx.data(), 0, n, s);
  std::vector<double> dx_want(dx.size(), 0.0);
  for (int64_t t = 0; t < tiles; ++t) {
    int64_t img, y0, x0;
    corner(t, &img, &y0, &x0);
    for (int64_t ch = 0; ch < c; ++ch)
      for (int i = 0; i < 6; ++i)
        for (int j = 0; j < 6; ++j) {
          const int64_t yy = y0 + i, xx = x0 + j;
          if (yy < 0 || yy >= h || xx < 0 || xx >= w) continue;
          double acc = 0;
          for (int a = 0; a < 6; ++a)
            for (int b = 0; b < 6; ++b)
              acc += kBT[a][i] * dv[((a * 6 + b) * tiles + t) * c + ch] * kBT[b][j];
          dx_want[pixel(img, yy, xx, ch)] += acc;
        }
  }
  expect_close(dx, dx_want, name + " input transform's adjoint");
}

void test_table(const Kernels& k) {
  // Pooling: the paper CNN's shapes (10 and 20 channels), channel and column tails, 2x2 images.
  for (bool nhwc : {true, false}) {
    pool_case(k, nhwc, 2, 10, 24, 24);
    pool_case(k, nhwc, 3, 20, 8, 8);
    pool_case(k, nhwc, 1, 17, 6, 38);
    pool_case(k, nhwc, 2, 3, 2, 2);
  }
  // Single-channel convolution: the paper CNN's first layer, each kernel width, channel blocks.
  conv1_case(k, 3, 10, 28, 28, 5, 5, true);
  conv1_case(k, 2, 8, 12, 40, 3, 3, false);
  conv1_case(k, 2, 3, 9, 9, 7, 7, true);
  conv1_case(k, 1, 7, 6, 19, 4, 5, true);
  // RGB convolution: CIFAR's first layer, fewer channels, odd sizes.
  rgb_case(k, 2, 3, 64, 8, 8);
  rgb_case(k, 1, 2, 32, 5, 7);
  rgb_case(k, 2, 4, 16, 3, 9);
  // Winograd transforms: tiles cut short at the image's edge, channel vectors cut short.
  wino_case(k, 2, 16, 8, 8);
  wino_case(k, 1, 20, 6, 10);
  wino_case(k, 2, 17, 5, 7);
  wino_case(k, 1, 64, 4, 12);
}

bool cpu_has(const char* isa) {
  if (std::strcmp(isa, "avx512") == 0)
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma");
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

}  // namespace

int main() {
  int tables = 0;
  for (const Kernels* k : {&dlgrid::kAvx512Kernels, &dlgrid::kAvx2Kernels}) {
    if (!cpu_has(k->name)) {
      std::printf("kernels %s: not run, this CPU lacks the instruction set\n", k->name);
      continue;
    }
    const int before = failed;
    test_table(*k);
    ++tables;
    std::printf("kernels %s: %s\n", k->name, failed == before ? "ok" : "FAILED");
  }
  if (tables == 0) {
    std::printf("no kernel table can run on this CPU (the worker uses aten's kernels here)\n");
  }
  std::printf("kernels: %d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
