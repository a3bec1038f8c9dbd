//! ImageFolder trees (`<root>/<split>/<class>/<image>`, JPEG or PNG), which also covers ImageNette's
//! official layouts (`imagenette2*/train|val/<wnid>/*.JPEG`). Images are decoded in parallel,
//! converted to RGB, resized so the shorter side is `resolution / crop_pct` (bilinear, antialiased)
//! and centre-cropped to `resolution`×`resolution`: torchvision's `Resize` + `CenterCrop`.
use super::RawSplit;
use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// File extensions read as images (case-insensitive).
const EXTENSIONS: &[&str] = &["jpg", "jpeg", "png"];
/// Directory names accepted as the held-out split, in order of preference.
const TEST_DIRS: &[&str] = &["val", "test"];

/// ImageNette's ten ImageNet classes: WordNet id and the name the dataset's authors use.
pub const IMAGENETTE_CLASSES: &[(&str, &str)] = &[
    ("n01440764", "tench"),
    ("n02102040", "English springer"),
    ("n02979186", "cassette player"),
    ("n03000684", "chain saw"),
    ("n03028079", "church"),
    ("n03394916", "French horn"),
    ("n03417042", "garbage truck"),
    ("n03425413", "gas pump"),
    ("n03445777", "golf ball"),
    ("n03888605", "parachute"),
];

/// One split on disk: class names (sorted directory names) and (file, class index) pairs.
#[derive(Debug, Clone)]
pub struct FolderSplit {
    pub classes: Vec<String>,
    pub items: Vec<(PathBuf, usize)>,
}

/// Where a tree keeps its splits: `train/` and `val/` (or `test/`), or one flat `<class>/` level.
#[derive(Debug, Clone)]
pub struct Layout {
    pub train: FolderSplit,
    pub test: Option<FolderSplit>,
}

fn is_image(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("listing {}", dir.display()))?;
    v.sort();
    Ok(v)
}

/// Lists `<dir>/<class>/<image>`; hidden directories are skipped, classes are sorted by name.
pub fn list_split(dir: &Path) -> Result<FolderSplit> {
    let mut classes = Vec::new();
    let mut items = Vec::new();
    for class_dir in sorted_entries(dir)? {
        let name = class_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !class_dir.is_dir() || name.starts_with('.') {
            continue;
        }
        let c = classes.len();
        let before = items.len();
        for f in sorted_entries(&class_dir)? {
            if f.is_file() && is_image(&f) {
                items.push((f, c));
            }
        }
        if items.len() == before {
            bail!(
                "{}: class directory `{name}` holds no .jpg/.jpeg/.png files (a class with no images cannot be learned; add images or remove the directory)",
                dir.display()
            );
        }
        classes.push(name);
    }
    if classes.is_empty() {
        bail!(
            "{}: no class directories (expected <class>/<image>.jpg|png)",
            dir.display()
        );
    }
    if classes.len() < 2 {
        bail!(
            "{}: one class directory (`{}`); classification needs at least two",
            dir.display(),
            classes[0]
        );
    }
    Ok(FolderSplit { classes, items })
}

/// Finds the splits of an ImageFolder tree.
pub fn discover(root: &Path) -> Result<Layout> {
    if !root.is_dir() {
        bail!("directory {} not found", root.display());
    }
    let train_dir = root.join("train");
    if !train_dir.is_dir() {
        return Ok(Layout {
            train: list_split(root)?,
            test: None,
        });
    }
    let train = list_split(&train_dir)?;
    let test = match TEST_DIRS.iter().map(|d| root.join(d)).find(|d| d.is_dir()) {
        Some(d) => {
            let t = list_split(&d)?;
            if t.classes != train.classes {
                bail!(
                    "{}: its classes differ from train/'s ({} vs {}); both splits need the same class directories",
                    d.display(),
                    t.classes.len(),
                    train.classes.len()
                );
            }
            Some(t)
        }
        None => None,
    };
    Ok(Layout { train, test })
}

/// Every image file of a layout (what the dataset's fingerprint covers).
pub fn files(layout: &Layout) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = layout
        .train
        .items
        .iter()
        .chain(layout.test.iter().flat_map(|t| t.items.iter()))
        .map(|(p, _)| p.clone())
        .collect();
    v.sort();
    v
}

/// Display names for ImageNette's WordNet-id class directories (others are kept as they are).
pub fn imagenette_names(classes: &[String]) -> Vec<String> {
    classes
        .iter()
        .map(|c| {
            IMAGENETTE_CLASSES
                .iter()
                .find(|(w, _)| w == c)
                .map(|(_, n)| n.to_string())
                .unwrap_or_else(|| c.clone())
        })
        .collect()
}

