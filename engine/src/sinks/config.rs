//! Outputs as configured: each has a unique `name` (routes send to it by
//! name), a `type` and that type's settings, and an `encoding`.
//!
//! ```yaml
//! outputs:
//!   - name: console
//!     type: stdout                  # readable lines on a terminal, JSON lines when piped
//!   - name: archive
//!     type: file
//!     path: alerts/{actor}.jsonl    # one file per organisation
//!     rotate: {max_bytes: 100MB, every: 1d, compress: true, keep: 30}
//!     fsync: checkpoint             # checkpoint | always | never
//!   - name: sector-kafka
//!     type: kafka
//!     brokers: "k1:9092"
//!     topic: "alerts.{actor}"
//!     key: "{rule_id}"
//!     encoding: ocsf
//!   - name: region-soc
//!     type: webhook
//!     url: "https://soc.example/hooks/{actor}"
//!     outbox: {dir: outbox/, max_bytes: 256MiB, when_full: block}
//!   - name: siem
//!     type: syslog
//!     address: "siem.example:6514"
//!     protocol: tls
//! ```
//! Every setting is checked when the config is loaded; an error names the
//! output (`outputs[2] (sector-kafka): ...`).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_yaml_ng::{Mapping, Value};
use vagt_connectors::ConfigDuration;

use super::template::Template;

/// One output.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "Mapping")]
pub struct OutputConfig {
    /// Unique; routes name it.
    pub name: String,
    /// How each alert is written (default: `json`; `text` on a terminal
    /// for `stdout`).
    pub encoding: Option<Encoding>,
    /// Whom it speaks to: alerts whose TLP excludes this audience are
    /// refused (default `organisation`).
    pub audience: crate::warning::tlp::Audience,
    /// Repeats held back at this output (before routes' and policies').
    pub suppress: Option<crate::warning::suppress::SuppressSpec>,
    /// Where alerts go.
    pub sink: SinkConfig,
}

/// How an alert is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// vagt's alert JSON (see docs/alerts.md).
    Json,
    /// OCSF Detection Finding (class 2004), for SIEMs that ingest OCSF.
    Ocsf,
    /// One readable line per alert (stdout and files only).
    Text,
}

/// What an output is.
#[derive(Debug, Clone)]
pub enum SinkConfig {
    /// Standard output.
    Stdout,
    /// JSON lines in files, rotated.
    File(FileConfig),
    /// Kafka topics.
    Kafka(KafkaOutputConfig),
    /// HTTP(S) POST, through an on-disk outbox.
    Webhook(WebhookConfig),
    /// RFC 5424 syslog over TCP or TLS.
    Syslog(SyslogOutputConfig),
}

/// Files of alerts, one line each.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The file; may name alert fields (`alerts/{actor}.jsonl`) to write
    /// one file per organisation. Its folder must exist.
    pub path: String,
    /// When the file is closed and renamed aside.
    #[serde(default)]
    pub rotate: Option<RotateConfig>,
    /// When written alerts are forced to disk.
    #[serde(default)]
    pub fsync: FsyncPolicy,
}

/// When a file is rotated: renamed to `NAME-YYYYMMDDTHHMMSSZ.EXT` and a
/// new one started.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateConfig {
    /// Once it holds this many bytes (`100MB`, `1GiB`).
    #[serde(default)]
    pub max_bytes: Option<ByteSize>,
    /// Once it is this old (`1h`, `1d`).
    #[serde(default)]
    pub every: Option<ConfigDuration>,
    /// Gzip rotated files (`NAME-...EXT.gz`).
    #[serde(default)]
    pub compress: bool,
    /// Rotated files kept; older ones are deleted (default: all kept).
    #[serde(default)]
    pub keep: Option<usize>,
}

/// When file outputs are forced to disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FsyncPolicy {
    /// Before input positions, Kafka offsets or window state that vouch
    /// for the alerts are saved (default).
    #[default]
    Checkpoint,
    /// After every write.
    Always,
    /// Never (the operating system decides; a power loss can lose alerts
    /// that the saved positions vouch for).
    Never,
}

