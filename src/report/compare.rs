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

fn num(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{v:.4}"))
}

fn change(d: &Diff) -> String {
    match (d.old, d.new) {
        (None, Some(_)) => "added".into(),
        (Some(_), None) => "removed".into(),
        _ => d.change().map_or("–".into(), |c| format!("{c:+.4}")),
    }
}

/// The differences as aligned text (the terminal).
pub fn text(diffs: &[Diff]) -> String {
    let rows: Vec<[String; 6]> = diffs
        .iter()
        .map(|d| {
            [
                d.table.clone(),
                d.row.clone(),
                d.column.clone(),
                num(d.old),
                num(d.new),
                change(d),
            ]
        })
        .collect();
    let head = ["table", "row", "column", "old", "new", "change"].map(String::from);
    let mut w = head.clone().map(|h| h.chars().count());
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let mut s = String::new();
    for r in std::iter::once(&head).chain(&rows) {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let pad = w[i] - c.chars().count();
                if i >= 3 {
                    format!("{}{c}", " ".repeat(pad))
                } else {
                    format!("{c}{}", " ".repeat(pad))
                }
            })
            .collect();
        let _ = writeln!(s, "{}", line.join("  ").trim_end());
    }
    s
}

/// The differences as a Markdown table.
pub fn markdown(diffs: &[Diff], old: &str, new: &str) -> String {
    let mut s = format!(
        "# Report differences\n\nold: {old}\nnew: {new}\n\n| table | row | column | old | new | change |\n|---|---|---|---|---|---|\n"
    );
    for d in diffs {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} |",
            d.table,
            d.row,
            d.column,
            num(d.old),
            num(d.new),
            change(d)
        );
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
        let t = text(&d);
        assert!(t.contains("+0.5000"), "{t}");
        assert!(t.contains("added") && t.contains("removed"), "{t}");
        assert!(diff(&new, &new).is_empty());
    }
}
