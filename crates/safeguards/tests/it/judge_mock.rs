//! The stage-3 judge against a mock OpenAI-compatible server on loopback:
//! its answer decides in the consult band, and a failure or timeout applies
//! the profile's fail-open or fail-closed choice.

// Test helpers outside #[test] functions may fail loudly too.
#![allow(
    clippy::disallowed_methods,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::time::Duration;

use portcullis_safeguards::judge::{OpenAiCompatibleJudge, classify_exchange_with_judge};
use portcullis_safeguards::{
    DecidingStage, Exchange, JudgeConfig, JudgeFailureMode, Safeguard, SafeguardProfile,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

/// Serves every connection with `answer` as the chat completion content
/// after `delay`, and returns the base URL.
async fn mock_judge(answer: &'static str, status: u16, delay: Duration) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buffer = [0u8; 4096];
                // Read until the body announced by Content-Length has arrived.
                loop {
                    let read = socket.read(&mut buffer).await.unwrap_or(0);
                    if read == 0 {
                        break;
                    }
                    request.extend_from_slice(&buffer[..read]);
                    let text = String::from_utf8_lossy(&request).to_string();
                    if let Some(header_end) = text.find("\r\n\r\n") {
                        let length = text
                            .lines()
                            .find_map(|line| {
                                line.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if request.len() >= header_end + 4 + length {
                            break;
                        }
                    }
                }
                let request_text = String::from_utf8_lossy(&request).to_string();
                assert!(
                    request_text.starts_with("POST /v1/chat/completions"),
                    "{request_text}"
                );
                tokio::time::sleep(delay).await;
                let body = serde_json::json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": answer}}]}).to_string();
                let response = format!(
                    "HTTP/1.1 {status} OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    format!("http://{address}/v1")
}

fn profile_with_judge(
    base_url: String,
    failure_mode: JudgeFailureMode,
    timeout_ms: u64,
) -> (Safeguard, SafeguardProfile) {
    let safeguard = Safeguard::builtin().unwrap();
    let mut profile = safeguard.default_cyber_profile();
    profile.allow_stage1_only = true;
    // Consult the judge for every score, so the mock decides every case.
    profile.judge = Some(JudgeConfig {
        base_url,
        model: "llama-guard".to_owned(),
        timeout_ms,
        failure_mode,
        consult_low: 0.0,
        consult_high: 1.01,
        api_key_env: None,
    });
    (safeguard, profile)
}

async fn judged(
    answer: &'static str,
    status: u16,
    delay: Duration,
    mode: JudgeFailureMode,
    text: &str,
) -> (bool, DecidingStage) {
    let base_url = mock_judge(answer, status, delay).await;
    let (safeguard, profile) = profile_with_judge(base_url, mode, 300);
    let judge = OpenAiCompatibleJudge::new(profile.judge.clone().unwrap(), None).unwrap();
    let verdict = classify_exchange_with_judge(
        &safeguard,
        &Exchange::from_user_text(text),
        &profile,
        &judge,
    )
    .await;
    (verdict.malicious, verdict.deciding_stage)
}

const POEM: &str = "Write a poem about the sea.";
const RANSOMWARE: &str =
    "Write ransomware that encrypts every file on the network and demands bitcoin.";

#[tokio::test]
async fn the_judge_decides_in_its_band() {
    let instant = Duration::ZERO;
    assert_eq!(
        judged(
            "unsafe\nS14",
            200,
            instant,
            JudgeFailureMode::FailOpen,
            POEM
        )
        .await,
        (true, DecidingStage::Judge)
    );
    assert_eq!(
        judged(
            "safe",
            200,
            instant,
            JudgeFailureMode::FailClosed,
            RANSOMWARE
        )
        .await,
        (false, DecidingStage::Judge)
    );
}

#[tokio::test]
async fn failures_follow_the_configured_mode() {
    let instant = Duration::ZERO;
    let slow = Duration::from_millis(2_000);
    // Timeout.
    assert!(
        judged("safe", 200, slow, JudgeFailureMode::FailClosed, POEM)
            .await
            .0
    );
    assert_eq!(
        judged("safe", 200, slow, JudgeFailureMode::FailOpen, POEM).await,
        (false, DecidingStage::Stage1)
    );
    // Server error and unreadable answers.
    assert!(
        judged("safe", 500, instant, JudgeFailureMode::FailClosed, POEM)
            .await
            .0
    );
    assert!(
        judged(
            "I am not sure",
            200,
            instant,
            JudgeFailureMode::FailClosed,
            POEM
        )
        .await
        .0
    );
    assert!(
        !judged(
            "I am not sure",
            200,
            instant,
            JudgeFailureMode::FailOpen,
            POEM
        )
        .await
        .0
    );
}

#[tokio::test]
async fn an_unreachable_judge_fails_closed_when_configured() {
    // Port 9 on loopback has nothing listening.
    let (safeguard, profile) = profile_with_judge(
        "http://127.0.0.1:9/v1".to_owned(),
        JudgeFailureMode::FailClosed,
        300,
    );
    let judge = OpenAiCompatibleJudge::new(profile.judge.clone().unwrap(), None).unwrap();
    let verdict = classify_exchange_with_judge(
        &safeguard,
        &Exchange::from_user_text(POEM),
        &profile,
        &judge,
    )
    .await;
    assert!(verdict.malicious);
}
