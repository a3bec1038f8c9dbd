//! Norms of a network's linear maps (docs/theory.md, "Weight norms").
//!
//! A linear map is a weight with 2 dimensions (a linear layer, `[out, in]`) or 4 (a convolution,
//! `[out, in/groups, kh, kw]`), never a bias, a normalisation parameter or an additive embedding
//! (`pos_embed`, `positional_emb`, `cls_token`, relative position bias tables). Each is read as the matrix W with one
//! row per output unit: `[out, in·kh·kw]` for a convolution. On that matrix:
//! - `fro` = ‖W‖_F, `l1` = Σ|wᵢⱼ|;
//! - `spectral` = σ_max(W), by the Lanczos iteration on WᵀW (or WWᵀ);
//! - `l21` = Σⱼ ‖W_{j,:}‖₂ (Bartlett et al.'s ‖Wᵀ‖_{2,1}: the ℓ2 norm of each unit's incoming
//!   weights, summed over units);
//! - `l1inf` = maxⱼ ‖W_{j,:}‖₁ (the ℓ1 norm of a unit's incoming weights, maximised over units:
//!   ‖W‖_{1,∞} of Neyshabur et al. and Golowich et al.); for a convolution this is also exactly its
//!   ℓ∞→ℓ∞ operator norm, whatever its stride and padding.
//!
//! A convolution is also measured as an operator: `spectral_op` is the spectral norm of the stride-1
//! convolution on N×N inputs with periodic boundaries (N = `conv_grid`), which equals
//! max over the N² frequencies ω of σ_max(K̂(ω)), K̂ the 2-D DFT of the kernel (Sedghi, Gupta & Long
//! 2019). It is computed by the Lanczos iteration (a Krylov refinement of power iteration) on the
//! operator in that Fourier basis: one small complex block per frequency. As N grows it tends to the norm of the convolution on the whole
//! plane, which bounds the norm with zero padding on any input size and with any stride from above.
use serde::{Deserialize, Serialize};

/// Settings of the Lanczos iteration behind every spectral norm.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Lanczos {
    /// Most operator products (Krylov dimension).
    pub max_iters: u32,
    /// Stops when the largest estimate changes by less than this, relatively, over 4 steps.
    pub tol: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LayerNorms {
    pub name: String,
    pub layer_type: String,
    /// `[out, in]` of the matrix view.
    pub shape: [i64; 2],
    /// Kernel size (1 for linear layers).
    pub kernel: [i64; 2],
    pub fro: f64,
    pub spectral: f64,
    pub l1: f64,
    pub l21: f64,
    pub l1inf: f64,
    /// Operator spectral norm (convolutions with a kernel larger than 1×1; otherwise `spectral`).
    pub spectral_op: f64,
}

/// Whether a named weight is a linear map (see the module docs).
pub fn is_linear_map(name: &str, dims: usize) -> bool {
    let leaf = name.rsplit('.').next().unwrap_or(name);
    leaf == "weight"
        && (dims == 2 || dims == 4)
        && super::sparsity::layer_type(name, dims).is_some()
}

/// The tensor half (libtorch, the worker build): the norms computed on tensors.
#[cfg(feature = "torch")]
mod net {
    use super::*;
    use tch::{Device, Kind, Tensor};

    impl Default for Lanczos {
        fn default() -> Self {
            Self {
                max_iters: 100,
                tol: 1e-6,
            }
        }
    }

    fn scalar(t: &Tensor) -> f64 {
        f64::try_from(t).unwrap_or(f64::NAN)
    }

