//! How a job's training engine ran on its device: the memory layout of its images and
//! convolution weights, whose CPU kernels ran the operations we have our own of, and how that
//! was chosen. The worker measures the candidates at the first use of a model shape on a CPU
//! model (and keeps the fastest in a cache); a job's record says what it ran with.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::names::named_enum;

named_enum!(
    /// The memory layout of images and convolution weights on the device: channels outermost
    /// (`nchw`, PyTorch's default `torch.contiguous_format`), or NHWC in memory
    /// (`channels-last`, `torch.channels_last`).
    Layout, "layout" {
        Nchw => "nchw",
        ChannelsLast => "channels-last",
    }
);

named_enum!(
    /// Whose CPU kernels ran the operations the worker has its own of (2×2 max pooling, the
    /// convolution of single-channel images): aten's, or ours for an instruction set.
    KernelSet, "kernel set" {
        Aten => "aten",
        Avx2 => "avx2",
        Avx512 => "avx512",
    }
);

named_enum!(
    /// How the engine was chosen: `measured` (timed against the other candidates at the start
    /// of this job), `cached` (the choice measured earlier for the same CPU, threads and model
    /// shape), `fixed` (given with `--layout`/`--kernels`, or the only candidate: a GPU runs
    /// aten's kernels) or `resumed` (the choice of the attempt the job resumed from, so it ends
    /// as it would have).
    Chosen, "choice" {
        Measured => "measured",
        Cached => "cached",
        Fixed => "fixed",
        Resumed => "resumed",
    }
);

/// What a job trained with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Engine {
    pub layout: Layout,
    pub kernels: KernelSet,
    pub chosen: Chosen,
}

/// `layout/kernels/chosen`, e.g. `channels-last/avx2/measured`: the form on the wire and in the
/// coordinator's state.
impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.layout, self.kernels, self.chosen)
    }
}

impl FromStr for Engine {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut parts = s.split('/');
        let (Some(l), Some(k), Some(c), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(format!("engine {s:?} is not layout/kernels/chosen"));
        };
        let bad = |e: crate::names::UnknownName| e.to_string();
        Ok(Engine {
            layout: l.parse().map_err(bad)?,
            kernels: k.parse().map_err(bad)?,
            chosen: c.parse().map_err(bad)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_round_trips_through_its_text_and_json() {
        let e = Engine {
            layout: Layout::ChannelsLast,
            kernels: KernelSet::Avx2,
            chosen: Chosen::Measured,
        };
        assert_eq!(e.to_string(), "channels-last/avx2/measured");
        assert_eq!(e.to_string().parse::<Engine>(), Ok(e));
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(
            json,
            r#"{"layout":"channels-last","kernels":"avx2","chosen":"measured"}"#
        );
        assert_eq!(serde_json::from_str::<Engine>(&json).unwrap(), e);
    }

    #[test]
    fn bad_engine_text_names_the_part() {
        let err = "nchw/avx3/measured".parse::<Engine>().unwrap_err();
        assert!(err.contains("kernel set") && err.contains("avx3"), "{err}");
        assert!("nchw/aten".parse::<Engine>().is_err());
        assert!("nchw/aten/fixed/x".parse::<Engine>().is_err());
    }
}
