/* Linear layers on the CPU: y = x W^T (+ bias) with W packed in tiles (litllm/cpu/gemm.py).

   W (N, K) is stored as N/16 tiles; tile b holds W's rows 16b..16b+15, transposed, so that one "line" of the tile
   gives 16 consecutive outputs: float32 and float16 tiles are (K, 16), a line per k (64 and 32 bytes); bfloat16 and
   int8 tiles are (K/2, 16, 2), a line (64 and 32 bytes) holding two k's of the 16 outputs, the pairs that
   AVX512-BF16's dot product and vpmaddwd take. x is copied, a chunk of rows at a time, into (steps, rows) columns of
   units: a float; for bfloat16 weights a pair of bfloat16 as it is (for the dot product) or widened to two floats
   (without it); for int8 weights a pair of int16, x rounded with a scale per row and piece of 256 elements
   (`quantize_piece`); float16 activations of float16 weights are widened to floats as they are copied.

   For each tile and chunk of rows the kernel keeps the chunk's 16-wide float32 sums in registers and walks the
   tile's lines once: a line of W, widened to float32 in registers where it is narrower (bfloat16 by a shift, float16
   by F16C), and a broadcast of x per row feed the fused multiply-adds; int8 pairs, sign-extended to int16, multiply
   x's pairs in integers (`madd_pairs`), summed in int32 over a piece and then in float32. Weights stay in their own
   dtype in memory, so a decoding step reads half (bfloat16, float16) or a quarter (int8) of float32's bytes. int8
   weights carry a float32 scale per output, applied to the finished sum. W is streamed from memory once per
   step: the first chunk of rows reads a panel of tiles from memory, prefetched far ahead, and the other chunks find
   it in the L2 cache. With fewer rows, several tiles are walked together so that enough independent sums are in
   flight. Every output is summed in the same order whatever the number of rows and threads, so a row's result does
   not depend on the rows computed with it.

   One source, three builds (litllm/cpu/isa.py): AVX-512 (chunks of 8 rows, one register a 16-wide sum), AVX2 + FMA
   + F16C (a sum takes two of the 16 registers: chunks of 6 rows for float32 and float16 weights, of 4 for bfloat16
   and int8, whose widened lines take more registers) and generic x86-64 (chunks of 2, no fused products).
   Prefetches go into every cache level: on an Intel Xeon the non-temporal hint read a third of the bandwidth (AMD
   builds prefetch a product of one pass into L2: `STREAM_LOCALITY`).
   Work is split over the tiles with OpenMP, which resolves to the runtime torch has loaded. */

#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__AMX_TILE__)
#include <sys/syscall.h>
#include <unistd.h>
#endif
#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

#define TILE 16             /* outputs per tile */
#define SLAB 240            /* rows of x copied at a time (a multiple of every chunk: 8, 6, 4, 2) */
#define STEP_PIECE 128      /* steps of x copied per piece of work; for int8 weights, the steps x is rounded over */
_Static_assert(2LL * STEP_PIECE * 128 * 32767 < 2147483647LL, "an int8 piece's int32 sums could overflow");
#ifndef AHEAD_BYTES
#define AHEAD_BYTES 8192    /* prefetch distance in W: 4-32 KiB ran alike on an AMD EPYC (Zen 5), 1 KiB was slower */
#endif
#ifndef PREFETCH_LOCALITY /* into every cache level (prefetcht0): on an Intel Xeon the non-temporal hint (0) read */
#define PREFETCH_LOCALITY 3 /* 9 GB/s where this reads 26, as fast as the CPU streams; 1 (L2) read 22 */
#endif
/* The same for a product of one pass over the weights (as many rows as a chunk, or fewer: decoding). gemm.py builds
   with 2 (prefetcht1, into L2) on AMD processors, where a prefetch into L1 waits for one of L1's few miss buffers */
#ifndef STREAM_LOCALITY
#define STREAM_LOCALITY PREFETCH_LOCALITY
#endif
/* Bytes of tiles walked by every chunk of rows in turn (`panel_tiles`): the panel and the next one, fetched during its
   passes (`struct fetch`), stay in L2. 128 KiB ran pythia-160m's products at 16 rows 1.15-1.25x faster than 512 KiB on
   an AMD EPYC (Zen 4, 1 MiB of L2), on both the AVX-512 and the AVX2 build, and leaves room in a 512 KiB L2 (Zen 3). */
#ifndef PANEL_BYTES
#define PANEL_BYTES (128 * 1024)
#endif
#define AMX_PANEL_BYTES (512 * 1024) /* AMX's (`linear_amx`, no software prefetch), as measured on an Intel Xeon */

#if defined(__AVX512F__) && defined(__AMX_TILE__) && defined(__AMX_BF16__)
#define ISA 3 /* AVX-512, and bfloat16 weights multiplied by AMX tiles (`linear_amx`) */
#define AMX 1
#elif defined(__AVX512F__)
#define ISA 2
#endif
/* Rows of x per pass over a panel: CHUNK_WIDE for float32 and float16 weights, CHUNK_PAIRS for bfloat16 and int8
   weights (a line of two k's), CHUNK the larger; width(rows): the micro kernel's rows for a chunk of `rows`;
   together(mr): tiles walked at once */
#if defined(__AVX512F__)
/* 8 rows x 2 tiles (16 of the 32 registers hold sums). 16 rows x 1 tile, one load per multiply-add, ran at 60% of the
   speed of two passes of 8 on an Intel Xeon */
#define CHUNK_WIDE 8
#define CHUNK_PAIRS 8
static int width(int rows) { return rows > 4 ? 8 : rows > 2 ? 4 : rows; }
static int together(int mr) { return mr == 8 ? 2 : 4; }
#elif defined(__AVX2__)
#define ISA 1
/* 6 rows x 1 tile: 12 of the 16 registers hold sums, 2 the line, 1 x; 12 multiply-adds for 8 loads. 4 rows (8
   multiply-adds for 6 loads) ran pythia-160m's products at 16 rows 1.3x slower on an AMD EPYC (Zen 4) forced to
   AVX2. A bfloat16 line widens into 4 registers: 4 rows, as 6 would not fit. */