/// A Kafka producer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaOutputConfig {
    /// Bootstrap brokers, `host:port[,host:port...]`.
    pub brokers: String,
    /// The topic; may name alert fields (`alerts.{actor}`).
    pub topic: String,
    /// The message key (default: the actor, so that an organisation's
    /// alerts stay in order); may name alert fields.
    #[serde(default)]
    pub key: Option<String>,
    /// Further librdkafka settings (`security.protocol`, `sasl.*`, ...).
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// Idempotent production (default): retries neither duplicate nor
    /// reorder alerts. Turn it off only for a broker that forgets producer
    /// state when it restarts (an in-memory test broker), which would
    /// otherwise refuse the producer's retries for ever.
    #[serde(default = "default_true")]
    pub idempotent: bool,
    /// At the end of a run, how long to wait for the broker's last
    /// confirmations (default `30s`); alerts still unconfirmed then go to
    /// the dead letters.
    #[serde(default = "default_drain")]
    pub drain: ConfigDuration,
}

/// An HTTP(S) receiver.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where alerts are POSTed; may name alert fields
    /// (`https://soc.example/{actor}`).
    pub url: String,
    /// Extra request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Environment variable holding a bearer token
    /// (`Authorization: Bearer ...`).
    #[serde(default)]
    pub bearer_token_env: Option<String>,
    /// Alerts per request at most (default 100): more than one are sent
    /// as a JSON array, one as the alert itself.
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// How long a request may take (default `10s`).
    #[serde(default = "default_webhook_timeout")]
    pub timeout: ConfigDuration,
    /// How failed requests are retried.
    #[serde(default)]
    pub retry: RetryConfig,
    /// Where alerts wait to be delivered.
    pub outbox: OutboxConfig,
    /// PEM file of CAs to trust besides the system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// At the end of a run, how long to wait for the outbox to empty
    /// (default `30s`); what is left is delivered by the next run.
    #[serde(default = "default_drain")]
    pub drain: ConfigDuration,
    /// Set for a `taxii` output: the URL is its collection's objects.
    #[serde(skip)]
    pub taxii: Option<TaxiiSettings>,
}

/// What a `taxii` output sets beyond a webhook's delivery settings
/// (`bearer_token_env`, `max_batch`, `timeout`, `retry`, `outbox`,
/// `ca_file`, `drain`, which it shares); the collection gives the URL.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaxiiConfig {
    /// The collection's URL: `https://taxii.example/API_ROOT/collections/ID/`.
    pub collection: String,
    /// Environment variable holding the user name (HTTP basic auth).
    #[serde(default)]
    pub username_env: Option<String>,
    /// Environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// The sending organisation's name: the identity that creates the
    /// sightings.
    pub identity: String,
    /// Organisation, host and user names as keyed pseudonyms (needs
    /// `pseudonyms` in the config).
    #[serde(default)]
    pub pseudonymise: bool,
    /// The raw event on sightings of TLP:AMBER or more restrictive alerts
    /// (never at CLEAR or GREEN).
    #[serde(default)]
    pub include_events: bool,
}

/// The keys of [`TaxiiConfig`].
const TAXII_KEYS: [&str; 6] = [
    "collection",
    "username_env",
    "password_env",
    "identity",
    "pseudonymise",
    "include_events",
];

/// What a webhook output does differently when it speaks TAXII.
#[derive(Debug, Clone)]
pub struct TaxiiSettings {
    /// The collection's URL, ending in `/`.
    pub collection: String,
    /// Variables of user and password, for basic auth.
    pub basic_auth: Option<(String, String)>,
    /// The sending organisation.
    pub identity: String,
    /// Names as pseudonyms.
    pub pseudonymise: bool,
    /// Raw events at AMBER and above.
    pub include_events: bool,
}

impl TaxiiConfig {
    /// Checked, with the collection's URL ending in `/`.
    fn settings(self) -> Result<TaxiiSettings, String> {
        let mut collection = self.collection.clone();
        if !collection.ends_with('/') {
            collection.push('/');
        }
        if !collection.contains("/collections/") {
            return Err(format!(
                "collection: '{}' is not a TAXII 2.1 collection URL (.../API_ROOT/collections/ID/)",
                self.collection
            ));
        }
        let basic_auth = match (self.username_env, self.password_env) {
            (Some(u), Some(p)) => Some((u, p)),
            (None, None) => None,
            _ => return Err("username_env and password_env go together".into()),
        };
        if self.identity.trim().is_empty() {
            return Err("identity: name the sending organisation".into());
        }
        Ok(TaxiiSettings {
            collection,
            basic_auth,
            identity: self.identity,
            pseudonymise: self.pseudonymise,
            include_events: self.include_events,
        })
    }
}

