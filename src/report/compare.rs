//! The report's numbers as cells (table, row, column, value), saved beside every report as
//! `cells.json`, and the differences between two reports (`robarch report P --compare Q`), as
//! `dvc metrics diff` shows metrics.
use super::study::mean_std;
use super::Built;
use anyhow::Result;
use polars::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write;

/// Every numeric cell of a report.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Cells {
    /// (table, row, column, value); a row is its labels joined with `/`.
    pub cells: Vec<(String, String, String, Option<f64>)>,
}

impl Cells {
    /// Adds the cells of table `file`: study tables by their means, long tables by every numeric
    /// column, rows named by their text columns and seed.
    pub fn add(&mut self, file: &str, built: &Built, df: &DataFrame) {
        match built {
            Built::Study(t) => {
                for (r, row) in t.rows.iter().enumerate() {
                    let mut id = vec![row.dataset.clone(), row.training.clone()];
                    id.extend(row.labels.iter().cloned());
                    let id = id.join("/");
                    for c in &t.cols {
                        let v = mean_std(&c.cells[r]).map(|m| m.0);
                        self.cells.push((file.into(), id.clone(), c.flat_name(), v));
                    }
                }
            }
            Built::Long(_) => {
                // A row is named by its text columns and its seed (`seed-N`, where seeds repeat).
                let is_id = |c: &Column| {
                    c.dtype() == &DataType::String || c.name().as_str() == super::SEED_COLUMN
                };
                let text: Vec<&Column> = df.get_columns().iter().filter(|c| is_id(c)).collect();
                let nums: Vec<&Column> = df
                    .get_columns()
                    .iter()
                    .filter(|c| !is_id(c) && c.dtype().is_primitive_numeric())
                    .collect();
                for i in 0..df.height() {
                    let id: Vec<String> = text
                        .iter()
                        .map(|c| match c.get(i) {
                            Ok(AnyValue::String(s)) => s.to_string(),
                            Ok(v) if c.name().as_str() == super::SEED_COLUMN => v
                                .extract::<u64>()
                                .map_or_else(String::new, |s| format!("seed-{s}")),
                            _ => String::new(),
                        })
                        .collect();
                    let id = id.join("/");
                    for c in &nums {
                        let v = c.get(i).ok().and_then(|v| v.extract::<f64>());
                        self.cells
                            .push((file.into(), id.clone(), c.name().to_string(), v));
                    }
                }
            }
        }
    }
}

/// One cell that differs between two reports (`None`: absent or missing on that side).
#[derive(Debug, Clone, PartialEq)]
pub struct Diff {
    pub table: String,
    pub row: String,
    pub column: String,
    pub old: Option<f64>,
    pub new: Option<f64>,
}

impl Diff {
    pub fn change(&self) -> Option<f64> {
        self.old.zip(self.new).map(|(a, b)| b - a)
    }
}

/// The cells that differ (beyond rounding at 1e-9), were added or were removed, in table order.
pub fn diff(old: &Cells, new: &Cells) -> Vec<Diff> {
    let key = |c: &(String, String, String, Option<f64>)| (c.0.clone(), c.1.clone(), c.2.clone());
    let before: BTreeMap<_, Option<f64>> = old.cells.iter().map(|c| (key(c), c.3)).collect();
    let after: BTreeMap<_, Option<f64>> = new.cells.iter().map(|c| (key(c), c.3)).collect();
    let mut out = Vec::new();
    let same = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0),
        (None, None) => true,
        _ => false,
    };
    for c in &new.cells {
        let k = key(c);
        match before.get(&k) {
            Some(&o) if same(o, c.3) => {}
            o => out.push(Diff {
                table: k.0,
                row: k.1,
                column: k.2,
                old: o.copied().flatten(),
                new: c.3,
            }),
        }
    }
    for c in &old.cells {
        let k = key(c);
        if !after.contains_key(&k) && c.3.is_some() {
            out.push(Diff {
                table: k.0,
                row: k.1,
                column: k.2,
                old: c.3,
                new: None,
            });
        }
    }
    out
}

/// Decimals a table shows its values with: the study's percent tables 2, its other layouts 3,
/// the long tables 2.
pub fn decimals(table: &str) -> usize {
    match table {
        "sparsity_by_layer" | "bounds" | "correlation_matrix" => 3,
        _ => 2,
    }
}

