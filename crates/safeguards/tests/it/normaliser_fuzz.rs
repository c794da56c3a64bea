//! Fuzz-style property tests: the normaliser and the classifier accept any
//! string without panicking, stay within their bounds, and always keep the
//! canonical view first.

// Test helpers outside #[test] functions may fail loudly too.
#![allow(
    clippy::disallowed_methods,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::sync::OnceLock;

use portcullis_safeguards::Safeguard;
use portcullis_safeguards::normalise::{NormaliserLimits, ViewKind, normalise_with_limits};
use proptest::prelude::*;

fn hostile_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[A-Za-z0-9+/=]{0,400}",
        "([0-9a-f]{2}[ ,:]?){0,200}",
        "([.-]{1,6}[ /]{1,3}){0,100}",
        "(%[0-9A-F]{2}){0,200}",
        "[\u{E0000}-\u{E007F}\u{200B}-\u{200F}a-z ]{0,300}",
        "(\"[a-z ]{0,20}\"[ +=;]{0,3}){0,30}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn normaliser_never_panics_and_respects_limits(text in hostile_text()) {
        let limits = NormaliserLimits { max_decode_depth: 3, max_views: 8, max_decoded_bytes: 64 * 1024 };
        let normalised = normalise_with_limits(&text, limits);
        prop_assert!(!normalised.views.is_empty());
        prop_assert_eq!(&normalised.views[0].kind, &ViewKind::Canonical);
        prop_assert!(normalised.views.len() <= limits.max_views);
        let decoded: usize = normalised.views.iter().skip(1).map(|view| view.text.len()).sum();
        // The tag-character view is bounded by the input itself.
        prop_assert!(decoded <= limits.max_decoded_bytes + text.len());
    }

    #[test]
    fn classifier_scores_any_text_in_range(text in hostile_text()) {
        static SAFEGUARD: OnceLock<Safeguard> = OnceLock::new();
        let safeguard = SAFEGUARD.get_or_init(|| Safeguard::builtin().unwrap());
        let profile = safeguard.default_cyber_profile();
        let verdict = safeguard.classify_text(&text, &profile);
        prop_assert!((0.0..=1.0).contains(&verdict.score));
    }
}
