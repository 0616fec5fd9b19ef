//! CIFAR-style augmentation on the device: random crop with 4-pixel zero padding and random
//! horizontal flip, per image.

use tch::{Device, Kind, Tensor};

/// The index grids of a batch shape (they only depend on it), made once and reused, so a step
/// makes only its random offsets and flips.
pub struct Augmenter {
    shape: (i64, i64, i64, i64),
    device: Device,
    rows: Tensor,
    cols: Tensor,
    bi: Tensor,
    ci: Tensor,
}

impl Augmenter {
    fn new(shape: (i64, i64, i64, i64), device: Device) -> Result<Self, tch::TchError> {
        let (b, c, h, w) = shape;
        let opts = (Kind::Int64, device);
        Ok(Augmenter {
            shape,
            device,
            rows: Tensor::f_arange(h, opts)?.f_view([1, 1, h, 1])?,
            cols: Tensor::f_arange(w, opts)?.f_view([1, 1, 1, w])?,
            bi: Tensor::f_arange(b, opts)?.f_view([b, 1, 1, 1])?,
            ci: Tensor::f_arange(c, opts)?.f_view([1, c, 1, 1])?,
        })
    }

    /// Random crop with 4-pixel zero padding and random horizontal flip, per image of `x`.
    /// `cache` holds the grids of the last shape seen (a full batch, or the last partial one).
    pub fn apply(cache: &mut Option<Augmenter>, x: &Tensor) -> Result<Tensor, tch::TchError> {
        let shape = x.size4()?;
        let device = x.device();
        if !cache
            .as_ref()
            .is_some_and(|a| a.shape == shape && a.device == device)
        {
            *cache = Some(Augmenter::new(shape, device)?);
        }
        let a = cache.as_ref().expect("just made");
        let b = shape.0;
        let opts = (Kind::Int64, device);
        let padded = x.f_constant_pad_nd([4, 4, 4, 4])?;
        let oy = Tensor::f_randint(9, [b, 1, 1, 1], opts)?;
        let ox = Tensor::f_randint(9, [b, 1, 1, 1], opts)?;
        let rows = a.rows.f_add(&oy)?;
        let cols = a.cols.f_add(&ox)?;
        let cropped = padded.f_index(&[
            Some(a.bi.shallow_clone()),
            Some(a.ci.shallow_clone()),
            Some(rows),
            Some(cols),
        ])?;
        let flip = Tensor::f_rand([b, 1, 1, 1], (Kind::Float, device))?.f_lt(0.5)?;
        cropped.f_where_self(&flip, &cropped.f_flip([3])?)
    }
}
