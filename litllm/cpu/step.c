/* A decoding step through every transformer block in one call (litllm/cpu/step.py).

   At batch 1 the linear layers of a small model take ~55% of a decoding step when each of the ~40 small operations
   around them (norms, rotary embeddings, the cache store, activations, residual adds) costs a Python call and a
   torch dispatch of 2-20 us. This file does that glue in C, between calls of the tile kernel (gemm.c) and the
   attention kernel (attention.c), whose entry points it is given: those keep their own builds and compiler flags,
   so the products are the ones the layer-by-layer path computes.

   Activations are float32 or bfloat16. Every element-wise operation is computed in float32 and rounded to the
   activations' dtype where torch's layer-by-layer path rounds (after each operation it runs in that dtype), so both
   paths agree: bit for bit in bfloat16 where torch's own float arithmetic does, to float32 round-off otherwise.
   Rows never mix: each row's result is the same whatever rows run beside it. Built without contraction of
   multiply-adds (torch's element-wise kernels round each product). */

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef int (*linear_fn)(const void* x, int64_t ldx, const void* w, const void* bias, void* y, int64_t ldy, int64_t M,
                         int64_t N, int64_t K, int threads);
typedef int (*int8_fn)(const void* x, int64_t ldx, const void* w, const float* scale, const void* bias, void* y,
                       int64_t ldy, int64_t M, int64_t N, int64_t K, int threads, int x_bfloat16);
typedef int (*attend_fn)(const float* q, const void* k, const void* v, float* out, int64_t B, int64_t nkv, int64_t g,
                         int64_t hs, int64_t S, int64_t kb, int64_t kh, int64_t ks, int64_t vb, int64_t vh, int64_t vs,
                         const int64_t* lo, const int64_t* hi, float scale, float cap, int threads);

#define PARTS 16 /* row blocks of one packed weight (kernels.PACK_BLOCK_BYTES each) */

enum { FLOAT32 = 0, BFLOAT16 = 1 };
enum { NORM_NONE = 0, LAYERNORM = 1, RMSNORM = 2 };
enum { QK_NONE = 0, QK_HEAD = 1, QK_ALL_HEADS = 2 };
enum { GELU = 0, GELU_TANH = 1, SWIGLU = 2, GEGLU = 3, GEGLU_TANH = 4, RELU2 = 5 };

struct linear {
    int64_t in, out, parts;
    int int8;                    /* int8 tiles with a float32 scale per output, else tiles of the activations' dtype */
    const void* tiles[PARTS];    /* each part: `width` consecutive outputs */
    const float* scale[PARTS];
    int64_t width[PARTS];
    const void* bias;            /* (out) in the activations' dtype, or NULL */
};

struct norm {
    int kind, unit_offset;
    float eps;
    const void* weight; /* in the activations' dtype, or NULL */
    const void* bias;
};

struct block {
    struct norm norm_1, norm_2, q_norm, k_norm, post_attn, post_mlp;
    struct linear qkv, proj, fc, down;
    int parallel_residual, mlp, sliding;
    int qk_norm, qk_norm_after_rope; /* 0 none, 1 per head (over hs), 2 over all the heads of q and of k */
    int64_t nh, nkv, hs, rope_n, intermediate;
    float scale, cap;
};

struct model {
    int dtype;
    int64_t n_layer, C;
    const struct block* blocks;
    linear_fn linear;
    int8_fn linear_int8;
    attend_fn attend;
};