#define CHUNK_WIDE 6
#define CHUNK_PAIRS 4
static int width(int rows) { return rows > 4 ? 6 : rows > 2 ? 4 : rows; }
static int together(int mr) { return mr >= 4 ? 1 : mr == 2 ? 2 : 4; }
#else
#define ISA 0
#define CHUNK_WIDE 2
#define CHUNK_PAIRS 2
static int width(int rows) { return rows; }
static int together(int mr) { return mr == 2 ? 1 : 2; }
#endif
#define CHUNK (CHUNK_WIDE > CHUNK_PAIRS ? CHUNK_WIDE : CHUNK_PAIRS)

/* One register of sums: 16 floats (AVX-512), 8 (AVX2) or 4 (SSE); a tile's 16 outputs take PARTS of them. Sums are
   declared in the register's own width, so that the compiler keeps them in registers (a 64-byte vector split in two
   on AVX2 lived on the stack). */
#if ISA >= 2
#define LANES 16
#elif ISA == 1
#define LANES 8
#else
#define LANES 4
#endif
#define PARTS (TILE / LANES)
typedef float vec __attribute__((vector_size(LANES * 4), aligned(4)));
typedef uint32_t uvec __attribute__((vector_size(LANES * 4), aligned(4)));

static inline vec load(const void* p) { /* unaligned, one instruction (a memcpy went through the stack) */
#if ISA >= 2
    return (vec)_mm512_loadu_ps(p);
#elif ISA == 1
    return (vec)_mm256_loadu_ps(p);
#else
    vec v;
    memcpy(&v, p, sizeof v);
    return v;
#endif
}

static inline float bits_to_float(uint32_t bits) {
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static inline float bfloat16_to_float(uint16_t x) { return bits_to_float((uint32_t)x << 16); }

/* LANES float16 or int8 weights as floats */
static inline vec widen_float16(const void* p) {
#if ISA >= 2
    return (vec)_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)p));
#elif ISA == 1
    return (vec)_mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)p));
#else
    vec v;
    _Float16 h[LANES];
    memcpy(h, p, sizeof h);
    for (int i = 0; i < LANES; i++) v[i] = (float)h[i];
    return v;
#endif
}

/* The products of part `q` of one line of W (outputs q*LANES..) with one row's unit of x, in three pieces: `line_T`
   widens the line's part into WIDE vectors (two for a bfloat16 pair: its even and its odd k), `bcast_T` broadcasts the
   row's unit into as many, and `madd_T` adds their products to the sums. */
static inline float unit_float(const uint32_t* x) {
    float f;
    memcpy(&f, x, sizeof f);
    return f;
}

/* x's unit broadcast. On AVX-512 it is kept in a register (the empty asm) and reused for every tile of the step: as an
   embedded broadcast, each multiply-add loaded it again, and the loads, more than one per multiply-add, held a batch
   of 8 rows to ~55-70% of the peak multiply-add rate on an Intel Xeon (bfloat16 weights: 89 -> 146 GFLOPS a core). */
static inline vec broadcast(float f) {
#if ISA >= 2
    vec v = (vec)_mm512_set1_ps(f);
    __asm__("" : "+v"(v));
#elif ISA == 1
    vec v = (vec)_mm256_set1_ps(f);
#else
    vec v = {f, f, f, f};
#endif
    return v;
}

#define WIDE_float32 1
#define WIDE_float16 1
#if defined(__AVX512BF16__)
#define WIDE_bfloat16 1 /* the pair as it is, for the dot product */
#else
#define WIDE_bfloat16 2
#endif

static inline void line_float32(const char* w, int q, vec* out) { out[0] = load(w + q * LANES * 4); }
static inline void bcast_float32(const uint32_t* x, vec* out) { out[0] = broadcast(unit_float(x)); }
static inline vec madd_float32(vec acc, const vec* w, const vec* x) { return acc + w[0] * x[0]; }

static inline void line_float16(const char* w, int q, vec* out) { out[0] = widen_float16(w + q * LANES * 2); }
#define bcast_float16 bcast_float32
#define madd_float16 madd_float32

#if defined(__AVX512BF16__)
static inline void line_bfloat16(const char* w, int q, vec* out) { out[0] = load(w + q * 64); }
static inline void bcast_bfloat16(const uint32_t* x, vec* out) {
    out[0] = (vec)_mm512_set1_epi32((int)*x);
    __asm__("" : "+v"(out[0]));
}
static inline vec madd_bfloat16(vec acc, const vec* w, const vec* x) {
    return (vec)_mm512_dpbf16_ps((__m512)acc, (__m512bh)w[0], (__m512bh)x[0]);
}
#else /* the even k's are the low halves of the line's 4-byte units, the odd k's the high halves; x's pair comes
         widened, as two floats (BF16_WORDS) */
static inline void line_bfloat16(const char* w, int q, vec* out) {
    uvec bits = (uvec)load(w + q * LANES * 4);
    out[0] = (vec)(bits << 16);
    out[1] = (vec)(bits & 0xffff0000u);
}
static inline void bcast_bfloat16(const uint32_t* x, vec* out) {
    out[0] = broadcast(unit_float(x));
    out[1] = broadcast(unit_float(x + 1));
}
static inline vec madd_bfloat16(vec acc, const vec* w, const vec* x) {
    acc += w[0] * x[0];
    return acc + w[1] * x[1];
}
#endif

