//! Safe wrappers around the libtorch operations of `csrc/` (see `csrc/ops.h` for the files and why each exists).

use std::ffi::CStr;
use std::os::raw::{c_char, c_int};

use common::KernelSet;
use tch::{Device, TchError, Tensor};
use torch_sys::C_tensor;

extern "C" {
    fn dlgrid_last_error() -> *const c_char;
    fn dlgrid_conv2d(
        x: *const C_tensor,
        weight: *const C_tensor,
        bias: *const C_tensor,
        padding: i64,
        out: *mut *mut C_tensor,
    ) -> c_int;
    fn dlgrid_max_pool2x2(x: *const C_tensor, out: *mut *mut C_tensor) -> c_int;
    fn dlgrid_fused_adam(
        params: *const *mut C_tensor,
        exp_avgs: *const *mut C_tensor,
        exp_avg_sqs: *const *mut C_tensor,
        steps: *const *mut C_tensor,
        count: i64,
        lr: f64,
        beta1: f64,
        beta2: f64,
        weight_decay: f64,
        eps: f64,
    ) -> c_int;
    fn dlgrid_set_grads_to_none(params: *const *mut C_tensor, count: i64) -> c_int;
    fn dlgrid_autocast_enter(device_type: c_int, dtype: c_int, was_enabled: *mut c_int) -> c_int;
    fn dlgrid_autocast_exit(device_type: c_int, was_enabled: c_int) -> c_int;
    fn dlgrid_kernels_set(isa: c_int, this_thread: c_int) -> c_int;
    fn dlgrid_kernels_get() -> c_int;
    fn dlgrid_kernels_supported(isa: c_int) -> c_int;
    fn dlgrid_kernels_cap(isa: c_int);
}

fn check(rc: c_int) -> Result<(), TchError> {
    if rc == 0 {
        return Ok(());
    }
    // SAFETY: the C++ side returns a pointer to its thread-local, NUL-terminated message,
    // valid until the next failing call on this thread; it is copied at once.
    let msg = unsafe { CStr::from_ptr(dlgrid_last_error()) };
    Err(TchError::Torch(msg.to_string_lossy().into_owned()))
}

fn ptrs(ts: &[&Tensor]) -> Vec<*mut C_tensor> {
    ts.iter().map(|t| t.as_ptr() as *mut C_tensor).collect()
}

fn isa_code(k: KernelSet) -> c_int {
    match k {
        KernelSet::Aten => 0,
        KernelSet::Avx2 => 1,
        KernelSet::Avx512 => 2,
    }
}

/// Whether this CPU can run kernel set `k` (aten's always).
pub fn kernels_supported(k: KernelSet) -> bool {
    // SAFETY: a plain value in and out.
    unsafe { dlgrid_kernels_supported(isa_code(k)) == 1 }
}

/// Treats the kernel sets above `k` as unsupported, as on a CPU without them
/// (`DLGRID_MAX_CPU_ISA`; call before training starts).
pub fn cap_kernels(k: KernelSet) {
    // SAFETY: a plain value; stores an atomic.
    unsafe { dlgrid_kernels_cap(isa_code(k)) }
}

/// The fastest of our kernel sets this CPU runs (AVX-512, then AVX2), or aten's.
pub fn best_kernels() -> KernelSet {
    [KernelSet::Avx512, KernelSet::Avx2]
        .into_iter()
        .find(|k| kernels_supported(*k))
        .unwrap_or(KernelSet::Aten)
}

/// The kernels [`conv2d`] and [`max_pool2x2`] use on this thread now.
pub fn current_kernels() -> KernelSet {
    // SAFETY: no arguments; reads a thread-local and an atomic.
    match unsafe { dlgrid_kernels_get() } {
        2 => KernelSet::Avx512,
        1 => KernelSet::Avx2,
        _ => KernelSet::Aten,
    }
}

/// Makes [`conv2d`] and [`max_pool2x2`] calls on this thread use `k` until the guard drops
/// (the thread then follows the process's choice again: by default the CPU's best). An error
/// where the CPU cannot run `k`.
pub fn use_kernels_on_this_thread(k: KernelSet) -> Result<KernelScope, TchError> {
    // SAFETY: plain values; sets a thread-local.
    check(unsafe { dlgrid_kernels_set(isa_code(k), 1) })?;
    Ok(KernelScope(std::marker::PhantomData))
}

