//! Checks that run inside serde's visitors, so that the YAML parser, which knows where in the
//! file it is only while it visits a value, reports each problem with its path, line and
//! column (a check after deserialization would be reported at the parent mapping).

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, Deserializer};
use serde::Deserialize;

/// What makes two list entries duplicates of each other.
pub(crate) trait DedupKey {
    type Key: Eq + std::hash::Hash + fmt::Display;
    fn dedup_key(&self) -> Self::Key;
}

impl DedupKey for crate::names::Activation {
    type Key = crate::names::Activation;
    fn dedup_key(&self) -> Self::Key {
        *self
    }
}

impl DedupKey for u64 {
    type Key = u64;
    fn dedup_key(&self) -> u64 {
        *self
    }
}

/// A list that must be non-empty and free of duplicates.
pub(crate) struct List<T>(pub Vec<T>);

impl<'de, T: Deserialize<'de> + DedupKey> Deserialize<'de> for List<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_seq(ListVisitor(std::marker::PhantomData))
    }
}

struct ListVisitor<T>(std::marker::PhantomData<T>);

impl<'de, T: Deserialize<'de> + DedupKey> de::Visitor<'de> for ListVisitor<T> {
    type Value = List<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a non-empty list")
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<List<T>, A::Error> {
        let mut items = Vec::new();
        let mut seen = HashSet::new();
        while let Some(item) = seq.next_element::<T>()? {
            let key = item.dedup_key();
            if !seen.insert(key) {
                return Err(de::Error::custom(format_args!(
                    "duplicate entry {} (item {} of the list)",
                    item.dedup_key(),
                    items.len() + 1
                )));
            }
            items.push(item);
        }
        if items.is_empty() {
            return Err(de::Error::custom("must not be empty"));
        }
        Ok(List(items))
    }
}

/// A scalar check run inside the visitor.
struct Check<T> {
    expecting: &'static str,
    check: fn(T) -> Result<T, String>,
}

impl<'de> de::Visitor<'de> for Check<u64> {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        (self.check)(v).map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        let v = u64::try_from(v)
            .map_err(|_| E::custom(format_args!("expected {}, got {v}", self.expecting)))?;
        (self.check)(v).map_err(E::custom)
    }
}

impl<'de> de::Visitor<'de> for Check<f64> {
    type Value = f64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
        (self.check)(v).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
        self.visit_f64(v as f64)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
        self.visit_f64(v as f64)
    }
}

impl<'de> de::Visitor<'de> for Check<String> {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        (self.check)(v.to_string()).map_err(E::custom)
    }
}

pub(crate) fn grid_name<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    d.deserialize_str(Check::<String> {
        expecting: "a grid name",
        check: |s| {
            let ok = !s.is_empty()
                && s.len() <= 100
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if ok {
                Ok(s)
            } else {
                Err(format!(
                    "invalid grid name `{s}`: use 1 to 100 letters, digits, '-' or '_'"
                ))
            }
        },
    })
}

/// A name or e-mail address for the report: printable, at most 200 characters.
pub(crate) fn person<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    d.deserialize_str(Check::<String> {
        expecting: "a name or e-mail address",
        check: |s| {
            if s.chars().count() > 200 || s.chars().any(char::is_control) {
                Err("must be at most 200 printable characters".into())
            } else {
                Ok(s)
            }
        },
    })
}

pub(crate) fn epochs<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let n = d.deserialize_u64(Check::<u64> {
        expecting: "a number of epochs",
        check: |n| match n {
            0 => Err("epochs must be at least 1".into()),
            n if n > 100_000 => Err(format!("epochs must be at most 100000, got {n}")),
            n => Ok(n),
        },
    })?;
    Ok(n as u32)
}

pub(crate) fn target_fraction<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    d.deserialize_f64(Check::<f64> {
        expecting: "an accuracy in (0, 1]",
        check: |x| {
            if x > 0.0 && x <= 1.0 {
                Ok(x)
            } else {
                Err(format!("target_accuracy must be in (0, 1], got {x}"))
            }
        },
    })
}

pub(crate) fn positive_f64<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    d.deserialize_f64(Check::<f64> {
        expecting: "a positive number",
        check: |x| {
            if x.is_finite() && x > 0.0 {
                Ok(x)
            } else {
                Err(format!("must be a positive number, got {x}"))
            }
        },
    })
}

pub(crate) fn non_negative_f64<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    d.deserialize_f64(Check::<f64> {
        expecting: "a number >= 0",
        check: |x| {
            if x.is_finite() && x >= 0.0 {
                Ok(x)
            } else {
                Err(format!("must be a number >= 0, got {x}"))
            }
        },
    })
}

pub(crate) fn unit_interval_f64<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    d.deserialize_f64(Check::<f64> {
        expecting: "a number in [0, 1)",
        check: |x| {
            if (0.0..1.0).contains(&x) {
                Ok(x)
            } else {
                Err(format!("must be in [0, 1), got {x}"))
            }
        },
    })
}

pub(crate) fn positive_u32<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let n = d.deserialize_u64(Check::<u64> {
        expecting: "a positive integer",
        check: |n| match n {
            0 => Err("must be at least 1".into()),
            n if n > u32::MAX as u64 => Err(format!("must be at most {}, got {n}", u32::MAX)),
            n => Ok(n),
        },
    })?;
    Ok(n as u32)
}
