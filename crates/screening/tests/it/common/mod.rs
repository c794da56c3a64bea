//! Helpers shared by the integration tests: fixtures committed in this crate
//! and the optional shared reference data.

// Test support code: failing loudly on a missing fixture is the point.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use portcullis_screening::{ListFile, ScreeningList, ScreeningListBuilder};

pub fn fixture_path(file_name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(file_name)
}

pub fn fixture(file_name: &str) -> ListFile {
    ListFile::read(&fixture_path(file_name)).unwrap()
}

/// The small committed list: SDN and alias rows (with deliberate defects)
/// plus a small Consolidated Screening List.
pub fn small_list() -> ScreeningList {
    let mut builder = ScreeningListBuilder::new();
    builder
        .add_ofac_sdn(&fixture("sdn_small.csv"), Some(&fixture("alt_small.csv")))
        .unwrap();
    builder
        .add_consolidated_screening_list(&fixture("csl_small.csv"))
        .unwrap();
    builder.build()
}

/// The ordinary, non-listed names of `tests/fixtures/ordinary_names.txt`.
pub fn ordinary_names() -> Vec<String> {
    std::fs::read_to_string(fixture_path("ordinary_names.txt"))
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

/// The shared screening data directory, or `None` after printing why the
/// calling test is skipped. With `PORTCULLIS_REQUIRE_ALL=1` a missing
/// directory fails the test instead.
pub fn shared_screening_dir() -> Option<PathBuf> {
    let data_dir = std::env::var_os("PORTCULLIS_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"));
    let screening_dir = data_dir.join("screening");
    if screening_dir.join("ofac_sdn.csv").is_file() {
        return Some(screening_dir);
    }
    let reason = format!(
        "shared screening data not found at `{}` (set PORTCULLIS_SHARED_DATA)",
        screening_dir.display()
    );
    if std::env::var("PORTCULLIS_REQUIRE_ALL").as_deref() == Ok("1") {
        panic!("{reason}");
    }
    println!("skipped: {reason}");
    None
}

pub fn shared_sdn_list(screening_dir: &std::path::Path) -> ScreeningList {
    let mut builder = ScreeningListBuilder::new();
    builder
        .add_ofac_sdn(
            &ListFile::read(&screening_dir.join("ofac_sdn.csv")).unwrap(),
            Some(&ListFile::read(&screening_dir.join("ofac_alt.csv")).unwrap()),
        )
        .unwrap();
    builder.build()
}

/// Apply one typical typo to one normalised token of at least four letters,
/// never to its first letter: a substitution, a transposition, a deletion or
/// a doubled letter, chosen by `seed`.
pub fn misspell(name: &str, seed: usize) -> String {
    let mut words = portcullis_screening::normalize_name(name).tokens;
    let long_words: Vec<usize> = (0..words.len()).filter(|&i| words[i].len() >= 4).collect();
    if long_words.is_empty() {
        return words.join(" ");
    }
    let word_index = long_words[seed % long_words.len()];
    let mut chars: Vec<char> = words[word_index].chars().collect();
    let position = 1 + (seed / 7) % (chars.len() - 2);
    match seed % 4 {
        0 => chars[position] = if chars[position] == 'x' { 'z' } else { 'x' },
        1 => chars.swap(position, position + 1),
        2 => {
            chars.remove(position);
        }
        _ => chars.insert(position, chars[position]),
    }
    words[word_index] = chars.into_iter().collect();
    words.join(" ")
}
