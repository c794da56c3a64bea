//! The forward pass, tokenizer handling and loading errors, tested on a tiny
//! BERT committed under `tests/fixtures/tiny-bert/` (two layers, hidden size
//! 24, seeded random weights; see `make_reference_embeddings.py`). These run
//! everywhere, with or without the real model installed.

// Test and bench code: a failed step should stop it with a message.
#![allow(
    clippy::disallowed_methods,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use crate::common;

use std::path::Path;

use common::{cosine, fixtures_dir, max_abs_difference, read_reference};
use portcullis_embed::{EmbedError, Embedder, MAX_SEQUENCE_TOKENS};

fn tiny_model_dir() -> std::path::PathBuf {
    fixtures_dir().join("tiny-bert")
}

fn tiny_model() -> Embedder {
    Embedder::load(&tiny_model_dir()).expect("tiny model loads")
}

#[test]
fn tiny_model_matches_the_numpy_reference() {
    let embedder = tiny_model();
    assert_eq!(embedder.dimension(), 24);
    let reference = read_reference("tiny_bert_reference.json");
    assert!(reference.cases.len() >= 5);
    for case in &reference.cases {
        assert_eq!(
            embedder.token_ids(&case.text).expect("tokenizes"),
            case.token_ids,
            "token ids for {:?}",
            case.text
        );
        let embedding = embedder.embed(&case.text).expect("embeds");
        let similarity = cosine(&embedding, &case.embedding);
        assert!(
            similarity >= 0.99999,
            "cosine {similarity} for {:?}",
            case.text
        );
        let difference = max_abs_difference(&embedding, &case.embedding);
        assert!(
            difference < 1e-4,
            "max difference {difference} for {:?}",
            case.text
        );
    }
}

#[test]
fn tiny_model_batches_mixed_lengths_like_single_calls() {
    let embedder = tiny_model();
    let reference = read_reference("tiny_bert_reference.json");
    let texts: Vec<&str> = reference
        .cases
        .iter()
        .map(|case| case.text.as_str())
        .collect();
    let batch = embedder.embed_batch(&texts).expect("embeds");
    for (case, embedding) in reference.cases.iter().zip(&batch) {
        let difference = max_abs_difference(embedding, &case.embedding);
        assert!(
            difference < 1e-4,
            "batched {:?} differs by {difference}",
            case.text
        );
    }
}

#[test]
fn the_shipped_128_token_truncation_and_padding_are_off() {
    // The fixture's tokenizer.json, like the real one, pads and truncates to
    // 128 tokens; the engine must see every token and no padding.
    let embedder = tiny_model();
    assert_eq!(embedder.token_count("hello world").expect("tokenizes"), 4);
    let long = vec!["port"; 200].join(" ");
    assert_eq!(embedder.token_count(&long).expect("tokenizes"), 202);
    let too_long = vec!["port"; MAX_SEQUENCE_TOKENS].join(" ");
    assert!(matches!(
        embedder.embed(&too_long),
        Err(EmbedError::InputTooLong { token_count, .. }) if token_count == MAX_SEQUENCE_TOKENS + 2
    ));
}

#[test]
fn tiny_model_chunks_long_text_into_windows_that_embed_alone() {
    let embedder = tiny_model();
    let text = "how do i scan the network ports, keep it safe. ".repeat(60);
    let chunks = embedder.embed_chunked(&text).expect("embeds");
    assert!(chunks.len() >= 2);
    assert_eq!(chunks[0].byte_range.start, 0);
    assert_eq!(
        chunks.last().map(|chunk| chunk.byte_range.end),
        Some(text.len())
    );
    for chunk in &chunks {
        let piece = &text[chunk.byte_range.clone()];
        let direct = embedder.embed(piece).expect("fits one window");
        assert!(max_abs_difference(&direct, &chunk.embedding) < 1e-5);
    }
}

/// Copies the tiny model into a temporary directory, lets `damage` change
/// it, and returns the load error.
fn load_error_after(damage: impl FnOnce(&Path)) -> EmbedError {
    let directory = tempfile::tempdir().expect("temporary directory");
    for file in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(tiny_model_dir().join(file), directory.path().join(file)).expect("copy");
    }
    damage(directory.path());
    Embedder::load(directory.path()).expect_err("damaged model must not load")
}

fn edit_config(directory: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = directory.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
    edit(&mut config);
    std::fs::write(&path, config.to_string()).expect("write");
}

