//! Signed notes (C2SP signed-note, as implemented by Go's
//! `golang.org/x/mod/sumdb/note`) with Ed25519 keys, and the C2SP
//! tlog-checkpoint body they carry.
//!
//! Key strings use the Go package's encodings so that its tools can check our
//! checkpoints: a verifier key is `name+hex(key_id)+base64(0x01 ‖ public_key)`
//! and a private key is `PRIVATE+KEY+name+hex(key_id)+base64(0x01 ‖ seed)`,
//! where `key_id` is the first four bytes of SHA-256(name ‖ 0x0A ‖ 0x01 ‖
//! public_key).

use std::fmt;
use std::io::Write;
use std::path::Path;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::merkle::Hash;

/// The algorithm byte for Ed25519 in signed-note keys.
const ALGORITHM_ED25519: u8 = 0x01;

/// The prefix of a signature line: an em dash and a space.
const SIGNATURE_LINE_PREFIX: &str = "\u{2014} ";

/// Why a key, a note or a checkpoint was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("key name `{0}` is invalid: it must be non-empty and contain no whitespace or `+`")]
    InvalidKeyName(String),
    #[error("malformed verifier key `{0}`")]
    MalformedVerifierKey(String),
    #[error("malformed private key")]
    MalformedPrivateKey,
    #[error("note text must be non-empty and end with a newline")]
    TextWithoutFinalNewline,
    #[error("malformed note: {0}")]
    MalformedNote(String),
    #[error("note has no signature by key `{0}`")]
    NoSignatureByKey(String),
    #[error("signature by key `{0}` does not verify")]
    BadSignature(String),
    #[error("malformed checkpoint: {0}")]
    MalformedCheckpoint(String),
    #[error("could not generate a signing key: {0}")]
    KeyGeneration(String),
    #[error("signing key file `{path}`: {detail}")]
    KeyFile { path: String, detail: String },
}

fn check_key_name(name: &str) -> Result<(), NoteError> {
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c == '+') {
        return Err(NoteError::InvalidKeyName(name.to_owned()));
    }
    Ok(())
}

fn key_id(name: &str, public_key: &VerifyingKey) -> [u8; 4] {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update([b'\n', ALGORITHM_ED25519]);
    hasher.update(public_key.as_bytes());
    let digest = hasher.finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

/// The public half of a signing key: checks notes and prints as a verifier
/// key string.
#[derive(Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    key_id: [u8; 4],
    public_key: VerifyingKey,
}

impl fmt::Debug for NoteVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NoteVerifier({self})")
    }
}

impl NoteVerifier {
    /// The key name, which appears in every signature line.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The four-byte key id that prefixes every signature.
    pub fn key_id(&self) -> [u8; 4] {
        self.key_id
    }

    /// Checks a signed note and returns its text (everything before the
    /// blank line, including the text's final newline). Signatures by other
    /// keys are ignored, as the signed-note format requires; at least one
    /// signature must be by this key and every signature by this key must
    /// verify.
    pub fn verify_note<'a>(&self, note: &'a str) -> Result<&'a str, NoteError> {
        let (text, signatures) = split_note(note)?;
        let mut verified = false;
        for line in signatures {
            let (name, signature) = parse_signature_line(line)?;
            if name != self.name || signature.len() < 4 || signature[..4] != self.key_id {
                continue;
            }
            let signature = Signature::from_slice(&signature[4..])
                .map_err(|_| NoteError::BadSignature(self.name.clone()))?;
            self.public_key
                .verify(text.as_bytes(), &signature)
                .map_err(|_| NoteError::BadSignature(self.name.clone()))?;
            verified = true;
        }
        if verified {
            Ok(text)
        } else {
            Err(NoteError::NoSignatureByKey(self.name.clone()))
        }
    }
}

impl fmt::Display for NoteVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut key = Vec::with_capacity(33);
        key.push(ALGORITHM_ED25519);
        key.extend_from_slice(self.public_key.as_bytes());
        write!(
            f,
            "{}+{}+{}",
            self.name,
            hex::encode(self.key_id),
            BASE64.encode(key)
        )
    }
}

impl FromStr for NoteVerifier {
    type Err = NoteError;

