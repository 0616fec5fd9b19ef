//! The closed vocabularies of a grid: activations, datasets, models, optimizers.
//!
//! Each enum has exactly one spelling per variant, used in grid.yaml, on the command line,
//! in job ids and in every output file.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Declares a string-named enum with `FromStr`, `Display`, `ALL` and serde by the same names,
/// so the YAML parser, clap and the reports can never disagree on a spelling.
macro_rules! named_enum {
    ($(#[$meta:meta])* $name:ident, $what:literal { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name {
            $(#[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = $crate::names::UnknownName;
            fn from_str(s: &str) -> Result<Self, $crate::names::UnknownName> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err($crate::names::UnknownName {
                        what: $what,
                        given: s.to_string(),
                        expected: vec![$($text),+],
                    }),
                }
            }
        }
    };
}

pub(crate) use named_enum;

/// A name that is not one of the allowed spellings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{given}`, expected one of: {}", expected.join(", "))]
pub struct UnknownName {
    pub what: &'static str,
    pub given: String,
    pub expected: Vec<&'static str>,
}

named_enum!(
    /// Activation functions. The first six are the paper's.
    Activation, "activation" {
        Relu => "relu",
        Tanh => "tanh",
        Selu => "selu",
        Prelu => "prelu",
        Elu => "elu",
        LeakyRelu => "leaky_relu",
        Sigmoid => "sigmoid",
        Gelu => "gelu",
        Silu => "silu",
        Mish => "mish",
        Softplus => "softplus",
        Hardswish => "hardswish",
        Celu => "celu",
        Rrelu => "rrelu",
    }
);

impl Activation {
    /// The six activations the paper compares, in its order.
    pub const PAPER: [Activation; 6] = [
        Activation::Relu,
        Activation::Tanh,
        Activation::Selu,
        Activation::Prelu,
        Activation::Elu,
        Activation::LeakyRelu,
    ];
}

named_enum!(
    /// Datasets, named as in grid.yaml; [`Dataset::info`] holds every fact about each.
    Dataset, "dataset" {
        Mnist => "mnist",
        FashionMnist => "fashion-mnist",
        Cifar10 => "cifar10",
        Cifar100 => "cifar100",
    }
);

named_enum!(
    /// Network architectures.
    Model, "model" {
        PaperCnn => "paper-cnn",
        Vgg11Bn => "vgg11-bn",
    }
);

impl Model {
    /// Why this model cannot run on `dataset`, if it cannot.
    pub fn incompatibility(self, dataset: Dataset) -> Option<String> {
        let shape = dataset.info().shape;
        match self {
            // Five 2×2 max-pools need at least 32 pixels a side.
            Model::Vgg11Bn if shape.height < 32 || shape.width < 32 => Some(format!(
                "model `vgg11-bn` needs images of at least 32x32 pixels; `{dataset}` has {}x{}",
                shape.height, shape.width
            )),
            _ => None,
        }
    }
}

named_enum!(
    /// Arithmetic of the forward pass: float32 throughout, or bfloat16 autocast (convolutions and
    /// matrix products in bfloat16, reductions and the loss in float32, as `torch.autocast`).
    Precision, "precision" {
        Fp32 => "fp32",
        Bf16 => "bf16",
    }
);

// named_enum! has no way to mark a variant #[default].
#[allow(clippy::derivable_impls)]
impl Default for Precision {
    fn default() -> Self {
        Precision::Fp32
    }
}

impl Precision {
    pub fn is_fp32(&self) -> bool {
        *self == Precision::Fp32
    }
}

named_enum!(
    /// Where CUDA may use TensorFloat-32 (10-bit mantissa) for float32 work on Ampere and newer
    /// GPUs: `conv`, PyTorch's default, in convolutions only; `all` also in matrix products;
    /// `off` nowhere. No effect on the CPU.
    Tf32, "tf32 setting" {
        Conv => "conv",
        All => "all",
        Off => "off",
    }
);

// named_enum! has no way to mark a variant #[default].
#[allow(clippy::derivable_impls)]
impl Default for Tf32 {
    fn default() -> Self {
        Tf32::Conv
    }
}

impl Tf32 {
    pub fn is_default(&self) -> bool {
        *self == Tf32::Conv
    }

    /// Whether convolutions and matrix products may use TF32.
    pub fn conv_matmul(self) -> (bool, bool) {
        match self {
            Tf32::Conv => (true, false),
            Tf32::All => (true, true),
            Tf32::Off => (false, false),
        }
    }
}

named_enum!(
    /// Optimizers.
    Optimizer, "optimizer" {
        Adam => "adam",
        Sgd => "sgd",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for a in Activation::ALL {
            assert_eq!(a.as_str().parse::<Activation>().unwrap(), *a);
        }
        for d in Dataset::ALL {
            assert_eq!(d.as_str().parse::<Dataset>().unwrap(), *d);
        }
        for m in Model::ALL {
            assert_eq!(m.as_str().parse::<Model>().unwrap(), *m);
        }
    }

    #[test]
    fn unknown_name_lists_the_choices() {
        let err = "relux".parse::<Activation>().unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("unknown activation `relux`"), "{msg}");
        assert!(msg.contains("leaky_relu"), "{msg}");
    }

    #[test]
    fn vgg_needs_32_pixels() {
        assert!(Model::Vgg11Bn.incompatibility(Dataset::Mnist).is_some());
        assert!(Model::Vgg11Bn.incompatibility(Dataset::Cifar10).is_none());
        assert!(Model::PaperCnn.incompatibility(Dataset::Cifar100).is_none());
    }
}
