//! Compute-device selection: `auto` takes every CUDA device when libtorch sees one, else the CPU.
use tch::Device;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceChoice {
    Auto,
    Cpu,
    /// `cuda` (all devices) or `cuda:N`.
    Cuda(Option<usize>),
}

pub fn parse_device(s: &str) -> Result<DeviceChoice, String> {
    match s {
        "auto" => Ok(DeviceChoice::Auto),
        "cpu" => Ok(DeviceChoice::Cpu),
        "cuda" => Ok(DeviceChoice::Cuda(None)),
        _ => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(i)) => Ok(DeviceChoice::Cuda(Some(i))),
            _ => Err(format!("unknown device `{s}`")),
        },
    }
}

/// The devices stages may use; each CUDA device runs one device stage at a time.
pub fn resolve(choice: DeviceChoice) -> anyhow::Result<Vec<Device>> {
    let n = tch::Cuda::device_count() as usize;
    Ok(match choice {
        DeviceChoice::Cpu => vec![Device::Cpu],
        DeviceChoice::Auto if n == 0 => vec![Device::Cpu],
        DeviceChoice::Auto | DeviceChoice::Cuda(None) => {
            anyhow::ensure!(n > 0, "device `cuda` was requested but libtorch sees no CUDA device; use `device: auto` or `cpu`");
            (0..n).map(Device::Cuda).collect()
        }
        DeviceChoice::Cuda(Some(i)) => {
            anyhow::ensure!(
                i < n,
                "device cuda:{i} was requested but libtorch sees {n} CUDA device(s)"
            );
            vec![Device::Cuda(i)]
        }
    })
}

pub fn describe(d: Device) -> String {
    match d {
        Device::Cpu => "cpu".into(),
        Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}").to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_device_names() {
        assert_eq!(parse_device("cuda:1"), Ok(DeviceChoice::Cuda(Some(1))));
        assert_eq!(parse_device("auto"), Ok(DeviceChoice::Auto));
        assert!(parse_device("gpu").is_err());
        assert!(parse_device("cuda:x").is_err());
    }
}
