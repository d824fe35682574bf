//! Indicators compiled for matching at line rate: hash sets for exact
//! values (domains and their parents, URLs and their path prefixes,
//! hashes, user agents), and sorted, merged ranges for addresses and
//! networks (a binary search per value).

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::IpAddr;

use super::feed::{Indicator, Kind};

/// Which indicator a value hit: (feed index, indicator index).
pub type Hit = (u32, u32);

/// Ranges of addresses, sorted by start, each with the indicator it
/// comes from, and the furthest end of each range and those before it.
#[derive(Debug, Default)]
struct Ranges<T> {
    ranges: Vec<(T, T, Hit)>,
    reach: Vec<T>,
}

impl<T: Ord + Copy> Ranges<T> {
    fn sort(&mut self) {
        // Equal starts: the widest first, so that the scan back from a
        // value meets the narrowest first.
        self.ranges.sort_by_key(|r| (r.0, std::cmp::Reverse(r.1)));
        self.reach = self
            .ranges
            .iter()
            .scan(None::<T>, |max, r| {
                let reach = max.map_or(r.1, |m| m.max(r.1));
                *max = Some(reach);
                Some(reach)
            })
            .collect();
    }

    /// The indicator of a range of `feed` (any: `None`) holding `value`:
    /// the one starting closest before it (the narrowest of nested
    /// networks).
    fn find(&self, value: T, feed: Option<u32>) -> Option<Hit> {
        let end = self.ranges.partition_point(|r| r.0 <= value);
        (0..end)
            .rev()
            .take_while(|&j| self.reach[j] >= value)
            .find(|&j| self.ranges[j].1 >= value && feed.is_none_or(|f| self.ranges[j].2 .0 == f))
            .map(|j| self.ranges[j].2)
    }
}

/// Every feed's indicators in force, compiled.
#[derive(Debug, Default)]
pub struct Sets {
    v4: Ranges<u32>,
    v6: Ranges<u128>,
    /// Exact values by kind: the first indicator with the value...
    exact: HashMap<Kind, HashMap<Box<str>, Hit>>,
    /// ... and those of other feeds with the same value, so that a rule
    /// asking for one feed finds its own.
    more: HashMap<Kind, HashMap<Box<str>, Vec<Hit>>>,
    /// Indicators compiled, by kind.
    pub counts: HashMap<Kind, usize>,
}

/// The key an exact value is kept under: lower case where case does not
/// matter, a domain without its trailing dot. Borrowed when the value is
/// its own key (most event values), so that a lookup allocates nothing.
fn normalise(kind: Kind, value: &str) -> Cow<'_, str> {
    let value = value.trim();
    match kind {
        Kind::Domain => lower(value.trim_end_matches('.')),
        Kind::Hash => lower(value),
        // `AA:BB:…` (Suricata, Zeek) and `aabb…` are the same fingerprint.
        Kind::Certificate if value.contains(':') => Cow::Owned(
            value
                .chars()
                .filter(|c| *c != ':')
                .map(|c| c.to_ascii_lowercase())
                .collect(),
        ),
        Kind::Certificate => lower(value),
        Kind::Url | Kind::UserAgent | Kind::Ip => Cow::Borrowed(value),
    }
}

/// `value` in ASCII lower case, borrowed when it is already.
fn lower(value: &str) -> Cow<'_, str> {
    if value.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(value.to_ascii_lowercase())
    } else {
        Cow::Borrowed(value)
    }
}

/// The kinds of indicator, in the order a value is looked up as each.
pub const KINDS: [Kind; 6] = [
    Kind::Ip,
    Kind::Domain,
    Kind::Url,
    Kind::Hash,
    Kind::UserAgent,
    Kind::Certificate,
];