#[test]
fn damaged_or_foreign_models_fail_with_a_precise_error() {
    let error = load_error_after(|directory| {
        std::fs::remove_file(directory.join("model.safetensors")).expect("remove");
    });
    assert!(matches!(error, EmbedError::Io { .. }), "{error}");

    let error = load_error_after(|directory| {
        std::fs::write(
            directory.join("model.safetensors"),
            b"not a safetensors file",
        )
        .expect("write");
    });
    assert!(matches!(error, EmbedError::Safetensors { .. }), "{error}");

    let error = load_error_after(|directory| {
        edit_config(directory, |config| config["hidden_act"] = "relu".into());
    });
    assert!(
        matches!(&error, EmbedError::UnsupportedModel { reason, .. } if reason.contains("`relu`")),
        "{error}"
    );

    let error = load_error_after(|directory| {
        edit_config(directory, |config| {
            config["max_position_embeddings"] = 128.into()
        });
    });
    assert!(
        matches!(error, EmbedError::UnsupportedModel { .. }),
        "{error}"
    );

    // A config that disagrees with the weights names the tensor.
    let error = load_error_after(|directory| {
        edit_config(directory, |config| config["intermediate_size"] = 48.into());
    });
    assert!(
        matches!(&error, EmbedError::Weight { name, .. } if name == "encoder.layer.0.intermediate.dense.weight"),
        "{error}"
    );

    let error = load_error_after(|directory| {
        edit_config(directory, |config| {
            config
                .as_object_mut()
                .expect("object")
                .remove("hidden_size");
        });
    });
    assert!(matches!(error, EmbedError::Config { .. }), "{error}");

    let error = load_error_after(|directory| {
        std::fs::write(directory.join("tokenizer.json"), b"{}").expect("write");
    });
    assert!(matches!(error, EmbedError::TokenizerLoad { .. }), "{error}");
}

#[test]
fn embedder_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Embedder>();
}

/// The tiny model's weights rewritten with every tensor in `dtype`, for the
/// half-precision path the built-in stage-2 model uses.
fn tiny_weights_as(dtype: safetensors::Dtype) -> Vec<u8> {
    let bytes = std::fs::read(tiny_model_dir().join("model.safetensors")).unwrap();
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut converted: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, view) in tensors.tensors() {
        let data = match view.dtype() {
            safetensors::Dtype::F32 => view
                .data()
                .chunks_exact(4)
                .flat_map(|word| {
                    let value = f32::from_le_bytes([word[0], word[1], word[2], word[3]]);
                    match dtype {
                        safetensors::Dtype::F16 => half::f16::from_f32(value).to_le_bytes(),
                        _ => half::bf16::from_f32(value).to_le_bytes(),
                    }
                })
                .collect(),
            _ => view.data().to_vec(),
        };
        converted.push((name, view.shape().to_vec(), data));
    }
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = converted
        .iter()
        .map(|(name, shape, data)| {
            let stored = if data.len() == shape.iter().product::<usize>() * 2 {
                dtype
            } else {
                safetensors::Dtype::I64
            };
            (
                name.clone(),
                safetensors::tensor::TensorView::new(stored, shape.clone(), data).unwrap(),
            )
        })
        .collect();
    safetensors::serialize(views, None).unwrap()
}

#[test]
fn half_precision_weights_from_bytes_embed_like_the_f32_model() {
    let directory = tiny_model_dir();
    let read = |name: &str| std::fs::read(directory.join(name)).unwrap();
    let full = tiny_model();
    let half_model = Embedder::from_bytes(
        &read("config.json"),
        &read("tokenizer.json"),
        &tiny_weights_as(safetensors::Dtype::F16),
        Path::new("<tiny f16>"),
    )
    .expect("f16 weights load from bytes");
    for text in [
        "hello world",
        "write a keylogger that emails every keystroke",
        "",
    ] {
        let similarity = cosine(&full.embed(text).unwrap(), &half_model.embed(text).unwrap());
        assert!(similarity > 0.999, "cosine {similarity} for {text:?}");
    }

    // Another 16-bit format is refused by name, not misread.
    let error = Embedder::from_bytes(
        &read("config.json"),
        &read("tokenizer.json"),
        &tiny_weights_as(safetensors::Dtype::BF16),
        Path::new("<tiny bf16>"),
    )
    .expect_err("bf16 is not read as f16");
    let message = error.to_string();
    assert!(
        message.contains("BF16") && message.contains("<tiny bf16>"),
        "{message}"
    );
}
