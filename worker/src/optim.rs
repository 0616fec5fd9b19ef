//! Adam and SGD with PyTorch's update rules, written out so their state (moments, momentum
//! buffers, step count) can be checkpointed and restored exactly; tch's wrapped C++
//! optimizers do not expose it.

use tch::{nn, Tensor};

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
        Optim {
            kind,
            lr,
            momentum,
            weight_decay,
            params,
            state,
            step: 0,
        }
    }

    pub fn zero_grad(&mut self) {
        for (_, p) in &mut self.params {
            p.zero_grad();
        }
    }

    /// One update from the current gradients (torch.optim.Adam / SGD semantics).
    pub fn step(&mut self) {
        self.step += 1;
        let t = self.step as f64;
        tch::no_grad(|| {
            for ((_, p), (a, b)) in self.params.iter_mut().zip(&mut self.state) {
                let mut g = p.grad();
                if !g.defined() {
                    continue;
                }
                if self.weight_decay != 0.0 {
                    g = &g + &*p * self.weight_decay;
                }
                match self.kind {
                    Optimizer::Adam => {
                        // In place where tch allows, to keep temporaries (memory traffic on
                        // VGG's 9M parameters) to two per step: g², and √v.
                        let _ = a.lerp_(&g, 1.0 - BETA1);
                        let mut g2 = &g * &g;
                        let _ = g2.g_mul_scalar_(1.0 - BETA2);
                        let _ = b.g_mul_scalar_(BETA2).g_add_(&g2);
                        let bias1 = 1.0 - BETA1.powf(t);
                        let bias2 = 1.0 - BETA2.powf(t);
                        let step_size = self.lr / bias1;
                        // p -= step · a / (√v / √bias2 + eps), with the step folded into the
                        // denominator because tch's addcdiv_ has no scale argument.
                        let mut denom = b.sqrt();
                        let _ = denom
                            .g_div_scalar_(bias2.sqrt())
                            .g_add_scalar_(EPS)
                            .g_div_scalar_(-step_size);
                        let _ = p.addcdiv_(a, &denom);
                    }
                    Optimizer::Sgd => {
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
                }
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
        (out, self.step)
    }

    /// Restores what [`Optim::state`] returned; missing entries are an error.
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
            Ok::<(), String>(())
        })?;
        self.step = step;
        Ok(())
    }
}
