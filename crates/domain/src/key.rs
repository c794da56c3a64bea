use base64::Engine;
use jiff::Timestamp;
use sha2::{Digest, Sha256};

/// Every key Portcullis issues starts with this, so that secret scanners and
/// humans recognise one. The prefix is not secret.
pub const KEY_PREFIX: &str = "pcl_";

/// An API key as stored: only the SHA-256 of the secret is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub id: String,
    pub principal_id: String,
    pub name: String,
    /// The first characters of the secret (prefix included), safe to show in
    /// listings so an operator can tell keys apart.
    pub display_prefix: String,
    /// Lowercase hex SHA-256 of the full secret.
    pub secret_sha256: String,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

impl ApiKey {
    /// Whether the key may authenticate a request at `now`.
    pub fn is_usable_at(&self, now: Timestamp) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|expiry| now < expiry)
    }
}

/// A freshly generated key. The secret exists only in this value: it is shown
/// once to the caller and never stored.
#[derive(Debug)]
pub struct GeneratedKey {
    pub secret: String,
    pub secret_sha256: String,
    pub display_prefix: String,
}

impl GeneratedKey {
    /// Generates 256 bits from the operating system's CSPRNG.
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)?;
        let body = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let secret = format!("{KEY_PREFIX}{body}");
        let secret_sha256 = hash_api_key(&secret);
        let display_prefix = secret.chars().take(KEY_PREFIX.len() + 6).collect();
        Ok(Self {
            secret,
            secret_sha256,
            display_prefix,
        })
    }
}

/// The lookup hash of a presented secret.
pub fn hash_api_key(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_long_prefixed_and_hash_consistently() {
        let a = GeneratedKey::generate().unwrap();
        let b = GeneratedKey::generate().unwrap();
        assert!(a.secret.starts_with(KEY_PREFIX));
        // 32 bytes of base64url without padding is 43 characters.
        assert_eq!(a.secret.len(), KEY_PREFIX.len() + 43);
        assert_ne!(a.secret, b.secret);
        assert_eq!(hash_api_key(&a.secret), a.secret_sha256);
        assert!(!a.display_prefix.contains(&a.secret[KEY_PREFIX.len() + 6..]));
    }

    #[test]
    fn usability_respects_expiry_and_revocation() {
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let mut key = ApiKey {
            id: "k".into(),
            principal_id: "p".into(),
            name: "n".into(),
            display_prefix: "pcl_abc".into(),
            secret_sha256: "00".into(),
            created_at: now,
            expires_at: None,
            revoked_at: None,
        };
        assert!(key.is_usable_at(now));
        key.expires_at = Some(now);
        assert!(!key.is_usable_at(now));
        key.expires_at = None;
        key.revoked_at = Some(now);
        assert!(!key.is_usable_at(now));
    }
}
