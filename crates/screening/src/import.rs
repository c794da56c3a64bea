//! Parsers for the list formats: OFAC's legacy `sdn.csv` with its `alt.csv`
//! aliases, and the trade.gov Consolidated Screening List CSV.
//!
//! A row that cannot be read is skipped and reported as an [`ImportWarning`]
//! with its line number; it never disappears silently.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The contents of one list file together with the name it is reported under.
#[derive(Debug, Clone)]
pub struct ListFile {
    /// Shown in warnings and used in nothing else, typically the file name.
    pub name: String,
    pub contents: Vec<u8>,
}

impl ListFile {
    pub fn new(name: impl Into<String>, contents: impl Into<Vec<u8>>) -> Self {
        ListFile {
            name: name.into(),
            contents: contents.into(),
        }
    }

    /// Read a list file from disk; it is reported under its file name.
    pub fn read(path: &Path) -> Result<Self, ImportError> {
        let contents = std::fs::read(path).map_err(|source| ImportError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let name = path
            .file_name()
            .map(|file_name| file_name.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        Ok(ListFile { name, contents })
    }

    fn sha256_prefix(&self) -> String {
        let digest = Sha256::digest(&self.contents);
        hex::encode(&digest[..6])
    }
}

/// A row that was skipped during import, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportWarning {
    pub file: String,
    /// 1-based line number of the row in the file.
    pub line: u64,
    pub reason: String,
}

impl fmt::Display for ImportWarning {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "{}:{}: row skipped: {}",
            self.file, self.line, self.reason
        )
    }
}

/// A failure that stops an import as a whole, as opposed to one bad row.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read list file `{path}`")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("list file `{file}` has no `{column}` column in its header")]
    MissingColumn { file: String, column: &'static str },
    #[error("list file `{file}` has no header row")]
    MissingHeader { file: String },
    #[error("list file `{file}` cannot be parsed as CSV")]
    Csv {
        file: String,
        #[source]
        source: csv::Error,
    },
}

/// One party on a denied-party list, with every name it is known by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    /// Unique within a [`crate::ScreeningList`]: `sdn:` followed by the OFAC
    /// ent_num, or `csl:` followed by the CSL row id.
    pub entry_id: String,
    /// The primary name exactly as the list writes it.
    pub primary_name: String,
    /// Other names exactly as the list writes them.
    pub aliases: Vec<String>,
    /// `individual`, `entity`, `vessel` or `aircraft` where the list says.
    pub entry_type: Option<String>,
    pub programs: Option<String>,
    /// The list the entry comes from, e.g. `OFAC SDN` or the CSL source name.
    pub source_list: String,
    /// The file and 1-based line the entry was read from, for reviewers.
    pub source_file: String,
    pub source_line: u64,
}

/// What one imported file contributed: enough to tell two list versions apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceVersion {
    /// Short label of the format: `ofac_sdn`, `ofac_alt` or `csl`.
    pub format_label: &'static str,
    /// First 12 hex digits of the SHA-256 of the file contents.
    pub sha256_prefix: String,
    /// Rows accepted from the file.
    pub accepted_rows: usize,
}

impl fmt::Display for SourceVersion {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "{}@{}/{}",
            self.format_label, self.sha256_prefix, self.accepted_rows
        )
    }
}

/// OFAC writes null fields as `-0-`, usually padded with a space.
const OFAC_NULL: &str = "-0-";

/// OFAC's legacy files end with a DOS end-of-file byte (0x1A) on a line of its
/// own. It is a terminator, not a row, so it is removed before parsing.
fn without_dos_end_of_file(contents: &[u8]) -> &[u8] {
    let mut end = contents.len();
    while end > 0 && matches!(contents[end - 1], b'\r' | b'\n' | b' ' | 0x1A) {
        if contents[end - 1] == 0x1A {
            return &contents[..end - 1];
        }
        end -= 1;
    }
    contents
}

fn ofac_field(record: &csv::ByteRecord, index: usize) -> Result<Option<String>, String> {
    let raw = record.get(index).unwrap_or_default();
    let text = std::str::from_utf8(raw)
        .map_err(|_| format!("column {} is not valid UTF-8", index + 1))?
        .trim();
    if text.is_empty() || text == OFAC_NULL {
        Ok(None)
    } else {
        Ok(Some(text.to_owned()))
    }
}

