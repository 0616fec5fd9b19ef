//! How a job's training engine ran on its device: the memory layout of its images and
//! convolution weights, whose CPU kernels ran the operations we have our own of, and how that
//! was chosen. The worker measures the candidates at the first use of a model shape on a CPU
//! model (and keeps the fastest in a cache); a job's record says what it ran with.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The memory layout of images and convolution weights on the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    /// Channels outermost (PyTorch's default, `torch.contiguous_format`).
    Nchw,
    /// NHWC in memory (`torch.channels_last`).
    ChannelsLast,
}

/// Whose CPU kernels ran the operations the worker has its own of (2×2 max pooling, the
/// convolution of single-channel images): aten's, or ours for an instruction set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KernelSet {
    Aten,
    Avx2,
    Avx512,
}

/// How the engine was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Chosen {
    /// Timed against the other candidates at the start of this job.
    Measured,
    /// The choice measured earlier for the same CPU, threads and model shape.
    Cached,
    /// Given (`--layout`, `--kernels`), or the only candidate (a GPU runs aten's kernels).
    Fixed,
    /// The choice of the attempt the job resumed from (so it ends as it would have).
    Resumed,
}

/// What a job trained with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Engine {
    pub layout: Layout,
    pub kernels: KernelSet,
    pub chosen: Chosen,
}

macro_rules! spelled {
    ($t:ty, $what:literal, $($v:path => $s:literal),+) => {
        impl $t {
            pub fn as_str(self) -> &'static str {
                match self { $($v => $s),+ }
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl FromStr for $t {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($s => Ok($v),)+
                    other => Err(format!(
                        "unknown {} {other:?} (expected {})",
                        $what,
                        [$($s),+].join(", ")
                    )),
                }
            }
        }
    };
}

spelled!(Layout, "layout", Layout::Nchw => "nchw", Layout::ChannelsLast => "channels-last");
spelled!(KernelSet, "kernel set", KernelSet::Aten => "aten", KernelSet::Avx2 => "avx2",
    KernelSet::Avx512 => "avx512");
spelled!(Chosen, "choice", Chosen::Measured => "measured", Chosen::Cached => "cached",
    Chosen::Fixed => "fixed", Chosen::Resumed => "resumed");

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
        Ok(Engine {
            layout: l.parse()?,
            kernels: k.parse()?,
            chosen: c.parse()?,
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
