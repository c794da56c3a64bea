//! The unit the input classifier judges: a whole exchange (system prompt and
//! every turn), not only the last message, so that a payload split across
//! turns or hidden in the system prompt is still seen as one request.

use serde::{Deserialize, Serialize};

/// One message of an exchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExchangeMessage {
    pub role: String,
    pub content: String,
}

/// A conversation as sent to the model.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exchange {
    pub messages: Vec<ExchangeMessage>,
}

impl Exchange {
    /// An exchange of one user message.
    pub fn from_user_text(text: &str) -> Self {
        Self {
            messages: vec![ExchangeMessage {
                role: "user".to_owned(),
                content: text.to_owned(),
            }],
        }
    }

    pub fn with_system(mut self, system: &str) -> Self {
        self.messages.insert(
            0,
            ExchangeMessage {
                role: "system".to_owned(),
                content: system.to_owned(),
            },
        );
        self
    }

    /// The text the classifier reads: every message's content in order,
    /// separated by blank lines. Roles are left out on purpose, so that the
    /// model cannot learn "has a system prompt" as a shortcut.
    pub fn classification_text(&self) -> String {
        let mut text = String::new();
        for message in self
            .messages
            .iter()
            .filter(|message| !message.content.trim().is_empty())
        {
            if !text.is_empty() {
                text.push_str("\n\n");
            }
            text.push_str(&message.content);
        }
        text
    }

    /// A readable transcript with roles, for the stage-3 judge.
    pub fn transcript(&self) -> String {
        let mut text = String::new();
        for message in &self.messages {
            text.push_str(&message.role);
            text.push_str(": ");
            text.push_str(&message.content);
            text.push('\n');
        }
        text
    }
}
