/* Linear layers on the CPU: y = x W^T (+ bias) with W packed in tiles (litllm/cpu_gemm.py).

   float32: W (N, K) is stored as N/16 tiles of (K, 16): tile b holds W's rows 16b..16b+15, transposed, so that each
   k gives 16 consecutive outputs in one 64-byte line. bfloat16: tiles of (K/2, 16, 2), a line holding two k's of
   the 16 outputs, the pairs that the processor's bfloat16 dot product (AVX512-BF16) takes. Either way a line is one
   "step" of a tile, and x is copied, 16 rows at a time (8 for longer inputs), into (steps, 16) columns of 4-byte
   units (a float, or a pair of bfloat16).

   For each tile and group of 16 rows the kernel keeps the 16 x 16 float32 sums in registers and walks the steps
   once: a line of W and 16 broadcasts of x feed 16 fused multiply-adds (or dot products). W is streamed from memory
   once per 16 rows, prefetched far ahead, which is what a decoding step needs: oneDNN's prepacked kernel left
   memory idle while it computed (~270 vs ~330 GFLOP/s in float32 at 16 rows here). With fewer rows, several tiles
   are walked together so that enough independent sums are in flight. Every output is summed in the same order
   whatever the number of rows, so a row's result does not depend on the rows computed with it.

   Work is split over the tiles with OpenMP, which resolves to the runtime torch has loaded. */

#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef __AVX512BF16__
#include <immintrin.h>
#endif

#define TILE 16             /* outputs per tile */
#define SLAB 256            /* rows of x copied at a time (a multiple of 16) */
#define STEP_PIECE 128      /* steps of x copied per piece of work */
#define AHEAD_BYTES 8192    /* prefetch distance in W: 4-32 KiB ran alike on an AMD EPYC (Zen 5), 1 KiB was slower */
#define PANEL_BYTES (512 * 1024) /* tiles walked by every chunk of rows in turn: they stay in the L2 cache */

typedef float vec __attribute__((vector_size(64), aligned(4)));

