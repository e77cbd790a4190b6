//! `AnalyticsPipeline`: one tenant's pipeline, from HTTP ingest to dashboards.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use pulse_core::config::{Durability, IngestLimits, RateLimit, RollupInterval};
use pulse_core::duration::DurationSpec;
use pulse_core::property::PropertyPath;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The desired state of one tenant's analytics pipeline: HTTP ingest, a Redis buffer,
/// MongoDB storage with pre-aggregates, a query API and Grafana dashboards. The operator
/// creates and owns everything it needs; write and read keys appear in a Secret named in
/// the status.
// Each printcolumn repeats `type_`, which clippy mistakes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[kube(
    group = "pulse.dev",
    version = "v1alpha1",
    kind = "AnalyticsPipeline",
    plural = "analyticspipelines",
    singular = "analyticspipeline",
    shortname = "ap",
    category = "pulse",
    namespaced,
    status = "AnalyticsPipelineStatus",
    doc = "One tenant's real-time analytics pipeline: ingest, buffer, storage, query and dashboards.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#
    ),
    printcolumn(name = "Partitions", type_ = "integer", json_path = ".spec.buffer.partitions"),
    printcolumn(name = "Ingest", type_ = "string", json_path = ".status.ingestEndpoint"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct AnalyticsPipelineSpec {
    /// HTTP ingest: replicas or autoscaling, rate limit and input limits.
    #[serde(default)]
    pub ingest: IngestSpec,
    /// The Redis streams that buffer accepted events until they are stored.
    pub buffer: BufferSpec,
    /// Where events and pre-aggregates are stored (MongoDB), and for how long.
    pub storage: StorageSpec,
    /// The processor that moves events from the buffer to storage exactly once.
    #[serde(default)]
    pub processor: ProcessorSpec,
    /// The HTTP query API over pre-aggregates and raw events.
    #[serde(default)]
    pub query: QuerySpec,
    /// Which pre-aggregates the processor maintains.
    #[serde(default)]
    pub rollups: RollupsSpec,
    /// The IANA time zone that days and weeks are counted in (e.g. "Europe/Berlin"), for
    /// rollups, retention and trends. Default "UTC".
    #[serde(default = "default_timezone")]
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^(UTC|[A-Za-z]+(/[A-Za-z0-9_+-]+){1,2})$"))]
    pub timezone: String,
    /// Grafana dashboards for this pipeline.
    #[serde(default)]
    pub dashboards: DashboardsSpec,
    /// Copies the rollups to InfluxDB as time series (off when absent); the dashboard then
    /// gets business panels over it. Schema: docs/influxdb.md.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub influx: Option<InfluxSpec>,
    /// What happens to the tenant's data (Redis streams, MongoDB database) when the
    /// pipeline is deleted: Retain (default) keeps it, Delete drops it.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// Stops the operator from changing anything of this pipeline: its workloads, config and
    /// data stay exactly as they are, and a Paused condition says so. Set it back to false
    /// to resume. Deleting a paused pipeline still cleans up per deletionPolicy.
    #[serde(default)]
    pub paused: bool,
}

fn default_timezone() -> String {
    "UTC".to_string()
}

/// HTTP ingest settings.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    { "rule": "!(has(self.replicas) && has(self.autoscaling))", "message": "set ingest.replicas or ingest.autoscaling, not both" }
]))]
pub struct IngestSpec {
    /// A fixed number of ingest pods (default 2 when autoscaling is not set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub replicas: Option<i32>,
    /// Scale ingest pods with CPU load between minReplicas and maxReplicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingSpec>,
    /// The tenant's rate limit across all ingest pods; none by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// Limits on what one request and one event may hold. Anything over a limit is refused
    /// with an error naming it, never cut.
    #[serde(default)]
    pub limits: IngestLimits,
}

