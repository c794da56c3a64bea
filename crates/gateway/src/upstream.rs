//! Provider adapters: how a request reaches an `openai` or `anthropic`
//! upstream over HTTP. The built-in `mock` provider is answered in-process
//! by the mock module and never goes through here.

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use portcullis_domain::{Model, Provider};

use crate::error::{ApiError, ApiFormat};

/// Anthropic API version sent when the client did not choose one.
const ANTHROPIC_VERSION: &str = "2023-06-01";
const DEFAULT_ANTHROPIC_BASE_URL: &str = "https://api.anthropic.com";
/// Largest upstream error body read, to quote it back to the client.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// What an upstream answered.
pub enum UpstreamAnswer {
    /// A complete 2xx answer.
    Complete(Bytes),
    /// A 2xx stream, as raw bytes.
    Stream(BoxStream<'static, Result<Bytes, reqwest::Error>>),
    /// A non-2xx answer below 500: the upstream refused the request. The
    /// body is for the log only (redacted); clients never see it.
    Rejected {
        status: StatusCode,
        body: Bytes,
        retry_after_seconds: Option<u32>,
    },
}

/// The API format a provider speaks.
pub fn provider_format(provider: Provider, client_format: ApiFormat) -> ApiFormat {
    match provider {
        Provider::Openai => ApiFormat::OpenAi,
        Provider::Anthropic => ApiFormat::Anthropic,
        Provider::Mock => client_format,
    }
}

#[derive(Debug, Clone)]
pub struct UpstreamClient {
    http: reqwest::Client,
    response_timeout: Duration,
}

impl UpstreamClient {
    pub fn new(
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .tcp_nodelay(true)
            .connect_timeout(connect_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(1024)
            .http1_only()
            .no_proxy()
            .build()?;
        Ok(Self {
            http,
            response_timeout,
        })
    }

    /// Sends `body` (already in the provider's format) to the model's upstream.
    /// `forwarded` holds client headers that are safe to pass on.
    pub async fn send(
        &self,
        model: &Model,
        body: Bytes,
        stream: bool,
        forwarded: &[(HeaderName, HeaderValue)],
    ) -> Result<UpstreamAnswer, ApiError> {
        let (url, mut headers) = match model.provider {
            Provider::Openai => {
                let base = model.base_url.as_deref().unwrap_or_default();
                (format!("{base}/chat/completions"), HeaderMap::new())
            }
            Provider::Anthropic => {
                let base = model
                    .base_url
                    .as_deref()
                    .unwrap_or(DEFAULT_ANTHROPIC_BASE_URL);
                let base = base.trim_end_matches("/v1");
                let mut headers = HeaderMap::new();
                headers.insert(
                    "anthropic-version",
                    HeaderValue::from_static(ANTHROPIC_VERSION),
                );
                (format!("{base}/v1/messages"), headers)
            }
            Provider::Mock => {
                return Err(ApiError::internal("the mock provider is served in-process"));
            }
        };
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if stream {
            headers.insert(
                http::header::ACCEPT,
                HeaderValue::from_static("text/event-stream"),
            );
        }
        let api_key = model.api_key.clone().or_else(|| {
            model
                .api_key_env
                .as_ref()
                .and_then(|name| std::env::var(name).ok())
        });
        if let Some(key) = api_key
            && let Ok(mut value) = HeaderValue::from_str(&match model.provider {
                Provider::Anthropic => key,
                _ => format!("Bearer {key}"),
            })
        {
            value.set_sensitive(true);
            let name = match model.provider {
                Provider::Anthropic => HeaderName::from_static("x-api-key"),
                _ => http::header::AUTHORIZATION,
            };
            headers.insert(name, value);
        }
        for (name, value) in forwarded {
            headers.insert(name.clone(), value.clone());
        }
        let request = self.http.post(url).headers(headers).body(body);
        let response = match tokio::time::timeout(self.response_timeout, request.send()).await {
            Err(_) => return Err(timeout()),
            Ok(Err(error)) => return Err(send_error(&error)),
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        if status.is_server_error() {
            metrics::counter!("portcullis_upstream_errors_total", "kind" => "status_5xx")
                .increment(1);
            return Err(ApiError::upstream(
                StatusCode::BAD_GATEWAY,
                "upstream_error",
                format!("the upstream answered {}", status.as_u16()),
            ));
        }
        if !status.is_success() {
            let retry_after_seconds = response
                .headers()
                .get(http::header::RETRY_AFTER)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.trim().parse::<u32>().ok());
            let body = read_limited(response, MAX_ERROR_BODY).await;
            return Ok(UpstreamAnswer::Rejected {
                status,
                body,
                retry_after_seconds,
            });
        }
        if stream {
            return Ok(UpstreamAnswer::Stream(response.bytes_stream().boxed()));
        }
        match tokio::time::timeout(self.response_timeout, response.bytes()).await {
            Err(_) => Err(timeout()),
            Ok(Err(error)) => Err(send_error(&error)),
            Ok(Ok(bytes)) => Ok(UpstreamAnswer::Complete(bytes)),
        }
    }
}

async fn read_limited(mut response: reqwest::Response, limit: usize) -> Bytes {
    let mut out = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = limit.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= limit {
            break;
        }
    }
    Bytes::from(out)
}

fn timeout() -> ApiError {
    metrics::counter!("portcullis_upstream_errors_total", "kind" => "timeout").increment(1);
    ApiError::upstream(
        StatusCode::GATEWAY_TIMEOUT,
        "upstream_timeout",
        "the upstream did not answer in time",
    )
}

fn send_error(error: &reqwest::Error) -> ApiError {
    if error.is_timeout() {
        return timeout();
    }
    let kind = if error.is_connect() {
        "connect"
    } else {
        "transport"
    };
    metrics::counter!("portcullis_upstream_errors_total", "kind" => kind).increment(1);
    let message = if error.is_connect() {
        "the upstream refused or dropped the connection"
    } else {
        "the upstream connection failed"
    };
    ApiError::upstream(StatusCode::BAD_GATEWAY, "upstream_unavailable", message)
}

/// Replaces anything in an upstream's error text that looks like a
/// credential (`Bearer …`, `sk-…`, `pcl_…`, or a long opaque token) with
/// `[redacted]`, so the log never holds a key an upstream echoed back.
pub fn redact_secrets(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut after_bearer = false;
    let mut token = String::new();
    let is_token_char =
        |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+' | '/' | '=');
    let flush = |token: &mut String, out: &mut String, after_bearer: &mut bool| {
        if token.is_empty() {
            return;
        }
        let lowered = token.to_ascii_lowercase();
        let opaque = token.len() >= 24
            && token.chars().any(|c| c.is_ascii_digit())
            && token.chars().any(|c| c.is_ascii_alphabetic());
        if *after_bearer || lowered.starts_with("sk-") || lowered.starts_with("pcl_") || opaque {
            out.push_str("[redacted]");
            *after_bearer = false;
        } else {
            *after_bearer = lowered == "bearer";
            out.push_str(token);
        }
        token.clear();
    };
    for c in text.chars() {
        if is_token_char(c) {
            token.push(c);
        } else {
            flush(&mut token, &mut out, &mut after_bearer);
            out.push(c);
        }
    }
    flush(&mut token, &mut out, &mut after_bearer);
    out
}

#[cfg(test)]
mod redaction_tests {
    use super::redact_secrets;

    #[test]
    fn credentials_in_upstream_errors_are_redacted() {
        let cases = [
            (
                "Incorrect API key provided: Bearer sk-proj-abc123",
                "Incorrect API key provided: Bearer [redacted]",
            ),
            ("bad key sk-ant-api03-XYZ", "bad key [redacted]"),
            ("{\"key\":\"pcl_deadbeef\"}", "{\"key\":\"[redacted]\"}"),
            (
                "token 9f8e7d6c5b4a39281716aabbccddeeff expired",
                "token [redacted] expired",
            ),
            ("model not found", "model not found"),
        ];
        for (input, expected) in cases {
            assert_eq!(redact_secrets(input), expected, "{input}");
        }
    }
}