static inline float bits_float(uint32_t bits) {
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static inline uint16_t bfloat16_bits(float f) { /* f rounded to bfloat16 (nearest even, as torch; NaN 0x7fc0) */
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    uint16_t rounded = (uint16_t)((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
    return (bits & 0x7fffffffu) > 0x7f800000u ? (uint16_t)0x7fc0 : rounded;
}

static inline float to_bf16_float(float f) { return bits_float((uint32_t)bfloat16_bits(f) << 16); } /* as a float */

static inline float get(const void* p, int64_t i, int dtype) {
    return dtype == BFLOAT16 ? bits_float((uint32_t)((const uint16_t*)p)[i] << 16) : ((const float*)p)[i];
}

static inline void put(void* p, int64_t i, float v, int dtype) {
    if (dtype == BFLOAT16)
        ((uint16_t*)p)[i] = bfloat16_bits(v);
    else
        ((float*)p)[i] = v;
}

static inline float rnd(float v, int dtype) { return dtype == BFLOAT16 ? to_bf16_float(v) : v; }

/* Element-wise functions in forms the compiler vectorizes (no calls into libm): a step of batch 16 spent ~5 ms a
   token in scalar erff. exp_approx: exp(x) as 2^n e^r, n = x / ln 2 rounded (by the 1.5 * 2^23 trick), e^r for
   |r| <= ln 2 / 2 by its Taylor series to r^7 (truncation < 1e-8 relative), within a few float32 ulps; 0 below -87
   and infinite above 88.3 (within a factor 1.6 of where a float underflows and overflows). erf_approx: Abramowitz
   and Stegun's formula 7.1.26, absolute error < 1.5e-7, the accuracy of torch's own CPU GELU. NaN stays NaN. */
static inline float exp_approx(float x0) {
    float x = x0 < -87.0f ? -87.0f : x0 > 88.3f ? 88.3f : x0;
    float shifted = x * 1.44269504088896341f + 12582912.0f;
    float n = shifted - 12582912.0f;
    int32_t ni;
    memcpy(&ni, &shifted, sizeof ni);
    ni -= 0x4b400000; /* the integer n from the low bits of the shifted float */
    float r = x - n * 0.693145751953125f - n * 1.428606765330187e-6f; /* ln 2 in two parts */
    float p = 1.0f + r * (1.0f + r * (0.5f + r * (1.0f / 6 + r * (1.0f / 24 + r * (1.0f / 120 +
                                                  r * (1.0f / 720 + r * (1.0f / 5040)))))));
    float y = p * bits_float((uint32_t)(ni + 127) << 23);
    return x0 > 88.3f ? __builtin_inff() : x0 < -87.0f ? 0.0f : y;
}

static inline float erf_approx(float x) {
    float ax = fabsf(x), t = 1.0f / (1.0f + 0.3275911f * ax);
    float poly = t * (0.254829592f + t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f + t * 1.061405429f))));
    return copysignf(1.0f - poly * exp_approx(-ax * ax), x);
}

static inline float tanh_approx(float x) { /* (1 - e) / (1 + e), e = exp(-2|x|) in (0, 1]: no overflow */
    float e = exp_approx(-2.0f * fabsf(x));
    return copysignf((1.0f - e) / (1.0f + e), x);
}

static inline float gelu(float v) { return 0.5f * v * (1.0f + erf_approx(v * (float)M_SQRT1_2)); }

static inline float gelu_tanh(float v) {
    return 0.5f * v * (1.0f + tanh_approx(0.7978845608028654f * (v + 0.044715f * v * v * v)));
}

static inline float silu(float v) { return v / (1.0f + exp_approx(-v)); }

/* n elements of p (the activations' dtype) into floats, and back, rounding: loops the compiler vectorizes */
static void load_floats(const void* p, float* out, int64_t n, int dtype) {
    if (dtype == BFLOAT16)
        for (int64_t i = 0; i < n; i++) out[i] = bits_float((uint32_t)((const uint16_t*)p)[i] << 16);
    else
        memcpy(out, p, n * sizeof(float));
}

static void store_floats(void* p, const float* v, int64_t n, int dtype) {
    if (dtype == BFLOAT16)
        for (int64_t i = 0; i < n; i++) ((uint16_t*)p)[i] = bfloat16_bits(v[i]);
    else
        memcpy(p, v, n * sizeof(float));
}

#define PIECE 256                /* elements of a row handled at a time, in float32 on the stack */
#define PARALLEL_ELEMENTS 16384 /* element-wise work split over the threads from this many elements */

/* the sum of v[0..n-1] in 16 running sums combined in a fixed tree: vectorized, and the same for a row whatever the
   rows and threads beside it */
static float sum16(const float* v, int64_t n) {
    float acc[16] = {0};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int j = 0; j < 16; j++) acc[j] += v[i + j];
    for (int j = 0; i + j < n; j++) acc[j] += v[i + j];
    for (int w = 8; w > 0; w /= 2)
        for (int j = 0; j < w; j++) acc[j] += acc[j + w];
    return acc[0];
}