    /// The largest eigenvalue of each of a batch of Hermitian positive semi-definite operators, by the
    /// Lanczos iteration: `apply` maps `[batch, n, 1]` vectors to `[batch, n, 1]`; `v0` is the start.
    /// The Ritz value of the k-step Krylov space is never below the power-iteration estimate after
    /// the same k products, and converges much faster when the top eigenvalues are close. No
    /// reorthogonalisation: lost orthogonality only duplicates converged Ritz values.
    pub fn lanczos_top(apply: impl Fn(&Tensor) -> Tensor, v0: Tensor, it: Lanczos) -> Tensor {
        let b = v0.size()[0];
        let real = |t: &Tensor| {
            if t.is_complex() {
                t.real()
            } else {
                t.shallow_clone()
            }
        };
        let norm = |t: &Tensor| {
            real(&(t.conj() * t))
                .sum_dim_intlist([1i64, 2].as_slice(), true, Kind::Double)
                .sqrt()
        };
        let mut v = &v0 / norm(&v0).clamp_min(1e-30).to_kind(v0.kind());
        let mut v_prev = v.zeros_like();
        let mut beta_prev = Tensor::zeros([b, 1, 1], (Kind::Double, v.device()));
        let (mut alphas, mut betas): (Vec<Tensor>, Vec<Tensor>) = (Vec::new(), Vec::new());
        let mut top = Tensor::zeros([b], (Kind::Double, v.device()));
        let steps = it.max_iters.max(1) as usize;
        for j in 0..steps {
            let w = apply(&v);
            let alpha =
                real(&(v.conj() * &w)).sum_dim_intlist([1i64, 2].as_slice(), true, Kind::Double);
            let w = w - &v * alpha.to_kind(v.kind()) - &v_prev * beta_prev.to_kind(v.kind());
            let beta = norm(&w);
            alphas.push(alpha.view([b]));
            let last = j + 1 == steps;
            if last || (j + 1) % 4 == 0 {
                // Ritz values: eigenvalues of the tridiagonal T_{j+1}.
                let k = alphas.len() as i64;
                let mut t = Tensor::stack(&alphas, 1).diag_embed(0, -2, -1);
                if !betas.is_empty() {
                    let off = Tensor::stack(&betas, 1);
                    t = t + off.diag_embed(1, -2, -1) + off.diag_embed(-1, -2, -1);
                }
                let ritz = t.view([b, k, k]).linalg_eigvalsh("L").select(1, k - 1);
                // The largest estimate (what the norm is); Ritz values only grow with k.
                let scale = scalar(&ritz.max());
                let change = scale - scalar(&top.max());
                top = ritz;
                if last
                    || change <= it.tol * scale
                    || scalar(&beta.max()) <= 1e-12 * scale.max(1e-300)
                {
                    break;
                }
            }
            betas.push(beta.view([b]));
            v_prev = v;
            v = w / beta.clamp_min(1e-30).to_kind(v_prev.kind());
            beta_prev = beta;
        }
        top.clamp_min(0.0)
    }

    /// A deterministic start vector `[batch, n, 1]` that is not orthogonal to the top eigenvector in
    /// practice.
    fn start(batch: i64, n: i64, kind: Kind, device: Device) -> Tensor {
        (Tensor::ones([1, n, 1], (Kind::Double, device))
            + Tensor::arange(n, (Kind::Double, device))
                .view([1, n, 1])
                .sin()
                * 0.5)
            .expand([batch, n, 1], false)
            .contiguous()
            .to_kind(kind)
    }

    /// σ_max of a real matrix `[m, n]`: the largest eigenvalue of WᵀW (or WWᵀ, the smaller), by Lanczos.
    pub fn spectral_norm(w: &Tensor, it: Lanczos) -> f64 {
        let w = w.to_kind(Kind::Double);
        let (m, n) = (w.size()[0], w.size()[1]);
        let w = if m < n { w.tr() } else { w };
        let k = m.min(n);
        // The Gram matrix of the smaller side when it is cheaper than iterating on W.
        let top = if (k as f64) < 2.0 * it.max_iters as f64 && k <= 2048 {
            let g = w.tr().matmul(&w).unsqueeze(0);
            lanczos_top(|v| g.matmul(v), start(1, k, Kind::Double, w.device()), it)
        } else {
            let w = w.unsqueeze(0);
            let wt = w.transpose(1, 2);
            lanczos_top(
                |v| wt.matmul(&w.matmul(v)),
                start(1, k, Kind::Double, w.device()),
                it,
            )
        };
        scalar(&top.max()).sqrt()
    }

    /// Spectral norm of the stride-1 periodic convolution with `kernel` `[out, in, kh, kw]` on
    /// `grid`×`grid` inputs: max over frequencies of σ_max(K̂(ω)), by Lanczos per frequency.
    pub fn conv_operator_norm(kernel: &Tensor, grid: i64, it: Lanczos) -> f64 {
        let s = kernel.size();
        let (o, i, kh, kw) = (s[0], s[1], s[2], s[3]);
        let grid = grid.max(kh).max(kw);
        let nf = grid * (grid / 2 + 1);
        // Large layers work in single precision (the products are memory-bound).
        let (real, kind) = if nf * o * i > (1 << 22) {
            (Kind::Float, Kind::ComplexFloat)
        } else {
            (Kind::Double, Kind::ComplexDouble)
        };
        let k = kernel.to_kind(real);
        // K̂(ω) = Σ_ab K[:, :, a, b] e^{-iω·(a, b)}; a real kernel's spectrum is conjugate-symmetric,
        // so half the frequencies (rfft2) carry every singular value.
        let padded = k.constant_pad_nd([0, grid - kw, 0, grid - kh]);
        let f = padded.fft_rfft2(None::<&[i64]>, [-2i64, -1].as_slice(), "backward");
        debug_assert_eq!(nf, f.size()[2] * f.size()[3]);
        // [freq, out, in], on the smaller side's Gram operator.
        let blocks = f.permute([2, 3, 0, 1]).reshape([nf, o, i]).to_kind(kind);
        let blocks = if o < i {
            blocks.conj().transpose(1, 2).contiguous()
        } else {
            blocks
        };
        let bh = blocks.conj().transpose(1, 2).contiguous();
        let n = blocks.size()[2];
        let top = lanczos_top(
            |v| bh.matmul(&blocks.matmul(v)),
            start(nf, n, kind, k.device()),
            it,
        );
        scalar(&top.max()).sqrt()
    }