/// An autoscaling range for a Deployment.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    { "rule": "self.minReplicas <= self.maxReplicas", "message": "minReplicas must not exceed maxReplicas", "fieldPath": ".minReplicas" }
]))]
pub struct AutoscalingSpec {
    /// The fewest pods (default 1).
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 100))]
    pub min_replicas: i32,
    /// The most pods.
    #[schemars(range(min = 1, max = 100))]
    pub max_replicas: i32,
    /// The average CPU utilization, in percent of the request, to scale at (default 70).
    #[serde(default = "default_cpu_target", rename = "targetCPUUtilizationPercentage")]
    #[schemars(range(min = 10, max = 95))]
    pub target_cpu_utilization_percentage: i32,
    /// Ingest only: also scale on HTTP requests per second per pod, at this average. Needs
    /// a custom metrics API serving the pods metric `pulse_ingest_requests_per_second`
    /// (e.g. prometheus-adapter); without one the operator scales on CPU alone and says so
    /// in the IngestAvailable condition's message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1_000_000))]
    pub target_requests_per_second: Option<i32>,
}

fn one() -> i32 {
    1
}

fn default_cpu_target() -> i32 {
    70
}

/// The Redis buffer between ingest and the processor.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    { "rule": "self.partitions >= oldSelf.partitions", "message": "partitions may only grow: a user's events must stay in one partition", "fieldPath": ".partitions" }
]))]
pub struct BufferSpec {
    /// The Redis that holds the streams: external (yours) or managed (by the operator).
    pub redis: RedisSpec,
    /// Stream partitions; events are spread by a hash of distinct_id. More partitions allow
    /// more processors in parallel. May grow, never shrink (default 8).
    #[serde(default = "default_partitions")]
    #[schemars(range(min = 1, max = 256))]
    pub partitions: i32,
    /// fast (default): Redis fsyncs its append-only file every second, so a Redis crash may
    /// lose up to about a second of acknowledged events. strict: every event is on disk (or
    /// on a replica) before ingest answers 202.
    #[serde(default)]
    pub durability: Durability,
    /// The most unprocessed events the buffer holds before ingest answers 429 with
    /// Retry-After instead of accepting more (default 1000000). Nothing is ever trimmed.
    #[serde(default = "default_high_water_mark")]
    #[schemars(range(min = 1000, max = 1_000_000_000))]
    pub high_water_mark: i64,
}

fn default_partitions() -> i32 {
    8
}

fn default_high_water_mark() -> i64 {
    1_000_000
}

/// Where the buffer's Redis comes from: exactly one of external or managed.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    { "rule": "has(self.external) != has(self.managed)", "message": "set exactly one of buffer.redis.external and buffer.redis.managed" }
]))]
pub struct RedisSpec {
    /// A Redis you run, its URL (redis:// or rediss://) read from a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalRedis>,
    /// A Redis the operator runs as a StatefulSet with append-only persistence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed: Option<ManagedRedis>,
}

/// A Redis reached by URL.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalRedis {
    /// The Secret key holding the URL, e.g. redis://:password@redis.example:6379/0. A Redis
    /// Cluster works too: give any node's URL and set cluster.
    pub url_secret_ref: SecretKeyRef,
    /// Whether the URL points at a Redis Cluster.
    #[serde(default)]
    pub cluster: bool,
}

/// A Redis run by the operator for this pipeline.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManagedRedis {
    /// Size of the persistent volume holding the append-only file (default "1Gi").
    #[serde(default = "default_redis_storage")]
    #[schemars(regex(pattern = r"^[1-9][0-9]{0,5}(Mi|Gi|Ti)$"))]
    pub storage: String,
    /// The StorageClass of that volume; the cluster default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub storage_class_name: Option<String>,
    /// The Redis memory limit, which also caps the buffer (default "1Gi").
    #[serde(default = "default_redis_memory")]
    #[schemars(regex(pattern = r"^[1-9][0-9]{0,5}(Mi|Gi)$"))]
    pub memory: String,
}

fn default_redis_storage() -> String {
    "1Gi".to_string()
}

