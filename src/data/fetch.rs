//! `robarch data fetch`: download a dataset's official archive with resume, verify its checksum,
//! and unpack it atomically next to other datasets, so pipelines can name it by source.
use anyhow::{bail, Context, Result};
use md5::{Digest, Md5};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A downloadable dataset: where its official archive lives and what it unpacks to.
#[derive(Debug, Clone, Copy)]
pub struct Archive {
    /// Name used by `data fetch` and as `datasets.<name>.source`.
    pub name: &'static str,
    pub url: &'static str,
    /// MD5 published with the archive (the CIFAR page; torchvision for ImageNette).
    pub md5: &'static str,
    /// The top-level directory inside the archive; also its installed name.
    pub dir: &'static str,
}

/// The datasets robarch can download, one line each.
pub const ARCHIVES: &[Archive] = &[
    Archive {
        name: "cifar10",
        url: "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
        md5: "c32a1d4ab5d03f1284b67883e8d87530",
        dir: "cifar-10-batches-bin",
    },
    Archive {
        name: "imagenette",
        url: "https://s3.amazonaws.com/fast-ai-imageclas/imagenette2.tgz",
        md5: "fe2fc210e6bb7c5664d602c3cd71e612",
        dir: "imagenette2",
    },
    Archive {
        name: "imagenette-160",
        url: "https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-160.tgz",
        md5: "e793b78cc4c9e9a4ccc0c1155377a412",
        dir: "imagenette2-160",
    },
    Archive {
        name: "imagenette-320",
        url: "https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-320.tgz",
        md5: "3df6f0d01a2c9592104656642f5e78a3",
        dir: "imagenette2-320",
    },
];

pub fn find(name: &str) -> Option<&'static Archive> {
    ARCHIVES.iter().find(|a| a.name == name)
}

/// Where datasets are fetched to and looked up by default: `$ROBARCH_DATA`, else `datasets/`.
pub fn data_root() -> PathBuf {
    std::env::var_os("ROBARCH_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("datasets"))
}

/// How to fetch: destination and optional overrides of the official location and checksum.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    pub dir: PathBuf,
    /// Full URL replacing the official one.
    pub url: Option<String>,
    /// Base URL of a mirror holding the archive under its official file name.
    pub mirror: Option<String>,
    /// MD5 replacing the official one (for a mirror serving a different archive).
    pub md5: Option<String>,
    /// Download attempts; each resumes where the previous one stopped.
    pub attempts: u32,
}

#[derive(Debug, PartialEq)]
pub enum FetchOutcome {
    AlreadyPresent(PathBuf),
    Fetched {
        path: PathBuf,
        bytes: u64,
        resumed_from: u64,
    },
}

impl Archive {
    fn file_name(&self) -> &'static str {
        self.url.rsplit('/').next().unwrap_or(self.name)
    }

    /// The URL a fetch with `o` downloads from.
    pub fn url_with(&self, o: &FetchOptions) -> String {
        match (&o.url, &o.mirror) {
            (Some(u), _) => u.clone(),
            (None, Some(m)) => format!("{}/{}", m.trim_end_matches('/'), self.file_name()),
            (None, None) => self.url.to_string(),
        }
    }
}

/// Downloads, verifies and unpacks `a` into `o.dir/<a.dir>`; a no-op when that directory exists.
pub fn fetch(
    a: &Archive,
    o: &FetchOptions,
    progress: &crate::progress::StageProgress,
) -> Result<FetchOutcome> {
    let dest = o.dir.join(a.dir);
    if dest.is_dir() {
        return Ok(FetchOutcome::AlreadyPresent(dest));
    }
    std::fs::create_dir_all(&o.dir).with_context(|| format!("creating {}", o.dir.display()))?;
    // One fetch per dataset at a time; the second waits, then finds the directory present.
    let lock = File::create(o.dir.join(format!(".{}.fetch.lock", a.name)))?;
    lock.lock()?;
    if dest.is_dir() {
        return Ok(FetchOutcome::AlreadyPresent(dest));
    }
    let url = a.url_with(o);
    let partial_dir = o.dir.join(".partial");
    std::fs::create_dir_all(&partial_dir)?;
    let part = partial_dir.join(format!("{}.part", a.file_name()));
    let (bytes, resumed_from) = download(&url, &part, o.attempts.max(1), progress)?;
    let expected = o.md5.as_deref().unwrap_or(a.md5).to_ascii_lowercase();
    progress.phase("verifying md5", 0);
    let got = md5_file(&part)?;
    if got != expected {
        std::fs::remove_file(&part).ok();
        bail!(
            "checksum mismatch for {url}: expected md5 {expected}, got {got}; the download was deleted. Rerun to retry; if the mirror serves a different archive on purpose, pass --md5"
        );
    }
    progress.phase("unpacking", 0);
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".unpack-{}-", a.name))
        .tempdir_in(&o.dir)?;
    let gz = flate2::read::GzDecoder::new(std::io::BufReader::new(File::open(&part)?));
    tar::Archive::new(gz).unpack(tmp.path()).with_context(|| {
        format!(
            "unpacking {} (corrupt archive; delete it and rerun)",
            part.display()
        )
    })?;
    let inner = tmp.path().join(a.dir);
    if !inner.is_dir() {
        bail!(
            "{url}: the archive has no top-level directory {}; is it the right dataset?",
            a.dir
        );
    }
    std::fs::rename(&inner, &dest).with_context(|| format!("moving into {}", dest.display()))?;
    std::fs::remove_file(&part).ok();
    Ok(FetchOutcome::Fetched {
        path: dest,
        bytes,
        resumed_from,
    })
}

