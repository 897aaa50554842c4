//! BERT's encoder as sentence-transformers runs it for embeddings, on the CPU, without padding:
//! each text's tokens attend only to each other, so a batch is one matrix of all its tokens for
//! the linear layers (faer's matrix products) and one small attention per text and head. The
//! weights are read with candle from the model's safetensors; the element-wise steps (bias,
//! residual, layer norm, GELU, soft-max) are fused into the passes around the products.
//!
//! Numerically this is Hugging Face's `BertModel` in eval mode: the same embeddings, layer
//! norms (biased variance), GELU (`erf`, or the tanh form for `gelu_new`) and attention; a
//! padded batch's masked positions contribute exactly zero there, as they do here by absence.

use candle_core::{DType, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{Config, HiddenAct};
use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;

/// Below this many multiply-adds a product runs on one thread: splitting it costs more.
const PARALLEL_WORK: usize = 1 << 21;

/// Rows of an element-wise pass handed to one thread at a time.
const ROWS_PER_TASK: usize = 16;

/// A dense layer: `x · weight + bias`. The weight is stored `[in, out]`, the transpose of
/// PyTorch's `[out, in]`: the matrix-product kernels then read it as it lies instead of
/// repacking all of it on every call, which dominated the time of short inputs (queries).
struct Linear {
    weight: Vec<f32>,
    bias: Vec<f32>,
    inputs: usize,
    outputs: usize,
}

/// Layer normalisation's scale and shift.
struct Norm {
    weight: Vec<f32>,
    bias: Vec<f32>,
}

/// One transformer layer; query, key and value are one `[3·hidden, hidden]` product.
struct Layer {
    query_key_value: Linear,
    attention_output: Linear,
    attention_norm: Norm,
    intermediate: Linear,
    output: Linear,
    output_norm: Norm,
}

/// A loaded BERT encoder.
pub struct Encoder {
    hidden: usize,
    heads: usize,
    epsilon: f32,
    activation: HiddenAct,
    vocabulary: usize,
    positions: usize,
    word_embeddings: Vec<f32>,
    position_embeddings: Vec<f32>,
    /// One row per token type: a sentence embedding reads type 0 only, a cross-encoder's
    /// second segment (the passage) type 1.
    token_type_embeddings: Vec<f32>,
    token_types: usize,
    embeddings_norm: Norm,
    layers: Vec<Layer>,
}

impl Encoder {
    /// Reads the weights `config` describes; names are looked for with and without the `bert.`
    /// (or `{model_type}.`) prefix that some checkpoints carry.
    pub fn load(vb: VarBuilder, config: &Config) -> candle_core::Result<Self> {
        let hidden = config.hidden_size;
        if config.num_attention_heads == 0 || !hidden.is_multiple_of(config.num_attention_heads) {
            candle_core::bail!(
                "hidden_size {hidden} is not a multiple of num_attention_heads {}",
                config.num_attention_heads
            );
        }
        let mut prefixes = vec![String::new(), "bert.".to_owned()];
        if let Some(model_type) = &config.model_type {
            prefixes.push(format!("{model_type}."));
        }
        let prefix = prefixes
            .iter()
            .find(|p| vb.contains_tensor(&format!("{p}embeddings.word_embeddings.weight")))
            .cloned()
            .unwrap_or_default();
        let vb = if prefix.is_empty() {
            vb
        } else {
            vb.pp(prefix.trim_end_matches('.'))
        };

        let embeddings = vb.pp("embeddings");
        let word_embeddings = values(
            embeddings
                .pp("word_embeddings")
                .get((config.vocab_size, hidden), "weight")?,
        )?;
        let position_embeddings = values(
            embeddings
                .pp("position_embeddings")
                .get((config.max_position_embeddings, hidden), "weight")?,
        )?;
        let token_type_embeddings = values(
            embeddings
                .pp("token_type_embeddings")
                .get((config.type_vocab_size, hidden), "weight")?,
        )?;
        let embeddings_norm = norm(embeddings.pp("LayerNorm"), hidden)?;

        let layers = (0..config.num_hidden_layers)
            .map(|i| layer(vb.pp(format!("encoder.layer.{i}")), config))
            .collect::<candle_core::Result<_>>()?;
        Ok(Self {
            hidden,
            heads: config.num_attention_heads,
            epsilon: config.layer_norm_eps as f32,
            activation: config.hidden_act,
            vocabulary: config.vocab_size,
            positions: config.max_position_embeddings,
            word_embeddings,
            position_embeddings,
            token_type_embeddings,
            token_types: config.type_vocab_size,
            embeddings_norm,
            layers,
        })
    }

    /// The width of the vectors [`Encoder::embed`] returns.
    pub fn hidden_size(&self) -> usize {
        self.hidden
    }

    /// Each text's tokens through the encoder, mean-pooled and L2-normalised (sentence-
    /// transformers' Pooling(mean) + Normalize). Texts of no tokens give zero vectors.
    pub fn embed(&self, texts: &[&[u32]]) -> Result<Vec<Vec<f32>>, String> {
        let (states, spans) = self.encode(texts, None)?;
        Ok(spans
            .iter()
            .map(|(start, len)| {
                pool(
                    &states[start * self.hidden..(start + len) * self.hidden],
                    self.hidden,
                )
            })
            .collect())
    }

    /// The last hidden state of each pair's first token (`[CLS]`), each pair's tokens with the
    /// position its second segment starts at (token type 1 from there): what a cross-encoder's
    /// classification head reads.
    pub fn first_token_states(&self, pairs: &[(&[u32], usize)]) -> Result<Vec<Vec<f32>>, String> {
        if self.token_types < 2 {
            return Err("the model has one token type: it cannot read pairs".into());
        }
        let texts: Vec<&[u32]> = pairs.iter().map(|(tokens, _)| *tokens).collect();
        let seconds: Vec<usize> = pairs.iter().map(|(_, second)| *second).collect();
        let (states, spans) = self.encode(&texts, Some(&seconds))?;
        Ok(spans
            .iter()
            .map(|(start, len)| {
                if len == 0 {
                    vec![0.0; self.hidden]
                } else {
                    states[start * self.hidden..(start + 1) * self.hidden].to_vec()
                }
            })
            .collect())
    }

    /// Every text's tokens through the encoder: the last hidden states, `[tokens, hidden]`.
    /// `seconds` gives, per text, where token type 1 starts (none: all type 0).
    fn encode(
        &self,
        texts: &[&[u32]],
        seconds: Option<&[usize]>,
    ) -> Result<(Vec<f32>, Spans), String> {
        for tokens in texts {
            if tokens.len() > self.positions {
                return Err(format!(
                    "a text of {} tokens is longer than the model's {} positions",
                    tokens.len(),
                    self.positions
                ));
            }
            if let Some(&id) = tokens.iter().find(|&&id| id as usize >= self.vocabulary) {
                return Err(format!(
                    "token id {id} is outside the model's vocabulary of {}: tokenizer.json \
                     does not belong to this model",
                    self.vocabulary
                ));
            }
        }
        let spans = Spans::new(texts);
        let mut states = self.embeddings(texts, seconds, &spans);
        for layer in &self.layers {
            states = self.layer(layer, &states, &spans);
        }
        Ok((states, spans))
    }

    /// Word + position + token type embeddings, layer-normalised: `[tokens, hidden]`.
    fn embeddings(&self, texts: &[&[u32]], seconds: Option<&[usize]>, spans: &Spans) -> Vec<f32> {
        let h = self.hidden;
        let mut states = vec![0.0f32; spans.total * h];
        let tokens: Vec<(u32, usize, usize)> = texts
            .iter()
            .enumerate()
            .flat_map(|(i, t)| {
                let second = seconds.map_or(usize::MAX, |s| s[i]);
                t.iter()
                    .enumerate()
                    .map(move |(position, &id)| (id, position, usize::from(position >= second)))
            })
            .collect();
        states
            .par_chunks_mut(h * ROWS_PER_TASK)
            .zip(tokens.par_chunks(ROWS_PER_TASK))
            .for_each(|(rows, tokens)| {
                for (row, &(id, position, kind)) in rows.chunks_exact_mut(h).zip(tokens) {
                    let word = &self.word_embeddings[id as usize * h..][..h];
                    let place = &self.position_embeddings[position * h..][..h];
                    let kind = &self.token_type_embeddings[kind * h..][..h];
                    for (((out, w), p), t) in row.iter_mut().zip(word).zip(place).zip(kind) {
                        *out = w + p + t;
                    }
                    layer_norm(row, &self.embeddings_norm, self.epsilon);
                }
            });
        states
    }

    /// One transformer layer over every text's tokens at once.
    fn layer(&self, layer: &Layer, states: &[f32], spans: &Spans) -> Vec<f32> {
        let h = self.hidden;
        let tokens = spans.total;
        let input = MatRef::from_row_major_slice(states, tokens, h);

        let mut qkv = vec![0.0f32; tokens * 3 * h];
        linear(&layer.query_key_value, input, &mut qkv, None);
        let context = self.attention(&qkv, spans);

        let mut attended = vec![0.0f32; tokens * h];
        linear(
            &layer.attention_output,
            MatRef::from_row_major_slice(&context, tokens, h),
            &mut attended,
            Some(states),
        );
        apply_rows_parallel(
            &mut attended,
            h,
            &LayerNorm {
                norm: &layer.attention_norm,
                epsilon: self.epsilon,
            },
        );

        let inner = layer.intermediate.outputs;
        let mut intermediate = vec![0.0f32; tokens * inner];
        linear(
            &layer.intermediate,
            MatRef::from_row_major_slice(&attended, tokens, h),
            &mut intermediate,
            None,
        );
        apply_rows_parallel(&mut intermediate, inner, &Activation(self.activation));

        let mut output = vec![0.0f32; tokens * h];
        linear(
            &layer.output,
            MatRef::from_row_major_slice(&intermediate, tokens, inner),
            &mut output,
            Some(&attended),
        );
        apply_rows_parallel(
            &mut output,
            h,
            &LayerNorm {
                norm: &layer.output_norm,
                epsilon: self.epsilon,
            },
        );
        output
    }

    /// Scaled dot-product attention within each text, every head: `[tokens, hidden]`.
    fn attention(&self, qkv: &[f32], spans: &Spans) -> Vec<f32> {
        let h = self.hidden;
        let head = h / self.heads;
        let scale = 1.0 / (head as f32).sqrt();
        let qkv = MatRef::from_row_major_slice(qkv, spans.total, 3 * h);
        let mut context = vec![0.0f32; spans.total * h];

        // One task per text and head, each writing its own block of `context`.
        let mut blocks = Vec::with_capacity(spans.len() * self.heads);
        let mut rest = MatMut::from_row_major_slice_mut(&mut context, spans.total, h);
        for (start, len) in spans.iter() {
            let (text, after) = rest.split_at_row_mut(len);
            rest = after;
            let mut columns = text;
            for index in 0..self.heads {
                let (block, after) = columns.split_at_col_mut(head);
                columns = after;
                blocks.push((start, len, index, block));
            }
        }
        blocks
            .into_par_iter()
            .for_each(|(start, len, index, block)| {
                if len == 0 {
                    return;
                }
                let rows = qkv.subrows(start, len);
                let query = rows.subcols(index * head, head);
                let key = rows.subcols(h + index * head, head);
                let value = rows.subcols(2 * h + index * head, head);
                let mut scores = vec![0.0f32; len * len];
                matmul(
                    MatMut::from_row_major_slice_mut(&mut scores, len, len),
                    Accum::Replace,
                    query,
                    key.transpose(),
                    scale,
                    Par::Seq,
                );
                apply_rows(&mut scores, len, &Softmax);
                matmul(
                    block,
                    Accum::Replace,
                    MatRef::from_row_major_slice(&scores, len, len),
                    value,
                    1.0,
                    Par::Seq,
                );
            });
        context
    }
}

/// Where each text's tokens sit in the batch matrix.
struct Spans {
    starts: Vec<usize>,
    lens: Vec<usize>,
    total: usize,
}

impl Spans {
    fn new(texts: &[&[u32]]) -> Self {
        let lens: Vec<usize> = texts.iter().map(|t| t.len()).collect();
        let starts = lens
            .iter()
            .scan(0, |next, len| {
                let start = *next;
                *next += len;
                Some(start)
            })
            .collect();
        Self {
            starts,
            total: lens.iter().sum(),
            lens,
        }
    }

    fn len(&self) -> usize {
        self.lens.len()
    }

    /// `(first row, rows)` of each text.
    fn iter(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.starts.iter().copied().zip(self.lens.iter().copied())
    }
}

/// `out = input · weight + bias (+ residual)`, `out` being `[rows, outputs]` row-major.
fn linear(layer: &Linear, input: MatRef<'_, f32>, out: &mut [f32], residual: Option<&[f32]>) {
    let n = layer.outputs;
    let rows = input.nrows();
    match residual {
        Some(residual) => rows_mut_zip(out, residual, n, |row, residual| {
            for ((o, r), b) in row.iter_mut().zip(residual).zip(&layer.bias) {
                *o = r + b;
            }
        }),
        None => rows_mut(out, n, |row| row.copy_from_slice(&layer.bias)),
    }
    let weight = MatRef::from_row_major_slice(&layer.weight, layer.inputs, n);
    let par = if rows * n * layer.inputs >= PARALLEL_WORK {
        Par::rayon(0)
    } else {
        Par::Seq
    };
    matmul(
        MatMut::from_row_major_slice_mut(out, rows, n),
        Accum::Add,
        input,
        weight,
        1.0,
        par,
    );
}

/// Runs `f` on every row of a `[rows, width]` matrix, rows shared out among threads.
fn rows_mut(matrix: &mut [f32], width: usize, f: impl Fn(&mut [f32]) + Sync) {
    matrix
        .par_chunks_mut(width * ROWS_PER_TASK)
        .for_each(|rows| rows.chunks_exact_mut(width).for_each(&f));
}

/// [`rows_mut`] with the matching row of a second matrix of the same shape.
fn rows_mut_zip(
    matrix: &mut [f32],
    other: &[f32],
    width: usize,
    f: impl Fn(&mut [f32], &[f32]) + Sync,
) {
    matrix
        .par_chunks_mut(width * ROWS_PER_TASK)
        .zip(other.par_chunks(width * ROWS_PER_TASK))
        .for_each(|(rows, others)| {
            for (row, other) in rows.chunks_exact_mut(width).zip(others.chunks_exact(width)) {
                f(row, other);
            }
        });
}

/// An element-wise step applied to each row of a matrix.
trait RowStep: Sync {
    fn apply(&self, row: &mut [f32]);
}

/// Layer normalisation of each row.
struct LayerNorm<'a> {
    norm: &'a Norm,
    epsilon: f32,
}

