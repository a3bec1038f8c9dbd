//! Shards of an evaluation (`evaluation.shard`): their point ranges, their stage ids, and how
//! stage listings group them.

/// Point ranges of `k` points each covering the first `limit` points of a split of `size` points
/// (either may be unknown): `[0, k)`, `[k, 2k)`, …. The last range ends at `limit` where the limit
/// is below the split's known size, and is open (to the split's end) otherwise, so a larger
/// limit adds ranges and keeps the others. Unknown size and no limit: one open range.
pub fn ranges(limit: Option<usize>, size: Option<usize>, k: usize) -> Vec<(usize, Option<usize>)> {
    let k = k.max(1);
    let (end, closed) = match (limit, size) {
        (Some(l), Some(z)) if l < z => (l, true),
        (Some(l), None) => (l, true),
        (_, Some(z)) => (z, false),
        (None, None) => return vec![(0, None)],
    };
    let mut out = Vec::new();
    let mut lo = 0;
    while lo + k < end {
        out.push((lo, Some(lo + k)));
        lo += k;
    }
    out.push((lo, closed.then_some(end)));
    out
}

/// Where a shard's id ends: `points-<lo>-<hi>`, or `points-<lo>-end` for an open range.
const SEGMENT: &str = "points-";

/// The id of the shard `lo..hi` of the evaluation `parent`.
pub fn id(parent: &str, lo: usize, hi: Option<usize>) -> String {
    match hi {
        Some(hi) => format!("{parent}/{SEGMENT}{lo}-{hi}"),
        None => format!("{parent}/{SEGMENT}{lo}-end"),
    }
}

/// The evaluation a shard id belongs to (`None`: not a shard's id).
pub fn parent(id: &str) -> Option<&str> {
    let (parent, last) = id.rsplit_once('/')?;
    let range = last.strip_prefix(SEGMENT)?;
    let (lo, hi) = range.split_once('-')?;
    let number = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (parent.starts_with("eval/") && number(lo) && (number(hi) || hi == "end")).then_some(parent)
}

/// Rows of a stage listing with each evaluation's shards folded into one row: runs of rows
/// (in listing order) whose ids are shards of one evaluation become `(parent, rows)`, any other
/// row stands alone (`(id, [row])`).
pub fn fold<T>(rows: &[T], id: impl Fn(&T) -> &str) -> Vec<(String, Vec<&T>)> {
    let mut out: Vec<(String, Vec<&T>)> = Vec::new();
    for r in rows {
        match parent(id(r)) {
            Some(p) => match out.last_mut() {
                // The evaluation's own (merge) row has the same id: shards never join it.
                Some((q, group)) if q == p && parent(id(group[0])).is_some() => group.push(r),
                _ => out.push((p.to_string(), vec![r])),
            },
            None => out.push((id(r).to_string(), vec![r])),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_larger_limit_keeps_the_shards_it_had() {
        assert_eq!(
            ranges(Some(1000), Some(10000), 500),
            [(0, Some(500)), (500, Some(1000))]
        );
        let more = ranges(Some(2000), Some(10000), 500);
        assert_eq!(more.len(), 4);
        assert_eq!(&more[..2], &ranges(Some(1000), Some(10000), 500)[..]);
        // A limit past the split, or none: the last shard runs to the split's end.
        assert_eq!(
            ranges(None, Some(1200), 500),
            [(0, Some(500)), (500, Some(1000)), (1000, None)]
        );
        assert_eq!(
            ranges(Some(5000), Some(1200), 500),
            ranges(None, Some(1200), 500)
        );
        assert_eq!(ranges(Some(300), None, 500), [(0, Some(300))]);
        assert_eq!(ranges(None, None, 500), [(0, None)]);
        assert_eq!(
            ranges(Some(7), Some(100), 3),
            [(0, Some(3)), (3, Some(6)), (6, Some(7))]
        );
    }

    #[test]
    fn shard_ids_name_their_evaluation() {
        let p = "eval/cifar10/wrn/at/aa-linf/test";
        assert_eq!(parent(&id(p, 1000, Some(2000))), Some(p));
        assert_eq!(parent(&id(p, 9000, None)), Some(p));
        assert_eq!(parent(p), None);
        assert_eq!(parent("eval/x/points-a-1"), None);
        assert_eq!(parent("sparsity/x/points-1-2"), None);
        let ids = [
            "train/x".to_string(),
            id(p, 0, Some(10)),
            id(p, 10, None),
            p.to_string(),
            "report/x".to_string(),
        ];
        let folded = fold(&ids, |s| s.as_str());
        let heads: Vec<(&str, usize)> = folded.iter().map(|(h, g)| (h.as_str(), g.len())).collect();
        assert_eq!(heads, [("train/x", 1), (p, 2), (p, 1), ("report/x", 1)]);
    }
}