/// Decodes one image file to `resolution`² RGB, CHW order, and whether it was resampled (resized
/// or cropped). With `keep_native`, an image already `resolution`² is kept as it is.
pub fn decode(
    path: &Path,
    resolution: u32,
    crop_pct: f64,
    keep_native: bool,
) -> Result<(Vec<u8>, bool)> {
    let img = image::ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .with_context(|| format!("opening {}", path.display()))?
        .decode()
        .with_context(|| {
            format!(
                "decoding {} (corrupt or truncated image; delete or replace it)",
                path.display()
            )
        })?
        .to_rgb8();
    let (w, h) = img.dimensions();
    let native = (w, h) == (resolution, resolution);
    let crop_pct = if keep_native && native { 1.0 } else { crop_pct };
    let short = (resolution as f64 / crop_pct)
        .round()
        .max(resolution as f64) as u32;
    // torchvision Resize(int): the shorter side becomes `short`, the longer keeps the aspect ratio.
    let (nw, nh) = if w <= h {
        (short, ((short as u64 * h as u64) / w as u64) as u32)
    } else {
        (((short as u64 * w as u64) / h as u64) as u32, short)
    };
    let resized = if (nw, nh) == (w, h) {
        img
    } else {
        image::imageops::resize(&img, nw, nh, image::imageops::FilterType::Triangle)
    };
    let x0 = ((nw - resolution) as f64 / 2.0).round() as u32;
    let y0 = ((nh - resolution) as f64 / 2.0).round() as u32;
    let r = resolution as usize;
    let mut chw = vec![0u8; 3 * r * r];
    for y in 0..r {
        for x in 0..r {
            let p = resized.get_pixel(x0 + x as u32, y0 + y as u32);
            for c in 0..3 {
                chw[c * r * r + y * r + x] = p[c];
            }
        }
    }
    Ok((chw, (nw, nh) != (w, h) || !native))
}

