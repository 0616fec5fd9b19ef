// What every kernel family shares: the shape types (kernels.h) and two helpers. Each family
// (pool.h, conv1.h, rgb_conv.h, winograd_tiles.h) is written once over a vector type V and
// compiled once per instruction set by table_<isa>.cpp, which defines V first (vec_<isa>.h).
// Everything here has internal linkage; no libtorch or standard-library header with inline
// functions is included (see kernels.h).

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

}  // namespace
