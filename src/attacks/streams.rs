//! Where an attack's random numbers come from.
//!
//! An evaluation draws from one stream per point, keyed by the evaluation's seed, the point's index
//! in its split and the draw's tags ([`Streams::Points`]). A point's random start, restarts and
//! proposals are then the same whichever points share its batch, whatever the batch size, and
//! however an evaluation is split into shards or resumed. Training draws from libtorch's generator
//! seeded per batch ([`Streams::Batch`]): there the batch is the unit, and the draws are the ones
//! training always made, so trained weights keep their keys.
//!
//! An attack draws inside [`Streams::draw`]: the closure gets a [`Draw`] whose calls each return a
//! tensor with one row per point. With point streams, call `k` of a draw tagged `tags` gives point
//! `i` its row from a SplitMix64 stream seeded `derive(derive(derive(seed, tags), [k]), [id_i])`
//! (uniforms: the top 24 bits of each output; normals: `rand_distr`'s ziggurat on that stream),
//! generated on the CPU and moved to the points' device, so results do not depend on the device's
//! generator either, and a Python check reproduces the uniforms in a few lines.
#![cfg(feature = "torch")]
use crate::rng::derive;
use crate::rng::SplitMix64;
use crate::torch::with_seed;
use rand::Rng;
use rand_distr::StandardNormal;
use rayon::prelude::*;
use std::sync::Arc;
use tch::{Device, Kind, Tensor};

/// The random streams of a batch of points.
#[derive(Clone, Debug)]
pub enum Streams {
    /// libtorch's generator, seeded from this seed and each draw's tags, for the whole batch.
    Batch(u64),
    /// One stream per point: `ids[i]` is point i's index in its split.
    Points { seed: u64, ids: Arc<Vec<u64>> },
}

impl From<u64> for Streams {
    fn from(seed: u64) -> Self {
        Streams::Batch(seed)
    }
}

impl Streams {
    /// Point streams for the points `ids` (indices in their split) of an evaluation seeded `seed`.
    pub fn points(seed: u64, ids: Vec<u64>) -> Self {
        Streams::Points {
            seed,
            ids: Arc::new(ids),
        }
    }

    /// Point streams for the points `lo..lo + n`.
    pub fn range(seed: u64, lo: u64, n: usize) -> Self {
        Self::points(seed, (lo..lo + n as u64).collect())
    }

    /// The streams of a part of the computation (`parts`: a member, a restart, a phase): the same
    /// points, a seed derived from this one.
    pub fn sub(&self, parts: &[u64]) -> Self {
        match self {
            Streams::Batch(s) => Streams::Batch(derive(*s, parts)),
            Streams::Points { seed, ids } => Streams::Points {
                seed: derive(*seed, parts),
                ids: ids.clone(),
            },
        }
    }

    /// The streams of the rows `idx` (`[M]` int64, any device) of this batch. Batch streams are
    /// the batch's, whichever rows draw from them.
    pub fn select(&self, idx: &Tensor) -> Self {
        match self {
            Streams::Batch(s) => Streams::Batch(*s),
            Streams::Points { seed, ids } => {
                let rows = Vec::<i64>::try_from(idx.to_device(Device::Cpu).to_kind(Kind::Int64))
                    .expect("row indices are a 1-d int64 tensor");
                Streams::Points {
                    seed: *seed,
                    ids: Arc::new(rows.iter().map(|&r| ids[r as usize]).collect()),
                }
            }
        }
    }

    /// Runs `f`, whose draws are tagged `tags` (a draw site, a restart, a step). Only draws belong
    /// in `f`, not model calls: with batch streams it holds libtorch's generator lock.
    pub fn draw<T>(&self, tags: &[u64], f: impl FnOnce(&mut Draw) -> T) -> T {
        match self {
            Streams::Batch(s) => with_seed(derive(*s, tags), || f(&mut Draw::Batch)),
            Streams::Points { seed, ids } => f(&mut Draw::Points {
                seed: derive(*seed, tags),
                ids,
                call: 0,
            }),
        }
    }
}

/// The draws of one [`Streams::draw`]: every call returns a tensor with one row per point.
pub enum Draw<'a> {
    /// libtorch's generator, already seeded.
    Batch,
    /// Per-point generators; `call` numbers the calls, so two calls in one draw differ.
    Points {
        seed: u64,
        ids: &'a [u64],
        call: u64,
    },
}

