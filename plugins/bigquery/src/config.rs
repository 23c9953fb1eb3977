//! Configuration of the `bigquery` source: the original fastlane's fields (`gcp_project`,
//! `dataset_id`, `table_id`, `secret`), plus a query, column selection, a row filter, a
//! replication key, the read path, credentials and emulator endpoints.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

/// Which API reads the rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReadApi {
    /// The Storage Read API when it answers, otherwise REST paging (with a warning).
    #[default]
    Auto,
    /// The BigQuery Storage Read API in Arrow format: streams read in parallel.
    Storage,
    /// REST paging: `tabledata.list` for tables, `jobs.getQueryResults` for queries.
    Rest,
}

/// How the source authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// A service-account key: `service_account_json` or `service_account_file`.
    ServiceAccount,
    /// Application default credentials: `GOOGLE_APPLICATION_CREDENTIALS`, the gcloud user
    /// credentials, or the metadata server of the machine.
    Adc,
    /// No credentials, for emulators.
    None,
}

/// Configuration of the `bigquery` source.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BigQuerySourceConfig {
    /// The project the table belongs to and the jobs run (and are billed) in.
    pub gcp_project: String,
    /// The dataset of `table_id`.
    pub dataset_id: Option<String>,
    /// The table to read; or give `query` instead.
    pub table_id: Option<String>,
    /// A GoogleSQL query to read instead of a table.
    pub query: Option<String>,
    /// The columns to read from the table (default: all), e.g. `["id", "payload.kind"]`.
    pub columns: Option<Vec<String>>,
    /// A GoogleSQL condition rows of the table must meet, e.g. `"country = 'FR'"`.
    pub filter: Option<String>,
    /// The column incremental runs continue after (INT64, NUMERIC, BIGNUMERIC, FLOAT64,
    /// STRING, DATE, DATETIME or TIMESTAMP).
    pub replication_key: Option<String>,
    /// `auto` (Storage Read API, else REST), `storage` or `rest`.
    #[serde(default)]
    pub read_api: ReadApi,
    /// The most Storage Read streams (partitions read in parallel); default: the host's
    /// source parallelism.
    #[schemars(range(min = 1, max = 1000))]
    pub max_streams: Option<usize>,
    /// Rows per REST page (BigQuery also caps a page at about 10 MB).
    #[serde(default = "default_page_size")]
    #[schemars(range(min = 1, max = 1_000_000))]
    pub page_size: usize,
    /// `service_account`, `adc` or `none`; default: `service_account` when a key is given,
    /// else `adc`.
    pub auth: Option<AuthMode>,
    /// A service-account key as JSON text, e.g. `"${GCP_SA_KEY}"` or from `secret`.
    pub service_account_json: Option<String>,
    /// A service-account key file.
    pub service_account_file: Option<String>,
    /// The REST endpoint, for emulators (e.g. `http://127.0.0.1:9050`); default Google's.
    pub endpoint: Option<String>,
    /// The Storage Read API (gRPC) endpoint, for emulators (e.g. `http://127.0.0.1:9060`);
    /// default Google's, or none when only `endpoint` is given.
    pub storage_endpoint: Option<String>,
    /// The location query jobs run in (e.g. `EU`); default: the dataset's.
    pub location: Option<String>,
    /// Seconds one request may take before it is retried.
    #[serde(default = "default_timeout")]
    #[schemars(range(min = 1, max = 3600))]
    pub timeout_secs: u64,
    /// Retries of a request that failed for a passing reason (connection, 5xx, 429, a
    /// broken stream), with backoff, before the run fails.
    #[serde(default = "default_retries")]
    #[schemars(range(max = 100))]
    pub max_retries: u32,
    /// The first backoff before a retry, in milliseconds (doubling, with jitter).
    #[serde(default = "default_backoff")]
    #[schemars(range(min = 1, max = 60_000))]
    pub retry_backoff_ms: u64,
    /// AWS Secrets Manager secret holding `service_account_json` (or other fields);
    /// resolved by the fastlane host.
    pub secret: Option<String>,
    /// AWS region of `secret`.
    pub secret_region: Option<String>,
    /// How many streams are read at once (host setting; the original's base field).
    #[schemars(range(min = 1))]
    pub concurrency: Option<u32>,
    /// Read only rows whose `replication_key` is above this value (the original's starting
    /// key, exclusive; `-1`, its default, reads from the start). In INCREMENTAL runs the
    /// target's offset takes precedence when it has one.
    pub offset: Option<Value>,
}

fn default_page_size() -> usize {
    20_000
}

fn default_timeout() -> u64 {
    120
}

fn default_retries() -> u32 {
    5
}

fn default_backoff() -> u64 {
    500
}

impl BigQuerySourceConfig {
    /// The configured starting offset, `None` for none or the original's `-1`.
    pub fn configured_offset(&self) -> Option<Value> {
        fastlane_plugin_support::keys::configured_offset(self.offset.as_ref())
    }

