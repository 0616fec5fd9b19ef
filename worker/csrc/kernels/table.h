// The kernel table of kernels.h for the vector type V defined before this header (a
// table_<isa>.cpp): every family, compiled for that instruction set.

#pragma once

#include "conv1.h"
#include "pool.h"
#include "rgb_conv.h"
#include "winograd_tiles.h"

namespace {

template <typename V>
constexpr dlgrid::Kernels table(const char* name) {
  return {name,           V::N,            pool_nhwc<V>,       pool_nchw<V>,
          unpool_nhwc<V>, unpool_nchw<V>,  conv_forward<V>,    conv_grad<V>,
          rgb_conv_forward<V>, rgb_conv_grad<V>, wino_input<V>,   wino_output<V>,
          wino_output_grad<V>, wino_input_grad<V>};
}

}  // namespace
