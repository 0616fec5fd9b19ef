//! CIFAR-style augmentation on the device: random crop with 4-pixel zero padding and random
//! horizontal flip, per image.

use tch::{Kind, Tensor};

/// Random crop with 4-pixel zero padding and random horizontal flip, per image, on the device.
pub fn augment(x: &Tensor) -> Result<Tensor, tch::TchError> {
    let (b, c, h, w) = x.size4()?;
    let device = x.device();
    let opts = (Kind::Int64, device);
    let padded = x.f_constant_pad_nd([4, 4, 4, 4])?;
    let oy = Tensor::f_randint(9, [b, 1, 1, 1], opts)?;
    let ox = Tensor::f_randint(9, [b, 1, 1, 1], opts)?;
    let rows = Tensor::f_arange(h, opts)?
        .f_view([1, 1, h, 1])?
        .f_add(&oy)?;
    let cols = Tensor::f_arange(w, opts)?
        .f_view([1, 1, 1, w])?
        .f_add(&ox)?;
    let bi = Tensor::f_arange(b, opts)?.f_view([b, 1, 1, 1])?;
    let ci = Tensor::f_arange(c, opts)?.f_view([1, c, 1, 1])?;
    let cropped = padded.f_index(&[Some(bi), Some(ci), Some(rows), Some(cols)])?;
    let flip = Tensor::f_rand([b, 1, 1, 1], (Kind::Float, device))?.f_lt(0.5)?;
    cropped.f_where_self(&flip, &cropped.f_flip([3])?)
}