/// Maps byte offsets to 1-based line numbers.
///
/// The csv crate's own line count runs one behind on files with CRLF line
/// endings (OFAC's), because a record there starts on the `\n` of the
/// previous line's terminator; counting newlines before the first byte of the
/// record's content is right for either ending.
struct LineNumbers<'a> {
    contents: &'a [u8],
    newline_offsets: Vec<usize>,
}

impl<'a> LineNumbers<'a> {
    fn new(contents: &'a [u8]) -> Self {
        let newline_offsets = contents
            .iter()
            .enumerate()
            .filter(|(_, byte)| **byte == b'\n')
            .map(|(offset, _)| offset)
            .collect();
        LineNumbers {
            contents,
            newline_offsets,
        }
    }

    fn line_of(&self, record: &csv::ByteRecord) -> u64 {
        let Some(position) = record.position() else {
            return 0;
        };
        let mut offset = usize::try_from(position.byte()).unwrap_or(usize::MAX);
        while offset < self.contents.len() && matches!(self.contents[offset], b'\r' | b'\n') {
            offset += 1;
        }
        let newlines_before = self
            .newline_offsets
            .partition_point(|&newline| newline < offset);
        u64::try_from(newlines_before)
            .unwrap_or(u64::MAX)
            .saturating_add(1)
    }
}

fn read_records(
    file: &ListFile,
    contents: &[u8],
    has_headers: bool,
) -> Result<Vec<csv::ByteRecord>, ImportError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(has_headers)
        .flexible(true)
        .from_reader(contents);
    let mut records = Vec::new();
    for record in reader.byte_records() {
        records.push(record.map_err(|source| ImportError::Csv {
            file: file.name.clone(),
            source,
        })?);
    }
    Ok(records)
}

/// Parse OFAC `sdn.csv` (no header, 12 columns) and optionally `alt.csv`
/// (no header, 5 columns), joining aliases to entries by ent_num.
pub(crate) fn parse_ofac_sdn(
    sdn_file: &ListFile,
    alt_file: Option<&ListFile>,
    warnings: &mut Vec<ImportWarning>,
) -> Result<(Vec<ListEntry>, Vec<SourceVersion>), ImportError> {
    const SDN_COLUMNS: usize = 12;
    const ALT_COLUMNS: usize = 5;
    let mut entries: Vec<ListEntry> = Vec::new();
    let mut entry_index_by_ent_num: HashMap<u64, usize> = HashMap::new();
    let mut warn = |file: &ListFile, line: u64, reason: String| {
        warnings.push(ImportWarning {
            file: file.name.clone(),
            line,
            reason,
        });
    };

    let sdn_contents = without_dos_end_of_file(&sdn_file.contents);
    let sdn_lines = LineNumbers::new(sdn_contents);
    for record in read_records(sdn_file, sdn_contents, false)? {
        let line = sdn_lines.line_of(&record);
        if record.len() != SDN_COLUMNS {
            warn(
                sdn_file,
                line,
                format!("expected {SDN_COLUMNS} columns, found {}", record.len()),
            );
            continue;
        }
        let parsed = (|| {
            let ent_num_text = ofac_field(&record, 0)?.unwrap_or_default();
            let ent_num: u64 = ent_num_text
                .parse()
                .map_err(|_| format!("entity number `{ent_num_text}` is not a number"))?;
            let name = ofac_field(&record, 1)?.ok_or_else(|| "the name is empty".to_owned())?;
            let entry_type = ofac_field(&record, 2)?.or_else(|| Some("entity".to_owned()));
            let programs = ofac_field(&record, 3)?;
            Ok::<_, String>((ent_num, name, entry_type, programs))
        })();
        let (ent_num, name, entry_type, programs) = match parsed {
            Ok(fields) => fields,
            Err(reason) => {
                warn(sdn_file, line, reason);
                continue;
            }
        };
        if entry_index_by_ent_num.contains_key(&ent_num) {
            warn(
                sdn_file,
                line,
                format!("entity number `{ent_num}` appears more than once"),
            );
            continue;
        }
        entry_index_by_ent_num.insert(ent_num, entries.len());
        entries.push(ListEntry {
            entry_id: format!("sdn:{ent_num}"),
            primary_name: name,
            aliases: Vec::new(),
            entry_type,
            programs,
            source_list: "OFAC SDN".to_owned(),
            source_file: sdn_file.name.clone(),
            source_line: line,
        });
    }
    let mut versions = vec![SourceVersion {
        format_label: "ofac_sdn",
        sha256_prefix: sdn_file.sha256_prefix(),
        accepted_rows: entries.len(),
    }];

    if let Some(alt_file) = alt_file {
        let mut accepted_aliases = 0;
        let alt_contents = without_dos_end_of_file(&alt_file.contents);
        let alt_lines = LineNumbers::new(alt_contents);
        for record in read_records(alt_file, alt_contents, false)? {
            let line = alt_lines.line_of(&record);
            if record.len() != ALT_COLUMNS {
                warn(
                    alt_file,
                    line,
                    format!("expected {ALT_COLUMNS} columns, found {}", record.len()),
                );
                continue;
            }
            let parsed = (|| {
                let ent_num_text = ofac_field(&record, 0)?.unwrap_or_default();
                let ent_num: u64 = ent_num_text
                    .parse()
                    .map_err(|_| format!("entity number `{ent_num_text}` is not a number"))?;
                let alias =
                    ofac_field(&record, 3)?.ok_or_else(|| "the alias is empty".to_owned())?;
                let entry_index = *entry_index_by_ent_num.get(&ent_num).ok_or_else(|| {
                    format!("alias refers to entity number `{ent_num}`, which is not in the list")
                })?;
                Ok::<_, String>((entry_index, alias))
            })();
            match parsed {
                Ok((entry_index, alias)) => {
                    entries[entry_index].aliases.push(alias);
                    accepted_aliases += 1;
                }
                Err(reason) => warn(alt_file, line, reason),
            }
        }
        versions.push(SourceVersion {
            format_label: "ofac_alt",
            sha256_prefix: alt_file.sha256_prefix(),
            accepted_rows: accepted_aliases,
        });
    }
    Ok((entries, versions))
}

