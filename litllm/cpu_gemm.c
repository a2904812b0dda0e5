/* float32 linear layers on the CPU: y = x W^T (+ bias) with W packed in tiles (litllm/cpu_gemm.py).

   W (N, K) is stored as N/16 tiles of (K, 16): tile b holds W's rows 16b..16b+15, transposed, so that each k gives
   16 consecutive outputs in one 64-byte line. x is copied, 16 rows at a time, into (K, 16) columns. For each tile
   and group of 16 rows the kernel keeps the 16 x 16 outputs in registers and walks k once: one line of W and 16
   broadcasts of x feed 16 fused multiply-adds. W is streamed from memory once per 16 rows, prefetched far ahead,
   which is what a decoding step needs: oneDNN's prepacked kernel left memory idle while it computed (~270 vs ~330
   GFLOP/s at 16 rows here). With fewer rows, several tiles are walked together so that enough independent sums
   are in flight. Every output is summed over k in the same order whatever the number of rows, so a row's result
   does not depend on the rows computed with it.

   Work is split over the tiles with OpenMP, which resolves to the runtime torch has loaded. */

#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define TILE 16             /* outputs per tile */
#define CHUNK 16            /* rows of x per pass over a tile */
#define SLAB 256            /* rows of x copied at a time */
#define K_PIECE 128
#define AHEAD_BYTES 8192    /* prefetch distance in W: 4-32 KiB ran alike on an AMD EPYC (Zen 5), 1 KiB was slower */
#define PANEL_BYTES (512 * 1024) /* tiles walked by every chunk of rows in turn: they stay in the L2 cache */

typedef float vec __attribute__((vector_size(64), aligned(4)));

static inline vec load(const float* p) {
    vec v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* The outputs of `rows` (<= MR) rows and NR consecutive tiles: xt is (K, MR), w the first tile (K, 16), the others
   following it; y the first output, rows ldy apart. */
#define MICRO(MR, NR)                                                                                               \
    static void micro_##MR##_##NR(const float* restrict xt, const float* restrict w, int64_t K, const float* bias,   \
                                  float* restrict y, int64_t ldy, int rows) {                                       \
        vec acc[NR][MR];                                                                                            \
        for (int i = 0; i < NR; i++)                                                                                \
            for (int j = 0; j < MR; j++) acc[i][j] = (vec){0};                                                      \
        for (int64_t k = 0; k < K; k++) {                                                                           \
            const float* xk = xt + k * MR;                                                                          \
            for (int i = 0; i < NR; i++) {                                                                          \
                const float* wk = w + (i * K + k) * TILE;                                                           \
                __builtin_prefetch((const char*)wk + AHEAD_BYTES, 0, 0);                                            \
                vec wv = load(wk);                                                                                  \
                for (int j = 0; j < MR; j++) acc[i][j] += wv * xk[j];                                               \
            }                                                                                                       \
        }                                                                                                           \
        for (int i = 0; i < NR; i++) {                                                                              \
            vec b = bias ? load(bias + i * TILE) : (vec){0};                                                        \
            for (int j = 0; j < rows; j++) {                                                                        \
                vec out = acc[i][j] + b;                                                                            \
                memcpy(y + j * ldy + i * TILE, &out, sizeof out);                                                   \
            }                                                                                                       \
        }                                                                                                           \
    }

MICRO(16, 1)
MICRO(8, 2)
MICRO(8, 1)
MICRO(4, 4)
MICRO(4, 1)
MICRO(2, 4)
MICRO(2, 1)
MICRO(1, 4)
MICRO(1, 1)

static int width(int rows) { return rows > 8 ? 16 : rows > 4 ? 8 : rows > 2 ? 4 : rows; }
static int together(int mr) { return mr == 16 ? 1 : mr == 8 ? 2 : 4; } /* tiles walked at once */

