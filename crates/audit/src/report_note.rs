//! A signed statement that a report file is the one the operator issued:
//! a signed note (by the audit log's key) whose text names the SHA-256 of
//! the report's exact bytes. Checkpoints prove each cited entry; this note
//! covers everything else in the report (counts, the preview, the prose),
//! so a changed byte anywhere fails verification.
//!
//! The note's first line is not a log origin and its second is not a tree
//! size, so it can never be mistaken for a checkpoint.

use sha2::{Digest, Sha256};

use crate::note::{NoteError, NoteSigner, NoteVerifier};

/// The first line of a report note's text.
pub const REPORT_NOTE_HEADER: &str = "portcullis report v1";

/// Why a report does not match its note.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportNoteError {
    #[error(transparent)]
    Note(#[from] NoteError),
    #[error("the note is not a Portcullis report note")]
    NotAReportNote,
    #[error("the report's SHA-256 is {actual}, but the signed note names {signed}")]
    Mismatch { signed: String, actual: String },
}

fn note_text(report: &[u8]) -> String {
    format!(
        "{REPORT_NOTE_HEADER}\nsha256 {}\n",
        hex::encode(Sha256::digest(report))
    )
}

/// Signs the report's bytes.
pub fn sign_report(signer: &NoteSigner, report: &[u8]) -> Result<String, NoteError> {
    signer.sign_note(&note_text(report))
}

/// Checks that `note` is signed by `verifier` and names `report`'s hash.
pub fn verify_report(
    note: &str,
    verifier: &NoteVerifier,
    report: &[u8],
) -> Result<(), ReportNoteError> {
    let text = verifier.verify_note(note)?;
    let mut lines = text.lines();
    if lines.next() != Some(REPORT_NOTE_HEADER) {
        return Err(ReportNoteError::NotAReportNote);
    }
    let signed = lines
        .next()
        .and_then(|line| line.strip_prefix("sha256 "))
        .ok_or(ReportNoteError::NotAReportNote)?;
    let actual = hex::encode(Sha256::digest(report));
    if signed != actual {
        return Err(ReportNoteError::Mismatch {
            signed: signed.to_owned(),
            actual,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::Checkpoint;

    #[test]
    fn a_report_note_checks_the_exact_bytes_and_the_key() {
        let signer = NoteSigner::from_seed("portcullis", [7; 32]).unwrap();
        let other = NoteSigner::from_seed("portcullis", [8; 32]).unwrap();
        let report = b"{\"report\": \"order\"}\n";
        let note = sign_report(&signer, report).unwrap();
        assert_eq!(verify_report(&note, &signer.verifier(), report), Ok(()));
        let cases: [(&str, &[u8], &NoteVerifier); 3] = [
            (
                "a changed byte",
                b"{\"report\": \"Order\"}\n",
                &signer.verifier(),
            ),
            (
                "a missing newline",
                b"{\"report\": \"order\"}",
                &signer.verifier(),
            ),
            ("another key", report, &other.verifier()),
        ];
        for (label, bytes, verifier) in cases {
            assert!(verify_report(&note, verifier, bytes).is_err(), "{label}");
        }
        // It is not a checkpoint, and a checkpoint is not a report note.
        let text = signer.verifier().verify_note(&note).unwrap().to_owned();
        assert!(Checkpoint::from_note_text(&text).is_err());
        let checkpoint = Checkpoint {
            origin: "portcullis/local".into(),
            tree_size: 3,
            root_hash: [0; 32],
        };
        let signed = checkpoint.sign(&signer).unwrap();
        assert_eq!(
            verify_report(&signed, &signer.verifier(), report),
            Err(ReportNoteError::NotAReportNote)
        );
    }
}
