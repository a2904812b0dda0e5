/* One-query attention over a KV cache on the CPU: the decoding step's attention (litllm/cpu_attention.py).

   For every batch row b and key/value head h, the g query heads of that group attend to the keys lo[b]..hi[b]-1:
   scores = q . k * scale (optionally capped: cap * tanh(score / cap)), a softmax, and the weighted sum of the
   values. Each key and value row comes from memory once for the whole group, prefetched a few positions ahead: at
   every decoding step the cache is read from memory, not from the processor's caches.

   q, out: float32 (B, nkv, g, hs), contiguous. k, v: float32 or bfloat16, any strides over (row, head, position),
   contiguous over hs. lo, hi: int64 (B,). Work is split over the B * nkv (row, head) pairs with OpenMP, which
   resolves to the runtime torch has loaded. */

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define AHEAD_BYTES 2048 /* prefetch distance: 1-8 KiB ran within noise of each other on an AMD EPYC (Zen 5) */

static inline float bf16_to_float(uint16_t x) {
    uint32_t bits = (uint32_t)x << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* e^x for x <= 0 to about 1 ulp (a Cephes-style polynomial): one the compiler vectorizes, where expf is a call */
static inline float exp_nonpositive(float x) {
    x = x < -87.0f ? -87.0f : x; /* e^-87 is still a normal float, and next to the maximum's e^0 = 1 it is nothing */
    float n = __builtin_floorf(x * 1.44269504088896341f + 0.5f);
    float r = x - n * 0.693359375f + n * 2.12194440e-4f; /* x - n ln 2, with ln 2 split in two for precision */
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23; /* 2^n */
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* q . k over hs elements: 16 at a time in a vector of sums (a dot product summed in one chain waited on every
   multiply-add: the scores took most of a long decoding step's attention), added up in a fixed tree */
typedef float floats16 __attribute__((vector_size(64), aligned(4), may_alias)); /* loaded in one instruction: */
typedef uint16_t halves16 __attribute__((vector_size(32), aligned(2), may_alias)); /* a memcpy went through the */
typedef uint32_t words16 __attribute__((vector_size(64), aligned(4), may_alias)); /* stack in two halves */
typedef float floats8 __attribute__((vector_size(32), aligned(4)));
typedef float floats4 __attribute__((vector_size(16), aligned(4)));

static inline float sum16(floats16 v) {
    floats8 h = __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7) +
                __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
    floats4 f = __builtin_shufflevector(h, h, 0, 1, 2, 3) + __builtin_shufflevector(h, h, 4, 5, 6, 7);
    return (f[0] + f[2]) + (f[1] + f[3]);
}

static inline floats16 keys16_float(const float* k) { return *(const floats16*)k; }

static inline floats16 keys16_bf16(const uint16_t* k) {
    return (floats16)(__builtin_convertvector(*(const halves16*)k, words16) << 16);
}

#define DEFINE_DOT(NAME, T, KEYS16, LOAD)                                                                            \
    static inline float NAME(const float* q, const T* k, int64_t hs) {                                               \
        if (hs % 16 == 0) {                                                                                          \
            floats16 sums = {0};                                                                                     \
            for (int64_t d = 0; d < hs; d += 16) sums += keys16_float(q + d) * KEYS16(k + d);                        \
            return sum16(sums);                                                                                      \
        }                                                                                                            \
        float acc = 0.0f;                                                                                            \
        for (int64_t d = 0; d < hs; d++) acc += q[d] * LOAD(k[d]);                                                   \
        return acc;                                                                                                  \
    }

/* into every cache level: on an Intel Xeon the non-temporal hint (locality 0) left a decoding step's attention over
   160-1000 positions 1.2-1.3x slower, as it did the linear layers (gemm.c) */
static inline void prefetch_row(const void* row, int64_t bytes) {
    for (int64_t c = 0; c < bytes; c += 64) __builtin_prefetch((const char*)row + c, 0, 3);
}

/* softmax of n scores, in place */
static void softmax(float* s, int64_t n) {
    float m = -INFINITY;
    for (int64_t i = 0; i < n; i++) m = s[i] > m ? s[i] : m;
    float sum = 0.0f;
    for (int64_t i = 0; i < n; i++) {
        s[i] = exp_nonpositive(s[i] - m);
        sum += s[i];
    }
    float inv = 1.0f / sum;
    for (int64_t i = 0; i < n; i++) s[i] *= inv;
}

/* One (row, key/value head) pair: its g queries against keys kt[0..n-1], values vt[0..n-1] (rows ks, vs apart).
   Inlined with hs a constant (64, 128) where it is one, so that the output row stays in registers. */
#define DEFINE_TASK(NAME, T, LOAD, DOT)                                                                                \
    static inline __attribute__((always_inline)) void NAME(const float* qt, const T* kt, const T* vt, float* ot,     \
                                                           int64_t g, const int64_t hs, int64_t n, int64_t ks,       \
                                                           int64_t vs, float scale, float cap, float* scores) {      \
        int64_t ahead = (AHEAD_BYTES + hs * (int64_t)sizeof(T) - 1) / (hs * (int64_t)sizeof(T));                     \
        for (int64_t i = 0; i < ahead && i < n; i++) {                                                               \
            prefetch_row(kt + i * ks, hs * (int64_t)sizeof(T));                                                      \
            prefetch_row(vt + i * vs, hs * (int64_t)sizeof(T));                                                      \
        }                                                                                                            \
        for (int64_t i = 0; i < n; i++) { /* scores: each key row read from memory once for the g queries */        \
            if (i + ahead < n) {                                                                                     \
                prefetch_row(kt + (i + ahead) * ks, hs * (int64_t)sizeof(T));                                        \
                prefetch_row(vt + (i + ahead) * vs, hs * (int64_t)sizeof(T));                                        \
            }                                                                                                        \
            const T* kr = kt + i * ks;                                                                               \
            for (int64_t j = 0; j < g; j++) scores[j * n + i] = DOT(qt + j * hs, kr, hs) * scale;                   \
        }                                                                                                            \
        if (cap > 0.0f)                                                                                              \
            for (int64_t i = 0; i < g * n; i++) scores[i] = cap * tanhf(scores[i] / cap);                            \
        for (int64_t j = 0; j < g; j++) softmax(scores + j * n, n);                                                  \
        for (int64_t j = 0; j < g; j++) { /* outputs: the value rows are in the processor's cache after j = 0 */     \
            float acc[hs];                                                                                           \
            for (int64_t d = 0; d < hs; d++) acc[d] = 0.0f;                                                          \
            const float* p = scores + j * n;                                                                         \
            for (int64_t i = 0; i < n; i++) {                                                                        \
                const T* vr = vt + i * vs;                                                                           \
                for (int64_t d = 0; d < hs; d++) acc[d] += p[i] * LOAD(vr[d]);                                       \
            }                                                                                                        \
            for (int64_t d = 0; d < hs; d++) ot[j * hs + d] = acc[d];                                                \
        }                                                                                                            \
    }

#define LOAD_FLOAT(x) (x)
#define LOAD_BF16(x) bf16_to_float(x)
DEFINE_DOT(dot_float32, float, keys16_float, LOAD_FLOAT)
DEFINE_DOT(dot_bfloat16, uint16_t, keys16_bf16, LOAD_BF16)
DEFINE_TASK(task_float32, float, LOAD_FLOAT, dot_float32)
DEFINE_TASK(task_bfloat16, uint16_t, LOAD_BF16, dot_bfloat16)

#define DEFINE_ATTEND(NAME, T, TASK)                                                                                 \
    int NAME(const float* q, const T* k, const T* v, float* out, int64_t B, int64_t nkv, int64_t g, int64_t hs,      \
             int64_t S, int64_t kb, int64_t kh, int64_t ks, int64_t vb, int64_t vh, int64_t vs, const int64_t* lo,   \
             const int64_t* hi, float scale, float cap, int threads) {                                               \
        int64_t longest = 1;                                                                                         \
        for (int64_t b = 0; b < B; b++) {                                                                            \
            if (lo[b] < 0 || hi[b] > S || lo[b] > hi[b]) return 2; /* a range outside the keys given */               \
            longest = hi[b] - lo[b] > longest ? hi[b] - lo[b] : longest;                                             \
        }                                                                                                            \
        int failed = 0;                                                                                              \
        _Pragma("omp parallel num_threads(threads) reduction(| : failed)") {                                         \
            float* scores = malloc(sizeof(float) * g * longest);                                                     \
            failed = scores == NULL;                                                                                 \
            _Pragma("omp for schedule(static)") for (int64_t t = 0; t < B * nkv; t++) {                              \
                if (failed) continue;                                                                                \
                int64_t b = t / nkv, h = t % nkv, n = hi[b] - lo[b];                                                 \
                const T* kt = k + b * kb + h * kh + lo[b] * ks;                                                      \
                const T* vt = v + b * vb + h * vh + lo[b] * vs;                                                      \
                if (n == 0) {                                                                                        \
                    memset(out + t * g * hs, 0, sizeof(float) * g * hs);                                             \
                } else if (hs == 64) {                                                                               \
                    TASK(q + t * g * hs, kt, vt, out + t * g * hs, g, 64, n, ks, vs, scale, cap, scores);            \
                } else if (hs == 128) {                                                                              \
                    TASK(q + t * g * hs, kt, vt, out + t * g * hs, g, 128, n, ks, vs, scale, cap, scores);           \
                } else {                                                                                             \
                    TASK(q + t * g * hs, kt, vt, out + t * g * hs, g, hs, n, ks, vs, scale, cap, scores);            \
                }                                                                                                    \
            }                                                                                                        \
            free(scores);                                                                                            \
        }                                                                                                            \
        return failed;                                                                                               \
    }

DEFINE_ATTEND(attend_float32, float, task_float32)
DEFINE_ATTEND(attend_bfloat16, uint16_t, task_bfloat16)

/* A decoding step's new keys or values into the cache: new[b, h] (row_bytes each) to cache[b, h, pos[b]] for every
   row b and head h. Strides in bytes. Returns 2, writing nothing, if a position is outside 0..S-1. */
int store(char* cache, const char* new, int64_t B, int64_t nkv, int64_t row_bytes, int64_t S, int64_t cb, int64_t ch,
          int64_t cs, int64_t nb, int64_t nh, const int64_t* pos) {
    for (int64_t b = 0; b < B; b++)
        if (pos[b] < 0 || pos[b] >= S) return 2;
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < nkv; h++) memcpy(cache + b * cb + h * ch + pos[b] * cs, new + b * nb + h * nh, row_bytes);
    return 0;
}
