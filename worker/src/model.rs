//! The paper's networks with a pluggable activation.
//!
//! Parameter names come from `nn::Path::sub`, so they double as checkpoint keys: keep them stable.

use common::Shape;
use common::{Activation, Model};
use tch::nn::{self, ModuleT};
use tch::Tensor;

/// One activation site. PReLU owns a learnable slope, so each site is its own module.
#[derive(Debug)]
pub struct Act {
    kind: Activation,
    prelu_weight: Option<Tensor>,
}

impl Act {
    pub fn new(p: &nn::Path, kind: Activation) -> Act {
        let prelu_weight =
            (kind == Activation::Prelu).then(|| p.var("weight", &[1], nn::Init::Const(0.25)));
        Act { kind, prelu_weight }
    }
}

impl ModuleT for Act {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        match self.kind {
            // In place, as PyTorch's `nn.ReLU(inplace=True)`: every site follows a layer whose
            // backward pass does not need its output (convolution, batch norm, pooling,
            // linear), and the output's memory is not allocated afresh each step.
            Activation::Relu => x.shallow_clone().relu_(),
            Activation::Tanh => x.tanh(),
            Activation::Selu => x.selu(),
            Activation::Prelu => x.prelu(
                self.prelu_weight
                    .as_ref()
                    .expect("Act::new creates the weight for prelu"),
            ),
            Activation::Elu => x.elu(),
            Activation::LeakyRelu => x.leaky_relu(),
            Activation::Sigmoid => x.sigmoid(),
            Activation::Gelu => x.gelu("none"),
            Activation::Silu => x.silu(),
            Activation::Mish => x.mish(),
            Activation::Softplus => x.softplus(),
            Activation::Hardswish => x.hardswish(),
            Activation::Celu => x.celu(),
            Activation::Rrelu => rrelu(x, train),
        }
    }
}

/// Randomized leaky ReLU (Xu et al. 2015, PyTorch's defaults): a slope drawn uniformly from
/// [1/8, 1/3] per element while training, the mean slope at evaluation. Written out because
/// tch's `rrelu` binding passes bounds that libtorch rejects.
fn rrelu(x: &Tensor, train: bool) -> Tensor {
    const LOWER: f64 = 1.0 / 8.0;
    const UPPER: f64 = 1.0 / 3.0;
    let negative = x.lt(0.0);
    let slope = if train {
        x.rand_like() * (UPPER - LOWER) + LOWER
    } else {
        x.ones_like() * ((LOWER + UPPER) / 2.0)
    };
    x.where_self(&negative.logical_not(), &(x * slope))
}

/// 2×2 max pooling, stride 2 (see [`crate::ops::max_pool2x2`]). Panics, as tch's own
/// infallible ops do, on a libtorch error; the job's process reports it.
fn max_pool(x: &Tensor) -> Tensor {
    crate::ops::max_pool2x2(x).unwrap_or_else(|e| panic!("max pooling: {e}"))
}

/// PyTorch's default initialisation (kaiming_uniform with a=√5, i.e. U(±1/√fan_in), for
/// weights and biases alike), so our runs start where the paper's PyTorch runs started.
fn torch_init(fan_in: i64) -> nn::Init {
    let bound = 1.0 / (fan_in as f64).sqrt();
    nn::Init::Uniform {
        lo: -bound,
        up: bound,
    }
}

/// A stride-1 convolution with zero padding, run by [`crate::ops::conv2d`].
#[derive(Debug)]
struct Conv {
    weight: Tensor,
    bias: Tensor,
    padding: i64,
}

impl nn::Module for Conv {
    fn forward(&self, x: &Tensor) -> Tensor {
        crate::ops::conv2d(x, &self.weight, Some(&self.bias), self.padding)
            .unwrap_or_else(|e| panic!("convolution: {e}"))
    }
}

fn conv(p: nn::Path, c_in: i64, c_out: i64, k: i64, padding: i64) -> Conv {
    let init = torch_init(c_in * k * k);
    Conv {
        weight: p.var("weight", &[c_out, c_in, k, k], init),
        bias: p.var("bias", &[c_out], init),
        padding,
    }
}

fn linear(p: nn::Path, d_in: i64, d_out: i64) -> nn::Linear {
    let cfg = nn::LinearConfig {
        ws_init: torch_init(d_in),
        bs_init: Some(torch_init(d_in)),
        bias: true,
    };
    nn::linear(p, d_in, d_out, cfg)
}

/// Paper Table 1 (the PyTorch MNIST example network):
/// conv 1→10 k5, maxpool 2, act, conv 10→20 k5, Dropout2d, maxpool 2, act,
/// linear 320→50, act, dropout, linear 50→10. Input size only changes the flattened width.
#[derive(Debug)]
pub struct PaperCnn {
    conv1: Conv,
    conv2: Conv,
    fc1: nn::Linear,
    fc2: nn::Linear,
    act1: Act,
    act2: Act,
    act3: Act,
}