    /// Parses `name+hex(key_id)+base64(0x01 ‖ public_key)`, checking that
    /// the key id matches the name and key.
    fn from_str(text: &str) -> Result<Self, NoteError> {
        let malformed = || NoteError::MalformedVerifierKey(text.to_owned());
        // The base64 key may itself contain `+`, so it is everything after
        // the second separator.
        let mut parts = text.splitn(3, '+');
        let (Some(name), Some(id_hex), Some(key_b64)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed());
        };
        check_key_name(name).map_err(|_| malformed())?;
        let key = BASE64.decode(key_b64).map_err(|_| malformed())?;
        let (&algorithm, public_key) = key.split_first().ok_or_else(malformed)?;
        if algorithm != ALGORITHM_ED25519 {
            return Err(malformed());
        }
        let public_key: [u8; 32] = public_key.try_into().map_err(|_| malformed())?;
        let public_key = VerifyingKey::from_bytes(&public_key).map_err(|_| malformed())?;
        let expected_id = key_id(name, &public_key);
        if id_hex.len() != 8 || hex::decode(id_hex).ok().as_deref() != Some(&expected_id[..]) {
            return Err(malformed());
        }
        Ok(Self {
            name: name.to_owned(),
            key_id: expected_id,
            public_key,
        })
    }
}

/// A named Ed25519 signing key that signs notes.
#[derive(Clone)]
pub struct NoteSigner {
    name: String,
    key_id: [u8; 4],
    signing_key: SigningKey,
}

impl fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the private key.
        write!(f, "NoteSigner({})", self.verifier())
    }
}

impl NoteSigner {
    /// Builds a signer from a name and a 32-byte Ed25519 seed.
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<Self, NoteError> {
        check_key_name(name)?;
        let signing_key = SigningKey::from_bytes(&seed);
        Ok(Self {
            name: name.to_owned(),
            key_id: key_id(name, &signing_key.verifying_key()),
            signing_key,
        })
    }

    /// Generates a new key from the operating system's random source.
    pub fn generate(name: &str) -> Result<Self, NoteError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|error| NoteError::KeyGeneration(error.to_string()))?;
        Self::from_seed(name, seed)
    }

    /// Parses `PRIVATE+KEY+name+hex(key_id)+base64(0x01 ‖ seed)`.
    pub fn from_private_key_string(text: &str) -> Result<Self, NoteError> {
        let malformed = || NoteError::MalformedPrivateKey;
        let mut parts = text.trim_end().splitn(5, '+');
        let (Some("PRIVATE"), Some("KEY"), Some(name), Some(id_hex), Some(key_b64)) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(malformed());
        };
        let key = BASE64.decode(key_b64).map_err(|_| malformed())?;
        let (&algorithm, seed) = key.split_first().ok_or_else(malformed)?;
        if algorithm != ALGORITHM_ED25519 {
            return Err(malformed());
        }
        let seed: [u8; 32] = seed.try_into().map_err(|_| malformed())?;
        let signer = Self::from_seed(name, seed).map_err(|_| malformed())?;
        if hex::decode(id_hex).ok().as_deref() != Some(&signer.key_id[..]) {
            return Err(malformed());
        }
        Ok(signer)
    }

    /// The private key string, in the Go `note` package's format.
    pub fn to_private_key_string(&self) -> String {
        let mut key = Vec::with_capacity(33);
        key.push(ALGORITHM_ED25519);
        key.extend_from_slice(self.signing_key.as_bytes());
        format!(
            "PRIVATE+KEY+{}+{}+{}",
            self.name,
            hex::encode(self.key_id),
            BASE64.encode(key)
        )
    }

    /// Loads the signing key stored at `path`, or generates one named `name`
    /// and writes it there readable by the owner only (mode 0600). An
    /// existing file must hold a key with the same name.
    pub fn load_or_create(path: &Path, name: &str) -> Result<Self, NoteError> {
        let key_file_error = |detail: String| NoteError::KeyFile {
            path: path.display().to_string(),
            detail,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let signer = Self::from_private_key_string(&text)
                    .map_err(|error| key_file_error(error.to_string()))?;
                if signer.name != name {
                    return Err(key_file_error(format!(
                        "holds a key named `{}`, expected `{name}`",
                        signer.name
                    )));
                }
                Ok(signer)
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let signer = Self::generate(name)?;
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    options.mode(0o600);
                }
                let mut file = options
                    .open(path)
                    .map_err(|error| key_file_error(error.to_string()))?;
                file.write_all(format!("{}\n", signer.to_private_key_string()).as_bytes())
                    .and_then(|()| file.sync_all())
                    .map_err(|error| key_file_error(error.to_string()))?;
                Ok(signer)
            }
            Err(error) => Err(key_file_error(error.to_string())),
        }
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The matching verifier.
    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier {
            name: self.name.clone(),
            key_id: self.key_id,
            public_key: self.signing_key.verifying_key(),
        }
    }

    /// Signs `text`, which must end with a newline, and returns the signed
    /// note: the text, a blank line, and one signature line.
    pub fn sign_note(&self, text: &str) -> Result<String, NoteError> {
        if text.is_empty() || !text.ends_with('\n') {
            return Err(NoteError::TextWithoutFinalNewline);
        }
        let signature = self.signing_key.sign(text.as_bytes());
        let mut signature_bytes = Vec::with_capacity(68);
        signature_bytes.extend_from_slice(&self.key_id);
        signature_bytes.extend_from_slice(&signature.to_bytes());
        Ok(format!(
            "{text}\n{SIGNATURE_LINE_PREFIX}{} {}\n",
            self.name,
            BASE64.encode(signature_bytes)
        ))
    }
}

