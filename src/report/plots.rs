//! The report's plots, each as PNG and SVG: robust accuracy against ε per architecture, per-epoch
//! train/test accuracy (robust overfitting), sparsity and each bound against the robust gap
//! coloured by architecture kind with the rank correlation in the legend, and robust accuracy per
//! attack per architecture as bars. Text is drawn with the embedded DejaVu Sans, so PNGs look the
//! same on every machine.
use super::study::{attack_order, kind_rank, kind_title};
use super::Inputs;
use crate::attacks::verdict::EvalResult;
use crate::train::EpochRecord;
use anyhow::{Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// DejaVu Sans (Bitstream Vera license, see assets/fonts/LICENSE-DejaVu.txt).
static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
const SANS: &str = "sans-serif";

fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        plotters::style::register_font(SANS, FontStyle::Normal, FONT)
            .unwrap_or_else(|_| panic!("the embedded font is a valid TrueType font"));
    });
}

/// One plot of the report: its file name (without extension), a caption for the HTML page, and
/// what it draws.
pub struct Plot {
    pub file: String,
    pub caption: String,
    figure: Figure,
}

/// A named line of (x, y) points.
type Series = (&'static str, Vec<(f64, f64)>);
/// A scatter point: (model, kind, x, y).
type Point = (String, String, f64, f64);
/// A scatter panel: (x-axis title, points, line above the panel).
type Panel = (String, Vec<Point>, String);

enum Figure {
    /// Per architecture: (ε, robust accuracy %) points.
    Curve {
        title: String,
        x: String,
        lines: Vec<(String, Vec<(f64, f64)>)>,
    },
    /// Per architecture a panel of per-epoch series (name, points).
    History {
        title: String,
        panels: Vec<(String, Vec<Series>)>,
    },
    /// Panels of (measure, points (model, kind, x, y), legend line).
    Scatter {
        title: String,
        y: String,
        panels: Vec<Panel>,
    },
    /// Horizontal grouped bars: per architecture (with its kind) one bar per attack.
    Bars {
        title: String,
        attacks: Vec<String>,
        rows: Vec<(String, Vec<Option<f64>>)>,
    },
}

/// Colour of an architecture kind.
pub fn kind_color(kind: &str) -> RGBColor {
    match kind {
        "cnn" => RGBColor(31, 119, 180),
        "transformer" => RGBColor(214, 39, 40),
        "hybrid" => RGBColor(44, 160, 44),
        "mlp" => RGBColor(148, 103, 189),
        _ => RGBColor(110, 110, 110),
    }
}

/// A categorical palette (Tableau 10) for lines and bars.
fn series_color(i: usize) -> RGBColor {
    const P: [(u8, u8, u8); 10] = [
        (31, 119, 180),
        (255, 127, 14),
        (44, 160, 44),
        (214, 39, 40),
        (148, 103, 189),
        (140, 86, 75),
        (227, 119, 194),
        (127, 127, 127),
        (188, 189, 34),
        (23, 190, 207),
    ];
    let (r, g, b) = P[i % P.len()];
    RGBColor(r, g, b)
}

/// Every plot the inputs allow, in the order the HTML page shows them.
pub fn plots(inputs: &Inputs) -> Vec<Plot> {
    let mut out = Vec::new();
    out.extend(bars(inputs));
    out.extend(curves(inputs));
    out.extend(histories(inputs));
    out.extend(scatters(inputs));
    out
}

/// File-name-safe text.
fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Models of a block in the study's order: kind (paper order), then name.
fn ordered_models<'a>(inputs: &Inputs, models: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut v: Vec<(usize, String)> = models
        .collect::<BTreeSet<_>>()
        .into_iter()
        .map(|m| (kind_rank(inputs.kind_of(m)), m.to_string()))
        .collect();
    v.sort();
    v.into_iter().map(|x| x.1).collect()
}

