// What the training engine needs from libtorch that tch does not expose and that has nothing to
// do with our kernels:
// - fused_adam: one call of aten::_fused_adam_ (torch.optim.Adam(fused=True)) for all
//   parameters, in place of ~9 dispatched element-wise ops per parameter tensor;
// - set_grads_to_none: optimizer.zero_grad(set_to_none=True);
// - autocast_enter/exit: autocast with a chosen dtype (tch only offers float16 on CUDA);
// - cuda_backend, cuda_runtime_version, cudnn_version: torch.backends settings and versions;
// - last_error: the message of the last C++ exception an entry point caught.

#include <ATen/autocast_mode.h>

#include <vector>

#include "ops.h"

thread_local std::string dlgrid::last_error;

using dlgrid::guarded;

extern "C" {

const char* dlgrid_last_error() { return dlgrid::last_error.c_str(); }

// torch.optim.Adam(fused=True).step() over the parameters that have a gradient. `steps` are
// per-parameter float32 scalars on the parameters' device, incremented here as PyTorch does.
int dlgrid_fused_adam(at::Tensor** params, at::Tensor** exp_avgs, at::Tensor** exp_avg_sqs,
                      at::Tensor** steps, int64_t count, double lr, double beta1, double beta2,
                      double weight_decay, double eps) {
  return guarded([&] {
    std::vector<at::Tensor> p, g, m, v, s;
    for (int64_t i = 0; i < count; ++i) {
      const auto& grad = params[i]->grad();
      if (!grad.defined()) continue;
      p.push_back(*params[i]);
      g.push_back(grad);
      m.push_back(*exp_avgs[i]);
      v.push_back(*exp_avg_sqs[i]);
      s.push_back(*steps[i]);
    }
    if (p.empty()) return;
    at::NoGradGuard no_grad;
    at::_foreach_add_(s, 1.0);
    at::_fused_adam_(p, g, m, v, {}, s, lr, beta1, beta2, weight_decay, eps,
                     /*amsgrad=*/false, /*maximize=*/false);
  });
}

int dlgrid_set_grads_to_none(at::Tensor** params, int64_t count) {
  return guarded([&] {
    for (int64_t i = 0; i < count; ++i) params[i]->mutable_grad().reset();
  });
}

// device_type: 0 = CPU, 1 = CUDA. dtype: 0 = float16, 1 = bfloat16. Returns the previous
// enabled state in *was_enabled.
int dlgrid_autocast_enter(int device_type, int dtype, int* was_enabled) {
  return guarded([&] {
    const auto dev = device_type == 1 ? at::kCUDA : at::kCPU;
    *was_enabled = at::autocast::is_autocast_enabled(dev) ? 1 : 0;
    at::autocast::set_autocast_dtype(dev, dtype == 1 ? at::kBFloat16 : at::kHalf);
    at::autocast::set_autocast_enabled(dev, true);
    at::autocast::increment_nesting();
  });
}

int dlgrid_autocast_exit(int device_type, int was_enabled) {
  return guarded([&] {
    const auto dev = device_type == 1 ? at::kCUDA : at::kCPU;
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    at::autocast::set_autocast_enabled(dev, was_enabled != 0);
  });
}

// CUDA backend settings for a job, as torch.backends.* sets them: TF32 for convolutions and for
// matrix products, cuDNN's benchmark mode (autotuning per input shape), and deterministic
// algorithms (cuDNN's and ATen's; an op without a deterministic implementation then fails).
int dlgrid_cuda_backend(int tf32_conv, int tf32_matmul, int benchmark, int deterministic) {
  return guarded([&] {
    auto& ctx = at::globalContext();
    using at::Float32Backend;
    using at::Float32Op;
    using at::Float32Precision;
    ctx.setFloat32Precision(Float32Backend::CUDA, Float32Op::CONV,
                            tf32_conv ? Float32Precision::TF32 : Float32Precision::IEEE);
    ctx.setFloat32Precision(Float32Backend::CUDA, Float32Op::MATMUL,
                            tf32_matmul ? Float32Precision::TF32 : Float32Precision::IEEE);
    ctx.setBenchmarkCuDNN(benchmark != 0);
    ctx.setDeterministicCuDNN(deterministic != 0);
    ctx.setDeterministicAlgorithms(deterministic != 0, /*warn_only=*/false);
  });
}

// The CUDA runtime version libtorch was built with (e.g. 13000 for 13.0); -1 without CUDA.
long dlgrid_cuda_runtime_version() {
  try {
    return at::detail::getCUDAHooks().versionCUDART();
  } catch (...) {
    return -1;
  }
}

// The cuDNN version libtorch was built with (e.g. 91300 for 9.13.0); -1 without it.
long dlgrid_cudnn_version() {
  try {
    return at::detail::getCUDAHooks().versionCuDNN();
  } catch (...) {
    return -1;
  }
}

}  // extern "C"
