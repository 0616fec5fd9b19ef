// The hand-written CPU kernels, one table per instruction set. The kernels are written once per
// operation family over a vector type V (pool.h, conv1.h, rgb_conv.h, winograd_tiles.h); each
// table is compiled in its own translation unit with that instruction set's compiler flags
// (table_avx512.cpp, table_avx2.cpp, which define V from vec_<isa>.h), as ATen does for its own
// kernels, and dispatch.cpp picks one at run time from what the CPU supports. Those translation
// units include no libtorch or standard-library headers with inline functions, so no function
// compiled for AVX-512 can be shared with (and run by) code meant for other CPUs; and this folder
// builds and is tested without libtorch (test/).
//
// Every function works on a range [begin, end) of output rows (pooling, convolution forward),
// images (convolution gradients) or tiles (Winograd), so the operations (pool_op.cpp,
// conv_op.cpp, winograd.cpp) can split the work between threads.

#pragma once

#include <cstdint>

namespace dlgrid {

// 2x2/stride-2 max pooling of an input of h x w (x c channels, channels-last) into oh x ow.
struct PoolShape {
  int64_t h, w, c, oh, ow;
};

// Single-channel convolution: input h x wd, oc output channels, kernel kh x kw, output oh x ow.
struct ConvShape {
  int64_t h, wd, oc, kh, kw, oh, ow;
};

// Convolution of images with few channels (the first layer on RGB images): 3 x 3, stride 1,
// channels-last, over an input padded beforehand (hp x wp into oh x ow, ci channels, oc a
// multiple of the lanes).
struct RgbConvShape {
  int64_t hp, wp, ci, oc, oh, ow;
};

// Winograd F(4x4, 3x3) for 3x3 convolutions with stride 1 and padding 1 (winograd.cpp), over
// channels-last images of h x w with c channels: 6 x 6 input tiles at a stride of 4, th x tw of
// them per image, `tiles` in all (tile t: image t / (th*tw), row (t / tw) % th, column t % tw).
// A transformed tensor is [36][tiles][c]: element (a*6 + b) of tile t's transform, channel ch,
// at ((a*6 + b) * tiles + t) * c + ch.
struct WinoShape {
  int64_t h, w, c, th, tw, tiles;
};

struct Kernels {
  const char* name;
  // Float lanes per vector: the conv gradient's partial sums are [oc][kh][kw][lanes] and
  // [oc][lanes] per thread.
  int lanes;
  // Output rows r of n*oh (channels-last) or n*c*oh (NCHW). `idx` (one byte per output element:
  // the window position 0..3 of the maximum) may be null.
  void (*pool_nhwc)(const float* x, float* out, uint8_t* idx, int64_t begin, int64_t end,
                    const PoolShape& s);
  void (*pool_nchw)(const float* x, float* out, uint8_t* idx, int64_t begin, int64_t end,
                    const PoolShape& s);
  // Writes every element of the input gradient `gi` of the rows' windows (no zero fill needed).
  void (*unpool_nhwc)(const float* grad, const uint8_t* idx, float* gi, int64_t begin,
                      int64_t end, const PoolShape& s);
  void (*unpool_nchw)(const float* grad, const uint8_t* idx, float* gi, int64_t begin,
                      int64_t end, const PoolShape& s);
  // Output rows r of n*oh, all output channels; `w` is [oc][kh*kw], `bias` may be null.
  void (*conv_forward)(const float* x, const float* w, const float* bias, float* out,
                       int64_t begin, int64_t end, const ConvShape& s);
  // Adds images [begin, end)'s weight and bias gradient to the per-lane partial sums `dw`
  // [oc][kh][kw][lanes] and `db` [oc][lanes]; kw is 3, 5 or 7.
  void (*conv_grad)(const float* x, const float* grad, float* dw, float* db, int64_t begin,
                    int64_t end, const ConvShape& s);
  // Output rows r of n*oh, all output channels: `x` is [n][hp][wp][ci], `w` [3][3][ci][oc]
  // (output channels contiguous), `bias` [oc] or null, `out` [n][oh][ow][oc].
  void (*rgb_conv_forward)(const float* x, const float* w, const float* bias, float* out,
                           int64_t begin, int64_t end, const RgbConvShape& s);
  // Adds images [begin, end)'s weight gradient to `dw` [3][3][ci][oc] and bias gradient to `db`
  // [oc]; `grad` is [n][oh][ow][oc].
  void (*rgb_conv_grad)(const float* x, const float* grad, float* dw, float* db, int64_t begin,
                        int64_t end, const RgbConvShape& s);
  // Winograd: tiles [begin, end) of `x` [n][h][w][c] (zero outside the image) into `v`: B^T d B.
  void (*wino_input)(const float* x, float* v, int64_t begin, int64_t end, const WinoShape& s);
  // Tiles [begin, end) of `m` back into `y` [n][h][w][c]: A^T m A (+ `bias` [c], may be null),
  // the parts of each 4 x 4 output tile that fall inside the image.
  void (*wino_output)(const float* m, const float* bias, float* y, int64_t begin, int64_t end,
                      const WinoShape& s);
  // The adjoint of wino_output: tiles [begin, end) of the output gradient `dy` into `dm`.
  void (*wino_output_grad)(const float* dy, float* dm, int64_t begin, int64_t end,
                           const WinoShape& s);
  // The adjoint of wino_input: adds images [begin, end)'s tiles of `dv` into the input gradient
  // `dx` [n][h][w][c] (overlapping tiles add up, so one image belongs to one caller).
  void (*wino_input_grad)(const float* dv, float* dx, int64_t begin, int64_t end,
                          const WinoShape& s);
};

extern const Kernels kAvx512Kernels;
extern const Kernels kAvx2Kernels;

}  // namespace dlgrid