/* y (B, n) = norm(x (B, n)), rows of n elements; y may be x. Rows are split over the threads when there are many. */
static void apply_norm(const struct norm* nm, const void* x, void* y, int64_t B, int64_t n, int dtype, int threads) {
    int64_t size = dtype == BFLOAT16 ? 2 : 4;
    float weight[n], bias[n];
    if (nm->weight) load_floats(nm->weight, weight, n, dtype);
    if (nm->bias) load_floats(nm->bias, bias, n, dtype);
    #pragma omp parallel for num_threads(threads) if (B > 1 && B * n >= PARALLEL_ELEMENTS / 4) schedule(static)
    for (int64_t b = 0; b < B; b++) {
        float v[n], d[n];
        load_floats((const char*)x + b * n * size, v, n, dtype);
        if (nm->kind == LAYERNORM) {
            float mean = sum16(v, n) / (float)n;
            for (int64_t i = 0; i < n; i++) {
                v[i] -= mean;
                d[i] = v[i] * v[i];
            }
            float r = 1.0f / sqrtf(sum16(d, n) / (float)n + nm->eps);
            for (int64_t i = 0; i < n; i++) v[i] *= r;
            if (nm->weight)
                for (int64_t i = 0; i < n; i++) v[i] *= weight[i];
            if (nm->bias)
                for (int64_t i = 0; i < n; i++) v[i] += bias[i];
        } else { /* RMSNorm as litllm.model.RMSNorm: in float32, the scale applied after rounding */
            for (int64_t i = 0; i < n; i++) d[i] = v[i] * v[i];
            float r = 1.0f / sqrtf(sum16(d, n) / (float)n + nm->eps);
            for (int64_t i = 0; i < n; i++) v[i] *= r;
            if (nm->weight && nm->unit_offset)
                for (int64_t i = 0; i < n; i++) v[i] *= 1.0f + weight[i];
            else if (nm->weight)
                for (int64_t i = 0; i < n; i++) v[i] = weight[i] * rnd(v[i], dtype);
        }
        store_floats((char*)y + b * n * size, v, n, dtype);
    }
}

/* x += a, n elements, rounded to the activations' dtype */
static void add_into(void* x, const void* a, int64_t n, int dtype, int threads) {
    int64_t size = dtype == BFLOAT16 ? 2 : 4, pieces = (n + PIECE - 1) / PIECE;
    #pragma omp parallel for num_threads(threads) if (n >= PARALLEL_ELEMENTS) schedule(static)
    for (int64_t p = 0; p < pieces; p++) {
        int64_t i0 = p * PIECE, m = n - i0 < PIECE ? n - i0 : PIECE;
        float u[PIECE], v[PIECE];
        load_floats((const char*)x + i0 * size, u, m, dtype);
        load_floats((const char*)a + i0 * size, v, m, dtype);
        for (int64_t i = 0; i < m; i++) u[i] += v[i];
        store_floats((char*)x + i0 * size, u, m, dtype);
    }
}

/* y (B, out) = x (B, in) W^T + bias, part by part into y's columns */
static int apply_linear(const struct model* m, const struct linear* l, const void* x, int64_t ldx, void* y,
                        int threads, int64_t B) {
    int64_t size = m->dtype == BFLOAT16 ? 2 : 4, start = 0;
    for (int64_t p = 0; p < l->parts; p++) {
        const char* bias = l->bias ? (const char*)l->bias + start * size : NULL;
        char* out = (char*)y + start * size;
        int status = l->int8 ? m->linear_int8(x, ldx, l->tiles[p], l->scale[p], bias, out, l->out, B, l->width[p],
                                              l->in, threads, m->dtype == BFLOAT16)
                             : m->linear(x, ldx, l->tiles[p], bias, out, l->out, B, l->width[p], l->in, threads);
        if (status) return status;
        start += l->width[p];
    }
    return 0;
}

/* rotate the first n dimensions of `heads` heads of hs (row b of t, in place) by cos/sin (n each) */
static void rope(void* t, int64_t o, int64_t heads, int64_t hs, int64_t n, const void* cos, const void* sin,
                 int dtype) {
    int64_t half = n / 2;
    float tmp[n > 0 ? n : 1];
    for (int64_t h = 0; h < heads; h++) {
        int64_t base = o + h * hs;
        for (int64_t i = 0; i < n; i++) {
            float a = get(t, base + i, dtype);
            float r = i < half ? -get(t, base + i + half, dtype) : get(t, base + i - half, dtype);
            tmp[i] = rnd(rnd(a * get(cos, i, dtype), dtype) + rnd(r * get(sin, i, dtype), dtype), dtype);
        }
        for (int64_t i = 0; i < n; i++) put(t, base + i, tmp[i], dtype);
    }
}