/// Downloads `url` into `part`, resuming from its current length with HTTP Range requests; retries
/// after dropped connections. Returns the final size and the offset the first response of this
/// invocation started at (non-zero when an earlier invocation's partial file was resumed).
fn download(
    url: &str,
    part: &Path,
    attempts: u32,
    progress: &crate::progress::StageProgress,
) -> Result<(u64, u64)> {
    let mut first_start = None;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .build()
        .into();
    let mut last_err = None;
    for attempt in 1..=attempts {
        let have = part.metadata().map(|m| m.len()).unwrap_or(0);
        let mut req = agent.get(url);
        if have > 0 {
            tracing::info!(bytes = have, url, "resuming download");
            req = req.header("Range", format!("bytes={have}-"));
        }
        let resp = match req.call() {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(attempt, error = %e, "download request failed");
                last_err = Some(anyhow::Error::new(e).context(format!("requesting {url}")));
                continue;
            }
        };
        let status = resp.status().as_u16();
        let len: Option<u64> = resp
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let (mut file, start) = match status {
            206 => (OpenOptions::new().append(true).open(part)?, have),
            200 => (File::create(part)?, 0),
            // The partial file already holds everything the server has.
            416 if have > 0 => return Ok((have, *first_start.get_or_insert(have))),
            _ => bail!("{url}: HTTP {status}; check the URL (--url/--mirror) and your network"),
        };
        first_start.get_or_insert(start);
        let total = len.map(|l| l + start);
        progress.phase(
            format!("downloading {}", url.rsplit('/').next().unwrap_or(url)),
            total.unwrap_or(0),
        );
        progress.inc(start);
        let mut reader = resp.into_body().into_reader();
        let mut buf = vec![0u8; 1 << 16];
        let mut written = start;
        let result: std::io::Result<()> = loop {
            match reader.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(n) => {
                    if let Err(e) = file.write_all(&buf[..n]) {
                        break Err(e);
                    }
                    written += n as u64;
                    progress.inc(n as u64);
                }
                Err(e) => break Err(e),
            }
        };
        file.flush()?;
        drop(file);
        match result {
            Ok(()) if total.is_none_or(|t| t == written) => {
                return Ok((written, first_start.unwrap_or(0)))
            }
            Ok(()) => {
                tracing::warn!(attempt, written, "connection closed early; resuming");
                last_err = Some(anyhow::anyhow!(
                    "{url}: connection closed at {written} bytes"
                ));
            }
            Err(e) => {
                tracing::warn!(attempt, written, error = %e, "download interrupted; resuming");
                last_err = Some(anyhow::Error::new(e).context(format!("downloading {url}")));
            }
        }
    }
    Err(last_err
        .unwrap_or_else(|| anyhow::anyhow!("no attempt made"))
        .context(format!(
            "download failed after {attempts} attempts; rerun `robarch data fetch` to resume from {}",
            part.display()
        )))
}

/// Hex MD5 of a file.
pub fn md5_file(path: &Path) -> Result<String> {
    let mut f = File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut h = Md5::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_names_are_unique_and_urls_end_in_archives() {
        for a in ARCHIVES {
            assert_eq!(ARCHIVES.iter().filter(|b| b.name == a.name).count(), 1);
            assert!(a.file_name().ends_with(".tar.gz") || a.file_name().ends_with(".tgz"));
            assert_eq!(a.md5.len(), 32);
        }
        let o = FetchOptions {
            dir: "d".into(),
            url: None,
            mirror: Some("http://m/x/".into()),
            md5: None,
            attempts: 1,
        };
        assert_eq!(
            find("cifar10").unwrap().url_with(&o),
            "http://m/x/cifar-10-binary.tar.gz"
        );
    }

    #[test]
    fn md5_of_known_input() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(md5_file(&p).unwrap(), "900150983cd24fb0d6963f7d28e17f72");
    }
}