fn default_redis_memory() -> String {
    "1Gi".to_string()
}

/// A key of a Secret in the pipeline's namespace.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// The Secret's name.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"))]
    pub name: String,
    /// The key within the Secret.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

/// Event storage.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    { "rule": "self.database == oldSelf.database", "message": "storage.database is immutable: moving a pipeline's data is a migration, not an edit", "fieldPath": ".database" }
]))]
pub struct StorageSpec {
    /// The MongoDB (or MongoDB-wire-compatible) server.
    pub mongodb: MongoSpec,
    /// The database holding this tenant's collections. Immutable.
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[A-Za-z0-9_-]+$"))]
    pub database: String,
    /// How long raw events are kept, e.g. "365d" (the default). Events older than this are
    /// refused at ingest and removed from storage.
    #[serde(default = "default_retention")]
    pub retention: DurationSpec,
}

fn default_retention() -> DurationSpec {
    DurationSpec::days(365)
}

/// A MongoDB connection.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MongoSpec {
    /// The Secret key holding the connection string, e.g. mongodb://user:pass@host:27017/.
    pub uri_secret_ref: SecretKeyRef,
}

/// The processor: buffer to storage.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    { "rule": "!(has(self.replicas) && has(self.autoscaling))", "message": "set processor.replicas or processor.autoscaling, not both" }
]))]
pub struct ProcessorSpec {
    /// A fixed number of processor pods (default 1). More than the partitions is useless:
    /// each partition has one active writer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 256))]
    pub replicas: Option<i32>,
    /// Scale processor pods between minReplicas and maxReplicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingSpec>,
    /// Most events read and written in one batch (default 500).
    #[serde(default = "default_batch_size")]
    #[schemars(range(min = 1, max = 10_000))]
    pub batch_size: i32,
}

fn default_batch_size() -> i32 {
    500
}

impl Default for ProcessorSpec {
    fn default() -> Self {
        ProcessorSpec { replicas: None, autoscaling: None, batch_size: default_batch_size() }
    }
}

/// The query API.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QuerySpec {
    /// Query pods (default 1).
    #[serde(default = "one")]
    #[schemars(range(min = 0, max = 100))]
    pub replicas: i32,
    /// How long ad-hoc results over raw events are cached (default "30s").
    #[serde(default = "default_cache_ttl")]
    pub cache_ttl: DurationSpec,
    /// The inactivity that ends a user's session when their events carry no `$session_id`
    /// (default "30m", at most "1d"; sessions also end at local midnight), for the session
    /// measures of trends.
    #[serde(default = "default_session_timeout")]
    pub session_timeout: DurationSpec,
}

fn default_cache_ttl() -> DurationSpec {
    DurationSpec::seconds(30)
}

fn default_session_timeout() -> DurationSpec {
    DurationSpec::minutes(30)
}

impl Default for QuerySpec {
    fn default() -> Self {
        QuerySpec { replicas: 1, cache_ttl: default_cache_ttl(), session_timeout: default_session_timeout() }
    }
}

/// Pre-aggregates the processor maintains as events arrive.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RollupsSpec {
    /// The intervals of per-event counts and unique users (default minute, hour, day).
    #[serde(default = "default_intervals")]
    #[schemars(length(min = 1, max = 3), extend("x-kubernetes-list-type" = "set"))]
    pub intervals: Vec<RollupInterval>,
    /// Numeric properties to keep sum, min and max of per event and interval (e.g.
    /// `revenue`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), extend("x-kubernetes-list-type" = "set"))]
    pub numeric_properties: Vec<PropertyPath>,
}

fn default_intervals() -> Vec<RollupInterval> {
    vec![RollupInterval::Minute, RollupInterval::Hour, RollupInterval::Day]
}

impl Default for RollupsSpec {
    fn default() -> Self {
        RollupsSpec { intervals: default_intervals(), numeric_properties: Vec::new() }
    }
}

