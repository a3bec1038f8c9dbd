//! Which devices a run places its stages on, found without libtorch: the control plane never
//! loads it. A GPU is counted from the NVIDIA driver (`/proc/driver/nvidia/gpus`) or from
//! `CUDA_VISIBLE_DEVICES` when the user narrowed it; each worker is then given one GPU as its
//! `CUDA_VISIBLE_DEVICES`, so libtorch in that worker sees exactly that one.
pub use crate::vocab::device::FAKE_GPUS;
use crate::vocab::device::{parse_device, DeviceChoice, Slot};
use anyhow::{bail, Result};

/// The GPUs this process may use, each as the identifier a worker's `CUDA_VISIBLE_DEVICES`
/// takes, indexed as libtorch numbers them.
pub fn gpus() -> Vec<String> {
    if let Some(n) = std::env::var(FAKE_GPUS)
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        return (0..n).map(|i| i.to_string()).collect();
    }
    if let Ok(v) = std::env::var("CUDA_VISIBLE_DEVICES") {
        // CUDA stops at the first invalid entry; "" or "-1" hides every GPU.
        return v
            .split(',')
            .map(str::trim)
            .take_while(|s| !s.is_empty() && !s.starts_with('-'))
            .map(str::to_string)
            .collect();
    }
    let n = std::fs::read_dir("/proc/driver/nvidia/gpus")
        .map(|d| d.count())
        .unwrap_or(0);
    (0..n).map(|i| i.to_string()).collect()
}

/// The slots device stages run on for `--device`/`device:` value `choice` (one or more device
/// names separated by commas, e.g. `cuda:0,cuda:1`), given the machine's `gpus`.
pub fn resolve(choice: &str, gpus: &[String]) -> Result<Vec<Slot>> {
    let n = gpus.len();
    let mut out: Vec<Slot> = Vec::new();
    for name in choice.split(',').map(str::trim) {
        let c = parse_device(name).map_err(|e| {
            anyhow::anyhow!("{e}; use auto, cpu, cuda or cuda:N (several as cuda:0,cuda:1)")
        })?;
        let slots = match c {
            DeviceChoice::Cpu => vec![Slot::Cpu],
            DeviceChoice::Auto if n == 0 => vec![Slot::Cpu],
            DeviceChoice::Auto | DeviceChoice::Cuda(None) => {
                if n == 0 {
                    bail!("device `cuda` was requested but this machine shows no GPU (no NVIDIA driver, or CUDA_VISIBLE_DEVICES hides them); use `device: auto` or `cpu`");
                }
                (0..n).map(Slot::Cuda).collect()
            }
            DeviceChoice::Cuda(Some(i)) => {
                if i >= n {
                    bail!("device cuda:{i} was requested but this machine shows {n} GPU(s)");
                }
                vec![Slot::Cuda(i)]
            }
        };
        for s in slots {
            if !out.contains(&s) {
                out.push(s);
            }
        }
    }
    if out.len() > 1 && out.contains(&Slot::Cpu) {
        bail!("`{choice}`: stages run either on the CPU or on GPUs; list GPUs only (cuda:0,cuda:1) or write cpu");
    }
    Ok(out)
}

/// How many CUDA devices libtorch sees, asked of the worker binary `exe` (`None`: it could not
/// say). `device: auto` asks before placing stages on the GPUs the driver shows, in case the
/// installed torch is a CPU build.
pub fn libtorch_gpus(exe: &std::path::Path) -> Option<usize> {
    let out = std::process::Command::new(exe).arg("probe").output().ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_resolve_to_slots() {
        let two = ["0".to_string(), "1".to_string()];
        assert_eq!(resolve("auto", &[]).unwrap(), [Slot::Cpu]);
        assert_eq!(
            resolve("auto", &two).unwrap(),
            [Slot::Cuda(0), Slot::Cuda(1)]
        );
        assert_eq!(resolve("cuda:1", &two).unwrap(), [Slot::Cuda(1)]);
        assert_eq!(
            resolve("cuda:1, cuda:0,cuda:1", &two).unwrap(),
            [Slot::Cuda(1), Slot::Cuda(0)]
        );
        assert_eq!(resolve("cpu", &two).unwrap(), [Slot::Cpu]);
        assert!(resolve("cuda", &[])
            .unwrap_err()
            .to_string()
            .contains("no GPU"));
        assert!(resolve("cuda:2", &two)
            .unwrap_err()
            .to_string()
            .contains("shows 2 GPU"));
        assert!(resolve("cpu,cuda:0", &two).is_err());
        assert!(resolve("gpu", &two)
            .unwrap_err()
            .to_string()
            .contains("unknown device `gpu`"));
    }
}