/* the per-head query and key norms of one row of qkv (its q heads, then its k heads), in place */
static void head_norms(const struct block* bl, char* row, int dtype) {
    int64_t size = dtype == BFLOAT16 ? 2 : 4;
    for (int64_t h = 0; h < bl->nh + bl->nkv; h++) {
        char* head = row + h * bl->hs * size;
        apply_norm(h < bl->nh ? &bl->q_norm : &bl->k_norm, head, head, 1, bl->hs, dtype, 1);
    }
}

/* the MLP's activation: h (B, fc.out) -> a (B, intermediate); in place for the ungated ones */
static void activate(const struct block* bl, void* h, void* a, int64_t B, int dtype, int threads) {
    int64_t I = bl->intermediate, w = bl->fc.out, size = dtype == BFLOAT16 ? 2 : 4, pieces = (I + PIECE - 1) / PIECE;
    int kind = bl->mlp;
    #pragma omp parallel for num_threads(threads) if (B * I >= PARALLEL_ELEMENTS) schedule(static)
    for (int64_t job = 0; job < B * pieces; job++) {
        int64_t b = job / pieces, i0 = job % pieces * PIECE, n = I - i0 < PIECE ? I - i0 : PIECE;
        float v[PIECE], up[PIECE], r[PIECE];
        load_floats((const char*)h + (b * w + i0) * size, v, n, dtype);
        if (kind == GELU) {
            for (int64_t i = 0; i < n; i++) r[i] = gelu(v[i]);
        } else if (kind == GELU_TANH) {
            for (int64_t i = 0; i < n; i++) r[i] = gelu_tanh(v[i]);
        } else if (kind == RELU2) {
            for (int64_t i = 0; i < n; i++) r[i] = v[i] <= 0.0f ? 0.0f : v[i] * v[i]; /* NaN stays NaN */
        } else { /* gated: act(gate), rounded to the activations' dtype as torch's does, times up */
            load_floats((const char*)h + (b * w + I + i0) * size, up, n, dtype);
            if (kind == SWIGLU)
                for (int64_t i = 0; i < n; i++) r[i] = silu(v[i]);
            else if (kind == GEGLU)
                for (int64_t i = 0; i < n; i++) r[i] = gelu(v[i]);
            else
                for (int64_t i = 0; i < n; i++) r[i] = gelu_tanh(v[i]);
            if (dtype == BFLOAT16)
                for (int64_t i = 0; i < n; i++) r[i] = to_bf16_float(r[i]);
            for (int64_t i = 0; i < n; i++) r[i] *= up[i];
        }
        store_floats((char*)a + (b * I + i0) * size, r, n, dtype);
    }
}

/* The activation of MLP kind `mlp` on n floats (a gated kind's activation of the gate alone), as `activate` computes
   it: for the tests against torch's. */
void activation(int mlp, const float* x, float* y, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float v = x[i];
        y[i] = mlp == GELU || mlp == GEGLU ? gelu(v) : mlp == GELU_TANH || mlp == GEGLU_TANH ? gelu_tanh(v)
             : mlp == SWIGLU ? silu(v) : v <= 0.0f ? 0.0f : v * v;
    }
}

static void* grow(void** buf, size_t* have, size_t need) {
    if (need > *have) {
        free(*buf);
        *buf = malloc(need);
        *have = *buf ? need : 0;
    }
    return *buf;
}

static _Thread_local void* scratch = NULL;
static _Thread_local size_t scratch_bytes = 0;

/* x (B, C), the residual stream in the activations' dtype, through every block, in place.
   rope: cos, sin of the global layers, cos, sin of the sliding ones (each (B or 1, rope_n), rope_stride apart; NULL
   where the model has none). pos (B): each row's new cache slot. ranges: lo, hi of the global layers, lo, hi of the
   sliding ones ((B) each). kv: layer l's key cache at 2l, value cache at 2l + 1, each (rows, nkv, S, hs) with the
   strides kv_strides[6l..6l+5] (key b, h, s; value b, h, s) in elements. Returns 0; 1 out of memory; 2 a position
   or key range outside the cache. */