impl Draw<'_> {
    /// U[0, 1) shaped like `x` (`rand_like`).
    pub fn uniform_like(&mut self, x: &Tensor) -> Tensor {
        match self {
            Draw::Batch => Tensor::rand_like(x),
            _ => self.fill(&x.size()[1..], x, SplitMix64::next_f32),
        }
    }

    /// N(0, 1) shaped like `x` (`randn_like`).
    pub fn normal_like(&mut self, x: &Tensor) -> Tensor {
        match self {
            Draw::Batch => Tensor::randn_like(x),
            _ => self.fill(&x.size()[1..], x, |g| g.sample::<f32, _>(StandardNormal)),
        }
    }

    /// U[0, 1) of shape `[N, rest…]` with `x`'s kind and device (`N` = `x`'s rows).
    pub fn uniform(&mut self, rest: &[i64], x: &Tensor) -> Tensor {
        match self {
            Draw::Batch => {
                let shape: Vec<i64> = std::iter::once(x.size()[0])
                    .chain(rest.iter().copied())
                    .collect();
                Tensor::rand(shape.as_slice(), (x.kind(), x.device()))
            }
            _ => self.fill(rest, x, SplitMix64::next_f32),
        }
    }

    /// One row of shape `rest` per point, each value `value` of that point's stream, as `x`'s kind
    /// and device.
    fn fill(
        &mut self,
        rest: &[i64],
        x: &Tensor,
        value: impl Fn(&mut SplitMix64) -> f32 + Sync,
    ) -> Tensor {
        let Draw::Points { seed, ids, call } = self else {
            unreachable!("batch draws are libtorch's")
        };
        let n = x.size()[0];
        assert_eq!(
            n as usize,
            ids.len(),
            "a point-stream draw needs one row per point"
        );
        let seed = derive(*seed, &[*call]);
        *call += 1;
        let per = rest.iter().product::<i64>().max(0) as usize;
        let mut out = vec![0f32; per * ids.len()];
        let row = |(i, chunk): (usize, &mut [f32])| {
            let mut g = SplitMix64(derive(seed, &[ids[i]]));
            for v in chunk {
                *v = value(&mut g);
            }
        };
        if per > 0 {
            if out.len() >= PARALLEL_VALUES {
                out.par_chunks_mut(per).enumerate().for_each(row);
            } else {
                out.chunks_mut(per).enumerate().for_each(row);
            }
        }
        let shape: Vec<i64> = std::iter::once(n).chain(rest.iter().copied()).collect();
        Tensor::from_slice(&out)
            .view(shape.as_slice())
            .to_device(x.device())
            .to_kind(x.kind())
    }
}

/// From this many values a point-stream draw is generated on all cores.
const PARALLEL_VALUES: usize = 1 << 16;

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu(shape: &[i64]) -> Tensor {
        Tensor::zeros(shape, (Kind::Float, Device::Cpu))
    }

    #[test]
    fn a_points_draw_does_not_depend_on_its_batch() {
        let all = Streams::range(7, 0, 6);
        let a = all.draw(&[1, 2], |d| {
            (d.uniform_like(&cpu(&[6, 3])), d.normal_like(&cpu(&[6, 3])))
        });
        // Points 4 and 1 alone, in another order, see the same rows.
        let some = all.select(&Tensor::from_slice(&[4i64, 1]));
        let b = some.draw(&[1, 2], |d| {
            (d.uniform_like(&cpu(&[2, 3])), d.normal_like(&cpu(&[2, 3])))
        });
        let rows = Tensor::from_slice(&[4i64, 1]);
        assert!(a.0.index_select(0, &rows).equal(&b.0));
        assert!(a.1.index_select(0, &rows).equal(&b.1));
        // The second call of a draw, other tags and other seeds differ.
        assert!(!a.0.equal(&a.1));
        let c = all.draw(&[1, 3], |d| d.uniform_like(&cpu(&[6, 3])));
        assert!(!a.0.equal(&c));
        let d = all
            .sub(&[0])
            .draw(&[1, 2], |d| d.uniform_like(&cpu(&[6, 3])));
        assert!(!a.0.equal(&d));
        // Point 4's first row is its SplitMix64 stream under the seed the module doc gives.
        let mut g = SplitMix64(derive(derive(derive(7, &[1, 2]), &[0]), &[4]));
        let want: Vec<f32> = (0..3).map(|_| g.next_f32()).collect();
        assert!(b.0.get(0).equal(&Tensor::from_slice(&want)));
        // Uniform in [0, 1), normal about 0 with unit spread.
        let big = Streams::range(1, 0, 100).draw(&[0], |d| {
            (
                d.uniform(&[1000], &cpu(&[100, 1])),
                d.normal_like(&cpu(&[100, 1000])),
            )
        });
        assert_eq!(big.0.size(), vec![100, 1000]);
        let (lo, hi) = (
            f64::try_from(big.0.min()).unwrap(),
            f64::try_from(big.0.max()).unwrap(),
        );
        assert!(
            (0.0..0.001).contains(&lo) && hi < 1.0 && hi > 0.999,
            "{lo} {hi}"
        );
        let mean = f64::try_from(big.1.mean(Kind::Double)).unwrap();
        let sd = f64::try_from(big.1.std(true)).unwrap();
        assert!(mean.abs() < 0.01 && (sd - 1.0).abs() < 0.01, "{mean} {sd}");
    }

    #[test]
    fn batch_streams_are_libtorch_draws_seeded_per_tag() {
        let x = cpu(&[4, 5]);
        let ours = Streams::Batch(9).draw(&[0], |d| d.uniform_like(&x));
        let theirs = with_seed(derive(9, &[0]), || Tensor::rand_like(&x));
        assert!(ours.equal(&theirs));
        let ours = Streams::Batch(9)
            .sub(&[3])
            .draw(&[1], |d| d.normal_like(&x));
        let theirs = with_seed(derive(derive(9, &[3]), &[1]), || Tensor::randn_like(&x));
        assert!(ours.equal(&theirs));
    }
}
