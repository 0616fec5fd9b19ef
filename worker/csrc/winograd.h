// Winograd F(4x4, 3x3) convolution on CPUs (winograd.cpp), for conv_op.cpp's conv2d.

#pragma once

#include <ATen/ATen.h>

#include "kernels/kernels.h"

namespace dlgrid {

// Whether winograd_conv3x3 takes this convolution: float32 CPU tensors, a channels-last input
// of at least 4 x 4 pixels and 16 channels, a 3 x 3 kernel with at least 16 output channels,
// padding 1, a bias of the output channels or none, at least 128 tiles of 4 x 4 output pixels
// (a batch of 128 images at 4 x 4, 8 at 16 x 16), and transformed tensors of 1 GiB at most.
bool winograd_applies(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                      int64_t padding);

// conv2d(x, weight, bias, stride 1, padding 1) through kernel table `k`'s transforms, with its
// gradients when autograd asks for them. The output is channels-last.
at::Tensor winograd_conv3x3(const Kernels* k, const at::Tensor& x, const at::Tensor& weight,
                            const at::Tensor& bias);

}  // namespace dlgrid
