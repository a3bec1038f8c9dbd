//! An attack as the spec writes it (`evaluation.attacks.<name>`, `training.<name>.attack`,
//! monitor and analysis attacks), resolved by `AttackConfig::resolve`.
//!
//! The fields every attack shares (`type`, `norm`, `eps`, `curve`) are typed here; every other
//! field belongs to the attack type and is kept as written until that type's file reads it
//! ([`Fields`]), so adding an attack adds no field here.
use crate::vocab::{Norm, Problem, Real};
use serde::de::{self, DeserializeOwned, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// An attack as written in the spec; `attacks::AttackConfig::resolve` checks which fields apply to
/// the attack type and fills the defaults (docs/attacks.md lists them per attack).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AttackSpec {
    /// Registry name (`pgd`, `apgd-t`, `autoattack`, …); defaults to the attack's key, or the longest
    /// registry name the key starts with (`pgd-linf` is a `pgd`).
    pub kind: Option<String>,
    pub norm: Option<Norm>,
    pub eps: Option<Real>,
    /// Robust accuracy vs ε: extra radii to evaluate this attack at (one stage each).
    pub curve: Option<Vec<Real>>,
    /// The attack type's own fields (`steps`, `loss`, `targets`, …), as written.
    pub params: BTreeMap<String, serde_yaml::Value>,
}

impl AttackSpec {
    /// Sets the type's own field `field` (tests and programmatic specs).
    pub fn set(&mut self, field: &str, value: impl Serialize) -> &mut Self {
        let v = serde_yaml::to_value(value).expect("a plain value");
        self.params.insert(field.to_string(), v);
        self
    }
    pub fn with(mut self, field: &str, value: impl Serialize) -> Self {
        self.set(field, value);
        self
    }
}

impl<'de> Deserialize<'de> for AttackSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = AttackSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an attack: a mapping such as `{type: pgd, norm: linf, eps: 8/255}`")
            }
            fn visit_unit<E: de::Error>(self) -> Result<AttackSpec, E> {
                Ok(AttackSpec::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<AttackSpec, A::Error> {
                let mut a = AttackSpec::default();
                // A field set to `~` is unset, as if left out (a recipe's field is unset that way).
                let mut seen = std::collections::BTreeSet::new();
                while let Some(k) = m.next_key::<String>()? {
                    if !seen.insert(k.clone()) {
                        return Err(de::Error::custom(format!("duplicate field `{k}`")));
                    }
                    match k.as_str() {
                        "type" => a.kind = m.next_value()?,
                        "norm" => a.norm = m.next_value()?,
                        "eps" => a.eps = m.next_value()?,
                        "curve" => a.curve = m.next_value()?,
                        _ => {
                            let v: serde_yaml::Value = m.next_value()?;
                            if !v.is_null() {
                                a.params.insert(k, v);
                            }
                        }
                    }
                }
                Ok(a)
            }
        }
        d.deserialize_any(V)
    }
}

/// What an attack type's file reads of its spec entry: its own fields, each parsed on request, and
/// the shared ones already checked (`eps` present and a radius). Problems are relative to the entry.
pub struct Fields<'a> {
    /// The registry name the entry resolved to (`apgd-t`, `fab`, …).
    pub name: &'a str,
    pub spec: &'a AttackSpec,
    pub eps: f64,
}

