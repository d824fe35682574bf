//! Durations in configs: one type for every timeout, interval and
//! lateness, written with a unit (`250ms`, `5s`, `2m`, `1h 30m`, `1d`) or
//! `0`; a bare number is refused, so that no one has to guess its unit.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A duration setting.
///
/// ```
/// use vagt_connectors::ConfigDuration;
///
/// let d: ConfigDuration = serde_json::from_str(r#""1m 30s""#)?;
/// assert_eq!(d.millis(), 90_000);
/// assert!(serde_json::from_str::<ConfigDuration>("30").is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ConfigDuration(pub Duration);

impl ConfigDuration {
    /// From whole milliseconds.
    pub const fn from_millis(ms: u64) -> ConfigDuration {
        ConfigDuration(Duration::from_millis(ms))
    }

    /// From whole seconds.
    pub const fn from_secs(secs: u64) -> ConfigDuration {
        ConfigDuration(Duration::from_secs(secs))
    }

    /// Whole milliseconds (saturating), as event-time arithmetic uses them.
    pub fn millis(self) -> i64 {
        i64::try_from(self.0.as_millis()).unwrap_or(i64::MAX)
    }

    /// The duration.
    pub fn get(self) -> Duration {
        self.0
    }

    /// Whether it is zero.
    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }
}

impl std::str::FromStr for ConfigDuration {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text.parse::<f64>().is_ok_and(|n| n != 0.0) {
            return Err(format!(
                "'{text}' has no unit: write e.g. '{text}ms' or '{text}s'"
            ));
        }
        humantime::parse_duration(text)
            .map(ConfigDuration)
            .map_err(|e| format!("'{text}' is not a duration ({e}); write e.g. 250ms, 5s, 2m, 1h"))
    }
}

impl fmt::Display for ConfigDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ConfigDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration with a unit, such as 250ms, 5s, 2m or 1h")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ConfigDuration, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ConfigDuration, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ConfigDuration, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<ConfigDuration, E> {
                self.visit_str(&v.to_string())
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_are_required_except_for_zero() {
        for (text, ms) in [
            ("0", 0),
            ("0s", 0),
            ("250ms", 250),
            ("5s", 5_000),
            ("2m", 120_000),
            ("1h 30m", 5_400_000),
            ("1d", 86_400_000),
        ] {
            assert_eq!(
                text.parse::<ConfigDuration>().unwrap().millis(),
                ms,
                "{text}"
            );
        }
        for text in ["5", "1.5", "soon", "", "-1s"] {
            assert!(text.parse::<ConfigDuration>().is_err(), "{text}");
        }
        let e = "30".parse::<ConfigDuration>().unwrap_err();
        assert!(e.contains("no unit"), "{e}");
    }
}