/* int8 weights multiply x rounded to int16 (`quantize_piece`) in integers: a line of an int8 tile holds two k's of
   its 16 outputs, pairs side by side as in bfloat16 tiles; `widen_pairs` sign-extends LANES outputs' pairs to int16 and
   `madd_pairs` adds their products with one row's pair of x to LANES int32 sums (AVX512-VNNI's vpdpwssd, else
   vpmaddwd and an add). That is two or three instructions for 2 * LANES weights, where widening each weight to a
   float took three for LANES: the float path could not keep up with the memory bus on an Intel Xeon. */
typedef int32_t ivec __attribute__((vector_size(LANES * 4), aligned(4)));
#if ISA >= 2
typedef __m512i pvec;
static inline pvec widen_pairs(const void* p) { return _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i*)p)); }
static inline ivec madd_pairs(ivec sums, pvec w, uint32_t x) {
#if defined(__AVX512VNNI__)
    return (ivec)_mm512_dpwssd_epi32((__m512i)sums, w, _mm512_set1_epi32((int)x));
#else
    return sums + (ivec)_mm512_madd_epi16(w, _mm512_set1_epi32((int)x));
#endif
}
#elif ISA == 1
typedef __m256i pvec;
static inline pvec widen_pairs(const void* p) { return _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i*)p)); }
static inline ivec madd_pairs(ivec sums, pvec w, uint32_t x) {
    return sums + (ivec)_mm256_madd_epi16(w, _mm256_set1_epi32((int)x));
}
#else
typedef int16_t pvec __attribute__((vector_size(LANES * 4), aligned(4)));
static inline pvec widen_pairs(const void* p) {
    pvec v;
    for (int n = 0; n < 2 * LANES; n++) v[n] = ((const int8_t*)p)[n];
    return v;
}
static inline ivec madd_pairs(ivec sums, pvec w, uint32_t x) {
    int16_t lo = (int16_t)(x & 0xffffu), hi = (int16_t)(x >> 16);
    for (int n = 0; n < LANES; n++) sums[n] += w[2 * n] * lo + w[2 * n + 1] * hi;
    return sums;
}
#endif