/// Test robust accuracy per attack per architecture, one chart per (dataset, training).
fn bars(inputs: &Inputs) -> Vec<Plot> {
    let mut blocks: BTreeMap<(&str, &str), Vec<&EvalResult>> = BTreeMap::new();
    for e in inputs
        .evals
        .iter()
        .filter(|e| !e.is_curve_point() && e.split == "test")
    {
        blocks.entry((&e.dataset, &e.training)).or_default().push(e);
    }
    blocks
        .into_iter()
        .map(|((d, t), es)| {
            let attacks = attack_order(es.iter().copied());
            let models = ordered_models(inputs, es.iter().map(|e| e.model.as_str()));
            let rows = models
                .iter()
                .map(|m| {
                    let v = attacks
                        .iter()
                        .map(|a| {
                            let vals: Vec<f64> = es
                                .iter()
                                .filter(|e| &e.model == m && &e.attack == a)
                                .map(|e| 100.0 * e.robust_accuracy)
                                .collect();
                            super::study::mean_std(&vals).map(|m| m.0)
                        })
                        .collect();
                    (m.clone(), v)
                })
                .collect();
            Plot {
                file: format!("bars_{}_{}", slug(d), slug(t)),
                caption: format!("Test robust accuracy per attack and architecture ({d}, {t}); `clean` is the clean accuracy."),
                figure: Figure::Bars {
                    title: format!("Test robust accuracy per attack — {d}, {t}"),
                    attacks,
                    rows,
                },
            }
        })
        .collect()
}

/// The mean over seeds of a point drawn (`v` holds one value per seed, never none).
fn mean(v: &[f64]) -> f64 {
    super::study::mean_std(v).map_or(f64::NAN, |m| m.0)
}

/// Robust accuracy against ε, one chart per (dataset, training, attack with a curve), test split.
fn curves(inputs: &Inputs) -> Vec<Plot> {
    let bases: BTreeSet<&str> = inputs
        .evals
        .iter()
        .filter(|e| e.is_curve_point())
        .map(|e| e.base())
        .collect();
    // Per model, ε (its bits: radii are non-negative, so they order as the values) → each seed's
    // accuracy; a line goes through the seed means.
    type PerModel<'a> = BTreeMap<&'a str, BTreeMap<u64, Vec<f64>>>;
    let mut by: BTreeMap<(&str, &str, &str), PerModel> = BTreeMap::new();
    for e in inputs
        .evals
        .iter()
        .filter(|e| e.split == "test" && bases.contains(e.base()))
    {
        by.entry((&e.dataset, &e.training, e.base()))
            .or_default()
            .entry(&e.model)
            .or_default()
            .entry(e.eps.to_bits())
            .or_default()
            .push(100.0 * e.robust_accuracy);
    }
    by.into_iter()
        .map(|((d, t, a), per)| {
            let models = ordered_models(inputs, per.keys().copied());
            let lines = models
                .into_iter()
                .map(|m| {
                    let p = per[m.as_str()]
                        .iter()
                        .map(|(eps, v)| (f64::from_bits(*eps), mean(v)))
                        .collect();
                    (m, p)
                })
                .collect();
            Plot {
                file: format!("eps_{}_{}_{}", slug(d), slug(t), slug(a)),
                caption: format!("Test robust accuracy of `{a}` against the radius ε ({d}, {t}), one line per architecture (its mean over the training seeds where they repeat)."),
                figure: Figure::Curve {
                    title: format!("{a}: robust accuracy vs ε — {d}, {t}"),
                    x: "ε (pixel scale [0, 1])".into(),
                    lines,
                },
            }
        })
        .collect()
}

