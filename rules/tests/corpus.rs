//! The SigmaHQ corpus: loading and compiling every rule.

use std::path::PathBuf;

use vagt_rules::{load_paths, Placeholders, Profile, RuleSetBuilder};

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
