//! The report's text formats: Markdown, LaTeX (booktabs) and HTML, for the study tables
//! ([`StudyTable`]) and for the long tables (plain DataFrames).
use super::labels::label;
use super::study::{kind_title, StudyTable};
use anyhow::Result;
use polars::prelude::*;
use std::fmt::Write;

/// A DataFrame cell as text: floats with two decimals, missing values as `–` (`missing`).
fn any_text(v: AnyValue, missing: &str) -> String {
    match v {
        AnyValue::Null => missing.to_string(),
        AnyValue::Float64(v) => format!("{v:.2}"),
        AnyValue::String(s) => s.to_string(),
        v => v.to_string(),
    }
}

fn frame_rows(df: &DataFrame, missing: &str) -> Vec<Vec<String>> {
    (0..df.height())
        .map(|i| {
            df.get_columns()
                .iter()
                .map(|c| {
                    c.get(i)
                        .map(|v| any_text(v, missing))
                        .unwrap_or_else(|_| "?".into())
                })
                .collect()
        })
        .collect()
}

/// The columns' human labels ([`super::labels`]).
fn names(df: &DataFrame) -> Vec<String> {
    df.get_column_names()
        .iter()
        .map(|s| super::labels::label(s).into_owned())
        .collect()
}

/// A GitHub-flavoured Markdown table; floats with two decimals, missing values as `–`.
pub fn frame_markdown(df: &DataFrame) -> Result<String> {
    let names = names(df);
    let mut out = format!(
        "| {} |\n|{}\n",
        names.join(" | "),
        names.iter().map(|_| "---|").collect::<String>()
    );
    for cells in frame_rows(df, "–") {
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    Ok(out)
}

/// Escapes LaTeX's special characters; characters outside ASCII become `?` (pdflatex's default
/// input encoding reads ASCII safely).
pub fn tex_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '\\' => o.push_str("\\textbackslash{}"),
            '&' | '%' | '$' | '#' | '_' | '{' | '}' => {
                o.push('\\');
                o.push(ch)
            }
            '~' => o.push_str("\\textasciitilde{}"),
            '^' => o.push_str("\\textasciicircum{}"),
            // Math mode: pdflatex's default (OT1) font encoding has no text `<`, `>`, `|`.
            '<' | '>' | '|' => {
                o.push('$');
                o.push(ch);
                o.push('$')
            }
            '–' | '−' => o.push('-'),
            'ℓ' => o.push_str("$\\ell$"),
            'τ' => o.push_str("$\\tau$"),
            'ρ' => o.push_str("$\\rho$"),
            'ε' => o.push_str("$\\varepsilon$"),
            'Δ' => o.push_str("$\\Delta$"),
            '∞' => o.push_str("$\\infty$"),
            '±' => o.push_str("$\\pm$"),
            c if c.is_ascii() => o.push(c),
            _ => o.push('?'),
        }
    }
    o
}

/// Wraps a tabular in a `\resizebox` (graphicx) that shrinks it to the line width when it is
/// wider, and leaves it at its natural size otherwise.
fn fit(tabular: String) -> String {
    format!("\\resizebox{{\\ifdim\\width>\\linewidth\\linewidth\\else\\width\\fi}}{{!}}{{%\n{tabular}}}\n")
}

/// Rows per LaTeX table: a longer one continues in another table (on its own page), so
/// every page stays readable and one pdflatex pass lays it out (no `longtable`).
const LONG_ROWS: usize = 40;
/// Value columns per LaTeX table: a wider one (the analysis table's twenty-odd measures) is
/// split into parts that repeat the row's identifying columns, readable at print size.
const WIDE_COLS: usize = 8;

/// A long table as booktabs `table`s (no bold: its columns are not comparable values): the
/// identifying (text) columns, then at most [`WIDE_COLS`] value columns and [`LONG_ROWS`] rows
/// per part, each part captioned with its place.
pub fn frame_latex(df: &DataFrame, caption: &str) -> Result<String> {
    let names = names(df);
    let numeric: Vec<bool> = df
        .get_columns()
        .iter()
        .map(|c| c.dtype().is_primitive_numeric())
        .collect();
    // The leading text columns identify a row; every part repeats them.
    let keys = numeric.iter().take_while(|n| !**n).count();
    let values: Vec<usize> = (keys..names.len()).collect();
    let col_parts: Vec<&[usize]> = if values.is_empty() {
        vec![&[]]
    } else {
        values.chunks(WIDE_COLS).collect()
    };
    let rows = frame_rows(df, "--");
    let row_parts: Vec<&[Vec<String>]> = if rows.is_empty() {
        vec![&[]]
    } else {
        rows.chunks(LONG_ROWS).collect()
    };
    let total = col_parts.len() * row_parts.len();
    let mut out = String::new();
    let mut part = 0;
    for cols in &col_parts {
        let shown: Vec<usize> = (0..keys).chain(cols.iter().copied()).collect();
        let align: String = shown
            .iter()
            .map(|&c| if numeric[c] { 'r' } else { 'l' })
            .collect();
        let head: Vec<String> = shown.iter().map(|&c| tex_escape(&names[c])).collect();
        for chunk in &row_parts {
            part += 1;
            let mut body = String::new();
            for cells in chunk.iter() {
                let cells: Vec<String> = shown.iter().map(|&c| tex_escape(&cells[c])).collect();
                writeln!(body, "{} \\\\", cells.join(" & "))?;
            }
            let t = format!(
                "\\begin{{tabular}}{{{align}}}\n\\toprule\n{} \\\\\n\\midrule\n{body}\\bottomrule\n\\end{{tabular}}\n",
                head.join(" & ")
            );
            let caption = if total > 1 {
                format!("{caption} (part {part} of {total})")
            } else {
                caption.to_string()
            };
            writeln!(
                out,
                "\\begin{{table}}[ht]\n\\centering\n\\small\n\\caption{{{}}}\n{}\\end{{table}}",
                tex_escape(&caption),
                fit(t)
            )?;
            if part < total {
                out.push_str("\\clearpage\n");
            }
        }
    }
    Ok(out)
}