/// See [`use_kernels_on_this_thread`]; not `Send`, as the choice belongs to one thread.
pub struct KernelScope(std::marker::PhantomData<*const ()>);

impl Drop for KernelScope {
    fn drop(&mut self) {
        // SAFETY: -2 (follow the process) is always accepted.
        let _ = unsafe { dlgrid_kernels_set(-2, 1) };
    }
}

/// `conv2d` with stride 1 and zero `padding`. On CPUs with AVX-512 or AVX2 (see
/// [`current_kernels`]), with autocast off, three cases run our own code:
/// - single-channel inputs (the first layer on grayscale images) with 3, 5 or 7 columns of
///   kernel, and channels-last RGB inputs (2 to 4 channels) with 3x3 kernels and padding 1,
///   both when the input needs no gradient;
/// - channels-last inputs of 16 channels or more and at least 4x4 pixels, with 3x3 kernels
///   and padding 1 (VGG's layers): Winograd F(4x4, 3x3), all gradients included
///   (`csrc/winograd.cpp`).
///
/// Everything else is aten's `conv2d`.
pub fn conv2d(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    padding: i64,
) -> Result<Tensor, TchError> {
    let mut out: *mut C_tensor = std::ptr::null_mut();
    let bias = bias.map_or(std::ptr::null(), |b| b.as_ptr());
    // SAFETY: live tensors (or null for no bias), borrowed; on success the C++ side hands over
    // a new heap tensor that `Tensor::from_ptr` takes ownership of.
    check(unsafe { dlgrid_conv2d(x.as_ptr(), weight.as_ptr(), bias, padding, &mut out) })?;
    Ok(unsafe { Tensor::from_ptr(out) })
}

/// 2×2 max pooling with stride 2, the same values and gradients as `max_pool2d(x, 2)`; our
/// kernels for float32 CPU tensors (NCHW or channels-last, even sizes) on CPUs with AVX-512 or
/// AVX2 (see [`current_kernels`]), `max_pool2d` itself otherwise.
pub fn max_pool2x2(x: &Tensor) -> Result<Tensor, TchError> {
    let mut out: *mut C_tensor = std::ptr::null_mut();
    // SAFETY: `x` is a live tensor; on success the C++ side hands over a new heap tensor that
    // `Tensor::from_ptr` takes ownership of (freed by tch's Drop).
    check(unsafe { dlgrid_max_pool2x2(x.as_ptr(), &mut out) })?;
    Ok(unsafe { Tensor::from_ptr(out) })
}

/// One `torch.optim.Adam(fused=True)` step over `params` (those without a gradient are
/// skipped); `exp_avgs`, `exp_avg_sqs` and the float32 scalar `steps` are updated in place.
#[allow(clippy::too_many_arguments)]
pub fn fused_adam(
    params: &[&Tensor],
    exp_avgs: &[&Tensor],
    exp_avg_sqs: &[&Tensor],
    steps: &[&Tensor],
    lr: f64,
    betas: (f64, f64),
    weight_decay: f64,
    eps: f64,
) -> Result<(), TchError> {
    let n = params.len();
    assert!(exp_avgs.len() == n && exp_avg_sqs.len() == n && steps.len() == n);
    let (p, m, v, s) = (ptrs(params), ptrs(exp_avgs), ptrs(exp_avg_sqs), ptrs(steps));
    // SAFETY: four arrays of `n` live tensors; the C++ side only borrows them.
    check(unsafe {
        dlgrid_fused_adam(
            p.as_ptr(),
            m.as_ptr(),
            v.as_ptr(),
            s.as_ptr(),
            n as i64,
            lr,
            betas.0,
            betas.1,
            weight_decay,
            eps,
        )
    })
}

/// Drops the gradients of `params` (PyTorch's `zero_grad(set_to_none=True)`): the next
/// backward pass writes fresh gradients instead of adding to zero-filled ones.
pub fn set_grads_to_none(params: &[&Tensor]) -> Result<(), TchError> {
    let p = ptrs(params);
    // SAFETY: an array of live tensors, borrowed.
    check(unsafe { dlgrid_set_grads_to_none(p.as_ptr(), p.len() as i64) })
}

