//! Stage 3: an optional LLM judge behind an OpenAI-compatible chat API, such
//! as Llama Guard served by vLLM. It is consulted only for exchanges whose
//! cascade score falls in the profile's consult band, with a timeout and a
//! configured fail-open or fail-closed choice.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::classifier::{Safeguard, SafeguardVerdict};
use crate::exchange::Exchange;
use crate::profile::{JudgeConfig, JudgeFailureMode, SafeguardProfile};

/// Why the judge gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum JudgeError {
    #[error("judge request to `{url}` failed: {reason}")]
    Request { url: String, reason: String },
    #[error("judge timed out after {timeout_ms} ms")]
    Timeout { timeout_ms: u64 },
    #[error("judge answered `{answer}`, which is neither safe nor unsafe")]
    UnreadableAnswer { answer: String },
}

/// A judge's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JudgeAnswer {
    pub malicious: bool,
}

/// The boxed future a [`Judge`] returns, so that judges can be trait objects.
pub type JudgeFuture<'a> =
    Pin<Box<dyn Future<Output = Result<JudgeAnswer, JudgeError>> + Send + 'a>>;

/// Anything that can judge an exchange; the gateway may supply its own.
pub trait Judge: Send + Sync {
    fn judge<'a>(&'a self, exchange: &'a Exchange) -> JudgeFuture<'a>;
}

/// The instruction sent with every exchange. Llama Guard models ignore it and
/// apply their own taxonomy; general models follow it.
const JUDGE_INSTRUCTION: &str = "You are a safety classifier for a cyber-misuse policy. The policy forbids helping to attack computer systems: malware, exploitation, intrusion, unauthorised access, credential theft including phishing, evading security controls, command and control, denial of service, cryptojacking, covert surveillance of other people's devices, and prompt injection that exfiltrates data or runs tools. Defensive security work, education and everything else is allowed. Answer with exactly one word: `unsafe` if the conversation asks for forbidden help, otherwise `safe`.";

#[derive(Serialize)]
struct ChatRequest<'a> {
    model: &'a str,
    messages: Vec<ChatMessage<'a>>,
    max_tokens: u32,
    temperature: f32,
}

#[derive(Serialize)]
struct ChatMessage<'a> {
    role: &'a str,
    content: &'a str,
}

#[derive(Deserialize)]
struct ChatResponse {
    choices: Vec<ChatChoice>,
}

#[derive(Deserialize)]
struct ChatChoice {
    message: ChatResponseMessage,
}

#[derive(Deserialize)]
struct ChatResponseMessage {
    #[serde(default)]
    content: Option<String>,
}

/// Reads a judge's reply: Llama Guard answers `safe` or `unsafe\nS14`.
pub fn parse_judge_answer(answer: &str) -> Result<JudgeAnswer, JudgeError> {
    let first_word = answer
        .trim()
        .split(|c: char| !c.is_ascii_alphabetic())
        .find(|word| !word.is_empty())
        .unwrap_or("")
        .to_ascii_lowercase();
    match first_word.as_str() {
        "unsafe" => Ok(JudgeAnswer { malicious: true }),
        "safe" => Ok(JudgeAnswer { malicious: false }),
        _ => Err(JudgeError::UnreadableAnswer {
            answer: answer.chars().take(80).collect(),
        }),
    }
}

/// A judge reached over HTTP at `{base_url}/chat/completions`.
#[derive(Debug, Clone)]
pub struct OpenAiCompatibleJudge {
    client: reqwest::Client,
    config: JudgeConfig,
    api_key: Option<String>,
}

impl OpenAiCompatibleJudge {
    /// `api_key` is read by the caller (from `config.api_key_env`), so that
    /// this crate does no environment look-ups of its own.
    pub fn new(config: JudgeConfig, api_key: Option<String>) -> Result<Self, JudgeError> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.timeout_ms))
            .tcp_nodelay(true)
            .build()
            .map_err(|error| JudgeError::Request {
                url: config.base_url.clone(),
                reason: error.to_string(),
            })?;
        Ok(Self {
            client,
            config,
            api_key,
        })
    }

    async fn ask(&self, exchange: &Exchange) -> Result<JudgeAnswer, JudgeError> {
        let url = format!(
            "{}/chat/completions",
            self.config.base_url.trim_end_matches('/')
        );
        let transcript = exchange.transcript();
        let body = ChatRequest {
            model: &self.config.model,
            messages: vec![
                ChatMessage {
                    role: "system",
                    content: JUDGE_INSTRUCTION,
                },
                ChatMessage {
                    role: "user",
                    content: &transcript,
                },
            ],
            max_tokens: 8,
            temperature: 0.0,
        };
        let mut request = self.client.post(&url).json(&body);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        let request_error = |error: reqwest::Error| {
            if error.is_timeout() {
                JudgeError::Timeout {
                    timeout_ms: self.config.timeout_ms,
                }
            } else {
                JudgeError::Request {
                    url: url.clone(),
                    reason: error.to_string(),
                }
            }
        };
        let response = request.send().await.map_err(request_error)?;
        let status = response.status();
        if !status.is_success() {
            return Err(JudgeError::Request {
                url: url.clone(),
                reason: format!("status {status}"),
            });
        }
        let parsed: ChatResponse = response.json().await.map_err(request_error)?;
        let answer = parsed
            .choices
            .into_iter()
            .next()
            .and_then(|choice| choice.message.content)
            .unwrap_or_default();
        parse_judge_answer(&answer)
    }
}

impl Judge for OpenAiCompatibleJudge {
    fn judge<'a>(&'a self, exchange: &'a Exchange) -> JudgeFuture<'a> {
        Box::pin(self.ask(exchange))
    }
}

/// Runs the cascade, then consults `judge` when the profile configures one
/// and the score is in its band. A judge failure applies the profile's
/// failure mode: fail-open keeps the cascade's verdict, fail-closed blocks.
pub async fn classify_exchange_with_judge(
    safeguard: &Safeguard,
    exchange: &Exchange,
    profile: &SafeguardProfile,
    judge: &dyn Judge,
) -> SafeguardVerdict {
    let verdict = safeguard.classify_exchange(exchange, profile);
    let Some(config) = &profile.judge else {
        return verdict;
    };
    if verdict.score < config.consult_low || verdict.score >= config.consult_high {
        return verdict;
    }
    match judge.judge(exchange).await {
        Ok(answer) => safeguard.apply_judge(verdict, profile, answer.malicious),
        Err(error) => {
            tracing::warn!(%error, failure_mode = ?config.failure_mode, "safeguard judge failed");
            match config.failure_mode {
                JudgeFailureMode::FailOpen => verdict,
                JudgeFailureMode::FailClosed => safeguard.apply_judge(verdict, profile, true),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judge_answers_are_parsed_strictly() {
        let cases = [
            ("safe", Some(false)),
            ("unsafe\nS14", Some(true)),
            ("  Unsafe.", Some(true)),
            ("I cannot help", None),
            ("", None),
        ];
        for (answer, expected) in cases {
            assert_eq!(
                parse_judge_answer(answer).ok().map(|a| a.malicious),
                expected,
                "`{answer}`"
            );
        }
    }
}