/// Per-epoch accuracies from each training's history, one chart per (dataset, training) with a
/// panel per architecture.
fn histories(inputs: &Inputs) -> Vec<Plot> {
    // Per model, every seed's history; a panel draws their mean per epoch.
    type Seeds<'a> = Vec<&'a Vec<EpochRecord>>;
    let mut by: BTreeMap<(&str, &str), BTreeMap<&str, Seeds>> = BTreeMap::new();
    for h in &inputs.histories {
        if !h.epochs.is_empty() {
            by.entry((&h.key.0, &h.key.2))
                .or_default()
                .entry(&h.key.1)
                .or_default()
                .push(&h.epochs);
        }
    }
    by.into_iter()
        .map(|((d, t), per)| {
            let models = ordered_models(inputs, per.keys().copied());
            let panels = models
                .into_iter()
                .map(|m| {
                    let seeds = &per[m.as_str()];
                    let series = |f: fn(&EpochRecord) -> Option<f64>| -> Vec<(f64, f64)> {
                        let mut at: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
                        for r in seeds.iter().flat_map(|h| h.iter()) {
                            if let Some(v) = f(r) {
                                at.entry(r.epoch).or_default().push(100.0 * v);
                            }
                        }
                        at.iter().map(|(e, v)| (*e as f64, mean(v))).collect()
                    };
                    let mut s: Vec<(&'static str, Vec<(f64, f64)>)> = vec![
                        ("train robust", series(|r| r.train_robust_accuracy)),
                        ("test robust", series(|r| r.test_robust_accuracy)),
                        ("train clean", series(|r| r.train_clean_accuracy)),
                        ("test clean", series(|r| r.test_clean_accuracy)),
                        ("training batches", series(|r| Some(r.train_accuracy))),
                    ];
                    s.retain(|x| !x.1.is_empty());
                    (m, s)
                })
                .collect();
            Plot {
                file: format!("history_{}_{}", slug(d), slug(t)),
                caption: format!(
                    "Accuracy per epoch ({d}, {t}), one panel per architecture (the mean over the training seeds where they repeat): robust and clean accuracy on fixed train and test points where the training monitored them (`monitor:`), and the accuracy on the training batches (adversarial for adversarial training). A test robust curve that falls while the train curve rises is robust overfitting."
                ),
                figure: Figure::History {
                    title: format!("Accuracy per epoch — {d}, {t}"),
                    panels,
                },
            }
        })
        .collect()
}

/// Each analysis's figure (`analysis::Scatter`: Hoyer sparsity, the bounds, robust flatness)
/// against the training threat model's robust gap.
fn scatters(inputs: &Inputs) -> Vec<Plot> {
    let Some(c) = &inputs.correlation else {
        return Vec::new();
    };
    let mut blocks: BTreeMap<(&str, &str), Vec<&crate::analysis::correlation::Row>> =
        BTreeMap::new();
    for r in &c.rows {
        blocks.entry((&r.dataset, &r.training)).or_default().push(r);
    }
    let per = match (c.seeds.is_empty(), c.over) {
        (true, _) => "one point per architecture",
        (false, crate::analysis::correlation::Over::Means) => {
            "one point per architecture (its mean over the training seeds)"
        }
        (false, crate::analysis::correlation::Over::Seeds) => "one point per (architecture, seed)",
    };
    let mut out = Vec::new();
    for ((d, t), rows) in blocks {
        // The gap under the strongest multi-step attack of the training threat model (lowest mean
        // test robust accuracy), else the first gap.
        let strength = |a: &str| -> f64 {
            let v: Vec<f64> = inputs
                .evals
                .iter()
                .filter(|e| e.attack == a && e.split == "test" && e.dataset == d && e.training == t)
                .filter(|e| e.class != crate::attacks::AttackClass::SingleStep)
                .map(|e| e.robust_accuracy)
                .collect();
            if v.is_empty() {
                f64::INFINITY
            } else {
                v.iter().sum::<f64>() / v.len() as f64
            }
        };
        let seen = inputs
            .gaps
            .get(t)
            .and_then(|g| {
                g.gap
                    .iter()
                    .filter(|a| rows.iter().any(|r| r.gap == format!("robust_gap:{a}")))
                    .map(|a| (strength(a), a))
                    .min_by(|x, y| x.0.total_cmp(&y.0))
                    .map(|(_, a)| format!("robust_gap:{a}"))
            })
            .or_else(|| {
                rows.iter()
                    .map(|r| r.gap.clone())
                    .find(|g| g.starts_with("robust_gap:"))
            });
        let Some(gap) = seen else { continue };
        let panel = |measure: &str, axis: String| {
            let r = rows.iter().find(|r| r.measure == measure && r.gap == gap)?;
            let pts = r
                .models
                .iter()
                .zip(r.x.iter().zip(&r.y))
                .filter(|(_, (x, y))| x.is_finite() && y.is_finite())
                .map(|(m, (x, y))| (m.clone(), inputs.kind_of(m).to_string(), *x, *y))
                .collect::<Vec<_>>();
            let f = |v: Option<f64>| v.map_or("n/a".into(), |v| format!("{v:.2}"));
            let legend = format!(
                "Kendall τ = {}, Spearman ρ = {} (n = {})",
                f(r.stat.kendall_tau.value),
                f(r.stat.spearman_rho.value),
                r.stat.n
            );
            Some((axis, pts, legend))
        };
        let gap_attack = gap.trim_start_matches("robust_gap:").to_string();
        // One figure per analysis that draws one, panels in its measures' order.
        for sc in crate::analysis::REGISTRY.iter().filter_map(|a| a.scatter) {
            let panels: Vec<_> = (sc.measures)()
                .iter()
                .filter_map(|m| panel(m, (sc.axis)(m)))
                .collect();
            if panels.is_empty() {
                continue;
            }
            out.push(Plot {
                file: format!("{}_{}_{}", sc.file, slug(d), slug(t)),
                caption: (sc.caption)(&gap_attack, d, t, per),
                figure: Figure::Scatter {
                    title: format!("{} — {d}, {t}", (sc.title)(&gap_attack)),
                    y: (sc.y)(&gap_attack),
                    panels,
                },
            });
        }
    }
    out
}

