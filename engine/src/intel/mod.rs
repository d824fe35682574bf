//! Threat intelligence in: indicator feeds (addresses and networks,
//! domains, URLs, file hashes, user agents, each with its validity),
//! compiled into sets built for the job and matched against the event
//! fields the profile's columns hold for each kind, batch by batch. A hit
//! is an alert like any other (organisation, critical processes,
//! guidance, routes, suppression), carrying the indicator, its feed and
//! confidence; its TLP is at least the feed's. Sigma rules read a feed as
//! a value list (`%feed:NAME%`, [`Intel::lists`]), as it is at each batch.
//!
//! ```text
//!  feed files ──► read (csv, lines, STIX 2.1 bundle) ──► in force now ──► sets ──┐
//!   └── re-read every `refresh` when changed; a feed that fails keeps its last good version
//!  evaluated batch ──► each kind's columns ──► sets.find ──► alerts ◄──────────────┘
//! ```

pub mod feed;
pub mod sets;
pub mod taxii;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arrow_array::cast::AsArray;
use arrow_array::Array;
use serde::Deserialize;
use vagt_connectors::{ConfigDuration, EventBatch};
use vagt_rules::loader::Origin;
use vagt_rules::window::{format_millis, TimestampSpec};
use vagt_rules::{Level, LiveSet, LiveSets, LogSource, Profile, RuleInfo, RuleMeta, SetTest};

use crate::alert::{Alert, AlertBuilder, IndicatorHit};
use crate::config::ConfigError;
use crate::warning::tlp::Tlp;
use feed::{Format, Indicator, Kind};
use sets::Sets;

/// `intel:` in the config.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntelConfig {
    /// The feeds.
    pub feeds: Vec<FeedConfig>,
    /// The event fields each kind of indicator is matched against (Sigma
    /// names, found through the profile); defaults per kind, see
    /// [`default_fields`].
    #[serde(default)]
    pub fields: BTreeMap<Kind, Vec<String>>,
}

/// One feed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedConfig {
    /// Its name, in alerts and metrics.
    pub name: String,
    /// The file (written by whatever fetches the feed)...
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// ... in this format;
    #[serde(default)]
    pub format: Option<Format>,
    /// ... or a TAXII 2.1 collection, polled.
    #[serde(default)]
    pub taxii: Option<taxii::TaxiiFeedConfig>,
    /// What each line of a `lines` feed is.
    #[serde(default)]
    pub kind: Option<Kind>,
    /// The kinds of indicator taken from the feed (default all): those of
    /// other kinds are left out, and counted.
    #[serde(default)]
    pub kinds: Option<Vec<Kind>>,
    /// How far its hits may be shared (default AMBER): an alert's TLP is
    /// at least this.
    #[serde(default = "default_tlp")]
    pub tlp: Tlp,
    /// How sure the feed is, 0-100 (default 50): 80 and above make high
    /// alerts, 50 and above medium, below low.
    #[serde(default = "default_confidence")]
    pub confidence: u8,
    /// How often the file is read again when it changed, or the
    /// collection polled (default 1m).
    #[serde(default = "default_refresh")]
    pub refresh: ConfigDuration,
}

fn default_tlp() -> Tlp {
    Tlp::Amber
}

fn default_confidence() -> u8 {
    50
}

fn default_refresh() -> ConfigDuration {
    ConfigDuration::from_secs(60)
}

/// The fields each kind is matched against unless `intel.fields` says.
pub fn default_fields(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Ip => &[
            "SourceIp",
            "DestinationIp",
            "IpAddress",
            "SourceAddress",
            "DestAddress",
            "ClientIP",
            "src_ip",
            "dst_ip",
        ],
        Kind::Domain => &["QueryName", "DestinationHostname", "Domain", "query"],
        Kind::Url => &["Url", "URL", "RequestUrl", "url"],
        Kind::Hash => &["Hashes", "Hash", "sha256", "sha1", "md5", "Imphash"],
        Kind::UserAgent => &["UserAgent", "user_agent", "c-useragent"],
        Kind::Certificate => &[
            "tls.fingerprint",
            "tls.cert_fingerprint",
            "fingerprint",
            "certificate.fingerprint",
            "CertificateThumbprint",
            "Thumbprint",
        ],
    }
}

use sets::KINDS;