/// A `taxii` output's settings: its own ([`TaxiiConfig`]) and the rest as
/// a webhook's, posting to the collection's `objects/`.
fn taxii_output(mut fields: Mapping) -> Result<WebhookConfig, String> {
    for key in ["url", "headers"] {
        if fields.contains_key(key) {
            return Err(format!(
                "{key} is not a taxii setting (the collection gives the URL)"
            ));
        }
    }
    let mut own = Mapping::new();
    for key in TAXII_KEYS {
        if let Some(value) = fields.remove(key) {
            own.insert(key.into(), value);
        }
    }
    let settings = serde_yaml_ng::from_value::<TaxiiConfig>(Value::Mapping(own))
        .map_err(|e| e.to_string())?
        .settings()?;
    fields.insert(
        "url".into(),
        format!("{}objects/", settings.collection).into(),
    );
    let mut webhook: WebhookConfig =
        serde_yaml_ng::from_value(Value::Mapping(fields)).map_err(|e| e.to_string())?;
    webhook.taxii = Some(settings);
    Ok(webhook)
}

/// Exponential backoff with jitter.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// The first wait (default `200ms`).
    #[serde(default = "default_retry_initial")]
    pub initial: ConfigDuration,
    /// The longest wait (default `30s`).
    #[serde(default = "default_retry_max")]
    pub max: ConfigDuration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            initial: default_retry_initial(),
            max: default_retry_max(),
        }
    }
}

/// The on-disk queue of an output.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxConfig {
    /// Its folder (must exist; one per output).
    pub dir: PathBuf,
    /// Bytes it may hold (default `256MiB`).
    #[serde(default = "default_outbox_bytes")]
    pub max_bytes: ByteSize,
    /// What happens when it is full.
    #[serde(default)]
    pub when_full: WhenFull,
}

/// What a full outbox does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Wait for room: detection and then the inputs slow down (default).
    #[default]
    Block,
    /// Send the alerts that do not fit to the dead letters, counted.
    DeadLetter,
}

/// A syslog receiver.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogOutputConfig {
    /// `host:port`.
    pub address: String,
    /// `tcp` or `tls` (RFC 5425, octet counting).
    pub protocol: SyslogOutputProtocol,
    /// PEM file of CAs to trust (default: the system's).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The name the server's certificate must hold (default: the
    /// address's host).
    #[serde(default)]
    pub server_name: Option<String>,
    /// The HOSTNAME field (default: this machine's name).
    #[serde(default)]
    pub hostname: Option<String>,
    /// The APP-NAME field (default `vagt`).
    #[serde(default = "default_app_name")]
    pub app_name: String,
    /// The facility (default `local0`).
    #[serde(default)]
    pub facility: Facility,
}

/// Transport of the syslog output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyslogOutputProtocol {
    /// Plain TCP.
    Tcp,
    /// TLS.
    Tls,
}

/// Syslog facilities (RFC 5424 section 6.2.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum Facility {
    Kern,
    User,
    Mail,
    Daemon,
    Auth,
    Syslog,
    Lpr,
    News,
    Uucp,
    Cron,
    Authpriv,
    Ftp,
    Ntp,
    Audit,
    Alert,
    Clock,
    #[default]
    Local0,
    Local1,
    Local2,
    Local3,
    Local4,
    Local5,
    Local6,
    Local7,
}

impl Facility {
    /// Its code.
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// A size in bytes, written as a number or with a unit (`64KiB`, `100MB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(ByteSize(n)),
            Raw::Text(t) => parse_bytes(&t)
                .map(ByteSize)
                .map_err(serde::de::Error::custom),
        }
    }
}

fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a size (e.g. 65536, 64KiB, 100MB)"))?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        other => {
            return Err(format!(
                "'{other}' is not a size unit (B, KB, MB, GB, KiB, MiB, GiB)"
            ))
        }
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("'{text}' is too large"))
}

fn default_true() -> bool {
    true
}
fn default_max_batch() -> usize {
    100
}
fn default_webhook_timeout() -> ConfigDuration {
    ConfigDuration::from_secs(10)
}
fn default_drain() -> ConfigDuration {
    ConfigDuration::from_secs(30)
}
fn default_retry_initial() -> ConfigDuration {
    ConfigDuration::from_millis(200)
}
fn default_retry_max() -> ConfigDuration {
    ConfigDuration::from_secs(30)
}
fn default_outbox_bytes() -> ByteSize {
    ByteSize(256 << 20)
}
fn default_app_name() -> String {
    "vagt".into()
}

