//! Device names as a spec and the command line write them (`auto`, `cpu`, `cuda`, `cuda:N`), and
//! the slot a stage runs on. Plain names: the control plane places stages without libtorch, and
//! each worker turns its slot into a libtorch device.
use serde::{Deserialize, Serialize};
use std::fmt;

/// A test hook: `ROBARCH_FAKE_GPUS=N` makes the machine show N GPUs, and the workers placed on
/// them compute on the CPU (placement tests on machines without one).
pub const FAKE_GPUS: &str = "ROBARCH_FAKE_GPUS";

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

/// Where a stage runs: the CPU, or one GPU (by its index among the GPUs the machine shows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum Slot {
    Cpu,
    Cuda(usize),
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Slot::Cpu => f.write_str("cpu"),
            Slot::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

impl From<Slot> for String {
    fn from(s: Slot) -> String {
        s.to_string()
    }
}

impl TryFrom<String> for Slot {
    type Error = String;
    fn try_from(s: String) -> Result<Slot, String> {
        match parse_device(&s)? {
            DeviceChoice::Cpu => Ok(Slot::Cpu),
            DeviceChoice::Cuda(Some(i)) => Ok(Slot::Cuda(i)),
            _ => Err(format!("`{s}` is no single device; write cpu or cuda:N")),
        }
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
        assert_eq!(Slot::try_from("cuda:2".to_string()), Ok(Slot::Cuda(2)));
        assert!(Slot::try_from("cuda".to_string()).is_err());
        assert_eq!(serde_json::to_string(&Slot::Cuda(1)).unwrap(), "\"cuda:1\"");
    }
}
