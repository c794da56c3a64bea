//! An imported denied-party list with its version and the token index that
//! keeps screening fast.

use std::collections::{HashMap, HashSet};

use crate::import::{
    ImportError, ImportWarning, ListEntry, ListFile, SourceVersion,
    parse_consolidated_screening_list, parse_ofac_sdn,
};
use crate::normalize::normalize_name;
use crate::score::{ComparableName, CountedText, jaro_winkler_reaching, name_similarity_beating};

/// Collects list files and builds an immutable [`ScreeningList`] from them.
#[derive(Debug, Default)]
pub struct ScreeningListBuilder {
    entries: Vec<ListEntry>,
    entry_ids: HashSet<String>,
    source_versions: Vec<SourceVersion>,
    warnings: Vec<ImportWarning>,
}

impl ScreeningListBuilder {
    pub fn new() -> Self {
        ScreeningListBuilder::default()
    }

    /// Add OFAC `sdn.csv` and, when given, its `alt.csv` aliases.
    pub fn add_ofac_sdn(
        &mut self,
        sdn_file: &ListFile,
        alt_file: Option<&ListFile>,
    ) -> Result<&mut Self, ImportError> {
        let (entries, versions) = parse_ofac_sdn(sdn_file, alt_file, &mut self.warnings)?;
        self.add_entries(entries);
        self.source_versions.extend(versions);
        Ok(self)
    }

    /// Add a Consolidated Screening List CSV (with header).
    pub fn add_consolidated_screening_list(
        &mut self,
        csl_file: &ListFile,
    ) -> Result<&mut Self, ImportError> {
        let (entries, version) = parse_consolidated_screening_list(csl_file, &mut self.warnings)?;
        self.add_entries(entries);
        self.source_versions.push(version);
        Ok(self)
    }

    fn add_entries(&mut self, entries: Vec<ListEntry>) {
        for entry in entries {
            if self.entry_ids.contains(&entry.entry_id) {
                self.warnings.push(ImportWarning {
                    file: entry.source_file.clone(),
                    line: entry.source_line,
                    reason: format!(
                        "entry `{}` was already imported from another file",
                        entry.entry_id
                    ),
                });
                continue;
            }
            self.entry_ids.insert(entry.entry_id.clone());
            self.entries.push(entry);
        }
    }

    /// Normalise every name once and build the token index.
    pub fn build(self) -> ScreeningList {
        let list_version = if self.source_versions.is_empty() {
            "empty".to_owned()
        } else {
            self.source_versions
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("+")
        };
        let mut names: Vec<IndexedName> = Vec::new();
        for (entry_index, entry) in self.entries.iter().enumerate() {
            let mut seen_forms: HashSet<String> = HashSet::new();
            let all_names = std::iter::once(&entry.primary_name).chain(&entry.aliases);
            for (name_index, raw_name) in all_names.enumerate() {
                let normalized = normalize_name(raw_name);
                // Aliases that normalise to the same text as an earlier name
                // of the entry would only repeat the same comparisons.
                if normalized.is_empty() || !seen_forms.insert(normalized.joined.clone()) {
                    continue;
                }
                names.push(IndexedName {
                    entry_index,
                    name_index,
                    comparable: ComparableName::new(normalized),
                });
            }
        }
        let plain_token_index =
            TokenIndex::build(names.iter().map(|name| &name.comparable.plain.tokens));
        let skeleton_token_index =
            TokenIndex::build(names.iter().map(|name| &name.comparable.skeleton.tokens));
        ScreeningList {
            list_version,
            source_versions: self.source_versions,
            entries: self.entries,
            names,
            plain_token_index,
            skeleton_token_index,
            warnings: self.warnings,
        }
    }
}

/// One name of one entry, prepared for comparison.
#[derive(Debug, Clone)]
struct IndexedName {
    entry_index: usize,
    /// 0 for the primary name, `n` for the `n`th alias.
    name_index: usize,
    comparable: ComparableName,
}

