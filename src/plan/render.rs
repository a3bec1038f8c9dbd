//! `robarch dag` output: plain text, Graphviz dot, Mermaid.
use super::Plan;
use std::fmt::Write;

pub fn text(p: &Plan) -> String {
    let mut s = String::new();
    for &ix in &p.order {
        let n = &p.graph[ix];
        let deps: Vec<String> = p.deps(ix).iter().map(|&d| p.graph[d].id.clone()).collect();
        let _ = writeln!(s, "{}  {}", &n.key[..12], n.id);
        if !deps.is_empty() && n.id != "report" {
            let _ = writeln!(s, "    <- {}", deps.join(", "));
        } else if n.id == "report" {
            let _ = writeln!(s, "    <- {} stages", deps.len());
        }
    }
    s
}

pub fn dot(p: &Plan) -> String {
    let mut s = format!(
        "digraph \"{}\" {{\n  rankdir=LR;\n  node [shape=box, fontname=\"monospace\"];\n",
        p.name
    );
    for &ix in &p.order {
        let _ = writeln!(s, "  \"{}\";", p.graph[ix].id);
    }
    for e in p.graph.raw_edges() {
        let _ = writeln!(
            s,
            "  \"{}\" -> \"{}\";",
            p.graph[e.source()].id,
            p.graph[e.target()].id
        );
    }
    s.push_str("}\n");
    s
}

pub fn mermaid(p: &Plan) -> String {
    let mut s = String::from("graph LR\n");
    let pos: std::collections::HashMap<_, _> =
        p.order.iter().enumerate().map(|(i, &ix)| (ix, i)).collect();
    for &ix in &p.order {
        let _ = writeln!(s, "  n{}[\"{}\"]", pos[&ix], p.graph[ix].id);
    }
    for e in p.graph.raw_edges() {
        let _ = writeln!(s, "  n{} --> n{}", pos[&e.source()], pos[&e.target()]);
    }
    s
}
