//! What a pipeline's author sees when the file is not YAML (the line, a caret under the column, and
//! the likely cause) or names a field where it does not belong (where it does).

/// The source line of `line` (1-based) with a caret under `col` (1-based), indented to sit under
/// an error line: `   6 |    epochs: 3` / `     |    ^`. Tabs show as `→` so the caret stays
/// aligned; a long line is cut around the column.
pub fn excerpt(source: &str, line: usize, col: usize) -> Option<String> {
    let text = source.lines().nth(line.checked_sub(1)?)?;
    let chars: Vec<char> = text
        .chars()
        .map(|c| if c == '\t' { '→' } else { c })
        .filter(|c| !c.is_control())
        .collect();
    let col = col.max(1).min(chars.len() + 1);
    // At most 100 characters, starting 60 before the column where the line is longer.
    let start = col.saturating_sub(60).min(chars.len().saturating_sub(100));
    let shown: String = chars.iter().skip(start).take(100).collect();
    let gutter = line.to_string();
    Some(format!(
        "    {gutter} | {}{shown}\n    {} | {}^",
        if start > 0 { "…" } else { "" },
        " ".repeat(gutter.len()),
        " ".repeat(col - 1 - start + usize::from(start > 0)),
    ))
}

/// The likely cause of a YAML syntax error at `line`:`col` with libyaml's `msg`, as a fix.
pub fn cause(source: &str, line: usize, col: usize, msg: &str) -> Option<String> {
    let text = source.lines().nth(line.checked_sub(1)?).unwrap_or("");
    let at = text.chars().nth(col.saturating_sub(1));
    let indent: String = text.chars().take_while(|c| c.is_whitespace()).collect();
    // A tab anywhere in the indentation of this line or the one before it.
    let tabbed = (line.saturating_sub(1)..=line).find(|&n| {
        n > 0
            && source.lines().nth(n - 1).is_some_and(|t| {
                t.chars()
                    .take_while(|c| c.is_whitespace())
                    .any(|c| c == '\t')
            })
    });
    if at == Some('\t') || tabbed.is_some() {
        let n = tabbed.unwrap_or(line);
        return Some(format!(
            "YAML indents with spaces, never tabs: replace the tab on line {n} with spaces"
        ));
    }
    let before = col.checked_sub(2).and_then(|i| text.chars().nth(i));
    if matches!(at, Some('*' | '&'))
        || matches!(before, Some('*' | '&'))
        || msg.contains("alias")
        || msg.contains("anchor")
        || msg.contains("alphabetic or numeric")
    {
        return Some(
            "`*` and `&` start YAML aliases and anchors: quote a value that begins with one (`\"*\"`)"
                .into(),
        );
    }
    if matches!(at, Some('@' | '`' | '%')) {
        return Some(format!(
            "`{}` cannot start a plain YAML value: quote the value",
            at.unwrap_or('@')
        ));
    }
    if msg.contains("could not find expected ':'") || msg.contains("mapping values are not allowed")
    {
        // `method standard` above `epochs: 2`: the line above is a key without its colon.
        let above = (1..line).rev().find_map(|n| {
            let t = source.lines().nth(n - 1)?.trim();
            (!t.is_empty() && !t.starts_with('#')).then_some((n, t))
        });
        if let Some((n, t)) = above.filter(|(_, t)| !t.contains(':') && !t.starts_with('-')) {
            let t: String = t.chars().filter(|c| !c.is_control()).collect();
            return Some(format!(
                "line {n} `{t}` has no colon: write it as `key: value`"
            ));
        }
        return Some(if msg.contains("could not find expected ':'") {
            "a key needs a colon and a space after it (`epochs: 3`); a value holding `: ` or ` #` needs quotes".into()
        } else {
            "a value holding `: ` needs quotes (`\"a: b\"`), or this line is indented under a key that already has a value".into()
        });
    }
    if msg.contains("did not find expected") || msg.contains("indentation") {
        return Some(format!(
            "check the indentation: the keys of one mapping start in the same column, deeper than their parent's; line {line} starts at column {}",
            indent.chars().count() + 1
        ));
    }
    if msg.contains("duplicate") {
        return Some("each key may appear once in a mapping: remove or rename one".into());
    }
    None
}

