//! Pseudonyms: names that leave for the sector (organisations, hosts,
//! users) replaced by keyed hashes, HMAC-SHA256 under a key only the
//! sending organisation holds. The same name gives the same pseudonym,
//! so the sector can still count and correlate; without the key it
//! cannot be turned back or guessed from a list of likely names.

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

/// `pseudonyms:` in the config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PseudonymConfig {
    /// Environment variable holding the key (at least 16 bytes).
    pub key_env: String,
}

/// Makes pseudonyms under one key.
#[derive(Clone, PartialEq, Eq)]
pub struct Pseudonymiser {
    key: Vec<u8>,
}

impl std::fmt::Debug for Pseudonymiser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pseudonymiser(..)")
    }
}

impl Pseudonymiser {
    /// The pseudonymiser of the config's key.
    ///
    /// # Errors
    /// The variable is unset or holds fewer than 16 bytes.
    pub fn from_config(config: &PseudonymConfig) -> Result<Pseudonymiser, String> {
        let key = std::env::var(&config.key_env)
            .map_err(|_| format!("key_env: {} is not set", config.key_env))?;
        if key.len() < 16 {
            return Err(format!(
                "key_env: {} holds {} bytes; a key needs at least 16",
                config.key_env,
                key.len()
            ));
        }
        Ok(Pseudonymiser {
            key: key.into_bytes(),
        })
    }

    /// A pseudonymiser with this key (tests).
    pub fn with_key(key: &[u8]) -> Pseudonymiser {
        Pseudonymiser { key: key.to_vec() }
    }

    /// The pseudonym of a name of a kind (`org`, `host`, `user`):
    /// `host-` and 16 hex digits. Names are compared case-insensitively.
    pub fn name(&self, kind: &str, value: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key");
        mac.update(kind.as_bytes());
        mac.update(&[0]);
        mac.update(value.trim().to_lowercase().as_bytes());
        let digest = mac.finalize().into_bytes();
        let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        format!("{kind}-{hex}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudonyms_are_keyed_stable_and_case_blind() {
        let a = Pseudonymiser::with_key(b"0123456789abcdef");
        let b = Pseudonymiser::with_key(b"fedcba9876543210");
        assert_eq!(a.name("host", "HN-LAB-01"), a.name("host", "hn-lab-01"));
        assert_ne!(a.name("host", "HN-LAB-01"), b.name("host", "HN-LAB-01"));
        assert_ne!(a.name("host", "x"), a.name("user", "x"));
        assert!(a.name("org", "x").starts_with("org-") && a.name("org", "x").len() == 20);
    }
}
