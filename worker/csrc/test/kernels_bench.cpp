// Times every kernel of ../kernels on the shapes the two models train with (a batch of 128), on
// one thread, for every kernel table this CPU can run: `make -C worker/csrc/test bench`. Prints
// the CPU, then one line per kernel and shape with the median of 7 calls after 2 warm-up calls.
// The worker splits these calls between its threads; oneDNN's figures for the same layers, and
// what these came to in whole training steps, are in docs/benchmarks.md.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "kernels.h"

namespace {

using dlgrid::Kernels;

double median_ms(const std::function<void()>& f) {
  for (int i = 0; i < 2; ++i) f();
  std::vector<double> ms;
  for (int i = 0; i < 7; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                     .count());
  }
  std::sort(ms.begin(), ms.end());
  return ms[3];
}

std::vector<float> filled(size_t n) {
  std::vector<float> v(n);
  uint32_t s = 12345;
  for (auto& x : v) {
    s = s * 1664525u + 1013904223u;
    x = static_cast<float>(s >> 8) / 16777216.0f - 0.5f;
  }
  return v;
}

void line(const Kernels& k, const char* kernel, const char* shape, double ms) {
  std::printf("%-8s %-22s %-44s %9.3f ms\n", k.name, kernel, shape, ms);
}

void bench_pool(const Kernels& k) {
  struct Case {
    const char* shape;
    int64_t n, c, h, w;
    bool nhwc;
  };
  const Case cases[] = {
      {"128x10x24x24 channels-last (paper CNN)", 128, 10, 24, 24, true},
      {"128x20x8x8 channels-last (paper CNN)", 128, 20, 8, 8, true},
      {"128x10x24x24 NCHW (paper CNN)", 128, 10, 24, 24, false},
      {"128x64x32x32 channels-last (VGG-11)", 128, 64, 32, 32, true},
  };
  for (const Case& c : cases) {
    const dlgrid::PoolShape s{c.h, c.w, c.nhwc ? c.c : 1, c.h / 2, c.w / 2};
    const int64_t rows = c.nhwc ? c.n * s.oh : c.n * c.c * s.oh;
    auto x = filled(c.n * c.c * c.h * c.w);
    std::vector<float> out(c.n * c.c * s.oh * s.ow), gi(x.size());
    std::vector<uint8_t> idx(out.size());
    const auto pool = c.nhwc ? k.pool_nhwc : k.pool_nchw;
    const auto unpool = c.nhwc ? k.unpool_nhwc : k.unpool_nchw;
    line(k, "max pool 2x2", c.shape,
         median_ms([&] { pool(x.data(), out.data(), idx.data(), 0, rows, s); }));
    line(k, "max pool 2x2 backward", c.shape,
         median_ms([&] { unpool(out.data(), idx.data(), gi.data(), 0, rows, s); }));
  }
}

void bench_conv1(const Kernels& k) {
  const int64_t n = 128, h = 28, w = 28, oc = 10, kk = 5;
  const dlgrid::ConvShape s{h, w, oc, kk, kk, h - kk + 1, w - kk + 1};
  auto x = filled(n * h * w), wt = filled(oc * kk * kk), b = filled(oc);
  std::vector<float> out(n * oc * s.oh * s.ow), dw(oc * kk * kk * k.lanes), db(oc * k.lanes);
  const char* shape = "128x1x28x28 -> 10, 5x5 (paper CNN conv1)";
  line(k, "conv 1 channel", shape,
       median_ms([&] { k.conv_forward(x.data(), wt.data(), b.data(), out.data(), 0, n * s.oh, s); }));
  line(k, "conv 1 channel grad", shape,
       median_ms([&] { k.conv_grad(x.data(), out.data(), dw.data(), db.data(), 0, n, s); }));
}

void bench_rgb(const Kernels& k) {
  const int64_t n = 128, h = 32, w = 32, ci = 3, oc = 64;
  const dlgrid::RgbConvShape s{h + 2, w + 2, ci, oc, h, w};
  auto x = filled(n * s.hp * s.wp * ci), wt = filled(9 * ci * oc), b = filled(oc);
  std::vector<float> out(n * h * w * oc), dw(9 * ci * oc), db(oc);
  const char* shape = "128x3x32x32 -> 64, 3x3 (VGG-11 conv1)";
  line(k, "conv RGB", shape,
       median_ms([&] { k.rgb_conv_forward(x.data(), wt.data(), b.data(), out.data(), 0, n * h, s); }));
  line(k, "conv RGB grad", shape,
       median_ms([&] { k.rgb_conv_grad(x.data(), out.data(), dw.data(), db.data(), 0, n, s); }));
}

void bench_winograd(const Kernels& k) {
  struct Case {
    const char* shape;
    int64_t h, w, c;
  };
  const Case cases[] = {
      {"128x64x16x16 (VGG-11, 64->128 layer's input)", 16, 16, 64},
      {"128x256x8x8 (VGG-11, 256->256)", 8, 8, 256},
      {"128x512x4x4 (VGG-11, 512->512)", 4, 4, 512},
  };
  for (const Case& c : cases) {
    const int64_t n = 128, th = (c.h + 3) / 4, tw = (c.w + 3) / 4, tiles = n * th * tw;
    const dlgrid::WinoShape s{c.h, c.w, c.c, th, tw, tiles};
    auto x = filled(n * c.h * c.w * c.c), b = filled(c.c);
    std::vector<float> v(36 * tiles * c.c), y(x.size(), 0.0f);
    line(k, "winograd input", c.shape,
         median_ms([&] { k.wino_input(x.data(), v.data(), 0, tiles, s); }));
    line(k, "winograd output", c.shape,
         median_ms([&] { k.wino_output(v.data(), b.data(), y.data(), 0, tiles, s); }));
    line(k, "winograd output grad", c.shape,
         median_ms([&] { k.wino_output_grad(x.data(), v.data(), 0, tiles, s); }));
    line(k, "winograd input grad", c.shape,
         median_ms([&] { k.wino_input_grad(v.data(), y.data(), 0, n, s); }));
  }
}

bool cpu_has(const char* isa) {
  if (std::strcmp(isa, "avx512") == 0)
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma");
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

// The CPU the figures come from: a figure from one CPU does not carry to another.
std::string cpu_model() {
  std::ifstream f("/proc/cpuinfo");
  std::string l;
  while (std::getline(f, l))
    if (l.rfind("model name", 0) == 0) return l.substr(l.find(':') + 2);
  return "unknown CPU";
}

}  // namespace

int main() {
  std::printf("cpu: %s; one thread; median of 7 calls\n", cpu_model().c_str());
  for (const Kernels* k : {&dlgrid::kAvx512Kernels, &dlgrid::kAvx2Kernels}) {
    if (!cpu_has(k->name)) {
      std::printf("%s: not run, this CPU lacks the instruction set\n", k->name);
      continue;
    }
    bench_pool(*k);
    bench_conv1(*k);
    bench_rgb(*k);
    bench_winograd(*k);
  }
  return 0;
}
