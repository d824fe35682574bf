//! The SigmaHQ corpus: loading and compiling every rule.

use std::path::PathBuf;

use vagt_rules::{load_paths, load_paths_with, Placeholders, Profile, RuleSetBuilder, RulesCache};

/// `../shared/corpora` relative to the repository; panics loudly if absent.
pub fn corpora() -> PathBuf {
    let path = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/corpora"));
    assert!(
        path.join("sigmahq/rules").is_dir(),
        "the shared corpora are missing: expected {} (CI provides ../shared/corpora beside the checkout)",
        path.display()
    );
    path
}

#[test]
fn sigmahq_rules_load_and_compile() {
    let root = corpora().join("sigmahq/rules");
    let collection = load_paths(&[&root], &Placeholders::new()).expect("read rules");
    let compiled = RuleSetBuilder::new(Profile::windows().expect("profile")).build(&collection);
    let total = compiled.set.len() + compiled.unroutable.len() + compiled.rejected.len();
    for r in &compiled.rejected {
        eprintln!("rejected: {r}");
    }
    eprintln!(
        "{} compiled, {} unroutable under the windows profile, {} rejected of {total}; {} literals",
        compiled.set.len(),
        compiled.unroutable.len(),
        compiled.rejected.len(),
        compiled.set.literal_count()
    );
    assert_eq!(total, 3141, "every rules file document is accounted for");
    let loaded = total - compiled.rejected.len();
    assert!(
        loaded * 100 >= total * 99,
        "only {loaded} of {total} rules loaded"
    );
}

/// Every SigmaHQ rules file, taken from the rules cache, loads to what
/// parsing it gives: the cache's format covers everything a load holds.
#[test]
fn sigmahq_rules_come_back_from_the_cache_as_parsed() {
    let root = corpora().join("sigmahq/rules");
    let kept = tempfile::tempdir().expect("temporary folder");
    let cache = RulesCache::in_dir(kept.path());
    let none = Placeholders::new();
    let parsed = load_paths(&[&root], &none).expect("read rules");
    let first = load_paths_with(&[&root], &none, Some(&cache)).expect("read rules");
    let cached = load_paths_with(&[&root], &none, Some(&cache)).expect("read rules");
    let used = cached.cache.clone().expect("a cache was given");
    assert!(used.files > 3000, "{used:?}");
    assert_eq!((used.hits, used.parsed), (used.files, 0), "{used:?}");
    assert!(first.cache.expect("a cache was given").written);
    let shape = |c: &vagt_rules::RuleCollection| {
        format!(
            "{:?}{:?}{:?}{:?}",
            c.rules, c.filters, c.windows, c.rejected
        )
    };
    assert_eq!(shape(&parsed), shape(&cached));
    assert_eq!(parsed.digest, cached.digest);
}

#[test]
#[ignore = "diagnostic listing"]
fn list_unroutable_windows() {
    let root = corpora().join("sigmahq/rules");
    let collection = load_paths(&[&root], &Placeholders::new()).expect("read rules");
    let compiled = RuleSetBuilder::new(Profile::windows().expect("profile")).build(&collection);
    for u in &compiled.unroutable {
        if u.info.logsource.product.as_deref() == Some("windows") {
            eprintln!("{} {} {}", u.info.origin, u.info.logsource, u.reason);
        }
    }
}
