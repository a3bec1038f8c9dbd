//! Paper tables from stage results: polars DataFrames written as CSV and Markdown.
use anyhow::{Context, Result};
use polars::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// One evaluation result, labelled with the spec names it came from.
#[derive(Debug, Clone)]
pub struct EvalResult {
    pub dataset: String,
    pub model: String,
    pub training: String,
    pub attack: String,
    pub split: String,
    pub n: usize,
    pub clean_accuracy: f64,
    pub robust_accuracy: f64,
}

#[derive(Debug, Clone)]
pub struct SparsityResult {
    pub dataset: String,
    pub model: String,
    pub training: String,
    pub hoyer: f64,
}

type RowKey = (String, String, String);

fn key_cols(keys: &[RowKey]) -> Vec<Column> {
    vec![
        Column::new(
            "dataset".into(),
            keys.iter().map(|k| k.0.as_str()).collect::<Vec<_>>(),
        ),
        Column::new(
            "model".into(),
            keys.iter().map(|k| k.1.as_str()).collect::<Vec<_>>(),
        ),
        Column::new(
            "training".into(),
            keys.iter().map(|k| k.2.as_str()).collect::<Vec<_>>(),
        ),
    ]
}

/// Test-split accuracy (%) per (dataset, model, training): `clean`, then one column per attack,
/// then `hoyer_sparsity` when the sparsity analysis ran.
pub fn robust_accuracy(evals: &[EvalResult], sparsity: &[SparsityResult]) -> Result<DataFrame> {
    let test: Vec<&EvalResult> = evals.iter().filter(|e| e.split == "test").collect();
    let keys: Vec<RowKey> = test
        .iter()
        .map(|e| (e.dataset.clone(), e.model.clone(), e.training.clone()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let attacks: BTreeSet<&str> = test.iter().map(|e| e.attack.as_str()).collect();
    let lookup: BTreeMap<(RowKey, &str), &EvalResult> = test
        .iter()
        .map(|e| {
            (
                (
                    (e.dataset.clone(), e.model.clone(), e.training.clone()),
                    e.attack.as_str(),
                ),
                *e,
            )
        })
        .collect();
    let mut cols = key_cols(&keys);
    let clean: Vec<Option<f64>> = keys
        .iter()
        .map(|k| {
            attacks
                .iter()
                .find_map(|a| lookup.get(&(k.clone(), *a)))
                .map(|e| 100.0 * e.clean_accuracy)
        })
        .collect();
    cols.push(Column::new("clean".into(), clean));
    for a in &attacks {
        if *a == "clean" {
            continue;
        }
        let v: Vec<Option<f64>> = keys
            .iter()
            .map(|k| {
                lookup
                    .get(&(k.clone(), *a))
                    .map(|e| 100.0 * e.robust_accuracy)
            })
            .collect();
        cols.push(Column::new((*a).into(), v));
    }
    if !sparsity.is_empty() {
        let s: BTreeMap<RowKey, f64> = sparsity
            .iter()
            .map(|s| {
                (
                    (s.dataset.clone(), s.model.clone(), s.training.clone()),
                    s.hoyer,
                )
            })
            .collect();
        cols.push(Column::new(
            "hoyer_sparsity".into(),
            keys.iter().map(|k| s.get(k).copied()).collect::<Vec<_>>(),
        ));
    }
    Ok(DataFrame::new(cols)?)
}

/// Robust accuracy (%) on train and test and their gap (train − test) per model and attack.
pub fn generalization_gap(evals: &[EvalResult]) -> Result<DataFrame> {
    let mut by: BTreeMap<(RowKey, String), (Option<f64>, Option<f64>)> = BTreeMap::new();
    for e in evals {
        let slot = by
            .entry((
                (e.dataset.clone(), e.model.clone(), e.training.clone()),
                e.attack.clone(),
            ))
            .or_default();
        let acc = Some(100.0 * e.robust_accuracy);
        if e.split == "train" {
            slot.0 = acc
        } else {
            slot.1 = acc
        }
    }
    let keys: Vec<RowKey> = by.keys().map(|(k, _)| k.clone()).collect();
    let mut cols = key_cols(&keys);
    cols.push(Column::new(
        "attack".into(),
        by.keys().map(|(_, a)| a.as_str()).collect::<Vec<_>>(),
    ));
    cols.push(Column::new(
        "train_accuracy".into(),
        by.values().map(|v| v.0).collect::<Vec<_>>(),
    ));
    cols.push(Column::new(
        "test_accuracy".into(),
        by.values().map(|v| v.1).collect::<Vec<_>>(),
    ));
    cols.push(Column::new(
        "gap".into(),
        by.values()
            .map(|v| v.0.zip(v.1).map(|(a, b)| a - b))
            .collect::<Vec<_>>(),
    ));
    Ok(DataFrame::new(cols)?)
}

pub fn write_csv(df: &mut DataFrame, path: &Path) -> Result<()> {
    let mut f =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    CsvWriter::new(&mut f).include_header(true).finish(df)?;
    Ok(())
}

/// A GitHub-flavoured Markdown table; floats with two decimals, missing values as `–`.
pub fn to_markdown(df: &DataFrame) -> Result<String> {
    let names: Vec<String> = df
        .get_column_names()
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut out = format!(
        "| {} |\n|{}\n",
        names.join(" | "),
        names.iter().map(|_| "---|").collect::<String>()
    );
    for i in 0..df.height() {
        let cells: Vec<String> = df
            .get_columns()
            .iter()
            .map(|c| match c.get(i) {
                Ok(AnyValue::Null) => "–".to_string(),
                Ok(AnyValue::Float64(v)) => format!("{v:.2}"),
                Ok(AnyValue::String(s)) => s.to_string(),
                Ok(v) => v.to_string(),
                Err(_) => "?".to_string(),
            })
            .collect();
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(model: &str, attack: &str, split: &str, robust: f64) -> EvalResult {
        EvalResult {
            dataset: "d".into(),
            model: model.into(),
            training: "t".into(),
            attack: attack.into(),
            split: split.into(),
            n: 10,
            clean_accuracy: 0.9,
            robust_accuracy: robust,
        }
    }

    #[test]
    fn tables_have_the_paper_layout() {
        let evals = vec![
            ev("cnn", "clean", "test", 0.9),
            ev("cnn", "pgd", "test", 0.4),
            ev("cnn", "pgd", "train", 0.6),
            ev("vit", "pgd", "test", 0.3),
        ];
        let ra = robust_accuracy(
            &evals,
            &[SparsityResult {
                dataset: "d".into(),
                model: "cnn".into(),
                training: "t".into(),
                hoyer: 0.25,
            }],
        )
        .unwrap();
        assert_eq!(
            ra.get_column_names(),
            [
                "dataset",
                "model",
                "training",
                "clean",
                "pgd",
                "hoyer_sparsity"
            ]
        );
        assert_eq!(ra.height(), 2);
        let md = to_markdown(&ra).unwrap();
        assert!(
            md.contains("| d | cnn | t | 90.00 | 40.00 | 0.25 |"),
            "{md}"
        );
        assert!(md.contains("| d | vit | t | 90.00 | 30.00 | – |"), "{md}");
        let gap = generalization_gap(&evals).unwrap();
        let md = to_markdown(&gap).unwrap();
        assert!(
            md.contains("| d | cnn | t | pgd | 60.00 | 40.00 | 20.00 |"),
            "{md}"
        );
        assert!(md.contains("| d | vit | t | pgd | – | 30.00 | – |"), "{md}");
    }
}