fn num(v: Option<f64>, d: usize) -> String {
    v.map_or("–".into(), |v| format!("{v:.d$}"))
}

fn change(x: &Diff, d: usize) -> String {
    match (x.old, x.new) {
        (None, Some(_)) => "added".into(),
        (Some(_), None) => "removed".into(),
        _ => x.change().map_or("–".into(), |c| format!("{c:+.d$}")),
    }
}

/// The differences grouped by table, in table order: (table, its differences).
pub fn by_table(diffs: &[Diff]) -> Vec<(&str, Vec<&Diff>)> {
    let mut out: Vec<(&str, Vec<&Diff>)> = Vec::new();
    for d in diffs {
        match out.iter_mut().find(|(t, _)| *t == d.table) {
            Some((_, v)) => v.push(d),
            None => out.push((d.table.as_str(), vec![d])),
        }
    }
    out
}

/// What changed, in a line or a few: the spec's settings when both sides recorded theirs
/// (`spec`: flattened `path → value`), and the architectures and attacks added or removed (from
/// the accuracy table's rows and columns).
pub fn headline(
    old: &Cells,
    new: &Cells,
    spec: Option<(&BTreeMap<String, String>, &BTreeMap<String, String>)>,
) -> Vec<String> {
    let mut out = Vec::new();
    if let Some((a, b)) = spec {
        let mut changed = Vec::new();
        for (k, v) in b {
            match a.get(k) {
                None => changed.push(format!("`{k}` added: {v}")),
                Some(o) if o != v => changed.push(format!("`{k}` {o} → {v}")),
                _ => {}
            }
        }
        for k in a.keys().filter(|k| !b.contains_key(*k)) {
            changed.push(format!("`{k}` removed"));
        }
        if changed.is_empty() {
            out.push("spec: unchanged".into());
        } else {
            out.push(format!("spec: {}", changed.join("; ")));
        }
    }
    // Architectures (rows) and attacks (column groups) of the accuracy table.
    let parts = |c: &Cells| {
        let mut models = std::collections::BTreeSet::new();
        let mut attacks = std::collections::BTreeSet::new();
        for (t, row, col, _) in &c.cells {
            if t == "accuracy_by_attack" {
                models.insert(row.rsplit('/').next().unwrap_or(row).to_string());
                attacks.insert(col.split('/').next().unwrap_or(col).to_string());
            }
        }
        (models, attacks)
    };
    let ((m0, a0), (m1, a1)) = (parts(old), parts(new));
    for (what, before, after) in [("architectures", &m0, &m1), ("attacks", &a0, &a1)] {
        let added: Vec<&String> = after.difference(before).collect();
        let removed: Vec<&String> = before.difference(after).collect();
        let list = |v: &[&String]| {
            v.iter()
                .map(|s| format!("`{s}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if !added.is_empty() {
            out.push(format!("{what} added: {}", list(&added)));
        }
        if !removed.is_empty() {
            out.push(format!("{what} removed: {}", list(&removed)));
        }
    }
    out
}

/// The differences as aligned text per table (the terminal), each table's values at its
/// precision and at most `per_table` rows of it.
pub fn text(diffs: &[Diff], per_table: usize) -> String {
    let mut s = String::new();
    for (table, ds) in by_table(diffs) {
        let d = decimals(table);
        let _ = writeln!(s, "{table}: {} differ", ds.len());
        let rows: Vec<[String; 5]> = ds
            .iter()
            .take(per_table)
            .map(|x| {
                [
                    x.row.clone(),
                    x.column.clone(),
                    num(x.old, d),
                    num(x.new, d),
                    change(x, d),
                ]
            })
            .collect();
        let head = ["row", "column", "old", "new", "change"].map(String::from);
        let mut w = head.clone().map(|h| h.chars().count());
        for r in &rows {
            for (i, c) in r.iter().enumerate() {
                w[i] = w[i].max(c.chars().count());
            }
        }
        for r in std::iter::once(&head).chain(&rows) {
            let line: Vec<String> = r
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let pad = w[i] - c.chars().count();
                    if i >= 2 {
                        format!("{}{c}", " ".repeat(pad))
                    } else {
                        format!("{c}{}", " ".repeat(pad))
                    }
                })
                .collect();
            let _ = writeln!(s, "  {}", line.join("  ").trim_end());
        }
        if ds.len() > per_table {
            let _ = writeln!(s, "  … and {} more (compare.md)", ds.len() - per_table);
        }
    }
    s
}

