//! The `taxii` output: alerts as STIX 2.1 objects ([`super::stix`]),
//! pushed to a TAXII 2.1 collection through the webhook output's outbox
//! and retries ([`super::webhook`]).
//!
//! One request POSTs an envelope (`{"objects": [...]}`, each object once)
//! to the collection's `objects/`; the server answers with a status
//! resource, which is followed (`API_ROOT/status/ID/`) until it is
//! complete. An object the server did not add is looked up: if the
//! collection holds that version already (a re-send), nothing is lost;
//! otherwise the alerts of the request go to the dead letters with the
//! server's message.

use std::time::Duration;

use reqwest::header::{HeaderValue, ACCEPT, CONTENT_TYPE};
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::Value;

use super::config::TaxiiSettings;
use super::outbox::OutboxRecord;
use super::webhook::Outcome;

/// TAXII 2.1's media type.
const TAXII: &str = "application/taxii+json;version=2.1";

/// How often a pending status is asked again, at most.
const STATUS_POLLS: u32 = 20;

/// A TAXII 2.1 status resource, the parts vagt reads.
#[derive(Debug, Deserialize)]
struct Status {
    id: String,
    status: String,
    #[serde(default)]
    failures: Vec<StatusDetail>,
}

#[derive(Debug, Deserialize)]
struct StatusDetail {
    id: String,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// Speaks TAXII to one collection.
#[derive(Debug)]
pub(crate) struct TaxiiClient {
    settings: TaxiiSettings,
    /// User and password, read from their variables at start.
    basic_auth: Option<(String, String)>,
}

impl TaxiiClient {
    /// # Errors
    /// A credential variable is unset.
    pub(super) fn new(settings: TaxiiSettings) -> Result<TaxiiClient, String> {
        let basic_auth = match &settings.basic_auth {
            Some((user, password)) => {
                let read =
                    |var: &String| std::env::var(var).map_err(|_| format!("{var} is not set"));
                Some((read(user)?, read(password)?))
            }
            None => None,
        };
        Ok(TaxiiClient {
            settings,
            basic_auth,
        })
    }

    fn request(&self, builder: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let builder = builder.header(ACCEPT, HeaderValue::from_static(TAXII));
        match &self.basic_auth {
            Some((user, password)) => builder.basic_auth(user, Some(password)),
            None => builder,
        }
    }

    /// POSTs the records' objects as one envelope and follows its status.
    pub(super) async fn post(&self, client: &reqwest::Client, records: &[OutboxRecord]) -> Outcome {
        let mut objects: Vec<Value> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for record in records {
            let Ok(Value::Array(items)) = serde_json::from_slice::<Value>(&record.payload) else {
                return Outcome::Refused("an outbox record is not a list of STIX objects".into());
            };
            for object in items {
                let version = (
                    object["id"].as_str().unwrap_or_default().to_string(),
                    object["modified"].as_str().unwrap_or_default().to_string(),
                );
                if seen.insert(version) {
                    objects.push(object);
                }
            }
        }
        let body =
            serde_json::to_vec(&serde_json::json!({ "objects": objects })).expect("envelope JSON");
        let url = format!("{}objects/", self.settings.collection);
        let response = match self
            .request(client.post(&url))
            .header(CONTENT_TYPE, HeaderValue::from_static(TAXII))
            .body(body)
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => return Outcome::Retry(format!("POST {url}: {e}"), None),
        };
        let status = response.status();
        if !status.is_success() {
            let answer: String = response
                .text()
                .await
                .unwrap_or_default()
                .chars()
                .take(200)
                .collect();
            let reason = format!("POST {url}: {status}: {answer}");
            return if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
                Outcome::Retry(reason, None)
            } else {
                Outcome::Refused(format!("refused for good: {reason}"))
            };
        }
        let mut resource: Status = match read_json(response).await {
            Ok(s) => s,
            Err(e) => return Outcome::Retry(format!("POST {url}: no status resource: {e}"), None),
        };
        let mut polls = 0;
        while resource.status != "complete" && polls < STATUS_POLLS {
            polls += 1;
            tokio::time::sleep(Duration::from_millis(100 * u64::from(polls))).await;
            match self.status(client, &resource.id).await {
                Ok(s) => resource = s,
                Err(e) => return Outcome::Retry(e, None),
            }
        }
        if resource.status != "complete" {
            // Posting again is harmless: the ids are the same.
            return Outcome::Retry(format!("status {} still pending", resource.id), None);
        }
        let mut lost = Vec::new();
        for failure in &resource.failures {
            match self.holds(client, failure).await {
                Ok(true) => {}
                Ok(false) => lost.push(format!(
                    "{}: {}",
                    failure.id,
                    failure.message.as_deref().unwrap_or("not added")
                )),
                Err(e) => return Outcome::Retry(e, None),
            }
        }
        if lost.is_empty() {
            Outcome::Delivered
        } else {
            Outcome::Refused(format!("the TAXII server did not add: {}", lost.join("; ")))
        }
    }

    /// The status resource `id`.
    async fn status(&self, client: &reqwest::Client, id: &str) -> Result<Status, String> {
        let root = self
            .settings
            .collection
            .rsplit_once("/collections/")
            .map_or(self.settings.collection.as_str(), |(root, _)| root);
        let url = format!("{root}/status/{id}/");
        let response = self
            .request(client.get(&url))
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("GET {url}: {}", response.status()));
        }
        read_json(response)
            .await
            .map_err(|e| format!("GET {url}: {e}"))
    }

    /// Whether the collection holds the object version a failure names
    /// (a re-send the server declined to add twice).
    async fn holds(
        &self,
        client: &reqwest::Client,
        failure: &StatusDetail,
    ) -> Result<bool, String> {
        let mut url = format!("{}objects/{}/", self.settings.collection, failure.id);
        if let Some(version) = &failure.version {
            url.push_str(&format!("?match[version]={version}"));
        }
        let response = self
            .request(client.get(&url))
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(false);
        }
        if !response.status().is_success() {
            return Err(format!("GET {url}: {}", response.status()));
        }
        let envelope: Value = read_json(response)
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        Ok(envelope["objects"]
            .as_array()
            .is_some_and(|o| !o.is_empty()))
    }
}

/// A response's body as JSON.
async fn read_json<T: serde::de::DeserializeOwned>(
    response: reqwest::Response,
) -> Result<T, String> {
    let body = response.bytes().await.map_err(|e| e.to_string())?;
    serde_json::from_slice(&body).map_err(|e| e.to_string())
}