/// Splits a note into its text and its signature lines (without newlines).
fn split_note(note: &str) -> Result<(&str, Vec<&str>), NoteError> {
    let Some(blank) = note.rfind("\n\n") else {
        return Err(NoteError::MalformedNote(
            "no blank line before the signatures".to_owned(),
        ));
    };
    let text = &note[..blank + 1];
    let signatures = &note[blank + 2..];
    if !signatures.ends_with('\n') {
        return Err(NoteError::MalformedNote(
            "signature block does not end with a newline".to_owned(),
        ));
    }
    let lines: Vec<&str> = signatures[..signatures.len() - 1].split('\n').collect();
    if lines.is_empty() || lines.iter().any(|line| line.is_empty()) {
        return Err(NoteError::MalformedNote("empty signature line".to_owned()));
    }
    Ok((text, lines))
}

fn parse_signature_line(line: &str) -> Result<(&str, Vec<u8>), NoteError> {
    let malformed = || NoteError::MalformedNote(format!("bad signature line `{line}`"));
    let rest = line
        .strip_prefix(SIGNATURE_LINE_PREFIX)
        .ok_or_else(malformed)?;
    let (name, signature_b64) = rest.rsplit_once(' ').ok_or_else(malformed)?;
    check_key_name(name).map_err(|_| malformed())?;
    let signature = BASE64.decode(signature_b64).map_err(|_| malformed())?;
    if signature.len() < 5 {
        return Err(malformed());
    }
    Ok((name, signature))
}

/// The body of a C2SP tlog-checkpoint: which log, how many entries, and the
/// Merkle root over them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub tree_size: u64,
    pub root_hash: Hash,
}