static inline vec load(const void* p) {
    vec v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline float bits_to_float(uint32_t bits) {
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* acc + the products of one line of W with x: a float32 x broadcast over the line, or a pair of bfloat16 x's
   against the line's pairs */
static inline vec step_float32(vec acc, vec w, uint32_t x) { return acc + w * bits_to_float(x); }

#ifdef __AVX512BF16__
static inline vec step_bfloat16(vec acc, vec w, uint32_t x) {
    return (vec)_mm512_dpbf16_ps((__m512)acc, (__m512bh)w, (__m512bh)_mm512_set1_epi32((int)x));
}
#endif

static inline uint16_t float_to_bfloat16(float f) { /* round to nearest even, as torch does */
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    if (f != f) return 0x7fc0;
    return (uint16_t)((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

static inline void store_float32(void* y, vec out, const void* bias, int64_t i) {
    if (bias) out += load((const float*)bias + i);
    memcpy(y, &out, sizeof out);
}

static inline void store_bfloat16(void* y, vec out, const void* bias, int64_t i) {
    uint16_t values[TILE];
    for (int n = 0; n < TILE; n++) {
        float b = bias ? bits_to_float((uint32_t)((const uint16_t*)bias)[i + n] << 16) : 0.0f;
        values[n] = float_to_bfloat16(out[n] + b);
    }
    memcpy(y, values, sizeof values);
}

/* The outputs of `rows` (<= MR) rows and NR consecutive tiles: xt is (steps, MR) 4-byte units, w the first tile
   (steps lines of 64 bytes), the others following it; y the first output, rows ldy elements apart. */
#define MICRO(T, MR, NR, SIZE)                                                                                      \
    static void micro_##T##_##MR##_##NR(const uint32_t* restrict xt, const char* restrict w, int64_t steps,        \
                                        const void* bias, char* restrict y, int64_t ldy, int rows) {               \
        vec acc[NR][MR];                                                                                            \
        for (int i = 0; i < NR; i++)                                                                                \
            for (int j = 0; j < MR; j++) acc[i][j] = (vec){0};                                                      \
        for (int64_t s = 0; s < steps; s++) {                                                                       \
            const uint32_t* xs = xt + s * MR;                                                                       \
            for (int i = 0; i < NR; i++) {                                                                          \
                const char* ws = w + (i * steps + s) * 64;                                                          \
                __builtin_prefetch(ws + AHEAD_BYTES, 0, 0);                                                         \
                vec wv = load(ws);                                                                                  \
                for (int j = 0; j < MR; j++) acc[i][j] = step_##T(acc[i][j], wv, xs[j]);                            \
            }                                                                                                       \
        }                                                                                                           \
        for (int i = 0; i < NR; i++)                                                                                \
            for (int j = 0; j < rows; j++) store_##T(y + (j * ldy + i * TILE) * SIZE, acc[i][j], bias, i * TILE);   \
    }

#define MICROS(T, SIZE)                                                                                             \
    MICRO(T, 16, 1, SIZE)                                                                                           \
    MICRO(T, 8, 2, SIZE)                                                                                            \
    MICRO(T, 8, 1, SIZE)                                                                                            \
    MICRO(T, 4, 4, SIZE)                                                                                            \
    MICRO(T, 4, 1, SIZE)                                                                                            \
    MICRO(T, 2, 4, SIZE)                                                                                            \
    MICRO(T, 2, 1, SIZE)                                                                                            \
    MICRO(T, 1, 4, SIZE)                                                                                            \
    MICRO(T, 1, 1, SIZE)
MICROS(float32, 4)
#ifdef __AVX512BF16__
MICROS(bfloat16, 2)
#endif

typedef void (*micro_fn)(const uint32_t*, const char*, int64_t, const void*, char*, int64_t, int);

struct kind {
    int size;                   /* bytes of an element of x, W, bias and y */
    micro_fn micro[17][5];      /* [rows width][tiles at once] */
};

#define KIND(T, SIZE)                                                                                               \
    static struct kind T = {SIZE, {[16] = {[1] = micro_##T##_16_1},                                                 \
                                   [8] = {[1] = micro_##T##_8_1, [2] = micro_##T##_8_2},                            \
                                   [4] = {[1] = micro_##T##_4_1, [4] = micro_##T##_4_4},                            \
                                   [2] = {[1] = micro_##T##_2_1, [4] = micro_##T##_2_4},                            \
                                   [1] = {[1] = micro_##T##_1_1, [4] = micro_##T##_1_4}}};
KIND(float32, 4)
#ifdef __AVX512BF16__
KIND(bfloat16, 2)
#endif

static int width(int rows) { return rows > 8 ? 16 : rows > 4 ? 8 : rows > 2 ? 4 : rows; }
static int together(int mr) { return mr == 16 ? 1 : mr == 8 ? 2 : 4; } /* tiles walked at once */

/* Tiles b0..b1-1 for one chunk of rows (y: the chunk's first output row). */
static void tiles(const struct kind* k, int rows, const uint32_t* xt, const char* w, int64_t steps, const char* bias,
                  char* y, int64_t ldy, int64_t b0, int64_t b1) {
    int mr = width(rows), nr = together(mr);
    for (int64_t b = b0; b < b1;) {
        int n = b1 - b >= nr ? nr : 1;
        k->micro[mr][n](xt, w + b * steps * 64, steps, bias ? bias + b * TILE * k->size : NULL,
                        y + b * TILE * k->size, ldy, rows);
        b += n;
    }
}

/* A scratch buffer per calling thread, kept between calls (a decoding step makes dozens of these products). */
static _Thread_local uint32_t* scratch = NULL;
static _Thread_local size_t scratch_units = 0;

/* y[m, n] = sum_k x[m, k] w[n, k] (+ bias[n]) for m < M, n < N: x rows ldx elements apart, y rows ldy apart, W in
   N/16 tiles of `steps` lines. Returns 0, or 1 when out of memory (nothing written). */
static int linear(const struct kind* k, const char* x, int64_t ldx, const char* w, const char* bias, char* y,
                  int64_t ldy, int64_t M, int64_t N, int64_t steps, int threads) {
    /* rows of x per pass over a tile: 16 when there are no more (the weight streams from memory once), else 8,
       with two tiles at a time (fewer loads per product; the weight comes from the L2 cache again) */
    int64_t chunk = M > 16 ? 8 : 16;
    int64_t slab = M < SLAB ? M : SLAB;
    size_t need = (size_t)((slab + chunk - 1) / chunk) * chunk * steps;
    if (need > scratch_units) {
        free(scratch);
        scratch = aligned_alloc(64, (need * sizeof(uint32_t) + 63) / 64 * 64);
        scratch_units = scratch ? need : 0;
        if (!scratch) return 1;
    }
    uint32_t* xt = scratch;
    int64_t nb = N / TILE;
    int64_t panel = PANEL_BYTES / (steps * 64);
    panel = panel < 4 ? 4 : panel / 4 * 4;
    for (int64_t s = 0; s < M; s += SLAB) {
        int64_t rows = M - s < SLAB ? M - s : SLAB;
        int64_t chunks = (rows + chunk - 1) / chunk;
        #pragma omp parallel num_threads(threads)
        {
            /* x's rows, 16 at a time, into (steps, width) columns, the columns past the last row zero; in pieces of
               STEP_PIECE so that both threads share even a single chunk */
            int64_t pieces = (steps + STEP_PIECE - 1) / STEP_PIECE;
            #pragma omp for schedule(static)
            for (int64_t i = 0; i < chunks * pieces; i++) {
                int64_t c = i / pieces, s0 = i % pieces * STEP_PIECE;
                int64_t s1 = s0 + STEP_PIECE < steps ? s0 + STEP_PIECE : steps;
                int mr = rows - c * chunk < chunk ? (int)(rows - c * chunk) : chunk, wd = width(mr);
                uint32_t* dst = xt + c * chunk * steps;
                for (int j = 0; j < mr; j++) {
                    const char* src = x + (s + c * chunk + j) * ldx * k->size;
                    for (int64_t u = s0; u < s1; u++) memcpy(dst + u * wd + j, src + u * 4, 4);
                }
                for (int j = mr; j < wd; j++)
                    for (int64_t u = s0; u < s1; u++) dst[u * wd + j] = 0;
            }
            int t = omp_get_thread_num(), nt = omp_get_num_threads();
            int64_t b0 = nb * t / nt / 4 * 4, b1 = t == nt - 1 ? nb : nb * (t + 1) / nt / 4 * 4;
            for (int64_t p = b0; p < b1; p += panel) {
                int64_t pe = p + panel < b1 ? p + panel : b1;
                for (int64_t c = 0; c < chunks; c++) {
                    int mr = rows - c * chunk < chunk ? (int)(rows - c * chunk) : chunk;
                    tiles(k, mr, xt + c * chunk * steps, w, steps, bias, y + (s + c * chunk) * ldy * k->size, ldy,
                          p, pe);
                }
            }
        }
    }
    return 0;
}

/* float32 x (M, K), W in tiles of (K, 16), bias (N) or NULL, y (M, N) */
int linear_float32(const float* x, int64_t ldx, const float* w, const float* bias, float* y, int64_t ldy, int64_t M,
                   int64_t N, int64_t K, int threads) {
    return linear(&float32, (const char*)x, ldx, (const char*)w, (const char*)bias, (char*)y, ldy, M, N, K, threads);
}

/* bfloat16 x (M, K), W in tiles of (K/2, 16, 2), bias (N) or NULL, y (M, N); K even. Returns 2 where the processor
   has no bfloat16 dot products (cpu_gemm.py then packs bfloat16 weights for oneDNN and never calls this). */
int linear_bfloat16(const uint16_t* x, int64_t ldx, const uint16_t* w, const uint16_t* bias, uint16_t* y,
                    int64_t ldy, int64_t M, int64_t N, int64_t K, int threads) {
#ifdef __AVX512BF16__
    return linear(&bfloat16, (const char*)x, ldx, (const char*)w, (const char*)bias, (char*)y, ldy, M, N, K / 2,
                  threads);
#else
    (void)x, (void)ldx, (void)w, (void)bias, (void)y, (void)ldy, (void)M, (void)N, (void)K, (void)threads;
    return 2;
#endif
}

/* Whether this build runs products of this kind (0: float32, 1: bfloat16) on the registers it was written for:
   float32 needs AVX-512's 32 registers of 16 floats (with AVX2's 16 of 8 the sums would not fit), bfloat16 its
   bfloat16 dot products too. Elsewhere cpu_gemm.py leaves the weights to oneDNN. */
int native(int kind) {
#if defined(__AVX512BF16__)
    return kind == 0 || kind == 1;
#elif defined(__AVX512F__)
    return kind == 0;
#else
    return 0 * kind;
#endif
}
