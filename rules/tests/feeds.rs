//! Rules that refer to a live value set as `%feed:NAME%`: resolved when
//! the set is built, read as the set is when each batch is evaluated, and
//! rejected, naming the feed, when there is no such feed. The engine's
//! threat intelligence feeds are the real sets (`engine/tests/intel.rs`);
//! here a set of strings stands in, through the same public traits.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use vagt_rules::{
    load_text, LiveSet, LiveSets, Placeholders, Profile, RuleCollection, RuleError, RuleSetBuilder,
    SetTest, UncheckedFeeds,
};

const RULES: &str = r#"
title: Destination in the feed's networks
id: 99999999-0000-4000-8000-00000000f001
logsource: {product: test}
detection:
  sel: {DestinationIp|cidr: '%feed:blocklist%'}
  condition: sel
---
title: Query of a feed's value by a known process
id: 99999999-0000-4000-8000-00000000f002
logsource: {product: test}
detection:
  sel:
    QueryName|expand: '%feed:blocklist%'
    Image|endswith: '\powershell.exe'
  condition: sel
---
title: A feed that is not there
id: 99999999-0000-4000-8000-00000000f003
logsource: {product: test}
detection:
  sel: {DestinationIp|cidr: '%feed:nowhere%'}
  condition: sel
"#;

/// A feed of plain values; an address value stands for itself as a
/// network of one.
#[derive(Debug, Default)]
struct Values(Mutex<HashSet<String>>);

#[derive(Debug)]
struct Feed {
    values: Arc<Values>,
    addresses_only: bool,
}

impl LiveSet for Feed {
    fn current(&self) -> SetTest<'_> {
        let now = self.values.0.lock().unwrap().clone();
        let addresses_only = self.addresses_only;
        Box::new(move |v| {
            (!addresses_only || v.parse::<std::net::IpAddr>().is_ok()) && now.contains(v)
        })
    }
}

#[derive(Debug)]
struct Feeds(Arc<Values>);

impl LiveSets for Feeds {
    fn resolve(&self, name: &str, addresses_only: bool) -> Option<Arc<dyn LiveSet>> {
        (name == "blocklist").then(|| {
            Arc::new(Feed {
                values: self.0.clone(),
                addresses_only,
            }) as Arc<dyn LiveSet>
        })
    }

    fn names(&self) -> Vec<String> {
        vec!["blocklist".into()]
    }
}

const EVENTS: &str = r#"{"DestinationIp": "203.0.113.9", "QueryName": "x"}
{"DestinationIp": "198.51.100.1", "QueryName": "evil.example", "Image": "C:\\Windows\\powershell.exe"}
{"QueryName": "evil.example", "Image": "C:\\Windows\\cmd.exe"}
{"QueryName": "203.0.113.9", "Image": "C:\\Windows\\powershell.exe"}
"#;

fn matched(set: &vagt_rules::RuleSet) -> Vec<(usize, String)> {
    crate::support::matches_of(set, EVENTS)
        .into_iter()
        .map(|(row, id)| (row, id[id.len() - 4..].to_string()))
        .collect()
}

fn collection() -> RuleCollection {
    let mut collection = RuleCollection::default();
    load_text(
        "feeds.yml".as_ref(),
        RULES,
        &Placeholders::new(),
        &mut collection,
    );
    collection
}

#[test]
fn a_rule_reads_its_feed_as_it_is_at_each_batch() {
    let values = Arc::new(Values::default());
    values.0.lock().unwrap().insert("203.0.113.9".into());
    let compiled = RuleSetBuilder::new(Profile::passthrough())
        .feeds(Arc::new(Feeds(values.clone())))
        .build(&collection());
    assert_eq!(compiled.set.len(), 2);
    // The unknown feed is rejected, naming it and the feeds there are.
    assert_eq!(compiled.rejected.len(), 1);
    let rejection = compiled.rejected[0].to_string();
    assert!(
        rejection.contains("'nowhere'") && rejection.contains("blocklist"),
        "{rejection}"
    );
    assert!(matches!(
        compiled.rejected[0].error,
        RuleError::UnknownFeed { .. }
    ));
    // `cidr` tests DestinationIp against the feed's addresses; `expand`
    // tests QueryName against all of its values, the address too.
    assert_eq!(
        matched(&compiled.set),
        vec![(0, "f001".to_string()), (3, "f002".to_string())]
    );

    // The feed changes; the same compiled set sees the new version.
    values.0.lock().unwrap().insert("evil.example".into());
    values.0.lock().unwrap().remove("203.0.113.9");
    assert_eq!(matched(&compiled.set), vec![(1, "f002".to_string())]);
}

#[test]
fn without_feeds_a_rule_naming_one_is_rejected_and_checking_accepts_it() {
    let compiled = RuleSetBuilder::new(Profile::passthrough()).build(&collection());
    assert_eq!(compiled.set.len(), 0);
    assert_eq!(compiled.rejected.len(), 3);
    assert!(compiled.rejected[0]
        .to_string()
        .contains("no feeds are configured"));
    let checked = RuleSetBuilder::new(Profile::passthrough())
        .feeds(Arc::new(UncheckedFeeds))
        .build(&collection());
    assert_eq!((checked.set.len(), checked.rejected.len()), (3, 0));
    assert!(matched(&checked.set).is_empty());
}
