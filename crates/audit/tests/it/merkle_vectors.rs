//! RFC 6962 Merkle hashing and proofs against the published test vectors of
//! transparency-dev/merkle (the same vectors as certificate-transparency-go),
//! plus exhaustive cross-checks of the proof algorithms on small trees.

#![allow(
    clippy::disallowed_methods,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use portcullis_audit::merkle::{
    EMPTY_TREE_ROOT, Frontier, Hash, MerkleError, consistency_proof, inclusion_proof, leaf_hash,
    tree_root, verify_consistency, verify_inclusion,
};
use proptest::prelude::*;

fn h(hex_text: &str) -> Hash {
    let mut hash = [0u8; 32];
    hex::decode_to_slice(hex_text, &mut hash).unwrap();
    hash
}

/// The eight leaf inputs of the published vectors.
fn leaf_inputs() -> Vec<Vec<u8>> {
    [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
    .iter()
    .map(|text| hex::decode(text).unwrap())
    .collect()
}

/// Roots of the trees made of the first n leaves, for n = 0..=8.
fn published_roots() -> Vec<Hash> {
    vec![
        EMPTY_TREE_ROOT,
        h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
        h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
        h("aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77"),
        h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        h("4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4"),
        h("76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef"),
        h("ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c"),
        h("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"),
    ]
}

fn leaf_hashes() -> Vec<Hash> {
    leaf_inputs().iter().map(|input| leaf_hash(input)).collect()
}

#[test]
fn empty_tree_root_is_sha256_of_nothing() {
    assert_eq!(
        EMPTY_TREE_ROOT,
        h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    );
}

#[test]
fn published_leaf_hashes() {
    let expected = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
        "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
        "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
        "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
    ];
    for (leaf, expected) in leaf_hashes().iter().zip(expected) {
        assert_eq!(*leaf, h(expected));
    }
}

#[test]
fn published_roots_from_the_frontier_and_from_the_full_tree() {
    let leaves = leaf_hashes();
    let roots = published_roots();
    let mut frontier = Frontier::new();
    assert_eq!(frontier.root(), roots[0]);
    for size in 1..=8 {
        frontier.append(leaves[size - 1]);
        assert_eq!(frontier.root(), roots[size], "frontier root at size {size}");
        assert_eq!(
            tree_root(&leaves[..size]),
            roots[size],
            "tree root at size {size}"
        );
        assert_eq!(frontier.subtree_roots().len(), size.count_ones() as usize);
    }
}

#[test]
fn published_compact_ranges() {
    // The compact range of size 7 is [hash(0..4), hash(4..6), leaf 6].
    let leaves = leaf_hashes();
    let mut frontier = Frontier::new();
    for leaf in &leaves[..7] {
        frontier.append(*leaf);
    }
    assert_eq!(
        frontier.subtree_roots(),
        &[
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
            h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
        ]
    );
}