impl Sets {
    /// Compiles the indicators of `feeds` that are in force at `now`;
    /// the ones that are not an address or network where one should be
    /// are skipped and returned.
    pub fn compile(feeds: &[&[Indicator]], now: i64) -> (Sets, Vec<String>) {
        let mut sets = Sets::default();
        let mut refused = Vec::new();
        for (f, indicators) in feeds.iter().enumerate() {
            for (i, ind) in indicators.iter().enumerate() {
                if !ind.valid_at(now) {
                    continue;
                }
                let hit = (f as u32, i as u32);
                if ind.kind == Kind::Ip {
                    match parse_net(&ind.value) {
                        Some(ipnet::IpNet::V4(n)) => sets.v4.ranges.push((
                            u32::from(n.network()),
                            u32::from(n.broadcast()),
                            hit,
                        )),
                        Some(ipnet::IpNet::V6(n)) => sets.v6.ranges.push((
                            u128::from(n.network()),
                            u128::from(n.broadcast()),
                            hit,
                        )),
                        None => {
                            refused.push(format!(
                                "{}: '{}' is not an address or network",
                                ind.origin, ind.value
                            ));
                            continue;
                        }
                    }
                } else {
                    sets.insert_exact(ind.kind, normalise(ind.kind, &ind.value).into_owned(), hit);
                }
                *sets.counts.entry(ind.kind).or_default() += 1;
            }
        }
        sets.v4.sort();
        sets.v6.sort();
        (sets, refused)
    }

    fn insert_exact(&mut self, kind: Kind, key: String, hit: Hit) {
        let first = self.exact.entry(kind).or_default();
        match first.get(key.as_str()) {
            None => {
                first.insert(key.into(), hit);
            }
            Some(&(feed, _)) if feed == hit.0 => {}
            Some(_) => {
                let more = self
                    .more
                    .entry(kind)
                    .or_default()
                    .entry(key.into())
                    .or_default();
                if !more.iter().any(|h| h.0 == hit.0) {
                    more.push(hit);
                }
            }
        }
    }

    /// The indicator of `feed` (any feed: `None`) kept under `key`.
    fn exact(&self, kind: Kind, key: &str, feed: Option<u32>) -> Option<Hit> {
        let first = *self.exact.get(&kind)?.get(key)?;
        match feed {
            None => Some(first),
            Some(f) if first.0 == f => Some(first),
            Some(f) => self
                .more
                .get(&kind)?
                .get(key)?
                .iter()
                .find(|h| h.0 == f)
                .copied(),
        }
    }

    /// The indicator `value` (an event field's value) hits as `kind`.
    pub fn find(&self, kind: Kind, value: &str) -> Option<Hit> {
        self.find_in(kind, value, None)
    }

    /// The indicator of `feed` (any feed: `None`) that `value` hits as
    /// `kind`.
    pub fn find_in(&self, kind: Kind, value: &str, feed: Option<u32>) -> Option<Hit> {
        match kind {
            Kind::Ip => match crate::alert::parse_ip(value)? {
                IpAddr::V4(a) => self.v4.find(u32::from(a), feed),
                IpAddr::V6(a) => self.v6.find(u128::from(a), feed),
            },
            Kind::Domain => {
                // The domain, then each parent: `a.evil.example` hits
                // `evil.example`.
                let domain = normalise(kind, value);
                let mut rest: &str = &domain;
                loop {
                    if let Some(hit) = self.exact(kind, rest, feed) {
                        return Some(hit);
                    }
                    rest = rest.split_once('.')?.1;
                }
            }
            Kind::Url => {
                // The URL whole, then each prefix ending at a `/`.
                let url = value.trim();
                let mut end = url.len();
                loop {
                    if let Some(hit) = self.exact(kind, &url[..end], feed) {
                        return Some(hit);
                    }
                    end = url[..end].trim_end_matches('/').rfind('/')? + 1;
                    if url[..end].ends_with("//") {
                        return None;
                    }
                }
            }
            Kind::Hash => {
                // `SHA256=…,MD5=…` (Sysmon's Hashes) or a bare hash.
                value.split(',').find_map(|part| {
                    let hex = part.rsplit('=').next().unwrap_or(part);
                    self.exact(kind, &normalise(kind, hex), feed)
                })
            }
            Kind::UserAgent => self.exact(kind, value.trim(), feed),
            Kind::Certificate => self.exact(kind, &normalise(kind, value), feed),
        }
    }

    /// Whether nothing is compiled.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }
}