/// Grafana dashboards.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DashboardsSpec {
    /// Whether to create dashboards (default true): a ConfigMap labelled
    /// grafana_dashboard: "1" for Grafana's sidecar, and a GrafanaDashboard when
    /// grafana-operator is installed.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The Grafana folder (default "Pulse").
    #[serde(default = "default_folder")]
    #[schemars(length(min = 1, max = 100))]
    pub folder: String,
    /// Extra labels on the dashboard objects, to match your Grafana's selector.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

fn yes() -> bool {
    true
}

fn default_folder() -> String {
    "Pulse".to_string()
}

impl Default for DashboardsSpec {
    fn default() -> Self {
        DashboardsSpec { enabled: true, folder: default_folder(), labels: BTreeMap::new() }
    }
}

/// The InfluxDB sink: the processor writes rollups over InfluxDB's v1 HTTP `/write`
/// endpoint (InfluxDB 1.x; 2.x and 3.x serve it for compatibility, with a DBRP mapping).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    { "rule": "has(self.usernameSecretRef) == has(self.passwordSecretRef)", "message": "usernameSecretRef and passwordSecretRef go together", "fieldPath": ".passwordSecretRef" }
]))]
pub struct InfluxSpec {
    /// The InfluxDB HTTP API's base URL, e.g. http://influxdb.monitoring:8086. Plain http
    /// only (put a TLS-terminating proxy in front for https).
    #[schemars(length(min = 8, max = 2048), regex(pattern = r"^http://[^\s/]+(/[^\s]*)?$"))]
    pub url: String,
    /// The database (1.x), or the database name of the bucket's DBRP mapping (2.x/3.x).
    #[schemars(length(min = 1, max = 255), regex(pattern = r"^[^\x00-\x1f]+$"))]
    pub database: String,
    /// The retention policy written to; the database's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255), regex(pattern = r"^[^\x00-\x1f]+$"))]
    pub retention_policy: Option<String>,
    /// The Secret key holding the user name; no authentication when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_secret_ref: Option<SecretKeyRef>,
    /// The Secret key holding the password (or a 2.x token); required with usernameSecretRef.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeyRef>,
    /// How often changed rollups are written, e.g. "5s" (the default).
    #[serde(default = "default_influx_flush")]
    pub flush_interval: DurationSpec,
    /// How far back each flush looks for late events, e.g. "2h" (the default); older
    /// changes are written by the hourly full sweep over 7 days.
    #[serde(default = "default_influx_lookback")]
    pub lookback: DurationSpec,
    /// The uid of the InfluxDB datasource in your Grafana (InfluxQL, this database), used
    /// by the dashboard's business panels. Default "influxdb".
    #[serde(default = "default_influx_datasource")]
    #[schemars(length(min = 1, max = 40), regex(pattern = r"^[A-Za-z0-9_-]+$"))]
    pub grafana_datasource_uid: String,
}

fn default_influx_flush() -> DurationSpec {
    DurationSpec::seconds(5)
}

fn default_influx_lookback() -> DurationSpec {
    DurationSpec::hours(2)
}

fn default_influx_datasource() -> String {
    "influxdb".to_string()
}

/// What to do with the tenant's data when the pipeline is deleted.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default, JsonSchema)]
pub enum DeletionPolicy {
    /// Keep the Redis streams and the MongoDB database.
    #[default]
    Retain,
    /// Drop them.
    Delete,
}

/// What the operator observed and did.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalyticsPipelineStatus {
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready summarizes the others: BufferReady, StorageReady, IngestAvailable,
    /// ProcessorAvailable, QueryAvailable, DashboardsReady.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::conditions_schema")]
    pub conditions: Vec<Condition>,
    /// The URL events are sent to (POST /v1/events, /v1/batch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingest_endpoint: Option<String>,
    /// The URL of the query API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_endpoint: Option<String>,
    /// The Secret holding the write key (key `write-key`) and read key (key `read-key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys_secret: Option<String>,
}