static inline uint16_t float_to_bfloat16(float f) { /* round to nearest even, as torch does */
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    if (f != f) return 0x7fc0;
    return (uint16_t)((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

/* outputs i..i+LANES-1 of a row: the sums times the scales (int8), plus the bias, in y's dtype */
enum out_type { OUT_FLOAT32, OUT_BFLOAT16, OUT_FLOAT16 };

static inline void store(void* y, vec out, enum out_type type, const void* bias, const float* scale, int64_t i) {
    if (scale) out *= load(scale + i);
    if (type == OUT_FLOAT32) {
        if (bias) out += load((const float*)bias + i);
        memcpy(y, &out, sizeof out);
        return;
    }
    uint16_t values[LANES];
    for (int n = 0; n < LANES; n++) {
        if (type == OUT_BFLOAT16) {
            values[n] = float_to_bfloat16(out[n] + (bias ? bfloat16_to_float(((const uint16_t*)bias)[i + n]) : 0.0f));
        } else {
            _Float16 h = (_Float16)(out[n] + (bias ? (float)((const _Float16*)bias)[i + n] : 0.0f));
            memcpy(values + n, &h, 2);
        }
    }
    memcpy(y, values, sizeof values);
}

struct kind {
    int line;                  /* bytes of a line of W */
    int x_size;                /* bytes of an element of x, bias and y */
    int widen_x;               /* x is bfloat16 (1) or float16 (2) and is widened to float as it is copied */
    int words;                 /* 4-byte words of xt per unit: 2 for a pair of bfloat16 widened to two floats */
    enum out_type out;
    int quantize;              /* x is rounded to int16 pairs with a scale per piece (int8 weights) */
    int chunk;                 /* rows of x per pass over a panel (CHUNK_WIDE or CHUNK_PAIRS) */
};

/* What a micro kernel prefetches: for every `passes`-th cache line of W it reads (from the `pass`-th on), the line
   `ahead` bytes on, with STREAM_LOCALITY (`near` 2: the product's only pass), PREFETCH_LOCALITY (1) or into L2 (0). A
   pass over weights read from memory fetches each line AHEAD_BYTES ahead; with several chunks of rows, every pass
   over a panel (read from L2) fetches its share of the next panel instead, so that memory streams the weights during
   all the passes, not during the first alone (there, 6 rows of multiply-adds per float32 line could not keep up with
   memory, and the next passes left it idle). */
struct fetch {
    int64_t ahead;
    int pass, passes, near;
};

typedef void (*micro_fn)(const struct kind*, const uint32_t*, const char*, int64_t, const void*, const float*, char*,
                         int64_t, int, const float*, const struct fetch*);

/* At a step that starts a cache line of W (lines of `line` bytes): whether this pass prefetches it (`go`) */
#define FETCH_STEP(line)                                                                                            \
    int go = 0;                                                                                                     \
    if ((line) == 64 || (s * (line)) % 64 == 0) {                                                                   \
        go = count == 0;                                                                                            \
        count = go ? f->passes - 1 : count - 1;                                                                     \
    }
#define FETCH(ws)                                                                                                   \
    if (go) {                                                                                                       \
        if (f->near == 2) __builtin_prefetch((ws) + f->ahead, 0, STREAM_LOCALITY);                                  \
        else if (f->near) __builtin_prefetch((ws) + f->ahead, 0, PREFETCH_LOCALITY);                                \
        else __builtin_prefetch((ws) + f->ahead, 0, 2);                                                             \
    }

/* One step of a micro kernel: the lines of W are loaded (and widened) into registers once, then each row's x is
   broadcast and multiplies them. AVX-512 (32 registers) widens the lines of all NR tiles first, then broadcasts each
   row's x once for them all; the narrower builds (16 registers) walk tile by tile. The sums are the same either way.
   The empty asm keeps a line in its register: as memory operands of the multiply-adds, AVX2 loaded it again for
   every row, and the loads, not the multiply-adds, set the pace. */
#if ISA == 1
#define KEEP(v) __asm__("" : "+x"(v))
#else
#define KEEP(v) (void)0
#endif
#if ISA >= 2
#define LOOP(T, MR, NR)                                                                                             \
    vec wv[NR][PARTS][WIDE_##T];                                                                                    \
    _Pragma("GCC unroll 16") for (int i = 0; i < NR; i++) {                                                         \
        const char* ws = w + (i * steps + s) * line;                                                                \
        FETCH(ws)                                                                                                   \
        _Pragma("GCC unroll 16") for (int q = 0; q < PARTS; q++) line_##T(ws, q, wv[i][q]);                         \
    }                                                                                                               \
    _Pragma("GCC unroll 16") for (int j = 0; j < MR; j++) {                                                         \
        vec xv[WIDE_##T];                                                                                           \
        bcast_##T(xs + j * WORDS_##T, xv);                                                                          \
        _Pragma("GCC unroll 16") for (int i = 0; i < NR; i++)                                                       \
            _Pragma("GCC unroll 16") for (int q = 0; q < PARTS; q++)                                                \
                acc[i][j][q] = madd_##T(acc[i][j][q], wv[i][q], xv);                                                \
    }
#else
#define LOOP(T, MR, NR)                                                                                             \
    _Pragma("GCC unroll 16") for (int i = 0; i < NR; i++) {                                                         \
        const char* ws = w + (i * steps + s) * line;                                                                \
        FETCH(ws)                                                                                                   \
        vec wv[PARTS][WIDE_##T];                                                                                    \
        _Pragma("GCC unroll 16") for (int q = 0; q < PARTS; q++) {                                                  \
            line_##T(ws, q, wv[q]);                                                                                 \
            _Pragma("GCC unroll 16") for (int e = 0; e < WIDE_##T; e++) KEEP(wv[q][e]);                            \
        }                                                                                                           \
        _Pragma("GCC unroll 16") for (int j = 0; j < MR; j++) {                                                     \
            vec xv[WIDE_##T];                                                                                       \
            bcast_##T(xs + j * WORDS_##T, xv);                                                                      \
            _Pragma("GCC unroll 16") for (int q = 0; q < PARTS; q++)                                                \
                acc[i][j][q] = madd_##T(acc[i][j][q], wv[q], xv);                                                   \
        }                                                                                                           \
    }
#endif

/* The outputs of `rows` (<= MR) rows and NR consecutive tiles: xt is (steps, MR) 4-byte units, w the first tile
   (steps lines), the others following it; y the first output, rows ldy elements apart. */
#define MICRO(T, MR, NR)                                                                                            \
    static void micro_##T##_##MR##_##NR(const struct kind* k, const uint32_t* restrict xt, const char* restrict w, \
                                        int64_t steps, const void* bias, const float* scale, char* restrict y,      \
                                        int64_t ldy, int rows, const float* xscale, const struct fetch* f) {        \
        (void)xscale;                                                                                               \
        const int64_t line = LINE_##T;                                                                              \
        int count = f->pass;                                                                                        \
        vec acc[NR][MR][PARTS];                                                                                     \
        for (int i = 0; i < NR; i++)                                                                                \
            for (int j = 0; j < MR; j++)                                                                            \
                for (int q = 0; q < PARTS; q++) acc[i][j][q] = (vec){0};                                            \
        for (int64_t s = 0; s < steps; s++) { /* loops unrolled: the sums stay in registers */                     \
            const uint32_t* xs = xt + s * MR * WORDS_##T;                                                           \
            FETCH_STEP(line)                                                                                        \
            LOOP(T, MR, NR)                                                                                         \
        }                                                                                                           \
        _Pragma("GCC unroll 16") for (int i = 0; i < NR; i++) /* j < MR, not rows: constant indices */         \
            _Pragma("GCC unroll 16") for (int j = 0; j < MR; j++)                                                   \
                _Pragma("GCC unroll 16") for (int q = 0; q < PARTS; q++) if (j < rows)                              \
                    store(y + (j * ldy + i * TILE + q * LANES) * k->x_size, acc[i][j][q], k->out, bias, scale,       \
                          i * TILE + q * LANES);                                                                    \
    }

/* The same for int8 tiles, x in int16 pairs (a word per step and row): each output's products are summed in int32
   over a piece of STEP_PIECE steps (256 k's: |sum| <= 256 * 128 * 32767 < 2^31, never overflowing), and the piece's
   sum, as a float, times the row's scale for the piece, is added to its float32 total. */
#define MICRO_INT8(T, MR, NR)                                                                                       \
    static void micro_int8_##MR##_##NR(const struct kind* k, const uint32_t* restrict xt, const char* restrict w,  \
                                       int64_t steps, const void* bias, const float* scale, char* restrict y,       \
                                       int64_t ldy, int rows, const float* restrict xscale, const struct fetch* f) { \
        int count = f->pass;                                                                                        \
        vec acc[NR][MR][PARTS];                                                                                     \
        for (int i = 0; i < NR; i++)                                                                                \
            for (int j = 0; j < MR; j++)                                                                            \
                for (int q = 0; q < PARTS; q++) acc[i][j][q] = (vec){0};                                            \
        for (int64_t s0 = 0; s0 < steps; s0 += STEP_PIECE) {                                                        \
            int64_t s1 = s0 + STEP_PIECE < steps ? s0 + STEP_PIECE : steps;                                         \
            ivec sums[NR][MR][PARTS];                                                                               \
            for (int i = 0; i < NR; i++)                                                                            \
                for (int j = 0; j < MR; j++)                                                                        \
                    for (int q = 0; q < PARTS; q++) sums[i][j][q] = (ivec){0};                                      \
            for (int64_t s = s0; s < s1; s++) {                                                                     \
                const uint32_t* xs = xt + s * MR;                                                                   \
                FETCH_STEP(LINE_int8)                                                                               \
                _Pragma("GCC unroll 16") for (int i = 0; i < NR; i++) {                                             \
                    const char* ws = w + (i * steps + s) * LINE_int8;                                               \
                    FETCH(ws)                                                                                       \
                    _Pragma("GCC unroll 16") for (int q = 0; q < PARTS; q++) {                                      \
                        pvec wq = widen_pairs(ws + q * LANES * 2);                                                  \
                        _Pragma("GCC unroll 16") for (int j = 0; j < MR; j++)                                       \
                            sums[i][j][q] = madd_pairs(sums[i][j][q], wq, xs[j]);                                   \
                    }                                                                                               \
                }                                                                                                   \
            }                                                                                                       \
            const float* piece = xscale + s0 / STEP_PIECE * MR;                                                     \
            _Pragma("GCC unroll 16") for (int i = 0; i < NR; i++)                                                   \
                _Pragma("GCC unroll 16") for (int j = 0; j < MR; j++)                                               \
                    _Pragma("GCC unroll 16") for (int q = 0; q < PARTS; q++)                                        \
                        acc[i][j][q] += __builtin_convertvector(sums[i][j][q], vec) * piece[j];                     \
        }                                                                                                           \
        _Pragma("GCC unroll 16") for (int i = 0; i < NR; i++)                                                       \
            _Pragma("GCC unroll 16") for (int j = 0; j < MR; j++)                                                   \
                _Pragma("GCC unroll 16") for (int q = 0; q < PARTS; q++) if (j < rows)                              \
                    store(y + (j * ldy + i * TILE + q * LANES) * k->x_size, acc[i][j][q], k->out, bias, scale,       \
                          i * TILE + q * LANES);                                                                    \
    }
#define MICRO_OF_float32 MICRO
#define MICRO_OF_bfloat16 MICRO
#define MICRO_OF_float16 MICRO
#define MICRO_OF_int8 MICRO_INT8

#define LINE_float32 64 /* bytes of a line of W, as in `struct kind` (a constant in the inner loop) */
#define LINE_bfloat16 64
#define LINE_float16 32
#define LINE_int8 32 /* 16 outputs x 2 k's */
#if defined(__AVX512BF16__)
#define BF16_WORDS 1 /* the pair as it is, for the dot product */
#else
#define BF16_WORDS 2 /* the pair widened to two floats once, as x is copied, not in every tile */
#endif
#define WORDS_float32 1
#define WORDS_bfloat16 BF16_WORDS
#define WORDS_float16 1
#define WORDS_int8 1 /* a pair of int16 */

#if ISA >= 2
#define MICROS(T)                                                                                                   \
    MICRO_OF_##T(T, 8, 2) MICRO_OF_##T(T, 8, 1) MICRO_OF_##T(T, 4, 4) MICRO_OF_##T(T, 4, 1)                         \
    MICRO_OF_##T(T, 2, 4) MICRO_OF_##T(T, 2, 1) MICRO_OF_##T(T, 1, 4) MICRO_OF_##T(T, 1, 1)                         \
    static const micro_fn micros_##T[CHUNK + 1][5] = {                                                                \
        [8] = {[1] = micro_##T##_8_1, [2] = micro_##T##_8_2},                                                       \
        [4] = {[1] = micro_##T##_4_1, [4] = micro_##T##_4_4}, [2] = {[1] = micro_##T##_2_1, [4] = micro_##T##_2_4},  \
        [1] = {[1] = micro_##T##_1_1, [4] = micro_##T##_1_4}};
#elif ISA == 1
/* 6 rows for the weights of one k a line (CHUNK_WIDE) only */
#define SIX_float32 MICRO(float32, 6, 1)
#define SIX_float16 MICRO(float16, 6, 1)
#define SIX_bfloat16
#define SIX_int8
#define SIX_ENTRY_float32 [6] = {[1] = micro_float32_6_1},
#define SIX_ENTRY_float16 [6] = {[1] = micro_float16_6_1},
#define SIX_ENTRY_bfloat16
#define SIX_ENTRY_int8
#define MICROS(T)                                                                                                   \
    SIX_##T MICRO_OF_##T(T, 4, 1) MICRO_OF_##T(T, 2, 2) MICRO_OF_##T(T, 2, 1) MICRO_OF_##T(T, 1, 4)                 \
    MICRO_OF_##T(T, 1, 1)                                                                                           \
    static const micro_fn micros_##T[CHUNK + 1][5] = {SIX_ENTRY_##T[4] = {[1] = micro_##T##_4_1},                   \
                                               [2] = {[1] = micro_##T##_2_1, [2] = micro_##T##_2_2},                \
                                               [1] = {[1] = micro_##T##_1_1, [4] = micro_##T##_1_4}};
#else
#define MICROS(T)                                                                                                   \
    MICRO_OF_##T(T, 2, 1) MICRO_OF_##T(T, 1, 2) MICRO_OF_##T(T, 1, 1)                                               \
    static const micro_fn micros_##T[CHUNK + 1][5] = {[2] = {[1] = micro_##T##_2_1},                                  \
                                               [1] = {[1] = micro_##T##_1_1, [2] = micro_##T##_1_2}};
#endif
MICROS(float32)
MICROS(bfloat16)
MICROS(float16)
MICROS(int8)

/* Tiles b0..b1-1 for one chunk of rows (y: the chunk's first output row). */
static void tiles(const struct kind* k, const micro_fn (*micros)[5], int rows, const uint32_t* xt, const char* w,
                  int64_t steps, const char* bias, const float* scale, char* y, int64_t ldy, int64_t b0, int64_t b1,
                  const float* xscale, const struct fetch* f) {
    int mr = width(rows), nr = together(mr);
    for (int64_t b = b0; b < b1;) {
        int n = b1 - b >= nr ? nr : 1;
        micros[mr][n](k, xt, w + b * steps * k->line, steps, bias ? bias + b * TILE * k->x_size : NULL,
                      scale ? scale + b * TILE : NULL, y + b * TILE * k->x_size, ldy, rows, xscale, f);
        b += n;
    }
}

/* one unit of xt from x's element u (two elements for a pair of bfloat16) into dst's `words` words */
static inline void unit(const struct kind* k, const char* row, int64_t u, uint32_t* dst) {
    uint32_t bits;
    if (k->widen_x == 2) { /* (widen_x 1, bfloat16 x of int8 weights, is rounded by quantize_piece instead) */
        float f = (float)((const _Float16*)row)[u];
        memcpy(dst, &f, sizeof f);
    } else {
        memcpy(&bits, row + u * 4, 4);
        if (k->words == 2) { /* a pair of bfloat16 as two floats */
            dst[0] = bits << 16;
            dst[1] = bits & 0xffff0000u;
        } else {
            dst[0] = bits;
        }
    }
}

/* A row's elements 2*s0..2*s1-1 rounded to int16 pairs, a word per step `stride` words apart from dst, with one scale
   for them all: x ~= pair * scale, scale = their largest magnitude / 32767, so a rounding error is at most 1/65534 of
   that largest magnitude. An all-zero piece has scale 0; one holding a NaN or an infinity has scale NaN (its row's
   outputs are NaN, as a float product's would be). Loops the compiler vectorizes: the largest magnitude as the
   largest of the elements' bits without their sign (a NaN's or an infinity's are 0x7f800000 and above). */
static void quantize_piece(const struct kind* k, const char* row, int64_t s0, int64_t s1, uint32_t* dst,
                           int64_t stride, float* scale) {
    int64_t e0 = 2 * s0, n = 2 * (s1 - s0);
    float x[2 * STEP_PIECE];
    uint32_t top = 0;
    if (k->widen_x == 1) {
        const uint16_t* bits = (const uint16_t*)row + e0;
        for (int64_t e = 0; e < n; e++) {
            uint32_t a = bits[e] & 0x7fffu;
            top = a > top ? a : top;
            x[e] = bfloat16_to_float(bits[e]);
        }
        top <<= 16;
    } else {
        const uint32_t* bits = (const uint32_t*)row + e0;
        for (int64_t e = 0; e < n; e++) {
            uint32_t a = bits[e] & 0x7fffffffu;
            top = a > top ? a : top;
        }
        memcpy(x, bits, n * sizeof(float));
    }
    if (top >= 0x7f800000u) {
        *scale = __builtin_nanf("");
        for (int64_t u = 0; u < n / 2; u++) dst[u * stride] = 0;
        return;
    }
    int16_t q[2 * STEP_PIECE];
    float big = bits_to_float(top), inv = top ? 32767.0f / big : 0.0f;
    *scale = big / 32767.0f;
    if (inv <= 3.4028235e38f) {
        for (int64_t e = 0; e < n; e++) {
            float r = x[e] * inv;
            int v = (int)(r + (r < 0 ? -0.5f : 0.5f));
            q[e] = (int16_t)(v > 32767 ? 32767 : v < -32767 ? -32767 : v);
        }
    } else { /* a piece of subnormal magnitudes: 32767 / big overflows a float */
        for (int64_t e = 0; e < n; e++) {
            double r = x[e] * (32767.0 / big);
            q[e] = (int16_t)(r < 0 ? r - 0.5 : r + 0.5);
        }
    }
    for (int64_t u = 0; u < n / 2; u++)
        dst[u * stride] = (uint32_t)(uint16_t)q[2 * u] | (uint32_t)(uint16_t)q[2 * u + 1] << 16;
}

/* Tiles of W walked by every chunk of rows in turn (they stay in the L2 cache): a multiple of 4, at least 4. */
static int64_t panel_tiles(int64_t steps, int64_t line, int64_t bytes) {
    int64_t panel = bytes / (steps * line);
    return panel < 4 ? 4 : panel / 4 * 4;
}

/* This OpenMP thread's tiles b0..b1-1 of nb: whole groups of 4, the last thread taking the rest. */
static void thread_tiles(int64_t nb, int64_t* b0, int64_t* b1) {
    int t = omp_get_thread_num(), nt = omp_get_num_threads();
    *b0 = nb * t / nt / 4 * 4;
    *b1 = t == nt - 1 ? nb : nb * (t + 1) / nt / 4 * 4;
}

/* A scratch buffer per calling thread, kept between calls (a decoding step makes dozens of these products). */
static _Thread_local uint32_t* scratch = NULL;
static _Thread_local size_t scratch_units = 0;
static _Thread_local float* scales = NULL; /* x's scale per row and piece (int8 weights) */
static _Thread_local size_t scales_count = 0;

/* y[m, n] = sum_k x[m, k] w[n, k] (* scale[n]) (+ bias[n]) for m < M, n < N: x rows ldx elements apart, y rows ldy
   apart, W in N/16 tiles of `steps` lines. Returns 0, or 1 when out of memory (nothing written). */
static int linear(const struct kind* k, const micro_fn (*micros)[5], const char* x, int64_t ldx, const char* w,
                  const char* bias, const float* scale, char* y, int64_t ldy, int64_t M, int64_t N, int64_t steps,
                  int threads) {
    int64_t chunk = k->chunk; /* rows of x per pass over a panel */
    int64_t slab = M < SLAB ? M : SLAB;
    size_t need = (size_t)((slab + chunk - 1) / chunk) * chunk * steps * k->words;
    if (need > scratch_units) {
        free(scratch);
        scratch = aligned_alloc(64, (need * sizeof(uint32_t) + 63) / 64 * 64);
        scratch_units = scratch ? need : 0;
        if (!scratch) return 1;
    }
    int64_t pieces = (steps + STEP_PIECE - 1) / STEP_PIECE;
    size_t need_scales = k->quantize ? (size_t)((slab + chunk - 1) / chunk) * chunk * pieces : 0;
    if (need_scales > scales_count) {
        free(scales);
        scales = malloc(need_scales * sizeof(float));
        scales_count = scales ? need_scales : 0;
        if (!scales) return 1;
    }
    uint32_t* xt = scratch;
    float* xsc = scales; /* thread-local: the team's other threads must not read their own */
    int64_t nb = N / TILE;
    int64_t panel = panel_tiles(steps, k->line, PANEL_BYTES);
    for (int64_t s = 0; s < M; s += SLAB) {
        int64_t rows = M - s < SLAB ? M - s : SLAB;
        int64_t chunks = (rows + chunk - 1) / chunk;
        #pragma omp parallel num_threads(threads)
        {
            /* x's rows, a chunk at a time, into (steps, width) columns, the columns past the last row zero; in
               pieces of STEP_PIECE so that both threads share even a single chunk */
            #pragma omp for schedule(static)
            for (int64_t i = 0; i < chunks * pieces; i++) {
                int64_t c = i / pieces, s0 = i % pieces * STEP_PIECE;
                int64_t s1 = s0 + STEP_PIECE < steps ? s0 + STEP_PIECE : steps;
                int mr = rows - c * chunk < chunk ? (int)(rows - c * chunk) : chunk, wd = width(mr);
                uint32_t* dst = xt + c * chunk * steps * k->words;
                if (k->quantize) { /* x as int16 pairs, a scale per row of the piece; rows past the last zero */
                    float* piece_scales = xsc + c * pieces * chunk + s0 / STEP_PIECE * wd; /* as micros read them */
                    for (int j = 0; j < wd; j++) {
                        if (j < mr) {
                            const char* src = x + (s + c * chunk + j) * ldx * k->x_size;
                            quantize_piece(k, src, s0, s1, dst + s0 * wd + j, wd, piece_scales + j);
                        } else {
                            for (int64_t u = s0; u < s1; u++) dst[u * wd + j] = 0;
                            piece_scales[j] = 0.0f;
                        }
                    }
                    continue;
                }
                for (int j = 0; j < mr; j++) {
                    const char* src = x + (s + c * chunk + j) * ldx * k->x_size;
                    for (int64_t u = s0; u < s1; u++) unit(k, src, u, dst + (u * wd + j) * k->words);
                }
                for (int j = mr; j < wd; j++)
                    for (int64_t u = s0; u < s1; u++) memset(dst + (u * wd + j) * k->words, 0, 4 * k->words);
            }
            int64_t b0, b1;
            thread_tiles(nb, &b0, &b1);
            for (int64_t p = b0; p < b1; p += panel) {
                int64_t pe = p + panel < b1 ? p + panel : b1;
                for (int64_t c = 0; c < chunks; c++) {
                    int mr = rows - c * chunk < chunk ? (int)(rows - c * chunk) : chunk;
                    /* the first pass over the first panel streams it; the passes after it fetch the next panel */
                    int first = p == b0, streams = chunks == 1 || (first && c == 0);
                    struct fetch f = {AHEAD_BYTES, 0, 1, chunks == 1 ? 2 : 1};
                    if (!streams) {
                        f = (struct fetch){panel * steps * k->line, (int)(c - first), (int)(chunks - first), 0};
                    }
                    tiles(k, micros, mr, xt + c * chunk * steps * k->words, w, steps, bias, scale,
                          y + (s + c * chunk) * ldy * k->x_size, ldy, p, pe, xsc + c * pieces * chunk, &f);
                }
            }
        }
    }
    return 0;
}

#if defined(AMX)
/* bfloat16 weights on AMX: a tile register holds 16 rows of 64 bytes, and one TDPBF16PS adds the products of 16
   rows of x's 32 k's (a tile loaded straight from x: no copy) and 16 pairs x 16 outputs of W (16 lines of a weight
   tile: the layout AVX512-BF16 reads is the layout AMX reads) to 16 rows x 16 float32 sums. Each output's sum walks
   k in the same order, a pair at a time, whatever the rows and threads, so a row's result does not depend on the
   rows computed with it; and as every row count takes this path, batch 1 and batch 16 agree. Registers: 0-3 the sums
   of 4 weight tiles, 4 x, 5-7 weights. Needs K a multiple of 32 (steps of 16 pairs); other widths take `linear`.
   No software prefetch: on an Intel Xeon (Sapphire Rapids class) the hardware's alone read the weights 4% faster at
   1 row than prefetching each line 8 KiB ahead, and 3% faster at 16 rows. */
struct tile_config {
    uint8_t palette, start_row, reserved[14];
    uint16_t bytes[16]; /* bytes of a row of each tile register */
    uint8_t rows[16];
};

/* Linux hands a process the AMX state only once asked (arch_prctl ARCH_REQ_XCOMP_PERM for XTILEDATA). */
static int amx_allowed(void) {
    static int allowed = -1;
    if (allowed < 0) allowed = syscall(SYS_arch_prctl, 0x1023, 18) == 0;
    return allowed;
}

static void configure(int rows) { /* loading a configuration zeroes every tile register */
    struct tile_config c;
    memset(&c, 0, sizeof c);
    c.palette = 1;
    for (int t = 0; t < 8; t++) {
        c.rows[t] = t < 5 ? rows : 16; /* sums and x: the chunk's rows; weights: 16 pairs */
        c.bytes[t] = 64;
    }
    _tile_loadconfig(&c);
}

/* the sums of `n` (1-4) consecutive weight tiles for a chunk of rows into out (16 rows x 64 floats) */
static void amx_tiles(const char* x, int64_t ldx, const char* w, int64_t steps, int n, float* out) {
    const int64_t apart = steps * 64; /* bytes from one weight tile to the next */
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (int64_t s = 0; s < steps; s += 16) {
        const char* ws = w + s * 64;
        _tile_loadd(4, x + s * 4, ldx * 2);
        _tile_loadd(5, ws, 64);
        _tile_dpbf16ps(0, 4, 5);
        if (n > 1) {
            _tile_loadd(6, ws + apart, 64);
            _tile_dpbf16ps(1, 4, 6);
        }
        if (n > 2) {
            _tile_loadd(7, ws + 2 * apart, 64);
            _tile_dpbf16ps(2, 4, 7);
        }
        if (n > 3) {
            _tile_loadd(5, ws + 3 * apart, 64);
            _tile_dpbf16ps(3, 4, 5);
        }
    }
    _tile_stored(0, out, 256);
    _tile_stored(1, out + 16, 256);
    _tile_stored(2, out + 32, 256);
    _tile_stored(3, out + 48, 256);
}

/* `linear` for bfloat16 x and weights on AMX: the same panels and split of the tiles over the threads, chunks of 16
   rows */
static void linear_amx(const char* x, int64_t ldx, const char* w, const char* bias, char* y, int64_t ldy, int64_t M,
                       int64_t N, int64_t steps, int threads) {
    int64_t nb = N / TILE, chunks = (M + 15) / 16;
    int64_t panel = panel_tiles(steps, 64, AMX_PANEL_BYTES);
    #pragma omp parallel num_threads(threads)
    {
        float out[16 * 64] __attribute__((aligned(64)));
        int configured = 0;
        int64_t b0, b1;
        thread_tiles(nb, &b0, &b1);
        for (int64_t p = b0; p < b1; p += panel) {
            int64_t pe = p + panel < b1 ? p + panel : b1;
            for (int64_t c = 0; c < chunks; c++) {
                int mr = M - c * 16 < 16 ? (int)(M - c * 16) : 16;
                if (mr != configured) configure(configured = mr);
                for (int64_t b = p; b < pe; b += 4) {
                    int n = pe - b < 4 ? (int)(pe - b) : 4;
                    amx_tiles(x + c * 16 * ldx * 2, ldx, w + b * steps * 64, steps, n, out);
                    for (int j = 0; j < mr; j++)
                        for (int i = 0; i < n; i++)
                            store(y + ((c * 16 + j) * ldy + (b + i) * TILE) * 2, load(out + j * 64 + i * 16),
                                  OUT_BFLOAT16, bias, NULL, (b + i) * TILE);
                }
            }
        }
        if (configured) _tile_release();
    }
}
#endif

static const struct kind FLOAT32 = {64, 4, 0, 1, OUT_FLOAT32, 0, CHUNK_WIDE},
                         BFLOAT16 = {64, 2, 0, BF16_WORDS, OUT_BFLOAT16, 0, CHUNK_PAIRS},
                         FLOAT16 = {32, 2, 2, 1, OUT_FLOAT16, 0, CHUNK_WIDE},
                         INT8_FLOAT32 = {32, 4, 0, 1, OUT_FLOAT32, 1, CHUNK_PAIRS},
                         INT8_BFLOAT16 = {32, 2, 1, 1, OUT_BFLOAT16, 1, CHUNK_PAIRS};

/* float32 x (M, K), W in tiles of (K, 16), bias (N) or NULL, y (M, N) */
int linear_float32(const void* x, int64_t ldx, const void* w, const void* bias, void* y, int64_t ldy, int64_t M,
                   int64_t N, int64_t K, int threads) {
    return linear(&FLOAT32, micros_float32, x, ldx, w, bias, NULL, y, ldy, M, N, K, threads);
}

/* bfloat16 x (M, K), W in tiles of (K/2, 16, 2), bias (N) or NULL, y (M, N); K even */
int linear_bfloat16(const void* x, int64_t ldx, const void* w, const void* bias, void* y, int64_t ldy, int64_t M,
                    int64_t N, int64_t K, int threads) {
#if defined(AMX)
    if (K % 32 == 0 && amx_allowed()) {
        linear_amx(x, ldx, w, bias, y, ldy, M, N, K / 2, threads);
        return 0;
    }
#endif
    return linear(&BFLOAT16, micros_bfloat16, x, ldx, w, bias, NULL, y, ldy, M, N, K / 2, threads);
}

/* float16 x (M, K), W in tiles of (K, 16), bias (N) or NULL, y (M, N) */
int linear_float16(const void* x, int64_t ldx, const void* w, const void* bias, void* y, int64_t ldy, int64_t M,
                   int64_t N, int64_t K, int threads) {
    return linear(&FLOAT16, micros_float16, x, ldx, w, bias, NULL, y, ldy, M, N, K, threads);
}

/* x (M, K) in float32 (x_bfloat16 = 0) or bfloat16 (1), int8 W in tiles of (K/2, 16, 2) with a float32 scale per
   output, bias (N, x's dtype) or NULL, y (M, N) in x's dtype; K even */
int linear_int8(const void* x, int64_t ldx, const void* w, const float* scale, const void* bias, void* y, int64_t ldy,
                int64_t M, int64_t N, int64_t K, int threads, int x_bfloat16) {
    const struct kind* k = x_bfloat16 ? &INT8_BFLOAT16 : &INT8_FLOAT32;
    return linear(k, micros_int8, x, ldx, w, bias, scale, y, ldy, M, N, K / 2, threads);
}

/* Which instruction set this build was compiled for: 3 AVX-512 with AMX, 2 AVX-512, 1 AVX2 + FMA + F16C, 0 generic
   x86-64. */
int isa(void) { return ISA; }

/* Whether this build multiplies bfloat16 pairs with the processor's bfloat16 dot products (else it widens them). */
int bfloat16_dot_products(void) {
#if defined(__AVX512BF16__)
    return 1;
#else
    return 0;
#endif
}
