//! The report: every table in CSV, Parquet, Markdown and LaTeX (compiled with pdflatex and its
//! pages rasterised), the plots, `index.html` rendered in headless Chromium, partial reports of a
//! partly computed pipeline, and `--compare`. pdflatex, pdfinfo/pdftoppm and Chromium come from
//! Debian (the test command installs them; `ROBARCH_REPORT_TOOLS=required` makes their absence a
//! failure, otherwise those checks say they skipped).
use crate::common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Three architectures of three kinds, monitored training, train and test splits, ℓ∞ and ℓ2
/// attacks with an ε curve, and every analysis.
const STUDY: &str = r#"name: study
seed: 1
device: cpu
datasets:
  digits: {source: embedded:digits, resolution: 16, limit: 150}
models:
  resnet18: {preset: tiny}
  vit: {preset: tiny}
  mixer: {preset: tiny}
training:
  at:
    attack: {norm: linf, eps: 8/255, steps: 2}
    epochs: 3
    batch_size: 32
    optimizer: {name: adamw, lr: 2e-3}
    monitor: {n: 32}
evaluation:
  splits: [train, test]
  limit: 48
  attacks:
    clean: {}
    fgsm: {eps: 8/255}
    pgd-linf: {norm: linf, eps: 8/255, steps: 3, curve: [2/255, 4/255]}
    pgd-l2: {norm: l2, eps: 0.5, steps: 3}
analysis: [sparsity, bounds, correlation]
"#;

pub(crate) const TABLES: &[&str] = &[
    "robust_accuracy",
    "generalization_gap",
    "eps_curve",
    "analysis",
    "correlation",
    "accuracy_by_attack",
    "gap_by_attack",
    "unseen_drop",
    "sparsity_by_layer",
    "bounds",
    "correlation_matrix",
];

pub(crate) const PLOTS: &[&str] = &[
    "bars_digits_at",
    "eps_digits_at_pgd-linf",
    "history_digits_at",
    "sparsity_vs_gap_digits_at",
    "bounds_vs_gap_digits_at",
];

/// Whether `tool` runs; without it, fails under `ROBARCH_REPORT_TOOLS=required`, else says the
/// check skipped.
fn have(tool: &str, what: &str) -> bool {
    let ok = Command::new(tool)
        .arg(if tool.starts_with("pdf") && tool != "pdflatex" {
            "-v"
        } else {
            "--version"
        })
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("ROBARCH_REPORT_TOOLS").as_deref() != Ok("required"),
            "{tool} is required (ROBARCH_REPORT_TOOLS=required) but does not run"
        );
        eprintln!(
            "SKIPPED: {what}: `{tool}` is not installed (scripts/test.sh installs it with apt-get)"
        );
    }
    ok
}

