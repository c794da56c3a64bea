//! Errors the gateway returns to clients, rendered in each provider's native
//! error format.

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use serde_json::json;

/// Which provider API a client spoke, which decides how errors, streams and
/// responses are framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiFormat {
    OpenAi,
    Anthropic,
}

/// Where an error came from, so operators can tell client mistakes from
/// upstream trouble in metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorSource {
    Client,
    Policy,
    Upstream,
    Internal,
}

/// An error answer. `code` is the stable machine-readable reason (OpenAI
/// `code`, and the leading word of Anthropic's `message`).
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub source: ErrorSource,
    /// Seconds for a `Retry-After` header, when retrying later can succeed.
    pub retry_after_seconds: Option<u32>,
    /// The upstream's status, when the upstream refused the request.
    pub upstream_status: Option<u16>,
    /// The request limit that refused it, for the OpenAI-style
    /// `x-ratelimit-*-requests` headers.
    pub request_limit: Option<u32>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<String>,
        source: ErrorSource,
    ) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            source,
            retry_after_seconds: None,
            upstream_status: None,
            request_limit: None,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message, ErrorSource::Client)
    }

    pub fn unauthenticated() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_api_key",
            "missing or invalid credentials: send `Authorization: Bearer KEY` or `x-api-key: KEY`",
            ErrorSource::Client,
        )
    }

    pub fn model_not_found(model: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "model_not_found",
            format!("the model `{model}` does not exist or you do not have access to it"),
            ErrorSource::Client,
        )
    }

    pub fn access_denied(model: &str, reasons: &[String]) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "model_access_denied",
            format!(
                "access to model `{model}` denied by policy: {}",
                reasons.join(", ")
            ),
            ErrorSource::Policy,
        )
    }

    pub fn legal_restriction(model: &str, reasons: &[String], legal_contact: &str) -> Self {
        Self::new(
            StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS,
            "legal_restriction",
            format!(
                "access to model `{model}` is unavailable for legal reasons: {}; contact {legal_contact}",
                reasons.join(", ")
            ),
            ErrorSource::Policy,
        )
    }

    /// An input blocked by the safeguards (400 `content_policy_violation`).
    pub fn content_policy_violation(profile: &str, category: Option<&str>) -> Self {
        let category = category
            .map(|category| format!(" (category `{category}`)"))
            .unwrap_or_default();
        Self::new(
            StatusCode::BAD_REQUEST,
            "content_policy_violation",
            format!(
                "the request was blocked by the `{profile}` safeguard profile{category}: it asks for help attacking computer systems"
            ),
            ErrorSource::Policy,
        )
    }

    /// A model tagged `fail_closed` asked of a replica whose snapshot the
    /// store has not confirmed within the staleness bound (451
    /// `policy_state_unconfirmed`, with `Retry-After`).
    pub fn policy_state_unconfirmed(model: &str, retry_after_seconds: u32) -> Self {
        Self {
            retry_after_seconds: Some(retry_after_seconds),
            ..Self::new(
                StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS,
                "policy_state_unconfirmed",
                format!(
                    "model `{model}` is restricted and this replica cannot confirm its policy state with the store right now; retry in {retry_after_seconds} s"
                ),
                ErrorSource::Internal,
            )
        }
    }

    /// A request over a rate limit: 429, OpenAI code `rate_limit_exceeded`
    /// (Anthropic `rate_limit_error`), with `Retry-After` and the
    /// `x-ratelimit-*-requests` headers.
    pub fn rate_limited(message: String, retry_after_seconds: u32, limit: u32) -> Self {
        Self {
            retry_after_seconds: Some(retry_after_seconds),
            request_limit: Some(limit),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_exceeded",
                message,
                ErrorSource::Policy,
            )
        }
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request_too_large",
            format!("request body exceeds the limit of {limit} bytes"),
            ErrorSource::Client,
        )
    }

    pub fn upstream(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self::new(status, code, message, ErrorSource::Upstream)
    }

    /// The request's audit entry could not be committed, so it is not
    /// served (503 `audit_unavailable`, with `Retry-After`).
    pub fn audit_unavailable() -> Self {
        Self {
            retry_after_seconds: Some(1),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "audit_unavailable",
                "the gateway cannot record this request in its audit log right now, so it is not served; retry shortly",
                ErrorSource::Internal,
            )
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            message,
            ErrorSource::Internal,
        )
    }

    fn openai_type(&self) -> &'static str {
        match self.status.as_u16() {
            401 => "authentication_error",
            403 | 451 => "permission_error",
            429 => "rate_limit_error",
            s if s >= 500 => "server_error",
            _ => "invalid_request_error",
        }
    }

    fn anthropic_type(&self) -> &'static str {
        match self.status.as_u16() {
            401 => "authentication_error",
            403 | 451 => "permission_error",
            404 => "not_found_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            529 | 503 => "overloaded_error",
            s if s >= 500 => "api_error",
            _ => "invalid_request_error",
        }
    }

    /// The error body in the client's format.
    pub fn body(&self, format: ApiFormat, request_id: &str) -> serde_json::Value {
        let mut body = self.native_body(format, request_id);
        if let (Some(upstream_status), Some(error)) = (
            self.upstream_status,
            body.get_mut("error")
                .and_then(serde_json::Value::as_object_mut),
        ) {
            error.insert("upstream_status".into(), json!(upstream_status));
        }
        body
    }

    fn native_body(&self, format: ApiFormat, request_id: &str) -> serde_json::Value {
        match format {
            ApiFormat::OpenAi => json!({
                "error": {
                    "message": self.message,
                    "type": self.openai_type(),
                    "param": null,
                    "code": self.code,
                },
                "request_id": request_id,
            }),
            ApiFormat::Anthropic => json!({
                "type": "error",
                "error": {
                    "type": self.anthropic_type(),
                    "message": format!("{}: {}", self.code, self.message),
                },
                "request_id": request_id,
            }),
        }
    }

    /// The error as a terminal server-sent event in the client's framing,
    /// for failures after a stream has started.
    pub fn sse_frame(&self, format: ApiFormat, request_id: &str) -> Bytes {
        let body = self.body(format, request_id);
        match format {
            ApiFormat::OpenAi => Bytes::from(format!("data: {body}\n\n")),
            ApiFormat::Anthropic => Bytes::from(format!("event: error\ndata: {body}\n\n")),
        }
    }

    pub fn into_response_for(self, format: ApiFormat, request_id: &str) -> Response {
        let body = self.body(format, request_id).to_string();
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(seconds) = self.retry_after_seconds {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let Some(limit) = self.request_limit {
            headers.insert("x-ratelimit-limit-requests", HeaderValue::from(limit));
            headers.insert("x-ratelimit-remaining-requests", HeaderValue::from(0u32));
            if let Some(seconds) = self.retry_after_seconds {
                headers.insert(
                    "x-ratelimit-reset-requests",
                    HeaderValue::from_str(&format!("{seconds}s"))
                        .unwrap_or(HeaderValue::from_static("1s")),
                );
            }
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unconfirmed_policy_state_is_a_451_with_retry_after() {
        let error = ApiError::policy_state_unconfirmed("fable", 2);
        let body = error.body(ApiFormat::OpenAi, "req_1");
        assert_eq!(body["error"]["code"], "policy_state_unconfirmed");
        assert_eq!(body["error"]["type"], "permission_error");
        let response = error.into_response_for(ApiFormat::Anthropic, "req_1");
        assert_eq!(response.status(), StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
    }

    #[test]
    fn bodies_follow_each_providers_contract() {
        let error =
            ApiError::legal_restriction("mythos", &["BIS-2026-0521".into()], "legal@lab.example");
        let openai = error.body(ApiFormat::OpenAi, "req_1");
        assert_eq!(openai["error"]["type"], "permission_error");
        assert_eq!(openai["error"]["code"], "legal_restriction");
        assert!(openai["error"]["param"].is_null());
        assert!(
            openai["error"]["message"]
                .as_str()
                .unwrap()
                .contains("BIS-2026-0521")
        );
        let anthropic = error.body(ApiFormat::Anthropic, "req_1");
        assert_eq!(anthropic["type"], "error");
        assert_eq!(anthropic["error"]["type"], "permission_error");
        assert!(
            anthropic["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("legal_restriction: ")
        );

        let cases = [
            (
                ApiError::too_large(10),
                "invalid_request_error",
                "request_too_large",
            ),
            (
                ApiError::unauthenticated(),
                "authentication_error",
                "authentication_error",
            ),
            (
                ApiError::model_not_found("x"),
                "invalid_request_error",
                "not_found_error",
            ),
            (
                ApiError::access_denied("x", &[]),
                "permission_error",
                "permission_error",
            ),
            (
                ApiError::upstream(StatusCode::BAD_GATEWAY, "upstream_error", "boom"),
                "server_error",
                "api_error",
            ),
        ];
        for (error, openai_type, anthropic_type) in cases {
            assert_eq!(
                error.body(ApiFormat::OpenAi, "r")["error"]["type"],
                openai_type
            );
            assert_eq!(
                error.body(ApiFormat::Anthropic, "r")["error"]["type"],
                anthropic_type
            );
        }
    }
}