impl IntelConfig {
    /// Checks the settings, naming the feed at fault.
    ///
    /// # Errors
    /// A name is empty or repeated, a `lines` feed has no kind, a
    /// confidence is above 100, a refresh is 0.
    pub fn validate(&self) -> Result<(), String> {
        let mut names = std::collections::BTreeSet::new();
        for f in &self.feeds {
            if f.name.trim().is_empty() || !names.insert(f.name.as_str()) {
                return Err(format!("feed name '{}' is empty or given twice", f.name));
            }
            match (&f.path, &f.taxii, f.format) {
                (Some(_), None, None) => {
                    return Err(format!(
                        "feed '{}': a file needs its `format` (csv, lines, stix, misp)",
                        f.name
                    ))
                }
                (Some(_), None, Some(_)) => {}
                (None, Some(t), None | Some(Format::Stix)) => {
                    t.validate()
                        .map_err(|e| format!("feed '{}': {e}", f.name))?;
                }
                (None, Some(_), Some(_)) => {
                    return Err(format!(
                        "feed '{}': a TAXII collection gives STIX; no other format",
                        f.name
                    ))
                }
                _ => return Err(format!("feed '{}': give either `path` or `taxii`", f.name)),
            }
            if f.format == Some(Format::Lines) && f.kind.is_none() {
                return Err(format!(
                    "feed '{}': a `lines` feed needs its `kind`",
                    f.name
                ));
            }
            if let (Some(kinds), Some(kind)) = (&f.kinds, f.kind) {
                if !kinds.contains(&kind) {
                    return Err(format!(
                        "feed '{}': its lines are of kind {}, which `kinds` leaves out",
                        f.name,
                        kind.as_str()
                    ));
                }
            }
            if f.kinds.as_ref().is_some_and(Vec::is_empty) {
                return Err(format!(
                    "feed '{}': `kinds` is empty; leave it out to take every kind",
                    f.name
                ));
            }
            if f.confidence > 100 {
                return Err(format!(
                    "feed '{}': confidence {} is above 100",
                    f.name, f.confidence
                ));
            }
            if f.refresh.get().is_zero() {
                return Err(format!("feed '{}': refresh must be more than 0s", f.name));
            }
        }
        Ok(())
    }
}

/// Feeds' indicators, compiled.
#[derive(Debug, Default)]
pub struct Loaded {
    /// By feed; shared with the refresh thread's current versions.
    indicators: Vec<Arc<Vec<Indicator>>>,
    sets: Sets,
    /// By feed, the kinds it holds: a value is looked up as those only.
    kinds: Vec<Vec<Kind>>,
}

impl Loaded {
    fn new(indicators: Vec<Arc<Vec<Indicator>>>, sets: Sets) -> Loaded {
        let kinds = indicators
            .iter()
            .map(|feed| {
                KINDS
                    .iter()
                    .copied()
                    .filter(|k| feed.iter().any(|x| x.kind == *k))
                    .collect()
            })
            .collect();
        Loaded {
            indicators,
            sets,
            kinds,
        }
    }