impl TryFrom<Mapping> for OutputConfig {
    type Error = String;

    fn try_from(mut fields: Mapping) -> Result<Self, String> {
        let mut take_string = |key: &str| -> Result<Option<String>, String> {
            match fields.remove(key) {
                None => Ok(None),
                Some(Value::String(s)) => Ok(Some(s)),
                Some(other) => Err(format!("{key} must be text, not {other:?}")),
            }
        };
        let name = take_string("name")?.ok_or("name is missing")?;
        let kind = take_string("type")?
            .ok_or("type is missing: stdout, file, kafka, webhook, taxii or syslog")?;
        fn take<T: serde::de::DeserializeOwned>(
            fields: &mut Mapping,
            key: &str,
        ) -> Result<Option<T>, String> {
            fields
                .remove(key)
                .map(serde_yaml_ng::from_value::<T>)
                .transpose()
                .map_err(|e| format!("{key}: {e}"))
        }
        let encoding = take(&mut fields, "encoding")?;
        let audience = take(&mut fields, "audience")?.unwrap_or_default();
        let suppress = take(&mut fields, "suppress")?;
        fn settings<T: serde::de::DeserializeOwned>(
            kind: &str,
            rest: Mapping,
        ) -> Result<T, String> {
            serde_yaml_ng::from_value(Value::Mapping(rest)).map_err(|e| format!("type {kind}: {e}"))
        }
        let sink = match kind.as_str() {
            "stdout" => {
                if let Some((key, _)) = fields.iter().next() {
                    return Err(format!(
                        "type stdout: unknown field {key:?}: stdout has only name, encoding, audience and suppress"
                    ));
                }
                SinkConfig::Stdout
            }
            "file" => SinkConfig::File(settings(&kind, fields)?),
            "kafka" => SinkConfig::Kafka(settings(&kind, fields)?),
            "webhook" => SinkConfig::Webhook(settings(&kind, fields)?),
            "taxii" => {
                SinkConfig::Webhook(taxii_output(fields).map_err(|e| format!("type taxii: {e}"))?)
            }
            "syslog" => SinkConfig::Syslog(settings(&kind, fields)?),
            other => {
                return Err(format!(
                    "type '{other}' is not one of stdout, file, kafka, webhook, taxii, syslog"
                ))
            }
        };
        Ok(OutputConfig {
            name,
            encoding,
            audience,
            suppress,
            sink,
        })
    }
}

/// Settings a Kafka output sets itself, for confirmed, ordered delivery.
const KAFKA_OWN_SETTINGS: [&str; 5] = [
    "bootstrap.servers",
    "enable.idempotence",
    "acks",
    "message.timeout.ms",
    "delivery.timeout.ms",
];

impl OutputConfig {
    /// What the output is called in errors: `name (type)`.
    pub fn describe(&self) -> String {
        format!("{} ({})", self.name, self.sink.kind())
    }

    /// The output that `--output PATH` (or `output:`) means: a file, or
    /// stdout for `-`.
    pub fn from_path(path: &Path) -> OutputConfig {
        let sink = if path.as_os_str() == "-" {
            SinkConfig::Stdout
        } else {
            SinkConfig::File(FileConfig {
                path: path.to_string_lossy().into_owned(),
                rotate: None,
                fsync: FsyncPolicy::Checkpoint,
            })
        };
        OutputConfig {
            name: "alerts".into(),
            encoding: None,
            audience: Default::default(),
            suppress: None,
            sink,
        }
    }

    /// Where an alert with these facts would go: the file, topic, URL or
    /// address.
    ///
    /// # Errors
    /// The alert lacks a field the target names.
    pub fn target(&self, alert: &crate::alert::AlertFacts<'_>) -> Result<String, String> {
        use super::template::Escape;
        let render = |text: &str, escape: Escape| {
            Template::parse(text).and_then(|t| t.render(alert, escape).map_err(|e| e.to_string()))
        };
        match &self.sink {
            SinkConfig::Stdout => Ok("stdout".into()),
            SinkConfig::File(f) => render(&f.path, Escape::Name),
            SinkConfig::Kafka(k) => render(&k.topic, Escape::Name).map(|t| format!("topic {t}")),
            SinkConfig::Webhook(w) => render(&w.url, Escape::Url),
            SinkConfig::Syslog(s) => Ok(format!("syslog {}", s.address)),
        }
    }