int step(const struct model* m, void* x, int64_t B, const void* const* ropes, int64_t rope_stride, const int64_t* pos,
         const int64_t* const* ranges, void* const* kv, const int64_t* kv_strides, int64_t S, int threads) {
    int dtype = m->dtype;
    int64_t size = dtype == BFLOAT16 ? 2 : 4, C = m->C, widest = C;
    for (int64_t l = 0; l < m->n_layer; l++) {
        const struct block* bl = m->blocks + l;
        int64_t w[] = {bl->qkv.out, bl->fc.out, bl->nh * bl->hs};
        for (int i = 0; i < 3; i++) widest = w[i] > widest ? w[i] : widest;
    }
    for (int64_t b = 0; b < B; b++)
        if (pos[b] < 0 || pos[b] >= S) return 2;
    /* h: a norm's output; t: qkv or the MLP's hidden; u: the attention's output or the activation; a: a branch;
       q: queries and attention outputs in float32 */
    size_t row = (size_t)widest * 4;
    char* base = grow(&scratch, &scratch_bytes, (size_t)B * (row * 5 + 64 * 5));
    if (!base) return 1;
    void *h = base, *t = base + B * row + 64, *u = base + 2 * (B * row + 64), *a = base + 3 * (B * row + 64);
    float* q = (float*)(base + 4 * (B * row + 64));
    int status;
    for (int64_t l = 0; l < m->n_layer; l++) {
        const struct block* bl = m->blocks + l;
        int64_t nh = bl->nh, nkv = bl->nkv, hs = bl->hs, width = bl->qkv.out;
        const void* cos = ropes[2 * bl->sliding];
        const void* sin = ropes[2 * bl->sliding + 1];
        const int64_t* st = kv_strides + 6 * l;
        char *kc = kv[2 * l], *vc = kv[2 * l + 1];
        const void* normed = x;
        if (bl->norm_1.kind != NORM_NONE) {
            apply_norm(&bl->norm_1, x, h, B, C, dtype, threads);
            normed = h;
        }
        if ((status = apply_linear(m, &bl->qkv, normed, C, t, threads, B))) return status;
        #pragma omp parallel for num_threads(threads) if (B >= 4) schedule(static)
        for (int64_t b = 0; b < B; b++) {
            char* row = (char*)t + b * width * size;
            if (bl->qk_norm == QK_ALL_HEADS) {
                apply_norm(&bl->q_norm, row, row, 1, nh * hs, dtype, 1);
                apply_norm(&bl->k_norm, row + nh * hs * size, row + nh * hs * size, 1, nkv * hs, dtype, 1);
            }
            if (bl->qk_norm == QK_HEAD && !bl->qk_norm_after_rope) head_norms(bl, row, dtype);
            if (bl->rope_n > 0 && cos) {
                const char* cb = (const char*)cos + b * rope_stride * size;
                const char* sb = (const char*)sin + b * rope_stride * size;
                rope(t, b * width, nh + nkv, hs, bl->rope_n, cb, sb, dtype);
            }
            if (bl->qk_norm == QK_HEAD && bl->qk_norm_after_rope) head_norms(bl, row, dtype);
            for (int64_t hd = 0; hd < nkv; hd++) { /* the new key and value into the row's slot */
                const char* kn = (const char*)t + (b * width + (nh + hd) * hs) * size;
                const char* vn = (const char*)t + (b * width + (nh + nkv + hd) * hs) * size;
                memcpy(kc + (b * st[0] + hd * st[1] + pos[b] * st[2]) * size, kn, hs * size);
                memcpy(vc + (b * st[3] + hd * st[4] + pos[b] * st[5]) * size, vn, hs * size);
            }
            load_floats(row, q + b * nh * hs, nh * hs, dtype);
        }
        const int64_t* lo = ranges[2 * bl->sliding];
        const int64_t* hi = ranges[2 * bl->sliding + 1];
        float* att = (float*)u; /* the attention's float32 output, then rounded into t's first columns */
        status = m->attend(q, kc, vc, att, B, nkv, nh / nkv, hs, S, st[0], st[1], st[2], st[3], st[4], st[5], lo, hi,
                           bl->scale, bl->cap, threads);
        if (status) return status;
        store_floats(t, att, B * nh * hs, dtype);
        if ((status = apply_linear(m, &bl->proj, t, nh * hs, a, threads, B))) return status;
        if (bl->post_attn.kind != NORM_NONE) apply_norm(&bl->post_attn, a, a, B, C, dtype, threads);
        /* the residual: x + a + mlp(norm_2(x) or h) in parallel, else x += a, then x += mlp(norm_2(x) or x) */
        if (!bl->parallel_residual)
            add_into(x, a, B * C, dtype, threads);
        const void* mlp_in = bl->parallel_residual ? normed : x;
        if (bl->norm_2.kind != NORM_NONE) {
            apply_norm(&bl->norm_2, x, h, B, C, dtype, threads);
            mlp_in = h;
        }
        if ((status = apply_linear(m, &bl->fc, mlp_in, C, t, threads, B))) return status;
        activate(bl, t, u, B, dtype, threads);
        /* the branch's output into q's memory (free again), as a row of C */
        void* mo = q;
        if ((status = apply_linear(m, &bl->down, u, bl->intermediate, mo, threads, B))) return status;
        if (bl->post_mlp.kind != NORM_NONE) apply_norm(&bl->post_mlp, mo, mo, B, C, dtype, threads);
        if (bl->parallel_residual) add_into(x, a, B * C, dtype, threads); /* x + a, rounded, then + the MLP's */
        add_into(x, mo, B * C, dtype, threads);
    }
    return 0;
}

