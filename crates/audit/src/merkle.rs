//! RFC 6962 / RFC 9162 Merkle tree hashing, the append-only frontier, and
//! inclusion and consistency proofs.
//!
//! Everything here is pure computation over 32-byte SHA-256 hashes; the
//! database and the entry format live elsewhere.

use sha2::{Digest, Sha256};

/// A SHA-256 digest: a leaf hash, an interior node hash or a tree root.
pub type Hash = [u8; 32];

/// The root of the empty tree: SHA-256 of the empty string (RFC 6962 §2.1).
pub const EMPTY_TREE_ROOT: Hash = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// Hashes one leaf as SHA-256(0x00 ‖ data).
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x00]);
    hasher.update(data);
    hasher.finalize().into()
}

/// Hashes an interior node as SHA-256(0x01 ‖ left ‖ right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x01]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// Why a frontier or a proof could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MerkleError {
    #[error("a frontier of size {size} needs {expected} hashes, got {actual}")]
    FrontierShape {
        size: u64,
        expected: u32,
        actual: usize,
    },
    #[error("index {index} is outside a tree of size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("tree size {old_size} is larger than tree size {new_size}")]
    SizesOutOfOrder { old_size: u64, new_size: u64 },
    #[error("the proof has the wrong number of hashes")]
    ProofLength,
    #[error("the proof does not lead to the expected root")]
    RootMismatch,
}

/// The compact range `[0, size)` of an append-only tree: the roots of the
/// perfect subtrees that make up the tree, largest (leftmost) first. It has
/// one hash per set bit of `size`, which is all a writer needs to append a
/// leaf in O(log n) and to compute the root.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Frontier {
    size: u64,
    subtree_roots: Vec<Hash>,
}

impl Frontier {
    /// The frontier of the empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds a frontier from its stored parts, checking that the number of
    /// subtree roots matches the size.
    pub fn from_parts(size: u64, subtree_roots: Vec<Hash>) -> Result<Self, MerkleError> {
        if subtree_roots.len() != size.count_ones() as usize {
            return Err(MerkleError::FrontierShape {
                size,
                expected: size.count_ones(),
                actual: subtree_roots.len(),
            });
        }
        Ok(Self {
            size,
            subtree_roots,
        })
    }

    /// The number of leaves appended so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The perfect-subtree roots, largest first.
    pub fn subtree_roots(&self) -> &[Hash] {
        &self.subtree_roots
    }

    /// Appends one leaf hash.
    pub fn append(&mut self, leaf: Hash) {
        // Each trailing one bit of the old size is a perfect subtree of the
        // same height as the carry, so it merges with it, exactly like binary
        // addition.
        let mut carry = leaf;
        for _ in 0..self.size.trailing_ones() {
            match self.subtree_roots.pop() {
                Some(left) => carry = node_hash(&left, &carry),
                None => break,
            }
        }
        self.subtree_roots.push(carry);
        self.size += 1;
    }

    /// The RFC 6962 Merkle tree hash of the leaves appended so far.
    pub fn root(&self) -> Hash {
        let mut roots = self.subtree_roots.iter().rev();
        let Some(last) = roots.next() else {
            return EMPTY_TREE_ROOT;
        };
        roots.fold(*last, |right, left| node_hash(left, &right))
    }
}

/// The largest power of two strictly smaller than `n` (for `n >= 2`).
fn split_point(n: usize) -> usize {
    debug_assert!(n >= 2);
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

/// The RFC 6962 Merkle tree hash of a list of leaf hashes.
pub fn tree_root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => EMPTY_TREE_ROOT,
        1 => leaves[0],
        n => {
            let k = split_point(n);
            node_hash(&tree_root(&leaves[..k]), &tree_root(&leaves[k..]))
        }
    }
}

/// The RFC 6962 audit path for leaf `index` in the tree made of `leaves`.
pub fn inclusion_proof(index: u64, leaves: &[Hash]) -> Result<Vec<Hash>, MerkleError> {
    let size = leaves.len() as u64;
    if index >= size {
        return Err(MerkleError::IndexOutOfRange { index, size });
    }
    let mut proof = Vec::new();
    inclusion_path(index as usize, leaves, &mut proof);
    Ok(proof)
}