/// Distinct tokens with the names that contain them, grouped by first byte.
///
/// Screening compares the query's tokens only with indexed tokens that start
/// with the same letter, as OFAC's own search pre-filters on the first letter,
/// and scores only the names holding a token that is similar enough.
///
/// Tokens are stored sorted by first byte so that the tokens compared for one
/// query token are one contiguous slice, and the names holding token `i` are
/// `name_ids[name_id_offsets[i]..name_id_offsets[i + 1]]`.
#[derive(Debug, Clone, Default)]
struct TokenIndex {
    tokens: Vec<CountedText>,
    name_id_offsets: Vec<usize>,
    name_ids: Vec<u32>,
    /// For each first byte, the range of `tokens` starting with it.
    token_range_by_first_byte: Vec<std::ops::Range<usize>>,
}

impl TokenIndex {
    fn build<'a>(token_lists: impl Iterator<Item = &'a Vec<CountedText>>) -> Self {
        let mut name_ids_by_token: HashMap<&'a str, (&'a CountedText, Vec<u32>)> = HashMap::new();
        for (name_id, tokens) in token_lists.enumerate() {
            let name_id = u32::try_from(name_id).unwrap_or(u32::MAX);
            for token in tokens {
                let (_, name_ids) = name_ids_by_token
                    .entry(token.text.as_str())
                    .or_insert_with(|| (token, Vec::new()));
                if name_ids.last() != Some(&name_id) {
                    name_ids.push(name_id);
                }
            }
        }
        let mut sorted: Vec<(&'a CountedText, Vec<u32>)> =
            name_ids_by_token.into_values().collect();
        sorted.sort_by(|a, b| a.0.text.cmp(&b.0.text));
        let mut index = TokenIndex {
            token_range_by_first_byte: vec![0..0; 256],
            name_id_offsets: vec![0],
            ..TokenIndex::default()
        };
        for (token, name_ids) in sorted {
            if let Some(&first_byte) = token.text.as_bytes().first() {
                let range = &mut index.token_range_by_first_byte[usize::from(first_byte)];
                if range.start == range.end {
                    *range = index.tokens.len()..index.tokens.len();
                }
                range.end = index.tokens.len() + 1;
            }
            index.tokens.push(token.clone());
            index.name_ids.extend_from_slice(&name_ids);
            index.name_id_offsets.push(index.name_ids.len());
        }
        index
    }

    /// Add to `candidates` every name holding a token that starts with the
    /// same byte as one of `query_tokens` and scores at least
    /// `minimum_token_similarity` against it. `similar_tokens_by_query_token`
    /// remembers the similar indexed tokens of every query token already
    /// looked up, for the same index and minimum similarity.
    fn collect_candidates(
        &self,
        query_tokens: &[CountedText],
        minimum_token_similarity: f64,
        similar_tokens_by_query_token: &mut HashMap<String, Vec<usize>>,
        candidates: &mut Vec<u32>,
    ) {
        for query_token in query_tokens {
            let similar_token_ids = similar_tokens_by_query_token
                .entry(query_token.text.clone())
                .or_insert_with(|| self.similar_tokens(query_token, minimum_token_similarity));
            for &token_id in similar_token_ids.iter() {
                candidates.extend_from_slice(
                    &self.name_ids
                        [self.name_id_offsets[token_id]..self.name_id_offsets[token_id + 1]],
                );
            }
        }
    }

    fn similar_tokens(
        &self,
        query_token: &CountedText,
        minimum_token_similarity: f64,
    ) -> Vec<usize> {
        let Some(&first_byte) = query_token.text.as_bytes().first() else {
            return Vec::new();
        };
        self.token_range_by_first_byte[usize::from(first_byte)]
            .clone()
            .filter(|&token_id| {
                jaro_winkler_reaching(
                    query_token,
                    &self.tokens[token_id],
                    minimum_token_similarity,
                )
                .is_some()
            })
            .collect()
    }
}

/// Remembers which indexed tokens are similar to each query token seen, so
/// that screening many names in one batch compares each distinct token with
/// the index only once. Valid for one list and one minimum similarity.
#[derive(Debug, Default)]
pub(crate) struct SimilarTokenCache {
    minimum_token_similarity: f64,
    plain: HashMap<String, Vec<usize>>,
    skeleton: HashMap<String, Vec<usize>>,
}