impl RowStep for LayerNorm<'_> {
    #[inline(always)]
    fn apply(&self, row: &mut [f32]) {
        layer_norm(row, self.norm, self.epsilon);
    }
}

/// The feed-forward activation, element by element.
struct Activation(HiddenAct);

impl RowStep for Activation {
    #[inline(always)]
    fn apply(&self, row: &mut [f32]) {
        activate(row, self.0);
    }
}

/// Soft-max of each row of attention scores.
struct Softmax;

impl RowStep for Softmax {
    #[inline(always)]
    fn apply(&self, row: &mut [f32]) {
        softmax(row);
    }
}

/// Applies a step to rows, compiled for the widest vector instructions this CPU has (AVX-512
/// or AVX2 with FMA, detected at run time by pulp; SSE2 otherwise): everything the step
/// calls is `#[inline(always)]`, so its loops are vectorised for those instructions while the
/// binary stays portable to any x86-64.
struct Rows<'a, S> {
    rows: &'a mut [f32],
    width: usize,
    step: &'a S,
}

impl<S: RowStep> pulp::WithSimd for Rows<'_, S> {
    type Output = ();

    #[inline(always)]
    fn with_simd<V: pulp::Simd>(self, _: V) {
        for row in self.rows.chunks_exact_mut(self.width) {
            self.step.apply(row);
        }
    }
}

