//! Adam and SGD with PyTorch's update rules, holding their state (moments, momentum buffers,
//! step count) here so it can be checkpointed and restored exactly; tch's wrapped C++
//! optimizers do not expose it. Adam's update is libtorch's fused kernel (what
//! `torch.optim.Adam(fused=True)` runs): one call for all parameters.

use tch::{nn, Kind, Tensor};

use crate::ops;

use common::Optimizer;

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPS: f64 = 1e-8;

pub struct Optim {
    kind: Optimizer,
    lr: f64,
    momentum: f64,
    weight_decay: f64,
    /// Trainable parameters, sorted by name (the checkpoint keys).
    params: Vec<(String, Tensor)>,
    /// Adam: first and second moments; SGD: the momentum buffer (second unused).
    state: Vec<(Tensor, Tensor)>,
    /// Adam: the step count per parameter as the fused kernel reads it (float32 scalars on
    /// the parameters' device, as in torch.optim).
    steps: Vec<Tensor>,
    step: i64,
}

impl Optim {
    pub fn new(
        vs: &nn::VarStore,
        kind: Optimizer,
        lr: f64,
        momentum: f64,
        weight_decay: f64,
    ) -> Optim {
        let mut params: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let state = params
            .iter()
            .map(|(_, p)| (p.zeros_like(), p.zeros_like()))
            .collect();
        let steps = params
            .iter()
            .map(|(_, p)| Tensor::zeros([], (Kind::Float, p.device())))
            .collect();
        Optim {
            kind,
            lr,
            momentum,
            weight_decay,
            params,
            state,
            steps,
            step: 0,
        }
    }

    /// Drops the gradients (`zero_grad(set_to_none=True)`, PyTorch's default).
    pub fn zero_grad(&mut self) -> Result<(), tch::TchError> {
        let params: Vec<&Tensor> = self.params.iter().map(|(_, p)| p).collect();
        ops::set_grads_to_none(&params)
    }

    /// One update from the current gradients (torch.optim.Adam / SGD semantics).
    pub fn step(&mut self) -> Result<(), tch::TchError> {
        self.step += 1;
        match self.kind {
            Optimizer::Adam => {
                let params: Vec<&Tensor> = self.params.iter().map(|(_, p)| p).collect();
                let a: Vec<&Tensor> = self.state.iter().map(|(a, _)| a).collect();
                let b: Vec<&Tensor> = self.state.iter().map(|(_, b)| b).collect();
                let steps: Vec<&Tensor> = self.steps.iter().collect();
                ops::fused_adam(
                    &params,
                    &a,
                    &b,
                    &steps,
                    self.lr,
                    (BETA1, BETA2),
                    self.weight_decay,
                    EPS,
                )
            }
            Optimizer::Sgd => {
                self.sgd_step();
                Ok(())
            }
        }
    }

    fn sgd_step(&mut self) {
        tch::no_grad(|| {
            for ((_, p), (a, _)) in self.params.iter_mut().zip(&mut self.state) {
                let mut g = p.grad();
                if !g.defined() {
                    continue;
                }
                if self.weight_decay != 0.0 {
                    g = &g + &*p * self.weight_decay;
                }
                let update = if self.momentum != 0.0 {
                    if self.step == 1 {
                        a.copy_(&g);
                    } else {
                        let _ = a.g_mul_scalar_(self.momentum).g_add_(&g);
                    }
                    a.shallow_clone()
                } else {
                    g
                };
                let _ = p.g_add_(&(update * -self.lr));
            }
        });
    }

    /// The state to checkpoint: `(name, tensor)` pairs, plus the step count.
    pub fn state(&self) -> (Vec<(String, Tensor)>, i64) {
        let mut out = Vec::with_capacity(2 * self.params.len());
        for ((name, _), (a, b)) in self.params.iter().zip(&self.state) {
            out.push((format!("optim.a.{name}"), a.shallow_clone()));
            out.push((format!("optim.b.{name}"), b.shallow_clone()));
        }
        for ((name, _), s) in self.params.iter().zip(&self.steps) {
            out.push((format!("optim.step.{name}"), s.shallow_clone()));
        }
        (out, self.step)
    }

    /// Restores what [`Optim::state`] returned; missing entries are an error.
    /// Whether `saved` holds this optimizer's state, each tensor with its shape and dtype (the
    /// step counts may be absent: older checkpoints carry only the total).
    pub fn check(&self, saved: &std::collections::HashMap<String, Tensor>) -> Result<(), String> {
        for ((name, _), (a, b)) in self.params.iter().zip(&self.state) {
            for (key, dst) in [
                (format!("optim.a.{name}"), a),
                (format!("optim.b.{name}"), b),
            ] {
                fits(saved, &key, dst).map_err(|e| format!("{e:#}"))?;
            }
        }
        for ((name, _), s) in self.params.iter().zip(&self.steps) {
            let key = format!("optim.step.{name}");
            if saved.contains_key(&key) {
                fits(saved, &key, s).map_err(|e| format!("{e:#}"))?;
            }
        }
        Ok(())
    }

    pub fn restore(
        &mut self,
        saved: &std::collections::HashMap<String, Tensor>,
        step: i64,
    ) -> Result<(), String> {
        tch::no_grad(|| {
            for ((name, _), (a, b)) in self.params.iter().zip(&mut self.state) {
                for (key, dst) in [
                    (format!("optim.a.{name}"), a),
                    (format!("optim.b.{name}"), b),
                ] {
                    let src = saved
                        .get(&key)
                        .ok_or_else(|| format!("checkpoint lacks optimizer state `{key}`"))?;
                    dst.f_copy_(src).map_err(|e| e.to_string())?;
                }
            }
            for ((name, _), s) in self.params.iter().zip(&mut self.steps) {
                // Checkpoints from before per-parameter step counts carry only the total.
                match saved.get(&format!("optim.step.{name}")) {
                    Some(src) => s.f_copy_(src),
                    None => s.f_fill_(step as f64).map(|_| ()),
                }
                .map_err(|e| e.to_string())?;
            }
            Ok::<(), String>(())
        })?;
        self.step = step;
        Ok(())
    }
}

/// Whether the checkpoint's `name` can be copied into `into`: present, same shape and dtype
/// (a copy would otherwise broadcast or convert it silently).
pub fn fits(
    saved: &std::collections::HashMap<String, Tensor>,
    name: &str,
    into: &Tensor,
) -> anyhow::Result<()> {
    let src = saved
        .get(name)
        .ok_or_else(|| anyhow::anyhow!("it has no `{name}`"))?;
    anyhow::ensure!(
        src.size() == into.size() && src.kind() == into.kind(),
        "its `{name}` is {:?} {:?} where the job's model has {:?} {:?}",
        src.kind(),
        src.size(),
        into.kind(),
        into.size()
    );
    Ok(())
}
