//! CIFAR-10 in its official binary layout (`cifar-10-batches-bin/`, Krizhevsky 2009): each record is
//! one label byte followed by 3072 pixel bytes (1024 red, 1024 green, 1024 blue, row-major 32×32),
//! so a record is already one CHW uint8 image.
use super::RawSplit;
use anyhow::{bail, ensure, Context, Result};
use std::path::{Path, PathBuf};

/// Side length of CIFAR-10 images.
pub const NATIVE_RESOLUTION: u32 = 32;
const PIXELS: usize = 3 * 32 * 32;
const RECORD: usize = 1 + PIXELS;
const TRAIN_FILES: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];
const TEST_FILE: &str = "test_batch.bin";
const META_FILE: &str = "batches.meta.txt";

/// The files that make up the dataset, in a fixed order (also what its fingerprint covers).
pub fn files(root: &Path) -> Vec<PathBuf> {
    TRAIN_FILES
        .iter()
        .chain([&TEST_FILE, &META_FILE])
        .map(|f| root.join(f))
        .collect()
}

/// Checks that every expected file is present, naming the first missing one.
pub fn check_layout(root: &Path) -> Result<(), String> {
    if !root.is_dir() {
        return Err(format!("directory {} not found", root.display()));
    }
    for f in files(root) {
        if !f.is_file() {
            return Err(format!(
                "{} lacks {} (expected the official binary layout: data_batch_1..5.bin, test_batch.bin, batches.meta.txt)",
                root.display(),
                f.file_name().unwrap_or_default().to_string_lossy()
            ));
        }
    }
    Ok(())
}

/// Class names from `batches.meta.txt`, one per non-empty line.
pub fn classes(root: &Path) -> Result<Vec<String>> {
    let path = root.join(META_FILE);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let names: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    ensure!(
        names.len() == 10,
        "{}: expected 10 class names, found {}; re-fetch with `robarch data fetch cifar10`",
        path.display(),
        names.len()
    );
    Ok(names)
}

/// Parses one batch file's records, appending to `out`.
fn read_batch(path: &Path, classes: usize, out: &mut RawSplit) -> Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if bytes.is_empty() || bytes.len() % RECORD != 0 {
        bail!(
            "{}: {} bytes is not a whole number of {RECORD}-byte records (truncated, or not the binary version); re-fetch with `robarch data fetch cifar10`",
            path.display(),
            bytes.len()
        );
    }
    for (i, rec) in bytes.chunks_exact(RECORD).enumerate() {
        let label = rec[0] as usize;
        if label >= classes {
            bail!(
                "{}: record {i} has label {label}, but there are {classes} classes; the file is corrupt, re-fetch it",
                path.display()
            );
        }
        out.labels.push(label as i64);
        out.images.extend_from_slice(&rec[1..]);
    }
    Ok(())
}

/// Reads the official train (50,000) and test (10,000) splits and the class names.
pub fn load(root: &Path) -> Result<(RawSplit, RawSplit, Vec<String>)> {
    check_layout(root).map_err(anyhow::Error::msg)?;
    let names = classes(root)?;
    let empty = || RawSplit {
        images: Vec::new(),
        labels: Vec::new(),
        channels: 3,
        size: 32,
    };
    let (mut train, mut test) = (empty(), empty());
    for f in TRAIN_FILES {
        read_batch(&root.join(f), names.len(), &mut train)?;
    }
    read_batch(&root.join(TEST_FILE), names.len(), &mut test)?;
    Ok((train, test, names))
}

/// Writes a dataset in the official layout; used by tests and fixtures.
pub fn write_fixture(root: &Path, train: &[(u8, Vec<u8>)], test: &[(u8, Vec<u8>)]) -> Result<()> {
    std::fs::create_dir_all(root)?;
    let rec = |items: &[(u8, Vec<u8>)]| {
        let mut b = Vec::with_capacity(items.len() * RECORD);
        for (l, px) in items {
            assert_eq!(px.len(), PIXELS, "a CIFAR-10 image has 3072 bytes");
            b.push(*l);
            b.extend_from_slice(px);
        }
        b
    };
    let per = train.len().div_ceil(TRAIN_FILES.len()).max(1);
    for (i, f) in TRAIN_FILES.iter().enumerate() {
        let lo = (i * per).min(train.len());
        let hi = ((i + 1) * per).min(train.len());
        std::fs::write(root.join(f), rec(&train[lo..hi]))?;
    }
    std::fs::write(root.join(TEST_FILE), rec(test))?;
    std::fs::write(
        root.join(META_FILE),
        "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n",
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(seed: u8) -> Vec<u8> {
        (0..PIXELS).map(|i| (i as u8).wrapping_mul(seed)).collect()
    }

    #[test]
    fn reads_records_as_chw_images_with_labels() {
        let dir = tempfile::tempdir().unwrap();
        let train: Vec<_> = (0..15u8).map(|i| (i % 10, image(i + 1))).collect();
        let test: Vec<_> = (0..3u8).map(|i| (9 - i, image(100 + i))).collect();
        write_fixture(dir.path(), &train, &test).unwrap();
        let (tr, te, names) = load(dir.path()).unwrap();
        assert_eq!(names[0], "airplane");
        assert_eq!(names.len(), 10);
        assert_eq!(tr.len(), 15);
        assert_eq!(te.labels, vec![9, 8, 7]);
        // Record order is preserved across batch files, and pixel bytes are copied verbatim.
        assert_eq!(tr.labels[11], 1);
        assert_eq!(&tr.images[11 * PIXELS..12 * PIXELS], image(12).as_slice());
        // Red plane first: byte 1024 of the record is the green value of pixel (0,0).
        assert_eq!(te.images[1024], image(100)[1024]);
    }

    #[test]
    fn truncated_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let train: Vec<_> = (0..10u8).map(|i| (i, image(i))).collect();
        write_fixture(dir.path(), &train, &train[..2]).unwrap();
        let p = dir.path().join("data_batch_3.bin");
        let b = std::fs::read(&p).unwrap();
        std::fs::write(&p, &b[..b.len() - 100]).unwrap();
        let e = format!("{:#}", load(dir.path()).unwrap_err());
        assert!(
            e.contains("data_batch_3.bin") && e.contains("not a whole number"),
            "{e}"
        );
    }

    #[test]
    fn bad_label_and_missing_file_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let train: Vec<_> = (0..5u8).map(|i| (i, image(i))).collect();
        write_fixture(dir.path(), &train, &[(42, image(1))]).unwrap();
        let e = format!("{:#}", load(dir.path()).unwrap_err());
        assert!(
            e.contains("test_batch.bin") && e.contains("label 42"),
            "{e}"
        );
        std::fs::remove_file(dir.path().join("batches.meta.txt")).unwrap();
        let e = check_layout(dir.path()).unwrap_err();
        assert!(e.contains("batches.meta.txt"), "{e}");
    }
}
