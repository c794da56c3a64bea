//! Element-wise kernels of the forward pass: bias add, layer norm, GELU and
//! softmax.
//!
//! The crate is compiled for the baseline x86-64 target (SSE2 only) and may
//! not use `unsafe`, so these kernels are written as plain loops that LLVM
//! vectorises, and each is run through `pulp::Arch::dispatch`, which selects
//! an AVX2/FMA copy of the loop at run time. Each kernel is a `WithSimd`
//! type whose `with_simd` and helpers are `#[inline(always)]`: that is what
//! gets them compiled inside pulp's target-feature function. (A closure
//! passed to `dispatch` is not inlined there and runs as baseline code.)
//! Reductions keep `LANES` independent partial sums because LLVM does not
//! reorder a single floating-point accumulator.

use pulp::{Arch, Simd, WithSimd};

/// Width of the partial-sum arrays; a multiple of every vector width in use.
const LANES: usize = 16;

/// Runs `kernel` with the widest instruction set the CPU offers.
fn dispatch<Kernel: WithSimd>(arch: Arch, kernel: Kernel) -> Kernel::Output {
    arch.dispatch(kernel)
}

/// Adds `bias` to every row of the row-major matrix `matrix`.
pub(crate) fn add_bias_rows(arch: Arch, matrix: &mut [f32], bias: &[f32]) {
    dispatch(arch, AddBiasRows { matrix, bias });
}

struct AddBiasRows<'a> {
    matrix: &'a mut [f32],
    bias: &'a [f32],
}

impl WithSimd for AddBiasRows<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) {
        for row in self.matrix.chunks_exact_mut(self.bias.len()) {
            for (value, bias_value) in row.iter_mut().zip(self.bias) {
                *value += bias_value;
            }
        }
    }
}

/// Computes `hidden = layer_norm(hidden + update + bias)` row by row, the
/// residual connection and normalisation that close each BERT sub-layer.
pub(crate) fn residual_layer_norm(
    arch: Arch,
    hidden: &mut [f32],
    update: &[f32],
    bias: &[f32],
    gamma: &[f32],
    beta: &[f32],
    epsilon: f32,
) {
    dispatch(
        arch,
        ResidualLayerNorm {
            hidden,
            update,
            bias,
            gamma,
            beta,
            epsilon,
        },
    );
}

struct ResidualLayerNorm<'a> {
    hidden: &'a mut [f32],
    update: &'a [f32],
    bias: &'a [f32],
    gamma: &'a [f32],
    beta: &'a [f32],
    epsilon: f32,
}

impl WithSimd for ResidualLayerNorm<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) {
        let width = self.bias.len();
        for (hidden_row, update_row) in self
            .hidden
            .chunks_exact_mut(width)
            .zip(self.update.chunks_exact(width))
        {
            for ((value, update_value), bias_value) in
                hidden_row.iter_mut().zip(update_row).zip(self.bias)
            {
                *value += update_value + bias_value;
            }
            normalize_row(hidden_row, self.gamma, self.beta, self.epsilon);
        }
    }
}

/// Applies layer normalisation to every row of `matrix` in place.
pub(crate) fn layer_norm_rows(
    arch: Arch,
    matrix: &mut [f32],
    gamma: &[f32],
    beta: &[f32],
    epsilon: f32,
) {
    dispatch(
        arch,
        LayerNormRows {
            matrix,
            gamma,
            beta,
            epsilon,
        },
    );
}

struct LayerNormRows<'a> {
    matrix: &'a mut [f32],
    gamma: &'a [f32],
    beta: &'a [f32],
    epsilon: f32,
}

impl WithSimd for LayerNormRows<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) {
        for row in self.matrix.chunks_exact_mut(self.gamma.len()) {
            normalize_row(row, self.gamma, self.beta, self.epsilon);
        }
    }
}

#[inline(always)]
fn normalize_row(row: &mut [f32], gamma: &[f32], beta: &[f32], epsilon: f32) {
    let count = row.len() as f32;
    let mean = sum(row) / count;
    // Two passes (mean, then squared deviations) rather than E[x²] − E[x]²,
    // which loses precision when the mean is large against the spread.
    let mut partial = [0.0f32; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (accumulator, value) in partial.iter_mut().zip(chunk) {
            let deviation = value - mean;
            *accumulator += deviation * deviation;
        }
    }
    let mut squared_deviations: f32 = partial.iter().sum();
    for value in chunks.remainder() {
        squared_deviations += (value - mean) * (value - mean);
    }
    let inverse_std = 1.0 / (squared_deviations / count + epsilon).sqrt();
    for ((value, gamma_value), beta_value) in row.iter_mut().zip(gamma).zip(beta) {
        *value = (*value - mean) * inverse_std * gamma_value + beta_value;
    }
}