    /// Resolves relative paths against the config file's folder.
    pub(crate) fn resolve_relative_to(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        match &mut self.sink {
            SinkConfig::File(f) => {
                if Path::new(&f.path).is_relative() {
                    f.path = base.join(&f.path).to_string_lossy().into_owned();
                }
            }
            SinkConfig::Webhook(w) => {
                fix(&mut w.outbox.dir);
                if let Some(ca) = &mut w.ca_file {
                    fix(ca);
                }
            }
            SinkConfig::Syslog(s) => {
                if let Some(ca) = &mut s.ca_file {
                    fix(ca);
                }
            }
            SinkConfig::Stdout | SinkConfig::Kafka(_) => {}
        }
    }

    /// Cross-field checks, and the folders that must exist.
    ///
    /// # Errors
    /// What is wrong, to be prefixed with the output's place.
    pub fn validate(&self) -> Result<(), String> {
        if self.name.trim().is_empty() {
            return Err("name is empty".into());
        }
        if self.encoding == Some(Encoding::Text)
            && !matches!(self.sink, SinkConfig::Stdout | SinkConfig::File(_))
        {
            return Err("encoding text is for stdout and file outputs".into());
        }
        match &self.sink {
            SinkConfig::Stdout => Ok(()),
            SinkConfig::File(f) => f.validate(),
            SinkConfig::Kafka(k) => k.validate(),
            SinkConfig::Webhook(w) => w.validate(),
            SinkConfig::Syslog(s) => s.validate(),
        }
    }
}

impl SinkConfig {
    /// `stdout`, `file`, `kafka`, `webhook` or `syslog`.
    pub fn kind(&self) -> &'static str {
        match self {
            SinkConfig::Stdout => "stdout",
            SinkConfig::File(_) => "file",
            SinkConfig::Kafka(_) => "kafka",
            SinkConfig::Webhook(w) if w.taxii.is_some() => "taxii",
            SinkConfig::Webhook(_) => "webhook",
            SinkConfig::Syslog(_) => "syslog",
        }
    }

    /// Whether it sends each organisation's alerts to a place of its own
    /// (its topic, URL or path names the actor).
    pub fn per_actor(&self) -> bool {
        let target = match self {
            SinkConfig::File(f) => &f.path,
            SinkConfig::Kafka(k) => &k.topic,
            SinkConfig::Webhook(w) => &w.url,
            SinkConfig::Stdout | SinkConfig::Syslog(_) => return false,
        };
        Template::parse(target).is_ok_and(|t| t.names_actor())
    }
}

impl FileConfig {
    fn validate(&self) -> Result<(), String> {
        let template = Template::parse(&self.path).map_err(|e| format!("path: {e}"))?;
        // Folders named by alert fields are made as needed; the rest must exist.
        let folder = template.fixed_folder();
        if !folder.is_dir() {
            return Err(format!(
                "path: the folder {} does not exist (create it first)",
                folder.display()
            ));
        }
        if let Some(rotate) = &self.rotate {
            if rotate.max_bytes.is_none() && rotate.every.is_none() {
                return Err("rotate: give max_bytes, every, or both".into());
            }
            if rotate.max_bytes.is_some_and(|b| b.0 == 0) {
                return Err("rotate.max_bytes must be more than 0".into());
            }
            if rotate.every.is_some_and(|d| d.is_zero()) {
                return Err("rotate.every must be more than 0".into());
            }
            if rotate.keep == Some(0) {
                return Err("rotate.keep must be at least 1 (leave it out to keep all)".into());
            }
        }
        Ok(())
    }
}

impl KafkaOutputConfig {
    fn validate(&self) -> Result<(), String> {
        if self.brokers.trim().is_empty() {
            return Err("brokers is empty".into());
        }
        Template::parse(&self.topic).map_err(|e| format!("topic: {e}"))?;
        if let Some(key) = &self.key {
            Template::parse(key).map_err(|e| format!("key: {e}"))?;
        }
        if let Some(own) = self
            .options
            .keys()
            .find(|k| KAFKA_OWN_SETTINGS.contains(&k.as_str()))
        {
            return Err(format!(
                "options: '{own}' is set by vagt (idempotent, acknowledged by all replicas, retried until delivered)"
            ));
        }
        Ok(())
    }
}