/// Applies `step` to every row of a `[rows, width]` matrix on this thread.
fn apply_rows<S: RowStep>(rows: &mut [f32], width: usize, step: &S) {
    pulp::Arch::new().dispatch(Rows { rows, width, step });
}

/// [`apply_rows`] with the rows shared out among threads.
fn apply_rows_parallel<S: RowStep>(matrix: &mut [f32], width: usize, step: &S) {
    matrix
        .par_chunks_mut(width * ROWS_PER_TASK)
        .for_each(|rows| apply_rows(rows, width, step));
}

/// `(x - mean) / sqrt(variance + ε) · weight + bias`, variance biased as PyTorch's.
#[inline(always)]
fn layer_norm(row: &mut [f32], norm: &Norm, epsilon: f32) {
    let n = row.len() as f32;
    let mean = sum(row) / n;
    row.iter_mut().for_each(|x| *x -= mean);
    let variance = sum_of_squares(row) / n;
    let inverse = 1.0 / (variance + epsilon).sqrt();
    for ((x, w), b) in row.iter_mut().zip(&norm.weight).zip(&norm.bias) {
        *x = *x * inverse * w + b;
    }
}

#[inline(always)]
fn softmax(row: &mut [f32]) {
    let max = lanes(row, f32::NEG_INFINITY, f32::max);
    for x in row.iter_mut() {
        *x = exp(*x - max);
    }
    let inverse = 1.0 / sum(row);
    for x in row.iter_mut() {
        *x *= inverse;
    }
}

