//! Name normalisation: the one place that decides which spellings of a name
//! count as the same text before any similarity is measured.

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// A name reduced to the form the matcher compares.
///
/// Guarantees: at most [`MAX_TOKENS`] tokens; every token is non-empty,
/// lowercase ASCII letters and digits only; `tokens` is in "Given SURNAME" order; `joined` is `tokens` joined by
/// single spaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalizedName {
    pub tokens: Vec<String>,
    pub joined: String,
    /// True when the input contained Arabic or Hebrew letters. Those scripts
    /// leave short vowels unwritten, so their transliteration ("mhmd") can
    /// only be compared fairly with a Latin spelling ("Mohamed") once both are
    /// reduced to consonants; see [`consonant_skeleton`].
    pub written_without_vowels: bool,
}

impl NormalizedName {
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

/// The most tokens a normalised name keeps. Real names have a handful; the
/// cap bounds the work one pathological input can cause.
pub const MAX_TOKENS: usize = 64;

/// Legal-form designations removed from either end of a name. Multi-word
/// forms are listed as token sequences because punctuation has already been
/// turned into token boundaries ("S.A. DE C.V." becomes `sa de cv`).
const LEGAL_FORMS: &[&[&str]] = &[
    &["sa", "de", "cv"],
    &["de", "cv"],
    &["s", "de", "rl"],
    &["de", "rl"],
    &["sdn", "bhd"],
    &["pvt", "ltd"],
    &["private", "limited"],
    &["public", "limited", "company"],
    &["limited", "liability", "company"],
    &["limited", "liability", "partnership"],
    &["open", "joint", "stock", "company"],
    &["closed", "joint", "stock", "company"],
    &["public", "joint", "stock", "company"],
    &["joint", "stock", "company"],
    &["s", "a"],
    &["l", "l", "c"],
    &["ltd"],
    &["limited"],
    &["llc"],
    &["llp"],
    &["lp"],
    &["plc"],
    &["inc"],
    &["incorporated"],
    &["corp"],
    &["corporation"],
    &["co"],
    &["company"],
    &["gmbh"],
    &["mbh"],
    &["ag"],
    &["kg"],
    &["sa"],
    &["sas"],
    &["sarl"],
    &["sal"],
    &["sae"],
    &["sac"],
    &["saa"],
    &["srl"],
    &["spa"],
    &["sro"],
    &["bv"],
    &["nv"],
    &["ab"],
    &["as"],
    &["asa"],
    &["oy"],
    &["oyj"],
    &["aps"],
    &["pte"],
    &["pty"],
    &["bhd"],
    &["ooo"],
    &["oao"],
    &["zao"],
    &["pao"],
    &["ao"],
    &["jsc"],
    &["ojsc"],
    &["cjsc"],
    &["pjsc"],
    &["tov"],
    &["fze"],
    &["fzco"],
    &["fzc"],
    &["fzllc"],
    &["ltda"],
    &["eirl"],
    &["kft"],
    &["zrt"],
    &["doo"],
];

/// Generational and similar designations that OFAC writes as their own
/// comma-separated part ("SMITH, John, Jr."); such a part is dropped so that
/// the remaining two parts can still be reordered.
const NAME_SUFFIX_PARTS: &[&str] = &["jr", "sr", "ii", "iii", "iv"];

/// Normalise a person or organisation name for matching.
///
/// The steps, in order:
/// 1. split on commas; parts that hold only a legal form or a generational
///    suffix are dropped; exactly two remaining parts are read as
///    "SURNAME, Given" and reordered to "Given SURNAME";
/// 2. NFKD-decompose and strip combining marks, which folds diacritics;
/// 3. transliterate other scripts to ASCII (Cyrillic, Greek, Arabic, Hebrew,
///    Han, Hangul and others), one token per Han or Hangul syllable;
/// 4. lowercase; apostrophes and full stops vanish (`QAR'AWI` -> `qarawi`,
///    `S.A.` -> `sa`); every other punctuation mark separates tokens;
/// 5. remove legal-form designations from both ends, unless that would
///    leave nothing.
pub fn normalize_name(raw: &str) -> NormalizedName {
    let mut written_without_vowels = false;
    let all_parts: Vec<Vec<String>> = raw
        .split(',')
        .map(|raw_part| tokenize(raw_part, &mut written_without_vowels))
        .filter(|part_tokens| !part_tokens.is_empty())
        .collect();
    let mut parts: Vec<Vec<String>> = all_parts
        .iter()
        .filter(|part_tokens| !is_droppable_part(part_tokens))
        .cloned()
        .collect();
    // INVARIANT: dropping designation-only parts never empties a name; a
    // name that is nothing but a designation ("CO") is kept as written.
    if parts.is_empty() {
        parts = all_parts;
    }
    let mut tokens: Vec<String> = match parts.len() {
        2 => parts
            .pop()
            .into_iter()
            .chain(parts.pop())
            .flatten()
            .collect(),
        _ => parts.into_iter().flatten().collect(),
    };
    strip_legal_forms(&mut tokens);
    tokens.truncate(MAX_TOKENS);
    let joined = tokens.join(" ");
    NormalizedName {
        tokens,
        joined,
        written_without_vowels,
    }
}

fn is_droppable_part(part_tokens: &[String]) -> bool {
    if part_tokens.len() == 1 && NAME_SUFFIX_PARTS.contains(&part_tokens[0].as_str()) {
        return true;
    }
    LEGAL_FORMS.iter().any(|form| {
        form.len() == part_tokens.len() && form.iter().zip(part_tokens).all(|(a, b)| a == b)
    })
}

fn strip_legal_forms(tokens: &mut Vec<String>) {
    // INVARIANT: a name never normalises to nothing just because every token
    // looked like a legal form ("CO" as an alias); then the tokens stay.
    loop {
        let trailing = LEGAL_FORMS.iter().find(|form| {
            form.len() < tokens.len()
                && tokens[tokens.len() - form.len()..]
                    .iter()
                    .zip(form.iter())
                    .all(|(a, b)| a == b)
        });
        if let Some(form) = trailing {
            tokens.truncate(tokens.len() - form.len());
            continue;
        }
        let leading = LEGAL_FORMS.iter().find(|form| {
            form.len() < tokens.len() && tokens.iter().zip(form.iter()).all(|(a, b)| a == b)
        });
        if let Some(form) = leading {
            tokens.drain(..form.len());
            continue;
        }
        break;
    }
}

/// Turn one comma-separated part of a name into lowercase ASCII tokens.
fn tokenize(raw_part: &str, written_without_vowels: &mut bool) -> Vec<String> {
    let mut ascii = String::with_capacity(raw_part.len());
    for character in raw_part.nfkd() {
        if is_combining_mark(character) {
            continue;
        }
        if character.is_ascii() {
            push_ascii(&mut ascii, character);
            continue;
        }
        if is_abjad_letter(character) {
            *written_without_vowels = true;
        }
        let one_token_per_syllable = is_han_or_hangul_syllable(character);
        if one_token_per_syllable {
            ascii.push(' ');
        }
        if let Some(transliteration) = deunicode::deunicode_char(character) {
            for transliterated in transliteration.chars() {
                push_ascii(&mut ascii, transliterated);
            }
        }
        if one_token_per_syllable {
            ascii.push(' ');
        }
    }
    ascii.split_whitespace().map(str::to_owned).collect()
}

fn push_ascii(buffer: &mut String, character: char) {
    if character.is_ascii_alphanumeric() {
        buffer.push(character.to_ascii_lowercase());
    } else if matches!(character, '\'' | '.' | '`') {
        // Apostrophes stand for a glottal stop or an elision inside one word,
        // and full stops mostly end abbreviations, so neither splits a token.
    } else {
        buffer.push(' ');
    }
}

fn is_abjad_letter(character: char) -> bool {
    matches!(character,
        '\u{0590}'..='\u{05FF}' // Hebrew
        | '\u{0600}'..='\u{06FF}' // Arabic
        | '\u{0750}'..='\u{077F}' // Arabic Supplement
        | '\u{08A0}'..='\u{08FF}' // Arabic Extended-A
        | '\u{FB1D}'..='\u{FB4F}' // Hebrew presentation forms
        | '\u{FB50}'..='\u{FDFF}' // Arabic presentation forms A
        | '\u{FE70}'..='\u{FEFF}' // Arabic presentation forms B
    )
}

fn is_han_or_hangul_syllable(character: char) -> bool {
    matches!(character,
        '\u{4E00}'..='\u{9FFF}' // CJK unified ideographs
        | '\u{3400}'..='\u{4DBF}' // CJK extension A
        | '\u{AC00}'..='\u{D7A3}' // Hangul syllables
    )
}

/// Reduce a normalised token to its consonants, dropping vowels and the
/// semivowels `w` and `y` (which transliterations of Arabic use for long
/// vowels) and collapsing doubled letters, so `mohamed`, `muhammad` and the
/// transliterated Arabic `mhmd` all become `mhmd`.
pub fn consonant_skeleton(token: &str) -> String {
    let mut skeleton = String::with_capacity(token.len());
    let mut previous: Option<char> = None;
    for character in token.chars() {
        if matches!(character, 'a' | 'e' | 'i' | 'o' | 'u' | 'w' | 'y') {
            continue;
        }
        if previous != Some(character) {
            skeleton.push(character);
        }
        previous = Some(character);
    }
    skeleton
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(raw: &str, expected_joined: &str) {
        let normalized = normalize_name(raw);
        assert_eq!(normalized.joined, expected_joined, "normalising `{raw}`");
        assert_eq!(normalized.tokens.join(" "), normalized.joined);
        assert!(normalized.tokens.iter().all(|token| {
            !token.is_empty()
                && token
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        }));
    }

    #[test]
    fn normalises_names() {
        let cases = [
            (
                "ARELLANO FELIX, Francisco Javier",
                "francisco javier arellano felix",
            ),
            ("RIM, Ryong Nam", "ryong nam rim"),
            ("ANGLO-CARIBBEAN CO., LTD.", "anglo caribbean"),
            ("AERO CONTINENTE S.A", "aero continente"),
            ("AVIANDINA S.A.C.", "aviandina"),
            ("ACHIM DEVELOPMENT, OOO", "achim development"),
            ("2904977 CANADA, INC.", "2904977 canada"),
            ("GRUPO EXAMPLE S.A. DE C.V.", "grupo example"),
            ("OAO GAZPROM NEFT", "gazprom neft"),
            ("Fathi Mohammed QAR'AWI", "fathi mohammed qarawi"),
            ("  José   María  GARCÍA-LÓPEZ ", "jose maria garcia lopez"),
            ("Müller GmbH", "muller"),
            ("SMITH, John, Jr.", "john smith"),
            ("Владимир Путин", "vladimir putin"),
            ("Νικόλαος", "nikolaos"),
            ("李明", "li ming"),
            ("CO", "co"),
            ("LTD", "ltd"),
            ("", ""),
            ("-0-", "0"),
        ];
        for (raw, expected) in cases {
            check(raw, expected);
        }
    }

    #[test]
    fn arabic_and_hebrew_are_flagged_as_written_without_vowels() {
        let cases = [
            ("محمد علي", true),
            ("משה", true),
            ("Mohamed Ali", false),
            ("Владимир", false),
        ];
        for (raw, expected) in cases {
            assert_eq!(
                normalize_name(raw).written_without_vowels,
                expected,
                "`{raw}`"
            );
        }
    }

    #[test]
    fn skeletons() {
        let cases = [
            ("mohamed", "mhmd"),
            ("muhammad", "mhmd"),
            ("mhmd", "mhmd"),
            ("hassan", "hsn"),
            ("abdullah", "bdlh"),
            ("aaa", ""),
        ];
        for (token, expected) in cases {
            assert_eq!(consonant_skeleton(token), expected, "`{token}`");
        }
    }
}