impl PaperCnn {
    pub fn new(p: &nn::Path, shape: Shape, act: Activation) -> PaperCnn {
        let side = |s: usize| ((s as i64 - 4) / 2 - 4) / 2;
        let flat = 20 * side(shape.height) * side(shape.width);
        PaperCnn {
            conv1: conv(p / "conv1", shape.channels as i64, 10, 5, 0),
            conv2: conv(p / "conv2", 10, 20, 5, 0),
            fc1: linear(p / "fc1", flat, 50),
            fc2: linear(p / "fc2", 50, shape.classes as i64),
            act1: Act::new(&(p / "act1"), act),
            act2: Act::new(&(p / "act2"), act),
            act3: Act::new(&(p / "act3"), act),
        }
    }
}

impl ModuleT for PaperCnn {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        // oneDNN's kernels for conv2's 10 input channels are faster on channels-last memory (6%
        // of a CPU step); the copy is of 12×12 maps, before the activation so that its forward
        // and backward see one layout (no copy where it already is channels-last).
        let x = crate::data::channels_last(&max_pool(&x.apply(&self.conv1)))
            .unwrap_or_else(|e| panic!("layout: {e}"));
        let x = self.act1.forward_t(&x, train);
        let x = max_pool(&x.apply(&self.conv2).feature_dropout(0.5, train));
        let x = self.act2.forward_t(&x, train).flatten(1, -1);
        let x = self.act3.forward_t(&x.apply(&self.fc1), train);
        x.dropout(0.5, train).apply(&self.fc2)
    }
}

/// Paper Table 2: VGG configuration A with batch norm after each of the 8 convolutions,
/// 5 max-pools, global average pool, linear 512→classes.
#[derive(Debug)]
pub struct Vgg11Bn {
    features: nn::SequentialT,
    classifier: nn::Linear,
}

const VGG11: [Option<i64>; 13] = [
    Some(64),
    None,
    Some(128),
    None,
    Some(256),
    Some(256),
    None,
    Some(512),
    Some(512),
    None,
    Some(512),
    Some(512),
    None,
];

impl Vgg11Bn {
    pub fn new(p: &nn::Path, shape: Shape, act: Activation) -> Vgg11Bn {
        let f = p / "features";
        let mut features = nn::seq_t();
        let mut c_in = shape.channels as i64;
        for (i, layer) in VGG11.iter().enumerate() {
            match layer {
                Some(c_out) => {
                    features = features
                        .add(conv(&f / format!("conv{i}"), c_in, *c_out, 3, 1))
                        .add(nn::batch_norm2d(
                            &f / format!("bn{i}"),
                            *c_out,
                            Default::default(),
                        ))
                        .add(Act::new(&(&f / format!("act{i}")), act));
                    c_in = *c_out;
                }
                None => features = features.add_fn(max_pool),
            }
        }
        Vgg11Bn {
            features,
            classifier: linear(p / "classifier", 512, shape.classes as i64),
        }
    }
}

impl ModuleT for Vgg11Bn {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.features
            .forward_t(x, train)
            .adaptive_avg_pool2d([1, 1])
            .flatten(1, -1)
            .apply(&self.classifier)
    }
}

/// Builds `model` under `p` and returns it boxed as a trait object.
pub fn build(p: &nn::Path, model: Model, shape: Shape, act: Activation) -> Box<dyn ModuleT> {
    match model {
        Model::PaperCnn => Box::new(PaperCnn::new(p, shape, act)),
        Model::Vgg11Bn => Box::new(Vgg11Bn::new(p, shape, act)),
    }
}

/// Number of trainable scalars.
pub fn param_count(vs: &nn::VarStore) -> u64 {
    vs.trainable_variables()
        .iter()
        .map(|t| t.numel() as u64)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::Dataset;
    use tch::{Device, Kind};

    fn count(model: Model, dataset: Dataset, act: Activation) -> u64 {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = build(&vs.root(), model, dataset.info().shape, act);
        let s = dataset.info().shape;
        let x = Tensor::zeros(
            [2, s.channels as i64, s.height as i64, s.width as i64],
            (Kind::Float, Device::Cpu),
        );
        assert_eq!(net.forward_t(&x, false).size(), vec![2, s.classes as i64]);
        param_count(&vs)
    }

    #[test]
    fn paper_cnn_has_21840_parameters() {
        assert_eq!(
            count(Model::PaperCnn, Dataset::Mnist, Activation::Relu),
            21_840
        );
        // One learnable slope per activation site.
        assert_eq!(
            count(Model::PaperCnn, Dataset::Mnist, Activation::Prelu),
            21_843
        );
    }

    #[test]
    fn vgg11_bn_has_9231114_parameters() {
        assert_eq!(
            count(Model::Vgg11Bn, Dataset::Cifar10, Activation::Relu),
            9_231_114
        );
        assert_eq!(
            count(Model::Vgg11Bn, Dataset::Cifar10, Activation::Prelu),
            9_231_122
        );
    }

    #[test]
    fn every_activation_runs_forward_and_backward() {
        for &a in Activation::ALL {
            let vs = nn::VarStore::new(Device::Cpu);
            let net = build(
                &vs.root(),
                Model::PaperCnn,
                Dataset::Cifar100.info().shape,
                a,
            );
            let x = Tensor::randn([4, 3, 32, 32], (Kind::Float, Device::Cpu));
            let y = net.forward_t(&x, true);
            assert_eq!(y.size(), vec![4, 100], "{a}");
            y.sum(Kind::Float).backward();
            let finite = y.isfinite().all().int64_value(&[]);
            assert_eq!(finite, 1, "{a}");
        }
    }
}
