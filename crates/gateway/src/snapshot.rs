//! The immutable snapshot of everything the request path needs. It is built
//! from the store whenever the store version changes and swapped in
//! atomically; requests read whichever snapshot is current when they start.
//!
//! INVARIANT: the request path never queries the store; it reads a snapshot.

use std::collections::HashMap;
use std::sync::Arc;

use jiff::Timestamp;
use portcullis_domain::{ApiKey, Model, Principal, StoreVersion};
use portcullis_policy::PolicyEngine;
use portcullis_store::{Admin, StoreContents};

use crate::policy::{PolicyBase, PolicySetupError};
use sha2::{Digest, Sha256};

/// A key and the principal it authenticates.
#[derive(Debug, Clone)]
pub struct KeyEntry {
    pub key: ApiKey,
    pub principal: Arc<Principal>,
}

#[derive(Debug)]
pub struct Snapshot {
    pub version: StoreVersion,
    /// The compiled policies and entities, built once for this snapshot.
    pub engine: Arc<PolicyEngine>,
    /// When this replica built the snapshot.
    pub built_at: Option<Timestamp>,
    pub models: HashMap<String, Arc<Model>>,
    /// Sorted model names, for stable listings.
    pub model_order: Vec<String>,
    pub principals: HashMap<String, Arc<Principal>>,
    keys_by_hash: HashMap<[u8; 32], KeyEntry>,
    admins_by_hash: HashMap<[u8; 32], Arc<Admin>>,
}

fn decode_hash(hex_text: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(hex_text).ok()?;
    bytes.try_into().ok()
}

impl Snapshot {
    /// Builds a snapshot. Fails, leaving the caller's current snapshot in
    /// force, when the stored policies do not compile.
    pub fn build(
        contents: StoreContents,
        built_at: Timestamp,
        policy: &PolicyBase,
    ) -> Result<Self, PolicySetupError> {
        let engine = Arc::new(policy.engine(&contents, built_at)?);
        for rejected in engine.rejected_principals() {
            tracing::warn!(%rejected, "principal left out of the snapshot; it is denied until fixed");
        }
        let principals: HashMap<String, Arc<Principal>> = contents
            .principals
            .into_iter()
            .map(|p| (p.id.clone(), Arc::new(p)))
            .collect();
        let keys_by_hash = contents
            .keys
            .into_iter()
            .filter_map(|key| {
                let principal = principals.get(&key.principal_id)?.clone();
                let hash = decode_hash(&key.secret_sha256)?;
                Some((hash, KeyEntry { key, principal }))
            })
            .collect();
        let admins_by_hash = contents
            .admins
            .into_iter()
            .filter_map(|admin| Some((decode_hash(&admin.token_sha256)?, Arc::new(admin))))
            .collect();
        let model_order = contents.models.iter().map(|m| m.name.clone()).collect();
        let models = contents
            .models
            .into_iter()
            .map(|m| (m.name.clone(), Arc::new(m)))
            .collect();
        Ok(Self {
            version: contents.version,
            engine,
            built_at: Some(built_at),
            models,
            model_order,
            principals,
            keys_by_hash,
            admins_by_hash,
        })
    }

    /// The key entry for a presented secret, if the key exists and is usable
    /// at `now`. The secret itself is hashed and never kept.
    pub fn authenticate(&self, secret: &str, now: Timestamp) -> Option<&KeyEntry> {
        let hash: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        self.keys_by_hash
            .get(&hash)
            .filter(|entry| entry.key.is_usable_at(now))
    }

    /// The admin owning a presented admin token, if active.
    pub fn authenticate_admin(&self, token: &str) -> Option<&Arc<Admin>> {
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        self.admins_by_hash
            .get(&hash)
            .filter(|admin| admin.disabled_at.is_none())
    }

    pub fn model(&self, name: &str) -> Option<&Arc<Model>> {
        self.models.get(name)
    }

    pub fn models_in_order(&self) -> impl Iterator<Item = &Arc<Model>> {
        self.model_order
            .iter()
            .filter_map(|name| self.models.get(name))
    }
}
