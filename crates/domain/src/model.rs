use serde::{Deserialize, Serialize};

/// Where a model's requests go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    /// Any OpenAI-compatible Chat Completions endpoint.
    Openai,
    /// The Anthropic Messages API.
    Anthropic,
    /// The built-in deterministic mock upstream.
    Mock,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Openai => "openai",
            Provider::Anthropic => "anthropic",
            Provider::Mock => "mock",
        }
    }
}

/// A model's place in its release lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseState {
    Internal,
    UnderReview,
    Released,
    Suspended,
    Retired,
}

impl ReleaseState {
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseState::Internal => "internal",
            ReleaseState::UnderReview => "under_review",
            ReleaseState::Released => "released",
            ReleaseState::Suspended => "suspended",
            ReleaseState::Retired => "retired",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "internal" => ReleaseState::Internal,
            "under_review" => ReleaseState::UnderReview,
            "released" => ReleaseState::Released,
            "suspended" => ReleaseState::Suspended,
            "retired" => ReleaseState::Retired,
            _ => return None,
        })
    }
}

/// The declaration of a model, as written in the TOML config and accepted by
/// the admin API. It becomes a [`Model`] once validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelDraft {
    /// The alias clients send in the request body. It is the access boundary.
    pub name: String,
    pub provider: Provider,
    #[serde(default)]
    pub base_url: Option<String>,
    /// The model name sent upstream. Defaults to `name`.
    #[serde(default)]
    pub upstream_model: Option<String>,
    pub state: ReleaseState,
    #[serde(default)]
    pub family: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub safeguard_profile: Option<String>,
    /// A literal upstream API key. Prefer `api_key_env`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    /// The name of an environment variable holding the upstream API key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// Pass the client's `x-mock-*` headers on to this upstream: for a
    /// deployment pointed at `portcullis mock`. Off by default; the
    /// built-in `mock` provider always reads them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forward_mock_headers: bool,
}

/// Why a model declaration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error(
        "model name `{0}` must be 1-128 characters of letters, digits, `.`, `-`, `_`, `:` or `/`"
    )]
    BadModelName(String),
    #[error("provider `{0}` needs a `base_url`")]
    MissingBaseUrl(&'static str),
    #[error("`base_url` `{0}` must start with http:// or https://")]
    BadBaseUrl(String),
    #[error("tag `{0}` must be 1-64 characters of lowercase letters, digits, `-` or `_`")]
    BadTag(String),
    #[error("family `{0}` must be 1-64 characters of lowercase letters, digits, `-` or `_`")]
    BadFamily(String),
}

/// A validated model as the request path sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Model {
    pub name: String,
    pub provider: Provider,
    pub base_url: Option<String>,
    pub upstream_model: String,
    pub state: ReleaseState,
    pub family: String,
    pub tags: Vec<String>,
    pub safeguard_profile: Option<String>,
    #[serde(skip)]
    pub api_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub forward_mock_headers: bool,
}

impl Model {
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }

    /// Whether this model fails closed when a fact its policy depends on is
    /// unknown (the `fail_closed` tag).
    pub fn is_restricted(&self) -> bool {
        self.has_tag("fail_closed")
    }
}

fn is_identifier(text: &str, max: usize) -> bool {
    !text.is_empty()
        && text.len() <= max
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

impl ModelDraft {
    pub fn validate(self) -> Result<Model, ValidationError> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 128
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '/'));
        if !name_ok {
            return Err(ValidationError::BadModelName(self.name));
        }
        match (&self.base_url, self.provider) {
            (None, Provider::Openai) => return Err(ValidationError::MissingBaseUrl("openai")),
            (Some(url), _) if !(url.starts_with("http://") || url.starts_with("https://")) => {
                return Err(ValidationError::BadBaseUrl(url.clone()));
            }
            _ => {}
        }
        if let Some(tag) = self.tags.iter().find(|t| !is_identifier(t, 64)) {
            return Err(ValidationError::BadTag(tag.clone()));
        }
        let family = self
            .family
            .unwrap_or_else(|| self.name.to_ascii_lowercase());
        if !is_identifier(&family, 64) {
            return Err(ValidationError::BadFamily(family));
        }
        let mut tags = self.tags;
        tags.sort();
        tags.dedup();
        Ok(Model {
            upstream_model: self.upstream_model.unwrap_or_else(|| self.name.clone()),
            name: self.name,
            provider: self.provider,
            base_url: self.base_url.map(|u| u.trim_end_matches('/').to_owned()),
            state: self.state,
            family,
            tags,
            safeguard_profile: self.safeguard_profile,
            api_key: self.api_key,
            api_key_env: self.api_key_env,
            forward_mock_headers: self.forward_mock_headers,
        })
    }
}

impl From<&Model> for ModelDraft {
    fn from(model: &Model) -> Self {
        ModelDraft {
            name: model.name.clone(),
            provider: model.provider,
            base_url: model.base_url.clone(),
            upstream_model: Some(model.upstream_model.clone()),
            state: model.state,
            family: Some(model.family.clone()),
            tags: model.tags.clone(),
            safeguard_profile: model.safeguard_profile.clone(),
            api_key: model.api_key.clone(),
            api_key_env: model.api_key_env.clone(),
            forward_mock_headers: model.forward_mock_headers,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft(name: &str, provider: Provider, base_url: Option<&str>) -> ModelDraft {
        ModelDraft {
            name: name.into(),
            provider,
            base_url: base_url.map(Into::into),
            upstream_model: None,
            state: ReleaseState::Released,
            family: None,
            tags: vec![],
            safeguard_profile: None,
            api_key: None,
            api_key_env: None,
            forward_mock_headers: false,
        }
    }

    #[test]
    fn validation_table() {
        let cases: &[(ModelDraft, Result<(), ValidationError>)] = &[
            (draft("haiku", Provider::Mock, None), Ok(())),
            (
                draft("bench", Provider::Openai, Some("http://127.0.0.1:9000/v1")),
                Ok(()),
            ),
            (
                draft("bench", Provider::Openai, None),
                Err(ValidationError::MissingBaseUrl("openai")),
            ),
            (
                draft("bench", Provider::Openai, Some("ftp://x")),
                Err(ValidationError::BadBaseUrl("ftp://x".into())),
            ),
            (
                draft("bad name", Provider::Mock, None),
                Err(ValidationError::BadModelName("bad name".into())),
            ),
            (
                draft("", Provider::Mock, None),
                Err(ValidationError::BadModelName(String::new())),
            ),
        ];
        for (input, expected) in cases {
            let got = input.clone().validate().map(|_| ());
            assert_eq!(&got, expected, "{input:?}");
        }
    }

    #[test]
    fn defaults_fill_upstream_model_and_family() {
        let model = draft("Haiku-3", Provider::Mock, None).validate().unwrap();
        assert_eq!(model.upstream_model, "Haiku-3");
        assert_eq!(model.family, "haiku-3");
    }

    #[test]
    fn contract_shape_parses() {
        let parsed: ModelDraft = serde_json::from_value(serde_json::json!({
            "name": "bench", "provider": "openai", "base_url": "http://127.0.0.1:9000/v1",
            "upstream_model": "mock", "state": "released", "family": "bench", "tags": []
        }))
        .unwrap();
        assert_eq!(parsed.provider, Provider::Openai);
        assert_eq!(parsed.upstream_model.as_deref(), Some("mock"));
    }
}
