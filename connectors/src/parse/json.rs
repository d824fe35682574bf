//! JSON formats: the record passes unchanged once its top-level keys show
//! it is an event of the format.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};

use super::Parsed;

/// The record as it is if its top level has one of `keys`; the reason
/// otherwise. A record that is not valid JSON passes, for the decoder to
/// say why.
pub(super) fn checked(bytes: &[u8], keys: &[&str], what: &str) -> Result<Parsed, String> {
    match has_any_key(bytes, keys) {
        Some(false) => Err(format!(
            "not {what}: the object has none of the keys {}",
            keys.join(", ")
        )),
        _ => Ok(Parsed::Same),
    }
}

/// Whether the object in `bytes` has one of `keys` at its top level;
/// `None` if it is not a JSON object.
fn has_any_key(bytes: &[u8], keys: &[&str]) -> Option<bool> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    de.deserialize_map(KeyFinder { keys }).ok()
}

struct KeyFinder<'k> {
    keys: &'k [&'k str],
}

impl<'de> Visitor<'de> for KeyFinder<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        let mut found = false;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            found |= self.keys.contains(&key.as_ref());
            map.next_value::<IgnoredAny>()?;
        }
        Ok(found)
    }
}