/* The index of each row's largest logit, as torch.argmax gives it: the first of equal maxima, or the first NaN where
   a row holds one. logits: n rows of V floats (dtype FLOAT32 or BFLOAT16), rows ld elements apart. Each of 16 lanes
   keeps its largest value and where it first saw it (a loop the compiler vectorizes into selects); the lanes' first
   index of the largest wins. torch's argmax scans a row one element at a time (pythia-160m's 50304 logits: ~45 us in
   float32, ~190 us in bfloat16, on an AMD EPYC). */
typedef float lanes_f __attribute__((vector_size(64), aligned(4))); /* 16 lanes, split where registers are narrower */
typedef int32_t lanes_i __attribute__((vector_size(64), aligned(4)));
typedef uint32_t lanes_u __attribute__((vector_size(64), aligned(4)));
typedef uint16_t lanes_h __attribute__((vector_size(32), aligned(2)));
#define ARGMAX_LANES 16
static int64_t argmax_row(const void* row, int64_t V, int dtype) {
    lanes_f top = {0}, v;
    lanes_i at = {0}, idx, nan = {0};
    for (int l = 0; l < ARGMAX_LANES; l++) top[l] = -INFINITY, at[l] = (int32_t)V, idx[l] = l;
    int64_t whole = V / ARGMAX_LANES * ARGMAX_LANES;
    for (int64_t i = 0; i < whole; i += ARGMAX_LANES, idx += ARGMAX_LANES) {
        if (dtype == BFLOAT16) {
            lanes_h h;
            memcpy(&h, (const uint16_t*)row + i, sizeof h);
            v = (lanes_f)(__builtin_convertvector(h, lanes_u) << 16);
        } else {
            memcpy(&v, (const float*)row + i, sizeof v);
        }
        lanes_i up = v > top; /* -1 where this element is larger: it and its index replace the lane's */
        nan |= v != v;
        at = (idx & up) | (at & ~up);
        top = (lanes_f)(((lanes_i)v & up) | ((lanes_i)top & ~up));
    }
    float best = -INFINITY;
    int64_t first = V;
    int any_nan = 0;
    for (int l = 0; l < ARGMAX_LANES; l++) {
        any_nan |= nan[l] != 0;
        if (top[l] > best || (top[l] == best && at[l] < first)) best = top[l], first = at[l];
    }
    for (int64_t i = whole; i < V; i++) { /* the tail, after every whole block */
        float x = dtype == BFLOAT16 ? bits_float((uint32_t)((const uint16_t*)row)[i] << 16) : ((const float*)row)[i];
        any_nan |= x != x;
        if (x > best) best = x, first = i;
    }
    if (any_nan) { /* rare: the first NaN */
        for (int64_t i = 0; i < V; i++) {
            float x = dtype == BFLOAT16 ? bits_float((uint32_t)((const uint16_t*)row)[i] << 16) : ((const float*)row)[i];
            if (x != x) return i;
        }
    }
    return first == V ? 0 : first; /* a row of -inf: its first element */
}

void argmax_rows(const void* logits, int64_t n, int64_t V, int64_t ld, int dtype, int64_t* out, int threads) {
    int64_t size = dtype == BFLOAT16 ? 2 : 4;
    #pragma omp parallel for num_threads(threads) if (n > 1 && n * V >= 4 * PARALLEL_ELEMENTS) schedule(static)
    for (int64_t r = 0; r < n; r++) out[r] = argmax_row((const char*)logits + r * ld * size, V, dtype);
}