impl WebhookConfig {
    fn validate(&self) -> Result<(), String> {
        let template = Template::parse(&self.url).map_err(|e| format!("url: {e}"))?;
        let fixed = template.fixed_prefix();
        if !(fixed.starts_with("http://") || fixed.starts_with("https://")) {
            return Err(format!(
                "url: '{}' must start with http:// or https://",
                self.url
            ));
        }
        if self.max_batch == 0 {
            return Err("max_batch must be at least 1".into());
        }
        if self.timeout.is_zero() {
            return Err("timeout must be more than 0".into());
        }
        if self.retry.initial.is_zero() || self.retry.max < self.retry.initial {
            return Err("retry: initial must be more than 0 and at most max".into());
        }
        if !self.outbox.dir.is_dir() {
            return Err(format!(
                "outbox.dir: {} is not an existing folder (create it first)",
                self.outbox.dir.display()
            ));
        }
        if self.outbox.max_bytes.0 < 64 * 1024 {
            return Err("outbox.max_bytes must be at least 64KiB".into());
        }
        if let Some(var) = &self.bearer_token_env {
            if std::env::var_os(var).is_none() {
                return Err(format!("bearer_token_env: the variable {var} is not set"));
            }
        }
        for (name, value) in &self.headers {
            reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("headers: '{name}' is not a header name"))?;
            reqwest::header::HeaderValue::from_str(value)
                .map_err(|_| format!("headers: the value of '{name}' is not a header value"))?;
        }
        if let Some(ca) = &self.ca_file {
            if !ca.is_file() {
                return Err(format!("ca_file: {} does not exist", ca.display()));
            }
        }
        Ok(())
    }
}

impl SyslogOutputConfig {
    fn validate(&self) -> Result<(), String> {
        let Some((host, port)) = self.address.rsplit_once(':') else {
            return Err(format!("address: '{}' is not host:port", self.address));
        };
        if host.is_empty() || port.parse::<u16>().is_err() {
            return Err(format!("address: '{}' is not host:port", self.address));
        }
        if self.protocol == SyslogOutputProtocol::Tcp
            && (self.ca_file.is_some() || self.server_name.is_some())
        {
            return Err("ca_file and server_name are for protocol tls".into());
        }
        if let Some(ca) = &self.ca_file {
            if !ca.is_file() {
                return Err(format!("ca_file: {} does not exist", ca.display()));
            }
        }
        let printable = |s: &str, max: usize| {
            !s.is_empty() && s.len() <= max && s.bytes().all(|b| (33..=126).contains(&b))
        };
        if !printable(&self.app_name, 48) {
            return Err("app_name must be 1 to 48 printable characters without spaces".into());
        }
        if let Some(h) = &self.hostname {
            if !printable(h, 255) {
                return Err("hostname must be 1 to 255 printable characters without spaces".into());
            }
        }
        Ok(())
    }

    /// The host part of the address, without brackets.
    pub fn host(&self) -> &str {
        let host = self.address.rsplit_once(':').map_or("", |(h, _)| h);
        host.trim_start_matches('[').trim_end_matches(']')
    }
}

