//! A split on the training device: normalized float32 images in the device's preferred memory
//! layout, and int64 labels.

use common::{Dataset, Layout};
use tch::{Device, Kind, Tensor};

use super::Split;

/// A split as normalized float32 images and labels, resident on the training device, in the
/// job's memory layout: NCHW, or channels-last (NHWC in memory, handed out as NCHW views of
/// it). Which is faster depends on the device, the CPU and the model (oneDNN ran VGG-11 14%
/// faster from NCHW on an Intel Xeon; cuDNN's tensor-core kernels want channels-last), so the
/// engine measures it (`train::engine`).
pub struct DeviceSplit {
    /// NHWC when `channels_last`, NCHW otherwise.
    images: Tensor,
    channels_last: bool,
    pub labels: Tensor,
}

impl DeviceSplit {
    pub fn samples(&self) -> i64 {
        self.labels.size()[0]
    }

    /// The images at `idx`, as an NCHW tensor in this split's memory layout.
    pub fn gather(&self, idx: &Tensor) -> Result<Tensor, tch::TchError> {
        self.nchw(self.images.f_index_select(0, idx)?)
    }

    /// Images `start..start + len`, as an NCHW tensor in this split's memory layout.
    pub fn slice(&self, start: i64, len: i64) -> Result<Tensor, tch::TchError> {
        self.nchw(self.images.f_narrow(0, start, len)?)
    }

    /// `x` (NCHW images, e.g. augmented ones) in this split's memory layout.
    pub fn in_layout(&self, x: &Tensor) -> Result<Tensor, tch::TchError> {
        if self.channels_last {
            channels_last(x)
        } else {
            x.f_contiguous()
        }
    }

    fn nchw(&self, stored: Tensor) -> Result<Tensor, tch::TchError> {
        if self.channels_last {
            stored.f_permute([0, 3, 1, 2])
        } else {
            Ok(stored)
        }
    }

    pub fn device(&self) -> Device {
        self.labels.device()
    }
}

/// `t` (NCHW) with the same shape but channels-last memory.
pub fn channels_last(t: &Tensor) -> Result<Tensor, tch::TchError> {
    t.f_permute([0, 2, 3, 1])?
        .f_contiguous()?
        .f_permute([0, 3, 1, 2])
}

/// Keeps the first `limit` samples (0 = all), normalizes, and moves to `device` once, so the
/// training loop never copies from the host.
pub fn to_device(
    split: &Split,
    limit: u64,
    dataset: Dataset,
    device: Device,
    layout: Layout,
) -> Result<DeviceSplit, tch::TchError> {
    let n = split.labels.size()[0];
    let keep = if limit == 0 { n } else { n.min(limit as i64) };
    let info = dataset.info();
    let c = info.mean.len() as i64;
    let mean = Tensor::from_slice(info.mean)
        .view([1, c, 1, 1])
        .to_device(device);
    let std = Tensor::from_slice(info.std)
        .view([1, c, 1, 1])
        .to_device(device);
    let images = split
        .images
        .f_narrow(0, 0, keep)?
        .f_to_device(device)?
        .f_to_kind(Kind::Float)?
        .f_div_scalar(255.0)?
        .f_sub(&mean.to_kind(Kind::Float))?
        .f_div(&std.to_kind(Kind::Float))?;
    let channels_last = layout == Layout::ChannelsLast;
    let images = if channels_last {
        images.f_permute([0, 2, 3, 1])?.f_contiguous()?
    } else {
        images.f_contiguous()?
    };
    let labels = split.labels.f_narrow(0, 0, keep)?.f_to_device(device)?;
    Ok(DeviceSplit {
        images,
        channels_last,
        labels,
    })
}