fn inclusion_path(index: usize, leaves: &[Hash], proof: &mut Vec<Hash>) {
    let n = leaves.len();
    if n <= 1 {
        return;
    }
    let k = split_point(n);
    if index < k {
        inclusion_path(index, &leaves[..k], proof);
        proof.push(tree_root(&leaves[k..]));
    } else {
        inclusion_path(index - k, &leaves[k..], proof);
        proof.push(tree_root(&leaves[..k]));
    }
}

/// The RFC 6962 consistency proof between the first `old_size` leaves and all
/// of `leaves`.
pub fn consistency_proof(old_size: u64, leaves: &[Hash]) -> Result<Vec<Hash>, MerkleError> {
    let new_size = leaves.len() as u64;
    if old_size > new_size {
        return Err(MerkleError::SizesOutOfOrder { old_size, new_size });
    }
    let mut proof = Vec::new();
    if old_size == 0 || old_size == new_size {
        return Ok(proof);
    }
    consistency_subproof(old_size as usize, leaves, true, &mut proof);
    Ok(proof)
}

fn consistency_subproof(
    m: usize,
    leaves: &[Hash],
    old_is_whole_subtree: bool,
    proof: &mut Vec<Hash>,
) {
    let n = leaves.len();
    if m == n {
        if !old_is_whole_subtree {
            proof.push(tree_root(leaves));
        }
        return;
    }
    let k = split_point(n);
    if m <= k {
        consistency_subproof(m, &leaves[..k], old_is_whole_subtree, proof);
        proof.push(tree_root(&leaves[k..]));
    } else {
        consistency_subproof(m - k, &leaves[k..], false, proof);
        proof.push(tree_root(&leaves[..k]));
    }
}

/// Computes the root implied by an inclusion proof (RFC 9162 §2.1.3.2).
pub fn root_from_inclusion_proof(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
) -> Result<Hash, MerkleError> {
    if index >= size {
        return Err(MerkleError::IndexOutOfRange { index, size });
    }
    let mut fn_ = index;
    let mut sn = size - 1;
    let mut root = *leaf;
    for sibling in proof {
        if sn == 0 {
            return Err(MerkleError::ProofLength);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            root = node_hash(sibling, &root);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            root = node_hash(&root, sibling);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(MerkleError::ProofLength);
    }
    Ok(root)
}

/// Checks that `leaf` is at `index` in the tree of `size` leaves whose root
/// is `root`.
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), MerkleError> {
    if root_from_inclusion_proof(index, size, leaf, proof)? == *root {
        Ok(())
    } else {
        Err(MerkleError::RootMismatch)
    }
}

/// Checks that the tree of `old_size` leaves with root `old_root` is a prefix
/// of the tree of `new_size` leaves with root `new_root` (RFC 9162 §2.1.4.2).
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), MerkleError> {
    if old_size > new_size {
        return Err(MerkleError::SizesOutOfOrder { old_size, new_size });
    }
    if old_size == new_size {
        if !proof.is_empty() {
            return Err(MerkleError::ProofLength);
        }
        return if old_root == new_root {
            Ok(())
        } else {
            Err(MerkleError::RootMismatch)
        };
    }
    if old_size == 0 {
        // Every tree extends the empty tree; there is nothing to prove.
        return if proof.is_empty() {
            Ok(())
        } else {
            Err(MerkleError::ProofLength)
        };
    }
    let Some((first, rest)) = proof.split_first() else {
        return Err(MerkleError::ProofLength);
    };
    // When the old tree is a perfect subtree, its root is the proof's
    // implicit first element.
    let (seed, rest): (Hash, &[Hash]) = if old_size.is_power_of_two() {
        (*old_root, proof)
    } else {
        (*first, rest)
    };
    let mut fn_ = old_size - 1;
    let mut sn = new_size - 1;
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let mut old_acc = seed;
    let mut new_acc = seed;
    for sibling in rest {
        if sn == 0 {
            return Err(MerkleError::ProofLength);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            old_acc = node_hash(sibling, &old_acc);
            new_acc = node_hash(sibling, &new_acc);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            new_acc = node_hash(&new_acc, sibling);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(MerkleError::ProofLength);
    }
    if old_acc == *old_root && new_acc == *new_root {
        Ok(())
    } else {
        Err(MerkleError::RootMismatch)
    }
}