/// Where the test leaves what a person should look at (the PDF's pages, the screenshot).
fn artifacts() -> PathBuf {
    let d = std::env::var_os("ROBARCH_TEST_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("robarch-test-artifacts"))
        .join("report");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Decodes a PNG and checks it is not one flat colour (something was drawn).
fn drawn_png(path: &Path) -> (u32, u32) {
    let img = image::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_rgb8();
    let first = *img.get_pixel(0, 0);
    let differing = img.pixels().filter(|p| **p != first).count();
    assert!(
        differing > (img.width() * img.height()) as usize / 200,
        "{} is (almost) blank: {differing} pixels differ from the corner",
        path.display()
    );
    img.dimensions()
}

fn run_tool(c: &mut Command, what: &str) -> String {
    let out = c.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn report_writes_every_table_format_plots_and_a_page_that_renders() {
    let p = Project::new();
    p.write("p.yaml", STUDY);
    p.ok(&["run", "p.yaml"]);
    let dir = p.path("reports/study");
    for t in TABLES {
        for ext in ["csv", "parquet", "md", "tex"] {
            let f = dir.join(format!("{t}.{ext}"));
            let bytes = std::fs::read(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            assert!(bytes.len() > 20, "{} is empty", f.display());
            if ext == "parquet" {
                assert!(
                    bytes.starts_with(b"PAR1") && bytes.ends_with(b"PAR1"),
                    "{t}.parquet"
                );
            }
        }
    }
    // The study layout: kinds in the paper's order, train and test side by side per attack,
    // attacks in the spec's order (`pgd-linf` before `pgd-l2`).
    let csv = std::fs::read_to_string(dir.join("accuracy_by_attack.csv")).unwrap();
    let header = csv.lines().next().unwrap();
    assert!(
        header.starts_with("dataset,training,kind,model,clean/train,clean/test,fgsm/train,fgsm/test,pgd-linf/train,pgd-linf/test,pgd-l2/train,pgd-l2/test"),
        "{header}"
    );
    let ra = std::fs::read_to_string(dir.join("robust_accuracy.csv")).unwrap();
    assert!(
        ra.starts_with("dataset,model,training,clean,fgsm,pgd-linf,pgd-l2,hoyer_sparsity"),
        "{ra}"
    );
    // People read labels (CSV keeps the identifiers above).
    let md = std::fs::read_to_string(dir.join("robust_accuracy.md")).unwrap();
    assert!(
        md.starts_with("| Dataset | Model | Training | clean | fgsm | pgd-linf | pgd-l2 | Hoyer sparsity |"),
        "{md}"
    );
    // Curve radii as the spec writes them (the CSV keeps the number).
    let curve = std::fs::read_to_string(dir.join("eps_curve.md")).unwrap();
    assert!(curve.contains("| 2/255 |") && curve.contains("| 4/255 |"), "{curve}");
    let analysis = std::fs::read_to_string(dir.join("analysis.md")).unwrap();
    assert!(
        analysis.contains("| ℓ1/ℓ2 |") && analysis.contains("| log10 Neyshabur ℓ1,∞ |"),
        "{analysis}"
    );
    let kinds: Vec<&str> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(2).unwrap())
        .collect();
    assert_eq!(kinds, ["cnn", "transformer", "mlp"]);
    let unseen = std::fs::read_to_string(dir.join("unseen_drop.csv")).unwrap();
    assert!(
        unseen.starts_with("dataset,training,kind,model,seen/fgsm,seen/pgd-linf,unseen/pgd-l2,mean/seen,mean/unseen,mean/unseen - seen"),
        "{unseen}"
    );
    let tex = std::fs::read_to_string(dir.join("accuracy_by_attack.tex")).unwrap();
    assert!(
        tex.contains("\\toprule") && tex.contains("\\mathbf{") && tex.contains("\\textit{CNN}"),
        "{tex}"
    );
    for plot in PLOTS {
        let (w, h) = drawn_png(&dir.join(format!("plots/{plot}.png")));
        assert!(w >= 900 && h >= 400, "{plot}: {w}x{h}");
        let svg = std::fs::read_to_string(dir.join(format!("plots/{plot}.svg"))).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.contains("<text"),
            "{plot}.svg"
        );
        // What each plot must say: its legend (architectures, attacks, series or kinds with the
        // rank correlation) and its axes.
        let want: &[&str] = match *plot {
            "bars_digits_at" => &["resnet18", "vit", "mixer", "pgd-linf", "test accuracy (%)"],
            "eps_digits_at_pgd-linf" => &["resnet18", "vit", "mixer", "robust accuracy (%)"],
            "history_digits_at" => &["train robust", "test robust", "epoch"],
            _ => &["Kendall τ", "Spearman ρ", "CNN", "Transformer", "MLP", "robust gap"],
        };
        for w in want {
            assert!(svg.contains(w), "{plot}.svg lacks {w:?}");
        }
    }
    let html = std::fs::read_to_string(dir.join("index.html")).unwrap();
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "the page loads nothing from the network"
    );
    // The title names the pipeline, the date, the version and the fingerprint.
    let today = {
        let out = Command::new("date").args(["-u", "+%F"]).output().unwrap();
        stdout(&out).trim().to_string()
    };
    let byline = format!("{today}, robarch {}, spec ", env!("CARGO_PKG_VERSION"));
    assert!(
        html.contains(&format!("<title>study: robarch report ({byline}"))
            && html.contains("<h1>study: robarch report</h1>"),
        "{}",
        &html[..400]
    );
    assert_eq!(html.matches("data:image/png;base64,").count(), PLOTS.len());
    // The bold rule is stated where the bold is.
    assert!(
        html.contains("gap_by_attack")
            && html.contains("bold: the smallest among architectures within 5 points of the best clean test accuracy"),
        "the gap table's caption states its bold rule"
    );
    // The report's numbers are its tables': a cell of cells.json equals the CSV's.
    let cells: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("cells.json")).unwrap()).unwrap();
    assert!(cells["cells"].as_array().unwrap().len() > 100);

    let art = artifacts();
    if have("pdflatex", "compiling the LaTeX tables")
        && have("pdftoppm", "looking at the PDF's pages")
    {
        let tmp = tempfile::tempdir().unwrap();
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            if e.path().extension().is_some_and(|x| x == "tex") {
                std::fs::copy(e.path(), tmp.path().join(e.file_name())).unwrap();
            }
        }
        // One pass lays it out: nothing asks for a rerun.
        let first = run_tool(
            Command::new("pdflatex")
                .args(["-interaction=nonstopmode", "-halt-on-error", "report.tex"])
                .current_dir(tmp.path()),
            "pdflatex report.tex",
        );
        assert!(!first.contains("Rerun"), "pdflatex asks for another pass:\n{first}");
        let text = run_tool(
            Command::new("pdftotext")
                .args(["report.pdf", "-"])
                .current_dir(tmp.path()),
            "pdftotext",
        );
        assert!(
            text.contains("study: robarch report") && text.contains(&byline),
            "the PDF's title:\n{}",
            &text[..text.len().min(400)]
        );
        assert!(text.contains("Test acc. (%)"), "a human label in the PDF");
        let info = run_tool(
            Command::new("pdfinfo")
                .arg("report.pdf")
                .current_dir(tmp.path()),
            "pdfinfo",
        );
        let pages: usize = info
            .lines()
            .find_map(|l| l.strip_prefix("Pages:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(
            pages >= TABLES.len(),
            "{pages} pages for {} tables",
            TABLES.len()
        );
        run_tool(
            Command::new("pdftoppm")
                .args(["-png", "-r", "70", "report.pdf", "page"])
                .current_dir(tmp.path()),
            "pdftoppm",
        );
        let mut looked = 0;
        for e in std::fs::read_dir(tmp.path()).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("page") && name.ends_with(".png") {
                drawn_png(&e.path());
                std::fs::copy(e.path(), art.join(&name)).unwrap();
                looked += 1;
            }
        }
        assert_eq!(looked, pages);
        // No table overflows its page.
        let log = std::fs::read_to_string(tmp.path().join("report.log")).unwrap();
        assert!(
            !log.contains("Overfull \\hbox"),
            "a table is wider than the page:\n{log}"
        );
        std::fs::copy(tmp.path().join("report.pdf"), art.join("report.pdf")).unwrap();
    }
    if have("chromium", "rendering index.html in a browser") {
        let tmp = tempfile::tempdir().unwrap();
        // The page with a script that, once loaded, records what the browser decoded and laid out.
        let check = html.replace(
            "</body>",
            r#"<script>
window.addEventListener('load', () => {
  const imgs = [...document.images];
  const tables = [...document.querySelectorAll('table')];
  document.body.setAttribute('data-check', JSON.stringify({
    images: imgs.length,
    undecoded: imgs.filter(i => !(i.complete && i.naturalWidth > 0 && i.naturalHeight > 0)).map(i => i.alt),
    invisible: imgs.filter(i => i.getBoundingClientRect().height < 50).map(i => i.alt),
    tables: [...new Set(tables.map(t => t.dataset.table))],
    title: document.title,
    heading: document.querySelector('h1').textContent,
    heads: [...new Set([...document.querySelectorAll('th')].map(t => t.textContent))],
    empty: tables.filter(t => t.querySelectorAll('tbody tr td').length == 0).map(t => t.dataset.table),
  }));
});
</script></body>"#,
        );
        let page = tmp.path().join("check.html");
        std::fs::write(&page, check).unwrap();
        let chromium = |extra: &[&str], target: &Path| {
            let mut c = Command::new("chromium");
            c.args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--hide-scrollbars",
                "--virtual-time-budget=10000",
            ])
            .args(extra)
            .arg(format!("file://{}", target.display()))
            .env("HOME", tmp.path());
            c
        };
        let dom = run_tool(&mut chromium(&["--dump-dom"], &page), "chromium --dump-dom");
        let at = dom.find("data-check=\"").expect("the check script ran") + "data-check=\"".len();
        let raw = &dom[at..at + dom[at..].find('"').unwrap()];
        let check: serde_json::Value =
            serde_json::from_str(&raw.replace("&quot;", "\"").replace("&amp;", "&")).unwrap();
        assert_eq!(check["images"], PLOTS.len(), "{check}");
        assert_eq!(check["undecoded"], serde_json::json!([]), "{check}");
        assert_eq!(check["invisible"], serde_json::json!([]), "{check}");
        assert_eq!(check["empty"], serde_json::json!([]), "{check}");
        assert!(
            check["title"].as_str().unwrap().starts_with(&format!("study: robarch report ({byline}")),
            "{check}"
        );
        assert_eq!(check["heading"], "study: robarch report", "{check}");
        let heads = check["heads"].as_array().unwrap();
        for label in ["Test acc. (%)", "Kendall τ", "Hoyer sparsity"] {
            assert!(heads.iter().any(|h| h == label), "no column `{label}`: {check}");
        }
        let mut shown: Vec<String> = check["tables"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect();
        shown.sort();
        let mut want: Vec<String> = TABLES.iter().map(|t| t.to_string()).collect();
        want.sort();
        assert_eq!(shown, want);
        let shot = art.join("index.png");
        let _ = std::fs::remove_file(&shot);
        run_tool(
            &mut chromium(
                &[
                    "--window-size=1400,2600",
                    &format!("--screenshot={}", shot.display()),
                ],
                &dir.join("index.html"),
            ),
            "chromium --screenshot",
        );
        assert_eq!(drawn_png(&shot), (1400, 2600));
    }
}