/// Pads a data range by 5 % (a single value by ±1).
fn padded(lo: f64, hi: f64) -> std::ops::Range<f64> {
    if !(lo.is_finite() && hi.is_finite()) {
        return 0.0..1.0;
    }
    if (hi - lo).abs() < 1e-12 {
        return (lo - 1.0)..(hi + 1.0);
    }
    let p = 0.05 * (hi - lo);
    (lo - p)..(hi + p)
}

fn range(v: impl Iterator<Item = f64>) -> (f64, f64) {
    v.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
        (a.min(x), b.max(x))
    })
}

impl Plot {
    /// Pixel size.
    fn size(&self) -> (u32, u32) {
        match &self.figure {
            Figure::Curve { .. } => (1000, 700),
            Figure::History { panels, .. } => {
                let cols = grid_cols(panels.len());
                let rows = panels.len().div_ceil(cols);
                (1200, 100 + 300 * rows as u32)
            }
            Figure::Scatter { panels, .. } => {
                let cols = grid_cols(panels.len());
                let rows = panels.len().div_ceil(cols);
                if panels.len() == 1 {
                    (1000, 720)
                } else {
                    (1400, 100 + 420 * rows as u32)
                }
            }
            Figure::Bars { attacks, rows, .. } => {
                let h = 180 + rows.len() as u32 * (attacks.len() as u32 * 10 + 14);
                (1100, h.max(400))
            }
        }
    }