/// (leaf index, tree size, audit path) from the published vectors.
fn published_inclusion_proofs() -> Vec<(u64, usize, Vec<Hash>)> {
    vec![
        (
            0,
            8,
            vec![
                h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
                h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
            ],
        ),
        (
            5,
            8,
            vec![
                h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
                h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
                h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
            ],
        ),
        (
            2,
            3,
            vec![h(
                "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            )],
        ),
        (
            1,
            5,
            vec![
                h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
                h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            ],
        ),
        (0, 1, vec![]),
    ]
}

/// (old size, new size, consistency path) from the published vectors.
fn published_consistency_proofs() -> Vec<(u64, usize, Vec<Hash>)> {
    vec![
        (1, 1, vec![]),
        (
            1,
            8,
            vec![
                h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
                h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
            ],
        ),
        (
            6,
            8,
            vec![
                h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
                h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
                h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
            ],
        ),
        (
            2,
            5,
            vec![
                h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            ],
        ),
        (
            6,
            7,
            vec![
                h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
                h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
                h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
            ],
        ),
    ]
}

#[test]
fn published_inclusion_proofs_are_generated_and_verify() {
    let leaves = leaf_hashes();
    let roots = published_roots();
    for (index, size, expected_path) in published_inclusion_proofs() {
        let generated = inclusion_proof(index, &leaves[..size]).unwrap();
        assert_eq!(
            generated, expected_path,
            "path for leaf {index} in tree {size}"
        );
        verify_inclusion(
            index,
            size as u64,
            &leaves[index as usize],
            &expected_path,
            &roots[size],
        )
        .unwrap();
    }
}

#[test]
fn published_consistency_proofs_are_generated_and_verify() {
    let leaves = leaf_hashes();
    let roots = published_roots();
    for (old_size, new_size, expected_path) in published_consistency_proofs() {
        let generated = consistency_proof(old_size, &leaves[..new_size]).unwrap();
        assert_eq!(generated, expected_path, "proof {old_size} -> {new_size}");
        verify_consistency(
            old_size,
            new_size as u64,
            &roots[old_size as usize],
            &roots[new_size],
            &expected_path,
        )
        .unwrap();
    }
}

fn flip_bit(hash: &Hash) -> Hash {
    let mut flipped = *hash;
    flipped[0] ^= 8;
    flipped
}

#[test]
fn corrupted_inclusion_proofs_are_rejected() {
    let leaves = leaf_hashes();
    let roots = published_roots();
    let some_hash = h("abacaba000000000000000000000000000000000000000000060061e00123456");
    for (index, size, path) in published_inclusion_proofs()
        .into_iter()
        .filter(|(_, size, _)| *size > 1)
    {
        let leaf = leaves[index as usize];
        let root = roots[size];
        let size = size as u64;
        let mut probes: Vec<(String, u64, u64, Hash, Vec<Hash>, Hash)> = vec![
            (
                "index + 1".into(),
                index + 1,
                size,
                leaf,
                path.clone(),
                root,
            ),
            (
                "index ^ 2".into(),
                index ^ 2,
                size,
                leaf,
                path.clone(),
                root,
            ),
            ("size * 2".into(), index, size * 2, leaf, path.clone(), root),
            ("size / 2".into(), index, size / 2, leaf, path.clone(), root),
            (
                "wrong leaf".into(),
                index,
                size,
                some_hash,
                path.clone(),
                root,
            ),
            (
                "empty root".into(),
                index,
                size,
                leaf,
                path.clone(),
                EMPTY_TREE_ROOT,
            ),
            (
                "random root".into(),
                index,
                size,
                leaf,
                path.clone(),
                some_hash,
            ),
            (
                "trailing root".into(),
                index,
                size,
                leaf,
                [path.clone(), vec![root]].concat(),
                root,
            ),
            (
                "preceding root".into(),
                index,
                size,
                leaf,
                [vec![root], path.clone()].concat(),
                root,
            ),
            (
                "removed component".into(),
                index,
                size,
                leaf,
                path[..path.len() - 1].to_vec(),
                root,
            ),
        ];
        if index > 0 {
            probes.push((
                "index - 1".into(),
                index - 1,
                size,
                leaf,
                path.clone(),
                root,
            ));
        }
        for position in 0..path.len() {
            let mut wrong = path.clone();
            wrong[position] = flip_bit(&wrong[position]);
            probes.push((
                format!("modified path[{position}]"),
                index,
                size,
                leaf,
                wrong,
                root,
            ));
        }
        for (description, index, size, leaf, path, root) in probes {
            assert!(
                verify_inclusion(index, size, &leaf, &path, &root).is_err(),
                "accepted `{description}` for leaf {index} in tree {size}"
            );
        }
    }
}

#[test]
fn corrupted_consistency_proofs_are_rejected() {
    let roots = published_roots();
    for (old_size, new_size, path) in published_consistency_proofs()
        .into_iter()
        .filter(|(_, _, path)| !path.is_empty())
    {
        let old_root = roots[old_size as usize];
        let new_root = roots[new_size];
        let new_size = new_size as u64;
        let wrong_root = leaf_hash(b"WrongRoot");
        let mut probes: Vec<(String, u64, u64, Hash, Hash, Vec<Hash>)> = vec![
            (
                "old - 1".into(),
                old_size - 1,
                new_size,
                old_root,
                new_root,
                path.clone(),
            ),
            (
                "old + 1".into(),
                old_size + 1,
                new_size,
                old_root,
                new_root,
                path.clone(),
            ),
            (
                "old ^ 2".into(),
                old_size ^ 2,
                new_size,
                old_root,
                new_root,
                path.clone(),
            ),
            (
                "new * 2".into(),
                old_size,
                new_size * 2,
                old_root,
                new_root,
                path.clone(),
            ),
            (
                "new / 2".into(),
                old_size,
                new_size / 2,
                old_root,
                new_root,
                path.clone(),
            ),
            (
                "wrong old root".into(),
                old_size,
                new_size,
                wrong_root,
                new_root,
                path.clone(),
            ),
            (
                "wrong new root".into(),
                old_size,
                new_size,
                old_root,
                wrong_root,
                path.clone(),
            ),
            (
                "swapped roots".into(),
                old_size,
                new_size,
                new_root,
                old_root,
                path.clone(),
            ),
            (
                "empty proof".into(),
                old_size,
                new_size,
                old_root,
                new_root,
                vec![],
            ),
            (
                "trailing old root".into(),
                old_size,
                new_size,
                old_root,
                new_root,
                [path.clone(), vec![old_root]].concat(),
            ),
            (
                "preceding new root".into(),
                old_size,
                new_size,
                old_root,
                new_root,
                [vec![new_root], path.clone()].concat(),
            ),
            (
                "preceding path[0]".into(),
                old_size,
                new_size,
                old_root,
                new_root,
                [vec![path[0]], path.clone()].concat(),
            ),
            (
                "truncated".into(),
                old_size,
                new_size,
                old_root,
                new_root,
                path[..path.len() - 1].to_vec(),
            ),
        ];
        for position in 0..path.len() {
            let mut wrong = path.clone();
            wrong[position][0] ^= 16;
            probes.push((
                format!("modified path[{position}]"),
                old_size,
                new_size,
                old_root,
                new_root,
                wrong,
            ));
        }
        for (description, old_size, new_size, old_root, new_root, path) in probes {
            assert!(
                verify_consistency(old_size, new_size, &old_root, &new_root, &path).is_err(),
                "accepted `{description}` for {old_size} -> {new_size}"
            );
        }
    }
}

#[test]
fn trivial_consistency_cases() {
    let a = leaf_hash(b"a");
    let b = leaf_hash(b"b");
    // Each row: old size, new size, old root, new root, proof, accepted.
    let cases: Vec<(u64, u64, Hash, Hash, Vec<Hash>, bool)> = vec![
        (0, 0, a, a, vec![], true),
        (0, 0, a, b, vec![], false),
        (0, 1, a, b, vec![], true),
        (1, 1, b, b, vec![], true),
        (1, 1, a, b, vec![], false),
        (1, 0, a, b, vec![], false),
        (2, 1, a, b, vec![], false),
        (1, 2, a, b, vec![], false),
        (0, 1, a, a, vec![EMPTY_TREE_ROOT], false),
        (1, 1, a, a, vec![EMPTY_TREE_ROOT], false),
    ];
    for (old_size, new_size, old_root, new_root, proof, accepted) in cases {
        assert_eq!(
            verify_consistency(old_size, new_size, &old_root, &new_root, &proof).is_ok(),
            accepted,
            "{old_size} -> {new_size}"
        );
    }
    assert_eq!(
        verify_inclusion(0, 0, &a, &[], &a),
        Err(MerkleError::IndexOutOfRange { index: 0, size: 0 })
    );
}

#[test]
fn every_proof_in_every_small_tree_checks() {
    let leaves: Vec<Hash> = (0u32..70).map(|i| leaf_hash(&i.to_be_bytes())).collect();
    let mut frontier = Frontier::new();
    for size in 1..=leaves.len() {
        frontier.append(leaves[size - 1]);
        let tree = &leaves[..size];
        let root = tree_root(tree);
        assert_eq!(frontier.root(), root);
        for index in 0..size as u64 {
            let path = inclusion_proof(index, tree).unwrap();
            verify_inclusion(index, size as u64, &tree[index as usize], &path, &root).unwrap();
        }
        for old_size in 0..=size as u64 {
            let path = consistency_proof(old_size, tree).unwrap();
            let old_root = tree_root(&tree[..old_size as usize]);
            verify_consistency(old_size, size as u64, &old_root, &root, &path).unwrap();
        }
    }
}

#[test]
fn frontier_rejects_the_wrong_number_of_subtree_roots() {
    assert!(Frontier::from_parts(5, vec![[0; 32]]).is_err());
    assert!(Frontier::from_parts(5, vec![[0; 32], [1; 32]]).is_ok());
}

proptest! {
    #[test]
    fn frontier_matches_the_recursive_root_and_proofs_check(
        leaf_inputs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..16), 1..300),
        index_seed in any::<u64>(),
        old_size_seed in any::<u64>(),
    ) {
        let leaves: Vec<Hash> = leaf_inputs.iter().map(|input| leaf_hash(input)).collect();
        let mut frontier = Frontier::new();
        for leaf in &leaves {
            frontier.append(*leaf);
        }
        let root = tree_root(&leaves);
        prop_assert_eq!(frontier.root(), root);
        let size = leaves.len() as u64;
        let index = index_seed % size;
        let path = inclusion_proof(index, &leaves).unwrap();
        prop_assert!(verify_inclusion(index, size, &leaves[index as usize], &path, &root).is_ok());
        let old_size = old_size_seed % (size + 1);
        let old_root = tree_root(&leaves[..old_size as usize]);
        let path = consistency_proof(old_size, &leaves).unwrap();
        prop_assert!(verify_consistency(old_size, size, &old_root, &root, &path).is_ok());
        let rebuilt = Frontier::from_parts(frontier.size(), frontier.subtree_roots().to_vec()).unwrap();
        prop_assert_eq!(rebuilt.root(), root);
    }
}