fn parse_net(text: &str) -> Option<ipnet::IpNet> {
    let text = text.trim();
    text.parse::<ipnet::IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(ipnet::IpNet::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ind(kind: Kind, value: &str) -> Indicator {
        Indicator {
            kind,
            value: value.into(),
            valid_from: None,
            valid_until: None,
            revoked: false,
            origin: "t".into(),
        }
    }

    #[test]
    fn each_kind_matches_as_documented() {
        let feed = [
            ind(Kind::Ip, "198.51.100.0/24"),
            ind(Kind::Ip, "203.0.113.9"),
            ind(Kind::Ip, "2001:db8::/32"),
            ind(Kind::Domain, "Evil.Example."),
            ind(Kind::Url, "http://bad.example/kit/"),
            ind(Kind::Hash, "ABCDEF0123"),
            ind(Kind::UserAgent, "EvilBot/1.0"),
            ind(Kind::Certificate, "AB:CD:EF:01"),
        ];
        let (sets, refused) = Sets::compile(&[&feed], 0);
        assert!(refused.is_empty());
        assert_eq!(sets.find(Kind::Ip, "198.51.100.77"), Some((0, 0)));
        assert_eq!(sets.find(Kind::Ip, "203.0.113.9"), Some((0, 1)));
        assert_eq!(sets.find(Kind::Ip, "203.0.113.10"), None);
        assert_eq!(sets.find(Kind::Ip, "2001:db8::1"), Some((0, 2)));
        // Nested networks: the narrowest, also with the same start.
        let nested = [ind(Kind::Ip, "10.0.0.0/8"), ind(Kind::Ip, "10.0.0.0/24")];
        let (nested, _) = Sets::compile(&[&nested], 0);
        assert_eq!(nested.find(Kind::Ip, "10.0.0.5"), Some((0, 1)));
        assert_eq!(nested.find(Kind::Ip, "10.9.0.5"), Some((0, 0)));
        assert_eq!(sets.find(Kind::Domain, "cdn.evil.example"), Some((0, 3)));
        assert_eq!(sets.find(Kind::Domain, "notevil.example"), None);
        assert_eq!(
            sets.find(Kind::Url, "http://bad.example/kit/x/payload.exe"),
            Some((0, 4))
        );
        assert_eq!(sets.find(Kind::Url, "http://bad.example/other"), None);
        assert_eq!(
            sets.find(Kind::Hash, "SHA1=11,MD5=abcdef0123,SHA256=22"),
            Some((0, 5))
        );
        assert_eq!(sets.find(Kind::UserAgent, "EvilBot/1.0"), Some((0, 6)));
        assert_eq!(sets.find(Kind::UserAgent, "evilbot/1.0"), None);
        assert_eq!(sets.find(Kind::Certificate, "abcdef01"), Some((0, 7)));
        assert_eq!(sets.find(Kind::Certificate, "AB:CD:EF:02"), None);
    }

    #[test]
    fn a_value_in_two_feeds_is_found_in_each() {
        let a = [
            ind(Kind::Domain, "evil.example"),
            ind(Kind::Ip, "10.0.0.0/8"),
        ];
        let b = [
            ind(Kind::Hash, "00"),
            ind(Kind::Domain, "EVIL.example"),
            ind(Kind::Ip, "10.1.0.0/16"),
        ];
        let (sets, _) = Sets::compile(&[&a, &b], 0);
        assert_eq!(sets.find(Kind::Domain, "x.evil.example"), Some((0, 0)));
        assert_eq!(
            sets.find_in(Kind::Domain, "x.evil.example", Some(1)),
            Some((1, 1))
        );
        assert_eq!(sets.find_in(Kind::Domain, "evil.example", Some(2)), None);
        // Nested networks of two feeds: each feed its own.
        assert_eq!(sets.find(Kind::Ip, "10.1.2.3"), Some((1, 2)));
        assert_eq!(sets.find_in(Kind::Ip, "10.1.2.3", Some(0)), Some((0, 1)));
        assert_eq!(sets.find_in(Kind::Ip, "10.2.2.3", Some(1)), None);
    }

    #[test]
    fn expired_and_revoked_indicators_are_left_out() {
        let mut expired = ind(Kind::Domain, "old.example");
        expired.valid_until = Some(10);
        let mut revoked = ind(Kind::Domain, "gone.example");
        revoked.revoked = true;
        let mut future = ind(Kind::Domain, "soon.example");
        future.valid_from = Some(100);
        let (sets, _) = Sets::compile(&[&[expired, revoked, future]], 50);
        assert!(sets.is_empty());
    }
}