impl Checkpoint {
    /// The note text: `origin\nsize\nbase64(root)\n`.
    pub fn to_note_text(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.tree_size,
            BASE64.encode(self.root_hash)
        )
    }

    /// Parses a note text. Extension lines after the root are allowed by the
    /// format and ignored here.
    pub fn from_note_text(text: &str) -> Result<Self, NoteError> {
        let malformed = |detail: &str| NoteError::MalformedCheckpoint(detail.to_owned());
        let mut lines = text.split('\n');
        let origin = lines
            .next()
            .filter(|line| !line.is_empty())
            .ok_or_else(|| malformed("empty origin"))?;
        let size_line = lines.next().ok_or_else(|| malformed("missing tree size"))?;
        let canonical_decimal = !size_line.is_empty()
            && size_line.bytes().all(|b| b.is_ascii_digit())
            && (size_line == "0" || !size_line.starts_with('0'));
        if !canonical_decimal {
            return Err(malformed("tree size is not a canonical decimal"));
        }
        let tree_size: u64 = size_line
            .parse()
            .map_err(|_| malformed("tree size out of range"))?;
        let root_line = lines.next().ok_or_else(|| malformed("missing root hash"))?;
        let root_hash: Hash = BASE64
            .decode(root_line)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| malformed("root hash is not 32 bytes of base64"))?;
        Ok(Self {
            origin: origin.to_owned(),
            tree_size,
            root_hash,
        })
    }

    /// Signs this checkpoint into a signed note.
    pub fn sign(&self, signer: &NoteSigner) -> Result<String, NoteError> {
        signer.sign_note(&self.to_note_text())
    }

    /// Checks a signed checkpoint note and returns the checkpoint it carries.
    pub fn open(note: &str, verifier: &NoteVerifier) -> Result<Self, NoteError> {
        Self::from_note_text(verifier.verify_note(note)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The example key and note from the documentation of Go's
    // golang.org/x/mod/sumdb/note package.
    const GO_PRIVATE_KEY: &str =
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const GO_VERIFIER_KEY: &str =
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const GO_TEXT: &str = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
    const GO_SIGNATURE_LINE: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

    #[test]
    fn go_reference_vectors_round_trip_byte_for_byte() {
        let signer = NoteSigner::from_private_key_string(GO_PRIVATE_KEY).unwrap();
        assert_eq!(signer.to_private_key_string(), GO_PRIVATE_KEY);
        assert_eq!(signer.verifier().to_string(), GO_VERIFIER_KEY);
        let note = signer.sign_note(GO_TEXT).unwrap();
        assert_eq!(note, format!("{GO_TEXT}\n{GO_SIGNATURE_LINE}"));
        let verifier: NoteVerifier = GO_VERIFIER_KEY.parse().unwrap();
        assert_eq!(verifier.verify_note(&note).unwrap(), GO_TEXT);
    }

    #[test]
    fn mangled_verifier_keys_are_rejected() {
        for bad in [
            "",
            "PeterNeumann",
            "PeterNeumann+c74f20a3",
            "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TV",
            "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW+x",
            "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            // Wrong length and unknown algorithm, both with adjusted key ids,
            // from the Go package's tests.
            "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
            "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        ] {
            assert!(bad.parse::<NoteVerifier>().is_err(), "accepted `{bad}`");
        }
    }

    #[test]
    fn forged_and_foreign_signatures_are_rejected() {
        let signer = NoteSigner::from_seed("portcullis/test", [7u8; 32]).unwrap();
        let verifier = signer.verifier();
        let note = signer.sign_note("portcullis/test\n3\nAAAA\n").unwrap();
        assert!(verifier.verify_note(&note).is_ok());

        // The same text signed by another key under the same name.
        let impostor = NoteSigner::from_seed("portcullis/test", [8u8; 32]).unwrap();
        let forged = impostor.sign_note("portcullis/test\n3\nAAAA\n").unwrap();
        assert_eq!(
            verifier.verify_note(&forged),
            Err(NoteError::NoSignatureByKey("portcullis/test".to_owned()))
        );

        // The genuine signature over altered text.
        let altered = note.replacen("\n3\n", "\n4\n", 1);
        assert_eq!(
            verifier.verify_note(&altered),
            Err(NoteError::BadSignature("portcullis/test".to_owned()))
        );

        // A flipped bit in the signature itself.
        let (text, line) = note.split_once("\n\n").unwrap();
        let mut sig = BASE64
            .decode(line.rsplit_once(' ').unwrap().1.trim_end())
            .unwrap();
        sig[10] ^= 1;
        let flipped = format!(
            "{text}\n\n\u{2014} portcullis/test {}\n",
            BASE64.encode(sig)
        );
        assert!(verifier.verify_note(&flipped).is_err());

        // Text without a signature block.
        assert!(verifier.verify_note("portcullis/test\n3\nAAAA\n").is_err());
    }

    #[test]
    fn checkpoint_body_round_trips_and_rejects_bad_sizes() {
        let checkpoint = Checkpoint {
            origin: "portcullis/replica-1".to_owned(),
            tree_size: 1234,
            root_hash: [9u8; 32],
        };
        let text = checkpoint.to_note_text();
        assert_eq!(
            text,
            "portcullis/replica-1\n1234\nCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=\n"
        );
        assert_eq!(Checkpoint::from_note_text(&text).unwrap(), checkpoint);
        for bad in [
            "o\n01\nCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=\n",
            "o\n-1\nCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=\n",
            "o\n1\nCQkJ\n",
            "\n1\nCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=\n",
        ] {
            assert!(Checkpoint::from_note_text(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn key_file_is_created_private_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit-signing.key");
        let created = NoteSigner::load_or_create(&path, "portcullis/a").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let loaded = NoteSigner::load_or_create(&path, "portcullis/a").unwrap();
        assert_eq!(created.verifier(), loaded.verifier());
        assert!(NoteSigner::load_or_create(&path, "portcullis/b").is_err());
    }
}
