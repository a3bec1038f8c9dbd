//! Batch assembly on background threads: while the device runs one training step, the next
//! batches are gathered and augmented on the rayon pool, so the accelerator is not kept waiting on
//! the CPU. Batches are bit-identical for any thread count (per-image seeds, fixed order).
use crate::augment::{self, Augment, Image};
use rayon::prelude::*;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

/// A split's images and labels in host memory, shared with loader threads.
#[derive(Clone)]
pub struct HostData {
    pub images: Arc<Vec<u8>>,
    pub labels: Arc<Vec<i64>>,
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

impl HostData {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    fn image_len(&self) -> usize {
        self.c * self.h * self.w
    }
}

/// One assembled batch in host memory.
pub struct HostBatch {
    pub images: Vec<u8>,
    pub labels: Vec<i64>,
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

impl HostBatch {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// Gathers (and augments) the images at `indices`; image `k` of the batch uses the seed derived
/// from `(seed, first + k)`.
pub fn assemble(
    data: &HostData,
    indices: &[usize],
    steps: &[Augment],
    seed: u64,
    first: usize,
) -> HostBatch {
    let n = data.image_len();
    let mut images = vec![0u8; indices.len() * n];
    images
        .par_chunks_mut(n)
        .zip(indices.par_iter())
        .enumerate()
        .for_each(|(k, (dst, &i))| {
            dst.copy_from_slice(&data.images[i * n..(i + 1) * n]);
            if !steps.is_empty() {
                let mut img = Image {
                    data: dst,
                    c: data.c,
                    h: data.h,
                    w: data.w,
                };
                augment::apply_all(
                    steps,
                    &mut img,
                    crate::rng::derive(seed, &[(first + k) as u64]),
                );
            }
        });
    HostBatch {
        images,
        labels: indices.iter().map(|&i| data.labels[i]).collect(),
        c: data.c,
        h: data.h,
        w: data.w,
    }
}

/// The batches of one epoch, produced `prefetch` ahead by a background thread.
pub struct Loader {
    rx: Option<Receiver<HostBatch>>,
    worker: Option<JoinHandle<()>>,
}

impl Loader {
    /// Starts assembling the batches of `order` (chunks of `batch_size`).
    pub fn start(
        data: HostData,
        order: Vec<usize>,
        batch_size: usize,
        steps: Arc<Vec<Augment>>,
        seed: u64,
        prefetch: usize,
    ) -> Loader {
        let (tx, rx) = sync_channel(prefetch.max(1));
        let worker = std::thread::Builder::new()
            .name("robarch-loader".into())
            .spawn(move || {
                for (b, idx) in order.chunks(batch_size.max(1)).enumerate() {
                    let batch = assemble(&data, idx, &steps, seed, b * batch_size);
                    if tx.send(batch).is_err() {
                        return; // the consumer stopped early (error or cancellation)
                    }
                }
            })
            .expect("spawning the loader thread");
        Loader {
            rx: Some(rx),
            worker: Some(worker),
        }
    }
}

impl Iterator for Loader {
    type Item = HostBatch;
    fn next(&mut self) -> Option<HostBatch> {
        self.rx.as_ref()?.recv().ok()
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        // Closing the channel first makes a blocked producer return, then it can be joined.
        self.rx.take();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

/// The tensor half (libtorch, the worker build): host batches to and from tensors.
#[cfg(feature = "torch")]
mod net {
    use super::*;
    use anyhow::Result;
    use tch::{Device, Kind, Tensor};

    impl HostData {
        /// Copies uint8 NCHW images and int64 labels out of tensors.
        pub fn from_tensors(x: &Tensor, y: &Tensor) -> Result<HostData> {
            let s = x.size();
            anyhow::ensure!(
                s.len() == 4 && x.kind() == Kind::Uint8,
                "expected uint8 NCHW images, got {:?} {:?}",
                x.kind(),
                s
            );
            Ok(HostData {
                images: Arc::new(Vec::<u8>::try_from(
                    x.to_device(Device::Cpu).contiguous().view([-1]),
                )?),
                labels: Arc::new(Vec::<i64>::try_from(y.to_device(Device::Cpu).contiguous())?),
                c: s[1] as usize,
                h: s[2] as usize,
                w: s[3] as usize,
            })
        }
    }

    impl HostBatch {
        /// Images as float [0,1] on `device`, and labels.
        pub fn to_device(&self, device: Device) -> (Tensor, Tensor) {
            let n = self.len() as i64;
            let x = Tensor::from_slice(&self.images)
                .view([n, self.c as i64, self.h as i64, self.w as i64])
                .to_device(device)
                .to_kind(Kind::Float)
                / 255.0;
            (x, Tensor::from_slice(&self.labels).to_device(device))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::augment::autoaugment::Policy;

    fn data(n: usize) -> HostData {
        HostData {
            images: Arc::new((0..n * 3 * 8 * 8).map(|i| (i * 31 % 256) as u8).collect()),
            labels: Arc::new((0..n as i64).collect()),
            c: 3,
            h: 8,
            w: 8,
        }
    }

    #[test]
    fn loader_yields_all_batches_in_order_without_augmentation() {
        let d = data(10);
        let order: Vec<usize> = vec![3, 1, 4, 0, 5, 9, 2, 6, 8, 7];
        let batches: Vec<HostBatch> =
            Loader::start(d.clone(), order.clone(), 4, Arc::new(vec![]), 0, 2).collect();
        assert_eq!(
            batches.iter().map(|b| b.len()).collect::<Vec<_>>(),
            [4, 4, 2]
        );
        let labels: Vec<i64> = batches.iter().flat_map(|b| b.labels.clone()).collect();
        assert_eq!(labels, order.iter().map(|&i| i as i64).collect::<Vec<_>>());
        let n = 3 * 64;
        assert_eq!(&batches[0].images[n..2 * n], &d.images[n..2 * n]);
    }

    #[test]
    fn augmented_batches_depend_on_seed_and_position_only() {
        let d = data(6);
        let steps = Arc::new(vec![
            Augment::RandomCrop { padding: 2 },
            Augment::Hflip { p: 0.5 },
            Augment::Autoaugment {
                policy: Policy::Cifar10,
            },
        ]);
        let all = |bs: usize, seed: u64| -> Vec<u8> {
            Loader::start(d.clone(), (0..6).collect(), bs, steps.clone(), seed, 1)
                .flat_map(|b| b.images)
                .collect()
        };
        // Batch size (and so thread scheduling) does not change any image.
        assert_eq!(all(2, 5), all(4, 5));
        assert_ne!(all(2, 5), all(2, 6));
        assert_ne!(all(2, 5), d.images.to_vec());
        // A pool with one thread gives the same bytes as the default pool.
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let single = one.install(|| assemble(&d, &[0, 1, 2, 3, 4, 5], &steps, 5, 0).images);
        assert_eq!(single, all(6, 5));
    }

    #[test]
    fn dropping_a_loader_early_stops_its_thread() {
        let mut l = Loader::start(data(64), (0..64).collect(), 1, Arc::new(vec![]), 0, 1);
        assert!(l.next().is_some());
        drop(l); // must not hang
    }
}