/// Where a field the spec knows belongs, for one written at the wrong level (`epochs` at the top,
/// `preset` in a training entry, `overrides` outside one).
pub fn home(field: &str) -> Option<&'static str> {
    Some(match field {
        "epochs" | "batch_size" | "optimizer" | "schedule" | "method" | "attack_mode"
        | "augment" | "beta" | "label_smoothing" | "grad_clip" | "monitor" | "amp"
        | "channels_last" | "recipe" => "in a training entry, `training.<name>`",
        "overrides" => "in a training entry, `training.<name>.overrides.<model or kind>`",
        "preset" | "arch" | "file" | "weights" | "normalize" | "kwargs" | "range" | "expect" => {
            "in a model entry, `models.<name>`"
        }
        "attacks" | "splits" | "only" | "groups" | "checkpoint" => "under `evaluation`",
        "source" | "resolution" | "crop_pct" | "test_fraction" | "val_fraction" | "synthetic" => {
            "in a dataset entry, `datasets.<name>`"
        }
        "tables" | "formats" | "plots" | "html" => "under `report`",
        "slurm" | "stall_minutes" => "under `executor`",
        "sparsity" | "bounds" | "flatness" | "correlation" => "under `analysis`",
        "name" | "seeds" | "device" | "numerics" | "datasets" | "models" | "training"
        | "evaluation" | "analysis" | "report" | "executor" => "at the top of the file",
        _ => return None,
    })
}

/// For serde's "unknown field `x`…" at `path`: [`misplaced`].
pub fn misplaced_hint(msg: &str, path: &[String]) -> Option<String> {
    let field = msg.split("unknown field `").nth(1)?.split('`').next()?;
    misplaced(field, path)
}

/// For an unknown `field` at `path` (the fields above it, outermost first): where it belongs, when
/// that is somewhere else.
pub fn misplaced(field: &str, path: &[String]) -> Option<String> {
    let home = home(field)?;
    let same = match path.first() {
        None => home == "at the top of the file",
        Some(top) => home.contains(&format!("`{top}")),
    };
    (!same).then(|| {
        format!("`{field}` belongs {home}, not here; docs/spec.md lists each section's fields")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_caret_sits_under_the_column_and_tabs_keep_it_aligned() {
        let src = "a: 1\n\tb: 2\n";
        assert_eq!(excerpt(src, 2, 1).unwrap(), "    2 | →b: 2\n      | ^");
        assert_eq!(excerpt(src, 1, 4).unwrap(), "    1 | a: 1\n      |    ^");
        let long = format!("k: {}x", "y".repeat(200));
        let e = excerpt(&long, 1, 204).unwrap();
        let (text, caret) = e.split_once('\n').unwrap();
        let x = text.chars().position(|c| c == 'x').unwrap();
        assert_eq!(caret.chars().position(|c| c == '^'), Some(x), "{e}");
        assert!(excerpt(src, 9, 1).is_none());
    }

    #[test]
    fn causes_name_tabs_aliases_colons_and_indentation() {
        let tab = "a:\n\tb: 1\n";
        assert!(
            cause(tab, 2, 1, "found character that cannot start any token")
                .unwrap()
                .contains("tab on line 2")
        );
        assert!(cause(
            "only: *\n",
            1,
            7,
            "did not find expected alphabetic or numeric character"
        )
        .unwrap()
        .contains("quote"));
        assert!(
            cause("a:\n  b\n  c: 1\n", 3, 4, "could not find expected ':'")
                .unwrap()
                .contains("colon")
        );
        assert!(cause(
            "t:\n  method standard\n  epochs: 2\n",
            3,
            9,
            "mapping values are not allowed in this context"
        )
        .unwrap()
        .contains("line 2 `method standard` has no colon"));
        assert!(
            cause("a:\n  b: 1\n c: 2\n", 3, 2, "did not find expected key")
                .unwrap()
                .contains("line 3 starts at column 2")
        );
    }

    #[test]
    fn misplaced_fields_say_where_they_belong_and_known_places_say_nothing() {
        let m = |msg: &str, path: &[&str]| {
            misplaced_hint(msg, &path.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        };
        assert!(m("unknown field `epochs`, expected one of `name`", &[])
            .unwrap()
            .contains("training.<name>"));
        assert!(m("unknown field `preset`, expected", &["training", "at"])
            .unwrap()
            .contains("models.<name>"));
        assert!(m("unknown field `epochs`, expected", &["models", "resnet18"]).is_some());
        assert_eq!(m("unknown field `epochs`", &["training", "at"]), None);
        assert_eq!(m("unknown field `epoch`", &[]), None);
    }
}