/// Computes `matrix = gelu(matrix + bias)` row by row, with the exact
/// erf-based GELU that BERT uses (not the tanh approximation).
pub(crate) fn bias_gelu_rows(arch: Arch, matrix: &mut [f32], bias: &[f32]) {
    dispatch(arch, BiasGeluRows { matrix, bias });
}

struct BiasGeluRows<'a> {
    matrix: &'a mut [f32],
    bias: &'a [f32],
}

impl WithSimd for BiasGeluRows<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) {
        for row in self.matrix.chunks_exact_mut(self.bias.len()) {
            for (value, bias_value) in row.iter_mut().zip(self.bias) {
                *value = gelu(*value + bias_value);
            }
        }
    }
}

/// Applies softmax to every row of the row-major `matrix` of `width` columns.
pub(crate) fn softmax_rows(arch: Arch, matrix: &mut [f32], width: usize) {
    dispatch(arch, SoftmaxRows { matrix, width });
}

struct SoftmaxRows<'a> {
    matrix: &'a mut [f32],
    width: usize,
}

impl WithSimd for SoftmaxRows<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) {
        for row in self.matrix.chunks_exact_mut(self.width) {
            let maximum = max(row);
            let mut partial = [0.0f32; LANES];
            let mut chunks = row.chunks_exact_mut(LANES);
            for chunk in &mut chunks {
                for (accumulator, value) in partial.iter_mut().zip(chunk.iter_mut()) {
                    *value = exp(*value - maximum);
                    *accumulator += *value;
                }
            }
            let mut total: f32 = partial.iter().sum();
            for value in chunks.into_remainder() {
                *value = exp(*value - maximum);
                total += *value;
            }
            let inverse_total = 1.0 / total;
            for value in row.iter_mut() {
                *value *= inverse_total;
            }
        }
    }
}

/// Writes the mean of the rows of `matrix` into `pooled`, then scales it to
/// unit Euclidean length (sentence-transformers' mean pooling followed by its
/// `Normalize` module).
pub(crate) fn mean_pool_normalize(arch: Arch, matrix: &[f32], pooled: &mut [f32]) {
    dispatch(arch, MeanPoolNormalize { matrix, pooled });
}

struct MeanPoolNormalize<'a> {
    matrix: &'a [f32],
    pooled: &'a mut [f32],
}

impl WithSimd for MeanPoolNormalize<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) {
        let pooled = self.pooled;
        pooled.fill(0.0);
        let mut rows = 0usize;
        for row in self.matrix.chunks_exact(pooled.len()) {
            for (total, value) in pooled.iter_mut().zip(row) {
                *total += value;
            }
            rows += 1;
        }
        let inverse_rows = 1.0 / rows.max(1) as f32;
        for value in pooled.iter_mut() {
            *value *= inverse_rows;
        }
        let mut squares = [0.0f32; LANES];
        let mut chunks = pooled.chunks_exact(LANES);
        for chunk in &mut chunks {
            for (accumulator, value) in squares.iter_mut().zip(chunk) {
                *accumulator += value * value;
            }
        }
        let mut norm_squared: f32 = squares.iter().sum();
        for value in chunks.remainder() {
            norm_squared += value * value;
        }
        // The same floor as torch.nn.functional.normalize, so that an
        // all-zero vector stays zero instead of becoming NaN.
        let inverse_norm = 1.0 / norm_squared.sqrt().max(1e-12);
        for value in pooled.iter_mut() {
            *value *= inverse_norm;
        }
    }
}

#[inline(always)]
fn sum(values: &[f32]) -> f32 {
    let mut partial = [0.0f32; LANES];
    let mut chunks = values.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (accumulator, value) in partial.iter_mut().zip(chunk) {
            *accumulator += value;
        }
    }
    let mut total: f32 = partial.iter().sum();
    for value in chunks.remainder() {
        total += value;
    }
    total
}

#[inline(always)]
fn max(values: &[f32]) -> f32 {
    let mut partial = [f32::NEG_INFINITY; LANES];
    let mut chunks = values.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (accumulator, value) in partial.iter_mut().zip(chunk) {
            // Written as a comparison, not `f32::max`, so that it lowers to
            // a vector max instruction.
            *accumulator = if *value > *accumulator {
                *value
            } else {
                *accumulator
            };
        }
    }
    let mut maximum = f32::NEG_INFINITY;
    for value in partial.iter().chain(chunks.remainder()) {
        maximum = if *value > maximum { *value } else { maximum };
    }
    maximum
}