/// The header spans of grouped columns: (group, first column, count).
fn spans(t: &StudyTable) -> Vec<(Option<String>, usize, usize)> {
    let mut out: Vec<(Option<String>, usize, usize)> = Vec::new();
    for (i, c) in t.cols.iter().enumerate() {
        match out.last_mut() {
            Some((g, _, n)) if *g == c.group && g.is_some() => *n += 1,
            _ => out.push((c.group.clone(), i, 1)),
        }
    }
    out
}

/// One booktabs table per (dataset, training) block: grouped column headings over `\cmidrule`s,
/// a kind heading row before each kind's architectures, the best value of each column in bold,
/// mean ± std where seeds repeat.
pub fn study_latex(t: &StudyTable) -> Result<String> {
    let mut out = String::new();
    let best: Vec<_> = (0..t.cols.len()).map(|c| t.best(c)).collect();
    let nlab = t.row_names.len();
    let ncols = nlab + t.cols.len();
    let grouped = t.cols.iter().any(|c| c.group.is_some());
    for ((dataset, training), ix) in t.blocks() {
        let mut s = format!(
            "\\begin{{tabular}}{{{}{}}}\n\\toprule\n",
            "l".repeat(nlab),
            "r".repeat(t.cols.len())
        );
        if grouped {
            let mut heads = vec![String::new(); nlab];
            let mut rules = String::new();
            for (g, first, n) in spans(t) {
                let g = g.map(|g| tex_escape(&label(&g))).unwrap_or_default();
                heads.push(if n > 1 {
                    format!("\\multicolumn{{{n}}}{{c}}{{{g}}}")
                } else {
                    g
                });
                if n > 1 {
                    let a = nlab + first + 1;
                    write!(rules, "\\cmidrule(lr){{{a}-{}}}", a + n - 1)?;
                }
            }
            writeln!(s, "{} \\\\", heads.join(" & "))?;
            if !rules.is_empty() {
                writeln!(s, "{rules}")?;
            }
        }
        let mut head: Vec<String> = t.row_names.iter().map(|n| tex_escape(&label(n))).collect();
        head.extend(t.cols.iter().map(|c| tex_escape(&label(&c.name))));
        writeln!(s, "{} \\\\\n\\midrule", head.join(" & "))?;
        let mut section: Option<&str> = None;
        for &r in &ix {
            let row = &t.rows[r];
            if let Some(k) = row.section.as_deref() {
                if section != Some(k) {
                    if section.is_some() {
                        s.push_str("\\midrule\n");
                    }
                    writeln!(
                        s,
                        "\\multicolumn{{{ncols}}}{{l}}{{\\textit{{{}}}}} \\\\",
                        tex_escape(kind_title(k))
                    )?;
                    section = Some(k);
                }
            }
            let mut cells: Vec<String> = row.labels.iter().map(|l| tex_escape(l)).collect();
            for (c, b) in best.iter().enumerate() {
                cells.push(match t.cell_text(c, r, " \\pm ") {
                    None => "--".into(),
                    Some(v) if b.contains(&r) => format!("$\\mathbf{{{v}}}$"),
                    Some(v) => format!("${v}$"),
                });
            }
            writeln!(s, "{} \\\\", cells.join(" & "))?;
        }
        s.push_str("\\bottomrule\n\\end{tabular}\n");
        writeln!(
            out,
            "\\begin{{table}}[ht]\n\\centering\n\\small\n\\caption{{{} --- {}, {}}}\n{}\\end{{table}}\n",
            tex_escape(t.title),
            tex_escape(&dataset),
            tex_escape(&training),
            fit(s)
        )?;
    }
    Ok(out)
}

