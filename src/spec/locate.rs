//! Finds the line and column of a field path (e.g. `models.vit.depth`) in YAML source text.
//!
//! serde_yaml reports positions for syntax and type errors but not for the semantic checks we run
//! after parsing, so we locate the offending key ourselves. Handles block mappings and one-line
//! flow mappings (`{preset: tiny, depth: 2}`), which is how specs are written; when a key cannot be
//! found the deepest located ancestor is returned.

/// 1-based line and column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

fn is_blank(line: &str) -> bool {
    let t = line.trim_start();
    t.is_empty() || t.starts_with('#')
}

/// Byte offset of `key:` as a key inside a flow mapping that starts at or after `from`.
fn find_flow_key(line: &str, from: usize, key: &str) -> Option<usize> {
    // An empty key (a path segment of an anonymous value) matches everywhere and would never
    // advance the search below.
    if key.is_empty() {
        return None;
    }
    let hay = line.get(from..)?;
    let mut search = 0;
    while let Some(off) = hay[search..].find(key) {
        let at = search + off;
        let before = hay[..at].trim_end().chars().last();
        let after = hay[at + key.len()..].trim_start();
        let key_start = matches!(before, Some('{') | Some(',') | None);
        if key_start && after.starts_with(':') {
            return Some(from + at);
        }
        search = at + key.len();
    }
    None
}

/// Strips quotes and a trailing colon from a block-mapping line, returning its key.
fn block_key(line: &str) -> Option<&str> {
    let t = line.trim_start();
    let t = t.strip_prefix("- ").unwrap_or(t);
    let colon = t.find(':')?;
    let key = t[..colon].trim();
    Some(key.trim_matches(|c| c == '"' || c == '\''))
}

/// Position of the deepest key of `path` that can be found in `src`.
pub fn locate(src: &str, path: &[String]) -> Option<Pos> {
    let lines: Vec<&str> = src.lines().collect();
    let (mut lo, mut hi) = (0usize, lines.len());
    let mut parent_indent: isize = -1;
    let mut flow: Option<(usize, usize)> = None;
    let mut best = None;
    for seg in path {
        if let Some((l, c)) = flow {
            match find_flow_key(lines[l], c, seg) {
                Some(at) => {
                    best = Some(Pos {
                        line: l + 1,
                        col: at + 1,
                    });
                    flow = Some((l, at + seg.len()));
                    continue;
                }
                None => return best,
            }
        }
        let mut found = None;
        let mut block_indent = None;
        for (i, line) in lines.iter().enumerate().take(hi).skip(lo) {
            if is_blank(line) {
                continue;
            }
            let ind = indent(line) as isize;
            if ind <= parent_indent {
                break;
            }
            let bi = *block_indent.get_or_insert(ind);
            if ind == bi && block_key(line) == Some(seg.as_str()) {
                found = Some(i);
                break;
            }
        }
        let Some(i) = found else { return best };
        let line = lines[i];
        let ind = indent(line);
        let key_col = line.find(seg.as_str()).unwrap_or(ind);
        best = Some(Pos {
            line: i + 1,
            col: key_col + 1,
        });
        let after_colon =
            key_col + seg.len() + line[key_col + seg.len()..].find(':').unwrap_or(0) + 1;
        let rest = line.get(after_colon..).unwrap_or("").trim_start();
        if rest.starts_with('{') {
            flow = Some((i, line.len() - rest.len()));
        } else {
            lo = i + 1;
            hi = (lo..lines.len())
                .find(|&j| !is_blank(lines[j]) && indent(lines[j]) <= ind)
                .unwrap_or(lines.len());
            parent_indent = ind as isize;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Vec<String> {
        s.split('.').map(String::from).collect()
    }

    const SRC: &str = "name: q\n# comment\nmodels:\n  resnet18: {preset: tiny, depth: 2}\n  vit:\n    preset: tiny\n    dept: 3\ntraining:\n  pgd:\n    attack: {norm: linf, eps: -1}\n";

    #[test]
    fn block_keys() {
        assert_eq!(
            locate(SRC, &p("models.vit.dept")),
            Some(Pos { line: 7, col: 5 })
        );
        assert_eq!(locate(SRC, &p("models")), Some(Pos { line: 3, col: 1 }));
    }

    #[test]
    fn flow_keys() {
        assert_eq!(
            locate(SRC, &p("models.resnet18.depth")),
            Some(Pos { line: 4, col: 28 })
        );
        assert_eq!(
            locate(SRC, &p("training.pgd.attack.eps")),
            Some(Pos { line: 10, col: 26 })
        );
    }

    #[test]
    fn missing_key_falls_back_to_ancestor() {
        assert_eq!(
            locate(SRC, &p("models.vit.heads")),
            Some(Pos { line: 5, col: 3 })
        );
        assert_eq!(locate(SRC, &p("nothing")), None);
    }

    #[test]
    fn an_empty_segment_is_not_searched_for() {
        // Found by fuzzing: an empty path segment inside a flow mapping looped forever.
        let src = "evaluation:\n  attacks:\n    pgd: {norm: linf, &steps: 10}\n";
        assert_eq!(
            locate(src, &p("evaluation.attacks.pgd.")),
            Some(Pos { line: 3, col: 5 })
        );
    }

    #[test]
    fn does_not_match_a_deeper_key_with_the_same_name() {
        let src = "a:\n  b:\n    preset: x\n  preset: y\n";
        assert_eq!(locate(src, &p("a.preset")), Some(Pos { line: 4, col: 3 }));
    }
}