    /// All norms of one linear map.
    pub fn layer_norms(
        name: &str,
        layer_type: &str,
        w: &Tensor,
        conv_grid: i64,
        it: Lanczos,
    ) -> LayerNorms {
        let w = w.to_kind(Kind::Double).to_device(Device::Cpu);
        let size = w.size();
        let kernel = if size.len() == 4 {
            [size[2], size[3]]
        } else {
            [1, 1]
        };
        let m = w.reshape([size[0], -1]);
        let abs = m.abs();
        let rows_l2 = m
            .square()
            .sum_dim_intlist([1i64].as_slice(), false, Kind::Double)
            .sqrt();
        let rows_l1 = abs.sum_dim_intlist([1i64].as_slice(), false, Kind::Double);
        let spectral = spectral_norm(&m, it);
        let spectral_op = if kernel != [1, 1] {
            conv_operator_norm(&w, conv_grid, it)
        } else {
            spectral
        };
        LayerNorms {
            name: name.into(),
            layer_type: layer_type.into(),
            shape: [m.size()[0], m.size()[1]],
            kernel,
            fro: scalar(&m.square().sum(Kind::Double)).sqrt(),
            spectral,
            l1: scalar(&abs.sum(Kind::Double)),
            l21: scalar(&rows_l2.sum(Kind::Double)),
            l1inf: scalar(&rows_l1.max()),
            spectral_op,
        }
    }

    /// Norms of every linear map in `named` (name, tensor) pairs, in name order.
    pub fn analyse(named: &[(String, Tensor)], conv_grid: i64, it: Lanczos) -> Vec<LayerNorms> {
        analyse_as(
            named,
            &|n, dims| {
                is_linear_map(n, dims)
                    .then(|| crate::analysis::sparsity::layer_type(n, dims))
                    .flatten()
            },
            conv_grid,
            it,
        )
    }

    /// Norms of the linear maps `map` picks out (their layer type; `None`: not a linear map).
    pub fn analyse_as(
        named: &[(String, Tensor)],
        map: &dyn Fn(&str, usize) -> Option<&'static str>,
        conv_grid: i64,
        it: Lanczos,
    ) -> Vec<LayerNorms> {
        named
            .iter()
            .filter_map(|(n, t)| map(n, t.dim()).map(|lt| layer_norms(n, lt, t, conv_grid, it)))
            .collect()
    }