/// A Markdown table with `dataset`, `training` and `kind` columns; the best value of each column
/// per block in bold, mean ± std where seeds repeat.
pub fn study_markdown(t: &StudyTable) -> Result<String> {
    let best: Vec<_> = (0..t.cols.len()).map(|c| t.best(c)).collect();
    let sections = t.rows.iter().any(|r| r.section.is_some());
    let mut head: Vec<String> = vec!["Dataset".into(), "Training".into()];
    if sections {
        head.push("Kind".into());
    }
    head.extend(t.row_names.iter().map(|s| label(s).into_owned()));
    head.extend(t.cols.iter().map(|c| match &c.group {
        Some(g) => format!("{}/{}", label(g), label(&c.name)),
        None => label(&c.name).into_owned(),
    }));
    let mut out = format!(
        "| {} |\n|{}\n",
        head.join(" | "),
        head.iter().map(|_| "---|").collect::<String>()
    );
    for (r, row) in t.rows.iter().enumerate() {
        let mut cells = vec![row.dataset.clone(), row.training.clone()];
        if sections {
            cells.push(row.section.clone().unwrap_or_default());
        }
        cells.extend(row.labels.iter().cloned());
        for (c, b) in best.iter().enumerate() {
            cells.push(match t.cell_text(c, r, " ± ") {
                None => "–".into(),
                Some(v) if b.contains(&r) => format!("**{v}**"),
                Some(v) => v,
            });
        }
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    Ok(out)
}

/// Escapes text for HTML.
pub fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A study table as HTML: one table per block, grouped headings, kind rows, best in bold.
pub fn study_html(t: &StudyTable) -> Result<String> {
    let best: Vec<_> = (0..t.cols.len()).map(|c| t.best(c)).collect();
    let nlab = t.row_names.len();
    let mut out = String::new();
    for ((dataset, training), ix) in t.blocks() {
        write!(
            out,
            "<table class=\"study\" data-table=\"{}\">\n<caption>{} — {}, {}</caption>\n<thead>\n",
            t.file,
            html_escape(t.title),
            html_escape(&dataset),
            html_escape(&training)
        )?;
        if t.cols.iter().any(|c| c.group.is_some()) {
            write!(out, "<tr><th colspan=\"{nlab}\"></th>")?;
            for (g, _, n) in spans(t) {
                write!(
                    out,
                    "<th colspan=\"{n}\" class=\"group\">{}</th>",
                    html_escape(&g.map(|g| label(&g).into_owned()).unwrap_or_default())
                )?;
            }
            out.push_str("</tr>\n");
        }
        out.push_str("<tr>");
        for n in &t.row_names {
            write!(out, "<th>{}</th>", html_escape(&label(n)))?;
        }
        for c in &t.cols {
            write!(out, "<th>{}</th>", html_escape(&label(&c.name)))?;
        }
        out.push_str("</tr>\n</thead>\n<tbody>\n");
        let mut section: Option<&str> = None;
        for &r in &ix {
            let row = &t.rows[r];
            if let Some(k) = row.section.as_deref() {
                if section != Some(k) {
                    writeln!(
                        out,
                        "<tr class=\"kind\"><td colspan=\"{}\">{}</td></tr>",
                        nlab + t.cols.len(),
                        html_escape(kind_title(k))
                    )?;
                    section = Some(k);
                }
            }
            out.push_str("<tr>");
            for l in &row.labels {
                write!(out, "<td>{}</td>", html_escape(l))?;
            }
            for (c, b) in best.iter().enumerate() {
                match t.cell_text(c, r, " ± ") {
                    None => out.push_str("<td class=\"na\">–</td>"),
                    Some(v) if b.contains(&r) => write!(out, "<td class=\"best\">{v}</td>")?,
                    Some(v) => write!(out, "<td>{v}</td>")?,
                }
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</tbody>\n</table>\n");
    }
    Ok(out)
}

/// A long table as HTML.
pub fn frame_html(df: &DataFrame, file: &str, caption: &str) -> Result<String> {
    let mut out = format!(
        "<table class=\"long\" data-table=\"{file}\">\n<caption>{}</caption>\n<thead><tr>",
        html_escape(caption)
    );
    for n in names(df) {
        write!(out, "<th>{}</th>", html_escape(&n))?;
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for cells in frame_rows(df, "–") {
        out.push_str("<tr>");
        for c in cells {
            write!(out, "<td>{}</td>", html_escape(&c))?;
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n</table>\n");
    Ok(out)
}

/// A standalone LaTeX document that inputs every table fragment (`pdflatex report.tex`).
pub fn latex_document(title: &super::Title, fragments: &[String]) -> String {
    let mut s = String::from(
        "% Generated by robarch report: every table of the report. Compile with `pdflatex report.tex`;\n\
         % each table is also a fragment of its own (<table>.tex) to \\input into a paper, which needs\n\
         % \\usepackage{booktabs} and \\usepackage{graphicx}. One pdflatex pass lays it out.\n\
         \\documentclass[10pt]{article}\n\\usepackage[landscape, margin=1.5cm]{geometry}\n\\usepackage{booktabs}\n\\usepackage{graphicx}\n",
    );
    write!(
        s,
        "\\title{{{}}}\n\\date{{{}}}\n\\begin{{document}}\n\\maketitle\n",
        tex_escape(&title.heading()),
        tex_escape(&title.byline())
    )
    .expect("string");
    for f in fragments {
        writeln!(s, "\\input{{{f}}}\n\\clearpage").expect("string");
    }
    s.push_str("\\end{document}\n");
    s
}
