//! `index.html`: the report on one self-contained page (tables, plots inlined as PNG, warnings,
//! missing stages); it loads nothing from the network.
use super::render::html_escape;
use base64::Engine;
use std::fmt::Write;

/// A plot on the page: its file name (without extension), caption and PNG bytes.
pub struct Figure {
    pub file: String,
    pub caption: String,
    pub png: Vec<u8>,
}

const STYLE: &str = "
body { font-family: 'DejaVu Sans', Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1400px; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 1em 0 2em; font-size: .85em; }
caption { text-align: left; font-weight: bold; padding: .3em 0; }
th, td { padding: .25em .6em; text-align: right; border-bottom: 1px solid #eee; }
th { border-bottom: 1px solid #999; background: #f6f6f6; }
th.group { text-align: center; border-bottom: 1px solid #bbb; }
td:first-child, th:first-child { text-align: left; }
tr.kind td { text-align: left; font-style: italic; background: #fafafa; color: #555; }
td.best { font-weight: bold; } td.na { color: #aaa; }
table.long td { text-align: left; }
figure { margin: 1em 0 2.5em; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { color: #444; font-size: .9em; max-width: 70em; }
.warn { background: #fff6e0; border-left: 4px solid #e0a000; padding: .5em 1em; }
.missing { background: #fdeaea; border-left: 4px solid #c03030; padding: .5em 1em; }
nav a { margin-right: 1em; }
section { overflow-x: auto; }
";

/// The page: `tables` as (file, HTML) in report order, then `figures`.
pub fn page(
    title: &super::Title,
    tables: &[(String, String)],
    figures: &[Figure],
    warnings: &[String],
    missing: &[String],
) -> String {
    let (heading, byline) = (html_escape(&title.heading()), html_escape(&title.byline()));
    let mut s = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{heading} ({byline})</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{heading}</h1>\n<p class=\"byline\">{byline}</p>\n"
    );
    s.push_str("<nav><a href=\"#tables\">Tables</a><a href=\"#plots\">Plots</a>");
    if !warnings.is_empty() {
        s.push_str("<a href=\"#warnings\">Warnings</a>");
    }
    s.push_str("</nav>\n");
    if !missing.is_empty() {
        let _ = write!(
            s,
            "<div class=\"missing\" id=\"missing\"><p><b>Partial report:</b> {} stage(s) are not in the cache yet, and their results are left out. <code>robarch run</code> computes them.</p><ul>",
            missing.len()
        );
        for m in missing {
            let _ = write!(s, "<li><code>{}</code></li>", html_escape(m));
        }
        s.push_str("</ul></div>\n");
    }
    if !warnings.is_empty() {
        s.push_str("<div class=\"warn\" id=\"warnings\"><h2>Warnings</h2><ul>\n");
        for w in warnings {
            let _ = writeln!(s, "<li>{}</li>", html_escape(w));
        }
        s.push_str("</ul></div>\n");
    }
    s.push_str("<h2 id=\"tables\">Tables</h2>\n<p>Best value of each column per (dataset, training) in bold where a direction is meaningful: accuracy higher, sparsity higher; gaps, drops and bounds lower, but only among architectures within 5 points of the block's best clean test accuracy (a model that learnt little has a small gap). Correlations show no interval over fewer than 6 architectures. Mean ± standard deviation where seeds repeat. Each table is also in the report directory as CSV, Parquet, Markdown and LaTeX.</p>\n");
    for (file, html) in tables {
        let _ = writeln!(
            s,
            "<section id=\"table-{file}\">\n<h3>{file}</h3>\n{html}</section>"
        );
    }
    s.push_str("<h2 id=\"plots\">Plots</h2>\n");
    for f in figures {
        let b64 = base64::engine::general_purpose::STANDARD.encode(&f.png);
        let _ = writeln!(
            s,
            "<figure id=\"plot-{file}\">\n<img alt=\"{file}\" src=\"data:image/png;base64,{b64}\">\n<figcaption>{} <a href=\"plots/{file}.svg\">SVG</a></figcaption>\n</figure>",
            html_escape(&f.caption),
            file = html_escape(&f.file),
        );
    }
    if figures.is_empty() {
        s.push_str("<p>No plots (the report has `plots: false`, or no results to plot).</p>\n");
    }
    s.push_str("</body>\n</html>\n");
    s
}
