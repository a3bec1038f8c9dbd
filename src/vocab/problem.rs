//! "A field is wrong": a problem located by its path in the spec, and the did-you-mean hints every
//! check uses for unknown names (and what to write for a value of the wrong type).

/// One problem found in a spec, located in its file: the one shape of "a field is wrong". A check
/// that knows only its own part of the spec (an attack's fields, a model's config) builds the
/// problem at a path relative to that part ([`Problem::at`]); its caller places it in the file
/// with [`Problem::under`], so every message points at the exact field.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub path: Vec<String>,
    pub message: String,
    pub hint: Option<String>,
}

impl Problem {
    pub fn new(path: &[&str], message: impl Into<String>) -> Self {
        Self {
            path: path.iter().map(|s| s.to_string()).collect(),
            message: message.into(),
            hint: None,
        }
    }
    /// A problem with the field `field` of the part being checked (a path relative to it).
    pub fn at(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: vec![field.into()],
            message: message.into(),
            hint: None,
        }
    }
    /// The same problem with `base` prepended to its path: where the checked part sits.
    pub fn under(mut self, base: &[&str]) -> Self {
        let mut path: Vec<String> = base.iter().map(|s| s.to_string()).collect();
        path.append(&mut self.path);
        self.path = path;
        self
    }
    /// The field the problem names: the last element of its path.
    pub fn field(&self) -> &str {
        self.path.last().map_or("", String::as_str)
    }
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// The closest candidate to `name`, if it is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| {
            (
                strsim::levenshtein(&name.to_lowercase(), &c.to_lowercase()),
                c,
            )
        })
        .filter(|(d, c)| *d <= (c.len().max(name.len()) / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// The hint for an unknown `name`: "did you mean `…`?" when a candidate is a likely typo, else
/// `otherwise()` (typically the list of what is known).
pub fn typo_hint<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
    otherwise: impl FnOnce() -> String,
) -> String {
    match did_you_mean(name, candidates) {
        Some(c) => format!("did you mean `{c}`?"),
        None => otherwise(),
    }
}

/// For serde's "invalid type: …, expected T" and "invalid value: …, expected T", what to write.
pub fn type_hint(msg: &str) -> Option<String> {
    if !(msg.contains("invalid type") || msg.contains("invalid value")) {
        return None;
    }
    // serde_yaml reads an integer beyond 64 bits as a u128/i128 that no field takes.
    if msg.contains(" as u128") || msg.contains(" as i128") {
        return Some(format!(
            "the number is too large: whole numbers here go up to {} (epochs, steps and sizes \
             far below); write a smaller one",
            u64::MAX
        ));
    }
    let expected = msg.rsplit("expected ").next()?;
    let fix = if ["usize", "u64", "u32", "u16", "u8"]
        .iter()
        .any(|t| expected.starts_with(t))
    {
        "write a whole number ≥ 0, e.g. `10`"
    } else if ["i64", "i32"].iter().any(|t| expected.starts_with(t)) {
        "write a whole number, e.g. `8`"
    } else if expected.starts_with("f64") || expected.contains("number") {
        "write a number, e.g. `0.5`, `1e-3` or `8/255`"
    } else if expected.starts_with("a boolean") {
        "write `true` or `false`"
    } else if expected.starts_with("a sequence") {
        "write a list, e.g. `[a, b]`"
    } else if expected.starts_with("a string") {
        "write a name or text, e.g. `pgd`"
    } else if expected.starts_with("struct") || expected.starts_with("a map") {
        "write a mapping, e.g. `{key: value}`"
    } else {
        return None;
    };
    Some(fix.to_string())
}