/// The differences as Markdown: the headline, then a table per report table.
pub fn markdown(diffs: &[Diff], old: &str, new: &str, headline: &[String]) -> String {
    let mut s = format!("# Report differences\n\nold: {old}\nnew: {new}\n\n");
    for h in headline {
        let _ = writeln!(s, "- {h}");
    }
    for (table, ds) in by_table(diffs) {
        let d = decimals(table);
        let _ = write!(
            s,
            "\n## {table}\n\n| row | column | old | new | change |\n|---|---|---|---|---|\n"
        );
        for x in ds {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} |",
                x.row,
                x.column,
                num(x.old, d),
                num(x.new, d),
                change(x, d)
            );
        }
    }
    s
}

/// The differences as a DataFrame (written as CSV).
pub fn frame(diffs: &[Diff]) -> Result<DataFrame> {
    let s = |f: fn(&Diff) -> String| diffs.iter().map(f).collect::<Vec<_>>();
    let v = |f: fn(&Diff) -> Option<f64>| diffs.iter().map(f).collect::<Vec<_>>();
    Ok(DataFrame::new(vec![
        Column::new("table".into(), s(|d| d.table.clone())),
        Column::new("row".into(), s(|d| d.row.clone())),
        Column::new("column".into(), s(|d| d.column.clone())),
        Column::new("old".into(), v(|d| d.old)),
        Column::new("new".into(), v(|d| d.new)),
        Column::new("change".into(), v(|d| d.change())),
    ])?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cells(v: &[(&str, f64)]) -> Cells {
        Cells {
            cells: v
                .iter()
                .map(|(c, x)| ("t".into(), "d/t/m".into(), c.to_string(), Some(*x)))
                .collect(),
        }
    }

    #[test]
    fn the_headline_says_what_changed_in_the_spec_and_the_tables() {
        let acc = |rows: &[(&str, &str)]| Cells {
            cells: rows
                .iter()
                .map(|(m, a)| {
                    (
                        "accuracy_by_attack".to_string(),
                        format!("d/t/{m}"),
                        format!("{a}/test"),
                        Some(1.0),
                    )
                })
                .collect(),
        };
        let old = acc(&[("cnn", "pgd"), ("vit", "pgd")]);
        let new = acc(&[("cnn", "pgd"), ("cnn", "mim")]);
        let spec = |v: &[(&str, &str)]| -> BTreeMap<String, String> {
            v.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        let (a, b) = (
            spec(&[("optimizer.lr", "0.002"), ("models.vit.preset", "tiny")]),
            spec(&[("optimizer.lr", "0.001"), ("evaluation.attacks.mim.eps", "8/255")]),
        );
        let h = headline(&old, &new, Some((&a, &b)));
        assert_eq!(
            h,
            [
                "spec: `evaluation.attacks.mim.eps` added: 8/255; `optimizer.lr` 0.002 → 0.001; `models.vit.preset` removed",
                "architectures removed: `vit`",
                "attacks added: `mim`",
            ]
        );
        assert!(headline(&old, &old, None).is_empty());
    }

    #[test]
    fn diff_lists_changed_added_and_removed_cells_only() {
        let old = cells(&[("a", 1.0), ("b", 2.0), ("gone", 3.0)]);
        let new = cells(&[("a", 1.0), ("b", 2.5), ("new", 4.0)]);
        let d = diff(&old, &new);
        assert_eq!(d.len(), 3, "{d:?}");
        assert_eq!(d[0].column, "b");
        assert_eq!(d[0].change(), Some(0.5));
        assert_eq!(
            (d[1].column.as_str(), d[1].old, d[1].new),
            ("new", None, Some(4.0))
        );
        assert_eq!(
            (d[2].column.as_str(), d[2].old, d[2].new),
            ("gone", Some(3.0), None)
        );
        let t = text(&d, 10);
        assert!(t.starts_with("t: 3 differ\n"), "{t}");
        assert!(t.contains("+0.50"), "{t}");
        assert!(t.contains("added") && t.contains("removed"), "{t}");
        assert!(text(&d, 1).contains("… and 2 more"), "{}", text(&d, 1));
        assert!(diff(&new, &new).is_empty());
    }
}