/// Reductions in eight interleaved lanes: a strict left-to-right sum cannot be vectorised, and
/// these run over every attention score and hidden state.
#[inline(always)]
fn lanes(xs: &[f32], start: f32, combine: impl Fn(f32, f32) -> f32) -> f32 {
    let mut lanes = [start; 8];
    let chunks = xs.chunks_exact(8);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (lane, &x) in lanes.iter_mut().zip(chunk) {
            *lane = combine(*lane, x);
        }
    }
    lanes
        .into_iter()
        .chain(rest.iter().copied())
        .fold(start, combine)
}

#[inline(always)]
fn sum(xs: &[f32]) -> f32 {
    lanes(xs, 0.0, |a, b| a + b)
}

#[inline(always)]
fn sum_of_squares(xs: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let chunks = xs.chunks_exact(8);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (lane, &x) in lanes.iter_mut().zip(chunk) {
            *lane += x * x;
        }
    }
    lanes.iter().sum::<f32>() + rest.iter().map(|x| x * x).sum::<f32>()
}

#[inline(always)]
fn activate(row: &mut [f32], activation: HiddenAct) {
    match activation {
        HiddenAct::Gelu => row.iter_mut().for_each(|x| *x = gelu_erf(*x)),
        HiddenAct::GeluApproximate => row.iter_mut().for_each(|x| *x = gelu_tanh(*x)),
        HiddenAct::Relu => row.iter_mut().for_each(|x| *x = x.max(0.0)),
    }
}

