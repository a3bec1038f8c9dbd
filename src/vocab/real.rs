//! Real-valued spec fields that accept `8/255`, `0.5`, `1e-4` or `"2.5e-4"`.
use serde::{de, Deserialize, Deserializer, Serialize};
use std::fmt;

/// A number from the spec. Fractions are evaluated to the same `f64` a decimal literal would give,
/// so `8/255` and `0.03137254901960784` produce identical cache keys.
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd, Serialize)]
#[serde(transparent)]
pub struct Real(pub f64);

impl Real {
    pub fn get(self) -> f64 {
        self.0
    }
}

/// Parses `a/b`, or any float literal, into an `f64`.
pub fn parse_real(text: &str) -> Result<f64, String> {
    let t = text.trim();
    let v = if let Some((a, b)) = t.split_once('/') {
        let a: f64 = a
            .trim()
            .parse()
            .map_err(|_| format!("`{t}` is not a number or fraction like 8/255"))?;
        let b: f64 = b
            .trim()
            .parse()
            .map_err(|_| format!("`{t}` is not a number or fraction like 8/255"))?;
        if b == 0.0 {
            return Err(format!("`{t}` divides by zero"));
        }
        a / b
    } else {
        t.parse()
            .map_err(|_| format!("`{t}` is not a number or fraction like 8/255"))?
    };
    if !v.is_finite() {
        return Err(format!("`{t}` is not finite"));
    }
    Ok(v)
}

impl<'de> Deserialize<'de> for Real {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Real;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number or a fraction such as 8/255")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Real, E> {
                if v.is_finite() {
                    Ok(Real(v))
                } else {
                    Err(E::custom("the number is not finite"))
                }
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Real, E> {
                Ok(Real(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Real, E> {
                Ok(Real(v as f64))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Real, E> {
                parse_real(v).map(Real).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fraction_equals_decimal_bit_for_bit() {
        let a: Real = serde_yaml::from_str("8/255").unwrap();
        let b: Real = serde_yaml::from_str("0.03137254901960784").unwrap();
        assert_eq!(a.0.to_bits(), b.0.to_bits());
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            serde_json::to_string(&b).unwrap()
        );
    }

    #[test]
    fn accepts_ints_strings_and_exponents() {
        assert_eq!(serde_yaml::from_str::<Real>("2").unwrap().0, 2.0);
        assert_eq!(serde_yaml::from_str::<Real>("1e-4").unwrap().0, 1e-4);
        assert_eq!(serde_yaml::from_str::<Real>("'2.5e-4'").unwrap().0, 2.5e-4);
        assert_eq!(serde_yaml::from_str::<Real>(" 3 / 4 ").unwrap().0, 0.75);
    }

    #[test]
    fn rejects_garbage_and_division_by_zero() {
        assert!(serde_yaml::from_str::<Real>("eight").is_err());
        assert!(serde_yaml::from_str::<Real>("1/0").is_err());
        assert!(serde_yaml::from_str::<Real>("8/x").is_err());
    }
}
