//! A feed from a TAXII 2.1 collection: polled with `added_after` (the
//! collection's `X-TAXII-Date-Added-Last`), its pages followed, each
//! object kept in its latest version by id. A poll that brings an
//! indicator vagt cannot match is refused whole: the objects and the
//! position stay as they were, so the last good version stays in force.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::feed::{stix_indicators, FeedError, Indicator};

const TAXII: &str = "application/taxii+json;version=2.1";

/// `taxii:` of a feed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaxiiFeedConfig {
    /// The collection: `https://taxii.example/API_ROOT/collections/ID/`.
    pub collection: String,
    /// Environment variables of the user and password (HTTP basic auth).
    #[serde(default)]
    pub username_env: Option<String>,
    #[serde(default)]
    pub password_env: Option<String>,
}

impl TaxiiFeedConfig {
    /// Checks the settings.
    ///
    /// # Errors
    /// Not a collection URL, or only one of the credentials.
    pub fn validate(&self) -> Result<(), String> {
        if !self.collection.contains("/collections/") {
            return Err(format!(
                "taxii.collection '{}' is not a TAXII 2.1 collection URL (.../API_ROOT/collections/ID/)",
                self.collection
            ));
        }
        if self.username_env.is_some() != self.password_env.is_some() {
            return Err("taxii.username_env and taxii.password_env go together".into());
        }
        Ok(())
    }
}

/// What a TAXII feed holds so far.
#[derive(Debug)]
pub struct TaxiiSource {
    objects_url: String,
    auth: Option<(String, String)>,
    added_after: Option<String>,
    /// By id: (its `modified`, the object).
    objects: BTreeMap<String, (String, serde_json::Value)>,
}

/// An envelope of TAXII 2.1.
#[derive(Debug, Deserialize)]
struct Envelope {
    #[serde(default)]
    more: bool,
    #[serde(default)]
    next: Option<String>,
    #[serde(default)]
    objects: Vec<serde_json::Value>,
}

impl TaxiiSource {
    /// A source for `config`, its credentials read from the environment.
    ///
    /// # Errors
    /// A credential variable is unset.
    pub fn new(config: &TaxiiFeedConfig) -> Result<TaxiiSource, String> {
        let read = |var: &String| std::env::var(var).map_err(|_| format!("{var} is not set"));
        let auth = match (&config.username_env, &config.password_env) {
            (Some(u), Some(p)) => Some((read(u)?, read(p)?)),
            _ => None,
        };
        let mut collection = config.collection.clone();
        if !collection.ends_with('/') {
            collection.push('/');
        }
        Ok(TaxiiSource {
            objects_url: format!("{collection}objects/"),
            auth,
            added_after: None,
            objects: BTreeMap::new(),
        })
    }

    fn error(&self, at: &str, message: impl std::fmt::Display) -> FeedError {
        FeedError::Bad {
            path: PathBuf::from(&self.objects_url),
            at: at.to_string(),
            message: message.to_string(),
        }
    }

    /// Polls for objects added since the last poll. `Ok(None)` when none
    /// were; else the indicators of every object held, with the new.
    ///
    /// # Errors
    /// The server cannot be reached or answers wrongly, or a new
    /// indicator is not one vagt matches (nothing is taken then).
    pub fn poll(&mut self) -> Result<Option<Vec<Indicator>>, FeedError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| self.error("the poll", e))?;
        let (fetched, last) = runtime.block_on(self.fetch())?;
        if fetched.is_empty() {
            return Ok(None);
        }
        let mut objects = self.objects.clone();
        for object in fetched {
            let Some(id) = object["id"].as_str().map(str::to_string) else {
                continue;
            };
            let modified = object["modified"].as_str().unwrap_or_default().to_string();
            if objects.get(&id).is_none_or(|(m, _)| *m <= modified) {
                objects.insert(id, (modified, object));
            }
        }
        let all: Vec<serde_json::Value> = objects.values().map(|(_, o)| o.clone()).collect();
        let url = self.objects_url.clone();
        let indicators = stix_indicators(&all, &|at, message| FeedError::Bad {
            path: PathBuf::from(&url),
            at,
            message,
        })?;
        self.objects = objects;
        if last.is_some() {
            self.added_after = last;
        }
        Ok(Some(indicators))
    }

    /// The objects added after the last poll, every page; and the
    /// collection's date of the last one added.
    async fn fetch(&self) -> Result<(Vec<serde_json::Value>, Option<String>), FeedError> {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| self.error("the poll", e))?;
        let mut objects = Vec::new();
        let mut last = None;
        let mut next: Option<String> = None;
        loop {
            let mut request = client
                .get(&self.objects_url)
                .header(reqwest::header::ACCEPT, TAXII);
            if let Some(after) = &self.added_after {
                request = request.query(&[("added_after", after)]);
            }
            if let Some(next) = &next {
                request = request.query(&[("next", next)]);
            }
            if let Some((user, password)) = &self.auth {
                request = request.basic_auth(user, Some(password));
            }
            let response = request
                .send()
                .await
                .map_err(|e| self.error("the poll", e))?;
            let status = response.status();
            if !status.is_success() {
                return Err(self.error("the poll", format!("the server answered {status}")));
            }
            if let Some(date) = response
                .headers()
                .get("X-TAXII-Date-Added-Last")
                .and_then(|v| v.to_str().ok())
            {
                last = Some(date.to_string());
            }
            let body = response
                .bytes()
                .await
                .map_err(|e| self.error("the poll", e))?;
            let envelope: Envelope = serde_json::from_slice(&body)
                .map_err(|e| self.error("the poll", format!("not a TAXII envelope: {e}")))?;
            objects.extend(envelope.objects);
            match (envelope.more, envelope.next) {
                (true, Some(n)) => next = Some(n),
                _ => break,
            }
        }
        Ok((objects, last))
    }
}