impl SimilarTokenCache {
    pub(crate) fn new(minimum_token_similarity: f64) -> Self {
        SimilarTokenCache {
            minimum_token_similarity,
            ..SimilarTokenCache::default()
        }
    }
}

/// The best-scoring listed name for one screened name.
#[derive(Debug, Clone, PartialEq)]
pub struct NameMatch<'list> {
    pub entry: &'list ListEntry,
    /// The listed name (primary or alias) that scored best, as listed.
    pub matched_name: &'list str,
    pub score: f64,
}

/// An immutable, indexed denied-party list.
#[derive(Debug, Clone)]
pub struct ScreeningList {
    list_version: String,
    source_versions: Vec<SourceVersion>,
    entries: Vec<ListEntry>,
    names: Vec<IndexedName>,
    plain_token_index: TokenIndex,
    skeleton_token_index: TokenIndex,
    warnings: Vec<ImportWarning>,
}

impl ScreeningList {
    /// The version recorded with every screening result: each source file's
    /// format, SHA-256 prefix and accepted row count, joined by `+`.
    pub fn list_version(&self) -> &str {
        &self.list_version
    }

    pub fn source_versions(&self) -> &[SourceVersion] {
        &self.source_versions
    }

    pub fn entries(&self) -> &[ListEntry] {
        &self.entries
    }

    /// The number of distinct normalised names (primary names and aliases).
    pub fn indexed_name_count(&self) -> usize {
        self.names.len()
    }

    /// Every row skipped during import, in the order met.
    pub fn import_warnings(&self) -> &[ImportWarning] {
        &self.warnings
    }

    /// Find the listed name most similar to `query` among names that share a
    /// token similar to one of its tokens (at least
    /// `minimum_token_similarity`, same first letter).
    ///
    /// The per-token score of a name can only reach a value `v` when one of
    /// its token pairs reaches `v`, so with `minimum_token_similarity` set to
    /// the decision threshold no name that the token score would flag is
    /// missed. The whole-name score can in rare cases exceed the threshold
    /// with no such token pair; those names are not found, which is the same
    /// trade OFAC's first-letter pre-filter makes.
    pub fn best_match(
        &self,
        query: &ComparableName,
        minimum_token_similarity: f64,
    ) -> Option<NameMatch<'_>> {
        self.best_match_cached(query, &mut SimilarTokenCache::new(minimum_token_similarity))
    }

    pub(crate) fn best_match_cached(
        &self,
        query: &ComparableName,
        cache: &mut SimilarTokenCache,
    ) -> Option<NameMatch<'_>> {
        let mut candidates: Vec<u32> = Vec::new();
        self.plain_token_index.collect_candidates(
            &query.plain.tokens,
            cache.minimum_token_similarity,
            &mut cache.plain,
            &mut candidates,
        );
        if query.normalized.written_without_vowels {
            self.skeleton_token_index.collect_candidates(
                &query.skeleton.tokens,
                cache.minimum_token_similarity,
                &mut cache.skeleton,
                &mut candidates,
            );
        }
        candidates.sort_unstable();
        candidates.dedup();
        let mut best: Option<(f64, usize)> = None;
        for name_id in candidates {
            let name_id = name_id as usize;
            let Some(indexed) = self.names.get(name_id) else {
                continue;
            };
            let score_to_beat = best.map_or(0.0, |(best_score, _)| best_score);
            let score = name_similarity_beating(query, &indexed.comparable, score_to_beat);
            // Strictly greater keeps the earliest name on ties, so results do
            // not depend on anything but the list order.
            if best.is_none_or(|(best_score, _)| score > best_score) {
                best = Some((score, name_id));
            }
        }
        let (score, name_id) = best?;
        let indexed = self.names.get(name_id)?;
        let entry = self.entries.get(indexed.entry_index)?;
        let matched_name = if indexed.name_index == 0 {
            entry.primary_name.as_str()
        } else {
            entry.aliases.get(indexed.name_index - 1)?.as_str()
        };
        Some(NameMatch {
            entry,
            matched_name,
            score,
        })
    }
}
