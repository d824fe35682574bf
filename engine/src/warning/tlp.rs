//! TLP 2.0 (FIRST's Traffic Light Protocol): how far an alert may be
//! shared, and to whom each output speaks.
//!
//! An alert's TLP is the most restrictive of the config's default, the
//! rule's `tlp.*` tag, the catalog (its assets and its organisation) and
//! the routes it takes. Each output declares its audience; an alert goes
//! only to the audiences its TLP admits:
//!
//! | TLP | recipients | organisation | community | public |
//! |---|---|---|---|---|
//! | CLEAR | yes | yes | yes | yes |
//! | GREEN | yes | yes | yes | no |
//! | AMBER | yes | yes | no | no |
//! | AMBER+STRICT | no | yes | no | no |
//! | RED | yes | no | no | no |
//!
//! `recipients` are named people who need to know (an on-call pager);
//! `organisation` is the organisation the alert concerns (its SOC, its
//! per-actor file or topic); `community` is the sector's members;
//! `public` anyone.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A TLP 2.0 label, from least to most restrictive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tlp {
    /// No limit on disclosure.
    Clear,
    /// The community.
    Green,
    /// The organisation and its clients, on a need-to-know basis.
    Amber,
    /// The organisation only.
    AmberStrict,
    /// Named recipients only.
    Red,
}

/// Every label, least restrictive first.
pub const ALL: [Tlp; 5] = [
    Tlp::Clear,
    Tlp::Green,
    Tlp::Amber,
    Tlp::AmberStrict,
    Tlp::Red,
];

/// Whom an output speaks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Audience {
    /// Named people who need to know.
    Recipients,
    /// The organisation the alert concerns (the default).
    #[default]
    Organisation,
    /// The sector's community of organisations.
    Community,
    /// Anyone.
    Public,
}

impl Audience {
    /// Its name in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            Audience::Recipients => "recipients",
            Audience::Organisation => "organisation",
            Audience::Community => "community",
            Audience::Public => "public",
        }
    }
}

impl Tlp {
    /// The label as TLP 2.0 writes it: `TLP:AMBER+STRICT`.
    pub fn label(self) -> &'static str {
        match self {
            Tlp::Clear => "TLP:CLEAR",
            Tlp::Green => "TLP:GREEN",
            Tlp::Amber => "TLP:AMBER",
            Tlp::AmberStrict => "TLP:AMBER+STRICT",
            Tlp::Red => "TLP:RED",
        }
    }

    /// The rule tag that marks it: `tlp.amber+strict`.
    pub fn tag(self) -> String {
        format!("tlp.{}", self.label()[4..].to_ascii_lowercase())
    }

    /// Reads `amber`, `AMBER+STRICT`, `TLP:GREEN`, `amber_strict`; the
    /// TLP 1.0 `white` is `CLEAR`.
    pub fn parse(text: &str) -> Option<Tlp> {
        let text = text.trim();
        let bare = text
            .get(..4)
            .filter(|p| p.eq_ignore_ascii_case("tlp:") || p.eq_ignore_ascii_case("tlp."))
            .map_or(text, |_| &text[4..]);
        match bare.to_ascii_lowercase().as_str() {
            "clear" | "white" => Some(Tlp::Clear),
            "green" => Some(Tlp::Green),
            "amber" => Some(Tlp::Amber),
            "amber+strict" | "amber_strict" | "amber-strict" => Some(Tlp::AmberStrict),
            "red" => Some(Tlp::Red),
            _ => None,
        }
    }

    /// The most restrictive `tlp.*` tag among a rule's tags.
    pub fn from_tags<'a>(tags: impl IntoIterator<Item = &'a str>) -> Option<Tlp> {
        tags.into_iter()
            .filter(|t| t.len() > 4 && t[..4].eq_ignore_ascii_case("tlp."))
            .filter_map(Tlp::parse)
            .max()
    }

    /// Whether an alert of this TLP may go to `audience`.
    pub fn admits(self, audience: Audience) -> bool {
        use Audience::*;
        match self {
            Tlp::Clear => true,
            Tlp::Green => audience != Public,
            Tlp::Amber => matches!(audience, Recipients | Organisation),
            Tlp::AmberStrict => audience == Organisation,
            Tlp::Red => audience == Recipients,
        }
    }

    /// The id of the STIX 2.1 marking definition for this label (the TLP
    /// 2.0 marking definitions OASIS publishes).
    pub fn stix_marking_id(self) -> &'static str {
        match self {
            Tlp::Clear => "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487",
            Tlp::Green => "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb",
            Tlp::Amber => "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421",
            Tlp::AmberStrict => "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003",
            Tlp::Red => "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1",
        }
    }
}

impl fmt::Display for Tlp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

impl Serialize for Tlp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.label())
    }
}

impl<'de> Deserialize<'de> for Tlp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Tlp, D::Error> {
        let text = String::deserialize(d)?;
        Tlp::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "'{text}' is not a TLP 2.0 label (clear, green, amber, amber+strict, red)"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_parse_in_every_spelling() {
        for tlp in ALL {
            assert_eq!(Tlp::parse(tlp.label()), Some(tlp));
            assert_eq!(Tlp::parse(&tlp.label()[4..].to_lowercase()), Some(tlp));
        }
        assert_eq!(Tlp::parse("white"), Some(Tlp::Clear));
        assert_eq!(Tlp::parse("tlp.amber_strict"), Some(Tlp::AmberStrict));
        assert_eq!(Tlp::parse("orange"), None);
        assert_eq!(Tlp::parse("tl"), None);
    }

    #[test]
    fn the_most_restrictive_tag_wins() {
        let tags = ["attack.t1110", "tlp.green", "TLP.AMBER", "tlpx.red"];
        assert_eq!(Tlp::from_tags(tags), Some(Tlp::Amber));
        assert_eq!(Tlp::from_tags(["attack.t1110"]), None);
    }

    #[test]
    fn audiences_follow_tlp_2_0() {
        use Audience::*;
        let admitted = |tlp: Tlp| -> Vec<Audience> {
            [Recipients, Organisation, Community, Public]
                .into_iter()
                .filter(|a| tlp.admits(*a))
                .collect()
        };
        assert_eq!(admitted(Tlp::Clear).len(), 4);
        assert_eq!(
            admitted(Tlp::Green),
            vec![Recipients, Organisation, Community]
        );
        assert_eq!(admitted(Tlp::Amber), vec![Recipients, Organisation]);
        assert_eq!(admitted(Tlp::AmberStrict), vec![Organisation]);
        assert_eq!(admitted(Tlp::Red), vec![Recipients]);
    }
}