/// Split a CSL name field into separate names. The CSL joins names with `;`
/// and some sources append boilerplate ("; and any successor, sub-unit, or
/// subsidiary thereof") or start a continuation with "and".
fn split_csl_names(field: &str) -> Vec<String> {
    field
        .split(';')
        .map(str::trim)
        .map(|segment| {
            segment
                .strip_prefix("and ")
                .or_else(|| segment.strip_prefix("AND "))
                .unwrap_or(segment)
                .trim()
        })
        .filter(|segment| {
            !segment.is_empty() && !segment.to_ascii_lowercase().starts_with("any successor")
        })
        .map(str::to_owned)
        .collect()
}

/// Parse a Consolidated Screening List CSV. Columns are found by header name,
/// because the trade.gov export and its samples order them differently.
pub(crate) fn parse_consolidated_screening_list(
    csl_file: &ListFile,
    warnings: &mut Vec<ImportWarning>,
) -> Result<(Vec<ListEntry>, SourceVersion), ImportError> {
    let contents = without_dos_end_of_file(&csl_file.contents);
    let contents = contents.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(contents);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(contents);
    let header = reader
        .byte_headers()
        .map_err(|source| ImportError::Csv {
            file: csl_file.name.clone(),
            source,
        })?
        .clone();
    if header.is_empty() {
        return Err(ImportError::MissingHeader {
            file: csl_file.name.clone(),
        });
    }
    let column = |name: &str| {
        header
            .iter()
            .position(|field| field.trim_ascii() == name.as_bytes())
    };
    let name_column = column("name").ok_or_else(|| ImportError::MissingColumn {
        file: csl_file.name.clone(),
        column: "name",
    })?;
    let source_column = column("source");
    let alt_names_column = column("alt_names");
    let type_column = column("type");
    let programs_column = column("programs");
    let id_column = column("_id");
    let entity_number_column = column("entity_number");

    let mut entries: Vec<ListEntry> = Vec::new();
    let mut seen_entry_ids: HashMap<String, usize> = HashMap::new();
    let csl_lines = LineNumbers::new(contents);
    for record in read_records(csl_file, contents, true)? {
        let line = csl_lines.line_of(&record);
        let mut warn = |reason: String| {
            warnings.push(ImportWarning {
                file: csl_file.name.clone(),
                line,
                reason,
            });
        };
        if record.len() != header.len() {
            warn(format!(
                "expected {} columns, found {}",
                header.len(),
                record.len()
            ));
            continue;
        }
        let text = |index: Option<usize>| -> Result<String, String> {
            let Some(index) = index else {
                return Ok(String::new());
            };
            std::str::from_utf8(record.get(index).unwrap_or_default())
                .map(|value| value.trim().to_owned())
                .map_err(|_| format!("column {} is not valid UTF-8", index + 1))
        };
        let fields = (|| {
            Ok::<_, String>((
                text(Some(name_column))?,
                text(source_column)?,
                text(alt_names_column)?,
                text(type_column)?,
                text(programs_column)?,
                text(id_column)?,
                text(entity_number_column)?,
            ))
        })();
        let (name_field, source, alt_names, entry_type, programs, row_id, entity_number) =
            match fields {
                Ok(fields) => fields,
                Err(reason) => {
                    warn(reason);
                    continue;
                }
            };
        let mut names = split_csl_names(&name_field);
        if names.is_empty() {
            warn("the name is empty".to_owned());
            continue;
        }
        let primary_name = names.remove(0);
        let mut aliases = names;
        aliases.extend(split_csl_names(&alt_names));
        let entry_id = if !row_id.is_empty() {
            format!("csl:{row_id}")
        } else if !entity_number.is_empty() {
            format!("csl:{entity_number}")
        } else {
            // Rows without any identifier get one derived from what they say,
            // so the same row keeps the same id across list versions.
            let digest = Sha256::digest(format!("{source}\u{1F}{name_field}").as_bytes());
            format!("csl:{}", hex::encode(&digest[..8]))
        };
        // The CSL repeats a party on one row per address. A repeated id (or,
        // for rows without one, a repeated source and name) is the same party,
        // so its names join the first row's entry instead of a new entry.
        if let Some(&entry_index) = seen_entry_ids.get(&entry_id) {
            let entry: &mut ListEntry = &mut entries[entry_index];
            for name in std::iter::once(primary_name).chain(aliases) {
                if name != entry.primary_name && !entry.aliases.contains(&name) {
                    entry.aliases.push(name);
                }
            }
            continue;
        }
        seen_entry_ids.insert(entry_id.clone(), entries.len());
        entries.push(ListEntry {
            entry_id,
            primary_name,
            aliases,
            entry_type: (!entry_type.is_empty()).then(|| entry_type.to_ascii_lowercase()),
            programs: (!programs.is_empty()).then_some(programs),
            source_list: if source.is_empty() {
                "Consolidated Screening List".to_owned()
            } else {
                source
            },
            source_file: csl_file.name.clone(),
            source_line: line,
        });
    }
    let version = SourceVersion {
        format_label: "csl",
        sha256_prefix: csl_file.sha256_prefix(),
        accepted_rows: entries.len(),
    };
    Ok((entries, version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dos_end_of_file_byte_is_removed_only_at_the_end() {
        let cases: [(&[u8], &[u8]); 4] = [
            (b"a,b\r\n\x1a", b"a,b\r\n"),
            (b"a,b\r\n\x1a\r\n", b"a,b\r\n"),
            (b"a,b\r\n", b"a,b\r\n"),
            (b"a\x1a,b\r\n", b"a\x1a,b\r\n"),
        ];
        for (input, expected) in cases {
            assert_eq!(without_dos_end_of_file(input), expected);
        }
    }

    #[test]
    fn line_numbers_are_right_for_lf_and_crlf_files() {
        for contents in [&b"a,b\nc,d\n\ne,f\n"[..], &b"a,b\r\nc,d\r\n\r\ne,f\r\n"[..]] {
            let lines = LineNumbers::new(contents);
            let file = ListFile::new("test.csv", contents);
            let numbers: Vec<u64> = read_records(&file, contents, false)
                .unwrap()
                .iter()
                .map(|record| lines.line_of(record))
                .collect();
            assert_eq!(
                numbers,
                [1, 2, 4],
                "{:?}",
                String::from_utf8_lossy(contents)
            );
        }
    }

    #[test]
    fn csl_name_fields_split_into_names() {
        let cases = [
            (
                "Sinobright Import and Export Company; and any successor, sub-unit, or subsidiary thereof",
                vec!["Sinobright Import and Export Company"],
            ),
            (
                "Hebei Semiconductor Research Institute; HSRI; and CETC Research Institute 13",
                vec![
                    "Hebei Semiconductor Research Institute",
                    "HSRI",
                    "CETC Research Institute 13",
                ],
            ),
            ("", vec![]),
            (" ; ", vec![]),
        ];
        for (field, expected) in cases {
            assert_eq!(split_csl_names(field), expected, "`{field}`");
        }
    }
}
