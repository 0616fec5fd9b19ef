// What the operation files share. The operations tch does not expose, compiled against the
// same libtorch as the worker, one file per concern:
//
// - dispatch.cpp: which kernel table of kernels/ runs (the CPU's best, a caller's choice, or
//   aten's), and DLGRID_MAX_CPU_ISA's cap;
// - pool_op.cpp: max_pool2x2, 2x2/stride-2 max pooling through our kernels (kernels/pool.h),
//   forward and backward, with exactly aten::max_pool2d's results;
// - conv_op.cpp: conv2d, the first layer on single-channel or RGB images through our kernels
//   (kernels/conv1.h, kernels/rgb_conv.h), Winograd F(4x4, 3x3) for 3x3 layers with 16 channels
//   or more (winograd.cpp), aten::conv2d otherwise;
// - glue.cpp: what has nothing to do with our kernels: fused Adam, gradients set to none,
//   autocast with a chosen dtype, CUDA backend settings and versions, the last error.
//
// Every extern "C" entry point catches C++ exceptions and reports them through
// dlgrid_last_error().

#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "kernels/kernels.h"

namespace dlgrid {

// The kernels to use now on this thread (dispatch.cpp); null for aten's.
const Kernels* cpu_kernels();

// The message of the last C++ exception an entry point caught on this thread (glue.cpp).
extern thread_local std::string last_error;

// Runs f; 0, or -1 with the exception's message in last_error.
template <typename F>
int guarded(F f) {
  try {
    f();
    return 0;
  } catch (const std::exception& e) {
    last_error = e.what();
  } catch (...) {
    last_error = "unknown C++ exception";
  }
  return -1;
}

// Output rows to hand each thread at least, so small tensors stay on one thread.
inline int64_t grain_rows(int64_t row_elems) {
  return std::max<int64_t>(1, at::internal::GRAIN_SIZE / std::max<int64_t>(1, 4 * row_elems));
}

}  // namespace dlgrid
