//! The metrics the gateway exports, described once so that `/metrics`
//! carries a `# HELP` line (and unit) for each, and so that the names live
//! in one place.

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

/// Describes every metric to the installed recorder. Call once, after the
/// recorder is installed and before serving.
pub fn describe_metrics() {
    describe_counter!(
        "portcullis_requests_total",
        "Data-plane requests answered, by endpoint, status class, model (registry names only; `other` for any other name, `none` for no model) and admission decision (`allow`, `deny`, or `error` for an admitted request that failed)."
    );
    describe_histogram!(
        "portcullis_request_duration_seconds",
        Unit::Seconds,
        "Time from request head to answer head (whole answers) or stream start, by endpoint."
    );
    describe_counter!(
        "portcullis_audit_errors_total",
        "Audit entries that could not be queued or committed; each one refused its request."
    );
    describe_counter!(
        "portcullis_order_cuts_total",
        "Requests in flight stopped because an order took effect."
    );
    describe_counter!(
        "portcullis_stream_errors_total",
        "Streams ended with an error event, by code."
    );
    describe_counter!(
        "portcullis_token_rejections_total",
        "Bearer tokens (OIDC) refused, by reason."
    );
    describe_counter!(
        "portcullis_upstream_errors_total",
        "Upstream failures (status, timeout, broken or truncated stream), by kind."
    );
    describe_counter!(
        "portcullis_safeguard_verdicts_total",
        "Safeguard verdicts, by profile, phase (input or output), verdict and deciding stage."
    );
    describe_gauge!(
        "portcullis_active_streams",
        "Streams being relayed to clients now."
    );
    describe_gauge!(
        "portcullis_replica_confirmed_at_seconds",
        Unit::Seconds,
        "When this replica last confirmed its snapshot with the store (Unix time)."
    );
    describe_gauge!(
        "portcullis_snapshot_version",
        "The store version of the snapshot this replica decides with."
    );
}