/* Tiles b0..b1-1 (b1 - b0 a multiple of together(mr), or 1) for one chunk of rows. */
static void tiles(int mr, const float* xt, const float* w, int64_t K, const float* bias, float* y, int64_t ldy,
                  int rows, int64_t b0, int64_t b1) {
    int nr = together(mr);
    for (int64_t b = b0; b < b1;) {
        const float* wb = w + b * K * TILE;
        const float* bb = bias ? bias + b * TILE : NULL;
        float* yb = y + b * TILE;
        int all = b1 - b >= nr;
        switch (mr * 8 + (all ? nr : 1)) {
            case 16 * 8 + 1: micro_16_1(xt, wb, K, bb, yb, ldy, rows); break;
            case 8 * 8 + 2: micro_8_2(xt, wb, K, bb, yb, ldy, rows); break;
            case 8 * 8 + 1: micro_8_1(xt, wb, K, bb, yb, ldy, rows); break;
            case 4 * 8 + 4: micro_4_4(xt, wb, K, bb, yb, ldy, rows); break;
            case 4 * 8 + 1: micro_4_1(xt, wb, K, bb, yb, ldy, rows); break;
            case 2 * 8 + 4: micro_2_4(xt, wb, K, bb, yb, ldy, rows); break;
            case 2 * 8 + 1: micro_2_1(xt, wb, K, bb, yb, ldy, rows); break;
            case 1 * 8 + 4: micro_1_4(xt, wb, K, bb, yb, ldy, rows); break;
            default: micro_1_1(xt, wb, K, bb, yb, ldy, rows); break;
        }
        b += all ? nr : 1;
    }
}

/* A scratch buffer per calling thread, kept between calls (a decoding step makes dozens of these products). */
static _Thread_local float* scratch = NULL;
static _Thread_local size_t scratch_floats = 0;

/* y[m, n] = sum_k x[m, k] w[n, k] (+ bias[n]) for m < M, n < N; w in N/16 tiles (K, 16); x rows ldx apart, y rows
   ldy apart. Returns 0, or 1 when out of memory (nothing written). */
int linear_float32(const float* x, int64_t ldx, const float* w, const float* bias, float* y, int64_t ldy, int64_t M,
                   int64_t N, int64_t K, int threads) {
    int64_t slab = M < SLAB ? M : SLAB;
    size_t need = (size_t)((slab + CHUNK - 1) / CHUNK) * CHUNK * K;
    if (need > scratch_floats) {
        free(scratch);
        scratch = aligned_alloc(64, (need * sizeof(float) + 63) / 64 * 64);
        scratch_floats = scratch ? need : 0;
        if (!scratch) return 1;
    }
    float* xt = scratch;
    int64_t nb = N / TILE;
    int64_t panel = PANEL_BYTES / (K * TILE * (int64_t)sizeof(float));
    panel = panel < 4 ? 4 : panel / 4 * 4;
    for (int64_t s = 0; s < M; s += SLAB) {
        int64_t rows = M - s < SLAB ? M - s : SLAB;
        int64_t chunks = (rows + CHUNK - 1) / CHUNK;
        #pragma omp parallel num_threads(threads)
        {
            /* x's rows, 16 at a time, into (K, width) columns, the columns past the last row zero; in pieces of
               K_PIECE so that both threads share even a single chunk */
            int64_t pieces = (K + K_PIECE - 1) / K_PIECE;
            #pragma omp for schedule(static)
            for (int64_t i = 0; i < chunks * pieces; i++) {
                int64_t c = i / pieces, k0 = i % pieces * K_PIECE, k1 = k0 + K_PIECE < K ? k0 + K_PIECE : K;
                int mr = rows - c * CHUNK < CHUNK ? (int)(rows - c * CHUNK) : CHUNK, wd = width(mr);
                float* dst = xt + c * CHUNK * K;
                for (int j = 0; j < mr; j++) {
                    const float* src = x + (s + c * CHUNK + j) * ldx;
                    for (int64_t k = k0; k < k1; k++) dst[k * wd + j] = src[k];
                }
                for (int j = mr; j < wd; j++)
                    for (int64_t k = k0; k < k1; k++) dst[k * wd + j] = 0.0f;
            }
            int t = omp_get_thread_num(), nt = omp_get_num_threads();
            int64_t b0 = nb * t / nt / 4 * 4, b1 = t == nt - 1 ? nb : nb * (t + 1) / nt / 4 * 4;
            for (int64_t p = b0; p < b1; p += panel) {
                int64_t pe = p + panel < b1 ? p + panel : b1;
                for (int64_t c = 0; c < chunks; c++) {
                    int mr = rows - c * CHUNK < CHUNK ? (int)(rows - c * CHUNK) : CHUNK;
                    tiles(width(mr), xt + c * CHUNK * K, w, K, bias, y + (s + c * CHUNK) * ldy, ldy, mr, p, pe);
                }
            }
        }
    }
    return 0;
}