impl Fields<'_> {
    /// Field `field` parsed as `T`, `None` when unset.
    pub fn get<T: DeserializeOwned>(&self, field: &str) -> Result<Option<T>, Problem> {
        match self.spec.params.get(field) {
            None => Ok(None),
            Some(v) => serde_yaml::from_value(v.clone()).map(Some).map_err(|e| {
                Problem::at(field, format!("cannot read `{}`: {e}", show(v)))
                    .hint(format!("see `{}` in docs/attacks.md", self.name))
            }),
        }
    }
    pub fn has(&self, field: &str) -> bool {
        self.spec.params.contains_key(field)
    }
    /// A real number (`0.75`, `8/255`), `None` when unset.
    pub fn real(&self, field: &str) -> Result<Option<f64>, Problem> {
        Ok(self.get::<Real>(field)?.map(|r| r.get()))
    }
    /// A count ≥ 1, `default` when unset.
    pub fn count(&self, field: &str, default: usize) -> Result<usize, Problem> {
        match self.get::<usize>(field)? {
            Some(0) => Err(Problem::at(field, "must be at least 1")),
            Some(x) => Ok(x),
            None => Ok(default),
        }
    }
    /// A finite positive real, `default` when unset.
    pub fn positive(&self, field: &str, default: f64) -> Result<f64, Problem> {
        match self.real(field)? {
            Some(x) if x <= 0.0 || !x.is_finite() => {
                Err(Problem::at(field, format!("{x} must be positive")))
            }
            Some(x) => Ok(x),
            None => Ok(default),
        }
    }
    /// One of `choices` (as written), `default` when unset; `what` names the field in the message.
    pub fn choice(
        &self,
        field: &str,
        choices: &[&'static str],
        default: &'static str,
        what: &str,
    ) -> Result<&'static str, Problem> {
        match self.get::<String>(field)? {
            None => Ok(default),
            Some(v) => choices.iter().copied().find(|c| *c == v).ok_or_else(|| {
                let quoted: Vec<String> = choices.iter().map(|c| format!("`{c}`")).collect();
                let list = match quoted.split_last() {
                    Some((last, [])) => last.clone(),
                    Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
                    None => String::new(),
                };
                Problem::at(field, format!("unknown {what} `{v}`")).hint(format!("use {list}"))
            }),
        }
    }
    /// The threat model's norm (ℓ∞ when unset).
    pub fn norm(&self) -> Norm {
        self.spec.norm.unwrap_or(Norm::Linf)
    }
    /// Fails unless the norm is one of `allowed`; `what` names the attack's threat model (`ℓ∞`).
    pub fn norm_in(&self, allowed: &[Norm], what: &str) -> Result<Norm, Problem> {
        let norm = self.norm();
        if allowed.contains(&norm) {
            Ok(norm)
        } else {
            Err(Problem::at(
                "norm",
                format!("`{}` is an {what} attack, not {norm}", self.name),
            ))
        }
    }
    /// A problem with field `field` that only `remove it` fixes.
    pub fn remove(field: &str, why: impl Into<String>) -> Problem {
        Problem::at(field, why).hint("remove it")
    }
}

fn show(v: &serde_yaml::Value) -> String {
    serde_yaml::to_string(v)
        .map(|s| s.trim_end().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_fields_are_typed_and_the_rest_kept_as_written() {
        let a: AttackSpec =
            serde_yaml::from_str("{type: pgd, norm: l2, eps: 8/255, steps: 20, loss: cw}").unwrap();
        assert_eq!(a.kind.as_deref(), Some("pgd"));
        assert_eq!(a.norm, Some(Norm::L2));
        assert!((a.eps.unwrap().get() - 8.0 / 255.0).abs() < 1e-15);
        assert_eq!(a.params.len(), 2);
        let f = Fields {
            name: "pgd",
            spec: &a,
            eps: 0.1,
        };
        assert_eq!(f.count("steps", 10).unwrap(), 20);
        assert_eq!(f.count("restarts", 1).unwrap(), 1);
        assert_eq!(f.choice("loss", &["ce", "cw"], "ce", "loss").unwrap(), "cw");
        let bad = AttackSpec::default().with("steps", "many");
        let f = Fields {
            name: "pgd",
            spec: &bad,
            eps: 0.1,
        };
        assert_eq!(f.count("steps", 10).unwrap_err().path, ["steps"]);
        assert!(serde_yaml::from_str::<AttackSpec>("{eps: 0.1, eps: 0.2}").is_err());
        // `~` unsets a field, shared or the type's own.
        assert_eq!(
            serde_yaml::from_str::<AttackSpec>("{eps: 0.1, norm: ~, steps: ~}").unwrap(),
            AttackSpec {
                eps: Some(Real(0.1)),
                ..Default::default()
            }
        );
        assert_eq!(
            serde_yaml::from_str::<AttackSpec>("~").unwrap(),
            AttackSpec::default()
        );
    }
}