    /// How many indicators.
    pub fn len(&self) -> usize {
        self.indicators.iter().map(|f| f.len()).sum()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What the feeds did (for `--stats`).
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct IntelReport {
    /// By feed: indicators read, in force when last compiled, loads and
    /// failed loads.
    pub feeds: BTreeMap<String, FeedReport>,
    /// Alerts raised by indicators.
    pub hits: u64,
}

/// One feed's figures.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct FeedReport {
    pub indicators: u64,
    /// Read, but of a kind the feed's `kinds` leaves out.
    pub left_out: u64,
    pub in_force: u64,
    pub loads: u64,
    pub failures: u64,
    /// The last failure, if the last load failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The feeds in force, matched against batches; refreshed on a thread of
/// its own.
#[derive(Debug)]
pub struct Intel {
    feeds: Vec<FeedConfig>,
    loaded: Arc<Mutex<Arc<Loaded>>>,
    report: Arc<Mutex<IntelReport>>,
    hits: AtomicU64,
    /// Per kind, the columns that may hold its values.
    columns: Vec<(Kind, Vec<String>)>,
    infos: Vec<RuleInfo>,
    stop: Arc<AtomicBool>,
    /// Indicators that came into force after the start, by feed, not yet
    /// taken for a retro-hunt.
    added: Arc<Mutex<Vec<Vec<Indicator>>>>,
}

/// The feeds of `config` started (see [`Intel::start`]); `None` without
/// `intel:`.
///
/// # Errors
/// As [`Intel::start`].
pub fn start_configured(
    config: Option<&IntelConfig>,
    profile: &Profile,
) -> Result<Option<Arc<Intel>>, ConfigError> {
    config
        .map(|c| Intel::start(c, profile).map(Arc::new))
        .transpose()
}

impl Intel {
    /// Every column an indicator is looked for in.
    pub fn columns(&self) -> impl Iterator<Item = &str> {
        self.columns
            .iter()
            .flat_map(|(_, columns)| columns)
            .map(String::as_str)
    }
}

impl Drop for Intel {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The rule an indicator of `feed` raises alerts as.
fn feed_rule(feed: &FeedConfig) -> RuleInfo {
    let level = match feed.confidence {
        80.. => Level::High,
        50.. => Level::Medium,
        _ => Level::Low,
    };
    RuleInfo {
        meta: RuleMeta {
            id: Some(format!("intel:{}", feed.name)),
            name: None,
            title: format!("Indicator of feed {}", feed.name),
            level,
            status: None,
            tags: vec![feed.tlp.tag(), format!("intel.{}", feed.name)],
            description: Some(format!(
                "An event holds an indicator of the threat intelligence feed {}.",
                feed.name
            )),
            author: None,
            references: Vec::new(),
            falsepositives: Vec::new(),
        },
        logsource: LogSource::default(),
        origin: Origin {
            path: feed
                .path
                .clone()
                .or_else(|| feed.taxii.as_ref().map(|t| PathBuf::from(&t.collection)))
                .unwrap_or_default(),
            line: 1,
        },
    }
}

impl Intel {
    /// Reads the feeds (one that fails is logged and counted, and starts
    /// empty) and starts refreshing them.
    ///
    /// # Errors
    /// A TAXII feed's credential variable is unset.
    pub fn start(config: &IntelConfig, profile: &Profile) -> Result<Intel, ConfigError> {
        let columns = KINDS
            .iter()
            .map(|&kind| {
                let columns = match config.fields.get(&kind) {
                    Some(fields) => crate::alert::profile_columns(profile, fields),
                    None => crate::alert::profile_columns(profile, default_fields(kind)),
                };
                (kind, columns)
            })
            .collect();
        let intel = Intel {
            infos: config.feeds.iter().map(feed_rule).collect(),
            feeds: config.feeds.clone(),
            loaded: Arc::default(),
            report: Arc::default(),
            hits: AtomicU64::new(0),
            columns,
            stop: Arc::default(),
            added: Arc::new(Mutex::new(vec![Vec::new(); config.feeds.len()])),
        };
        let mut current: Vec<Arc<Vec<Indicator>>> = vec![Arc::default(); intel.feeds.len()];
        let mut sources: Vec<Source> = intel
            .feeds
            .iter()
            .map(|f| match (&f.path, &f.taxii) {
                (_, Some(t)) => taxii::TaxiiSource::new(t).map(Source::Taxii).map_err(|e| {
                    ConfigError::setting("intel", format!("intel feed '{}': {e}", f.name))
                }),
                (path, None) => Ok(Source::File {
                    path: path.clone().unwrap_or_default(),
                    format: f.format.unwrap_or(Format::Csv),
                    seen: None,
                }),
            })
            .collect::<Result<_, _>>()?;
        // The first read, before the run starts, on a thread of its own:
        // a TAXII poll runs its own small runtime, which cannot be started
        // from the pipeline's.
        std::thread::scope(|scope| {
            scope.spawn(|| {
                refresh(
                    &intel.feeds,
                    &mut sources,
                    &mut current,
                    &intel.loaded,
                    &intel.report,
                    None,
                );
            });
        });
        let (feeds, loaded, report, stop, added) = (
            intel.feeds.clone(),
            intel.loaded.clone(),
            intel.report.clone(),
            intel.stop.clone(),
            intel.added.clone(),
        );
        std::thread::spawn(move || {
            let tick = feeds
                .iter()
                .map(|f| f.refresh.get())
                .min()
                .unwrap_or(Duration::from_secs(60))
                .min(Duration::from_secs(1));
            // Each feed at its own interval.
            let mut last = vec![std::time::Instant::now(); feeds.len()];
            let mut boundary = next_boundary(&current, now_ms());
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(tick);
                let due: Vec<bool> = feeds
                    .iter()
                    .zip(&last)
                    .map(|(f, l)| l.elapsed() >= f.refresh.get())
                    .collect();
                if due.iter().any(|d| *d) {
                    for (l, d) in last.iter_mut().zip(&due) {
                        if *d {
                            *l = std::time::Instant::now();
                        }
                    }
                    let before = current.clone();
                    refresh(
                        &feeds,
                        &mut sources,
                        &mut current,
                        &loaded,
                        &report,
                        Some(&due),
                    );
                    note_added(&before, &current, &added);
                    boundary = next_boundary(&current, now_ms());
                }
                // An indicator whose `valid_from` came comes into force
                // (and is hunted back in time); one whose `valid_until`
                // passed already matches no more.
                let now = now_ms();
                if boundary.is_some_and(|b| b <= now) {
                    let starting: Vec<Vec<Indicator>> = current
                        .iter()
                        .map(|f| {
                            f.iter()
                                .filter(|x| {
                                    x.valid_from.is_some_and(|t| {
                                        t <= now && boundary.is_some_and(|b| t >= b)
                                    })
                                })
                                .cloned()
                                .collect()
                        })
                        .collect();
                    compile(&feeds, &current, &loaded, &report);
                    push_added(&added, starting);
                    boundary = next_boundary(&current, now);
                }
            }
        });
        Ok(intel)
    }

    /// The indicators that came into force since the last call (none
    /// before the start counts), compiled; `None` when there are none.
    pub fn take_added(&self) -> Option<Arc<Loaded>> {
        let mut added = self
            .added
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if added.iter().all(Vec::is_empty) {
            return None;
        }
        let indicators: Vec<Arc<Vec<Indicator>>> = added
            .iter_mut()
            .map(|a| Arc::new(std::mem::take(a)))
            .collect();
        let views: Vec<&[Indicator]> = indicators.iter().map(|f| f.as_slice()).collect();
        let (sets, _) = Sets::compile(&views, now_ms());
        Some(Arc::new(Loaded::new(indicators, sets)))
    }

    /// Has the indicators of `in_force` whose keys are in `keys` hunted
    /// back in time, as if they had just come into force; how many.
    pub fn hunt_these(
        &self,
        in_force: &KeyedInForce,
        keys: &std::collections::HashSet<u64>,
    ) -> usize {
        let mut new: Vec<Vec<Indicator>> = vec![Vec::new(); self.feeds.len()];
        let mut count = 0;
        for &(f, i, key) in &in_force.keyed {
            if keys.contains(&key) {
                new[f].push(in_force.loaded.indicators[f][i].clone());
                count += 1;
            }
        }
        push_added(&self.added, new);
        count
    }

    /// The indicators in force now, each with its key ([`indicator_key`]).
    pub fn keyed_in_force(&self) -> KeyedInForce {
        let loaded = self.current();
        let keyed = self.keyed(&loaded, now_ms());
        KeyedInForce { loaded, keyed }
    }

    /// The keys of the indicators of `loaded` in force at `now`.
    pub fn keys_of(&self, loaded: &Loaded, now: i64) -> std::collections::HashSet<u64> {
        self.keyed(loaded, now)
            .into_iter()
            .map(|(_, _, key)| key)
            .collect()
    }

    /// The indicators of `loaded` in force at `now`: (feed, index, key).
    fn keyed(&self, loaded: &Loaded, now: i64) -> Vec<(usize, usize, u64)> {
        self.feeds
            .iter()
            .zip(&loaded.indicators)
            .enumerate()
            .flat_map(|(f, (feed, indicators))| {
                indicators
                    .iter()
                    .enumerate()
                    .filter(move |(_, x)| x.valid_at(now))
                    .map(move |(i, x)| (f, i, indicator_key(&feed.name, x)))
            })
            .collect()
    }

    fn current(&self) -> Arc<Loaded> {
        in_force(&self.loaded)
    }

    /// The alerts of the indicators the batch's events hold.
    pub fn alerts(
        &self,
        builder: &AlertBuilder<'_>,
        batch: &EventBatch,
        timestamp: &TimestampSpec,
    ) -> Vec<Alert> {
        self.alerts_of(&self.current(), builder, batch, timestamp)
    }

    /// The alerts of the indicators of `loaded` the batch's events hold.
    pub fn alerts_of(
        &self,
        loaded: &Loaded,
        builder: &AlertBuilder<'_>,
        batch: &EventBatch,
        timestamp: &TimestampSpec,
    ) -> Vec<Alert> {
        if loaded.sets.is_empty() {
            return Vec::new();
        }
        let now = now_ms();
        let schema = batch.batch.schema();
        let raw = batch.raw();
        let mut alerts = Vec::new();
        let mut hit_rows: Vec<(usize, sets::Hit, String, String)> = Vec::new();
        for (kind, columns) in &self.columns {
            for name in columns {
                let Ok(index) = schema.index_of(name) else {
                    continue;
                };
                let Some(values) = batch.batch.column(index).as_string_opt::<i32>() else {
                    continue;
                };
                for row in 0..values.len() {
                    if values.is_null(row) {
                        continue;
                    }
                    let value = values.value(row);
                    let Some(hit) = loaded.sets.find(*kind, value) else {
                        continue;
                    };
                    // An indicator that expired since the last compile
                    // hits no more.
                    let indicator = &loaded.indicators[hit.0 as usize][hit.1 as usize];
                    if indicator.valid_at(now) && !hit_rows.iter().any(|h| h.0 == row && h.1 == hit)
                    {
                        hit_rows.push((row, hit, name.clone(), value.to_string()));
                    }
                }
            }
        }
        for (row, (f, i), field, matched) in hit_rows {
            let feed = &self.feeds[f as usize];
            let indicator = &loaded.indicators[f as usize][i as usize];
            let mut info = self.infos[f as usize].clone();
            // One detection per indicator: its own id, and its value in
            // the title.
            info.meta.id = Some(format!(
                "intel:{}:{}:{}",
                feed.name,
                indicator.kind.as_str(),
                indicator.value
            ));
            info.meta.title = format!(
                "{} {} of feed {}",
                indicator.kind.as_str(),
                indicator.value,
                feed.name
            );
            let mut alert = builder.for_row(&info, batch, raw, row, timestamp);
            alert.tlp = Some(alert.tlp.map_or(feed.tlp, |t| t.max(feed.tlp)));
            alert.indicator = Some(IndicatorHit {
                feed: feed.name.clone(),
                kind: indicator.kind.as_str().to_string(),
                value: indicator.value.clone(),
                field,
                matched,
                confidence: feed.confidence,
                valid_until: indicator.valid_until.map(format_millis),
                origin: indicator.origin.clone(),
            });
            alerts.push(alert);
        }
        self.hits.fetch_add(alerts.len() as u64, Ordering::Relaxed);
        alerts
    }

    /// The feeds as value lists of Sigma rules (`%feed:NAME%`).
    pub fn lists(&self) -> Arc<dyn LiveSets> {
        Arc::new(FeedLists {
            names: self.feeds.iter().map(|f| f.name.clone()).collect(),
            loaded: self.loaded.clone(),
        })
    }

    /// What the feeds did.
    pub fn report(&self) -> IntelReport {
        let mut report = self
            .report
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        report.hits = self.hits.load(Ordering::Relaxed);
        report
    }
}

/// The indicators in force at one moment, each with its key.
#[derive(Debug)]
pub struct KeyedInForce {
    loaded: Arc<Loaded>,
    /// (feed, index in the feed, key).
    keyed: Vec<(usize, usize, u64)>,
}

impl KeyedInForce {
    /// The keys.
    pub fn keys(&self) -> std::collections::HashSet<u64> {
        self.keyed.iter().map(|(_, _, key)| *key).collect()
    }
}

/// The compiled indicators in force.
fn in_force(loaded: &Mutex<Arc<Loaded>>) -> Arc<Loaded> {
    loaded
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

/// A key of indicator `x` of feed `feed` that stays the same across runs
/// and versions of the feed (the retro-hunt ledger's).
pub fn indicator_key(feed: &str, x: &Indicator) -> u64 {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in [feed, x.kind.as_str(), x.value.as_str()] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first)
}

/// The feeds as Sigma rules' value lists: a rule's `%feed:NAME%` reads
/// the feed's indicators in force when each batch is evaluated, matched
/// as indicator hits are (a domain's subdomains, a URL's paths, an
/// address in a network, a hash in a list).
#[derive(Debug)]
struct FeedLists {
    names: Vec<String>,
    loaded: Arc<Mutex<Arc<Loaded>>>,
}

/// One feed as a value list.
#[derive(Debug)]
struct FeedList {
    feed: u32,
    /// Its addresses and networks only (`cidr`).
    addresses_only: bool,
    loaded: Arc<Mutex<Arc<Loaded>>>,
}

impl LiveSets for FeedLists {
    fn resolve(&self, name: &str, addresses_only: bool) -> Option<Arc<dyn LiveSet>> {
        let feed = self.names.iter().position(|n| n == name)?;
        Some(Arc::new(FeedList {
            feed: feed as u32,
            addresses_only,
            loaded: self.loaded.clone(),
        }))
    }

    fn names(&self) -> Vec<String> {
        self.names.clone()
    }
}

impl LiveSet for FeedList {
    fn current(&self) -> SetTest<'_> {
        let loaded = in_force(&self.loaded);
        let now = now_ms();
        let kinds: Vec<Kind> = loaded
            .kinds
            .get(self.feed as usize)
            .into_iter()
            .flatten()
            .copied()
            .filter(|k| !self.addresses_only || *k == Kind::Ip)
            .collect();
        Box::new(move |value| {
            kinds.iter().any(|&kind| {
                loaded
                    .sets
                    .find_in(kind, value, Some(self.feed))
                    .is_some_and(|(f, i)| loaded.indicators[f as usize][i as usize].valid_at(now))
            })
        })
    }
}

/// Marks each rule that refers to a feed (`%feed:NAME%`) with the feed's
/// TLP (a `tlp.*` tag), so that its alerts are at least as restricted as
/// the indicators they reveal; and each windowed rule with the most
/// restrictive TLP of the rules it counts, since its alerts carry their
/// events.
pub fn mark_rules_with_feed_tlp(collection: &mut vagt_rules::RuleCollection, config: &IntelConfig) {
    // The TLP each marked rule gained, by id and name.
    let mut marked: BTreeMap<String, Tlp> = BTreeMap::new();
    for loaded in &mut collection.rules {
        let mut feeds = Vec::new();
        loaded.rule.condition.for_each_predicate(&mut |p| {
            if let vagt_rules::sigma::predicate::Test::InFeed { feed, .. } = &p.test {
                feeds.push(feed.clone());
            }
        });
        let tlp = config
            .feeds
            .iter()
            .filter(|f| feeds.contains(&f.name))
            .map(|f| f.tlp)
            .max();
        if let Some(tlp) = tlp {
            mark(&mut loaded.rule.meta, tlp, &mut marked);
        }
    }
    // Windowed rules count rules and other windowed rules: until nothing
    // changes.
    loop {
        let mut changed = false;
        for loaded in &mut collection.windows {
            let meta = &mut loaded.rule.meta;
            let counted = loaded
                .rule
                .rules
                .iter()
                .filter_map(|r| marked.get(r))
                .max()
                .copied();
            let Some(tlp) = counted else { continue };
            let own = names(meta).filter_map(|n| marked.get(n)).max().copied();
            if own.is_some_and(|o| o >= tlp) {
                continue;
            }
            mark(meta, tlp, &mut marked);
            changed = true;
        }
        if !changed {
            break;
        }
    }
}

/// Tags a rule with `tlp` and notes it under its id and name, which
/// windowed rules count it by.
fn mark(meta: &mut RuleMeta, tlp: Tlp, marked: &mut BTreeMap<String, Tlp>) {
    let tag = tlp.tag();
    if !meta.tags.contains(&tag) {
        meta.tags.push(tag);
    }
    for name in names(meta) {
        marked.insert(name.clone(), tlp);
    }
}

/// A rule's id and name, those it has.
fn names(meta: &RuleMeta) -> impl Iterator<Item = &String> {
    [&meta.id, &meta.name].into_iter().flatten()
}

/// Adds to `added` the indicators of `after` that `before` did not have
/// (by kind and value), feed by feed; feeds not read again are passed
/// over.
fn note_added(
    before: &[Arc<Vec<Indicator>>],
    after: &[Arc<Vec<Indicator>>],
    added: &Mutex<Vec<Vec<Indicator>>>,
) {
    let new: Vec<Vec<Indicator>> = before
        .iter()
        .zip(after)
        .map(|(old, new)| {
            if Arc::ptr_eq(old, new) {
                return Vec::new();
            }
            let known: std::collections::HashSet<(Kind, &str)> =
                old.iter().map(|x| (x.kind, x.value.as_str())).collect();
            new.iter()
                .filter(|x| !known.contains(&(x.kind, x.value.as_str())))
                .cloned()
                .collect()
        })
        .collect();
    push_added(added, new);
}

/// Adds `new` (by feed) to the indicators waiting for a retro-hunt.
fn push_added(added: &Mutex<Vec<Vec<Indicator>>>, new: Vec<Vec<Indicator>>) {
    let mut added = added
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for (waiting, new) in added.iter_mut().zip(new) {
        waiting.extend(new);
    }
}

/// Where a feed's indicators come from.
#[derive(Debug)]
enum Source {
    /// A file, read again when its modification time changes.
    File {
        path: PathBuf,
        format: Format,
        seen: Option<SystemTime>,
    },
    /// A TAXII collection, polled.
    Taxii(taxii::TaxiiSource),
}

impl Source {
    /// The feed's indicators if they changed (always at `first`).
    fn read(
        &mut self,
        kind: Option<Kind>,
        first: bool,
    ) -> Result<Option<Vec<Indicator>>, feed::FeedError> {
        match self {
            Source::File { path, format, seen } => {
                let modified = std::fs::metadata(&*path).and_then(|m| m.modified()).ok();
                if !first && modified.is_some() && modified == *seen {
                    return Ok(None);
                }
                // A version that fails is counted once.
                *seen = modified;
                feed::read(path, *format, kind).map(Some)
            }
            Source::Taxii(source) => source.poll(),
        }
    }
}

/// Reads the feeds that are `due` and changed (all of them at the first
/// read, `None`), keeps the last good version of those that fail, and
/// swaps the compiled sets in.
fn refresh(
    feeds: &[FeedConfig],
    sources: &mut [Source],
    current: &mut [Arc<Vec<Indicator>>],
    loaded: &Mutex<Arc<Loaded>>,
    report: &Mutex<IntelReport>,
    due: Option<&[bool]>,
) {
    // `None`: the first read, of every feed.
    let first = due.is_none();
    let mut changed = first;
    for (i, feed) in feeds.iter().enumerate() {
        if due.is_some_and(|d| !d[i]) {
            continue;
        }
        let result = sources[i].read(feed.kind, first);
        let mut report = report
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = report.feeds.entry(feed.name.clone()).or_default();
        match result {
            Ok(None) => {}
            Ok(Some(mut indicators)) => {
                entry.loads += 1;
                let read = indicators.len();
                if let Some(kinds) = &feed.kinds {
                    indicators.retain(|x| kinds.contains(&x.kind));
                }
                entry.left_out = (read - indicators.len()) as u64;
                entry.indicators = indicators.len() as u64;
                entry.error = None;
                current[i] = Arc::new(indicators);
                changed = true;
                tracing::info!(feed = %feed.name, indicators = entry.indicators, "intel feed loaded");
            }
            Err(e) => {
                entry.failures += 1;
                entry.error = Some(e.to_string());
                metrics::counter!("vagt_intel_feed_failures_total", "feed" => feed.name.clone())
                    .increment(1);
                tracing::error!(feed = %feed.name, error = %e, "intel feed not loaded; its last good version stays in force");
            }
        }
    }
    if changed {
        compile(feeds, current, loaded, report);
    }
}

/// The next moment an indicator of `current` comes into or goes out of
/// force after `now` (milliseconds), if any.
fn next_boundary(current: &[Arc<Vec<Indicator>>], now: i64) -> Option<i64> {
    current
        .iter()
        .flat_map(|f| f.iter())
        .filter(|x| !x.revoked)
        .flat_map(|x| [x.valid_from, x.valid_until])
        .flatten()
        .filter(|t| *t > now)
        .min()
}

/// Compiles the indicators in force now and swaps them in.
fn compile(
    feeds: &[FeedConfig],
    current: &[Arc<Vec<Indicator>>],
    loaded: &Mutex<Arc<Loaded>>,
    report: &Mutex<IntelReport>,
) {
    let views: Vec<&[Indicator]> = current.iter().map(|f| f.as_slice()).collect();
    let (sets, refused) = Sets::compile(&views, now_ms());
    for r in refused.iter().take(10) {
        tracing::warn!(indicator = %r, "intel indicator skipped");
    }
    {
        let mut report = report
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (i, feed) in feeds.iter().enumerate() {
            let now = now_ms();
            report.feeds.entry(feed.name.clone()).or_default().in_force =
                current[i].iter().filter(|x| x.valid_at(now)).count() as u64;
        }
    }
    let compiled = Arc::new(Loaded::new(current.to_vec(), sets));
    *loaded
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = compiled;
}