    /// Everything wrong with the configuration that can be told without the server.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let blank = |v: &Option<String>| v.as_deref().is_some_and(|s| s.trim().is_empty());
        if self.gcp_project.trim().is_empty() {
            problems.push("`gcp_project` is empty".to_owned());
        }
        match (&self.query, &self.table_id) {
            (Some(_), Some(_)) => {
                problems.push("give either `table_id` or `query`, not both".to_owned())
            }
            (None, None) => {
                problems.push("give `table_id` (with `dataset_id`) or `query`".to_owned())
            }
            (None, Some(_)) if self.dataset_id.is_none() => {
                problems.push("`table_id` needs `dataset_id`".to_owned())
            }
            _ => {}
        }
        if self.query.is_some() && (self.columns.is_some() || self.filter.is_some()) {
            problems.push(
                "`columns` and `filter` apply to `table_id`; write them into the `query`"
                    .to_owned(),
            );
        }
        for (name, value) in [
            ("dataset_id", &self.dataset_id),
            ("table_id", &self.table_id),
            ("query", &self.query),
            ("filter", &self.filter),
            ("replication_key", &self.replication_key),
        ] {
            if blank(value) {
                problems.push(format!("`{name}` is empty"));
            }
        }
        if self.configured_offset().is_some() && self.replication_key.is_none() {
            problems.push(
                "`offset` needs `replication_key`, the column it is compared with".to_owned(),
            );
        }
        if let Some(columns) = &self.columns {
            if columns.is_empty() {
                problems.push("`columns` is empty: leave it out to read every column".to_owned());
            }
            if let Some(key) = &self.replication_key
                && !columns.iter().any(|c| c == key)
            {
                problems.push(format!(
                    "`columns` must include the replication key `{key}`"
                ));
            }
        }
        if self.service_account_json.is_some() && self.service_account_file.is_some() {
            problems.push(
                "give either `service_account_json` or `service_account_file`, not both".to_owned(),
            );
        }
        let has_key = self.service_account_json.is_some() || self.service_account_file.is_some();
        match self.auth {
            Some(AuthMode::ServiceAccount) if !has_key => problems.push(
                "`auth` is `service_account` but neither `service_account_json` nor \
                 `service_account_file` is given"
                    .to_owned(),
            ),
            Some(AuthMode::Adc | AuthMode::None) if has_key => problems.push(format!(
                "a service-account key is given but `auth` is `{}`",
                if self.auth == Some(AuthMode::Adc) {
                    "adc"
                } else {
                    "none"
                }
            )),
            _ => {}
        }
        if self.read_api == ReadApi::Storage
            && self.endpoint.is_some()
            && self.storage_endpoint.is_none()
        {
            problems.push(
                "`read_api` is `storage` with a custom `endpoint`: give `storage_endpoint` too"
                    .to_owned(),
            );
        }
        for (name, value) in [
            ("endpoint", &self.endpoint),
            ("storage_endpoint", &self.storage_endpoint),
        ] {
            if let Some(url) = value
                && !(url.starts_with("http://") || url.starts_with("https://"))
            {
                problems.push(format!(
                    "`{name}` must be an http:// or https:// URL, not `{url}`"
                ));
            }
        }
        problems
    }

    /// The authentication to use.
    pub fn auth_mode(&self) -> AuthMode {
        self.auth.unwrap_or(
            if self.service_account_json.is_some() || self.service_account_file.is_some() {
                AuthMode::ServiceAccount
            } else {
                AuthMode::Adc
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: serde_json::Value) -> BigQuerySourceConfig {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn the_original_fields_are_enough() {
        let c = parse(json!({"gcp_project": "p", "dataset_id": "d", "table_id": "t"}));
        assert!(c.problems().is_empty(), "{:?}", c.problems());
        assert_eq!(c.auth_mode(), AuthMode::Adc);
        assert_eq!(c.read_api, ReadApi::Auto);
        let c =
            parse(json!({"gcp_project": "p", "query": "SELECT 1", "service_account_json": "{}"}));
        assert!(c.problems().is_empty(), "{:?}", c.problems());
        assert_eq!(c.auth_mode(), AuthMode::ServiceAccount);
    }

    #[test]
    fn every_problem_is_listed() {
        let c = parse(json!({
            "gcp_project": " ", "table_id": "t", "query": "SELECT 1", "columns": [],
            "replication_key": "k", "auth": "none", "service_account_file": "k.json",
            "read_api": "storage", "endpoint": "localhost:9050"
        }));
        let problems = c.problems().join("\n");
        for expected in [
            "`gcp_project` is empty",
            "not both",
            "`columns` and `filter` apply to `table_id`",
            "`columns` is empty",
            "must include the replication key `k`",
            "`auth` is `none`",
            "give `storage_endpoint` too",
            "must be an http:// or https:// URL",
        ] {
            assert!(
                problems.contains(expected),
                "{expected} not in:\n{problems}"
            );
        }
        let c = parse(json!({"gcp_project": "p", "table_id": "t"}));
        assert_eq!(c.problems(), ["`table_id` needs `dataset_id`"]);
        let c = parse(json!({"gcp_project": "p", "auth": "service_account", "query": "q"}));
        assert!(c.problems()[0].contains("neither"), "{:?}", c.problems());
    }
}