/// `exp(x)` to within a few units in the last place, written so that it
/// vectorises: Cody–Waite range reduction to `r` in [−ln2/2, ln2/2], the
/// Cephes `expf` polynomial for `exp(r)`, and the power of two built from the
/// exponent bits. Inputs are clamped to the range where the result is a
/// normal float.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    const LN2_HIGH: f32 = 0.693_359_4;
    const LN2_LOW: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5·2²³ rounds to the nearest integer in the
    // float unit itself, which vectorises on every x86-64 CPU, unlike
    // `f32::round`, a library call without SSE4.1.
    const ROUNDING_SHIFTER: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let n = (x * LOG2_E + ROUNDING_SHIFTER) - ROUNDING_SHIFTER;
    let r = x - n * LN2_HIGH - n * LN2_LOW;
    let polynomial =
        ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
            + 1.666_666_5e-1)
            * r
            + 0.5;
    let exp_r = polynomial * r * r + r + 1.0;
    let power_of_two = f32::from_bits(((n as i32 + 127) as u32) << 23);
    exp_r * power_of_two
}

/// `erf(x)` by Abramowitz and Stegun 7.1.26 (absolute error below 1.5e-7).
#[inline(always)]
pub(crate) fn erf(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A1: f32 = 0.254_829_6;
    const A2: f32 = -0.284_496_74;
    const A3: f32 = 1.421_413_8;
    const A4: f32 = -1.453_152_1;
    const A5: f32 = 1.061_405_4;
    let magnitude = x.abs();
    let t = 1.0 / (1.0 + P * magnitude);
    let polynomial = ((((A5 * t + A4) * t + A3) * t + A2) * t + A1) * t;
    let erf_magnitude = 1.0 - polynomial * exp(-magnitude * magnitude);
    erf_magnitude.copysign(x)
}

#[inline(always)]
fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_std_across_the_softmax_range() {
        let mut worst_relative_error = 0.0f32;
        let mut x = -80.0f32;
        while x <= 80.0 {
            let expected = x.exp();
            let relative_error = ((exp(x) - expected) / expected).abs();
            worst_relative_error = worst_relative_error.max(relative_error);
            x += 0.013;
        }
        assert!(
            worst_relative_error < 1e-6,
            "worst relative error {worst_relative_error}"
        );
    }

    #[test]
    fn erf_matches_reference_values() {
        // Values of erf from the DLMF tables.
        let cases = [
            (0.0f32, 0.0f32),
            (0.1, 0.112_462_92),
            (0.5, 0.520_499_9),
            (1.0, 0.842_700_8),
            (2.0, 0.995_322_3),
            (-1.0, -0.842_700_8),
            (4.0, 0.999_999_98),
        ];
        for (x, expected) in cases {
            let actual = erf(x);
            assert!(
                (actual - expected).abs() < 3e-7,
                "erf({x}) = {actual}, expected {expected}"
            );
        }
    }

    #[test]
    fn softmax_rows_match_the_definition() {
        let rows: [[f32; 4]; 3] = [
            [1.0, 2.0, 3.0, -1000.0],
            [0.0, 0.0, 5.0, 5.0],
            [-30.0, 40.0, 39.5, 0.25],
        ];
        let mut matrix: Vec<f32> = rows.iter().flatten().copied().collect();
        softmax_rows(Arch::new(), &mut matrix, 4);
        for (row, actual) in rows.iter().zip(matrix.chunks_exact(4)) {
            let maximum = row
                .iter()
                .fold(f64::NEG_INFINITY, |m, &v| m.max(f64::from(v)));
            let total: f64 = row.iter().map(|&v| (f64::from(v) - maximum).exp()).sum();
            for (&input, &output) in row.iter().zip(actual) {
                let expected = (f64::from(input) - maximum).exp() / total;
                assert!(
                    (f64::from(output) - expected).abs() < 1e-6,
                    "{row:?}: {output} vs {expected}"
                );
            }
        }
    }

    #[test]
    fn layer_norm_gives_zero_mean_and_unit_variance() {
        let width = 40;
        let mut matrix: Vec<f32> = (0..width * 2)
            .map(|i| (i as f32 * 0.37).sin() * 10.0 + 3.0)
            .collect();
        let gamma = vec![1.0; width];
        let beta = vec![0.0; width];
        layer_norm_rows(Arch::new(), &mut matrix, &gamma, &beta, 1e-12);
        for row in matrix.chunks_exact(width) {
            let mean: f32 = row.iter().sum::<f32>() / width as f32;
            let variance: f32 =
                row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / width as f32;
            assert!(mean.abs() < 1e-5, "mean {mean}");
            assert!((variance - 1.0).abs() < 1e-4, "variance {variance}");
        }
    }

    #[test]
    fn mean_pool_normalize_gives_unit_vector_of_the_mean() {
        // Rows (3, 1) and (3, 7) average to (3, 4), of length 5.
        let matrix = vec![3.0, 1.0, 3.0, 7.0];
        let mut pooled = vec![0.0; 2];
        mean_pool_normalize(Arch::new(), &matrix, &mut pooled);
        assert!(
            (pooled[0] - 0.6).abs() < 1e-6 && (pooled[1] - 0.8).abs() < 1e-6,
            "{pooled:?}"
        );
    }
}