    /// Which of `net`'s tensors are linear maps, and their layer type: an outside module's by the
    /// class of the module holding them (any 2-D or 4-D weight of a counted layer, such as
    /// `MultiheadAttention`'s `in_proj_weight`), a native network's by name.
    pub fn linear_maps(
        net: &crate::models::Network,
    ) -> impl Fn(&str, usize) -> Option<&'static str> + '_ {
        move |n, dims| match net.script() {
            Some(s) => (n.ends_with("weight") && (dims == 2 || dims == 4))
                .then(|| s.layer_type(n))
                .flatten(),
            None => is_linear_map(n, dims)
                .then(|| crate::analysis::sparsity::layer_type(n, dims))
                .flatten(),
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn m(rows: &[&[f64]]) -> Tensor {
            let c = rows[0].len() as i64;
            let flat: Vec<f64> = rows.iter().flat_map(|r| r.iter().copied()).collect();
            Tensor::from_slice(&flat).view([rows.len() as i64, c])
        }

        /// σ_max from the eigenvalues of WᵀW (LAPACK), independent of power iteration.
        fn top_singular_value(w: &Tensor) -> f64 {
            scalar(&w.tr().matmul(w).linalg_eigvalsh("L").max()).sqrt()
        }

        #[test]
        fn hand_computed_matrix_norms() {
            // W = [[3, 4], [0, -2]]: ‖W‖_F = √29; rows ℓ2 = 5, 2 → l21 = 7; rows ℓ1 = 7, 2 → l1inf = 7;
            // l1 = 9; WᵀW = [[9, 12], [12, 20]], λ = (29 ± √(29² − 4·36))/2 → σ_max = √((29+√697)/2).
            let w = m(&[&[3.0, 4.0], &[0.0, -2.0]]);
            let n = layer_norms("fc.weight", "linear", &w, 8, Lanczos::default());
            assert!((n.fro - 29f64.sqrt()).abs() < 1e-12);
            assert!((n.l21 - 7.0).abs() < 1e-12);
            assert!((n.l1inf - 7.0).abs() < 1e-12);
            assert!((n.l1 - 9.0).abs() < 1e-12);
            let sigma = ((29.0 + 697f64.sqrt()) / 2.0).sqrt();
            assert!(
                (n.spectral - sigma).abs() < 1e-9,
                "{} vs {sigma}",
                n.spectral
            );
            assert_eq!(n.spectral_op, n.spectral);
            assert_eq!(n.shape, [2, 2]);
        }

        #[test]
        fn lanczos_matches_lapack_on_random_matrices() {
            tch::manual_seed(3);
            for (r, c) in [(7, 13), (40, 9), (64, 64)] {
                let w = Tensor::randn([r, c], (Kind::Double, Device::Cpu));
                let exact = top_singular_value(&w);
                let est = spectral_norm(&w, Lanczos::default());
                assert!(
                    (est - exact).abs() < 1e-6 * exact,
                    "{r}x{c}: {est} vs {exact}"
                );
            }
        }

        #[test]
        fn laplacian_operator_norm_is_eight() {
            // K̂(ω) = −4 + 2cos ω₁ + 2cos ω₂: largest |·| is 8 at ω = (π, π), on any even grid.
            let k = Tensor::from_slice(&[0.0, 1.0, 0.0, 1.0, -4.0, 1.0, 0.0, 1.0, 0.0])
                .view([1, 1, 3, 3]);
            let s = conv_operator_norm(&k, 8, Lanczos::default());
            assert!((s - 8.0).abs() < 1e-9, "{s}");
            // The reshaped matrix [1, 9] has σ = ‖k‖₂ = √20: the two views differ.
            let n = layer_norms("conv.weight", "conv", &k, 8, Lanczos::default());
            assert!((n.spectral - 20f64.sqrt()).abs() < 1e-9);
            assert!((n.spectral_op - 8.0).abs() < 1e-9);
            // ℓ1 of the single output unit's incoming weights: 8.
            assert!((n.l1inf - 8.0).abs() < 1e-12);
        }

        /// The dense matrix of the periodic stride-1 convolution on g×g inputs, built by applying the
        /// convolution to every basis image.
        fn dense_periodic_conv(k: &Tensor, g: i64) -> Tensor {
            let s = k.size();
            let (i, kh, kw) = (s[1], s[2], s[3]);
            let n = i * g * g;
            let eye = Tensor::eye(n, (Kind::Double, Device::Cpu)).view([n, i, g, g]);
            // Periodic padding, then a valid cross-correlation (what conv2d computes).
            let (ph, pw) = (kh / 2, kw / 2);
            let x = eye.pad([pw, kw - 1 - pw, ph, kh - 1 - ph], "circular", None);
            let y = x.conv2d(k, None::<Tensor>, [1, 1], [0, 0], [1, 1], 1);
            y.view([n, -1]).tr()
        }

        #[test]
        fn operator_norm_matches_the_dense_periodic_convolution() {
            tch::manual_seed(5);
            for (o, i, kh, kw, g) in [(3, 2, 3, 3, 6), (4, 3, 3, 1, 5), (2, 2, 5, 5, 8)] {
                let k = Tensor::randn([o, i, kh, kw], (Kind::Double, Device::Cpu));
                let dense = dense_periodic_conv(&k, g);
                let exact = top_singular_value(&dense);
                let est = conv_operator_norm(&k, g, Lanczos::default());
                assert!(
                    (est - exact).abs() < 1e-6 * exact,
                    "{o}x{i}x{kh}x{kw} on {g}: {est} vs {exact}"
                );
            }
        }

        #[test]
        fn which_weights_are_linear_maps() {
            assert!(is_linear_map("layer1.0.conv1.weight", 4));
            assert!(is_linear_map("blocks.0.attn.qkv.weight", 2));
            assert!(is_linear_map("head.weight", 2));
            assert!(!is_linear_map("head.bias", 1));
            assert!(!is_linear_map("pos_embed", 3));
            assert!(!is_linear_map("cls_token", 3));
            assert!(!is_linear_map(
                "layers.0.blocks.0.attn.relative_position_bias_table",
                2
            ));
            assert!(!is_linear_map("blocks.0.norm1.weight", 1));
        }
    }
}

#[cfg(feature = "torch")]
pub use net::*;