/// Reduced-precision compute for autocast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutocastDtype {
    Float16,
    BFloat16,
}

/// Runs `f` with autocast enabled on `device`'s type, computing eligible ops (convolutions,
/// matrix products) in `dtype`, as `torch.autocast(device_type, dtype)` does.
pub fn with_autocast<T>(
    device: Device,
    dtype: AutocastDtype,
    f: impl FnOnce() -> T,
) -> Result<T, TchError> {
    let device_type = match device {
        Device::Cpu => 0,
        Device::Cuda(_) => 1,
        other => return Err(TchError::Torch(format!("autocast on {other:?}"))),
    };
    let dtype = match dtype {
        AutocastDtype::Float16 => 0,
        AutocastDtype::BFloat16 => 1,
    };
    let mut was_enabled = 0;
    // SAFETY: plain values and an out-pointer to a local.
    check(unsafe { dlgrid_autocast_enter(device_type, dtype, &mut was_enabled) })?;
    struct Exit(c_int, c_int);
    impl Drop for Exit {
        fn drop(&mut self) {
            // SAFETY: plain values. Restoring the previous state cannot meaningfully fail.
            let _ = unsafe { dlgrid_autocast_exit(self.0, self.1) };
        }
    }
    let _exit = Exit(device_type, was_enabled);
    Ok(f())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    fn channels_last(t: &Tensor) -> Tensor {
        crate::data::channels_last(t).unwrap()
    }

    /// Runs `f` once with each of our kernel sets this CPU has (on x86-64 CI machines: AVX-512
    /// and AVX2, or AVX2 alone), each forced on this thread, naming it; the last run uses
    /// aten's, where everything must fall back.
    fn for_each_kernel_set(mut f: impl FnMut(KernelSet)) {
        let ours: Vec<_> = [KernelSet::Avx512, KernelSet::Avx2]
            .into_iter()
            .filter(|k| kernels_supported(*k))
            .collect();
        if cfg!(target_arch = "x86_64") && std::is_x86_feature_detected!("avx2") {
            assert!(ours.contains(&KernelSet::Avx2), "AVX2 kernels not offered");
        }
        for k in ours.into_iter().chain([KernelSet::Aten]) {
            let _scope = use_kernels_on_this_thread(k).unwrap();
            assert_eq!(current_kernels(), k);
            f(k);
        }
    }

    #[test]
    fn kernel_choice_is_per_thread_and_scoped() {
        let best = best_kernels();
        assert!(kernels_supported(best) && kernels_supported(KernelSet::Aten));
        assert_eq!(current_kernels(), best);
        {
            let _aten = use_kernels_on_this_thread(KernelSet::Aten).unwrap();
            assert_eq!(current_kernels(), KernelSet::Aten);
            // Other threads keep the process's choice.
            assert_eq!(std::thread::spawn(current_kernels).join().unwrap(), best);
        }
        assert_eq!(current_kernels(), best);
        for k in [KernelSet::Avx512, KernelSet::Avx2] {
            if !kernels_supported(k) {
                let err = use_kernels_on_this_thread(k).err().unwrap().to_string();
                assert!(err.contains("cannot run"), "{err}");
            }
        }
    }

    /// Values and gradients identical to aten's max_pool2d in both memory layouts, including
    /// ties (constant image backgrounds make them common) and NaNs.
    #[test]
    fn max_pool_matches_aten_exactly() {
        tch::manual_seed(7);
        let shapes = [
            (3, 10, 24, 24),
            (2, 20, 8, 8),
            (3, 1, 24, 24),
            (1, 1, 2, 2),
            (2, 3, 6, 40),
            (2, 17, 4, 66),
            (4, 64, 32, 32),
        ];
        for_each_kernel_set(|kernels| {
            for &(n, c, h, w) in &shapes {
                for layout in ["nchw", "nhwc"] {
                    // Few distinct values, so many windows hold ties.
                    let x = Tensor::randint(4, [n, c, h, w], (Kind::Float, Device::Cpu)) - 2.0;
                    let _ = x.narrow(0, 0, 1).narrow(2, 0, 1).fill_(f64::NAN);
                    let x = if layout == "nhwc" {
                        channels_last(&x)
                    } else {
                        x
                    };
                    let a = x.detach().set_requires_grad(true);
                    let b = x.detach().set_requires_grad(true);
                    let ya = a.max_pool2d_default(2);
                    let yb = max_pool2x2(&b).unwrap();
                    let case = format!("{kernels} {layout} {n}x{c}x{h}x{w}");
                    assert_eq!(ya.size(), yb.size(), "{case}");
                    assert_eq!(ya.stride(), yb.stride(), "{case}");
                    // NaN != NaN, so compare with NaNs mapped to a sentinel.
                    let same = ya.nan_to_num(Some(1e9), None, None).equal(&yb.nan_to_num(
                        Some(1e9),
                        None,
                        None,
                    ));
                    assert!(same, "forward {case}");
                    let g = Tensor::randn(ya.size(), (Kind::Float, Device::Cpu));
                    (&ya * &g).sum(Kind::Float).backward();
                    (&yb * &g).sum(Kind::Float).backward();
                    assert!(a.grad().equal(&b.grad()), "backward {case}");
                }
            }
        });
    }

    #[test]
    fn max_pool_falls_back_for_other_layouts() {
        let x = Tensor::randn([2, 3, 7, 6], (Kind::Float, Device::Cpu));
        assert!(max_pool2x2(&x).unwrap().equal(&x.max_pool2d_default(2)));
        let x = Tensor::randn([2, 3, 8, 8], (Kind::Double, Device::Cpu));
        assert!(max_pool2x2(&x).unwrap().equal(&x.max_pool2d_default(2)));
    }

    #[test]
    fn max_pool_without_grad_matches() {
        for_each_kernel_set(|_| {
            let x = channels_last(&Tensor::randn([5, 12, 6, 10], (Kind::Float, Device::Cpu)));
            let y = tch::no_grad(|| max_pool2x2(&x).unwrap());
            assert!(y.equal(&x.max_pool2d_default(2)));
        });
    }

    /// Equal within float32 rounding, relative to the tensor's scale: a weight gradient sums
    /// thousands of products in another order than aten, so an element near zero can differ by
    /// more than a fixed 1e-4 while both are right (a CI run failed so once, with the tests
    /// drawing from libtorch's shared generator in parallel, so on other inputs than alone); a
    /// wrong kernel differs by the scale itself.
    fn close(a: &Tensor, b: &Tensor) -> bool {
        let scale = b.abs().max().double_value(&[]);
        let diff = (a - b).abs().max().double_value(&[]);
        diff <= 1e-4 * (1.0 + scale)
    }

    /// `conv2d` of `x` by `weight` (with a random bias) against aten's: the output, the weight
    /// and bias gradients (and the input's, where `x` requires one), and the output without
    /// gradients or bias.
    fn conv_matches_aten(x: &Tensor, weight: &Tensor, padding: i64, case: &str) {
        let pad = [padding, padding];
        let wa = weight.detach().set_requires_grad(true);
        let ba =
            Tensor::randn([weight.size()[0]], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let wb = wa.detach().set_requires_grad(true);
        let bb = ba.detach().set_requires_grad(true);
        let input_grad = x.requires_grad();
        let (xa, xb) = (x.detach().set_requires_grad(input_grad), x.detach());
        let xb = xb.set_requires_grad(input_grad);
        let ya = xa.conv2d(&wa, Some(&ba), [1, 1], pad, [1, 1], 1);
        let yb = conv2d(&xb, &wb, Some(&bb), padding).unwrap();
        assert_eq!(ya.size(), yb.size(), "{case}");
        assert!(close(&ya, &yb), "forward {case}");
        let g = Tensor::randn(ya.size(), (Kind::Float, Device::Cpu));
        (&ya * &g).sum(Kind::Float).backward();
        (&yb * &g).sum(Kind::Float).backward();
        assert!(close(&wa.grad(), &wb.grad()), "weight gradient {case}");
        assert!(close(&ba.grad(), &bb.grad()), "bias gradient {case}");
        if input_grad {
            assert!(close(&xa.grad(), &xb.grad()), "input gradient {case}");
        }
        // Without gradients, and without a bias.
        let y = tch::no_grad(|| conv2d(x, &wb, None, padding).unwrap());
        let want = x.conv2d(&wb, None::<Tensor>, [1, 1], pad, [1, 1], 1);
        assert!(close(&y, &want), "no-grad {case}");
    }

    /// Our single-channel convolution against aten's: outputs, weight and bias gradients.
    #[test]
    fn single_channel_conv_matches_aten() {
        tch::manual_seed(3);
        for_each_kernel_set(|kernels| {
            for &(n, h, w, oc, k) in &[
                (7, 28, 28, 10, 5),
                (3, 20, 37, 6, 3),
                (2, 9, 9, 4, 7),
                (1, 5, 5, 1, 5),
                (3, 32, 40, 16, 5),
                (2, 28, 28, 20, 5),
                (2, 12, 30, 8, 3),
                (2, 11, 13, 3, 7),
            ] {
                let case = format!("{kernels} {n}x1x{h}x{w} -> {oc} k{k}");
                let x = Tensor::randn([n, 1, h, w], (Kind::Float, Device::Cpu));
                let w0 = Tensor::randn([oc, 1, k, k], (Kind::Float, Device::Cpu)) * 0.2;
                conv_matches_aten(&x, &w0, 0, &case);
            }
        });
    }

    /// Our convolution of RGB images (channels-last, 3x3, padding 1) against aten's: outputs,
    /// weight and bias gradients, pixel blocks with tails, one and several channel blocks.
    #[test]
    fn rgb_conv_matches_aten() {
        tch::manual_seed(5);
        for_each_kernel_set(|kernels| {
            for &(n, c, h, w, oc) in &[
                (3, 3, 32, 32, 64),
                (2, 3, 7, 11, 16),
                (2, 4, 5, 13, 32),
                (1, 2, 9, 3, 48),
                (5, 3, 6, 6, 128),
            ] {
                let case = format!("{kernels} {n}x{c}x{h}x{w} -> {oc}");
                let x = channels_last(&Tensor::randn([n, c, h, w], (Kind::Float, Device::Cpu)));
                let w0 = Tensor::randn([oc, c, 3, 3], (Kind::Float, Device::Cpu)) * 0.2;
                conv_matches_aten(&x, &channels_last(&w0), 1, &case);
            }
        });
    }

    /// Winograd convolution (channels-last, 3x3, padding 1, 16 channels or more, 128 tiles of
    /// 4x4 output pixels or more) against aten's: outputs and all three gradients, with tiles
    /// and channel vectors cut short at the edges, with and without an input gradient.
    #[test]
    fn winograd_conv_matches_aten() {
        tch::manual_seed(7);
        for_each_kernel_set(|kernels| {
            // Tiles: 32 x 2 x 2, 22 x 2 x 3, 8 x 4 x 4, 128, 32 x 2 x 2, 43 x 1 x 3.
            for &(n, c, h, w, oc, input_grad) in &[
                (32, 16, 8, 8, 32, true),
                (22, 20, 6, 10, 24, true),
                (8, 64, 16, 16, 64, true),
                (128, 40, 4, 4, 16, true),
                (32, 16, 5, 7, 17, false),
                (43, 128, 4, 12, 32, true),
            ] {
                let case = format!("{kernels} {n}x{c}x{h}x{w} -> {oc}");
                let x = channels_last(&Tensor::randn([n, c, h, w], (Kind::Float, Device::Cpu)))
                    .set_requires_grad(input_grad);
                let w0 = Tensor::randn([oc, c, 3, 3], (Kind::Float, Device::Cpu)) * 0.2;
                conv_matches_aten(&x, &channels_last(&w0), 1, &case);
                // Winograd's rounding differs from direct convolution's: an output equal to aten's
                // bit for bit would mean the convolution fell back to aten.
                let want = x.conv2d(&w0, None::<Tensor>, [1, 1], [1, 1], [1, 1], 1);
                let same = tch::no_grad(|| conv2d(&x, &w0, None, 1).unwrap()).equal(&want);
                assert_eq!(same, kernels == KernelSet::Aten, "{case}: which path ran");
            }
        });
    }

    /// Inputs our kernel does not take go to aten, gradients included.
    #[test]
    fn conv_falls_back_to_aten() {
        let x = Tensor::randn([2, 3, 8, 8], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let w = Tensor::randn([4, 3, 3, 3], (Kind::Float, Device::Cpu));
        let y = conv2d(&x, &w, None, 1).unwrap();
        assert!(y.equal(&x.conv2d(&w, None::<Tensor>, [1, 1], [1, 1], [1, 1], 1)));
        y.sum(Kind::Float).backward();
        assert!(x.grad().defined());
        // RGB, but an input that needs a gradient, or in NCHW.
        let w = Tensor::randn([16, 3, 3, 3], (Kind::Float, Device::Cpu));
        let x = channels_last(&Tensor::randn([2, 3, 8, 8], (Kind::Float, Device::Cpu)))
            .set_requires_grad(true);
        conv2d(&x, &w, None, 1).unwrap().sum(Kind::Float).backward();
        assert!(x.grad().defined());
        let x = Tensor::randn([2, 3, 8, 8], (Kind::Float, Device::Cpu));
        let y = conv2d(&x, &w, None, 1).unwrap();
        assert!(y.equal(&x.conv2d(&w, None::<Tensor>, [1, 1], [1, 1], [1, 1], 1)));
        // 3x3 with 16 channels, but NCHW, images under 4 pixels, no padding, or under 128 tiles
        // (127 images of 4x4; one of 32x32, as for latency): aten (exactly).
        let w = Tensor::randn([16, 16, 3, 3], (Kind::Float, Device::Cpu));
        for (shape, padding, layout_cl) in [
            ([32, 16, 8, 8], 1, false),
            ([64, 16, 2, 8], 1, true),
            ([32, 16, 8, 8], 0, true),
            ([127, 16, 4, 4], 1, true),
            ([1, 16, 32, 32], 1, true),
        ] {
            let x = Tensor::randn(shape, (Kind::Float, Device::Cpu));
            let x = if layout_cl { channels_last(&x) } else { x };
            let y = conv2d(&x, &w, None, padding).unwrap();
            let want = x.conv2d(&w, None::<Tensor>, [1, 1], [padding, padding], [1, 1], 1);
            assert!(y.equal(&want), "{shape:?} padding {padding}");
        }
        // One channel but an input that needs a gradient.
        let x = Tensor::randn([2, 1, 8, 8], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let w = Tensor::randn([4, 1, 5, 5], (Kind::Float, Device::Cpu));
        conv2d(&x, &w, None, 0).unwrap().sum(Kind::Float).backward();
        assert!(x.grad().defined());
    }

    #[test]
    fn errors_come_back_as_messages() {
        let x = Tensor::randn([3], (Kind::Float, Device::Cpu));
        let err = max_pool2x2(&x).unwrap_err().to_string();
        assert!(err.contains("max_pool2d"), "{err}");
    }

    #[test]
    fn bf16_autocast_runs_linear_layers_in_bf16() {
        let x = Tensor::randn([4, 8], (Kind::Float, Device::Cpu));
        let w = Tensor::randn([3, 8], (Kind::Float, Device::Cpu));
        let y = with_autocast(Device::Cpu, AutocastDtype::BFloat16, || {
            x.linear(&w, None::<Tensor>)
        })
        .unwrap();
        assert_eq!(y.kind(), Kind::BFloat16);
        // Restored afterwards.
        assert_eq!(x.linear(&w, None::<Tensor>).kind(), Kind::Float);
        // Our convolution steps aside for aten's under autocast, which computes in bf16.
        let img = Tensor::randn([2, 1, 12, 12], (Kind::Float, Device::Cpu));
        let k = Tensor::randn([4, 1, 5, 5], (Kind::Float, Device::Cpu));
        let y = with_autocast(Device::Cpu, AutocastDtype::BFloat16, || {
            conv2d(&img, &k, None, 0).unwrap()
        })
        .unwrap();
        assert_eq!(y.kind(), Kind::BFloat16);
    }
}