/// Mean over a text's token rows, then L2-normalised.
fn pool(states: &[f32], hidden: usize) -> Vec<f32> {
    let mut mean = vec![0.0f32; hidden];
    let rows = states.len() / hidden;
    for row in states.chunks_exact(hidden) {
        for (m, x) in mean.iter_mut().zip(row) {
            *m += x;
        }
    }
    let count = rows.max(1) as f32;
    mean.iter_mut().for_each(|m| *m /= count);
    let norm = mean.iter().map(|m| m * m).sum::<f32>().sqrt().max(1e-12);
    mean.iter_mut().for_each(|m| *m /= norm);
    mean
}

/// `x · Φ(x)` with the exact normal CDF, as BERT's "gelu".
#[inline(always)]
fn gelu_erf(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// The tanh approximation ("gelu_new", candle's `gelu`).
#[inline(always)]
fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    let y = SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x);
    // tanh(y) = 1 - 2 / (e^{2y} + 1), saturating cleanly at both ends.
    let tanh = 1.0 - 2.0 / (exp(2.0 * y) + 1.0);
    0.5 * x * (1.0 + tanh)
}

/// erf by Abramowitz & Stegun 7.1.26 (absolute error 1.5e-7, about 3e-7 once rounded to f32),
/// the formula PyTorch's vectorised CPU kernels use, written so that the compiler vectorises it.
#[inline(always)]
fn erf(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A1: f32 = 0.254_829_6;
    const A2: f32 = -0.284_496_74;
    const A3: f32 = 1.421_413_7;
    const A4: f32 = -1.453_152_1;
    const A5: f32 = 1.061_405_4;
    let a = x.abs();
    let t = 1.0 / (1.0 + P * a);
    let polynomial = ((((A5 * t + A4) * t + A3) * t + A2) * t + A1) * t;
    let y = 1.0 - polynomial * exp(-a * a);
    y.copysign(x)
}