/// `robarch report` on a pipeline whose new attack is not computed yet: it computes nothing,
/// writes what the cache has, and lists what is missing; `--compare` then shows what the new
/// attack added, against the recorded earlier run and against another pipeline.
#[test]
fn partial_reports_and_comparisons() {
    let p = Project::new();
    p.write("p.yaml", TINY);
    p.ok(&["run", "p.yaml"]);
    let dir = p.path("reports/tiny");
    assert_eq!(std::fs::read_dir(dir.join("runs")).unwrap().count(), 1);
    // One run recorded: nothing one run back.
    let out = p.run(&["report", "p.yaml", "--compare", "@1"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("1 recorded run(s)") && err.contains("@0 "),
        "{err}"
    );

    let grown = TINY.replace(
        "    pgd: {eps: 8/255, steps: 3}\n",
        "    pgd: {eps: 8/255, steps: 3}\n    pgd-small: {eps: 4/255, steps: 2}\n",
    );
    assert_ne!(grown, TINY);
    p.write("p.yaml", &grown);
    let entries = p.entries();
    let out = p.ok(&["report", "p.yaml"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("partial report: 2 stage(s)")
            && text.contains("eval/digits/resnet18/at/pgd-small/test"),
        "{text}"
    );
    assert_eq!(p.entries(), entries, "a report computes nothing");
    let html = std::fs::read_to_string(dir.join("index.html")).unwrap();
    assert!(
        html.contains("Partial report") && html.contains("eval/digits/resnet18/at/pgd-small/test")
    );
    let table = std::fs::read_to_string(dir.join("robust_accuracy.md")).unwrap();
    assert!(
        table.contains("| pgd |") && !table.contains("pgd-small"),
        "{table}"
    );
    // Unchanged numbers: the partial report is not recorded again.
    assert_eq!(std::fs::read_dir(dir.join("runs")).unwrap().count(), 1);

    p.ok(&["run", "p.yaml"]);
    assert_eq!(std::fs::read_dir(dir.join("runs")).unwrap().count(), 2);
    let out = p.ok(&["report", "p.yaml", "--compare", "@1"]);
    let text = String::from_utf8_lossy(&out.stdout);
    // A headline of what changed in the spec and the tables, then the cells per table at the
    // table's precision.
    let lines: Vec<&str> = text.lines().skip_while(|l| !l.starts_with("compared with run ")).collect();
    assert_eq!(
        lines[1],
        "  spec: `evaluation.attacks.pgd-small.eps` added: 4/255; `evaluation.attacks.pgd-small.steps` added: 2",
        "{text}"
    );
    assert_eq!(lines[2], "  attacks added: `pgd-small`", "{text}");
    assert!(
        lines.iter().any(|l| l.starts_with("robust_accuracy: ") && l.ends_with(" differ")),
        "{text}"
    );
    assert!(
        lines.iter().any(|l| l.trim_start().starts_with("digits/resnet18/at  pgd-small")
            && l.ends_with("added")
            && l.split_whitespace().nth(3).is_some_and(|v| v.split('.').nth(1).map(str::len) == Some(2))),
        "{text}"
    );
    assert!(!text.contains("removed"), "{text}");
    let md = std::fs::read_to_string(dir.join("compare.md")).unwrap();
    assert!(
        md.contains("- attacks added: `pgd-small`")
            && md.contains("## robust_accuracy\n\n| row | column | old | new | change |")
            && md.contains("| digits/resnet18/at | pgd-small |"),
        "{md}"
    );
    assert!(dir.join("compare.csv").exists());
    // Colleagues on a shared filesystem read the records and the comparison (the umask decides).
    let umask = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Umask:"))
        .map(|v| u32::from_str_radix(v.trim(), 8).unwrap())
        .unwrap();
    let run = std::fs::read_dir(dir.join("runs")).unwrap().next().unwrap().unwrap().path();
    for f in [run, dir.join("compare.md"), dir.join("index.html"), dir.join("robust_accuracy.csv")] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o666 & !umask, "{}", f.display());
    }

    // Against another pipeline (the original, under another name: the same cached stages).
    p.write("q.yaml", &TINY.replace("name: tiny", "name: other"));
    let out = p.ok(&["report", "p.yaml", "--compare", "q.yaml"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("compared with pipeline q.yaml") && text.contains("pgd-small"),
        "{text}"
    );
    // And against itself, as a report directory: no differences.
    let out = p.ok(&["report", "p.yaml", "--compare", "reports/tiny"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("no differences"));
    let out = p.run(&["report", "p.yaml", "--compare", "nope"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("not a pipeline file, a report directory, or a recorded run"));
}
