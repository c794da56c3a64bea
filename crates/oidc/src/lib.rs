//! OIDC bearer-token authentication: verifying JWTs (RS256, ES256, EdDSA)
//! against the public keys of configured issuers, fetched from their JWKS
//! endpoints with caching, rate-limited refetch on unknown key ids and
//! periodic refresh, or given statically; checking `iss`, `aud`, `exp` and
//! `nbf` against an injected clock; and mapping the verified claims to the
//! principal-attribute document, where only `verified_claims` can ever
//! satisfy a restriction.
//!
//! This crate knows nothing about HTTP routing or policy. Every failure is a
//! [`TokenRejection`] whose [`TokenRejection::reason`] is safe to log; the
//! caller answers all of them with the same 401.

mod authenticator;
mod config;
mod jwks;

pub use authenticator::{
    AuthenticatedToken, MAX_TOKEN_BYTES, OidcAuthenticator, TokenRejection, looks_like_jwt,
    map_claims,
};
pub use config::{
    ClaimMapping, IssuerConfig, JwksSource, OidcConfig, OidcConfigError, SigningAlgorithm,
};