/// Checks a list of outputs: each valid, names unique.
///
/// # Errors
/// `(index, message)` of the first bad output.
pub fn validate_outputs(outputs: &[OutputConfig]) -> Result<(), (usize, String)> {
    let mut names = HashSet::new();
    let mut outboxes = HashSet::new();
    for (i, output) in outputs.iter().enumerate() {
        output
            .validate()
            .map_err(|e| (i, format!("({}): {e}", output.describe())))?;
        if !names.insert(output.name.as_str()) {
            return Err((
                i,
                format!("({}): another output has this name", output.describe()),
            ));
        }
        if let SinkConfig::Webhook(w) = &output.sink {
            let dir = w.outbox.dir.canonicalize().unwrap_or(w.outbox.dir.clone());
            if !outboxes.insert(dir) {
                return Err((
                    i,
                    format!(
                        "({}): outbox.dir {} is another output's outbox",
                        output.describe(),
                        w.outbox.dir.display()
                    ),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<OutputConfig, String> {
        serde_yaml_ng::from_str::<OutputConfig>(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn outputs_are_typed_by_their_type() {
        let o = parse(
            "{name: k, type: kafka, brokers: 'b:1', topic: 'alerts.{actor}', encoding: ocsf}",
        )
        .unwrap();
        assert_eq!(o.encoding, Some(Encoding::Ocsf));
        assert!(matches!(&o.sink, SinkConfig::Kafka(k) if k.topic == "alerts.{actor}"));
        assert!(o.sink.per_actor());
        assert!(matches!(
            parse("{name: s, type: stdout}").unwrap().sink,
            SinkConfig::Stdout
        ));
        for (yaml, expected) in [
            ("{name: s, type: stdout, path: x}", "unknown field"),
            (
                "{name: k, type: kafka, brokers: b, topic: t, topics: [x]}",
                "unknown field `topics`",
            ),
            ("{name: x, type: mail}", "type 'mail' is not one of"),
            ("{type: stdout}", "name is missing"),
            ("{name: x}", "type is missing"),
            ("{name: x, type: stdout, encoding: xml}", "encoding:"),
            ("{name: x, type: stdout, audience: everyone}", "audience:"),
            (
                "{name: t, type: taxii, collection: 'http://h/api1/collections/c/', identity: R, url: 'http://x/', outbox: {dir: o}}",
                "type taxii: url is not a taxii setting",
            ),
            (
                "{name: t, type: taxii, collection: 'http://h/api1/', identity: R, outbox: {dir: o}}",
                "is not a TAXII 2.1 collection URL",
            ),
            (
                "{name: t, type: taxii, collection: 'http://h/api1/collections/c/', identity: R, username_env: U, outbox: {dir: o}}",
                "username_env and password_env go together",
            ),
            (
                "{name: t, type: taxii, collection: 'http://h/api1/collections/c/', identity: R, outbox: {dir: o}, colour: red}",
                "unknown field `colour`",
            ),
        ] {
            let e = parse(yaml).unwrap_err();
            assert!(e.contains(expected), "{yaml}: {e}");
        }
        // A taxii output is a webhook to the collection's objects, with the
        // webhook's delivery settings.
        let t = parse(
            "{name: t, type: taxii, collection: 'http://h/api1/collections/c', identity: R, max_batch: 7, outbox: {dir: o}}",
        )
        .unwrap();
        let SinkConfig::Webhook(w) = &t.sink else {
            panic!("{t:?}")
        };
        assert_eq!(w.url, "http://h/api1/collections/c/objects/");
        assert_eq!(w.max_batch, 7);
        assert_eq!(
            w.taxii.as_ref().unwrap().collection,
            "http://h/api1/collections/c/"
        );
        assert_eq!(t.sink.kind(), "taxii");
    }

    #[test]
    fn sizes_take_units() {
        for (text, bytes) in [
            ("65536", 65536),
            ("64KiB", 65536),
            ("100MB", 100_000_000),
            ("1GiB", 1 << 30),
        ] {
            assert_eq!(parse_bytes(text).unwrap(), bytes, "{text}");
        }
        assert!(parse_bytes("12 parsecs").is_err());
        assert!(parse_bytes("lots").is_err());
    }

    #[test]
    fn bad_settings_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = dir.path().display();
        for (yaml, expected) in [
            (format!("{{name: w, type: webhook, url: 'ftp://x', outbox: {{dir: '{outbox}'}}}}"), "must start with http"),
            (format!("{{name: w, type: webhook, url: 'http://x/{{actr}}', outbox: {{dir: '{outbox}'}}}}"), "unknown field {actr}"),
            ("{name: w, type: webhook, url: 'http://x', outbox: {dir: /nonexistent/vagt}}".to_string(), "not an existing folder"),
            ("{name: k, type: kafka, brokers: 'b:1', topic: t, options: {acks: '1'}}".to_string(), "'acks' is set by vagt"),
            ("{name: s, type: syslog, address: nohost, protocol: tcp}".to_string(), "not host:port"),
            ("{name: f, type: file, path: /nonexistent/vagt/a.jsonl}".to_string(), "does not exist"),
            ("{name: f, type: file, path: a.jsonl, rotate: {compress: true}}".to_string(), "give max_bytes, every"),
            ("{name: k, type: kafka, brokers: 'b:1', topic: t, encoding: text}".to_string(), "text is for stdout"),
        ] {
            let e = parse(&yaml).and_then(|o| o.validate()).unwrap_err();
            assert!(e.contains(expected), "{yaml}: {e}");
        }
        let twice = [
            parse("{name: a, type: stdout}").unwrap(),
            parse("{name: a, type: stdout}").unwrap(),
        ];
        let (index, e) = validate_outputs(&twice).unwrap_err();
        assert_eq!(index, 1);
        assert!(e.contains("another output has this name"), "{e}");
    }
}