/// e^x to within 2 ulp over the f32 range (Cephes' `expf`), branch-free and without `mul_add`
/// (a library call unless the target has FMA) so that loops over it vectorise; underflows to
/// 1e-38 below -87.3 and stops growing above 88.3.
#[inline(always)]
fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding 1.5·2²³ rounds to an integer held in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.3, 88.3);
    let shifted = x * LOG2E + ROUND;
    let n = shifted - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let polynomial =
        ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
            + 1.666_666_5e-1)
            * r
            + 0.5;
    let mantissa = polynomial * (r * r) + r + 1.0;
    let exponent = (shifted.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    mantissa * f32::from_bits((exponent.wrapping_add(127) << 23) as u32)
}

fn values(tensor: Tensor) -> candle_core::Result<Vec<f32>> {
    tensor.to_dtype(DType::F32)?.flatten_all()?.to_vec1()
}

fn dense(vb: VarBuilder, inputs: usize, outputs: usize) -> candle_core::Result<Linear> {
    linear_from(
        vb.get((outputs, inputs), "weight")?,
        vb.get(outputs, "bias")?,
    )
}

/// A [`Linear`] from PyTorch's `[out, in]` weight and `[out]` bias.
fn linear_from(weight: Tensor, bias: Tensor) -> candle_core::Result<Linear> {
    let (outputs, inputs) = weight.dims2()?;
    Ok(Linear {
        weight: values(weight.t()?.contiguous()?)?,
        bias: values(bias)?,
        inputs,
        outputs,
    })
}

fn norm(vb: VarBuilder, size: usize) -> candle_core::Result<Norm> {
    let (weight, bias) = if vb.contains_tensor("weight") {
        (vb.get(size, "weight")?, vb.get(size, "bias")?)
    } else {
        (vb.get(size, "gamma")?, vb.get(size, "beta")?)
    };
    Ok(Norm {
        weight: values(weight)?,
        bias: values(bias)?,
    })
}