/// Decodes a split in parallel, with how many of its images were resampled; the first failing
/// file's error is returned.
pub fn load_split(
    split: &FolderSplit,
    resolution: u32,
    crop_pct: f64,
    keep_native: bool,
) -> Result<(RawSplit, usize)> {
    let decoded: Vec<(Vec<u8>, bool)> = split
        .items
        .par_iter()
        .map(|(p, _)| decode(p, resolution, crop_pct, keep_native))
        .collect::<Result<_>>()?;
    let resampled = decoded.iter().filter(|d| d.1).count();
    let images: Vec<Vec<u8>> = decoded.into_iter().map(|d| d.0).collect();
    Ok((RawSplit {
        images: images.concat(),
        labels: split.items.iter().map(|(_, c)| *c as i64).collect(),
        channels: 3,
        size: resolution as usize,
    }, resampled))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a `w`×`h` image whose red channel encodes x, green y and blue the class.
    fn write_image(path: &Path, w: u32, h: u32, class: u8) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x * 255 / w) as u8, (y * 255 / h) as u8, class * 20])
        });
        img.save(path).unwrap();
    }

    #[test]
    fn imagenette_layout_decodes_with_wnid_names_and_center_crop() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("imagenette2-160");
        for (split, n) in [("train", 3), ("val", 1)] {
            for (c, (wnid, _)) in IMAGENETTE_CLASSES[..2].iter().enumerate() {
                for i in 0..n {
                    let p = root.join(split).join(wnid).join(format!("{wnid}_{i}.JPEG"));
                    write_image(&p, 40 + 10 * i, 30, c as u8);
                }
            }
        }
        // Non-image files and hidden directories are ignored, as torchvision's ImageFolder does.
        std::fs::write(root.join("train/n01440764/notes.txt"), "x").unwrap();
        std::fs::create_dir_all(root.join("train/.cache")).unwrap();
        let layout = discover(&root).unwrap();
        assert_eq!(layout.train.classes, ["n01440764", "n02102040"]);
        assert_eq!(layout.train.items.len(), 6);
        assert_eq!(layout.test.as_ref().unwrap().items.len(), 2);
        assert_eq!(files(&layout).len(), 8);
        assert_eq!(
            imagenette_names(&layout.train.classes),
            ["tench", "English springer"]
        );
        let s = load_split(&layout.train, 16, 1.0, true).unwrap().0;
        assert_eq!((s.len(), s.channels, s.size), (6, 3, 16));
        assert_eq!(s.labels, [0, 0, 0, 1, 1, 1]);
        // Shorter side (30 px) becomes 16 and the crop is centred: the green ramp spans the full
        // height while red covers only the middle of the width. JPEG error is a few levels.
        let img = &s.images[..3 * 256];
        let at = |c: usize, y: usize, x: usize| img[c * 256 + y * 16 + x] as i32;
        assert!(
            at(1, 0, 8) < 20 && at(1, 15, 8) > 230,
            "{} {}",
            at(1, 0, 8),
            at(1, 15, 8)
        );
        assert!(at(0, 8, 0) > 20 && at(0, 8, 15) < 235);
        assert!((at(2, 8, 8) - 0).abs() <= 6);
    }

    /// Evaluation images already at the target size are stored exactly, though the evaluation
    /// transform (crop_pct 0.875) would resize 16 px to 18 and crop; other sizes are resampled
    /// and counted.
    #[test]
    fn native_resolution_images_are_not_resampled() {
        let dir = tempfile::tempdir().unwrap();
        for c in 0..2u8 {
            write_image(&dir.path().join(format!("c{c}/a.png")), 16, 16, c);
            write_image(&dir.path().join(format!("c{c}/b.png")), 20, 24, c);
        }
        let layout = discover(dir.path()).unwrap();
        let original = |p: &Path| -> Vec<u8> {
            let img = image::open(p).unwrap().to_rgb8();
            let mut chw = vec![0u8; 3 * 256];
            for (x, y, px) in img.enumerate_pixels() {
                for c in 0..3 {
                    chw[c * 256 + (y * 16 + x) as usize] = px[c];
                }
            }
            chw
        };
        let (s, resampled) = load_split(&layout.train, 16, 0.875, true).unwrap();
        assert_eq!(resampled, 2, "the two 20x24 images, not the 16x16 ones");
        for (i, (p, _)) in layout.train.items.iter().enumerate() {
            let own = &s.images[i * 768..(i + 1) * 768];
            if p.ends_with("a.png") {
                assert_eq!(own, original(p).as_slice(), "{}", p.display());
            }
        }
        // Without keep_native (the behaviour before), every image went through the transform.
        let (s_old, n_old) = load_split(&layout.train, 16, 0.875, false).unwrap();
        assert_eq!(n_old, 4);
        assert_ne!(s_old.images, s.images);
    }

    #[test]
    fn flat_png_folder_and_corrupt_file() {
        let dir = tempfile::tempdir().unwrap();
        for c in 0..3u8 {
            write_image(&dir.path().join(format!("c{c}/img.png")), 8, 8, c);
        }
        let layout = discover(dir.path()).unwrap();
        assert!(layout.test.is_none());
        let s = load_split(&layout.train, 8, 1.0, true).unwrap().0;
        // PNG is lossless and no resize happens: bytes come back exactly.
        assert_eq!(s.images[2 * 64 * 3 + 2 * 64], 40);
        let bad = dir.path().join("c1/broken.png");
        let good = std::fs::read(dir.path().join("c1/img.png")).unwrap();
        std::fs::write(&bad, &good[..good.len() / 2]).unwrap();
        let layout = discover(dir.path()).unwrap();
        let e = format!("{:#}", load_split(&layout.train, 8, 1.0, true).unwrap_err());
        assert!(e.contains("broken.png") && e.contains("corrupt"), "{e}");
    }

    #[test]
    fn mismatched_classes_and_empty_tree_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        write_image(&dir.path().join("train/a/1.png"), 4, 4, 0);
        write_image(&dir.path().join("train/c/1.png"), 4, 4, 0);
        write_image(&dir.path().join("val/b/1.png"), 4, 4, 0);
        write_image(&dir.path().join("val/c/1.png"), 4, 4, 0);
        let e = discover(dir.path()).unwrap_err().to_string();
        assert!(e.contains("classes differ"), "{e}");
        // A class with no images, and a single class, are errors naming the directory.
        let one = tempfile::tempdir().unwrap();
        write_image(&one.path().join("a/1.png"), 4, 4, 0);
        let e = discover(one.path()).unwrap_err().to_string();
        assert!(e.contains("one class directory (`a`)"), "{e}");
        std::fs::create_dir_all(one.path().join("b")).unwrap();
        let e = discover(one.path()).unwrap_err().to_string();
        assert!(e.contains("class directory `b` holds no"), "{e}");
        let empty = tempfile::tempdir().unwrap();
        assert!(discover(empty.path())
            .unwrap_err()
            .to_string()
            .contains("no class"));
    }
}