    /// Writes `<file>.png` and `<file>.svg` into `dir`; returns their names and the PNG's bytes
    /// (the HTML page inlines them).
    pub fn save(&self, dir: &Path) -> Result<(Vec<String>, Vec<u8>)> {
        register_font();
        let (w, h) = self.size();
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area();
            self.draw(&root)?;
            root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        let mut buf = vec![0u8; (w * h * 3) as usize];
        {
            let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
            self.draw(&root)?;
            root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        let png = dir.join(format!("{}.png", self.file));
        let mut bytes = Vec::new();
        image::RgbImage::from_raw(w, h, buf)
            .context("plot buffer size")?
            .write_to(
                &mut std::io::Cursor::new(&mut bytes),
                image::ImageFormat::Png,
            )
            .context("encoding a plot as PNG")?;
        std::fs::write(&png, &bytes).with_context(|| format!("writing {}", png.display()))?;
        let svg_path = dir.join(format!("{}.svg", self.file));
        std::fs::write(&svg_path, svg)
            .with_context(|| format!("writing {}", svg_path.display()))?;
        Ok((
            vec![format!("{}.png", self.file), format!("{}.svg", self.file)],
            bytes,
        ))
    }

    // Long because it is one match over the figure kinds, each arm the few plotters calls of its
    // chart; splitting it would scatter one figure's layout over several functions.
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()>
    where
        DB::ErrorType: 'static,
    {
        let e = |x: DrawingAreaErrorKind<DB::ErrorType>| anyhow::anyhow!("drawing: {x}");
        root.fill(&WHITE).map_err(e)?;
        let light = BLACK.mix(0.06);
        let pct = |v: &f64| format!("{v:.0}");
        match &self.figure {
            Figure::Curve { title, x, lines } => {
                let (top, rest) = root.split_vertically(100);
                let items: Vec<(String, RGBColor, Marker)> = lines
                    .iter()
                    .enumerate()
                    .map(|(i, (m, _))| (m.clone(), series_color(i), Marker::Line))
                    .collect();
                header(&top, title, &items).map_err(e)?;
                let (x0, x1) = range(lines.iter().flat_map(|l| l.1.iter().map(|p| p.0)));
                let mut chart = ChartBuilder::on(&rest)
                    .margin(16)
                    .x_label_area_size(55)
                    .y_label_area_size(70)
                    .build_cartesian_2d(padded(x0, x1), 0.0..100.0)
                    .map_err(e)?;
                chart
                    .configure_mesh()
                    .x_desc(x.as_str())
                    .y_desc("robust accuracy (%)")
                    .y_label_formatter(&pct)
                    .light_line_style(light)
                    .max_light_lines(1)
                    .label_style((SANS, 17))
                    .axis_desc_style((SANS, 19))
                    .draw()
                    .map_err(e)?;
                for (i, (_, pts)) in lines.iter().enumerate() {
                    let c = series_color(i);
                    chart
                        .draw_series(LineSeries::new(pts.iter().copied(), c.stroke_width(3)))
                        .map_err(e)?;
                    chart
                        .draw_series(pts.iter().map(|p| Circle::new(*p, 5, c.filled())))
                        .map_err(e)?;
                }
            }
            Figure::History { title, panels } => {
                let (top, rest) = root.split_vertically(100);
                let mut names: Vec<&'static str> = Vec::new();
                for (_, series) in panels {
                    for (n, _) in series {
                        if !names.contains(n) {
                            names.push(n);
                        }
                    }
                }
                let items: Vec<(String, RGBColor, Marker)> = names
                    .iter()
                    .map(|n| (n.to_string(), history_color(n), Marker::Line))
                    .collect();
                header(&top, title, &items).map_err(e)?;
                let cols = grid_cols(panels.len());
                let rows = panels.len().div_ceil(cols);
                let areas = rest.split_evenly((rows, cols));
                let epochs = range(
                    panels
                        .iter()
                        .flat_map(|p| p.1.iter().flat_map(|s| s.1.iter().map(|q| q.0))),
                );
                for ((m, series), area) in panels.iter().zip(areas.iter()) {
                    let mut chart = ChartBuilder::on(area)
                        .caption(m, (SANS, 20))
                        .margin(10)
                        .x_label_area_size(40)
                        .y_label_area_size(55)
                        .build_cartesian_2d(padded(epochs.0, epochs.1), 0.0..100.0)
                        .map_err(e)?;
                    chart
                        .configure_mesh()
                        .x_desc("epoch")
                        .y_desc("accuracy (%)")
                        .x_labels(6)
                        .y_labels(6)
                        .x_label_formatter(&pct)
                        .y_label_formatter(&pct)
                        .light_line_style(light)
                        .max_light_lines(1)
                        .label_style((SANS, 14))
                        .axis_desc_style((SANS, 15))
                        .draw()
                        .map_err(e)?;
                    for (name, pts) in series {
                        let c = history_color(name);
                        chart
                            .draw_series(LineSeries::new(pts.iter().copied(), c.stroke_width(2)))
                            .map_err(e)?;
                    }
                }
            }
            Figure::Scatter { title, y, panels } => {
                let (top, rest) = root.split_vertically(100);
                let mut kinds: Vec<&str> = panels
                    .iter()
                    .flat_map(|p| p.1.iter().map(|q| q.1.as_str()))
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect();
                kinds.sort_by_key(|k| kind_rank(k));
                let items: Vec<(String, RGBColor, Marker)> = kinds
                    .iter()
                    .map(|k| (kind_title(k).to_string(), kind_color(k), Marker::Dot))
                    .collect();
                header(&top, title, &items).map_err(e)?;
                let cols = grid_cols(panels.len());
                let rows = panels.len().div_ceil(cols);
                let areas = rest.split_evenly((rows, cols));
                let big = panels.len() == 1;
                for ((measure, pts, legend), area) in panels.iter().zip(areas.iter()) {
                    let (x0, x1) = range(pts.iter().map(|p| p.2));
                    let (y0, y1) = range(pts.iter().map(|p| p.3));
                    let xr = padded(x0, x1);
                    // Room on the right for the labels of the rightmost points.
                    let xr = xr.start..xr.end + 0.12 * (xr.end - xr.start);
                    let mut chart = ChartBuilder::on(area)
                        .caption(legend, (SANS, if big { 20 } else { 16 }))
                        .margin(12)
                        .x_label_area_size(50)
                        .y_label_area_size(65)
                        .build_cartesian_2d(xr, padded(y0, y1))
                        .map_err(e)?;
                    chart
                        .configure_mesh()
                        .x_desc(measure.as_str())
                        .y_desc(y.as_str())
                        .x_labels(6)
                        .y_labels(6)
                        .light_line_style(light)
                        .max_light_lines(1)
                        .label_style((SANS, if big { 17 } else { 14 }))
                        .axis_desc_style((SANS, if big { 19 } else { 15 }))
                        .draw()
                        .map_err(e)?;
                    let r = if big { 8 } else { 6 };
                    let font = (SANS, if big { 15 } else { 12 })
                        .into_font()
                        .color(&BLACK.mix(0.75));
                    chart
                        .draw_series(pts.iter().map(|p| {
                            EmptyElement::at((p.2, p.3))
                                + Circle::new((0, 0), r, kind_color(&p.1).filled())
                                + Text::new(p.0.clone(), (r + 3, -r - 3), font.clone())
                        }))
                        .map_err(e)?;
                }
            }
            Figure::Bars {
                title,
                attacks,
                rows,
            } => {
                let (top, rest) = root.split_vertically(100);
                let items: Vec<(String, RGBColor, Marker)> = attacks
                    .iter()
                    .enumerate()
                    .map(|(j, a)| (a.clone(), series_color(j), Marker::Box))
                    .collect();
                header(&top, title, &items).map_err(e)?;
                let n = rows.len();
                let k = attacks.len().max(1);
                let mut chart = ChartBuilder::on(&rest)
                    .margin(16)
                    .x_label_area_size(55)
                    .y_label_area_size(150)
                    .build_cartesian_2d(0.0..100.0, 0.0..n as f64)
                    .map_err(e)?;
                chart
                    .configure_mesh()
                    .disable_y_mesh()
                    .y_label_formatter(&|_| String::new())
                    .x_label_formatter(&pct)
                    .light_line_style(light)
                    .max_light_lines(1)
                    .x_desc("test accuracy (%)")
                    .label_style((SANS, 16))
                    .axis_desc_style((SANS, 18))
                    .draw()
                    .map_err(e)?;
                // Architecture names left of their bands (row 0 at the top).
                let style = TextStyle::from((SANS, 17).into_font())
                    .pos(Pos::new(HPos::Right, VPos::Center));
                for (i, (name, _)) in rows.iter().enumerate() {
                    let (x, y) = chart.backend_coord(&(0.0, (n - i) as f64 - 0.5));
                    root.draw(&Text::new(name.clone(), (x - 8, y), style.clone()))
                        .map_err(e)?;
                }
                let band = 0.8 / k as f64;
                for (j, _) in attacks.iter().enumerate() {
                    let c = series_color(j);
                    chart
                        .draw_series(rows.iter().enumerate().filter_map(|(i, (_, v))| {
                            let v = v[j]?;
                            let y_top = (n - i) as f64 - 0.1 - band * j as f64;
                            Some(Rectangle::new(
                                [(0.0, y_top - band), (v, y_top)],
                                c.filled(),
                            ))
                        }))
                        .map_err(e)?;
                }
            }
        }
        Ok(())
    }
}

/// How a legend entry is drawn.
#[derive(Clone, Copy)]
enum Marker {
    Line,
    Dot,
    Box,
}

/// The title and, below it, a one-line legend (wrapped when long), drawn outside the plot so it
/// hides no data.
fn header<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    items: &[(String, RGBColor, Marker)],
) -> std::result::Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let (w, _) = area.dim_in_pixel();
    let centre = TextStyle::from((SANS, 26).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
    area.draw(&Text::new(title.to_string(), (w as i32 / 2, 10), centre))?;
    let font = TextStyle::from((SANS, 17).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    // Entry widths from the text's extent; rows centred.
    let widths: Vec<i32> = items
        .iter()
        .map(|(t, _, _)| {
            let (tw, _) = area
                .estimate_text_size(t, &font)
                .unwrap_or((8 * t.len() as u32, 17));
            tw as i32 + 34 + 22
        })
        .collect();
    let mut rows: Vec<Vec<usize>> = vec![Vec::new()];
    let mut used = 0;
    for (i, wi) in widths.iter().enumerate() {
        if used + wi > w as i32 - 40 && !rows.last().expect("one row").is_empty() {
            rows.push(Vec::new());
            used = 0;
        }
        rows.last_mut().expect("one row").push(i);
        used += wi;
    }
    let line_h = if rows.len() > 1 { 24 } else { 30 };
    for (r, row) in rows.iter().enumerate() {
        let total: i32 = row.iter().map(|&i| widths[i]).sum();
        let mut x = (w as i32 - total) / 2;
        let y = 58 + r as i32 * line_h;
        for &i in row {
            let (text, c, m) = &items[i];
            match m {
                Marker::Line => area.draw(&PathElement::new(
                    vec![(x, y), (x + 26, y)],
                    c.stroke_width(3),
                ))?,
                Marker::Dot => area.draw(&Circle::new((x + 13, y), 7, c.filled()))?,
                Marker::Box => area.draw(&Rectangle::new(
                    [(x + 4, y - 8), (x + 22, y + 8)],
                    c.filled(),
                ))?,
            }
            area.draw(&Text::new(text.clone(), (x + 34, y), font.clone()))?;
            x += widths[i];
        }
    }
    Ok(())
}

fn history_color(series: &str) -> RGBColor {
    match series {
        "train robust" => RGBColor(31, 119, 180),
        "test robust" => RGBColor(214, 39, 40),
        "train clean" => RGBColor(120, 170, 220),
        "test clean" => RGBColor(240, 150, 150),
        _ => RGBColor(110, 110, 110),
    }
}

/// Columns of a grid of `n` panels.
fn grid_cols(n: usize) -> usize {
    match n {
        0 | 1 => 1,
        2 => 2,
        3..=4 => 2,
        5..=9 => 3,
        10..=16 => 4,
        _ => 5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attacks::verdict::testing::ev;

    /// Where seeds repeat, an ε curve and a history panel go through the seeds' means: one point
    /// per radius or epoch, not a zig-zag between the seeds' values.
    #[test]
    fn curves_and_histories_draw_the_seed_mean() {
        let point = |attack: &str, eps: f64, seed: u64, robust: f64| {
            let mut e = ev("cnn", attack, "test", robust);
            (e.eps, e.seed) = (eps, Some(seed));
            e
        };
        // A curve point of `pgd`, as the planner labels it.
        let curve_point = |eps: f64, seed: u64, robust: f64| EvalResult {
            curve: Some(crate::attacks::verdict::CurvePoint {
                attack: "pgd".into(),
                eps,
            }),
            ..point("pgd@0.06", eps, seed, robust)
        };
        let record = |epoch, acc| EpochRecord {
            epoch,
            loss: 1.0,
            train_accuracy: acc,
            lr: 0.1,
            train_clean_accuracy: None,
            train_robust_accuracy: None,
            test_clean_accuracy: None,
            test_robust_accuracy: None,
        };
        let inputs = Inputs {
            evals: vec![
                point("pgd", 0.03, 0, 0.5),
                point("pgd", 0.03, 1, 0.25),
                curve_point(0.06, 0, 0.25),
                curve_point(0.06, 1, 0.125),
            ],
            measures: Vec::new(),
            correlation: None,
            kinds: BTreeMap::new(),
            gaps: BTreeMap::new(),
            histories: [0.5, 0.75]
                .iter()
                .enumerate()
                .map(|(seed, acc)| crate::report::History {
                    key: ("d".into(), "cnn".into(), "t".into()),
                    seed: Some(seed as u64),
                    epochs: vec![record(1, *acc), record(2, acc + 0.125)],
                })
                .collect(),
        };
        let [plot] = &curves(&inputs)[..] else {
            panic!("one ε-curve plot")
        };
        let Figure::Curve { lines, .. } = &plot.figure else {
            panic!("a curve")
        };
        assert_eq!(
            lines,
            &[("cnn".to_string(), vec![(0.03, 37.5), (0.06, 18.75)])]
        );
        let [plot] = &histories(&inputs)[..] else {
            panic!("one history plot")
        };
        let Figure::History { panels, .. } = &plot.figure else {
            panic!("a history")
        };
        assert_eq!(
            panels[0].1,
            vec![("training batches", vec![(1.0, 62.5), (2.0, 75.0)])]
        );
    }
}