fn layer(vb: VarBuilder, config: &Config) -> candle_core::Result<Layer> {
    let h = config.hidden_size;
    let inner = config.intermediate_size;
    let attention = vb.pp("attention");
    // Query, key and value stacked as one `[3·hidden, hidden]` layer.
    let parts = ["query", "key", "value"].map(|name| {
        let vb = attention.pp("self").pp(name);
        Ok::<_, candle_core::Error>((vb.get((h, h), "weight")?, vb.get(h, "bias")?))
    });
    let [query, key, value] = parts;
    let (query, key, value) = (query?, key?, value?);
    let query_key_value = linear_from(
        Tensor::cat(&[query.0, key.0, value.0], 0)?,
        Tensor::cat(&[query.1, key.1, value.1], 0)?,
    )?;
    Ok(Layer {
        query_key_value,
        attention_output: dense(attention.pp("output").pp("dense"), h, h)?,
        attention_norm: norm(attention.pp("output").pp("LayerNorm"), h)?,
        intermediate: dense(vb.pp("intermediate").pp("dense"), h, inner)?,
        output: dense(vb.pp("output").pp("dense"), inner, h)?,
        output_norm: norm(vb.pp("output").pp("LayerNorm"), h)?,
    })
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    /// A one-layer encoder of zero weights: 10 tokens, 4 positions, 8 wide, 2 heads.
    fn tiny() -> Encoder {
        let config: Config = serde_json::from_value(serde_json::json!({
            "vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 1,
            "num_attention_heads": 2, "intermediate_size": 16, "hidden_act": "gelu",
            "hidden_dropout_prob": 0.1, "max_position_embeddings": 4, "type_vocab_size": 2,
            "initializer_range": 0.02, "layer_norm_eps": 1e-12, "pad_token_id": 0,
        }))
        .expect("config parses");
        Encoder::load(VarBuilder::zeros(DType::F32, &Device::Cpu), &config).expect("loads")
    }

    #[test]
    fn token_ids_outside_the_vocabulary_and_overlong_texts_are_errors() {
        let encoder = tiny();
        let error = encoder.embed(&[&[1, 2], &[3, 10]]).unwrap_err();
        assert!(
            error.contains("token id 10") && error.contains("vocabulary of 10"),
            "{error}"
        );
        let error = encoder.embed(&[&[1, 2, 3, 4, 5]]).unwrap_err();
        assert!(
            error.contains("5 tokens") && error.contains("4 positions"),
            "{error}"
        );
        let vectors = encoder.embed(&[&[1, 2, 3, 4], &[], &[9]]).expect("embeds");
        assert_eq!(vectors.len(), 3);
        assert!(vectors.iter().all(|v| v.len() == 8));
    }

    #[test]
    fn heads_must_divide_the_width() {
        let mut config: Config = serde_json::from_value(serde_json::json!({
            "vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 1,
            "num_attention_heads": 3, "intermediate_size": 16, "hidden_act": "gelu",
            "hidden_dropout_prob": 0.1, "max_position_embeddings": 4, "type_vocab_size": 2,
            "initializer_range": 0.02, "layer_norm_eps": 1e-12, "pad_token_id": 0,
        }))
        .expect("config parses");
        let load = |config: &Config| {
            Encoder::load(VarBuilder::zeros(DType::F32, &Device::Cpu), config)
                .err()
                .map(|e| e.to_string())
        };
        let error = load(&config).expect("3 heads cannot split 8");
        assert!(error.contains("not a multiple"), "{error}");
        config.num_attention_heads = 0;
        assert!(load(&config).is_some());
    }

    #[test]
    fn exp_matches_the_standard_library() {
        let mut x = -87.0f32;
        while x < 88.0 {
            let (fast, exact) = (exp(x), x.exp());
            assert!(
                ((fast - exact) / exact).abs() < 4e-7,
                "exp({x}) = {fast}, not {exact}"
            );
            x += 0.0137;
        }
        assert_eq!(exp(-1000.0), exp(-87.3));
        assert!(exp(-1000.0) < 1e-37);
        assert!(exp(1000.0).is_finite());
    }

    #[test]
    fn erf_is_within_its_bound() {
        // Reference values of erf to 10 digits.
        for (x, expected) in [
            (0.0f32, 0.0f64),
            (0.1, 0.112_462_916_0),
            (0.5, 0.520_499_877_8),
            (1.0, 0.842_700_792_9),
            (2.0, 0.995_322_265_0),
            (3.5, 0.999_999_256_9),
            (-1.0, -0.842_700_792_9),
        ] {
            let error = (f64::from(erf(x)) - expected).abs();
            assert!(error < 5e-7, "erf({x}) = {}, not {expected}", erf(x));
        }
    }

    #[test]
    fn softmax_sums_to_one_and_keeps_order() {
        let mut row = vec![1.0, 3.0, -2.0, 3.0, 0.5];
        softmax(&mut row);
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(row[1] > row[0] && row[0] > row[4] && row[4] > row[2]);
        assert_eq!(row[1], row[3]);
    }

    #[test]
    fn layer_norm_centres_and_scales() {
        let norm = Norm {
            weight: vec![2.0; 4],
            bias: vec![1.0; 4],
        };
        let mut row = vec![1.0, 2.0, 3.0, 4.0];
        layer_norm(&mut row, &norm, 0.0);
        // mean 2.5, biased variance 1.25
        let expected: Vec<f32> = [1.0f32, 2.0, 3.0, 4.0]
            .iter()
            .map(|x| (x - 2.5) / 1.25f32.sqrt() * 2.0 + 1.0)
            .collect();
        for (a, b) in row.iter().zip(&expected) {
            assert!((a - b).abs() < 1e-6, "{row:?} vs {expected:?}");
        }
    }

    #[test]
    fn linear_adds_bias_and_residual() {
        // PyTorch's weight [out=2, in=3] is [[1, 0, 2], [0, 1, -1]]; stored as [in, out].
        let layer = Linear {
            weight: vec![1.0, 0.0, 0.0, 1.0, 2.0, -1.0],
            bias: vec![0.5, -0.5],
            inputs: 3,
            outputs: 2,
        };
        let input = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
        let mut out = vec![0.0; 4];
        linear(
            &layer,
            MatRef::from_row_major_slice(&input, 2, 3),
            &mut out,
            None,
        );
        assert_eq!(out, vec![7.5, -1.5, 16.5, -1.5]);
        let residual = [1.0f32, 1.0, 1.0, 1.0];
        linear(
            &layer,
            MatRef::from_row_major_slice(&input, 2, 3),
            &mut out,
            Some(&residual),
        );
        assert_eq!(out, vec![8.5, -0.5, 17.5, -0.5]);
    }
}
