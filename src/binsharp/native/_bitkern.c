/*
 * Bit-packed binary convolution kernels for the binsharp inference engine.
 *
 * Conventions
 *   sign(x) = +1 if x >= 0 else -1; a packed bit is 1 <=> the value is -1 (x < 0; NaN and -0 give +1).
 *   Packed activations: uint64 array (N, G*nwg, H + 2*halo, W + 2*halo); channel c of group gi is bit
 *   (c % 64) of word plane gi*nwg + c / 64 (c counted inside the group); the halo (border) words are 0.
 *   Unused bits (channels beyond the group size) are 0 in activations and weights, so they never count.
 *   Groups of 4 input channels may also be packed with one group (dense: group gi in nibble gi % 16 of word
 *   plane gi / 16); bs_conv's groups_a gives the packing of the activations.
 *   Dense/grouped weights: uint64 (Co, k, k, nwg). Depthwise weights: uint64 (k*k, nw) (channel c = bit c%64 of
 *   word c/64), with the activations packed with one group.
 *
 * Integer accumulator of output (o, oy, ox): y = sum over valid taps and input channels of sign(a)*sign(w),
 * where a tap is valid when it falls inside the unpadded input (zero padding after binarization contributes 0).
 * The kernels XOR over every tap, reading 0-bits (+1) in the halo, and correct exactly with a per-border-class
 * table: y = Kvalid*Cg + 2*sum_{invalid taps} popcount(w_tap) - 2*sum_{all taps} popcount(a XOR w).
 *
 * Dispatch: the dense inner loop exists for AVX-512 VPOPCNTDQ, AVX2 (nibble look-up popcount with byte
 * accumulation), scalar POPCNT and generic C; the packing, depthwise and epilogue code is compiled for each
 * target and auto-vectorised. Threads: OpenMP over output rows.
 *
 * Floating point: compiled with -ffp-contract=off so that every path rounds identically.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#if (defined(__x86_64__) || defined(__i386__)) && !defined(BS_FORCE_PORTABLE)
#define BS_X86 1
#include <immintrin.h>
#else
#define BS_X86 0
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

#define BS_API __attribute__((visibility("default")))
#pragma GCC diagnostic ignored "-Wpsabi" /* vector arguments of always-inline helpers only */

enum { BS_PATH_GENERIC = 0, BS_PATH_POPCNT = 1, BS_PATH_AVX2 = 2, BS_PATH_AVX512 = 3, BS_NPATHS = 4 };
enum { BS_OK = 0, BS_EINVAL = 1, BS_ENOMEM = 2, BS_EPATH = 3 };
enum { BS_ACT_NONE = 0, BS_ACT_PRELU = 1 };

#define TX 64 /* output pixels per tile */

#define T512 "avx512f,avx512vpopcntdq,avx512dq,avx512bw,avx512vl,popcnt"
#define T256 "avx2,popcnt"
#define TPOP "popcnt"

/* ------------------------------------------------------------------------------------------------ */
/* CPU features                                                                                     */

BS_API int bs_cpu_flags(void) {
#if !BS_X86
    return 0;
#else
    __builtin_cpu_init();
    int f = 0;
    if (__builtin_cpu_supports("popcnt")) f |= 1;
    if (__builtin_cpu_supports("avx2")) f |= 2;
    if (__builtin_cpu_supports("avx512f")) f |= 4;
    if (__builtin_cpu_supports("avx512vpopcntdq")) f |= 8;
    if (__builtin_cpu_supports("avx512dq")) f |= 16;
    if (__builtin_cpu_supports("avx512bw")) f |= 32;
    if (__builtin_cpu_supports("avx512vl")) f |= 64;
    return f;
#endif
}

BS_API int bs_path_available(int path) {
    int f = bs_cpu_flags();
    switch (path) {
        case BS_PATH_GENERIC: return 1;
        case BS_PATH_POPCNT: return (f & 1) != 0;
        case BS_PATH_AVX2: return (f & 3) == 3;
        case BS_PATH_AVX512: return (f & 0x7d) == 0x7d;
        default: return 0;
    }
}

BS_API int bs_best_path(void) {
    for (int p = BS_NPATHS - 1; p > 0; p--)
        if (bs_path_available(p)) return p;
    return BS_PATH_GENERIC;
}

BS_API int bs_openmp(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 0;
#endif
}

/* ------------------------------------------------------------------------------------------------ */
/* Parameters                                                                                       */

/* Fused epilogue, applied per output channel o in this order (each stage optional, float32):
 *   v = y * alpha[o] (+ bias[o])
 *   v = v * aff_s[o] + aff_b[o]                     (folded batch norm or any per-channel affine)
 *   if act_first: v = act(v); v = v + res            else: v = v + res; v = act(v)
 *     act = PReLU-with-shifts: t = v - gamma[o]; t = t >= 0 ? t : slope[o] * t; v = t + zeta[o]
 *   v = clamp(v, lo, hi) when clamp != 0              (hardtanh)
 *   v = act2(v) when act2 != 0                        (a second activation, params gamma2, slope2, zeta2)
 *   v = v + res2;  v = v * mv when mul != 0           (a following add and scaling, e.g. (a + b) * 0.5)
 *   out = v (float32 NCHW);  packed bit = (v * pscale[o] + pbias[o]) < 0
 *   sums[n * Co + o] = sum of v over the image when sums != NULL (double; per output row over the tiles in
 *   order, each tile's 8 lanes summed in order, then the rows in order: the same for every path and thread
 *   count)
 */
typedef struct {
    const float *alpha, *bias, *aff_s, *aff_b;
    int act, act_first;
    const float *gamma, *slope, *zeta;
    const float *res; /* (N, Co, Ho, Wo) or NULL */
    int clamp;
    float lo, hi;
    const float *pscale, *pbias;
    int act2;
    const float *gamma2, *slope2, *zeta2;
    double *sums; /* (N, Co) or NULL */
    const float *res2; /* (N, Co, Ho, Wo) or NULL */
    int mul;
    float mv;
} bs_epi;

typedef struct {
    int64_t N;
    int Ci, H, W, halo, Hp, Wp, groups, cg_in, nwg, nw_in;
    int Co, cg_out, k, s, pad, Ho, Wo, depthwise;
    int nib; /* groups of 4 channels packed densely (one group per nibble): the number of words, else 0 */
    int64_t plane, img;
    /* packed output */
    int halo_o, Hpo, Wpo, go, cgo, nwgo, nwo;
    int64_t plane_o, img_o;
    double *rowsum; /* (N, Ho, Co) per-row sums of the float output (bs_epi.sums), or NULL */
} geom_t;

typedef void (*mk_dense_fn)(const geom_t *, const uint64_t *, const uint64_t *, int, int, int, int, int, int,
                            int32_t *);

/* ------------------------------------------------------------------------------------------------ */
/* Dense / grouped micro-kernels: acc[(o)*TX + i] = sum_{ky,kx,j} popcount(a XOR w), i < nx         */
/* Arguments: geometry, image base, weights, group gi, first output channel o0, count no, oy, x0, nx */

#define MK_SCALAR_BODY                                                                                 \
    const int s = g->s, k = g->k, nwg = g->nwg, Wp = g->Wp;                                            \
    const int64_t wstride = (int64_t)k * k * nwg;                                                      \
    for (int o = o0; o < o0 + no; o++) {                                                               \
        int32_t *ar = acc + (int64_t)o * TX;                                                           \
        for (int i = 0; i < nx; i++) ar[i] = 0;                                                        \
        for (int ky = 0; ky < k; ky++) {                                                               \
            const int64_t row = (int64_t)oy * s + ky - g->pad + g->halo;                               \
            for (int kx = 0; kx < k; kx++) {                                                           \
                const int64_t xs = (int64_t)x0 * s + kx - g->pad + g->halo;                            \
                for (int j = 0; j < nwg; j++) {                                                        \
                    const uint64_t *ap = a + ((int64_t)gi * nwg + j) * g->plane + row * Wp + xs;       \
                    const uint64_t wv = w[o * wstride + ((int64_t)ky * k + kx) * nwg + j];             \
                    for (int i = 0; i < nx; i++) ar[i] += __builtin_popcountll(ap[(int64_t)i * s] ^ wv); \
                }                                                                                      \
            }                                                                                          \
        }                                                                                              \
    }

static void mk_generic(const geom_t *g, const uint64_t *a, const uint64_t *w, int gi, int o0, int no, int oy,
                       int x0, int nx, int32_t *acc) {
    MK_SCALAR_BODY
}

#if BS_X86
__attribute__((target(TPOP))) static void mk_popcnt(const geom_t *g, const uint64_t *a, const uint64_t *w,
                                                    int gi, int o0, int no, int oy, int x0, int nx,
                                                    int32_t *acc) {
    MK_SCALAR_BODY
}

/* lane masks of the first nx pixels of a block of 4 vectors of 8 words: m at stride 1, mlo/mhi for the two
   loads of each vector at stride 2 */
static inline __attribute__((always_inline, target(T512))) void
lane_masks512(int nx, __mmask8 *m, __mmask8 *mlo, __mmask8 *mhi) {
    for (int p = 0; p < 4; p++) {
        int nv = nx - 8 * p;
        nv = nv < 0 ? 0 : (nv > 8 ? 8 : nv);
        m[p] = (__mmask8)((1u << nv) - 1u);
        int c = nv > 0 ? 2 * nv - 1 : 0;
        mlo[p] = (__mmask8)(c >= 8 ? 0xFFu : ((1u << c) - 1u));
        mhi[p] = (__mmask8)(c > 8 ? ((1u << (c - 8)) - 1u) : 0u);
    }
}

/* 4 vectors of 8 packed pixel words from ap (masked to the block's pixels): consecutive words at stride 1,
   every second word at stride 2 */
static inline __attribute__((always_inline, target(T512))) void
load_quads512(const uint64_t *ap, int s, const __mmask8 *m, const __mmask8 *mlo, const __mmask8 *mhi,
              __m512i *q) {
    const __m512i perm = _mm512_set_epi64(14, 12, 10, 8, 6, 4, 2, 0);
    if (s == 1) {
        for (int p = 0; p < 4; p++) q[p] = _mm512_maskz_loadu_epi64(m[p], ap + 8 * p);
    } else {
        for (int p = 0; p < 4; p++) {
            __m512i lo = _mm512_maskz_loadu_epi64(mlo[p], ap + 16 * p);
            __m512i hi = _mm512_maskz_loadu_epi64(mhi[p], ap + 16 * p + 8);
            q[p] = _mm512_permutex2var_epi64(lo, perm, hi);
        }
    }
}

/* AVX-512 VPOPCNTDQ: 4 vectors of 8 output pixels x OCB output channels of 64-bit accumulators. */
static inline __attribute__((always_inline, target(T512))) void
mk512_blk(const geom_t *g, const uint64_t *a, const uint64_t *w, int gi, int o0, const int OCB, int oy, int x0,
          int nx, int32_t *acc, int accoff) {
    const int s = g->s, k = g->k, nwg = g->nwg, Wp = g->Wp;
    const int64_t wstride = (int64_t)k * k * nwg;
    __m512i A[4][4];
    __mmask8 m[4], mlo[4], mhi[4];
    for (int o = 0; o < OCB; o++)
        for (int p = 0; p < 4; p++) A[o][p] = _mm512_setzero_si512();
    lane_masks512(nx, m, mlo, mhi);
    for (int ky = 0; ky < k; ky++) {
        const int64_t row = (int64_t)oy * s + ky - g->pad + g->halo;
        for (int kx = 0; kx < k; kx++) {
            const int64_t xs = (int64_t)x0 * s + kx - g->pad + g->halo;
            const uint64_t *wp = w + (int64_t)o0 * wstride + ((int64_t)ky * k + kx) * nwg;
            for (int j = 0; j < nwg; j++) {
                const uint64_t *ap = a + ((int64_t)gi * nwg + j) * g->plane + row * Wp + xs;
                __m512i av[4];
                load_quads512(ap, s, m, mlo, mhi, av);
                for (int o = 0; o < OCB; o++) {
                    const __m512i wv = _mm512_set1_epi64((long long)wp[o * wstride + j]);
                    for (int p = 0; p < 4; p++)
                        A[o][p] = _mm512_add_epi64(A[o][p], _mm512_popcnt_epi64(_mm512_xor_si512(av[p], wv)));
                }
            }
        }
    }
    for (int o = 0; o < OCB; o++)
        for (int p = 0; p < 4; p++)
            _mm256_storeu_si256((__m256i *)(acc + (int64_t)(o0 + o) * TX + accoff + 8 * p),
                                _mm512_cvtepi64_epi32(A[o][p]));
}

/* Narrow groups (cg_in <= 32, one word per tap whose high half is 0): two pixels share a 64-bit lane (pixel j
 * in dword 2j, pixel j+8 in dword 2j+1 of a 16-pixel vector), popcount per dword; 2 vectors x OCB channels. */
static inline __attribute__((always_inline, target(T512))) void
mk512n_blk(const geom_t *g, const uint64_t *a, const uint64_t *w, int gi, int o0, const int OCB, int oy, int x0,
           int nx, int32_t *acc, int accoff) {
    const int s = g->s, k = g->k, Wp = g->Wp;
    const int64_t wstride = (int64_t)k * k;
    __m512i A[8][2];
    __mmask8 m[4], mlo[4], mhi[4];
    for (int o = 0; o < OCB; o++) A[o][0] = A[o][1] = _mm512_setzero_si512();
    lane_masks512(nx, m, mlo, mhi);
    const uint64_t *ab = a + (int64_t)gi * g->plane;
    const uint64_t *wb = w + (int64_t)o0 * wstride;
    for (int ky = 0; ky < k; ky++) {
        const int64_t row = (int64_t)oy * s + ky - g->pad + g->halo;
        for (int kx = 0; kx < k; kx++) {
            const int64_t xs = (int64_t)x0 * s + kx - g->pad + g->halo;
            const uint64_t *ap = ab + row * Wp + xs;
            __m512i q[4];
            load_quads512(ap, s, m, mlo, mhi, q);
            const __m512i v0 = _mm512_or_si512(q[0], _mm512_slli_epi64(q[1], 32));
            const __m512i v1 = _mm512_or_si512(q[2], _mm512_slli_epi64(q[3], 32));
            const int64_t t = (int64_t)ky * k + kx;
            for (int o = 0; o < OCB; o++) {
                const __m512i wv = _mm512_set1_epi32((int)(uint32_t)wb[o * wstride + t]);
                A[o][0] = _mm512_add_epi32(A[o][0], _mm512_popcnt_epi32(_mm512_xor_si512(v0, wv)));
                A[o][1] = _mm512_add_epi32(A[o][1], _mm512_popcnt_epi32(_mm512_xor_si512(v1, wv)));
            }
        }
    }
    const __m512i un = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
    for (int o = 0; o < OCB; o++)
        for (int p = 0; p < 2; p++)
            _mm512_storeu_si512((void *)(acc + (int64_t)(o0 + o) * TX + accoff + 16 * p),
                                _mm512_permutexvar_epi32(un, A[o][p]));
}

__attribute__((target(T512))) static void mk_avx512(const geom_t *g, const uint64_t *a, const uint64_t *w,
                                                    int gi, int o0, int no, int oy, int x0, int nx,
                                                    int32_t *acc) {
    const int narrow = g->nwg == 1 && g->cg_in <= 32;
    for (int c0 = 0; c0 < nx; c0 += 32) {
        int ncx = nx - c0 < 32 ? nx - c0 : 32;
        int o = o0;
        if (narrow) {
            for (; o + 8 <= o0 + no; o += 8) mk512n_blk(g, a, w, gi, o, 8, oy, x0 + c0, ncx, acc, c0);
            for (; o + 4 <= o0 + no; o += 4) mk512n_blk(g, a, w, gi, o, 4, oy, x0 + c0, ncx, acc, c0);
            for (; o < o0 + no; o++) mk512n_blk(g, a, w, gi, o, 1, oy, x0 + c0, ncx, acc, c0);
            continue;
        }
        for (; o + 4 <= o0 + no; o += 4) mk512_blk(g, a, w, gi, o, 4, oy, x0 + c0, ncx, acc, c0);
        for (; o < o0 + no; o++) mk512_blk(g, a, w, gi, o, 1, oy, x0 + c0, ncx, acc, c0);
    }
}

/* AVX2: 2 vectors of 4 output pixels x OCB channels; popcount by nibble look-up into byte counters that are
 * widened (vpsadbw) every 31 words, before a byte can overflow. */
static inline __attribute__((always_inline, target(T256))) __m256i pc_bytes(__m256i v, __m256i lut,
                                                                            __m256i low) {
    __m256i lo = _mm256_and_si256(v, low);
    __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
    return _mm256_add_epi8(_mm256_shuffle_epi8(lut, lo), _mm256_shuffle_epi8(lut, hi));
}

/* the first n (clamped to 0..4) 64-bit lanes set */
static inline __attribute__((always_inline, target(T256))) __m256i lanes256(int n) {
    static const long long tbl[12] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0};
    n = n < 0 ? 0 : (n > 4 ? 4 : n);
    return _mm256_loadu_si256((const __m256i *)(tbl + 8 - n));
}

/* lane masks of the first nx pixels of a block of np quads of 64-bit words: m for stride 1, mlo/mhi for the
   two loads of each quad at stride 2 (table look-ups) */
static inline __attribute__((always_inline, target(T256))) void
lane_masks256(int nx, const int np, __m256i *m, __m256i *mlo, __m256i *mhi) {
    for (int p = 0; p < np; p++) {
        int nv = nx - 4 * p;
        nv = nv < 0 ? 0 : (nv > 4 ? 4 : nv);
        const int c = nv > 0 ? 2 * nv - 1 : 0;
        m[p] = lanes256(nv);
        mlo[p] = lanes256(c);
        mhi[p] = lanes256(c - 4);
    }
}

/* np quads of packed pixel words from ap: plain loads when all lanes are valid at stride 1 (full), masked
   loads of a partial block, or every second word at stride 2 */
static inline __attribute__((always_inline, target(T256))) void
load_quads256(const long long *ap, const int np, int s, int full, const __m256i *m, const __m256i *mlo,
              const __m256i *mhi, __m256i *q) {
    if (s == 1 && full) {
        for (int p = 0; p < np; p++) q[p] = _mm256_loadu_si256((const __m256i *)(ap + 4 * p));
    } else if (s == 1) {
        for (int p = 0; p < np; p++) q[p] = _mm256_maskload_epi64(ap + 4 * p, m[p]);
    } else {
        for (int p = 0; p < np; p++) {
            __m256i lo = _mm256_maskload_epi64(ap + 8 * p, mlo[p]);
            __m256i hi = _mm256_maskload_epi64(ap + 8 * p + 4, mhi[p]);
            q[p] = _mm256_permute4x64_epi64(_mm256_unpacklo_epi64(lo, hi), 0xD8);
        }
    }
}

/* AVX2, groups of more than 32 channels: 8 pixels (2 vectors of 4 words) x OCB channels of byte counters,
 * summed into 64-bit lanes (vpsadbw) every 31 words; WIDE and PLAIN as in mk256n_run. */
static inline __attribute__((always_inline, target(T256))) void
mk256_run(const geom_t *g, const uint64_t *a, const uint64_t *w, int gi, int o0, const int OCB, int oy, int x0,
          int nx, int32_t *acc, int accoff, const int WIDE, const int PLAIN) {
    const int s = PLAIN ? 1 : g->s, k = g->k, nwg = g->nwg, Wp = g->Wp;
    const int64_t wstride = (int64_t)k * k * nwg;
    const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3,
                                         1, 2, 2, 3, 2, 3, 3, 4);
    const __m256i low = _mm256_set1_epi8(0x0f);
    const __m256i zero = _mm256_setzero_si256();
    __m256i B[4][2], Q[4][2];
    __m256i m[2], mlo[2], mhi[2];
    for (int o = 0; o < OCB; o++)
        for (int p = 0; p < 2; p++) B[o][p] = Q[o][p] = zero;
    int cnt = 0;
    if (!PLAIN) lane_masks256(nx, 2, m, mlo, mhi);
    for (int ky = 0; ky < k; ky++) {
        const int64_t row = (int64_t)oy * s + ky - g->pad + g->halo;
        for (int kx = 0; kx < k; kx++) {
            const int64_t xs = (int64_t)x0 * s + kx - g->pad + g->halo;
            const uint64_t *wp = w + (int64_t)o0 * wstride + ((int64_t)ky * k + kx) * nwg;
            for (int j = 0; j < nwg; j++) {
                const long long *ap =
                    (const long long *)(a + ((int64_t)gi * nwg + j) * g->plane + row * Wp + xs);
                __m256i av[2];
                if (PLAIN)
                    for (int p = 0; p < 2; p++) av[p] = _mm256_loadu_si256((const __m256i *)(ap + 4 * p));
                else
                    load_quads256(ap, 2, s, nx >= 8, m, mlo, mhi, av);
                for (int o = 0; o < OCB; o++) {
                    const __m256i wv = _mm256_set1_epi64x((long long)wp[o * wstride + j]);
                    for (int p = 0; p < 2; p++)
                        B[o][p] = _mm256_add_epi8(B[o][p], pc_bytes(_mm256_xor_si256(av[p], wv), lut, low));
                }
                if (WIDE && ++cnt == 31) {
                    cnt = 0;
                    for (int o = 0; o < OCB; o++)
                        for (int p = 0; p < 2; p++) {
                            Q[o][p] = _mm256_add_epi64(Q[o][p], _mm256_sad_epu8(B[o][p], zero));
                            B[o][p] = zero;
                        }
                }
            }
        }
    }
    for (int o = 0; o < OCB; o++)
        for (int p = 0; p < 2; p++) {
            __m256i q = _mm256_sad_epu8(B[o][p], zero);
            if (WIDE) q = _mm256_add_epi64(Q[o][p], q);
            /* 64-bit lanes -> 4 int32 */
            __m256i t = _mm256_permutevar8x32_epi32(q, _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7));
            _mm_storeu_si128((__m128i *)(acc + (int64_t)(o0 + o) * TX + accoff + 4 * p),
                             _mm256_castsi256_si128(t));
        }
}

static inline __attribute__((always_inline, target(T256))) void
mk256_blk(const geom_t *g, const uint64_t *a, const uint64_t *w, int gi, int o0, const int OCB, int oy, int x0,
          int nx, int32_t *acc, int accoff) {
    if (g->k * g->k * g->nwg > 31)
        mk256_run(g, a, w, gi, o0, OCB, oy, x0, nx, acc, accoff, 1, 0);
    else if (g->s == 1 && nx >= 8)
        mk256_run(g, a, w, gi, o0, OCB, oy, x0, nx, acc, accoff, 0, 1);
    else
        mk256_run(g, a, w, gi, o0, OCB, oy, x0, nx, acc, accoff, 0, 0);
}

/* AVX2, narrow groups (cg_in <= 32): pixel j in dword 2j and pixel j+4 in dword 2j+1 of an 8-pixel vector;
 * 2 vectors x OCB channels of byte counters, widened per dword (vpmaddubsw + vpmaddwd) every 31 taps.
 * WIDE (constant): more than 31 taps, so widened counters are kept too; without it (k <= 5) the loop holds
 * only the byte counters, which then fit the 16 registers with the operands. PLAIN (constant): a full block
 * at stride 1, plain loads. */
static inline __attribute__((always_inline, target(T256))) void
mk256n_run(const geom_t *g, const uint64_t *a, const uint64_t *w, int gi, int o0, const int OCB, int oy, int x0,
           int nx, int32_t *acc, int accoff, const int WIDE, const int PLAIN) {
    const int s = PLAIN ? 1 : g->s, k = g->k, Wp = g->Wp;
    const int64_t wstride = (int64_t)k * k;
    const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3,
                                         1, 2, 2, 3, 2, 3, 3, 4);
    const __m256i low = _mm256_set1_epi8(0x0f);
    const __m256i zero = _mm256_setzero_si256();
    const __m256i one8 = _mm256_set1_epi8(1), one16 = _mm256_set1_epi16(1);
    __m256i B[4][2], Q[4][2];
    __m256i m[4], mlo[4], mhi[4];
    for (int o = 0; o < OCB; o++)
        for (int p = 0; p < 2; p++) B[o][p] = Q[o][p] = zero;
    int cnt = 0;
    if (!PLAIN) lane_masks256(nx, 4, m, mlo, mhi);
    const uint64_t *ab = a + (int64_t)gi * g->plane;
    const uint64_t *wb = w + (int64_t)o0 * wstride;
    for (int ky = 0; ky < k; ky++) {
        const int64_t row = (int64_t)oy * s + ky - g->pad + g->halo;
        for (int kx = 0; kx < k; kx++) {
            const int64_t xs = (int64_t)x0 * s + kx - g->pad + g->halo;
            const long long *ap = (const long long *)(ab + row * Wp + xs);
            __m256i q[4];
            if (PLAIN)
                for (int p = 0; p < 4; p++) q[p] = _mm256_loadu_si256((const __m256i *)(ap + 4 * p));
            else
                load_quads256(ap, 4, s, nx >= 16, m, mlo, mhi, q);
            const __m256i v0 = _mm256_or_si256(q[0], _mm256_slli_epi64(q[1], 32));
            const __m256i v1 = _mm256_or_si256(q[2], _mm256_slli_epi64(q[3], 32));
            const int64_t t = (int64_t)ky * k + kx;
            for (int o = 0; o < OCB; o++) {
                const __m256i wv = _mm256_set1_epi32((int)(uint32_t)wb[o * wstride + t]);
                B[o][0] = _mm256_add_epi8(B[o][0], pc_bytes(_mm256_xor_si256(v0, wv), lut, low));
                B[o][1] = _mm256_add_epi8(B[o][1], pc_bytes(_mm256_xor_si256(v1, wv), lut, low));
            }
            if (WIDE && ++cnt == 31) {
                cnt = 0;
                for (int o = 0; o < OCB; o++)
                    for (int p = 0; p < 2; p++) {
                        Q[o][p] = _mm256_add_epi32(Q[o][p],
                                                   _mm256_madd_epi16(_mm256_maddubs_epi16(B[o][p], one8), one16));
                        B[o][p] = zero;
                    }
            }
        }
    }
    const __m256i un = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
    for (int o = 0; o < OCB; o++)
        for (int p = 0; p < 2; p++) {
            __m256i q = _mm256_madd_epi16(_mm256_maddubs_epi16(B[o][p], one8), one16);
            if (WIDE) q = _mm256_add_epi32(Q[o][p], q);
            _mm256_storeu_si256((__m256i *)(acc + (int64_t)(o0 + o) * TX + accoff + 8 * p),
                                _mm256_permutevar8x32_epi32(q, un));
        }
}

static inline __attribute__((always_inline, target(T256))) void
mk256n_blk(const geom_t *g, const uint64_t *a, const uint64_t *w, int gi, int o0, const int OCB, int oy, int x0,
           int nx, int32_t *acc, int accoff) {
    if (g->k * g->k > 31)
        mk256n_run(g, a, w, gi, o0, OCB, oy, x0, nx, acc, accoff, 1, 0);
    else if (g->s == 1 && nx >= 16)
        mk256n_run(g, a, w, gi, o0, OCB, oy, x0, nx, acc, accoff, 0, 1);
    else
        mk256n_run(g, a, w, gi, o0, OCB, oy, x0, nx, acc, accoff, 0, 0);
}

/* AVX2, 1x1 kernels over more than 32 channels per group: 8 pixels (2 vectors) at a time against every
 * output channel of the group in turn; byte counters over up to 31 words, one vpsadbw each, the two
 * vectors' 64-bit sums merged into one store of 8 int32. */
__attribute__((target(T256))) static void mk256_1x1(const geom_t *g, const uint64_t *a, const uint64_t *w,
                                                    int gi, int o0, int no, int oy, int x0, int nx,
                                                    int32_t *acc) {
    const int s = g->s, nwg = g->nwg;
    const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3,
                                         1, 2, 2, 3, 2, 3, 3, 4);
    const __m256i low = _mm256_set1_epi8(0x0f), zero = _mm256_setzero_si256();
    const __m256i un = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
    const int64_t row = (int64_t)oy * s - g->pad + g->halo;
    const uint64_t *ab = a + (int64_t)gi * nwg * g->plane + row * g->Wp;
    for (int c = 0; c < nx; c += 8) {
        const int nv = nx - c < 8 ? nx - c : 8;
        const int64_t xs = (int64_t)(x0 + c) * s - g->pad + g->halo;
        for (int o = o0; o < o0 + no; o++) {
            const uint64_t *wp = w + (int64_t)o * nwg;
            __m256i Q0 = zero, Q1 = zero, B0 = zero, B1 = zero;
            for (int j = 0; j < nwg; j++) {
                const uint64_t *ap = ab + (int64_t)j * g->plane + xs;
                __m256i v0, v1;
                if (s == 1 && nv == 8) {
                    v0 = _mm256_loadu_si256((const __m256i *)ap);
                    v1 = _mm256_loadu_si256((const __m256i *)(ap + 4));
                } else {
                    long long t[8] = {0, 0, 0, 0, 0, 0, 0, 0};
                    for (int i = 0; i < nv; i++) t[i] = (long long)ap[(int64_t)i * s];
                    v0 = _mm256_loadu_si256((const __m256i *)t);
                    v1 = _mm256_loadu_si256((const __m256i *)(t + 4));
                }
                const __m256i wv = _mm256_set1_epi64x((long long)wp[j]);
                B0 = _mm256_add_epi8(B0, pc_bytes(_mm256_xor_si256(v0, wv), lut, low));
                B1 = _mm256_add_epi8(B1, pc_bytes(_mm256_xor_si256(v1, wv), lut, low));
                if (j % 31 == 30) {
                    Q0 = _mm256_add_epi64(Q0, _mm256_sad_epu8(B0, zero));
                    Q1 = _mm256_add_epi64(Q1, _mm256_sad_epu8(B1, zero));
                    B0 = B1 = zero;
                }
            }
            Q0 = _mm256_add_epi64(Q0, _mm256_sad_epu8(B0, zero));
            Q1 = _mm256_add_epi64(Q1, _mm256_sad_epu8(B1, zero));
            const __m256i q = _mm256_or_si256(Q0, _mm256_slli_epi64(Q1, 32));
            _mm256_storeu_si256((__m256i *)(acc + (int64_t)o * TX + c), _mm256_permutevar8x32_epi32(q, un));
        }
    }
}

__attribute__((target(T256))) static void mk_avx2(const geom_t *g, const uint64_t *a, const uint64_t *w,
                                                  int gi, int o0, int no, int oy, int x0, int nx,
                                                  int32_t *acc) {
    if (g->k == 1 && g->cg_in > 32) {
        mk256_1x1(g, a, w, gi, o0, no, oy, x0, nx, acc);
        return;
    }
    if (g->nwg == 1 && g->cg_in <= 32) {
        for (int c0 = 0; c0 < nx; c0 += 16) {
            int ncx = nx - c0 < 16 ? nx - c0 : 16;
            int o = o0;
            for (; o + 4 <= o0 + no; o += 4) mk256n_blk(g, a, w, gi, o, 4, oy, x0 + c0, ncx, acc, c0);
            for (; o < o0 + no; o++) mk256n_blk(g, a, w, gi, o, 1, oy, x0 + c0, ncx, acc, c0);
        }
        return;
    }
    for (int c0 = 0; c0 < nx; c0 += 8) {
        int ncx = nx - c0 < 8 ? nx - c0 : 8;
        int o = o0;
        for (; o + 4 <= o0 + no; o += 4) mk256_blk(g, a, w, gi, o, 4, oy, x0 + c0, ncx, acc, c0);
        for (; o < o0 + no; o++) mk256_blk(g, a, w, gi, o, 1, oy, x0 + c0, ncx, acc, c0);
    }
}

#endif /* BS_X86 */

/* ------------------------------------------------------------------------------------------------ */
/* Groups of 4 input channels packed densely: word q holds groups 16q..16q+15, group 16q+m in nibble m.   */
/* Weights wn (nq, cg_out, k*k): nibble m of wn[q][j][t] = the 4 weight bits of output channel           */
/* (16q+m)*cg_out + j at tap t. Per pixel, word and j, one XOR per tap gives 16 groups' mismatches; their  */
/* nibble popcounts are summed in bytes (at most 4*k*k <= 196): L (groups 16q+2b in byte b) and H          */
/* (16q+2b+1), then widened into the accumulator rows of the 16 output channels.                         */

#define NIB_M1 0x5555555555555555ull
#define NIB_M2 0x3333333333333333ull
#define NIB_M4 0x0F0F0F0F0F0F0F0Full

static inline int64_t nib_col(const geom_t *g, int x0, int i, int kx) {
    return (int64_t)(x0 + i) * g->s + kx - g->pad + g->halo;
}

/* acc rows of word q, weight index j from the byte counters L, H of nx pixels */
static void nib_scatter(const geom_t *g, int q, int j, const uint64_t *L, const uint64_t *H, int nx,
                        int32_t *acc) {
    for (int m = 0; m < 16; m++) {
        const int gi = 16 * q + m;
        if (gi >= g->groups) break;
        const uint64_t *src = (m & 1) ? H : L;
        const int sh = 8 * (m >> 1);
        int32_t *ar = acc + (int64_t)(gi * g->cg_out + j) * TX;
        for (int i = 0; i < nx; i++) ar[i] = (int32_t)((src[i] >> sh) & 0xFFu);
    }
}

static void mknib_generic(const geom_t *g, const uint64_t *a, const uint64_t *wn, int oy, int x0, int nx,
                          int32_t *acc) {
    const int k = g->k, kk = k * k;
    uint64_t L[TX], H[TX];
    for (int q = 0; q < g->nib; q++)
        for (int j = 0; j < g->cg_out; j++) {
            const uint64_t *wq = wn + ((int64_t)q * g->cg_out + j) * kk;
            for (int i = 0; i < nx; i++) L[i] = H[i] = 0;
            for (int ky = 0; ky < k; ky++) {
                const uint64_t *ar = a + q * g->plane + ((int64_t)oy * g->s + ky - g->pad + g->halo) * g->Wp;
                for (int kx = 0; kx < k; kx++) {
                    const uint64_t wv = wq[ky * k + kx];
                    for (int i = 0; i < nx; i++) {
                        uint64_t d = ar[nib_col(g, x0, i, kx)] ^ wv;
                        d = d - ((d >> 1) & NIB_M1);
                        d = (d & NIB_M2) + ((d >> 2) & NIB_M2);
                        L[i] += d & NIB_M4;
                        H[i] += (d >> 4) & NIB_M4;
                    }
                }
            }
            nib_scatter(g, q, j, L, H, nx, acc);
        }
}

#if BS_X86
/* AVX2: 4 pixels per vector, 4 weight indices j at a time; nibble look-up popcount into byte counters. */
__attribute__((target(T256))) static void mknib_avx2(const geom_t *g, const uint64_t *a, const uint64_t *wn,
                                                     int oy, int x0, int nx, int32_t *acc) {
    const int k = g->k, kk = k * k, s = g->s, cgo = g->cg_out;
    const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3,
                                         1, 2, 2, 3, 2, 3, 3, 4);
    const __m256i low = _mm256_set1_epi8(0x0f);
    uint64_t L[4][TX], H[4][TX];
    for (int q = 0; q < g->nib; q++)
        for (int j0 = 0; j0 < cgo; j0 += 4) {
            const int nj = cgo - j0 < 4 ? cgo - j0 : 4;
            const uint64_t *wq = wn + ((int64_t)q * cgo + j0) * kk;
            for (int c = 0; c < nx; c += 4) {
                const int nv = nx - c < 4 ? nx - c : 4;
                __m256i AL[4], AH[4];
                for (int jj = 0; jj < 4; jj++) AL[jj] = AH[jj] = _mm256_setzero_si256();
                for (int ky = 0; ky < k; ky++) {
                    const uint64_t *ar =
                        a + q * g->plane + ((int64_t)oy * s + ky - g->pad + g->halo) * g->Wp;
                    for (int kx = 0; kx < k; kx++) {
                        const uint64_t *ap = ar + nib_col(g, x0, c, kx);
                        __m256i av;
                        if (s == 1 && nv == 4) {
                            av = _mm256_loadu_si256((const __m256i *)ap);
                        } else {
                            long long t[4] = {0, 0, 0, 0};
                            for (int i = 0; i < nv; i++) t[i] = (long long)ap[(int64_t)i * s];
                            av = _mm256_setr_epi64x(t[0], t[1], t[2], t[3]);
                        }
                        for (int jj = 0; jj < 4; jj++) {
                            if (jj >= nj) break;
                            const __m256i d =
                                _mm256_xor_si256(av, _mm256_set1_epi64x((long long)wq[jj * kk + ky * k + kx]));
                            AL[jj] = _mm256_add_epi8(AL[jj], _mm256_shuffle_epi8(lut, _mm256_and_si256(d, low)));
                            AH[jj] = _mm256_add_epi8(
                                AH[jj], _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(d, 4), low)));
                        }
                    }
                }
                for (int jj = 0; jj < nj; jj++) {
                    _mm256_storeu_si256((__m256i *)(L[jj] + c), AL[jj]);
                    _mm256_storeu_si256((__m256i *)(H[jj] + c), AH[jj]);
                }
            }
            for (int jj = 0; jj < nj; jj++) nib_scatter(g, q, j0 + jj, L[jj], H[jj], nx, acc);
        }
}
#endif

/* ------------------------------------------------------------------------------------------------ */
/* Ceiling microbenchmark: XOR + popcount over n words of a and w (L1-resident), reps times, with the     */
/* popcount of each path (4 independent accumulators); returns the total count.                        */

static int64_t xorpop_scalar(const uint64_t *a, const uint64_t *w, int64_t n, int64_t reps) {
    int64_t c[4] = {0, 0, 0, 0};
    for (int64_t r = 0; r < reps; r++)
        for (int64_t i = 0; i < n; i += 4)
            for (int j = 0; j < 4; j++) c[j] += __builtin_popcountll(a[i + j] ^ w[i + j]);
    return (c[0] + c[1]) + (c[2] + c[3]);
}

#if BS_X86
__attribute__((target(TPOP))) static int64_t xorpop_popcnt(const uint64_t *a, const uint64_t *w, int64_t n,
                                                           int64_t reps) {
    int64_t c[4] = {0, 0, 0, 0};
    for (int64_t r = 0; r < reps; r++)
        for (int64_t i = 0; i < n; i += 4)
            for (int j = 0; j < 4; j++) c[j] += __builtin_popcountll(a[i + j] ^ w[i + j]);
    return (c[0] + c[1]) + (c[2] + c[3]);
}

__attribute__((target(T256))) static int64_t xorpop_avx2(const uint64_t *a, const uint64_t *w, int64_t n,
                                                          int64_t reps) {
    const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3,
                                         1, 2, 2, 3, 2, 3, 3, 4);
    const __m256i low = _mm256_set1_epi8(0x0f), zero = _mm256_setzero_si256();
    __m256i q = zero;
    for (int64_t r = 0; r < reps; r++) {
        __m256i B[4] = {zero, zero, zero, zero};
        int cnt = 0;
        for (int64_t i = 0; i < n; i += 16) {
            for (int j = 0; j < 4; j++) {
                const __m256i x = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(a + i + 4 * j)),
                                                   _mm256_loadu_si256((const __m256i *)(w + i + 4 * j)));
                B[j] = _mm256_add_epi8(B[j], pc_bytes(x, lut, low));
            }
            if (++cnt == 31) {
                cnt = 0;
                for (int j = 0; j < 4; j++) q = _mm256_add_epi64(q, _mm256_sad_epu8(B[j], zero)), B[j] = zero;
            }
        }
        for (int j = 0; j < 4; j++) q = _mm256_add_epi64(q, _mm256_sad_epu8(B[j], zero));
    }
    int64_t o[4];
    _mm256_storeu_si256((__m256i *)o, q);
    return (o[0] + o[1]) + (o[2] + o[3]);
}

__attribute__((target(T512))) static int64_t xorpop_avx512(const uint64_t *a, const uint64_t *w, int64_t n,
                                                           int64_t reps) {
    __m512i A[4] = {_mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512(),
                    _mm512_setzero_si512()};
    for (int64_t r = 0; r < reps; r++)
        for (int64_t i = 0; i < n; i += 32)
            for (int j = 0; j < 4; j++)
                A[j] = _mm512_add_epi64(A[j], _mm512_popcnt_epi64(_mm512_xor_si512(
                                                  _mm512_loadu_si512(a + i + 8 * j), _mm512_loadu_si512(w + i + 8 * j))));
    return _mm512_reduce_add_epi64(_mm512_add_epi64(_mm512_add_epi64(A[0], A[1]), _mm512_add_epi64(A[2], A[3])));
}
#endif

static int resolve_path(int path);

BS_API int64_t bs_xorpop(const uint64_t *a, const uint64_t *w, int64_t n, int64_t reps, int path) {
    path = resolve_path(path);
    if (path < 0 || n < 32 || n % 32 || reps < 1) return -1;
#if BS_X86
    if (path == BS_PATH_AVX512) return xorpop_avx512(a, w, n, reps);
    if (path == BS_PATH_AVX2) return xorpop_avx2(a, w, n, reps);
    if (path == BS_PATH_POPCNT) return xorpop_popcnt(a, w, n, reps);
#endif
    return xorpop_scalar(a, w, n, reps);
}

/* ------------------------------------------------------------------------------------------------ */
/* Per-target generic code (auto-vectorised): depthwise micro-kernel, epilogue, packing             */

typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));
typedef float v16f __attribute__((vector_size(64)));
typedef int32_t v16i __attribute__((vector_size(64)));

static inline __attribute__((always_inline)) v8f sel8(v8i m, v8f a, v8f b) {
    return (v8f)(((v8i)a & m) | ((v8i)b & ~m));
}

/* t = v - gamma; (max(t, 0) + slope * min(t, 0)) + zeta, with 0 for NaN in both halves as the scalar form */
static inline __attribute__((always_inline)) v8f rprelu8(v8f v, float ga, float sl, float ze) {
    const v8f t = v - ga, z = {0};
    return (sel8(t > 0.f, t, z) + sl * sel8(t < 0.f, t, z)) + ze;
}

/* per-channel constants of the epilogue (see bs_epi; which stages run is the constant F of epi_chan_) */
typedef struct {
    float al, bb, as, ab, ga, sl, ze, ps, pb, lo, hi;
    const float *rr;
    float *out;
    float g2, s2, z2;
    double *sum; /* this row's sum of the channel, or NULL */
    const float *r2;
    float mv;
    int32_t b0; /* raw: the source is the accumulator row, y = b0 - 2 * acc (a tile without border columns) */
    int raw;
} ep_ch;

typedef double v8d __attribute__((vector_size(64)));

/* the first m (<= 8) floats at p, the other lanes 0 */
static inline __attribute__((always_inline)) v8f load8(const float *p, int m) {
    v8f r = {0};
    if (m == 8) memcpy(&r, p, sizeof r);
    else memcpy(&r, p, sizeof(float) * (size_t)m);
    return r;
}

/* the first m (<= 8) lanes of v to p */
static inline __attribute__((always_inline)) void store8(float *p, v8f v, int m) {
    if (m == 8) memcpy(p, &v, sizeof v);
    else memcpy(p, &v, sizeof(float) * (size_t)m);
}

/* the 8 lanes of a added in lane order */
static inline __attribute__((always_inline)) double lanes_in_order(v8d a) {
    double t = 0;
    for (int j = 0; j < 8; j++) t += a[j];
    return t;
}

static inline int mm8_generic(v8i c) {
    int m = 0;
    for (int j = 0; j < 8; j++) m |= (c[j] & 1) << j;
    return m;
}

/* In-place transpose of a 64 x 64 bit matrix: bit c of a[r] becomes bit r of a[c]. Stage J swaps the
 * J x J off-diagonal blocks of each 2J x 2J block; its inner loop runs over J consecutive rows (vectorised
 * for the wide stages). */
#define TR64_STAGE(J, M)                                                                               \
    for (int b = 0; b < 64; b += 2 * (J))                                                              \
        for (int k = b; k < b + (J); k++) {                                                            \
            const uint64_t t = ((a[k] >> (J)) ^ a[k + (J)]) & (M);                                     \
            a[k] ^= t << (J);                                                                          \
            a[k + (J)] ^= t;                                                                           \
        }
static inline void transpose64(uint64_t *a) {
    TR64_STAGE(32, 0x00000000FFFFFFFFull)
    TR64_STAGE(16, 0x0000FFFF0000FFFFull)
    TR64_STAGE(8, 0x00FF00FF00FF00FFull)
    TR64_STAGE(4, 0x0F0F0F0F0F0F0F0Full)
    TR64_STAGE(2, 0x3333333333333333ull)
    TR64_STAGE(1, 0x5555555555555555ull)
}

/* stages of the epilogue of one channel (epi_chan_*) */
enum {
    EF_BIAS = 1, EF_AFF = 2, EF_ACTF = 4, EF_RES = 8, EF_ACTL = 16, EF_CLAMP = 32, EF_OUT = 64, EF_PACK = 128,
    EF_PSCALE = 256, EF_ACT2 = 512, EF_SUM = 1024, EF_RES2 = 2048, EF_MUL = 4096
};
/* the combinations of the zoo's binary layers, specialised for full tiles: X(function, stages) */
#define EF_CASES(X, FN)                                                                                \
    X(FN, EF_ACTF | EF_RES | EF_OUT)                                                                   \
    X(FN, EF_ACTF | EF_RES | EF_OUT | EF_PACK)                                                         \
    X(FN, EF_ACTF | EF_PACK)                                                                           \
    X(FN, EF_AFF | EF_RES | EF_ACTL | EF_OUT | EF_PACK)                                                \
    X(FN, EF_AFF | EF_RES | EF_OUT | EF_PACK)                                                          \
    X(FN, EF_AFF | EF_RES | EF_CLAMP | EF_OUT | EF_PACK)                                               \
    X(FN, EF_AFF | EF_CLAMP | EF_PACK)                                                                 \
    X(FN, EF_RES | EF_ACTL | EF_OUT | EF_PACK)                                                         \
    X(FN, EF_ACTF | EF_RES | EF_OUT | EF_SUM)                                                          \
    X(FN, EF_ACTF | EF_RES | EF_ACT2 | EF_OUT)                                                         \
    X(FN, EF_ACTF | EF_RES | EF_ACT2 | EF_OUT | EF_SUM)                                                \
    X(FN, EF_ACTF | EF_RES | EF_RES2 | EF_MUL | EF_OUT)                                                \
    X(FN, EF_ACTF | EF_RES | EF_RES2 | EF_MUL | EF_OUT | EF_SUM)                                       \
    X(FN, EF_OUT)
#define EF_CASE(FN, F_)                                                                                \
    case (F_):                                                                                         \
        if (raw)                                                                                       \
            FN(g, e, n, oy, x0, TX, acc, base_r, ncc, bx, nbx, ccls, out, pout, yout, msk, 1, (F_));   \
        else                                                                                           \
            FN(g, e, n, oy, x0, TX, acc, base_r, ncc, bx, nbx, ccls, out, pout, yout, msk, 0, (F_));   \
        break;


#define GEN_BODIES(SUF)                                                                                \
    /* depthwise: acc[c*TX + i] = number of valid-or-halo taps where sign(a) != sign(w), bit-sliced */ \
    static void mkdw_##SUF(const geom_t *g, const uint64_t *a, const uint64_t *w, int oy, int x0, int nx, \
                           int32_t *acc) {                                                             \
        const int s = g->s, k = g->k, Wp = g->Wp;                                                      \
        uint64_t c0[TX], c1[TX], c2[TX], c3[TX], c4[TX];                                               \
        for (int j = 0; j < g->nw_in; j++) {                                                           \
            for (int i = 0; i < nx; i++) c0[i] = c1[i] = c2[i] = c3[i] = c4[i] = 0;                    \
            for (int ky = 0; ky < k; ky++) {                                                           \
                const int64_t row = (int64_t)oy * s + ky - g->pad + g->halo;                           \
                for (int kx = 0; kx < k; kx++) {                                                       \
                    const int64_t xs = (int64_t)x0 * s + kx - g->pad + g->halo;                        \
                    const uint64_t *ap = a + (int64_t)j * g->plane + row * Wp + xs;                    \
                    const uint64_t wv = w[((int64_t)ky * k + kx) * g->nw_in + j];                      \
                    for (int i = 0; i < nx; i++) {                                                     \
                        uint64_t d = ap[(int64_t)i * s] ^ wv, t;                                       \
                        t = c0[i] & d; c0[i] ^= d; d = t;                                              \
                        t = c1[i] & d; c1[i] ^= d; d = t;                                              \
                        t = c2[i] & d; c2[i] ^= d; d = t;                                              \
                        t = c3[i] & d; c3[i] ^= d; c4[i] |= t;                                         \
                    }                                                                                  \
                }                                                                                      \
            }                                                                                          \
            int nb = g->Ci - 64 * j < 64 ? g->Ci - 64 * j : 64;                                        \
            for (int b = 0; b < nb; b++) {                                                             \
                int32_t *ar = acc + (int64_t)(64 * j + b) * TX;                                        \
                for (int i = 0; i < nx; i++)                                                           \
                    ar[i] = (int32_t)(((c0[i] >> b) & 1) + 2 * ((c1[i] >> b) & 1) + 4 * ((c2[i] >> b) & 1) + \
                                      8 * ((c3[i] >> b) & 1) + 16 * ((c4[i] >> b) & 1));               \
            }                                                                                          \
        }                                                                                              \
    }                                                                                                  \
                                                                                                       \
    /* the epilogue of one channel over one tile row (8 pixels per vector); returns the packed sign bits */    \
    static inline __attribute__((always_inline)) uint64_t epi_chan_##SUF(const ep_ch *c, const int32_t *yi,        \
                                                                         const int nx, const int F) {              \
        uint64_t bits = 0;                                                                                         \
        v8d sacc = {0};                                                                                            \
        for (int i0 = 0; i0 < nx; i0 += 8) {                                                                       \
            const int m = nx - i0 < 8 ? nx - i0 : 8;                                                               \
            v8i y;                                                                                                 \
            memcpy(&y, yi + i0, sizeof y);                                                                         \
            if (c->raw) y = c->b0 - (y + y);                                                                       \
            v8f v = __builtin_convertvector(y, v8f) * c->al;                                                       \
            if (F & EF_BIAS) v = v + c->bb;                                                                        \
            if (F & EF_AFF) v = v * c->as + c->ab;                                                                 \
            if (F & EF_ACTF) v = rprelu8(v, c->ga, c->sl, c->ze);                                                  \
            if (F & EF_RES) v = v + load8(c->rr + i0, m);                                                          \
            if (F & EF_ACTL) v = rprelu8(v, c->ga, c->sl, c->ze);                                                  \
            if (F & EF_CLAMP) {                                                                                    \
                const v8f z = {0}, lo = z + c->lo, hi = z + c->hi;                                                 \
                v = sel8(v < lo, lo, v);                                                                           \
                v = sel8(v > hi, hi, v);                                                                           \
            }                                                                                                      \
            if (F & EF_ACT2) v = rprelu8(v, c->g2, c->s2, c->z2);                                                  \
            if (F & EF_RES2) v = v + load8(c->r2 + i0, m);                                                         \
            if (F & EF_MUL) v = v * c->mv;                                                                         \
            if (F & EF_SUM) {                                                                                      \
                const v8i lane = {0, 1, 2, 3, 4, 5, 6, 7};                                                         \
                const v8f z = {0};                                                                                 \
                sacc += __builtin_convertvector(m == 8 ? v : sel8(lane < m, v, z), v8d);                           \
            }                                                                                                      \
            if (F & EF_OUT) store8(c->out + i0, v, m);                                                             \
            if (F & EF_PACK) {                                                                                     \
                const v8i neg = (F & EF_PSCALE) ? (v * c->ps + c->pb) < 0.f : (v + c->pb) < 0.f;                   \
                bits |= (uint64_t)(MOVEMASK8(neg) & ((1u << m) - 1u)) << i0;                                       \
            }                                                                                                      \
        }                                                                                                          \
        if (F & EF_SUM) *c->sum += lanes_in_order(sacc);                                                           \
        return bits;                                                                                               \
    }                                                                                                              \
                                                                                                                   \
    /* the epilogue of every channel of one tile row, 8 pixels per vector, with the stages F; raw: y off the */  \
    /* accumulators (a full tile without border columns), else off a copy with the border corrections. Both */  \
    /* are constants where a case of epi_ inlines it, so each channel's set-up holds only its stages' loads.  */  \
    static inline __attribute__((always_inline)) void epi_tile_##SUF(                                              \
        const geom_t *g, const bs_epi *e, int64_t n, int oy, int x0, int nx, const int32_t *acc,                   \
        const int32_t *base_r, int ncc, const int *bx, int nbx, const int *ccls, float *out, uint64_t *pout,       \
        int32_t *yout, uint64_t *msk, const int raw, const int F) {                                                \
        int32_t yi[TX];                                                                                            \
        for (int o = 0; o < g->Co; o++) {                                                                          \
            const int32_t *ar = acc + (int64_t)o * TX;                                                             \
            const int32_t *bo = base_r + (int64_t)o * ncc;                                                         \
            const int32_t b0 = bo[0];                                                                              \
            if (!raw) {                                                                                            \
                for (int i = 0; i < nx; i++) yi[i] = b0 - 2 * ar[i];                                               \
                for (int i = nx; i < ((nx + 15) & ~15); i++) yi[i] = 0;                                            \
                for (int q = 0; q < nbx; q++) {                                                                    \
                    int i = bx[q] - x0;                                                                            \
                    if (i >= 0 && i < nx) yi[i] += bo[ccls[bx[q]]] - b0;                                           \
                }                                                                                                  \
            }                                                                                                      \
            const int64_t orow = (((int64_t)n * g->Co + o) * g->Ho + oy) * g->Wo + x0;                             \
            if (yout) memcpy(yout + orow, yi, sizeof(int32_t) * (size_t)nx);                                       \
            if (!(F & (EF_OUT | EF_PACK | EF_SUM))) continue;                                                      \
            const float *rr = (F & EF_RES) ? e->res + orow : NULL, *r2 = (F & EF_RES2) ? e->res2 + orow : NULL;     \
            /* the next tiles of this channel plane follow in memory: fetch the one after next */                  \
            for (int j = 0; j < TX; j += 16) {                                                                     \
                if (F & EF_RES) __builtin_prefetch(rr + nx + TX + j, 0);                                           \
                if (F & EF_RES2) __builtin_prefetch(r2 + nx + TX + j, 0);                                          \
                if (F & EF_OUT) __builtin_prefetch(out + orow + nx + TX + j, 1);                                   \
            }                                                                                                      \
            const int act = (F & (EF_ACTF | EF_ACTL)) != 0, a2 = (F & EF_ACT2) != 0;                               \
            const ep_ch c = {e->alpha ? e->alpha[o] : 1.0f, (F & EF_BIAS) ? e->bias[o] : 0.f,                      \
                             (F & EF_AFF) ? e->aff_s[o] : 1.f, (F & EF_AFF) ? e->aff_b[o] : 0.f,                    \
                             act ? e->gamma[o] : 0.f, act ? e->slope[o] : 0.f, act ? e->zeta[o] : 0.f,              \
                             (F & EF_PSCALE) ? e->pscale[o] : 1.f,                                                  \
                             (F & EF_PACK) && e->pbias ? e->pbias[o] : 0.f, e->lo, e->hi, rr,                       \
                             (F & EF_OUT) ? out + orow : NULL, a2 ? e->gamma2[o] : 0.f,                            \
                             a2 ? e->slope2[o] : 0.f, a2 ? e->zeta2[o] : 0.f,                                       \
                             (F & EF_SUM) ? g->rowsum + ((int64_t)n * g->Ho + oy) * g->Co + o : NULL, r2, e->mv,   \
                             b0, raw};                                                                             \
            const uint64_t bits = EPI_CHAN(SUF)(&c, raw ? ar : yi, nx, F);                                         \
            if (F & EF_PACK) msk[o] = bits;                                                                        \
        }                                                                                                          \
    }                                                                                                              \
                                                                                                                   \
    /* epilogue over one tile row (epi_tile_ with the stages of the layer); packed output: the sign bits of   */   \
    /* each channel over the tile (MOVEMASK8 per vector), then one 64 x 64 bit transpose per output word.    */    \
    static void epi_##SUF(const geom_t *g, const bs_epi *e, int64_t n, int oy, int x0, int nx, const int32_t *acc, \
                          const int32_t *base_r, int ncc, const int *bx, int nbx, const int *ccls, float *out,     \
                          uint64_t *pout, int32_t *yout, uint64_t *msk) {                                          \
        int raw = nx == TX && !yout;                                                                               \
        for (int q = 0; q < nbx && raw; q++) raw = bx[q] < x0 || bx[q] >= x0 + nx;                                 \
        const int act = e->act;                                                                                    \
        const int F = (e->bias ? EF_BIAS : 0) | (e->aff_s ? EF_AFF : 0) | (act && e->act_first ? EF_ACTF : 0) |   \
                      (e->res ? EF_RES : 0) | (act && !e->act_first ? EF_ACTL : 0) | (e->clamp ? EF_CLAMP : 0) |   \
                      (out ? EF_OUT : 0) | (pout ? EF_PACK : 0) | (pout && e->pscale ? EF_PSCALE : 0) |            \
                      (e->act2 ? EF_ACT2 : 0) | (g->rowsum ? EF_SUM : 0) | (e->res2 ? EF_RES2 : 0) |               \
                      (e->mul ? EF_MUL : 0);                                                                       \
        /* full tiles of the zoo's stage combinations: straight-line code, no per-vector tests */                 \
        switch (nx == TX ? F : -1) {                                                                               \
            EF_CASES(EF_CASE, epi_tile_##SUF)                                                                      \
        default:                                                                                                   \
            epi_tile_##SUF(g, e, n, oy, x0, nx, acc, base_r, ncc, bx, nbx, ccls, out, pout, yout, msk, raw, F);   \
        }                                                                                                          \
        if (!pout) return;                                                                                         \
        uint64_t t[64];                                                                                            \
        for (int q = 0; q < g->nwo; q++) {                                                                         \
            const int gg = q / g->nwgo, c0 = (q % g->nwgo) * 64, nb = g->cgo - c0 < 64 ? g->cgo - c0 : 64;         \
            for (int r = 0; r < 64; r++) t[r] = r < nb ? msk[gg * g->cgo + c0 + r] : 0;                            \
            transpose64(t);                                                                                        \
            memcpy(pout + n * g->img_o + q * g->plane_o + (int64_t)(oy + g->halo_o) * g->Wpo + g->halo_o + x0, t,  \
                   sizeof(uint64_t) * (size_t)nx);                                                                 \
        }                                                                                                          \
    }                                                                                                              \
                                                                                                                   \
    /* sign bits of nx <= 64 consecutive floats: bit i = (r[i] * s_ + b_) < 0 (without s_ unless scaled) */        \
    static inline __attribute__((always_inline)) uint64_t signbits_##SUF(const float *r, const int nx,         \
                                                                         float s_, float b_, int scaled) {     \
        uint64_t bits = 0;                                                                                     \
        for (int i0 = 0; i0 < nx; i0 += 8) {                                                                   \
            const int m = nx - i0 < 8 ? nx - i0 : 8;                                                           \
            v8f v = {0};                                                                                       \
            if (m == 8) memcpy(&v, r + i0, sizeof v);                                                          \
            else memcpy(&v, r + i0, sizeof(float) * (size_t)m);                                                \
            const v8i neg = scaled ? (v * s_ + b_) < 0.f : (v + b_) < 0.f;                                     \
            bits |= (uint64_t)(MOVEMASK8(neg) & ((1u << m) - 1u)) << i0;                                       \
        }                                                                                                      \
        return bits;                                                                                           \
    }                                                                                                          \
                                                                                                               \
    /* one image row; planar input: the sign bits of each channel over 64 pixels, then one 64 x 64 bit      */ \
    /* transposition per word; interleaved (NHWC) input: bit by bit                                          */ \
    static void pack_row_##SUF(const float *x, int64_t n, int C, int H, int W, int nhwc, const float *sc,     \
                               const float *bi, int cg, int nwg, int y, uint64_t *dst0, int64_t plane,      \
                               int G) {                                                                    \
        uint64_t t[8][64];                                                                                 \
        for (int gi = 0; gi < G; gi++)                                                                     \
            for (int j = 0; j < nwg; j++) {                                                                \
                uint64_t *dst = dst0 + ((int64_t)gi * nwg + j) * plane;                                    \
                int nb = cg - 64 * j < 64 ? cg - 64 * j : 64;                                              \
                if (!nhwc) { /* blocks of up to 8 tiles: each channel's row is read in runs of 2 KiB */   \
                    for (int xb = 0; xb < W; xb += 8 * 64) {                                               \
                        const int nt = (W - xb + 63) / 64 < 8 ? (W - xb + 63) / 64 : 8;                    \
                        for (int b = 0; b < 64; b++) {                                                     \
                            if (b >= nb) {                                                                 \
                                for (int q = 0; q < nt; q++) t[q][b] = 0;                                  \
                                continue;                                                                  \
                            }                                                                              \
                            const int c = gi * cg + 64 * j + b;                                            \
                            const float s_ = sc ? sc[c] : 1.f, b_ = bi ? bi[c] : 0.f;                      \
                            const float *r = x + (((int64_t)n * C + c) * H + y) * W + xb;                  \
                            if (c + 2 < C) /* the row of the channel after next: one line per 16 floats */ \
                                for (int i = 0; i < 64 * nt; i += 16) __builtin_prefetch(r + 2 * H * (int64_t)W + i, 0); \
                            for (int q = 0; q < nt; q++) {                                                 \
                                const int nx = W - xb - 64 * q < 64 ? W - xb - 64 * q : 64;                \
                                t[q][b] = nx == 64 ? signbits_##SUF(r + 64 * q, 64, s_, b_, sc != NULL)    \
                                                   : signbits_##SUF(r + 64 * q, nx, s_, b_, sc != NULL);   \
                            }                                                                              \
                        }                                                                                  \
                        for (int q = 0; q < nt; q++) {                                                     \
                            const int nx = W - xb - 64 * q < 64 ? W - xb - 64 * q : 64;                    \
                            transpose64(t[q]);                                                             \
                            memcpy(dst + xb + 64 * q, t[q], sizeof(uint64_t) * (size_t)nx);                \
                        }                                                                                  \
                    }                                                                                      \
                    continue;                                                                              \
                }                                                                                          \
                for (int i = 0; i < W; i++) dst[i] = 0;                                                    \
                for (int b = 0; b < nb; b++) {                                                             \
                    const int c = gi * cg + 64 * j + b;                                                    \
                    const float s_ = sc ? sc[c] : 1.f, b_ = bi ? bi[c] : 0.f;                              \
                    const float *r = x + (((int64_t)n * H + y) * W) * C + c;                               \
                    if (sc)                                                                                \
                        for (int i = 0; i < W; i++) dst[i] |= (uint64_t)((r[(int64_t)i * C] * s_ + b_) < 0.f) << b; \
                    else                                                                                   \
                        for (int i = 0; i < W; i++) dst[i] |= (uint64_t)((r[(int64_t)i * C] + b_) < 0.f) << b; \
                }                                                                                          \
            }                                                                                              \
    }

#define MOVEMASK8(c) mm8_generic(c)
#define EPI_CHAN(SUF) epi_chan_##SUF
GEN_BODIES(generic)
#if BS_X86
#pragma GCC push_options
#pragma GCC target("popcnt")
GEN_BODIES(popcnt)
#pragma GCC pop_options
#undef MOVEMASK8
#define MOVEMASK8(c) _mm256_movemask_ps((__m256)(c))
#pragma GCC push_options
#pragma GCC target("avx2,popcnt")
GEN_BODIES(avx2)
#pragma GCC pop_options
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vpopcntdq,avx512dq,avx512bw,avx512vl,popcnt")
static inline __attribute__((always_inline)) v16f sel16(v16i m, v16f a, v16f b) {
    return (v16f)(((v16i)a & m) | ((v16i)b & ~m));
}
static inline __attribute__((always_inline)) v16f rprelu16(v16f v, float ga, float sl, float ze) {
    const v16f t = v - ga, z = {0};
    return (sel16(t > 0.f, t, z) + sl * sel16(t < 0.f, t, z)) + ze;
}
/* epi_chan_ on 16 pixels per vector: per pixel the same float32 operations in the same order (the same
 * results); the sums take each vector's two halves of 8 lanes in turn, as the 8-lane form takes them. */
static inline __attribute__((always_inline)) uint64_t epi_chan16(const ep_ch *c, const int32_t *yi, const int nx,
                                                                 const int F) {
    uint64_t bits = 0;
    v8d sacc = {0};
    for (int i0 = 0; i0 < nx; i0 += 16) {
        const int m = nx - i0 < 16 ? nx - i0 : 16;
        const __mmask16 k = (__mmask16)((1u << m) - 1u);
        v16i y;
        memcpy(&y, yi + i0, sizeof y);
        if (c->raw) y = c->b0 - (y + y);
        v16f v = __builtin_convertvector(y, v16f) * c->al;
        if (F & EF_BIAS) v = v + c->bb;
        if (F & EF_AFF) v = v * c->as + c->ab;
        if (F & EF_ACTF) v = rprelu16(v, c->ga, c->sl, c->ze);
        if (F & EF_RES) v = v + (v16f)_mm512_maskz_loadu_ps(k, c->rr + i0);
        if (F & EF_ACTL) v = rprelu16(v, c->ga, c->sl, c->ze);
        if (F & EF_CLAMP) {
            const v16f z = {0}, lo = z + c->lo, hi = z + c->hi;
            v = sel16(v < lo, lo, v);
            v = sel16(v > hi, hi, v);
        }
        if (F & EF_ACT2) v = rprelu16(v, c->g2, c->s2, c->z2);
        if (F & EF_RES2) v = v + (v16f)_mm512_maskz_loadu_ps(k, c->r2 + i0);
        if (F & EF_MUL) v = v * c->mv;
        if (F & EF_SUM) {
            const v16f vz = (v16f)_mm512_maskz_mov_ps(k, (__m512)v);
            sacc += __builtin_convertvector(__builtin_shufflevector(vz, vz, 0, 1, 2, 3, 4, 5, 6, 7), v8d);
            if (m > 8)
                sacc += __builtin_convertvector(__builtin_shufflevector(vz, vz, 8, 9, 10, 11, 12, 13, 14, 15), v8d);
        }
        if (F & EF_OUT) _mm512_mask_storeu_ps(c->out + i0, k, (__m512)v);
        if (F & EF_PACK) {
            const v16i neg = (F & EF_PSCALE) ? (v * c->ps + c->pb) < 0.f : (v + c->pb) < 0.f;
            bits |= (uint64_t)(_mm512_movepi32_mask((__m512i)neg) & k) << i0;
        }
    }
    if (F & EF_SUM) *c->sum += lanes_in_order(sacc);
    return bits;
}
#undef EPI_CHAN
#define EPI_CHAN(SUF) epi_chan16
GEN_BODIES(avx512)
#pragma GCC pop_options
#endif

typedef void (*mknib_fn)(const geom_t *, const uint64_t *, const uint64_t *, int, int, int, int32_t *);
typedef void (*mkdw_fn)(const geom_t *, const uint64_t *, const uint64_t *, int, int, int, int32_t *);
typedef void (*epi_fn)(const geom_t *, const bs_epi *, int64_t, int, int, int, const int32_t *, const int32_t *,
                       int, const int *, int, const int *, float *, uint64_t *, int32_t *, uint64_t *);
typedef void (*pack_fn)(const float *, int64_t, int, int, int, int, const float *, const float *, int, int, int,
                        uint64_t *, int64_t, int);

#if BS_X86
static const mk_dense_fn MK[BS_NPATHS] = {mk_generic, mk_popcnt, mk_avx2, mk_avx512};
static const mkdw_fn MKDW[BS_NPATHS] = {mkdw_generic, mkdw_popcnt, mkdw_avx2, mkdw_avx512};
static const epi_fn EPI[BS_NPATHS] = {epi_generic, epi_popcnt, epi_avx2, epi_avx512};
static const pack_fn PACK[BS_NPATHS] = {pack_row_generic, pack_row_popcnt, pack_row_avx2, pack_row_avx512};
#else /* only the portable path exists (bs_path_available reports the others as absent) */
static const mk_dense_fn MK[BS_NPATHS] = {mk_generic, mk_generic, mk_generic, mk_generic};
static const mkdw_fn MKDW[BS_NPATHS] = {mkdw_generic, mkdw_generic, mkdw_generic, mkdw_generic};
static const epi_fn EPI[BS_NPATHS] = {epi_generic, epi_generic, epi_generic, epi_generic};
static const pack_fn PACK[BS_NPATHS] = {pack_row_generic, pack_row_generic, pack_row_generic, pack_row_generic};
#endif

/* Threads worth using for `work` elementary operations (small layers run on one thread). */
static int useful_threads(int nthreads, double work) {
    if (nthreads < 1) nthreads = 1;
    int t = (int)(work / 4.0e6);
    if (t < 1) t = 1;
    return t < nthreads ? t : nthreads;
}

static int resolve_path(int path) {
    if (path < 0) return bs_best_path();
    if (path >= BS_NPATHS || !bs_path_available(path)) return -1;
    return path;
}

/* ------------------------------------------------------------------------------------------------ */
/* Packing: x float32 (N, C, H, W) or (N, H, W, C) -> packed (N, G*nwg, H+2h, W+2h); halo not touched.  */
/* scale/bias: C values, or N x C (one row per sample) when per_sample.                               */

BS_API int bs_pack(const float *x, int64_t N, int C, int H, int W, int nhwc, const float *scale,
                   const float *bias, int per_sample, int groups, uint64_t *out, int halo, int path,
                   int nthreads) {
    path = resolve_path(path);
    if (path < 0) return BS_EPATH;
    if (N < 1 || C < 1 || H < 1 || W < 1 || groups < 1 || C % groups || halo < 0) return BS_EINVAL;
    const int cg = C / groups, nwg = (cg + 63) / 64;
    const int Hp = H + 2 * halo, Wp = W + 2 * halo;
    const int64_t plane = (int64_t)Hp * Wp, img = plane * groups * nwg;
    const pack_fn f = PACK[path];
    nthreads = useful_threads(nthreads, (double)N * C * H * W);
#pragma omp parallel for collapse(2) schedule(static) num_threads(nthreads)
    for (int64_t n = 0; n < N; n++)
        for (int y = 0; y < H; y++) {
            const int64_t row = per_sample ? n * C : 0;
            f(x, n, C, H, W, nhwc, scale ? scale + row : NULL, bias ? bias + row : NULL, cg, nwg, y,
              out + n * img + (int64_t)(y + halo) * Wp + halo, plane, groups);
        }
    return BS_OK;
}

/* ------------------------------------------------------------------------------------------------ */
/* Convolution driver                                                                               */

/* Border classes along one axis: cls[o] in [0, ncls); masks[cls] = bitmask of invalid kernel offsets. */
static int axis_classes(int n_out, int n_in, int k, int s, int pad, int *cls, int *masks) {
    int ncls = 1;
    masks[0] = 0;
    for (int o = 0; o < n_out; o++) {
        int m = 0;
        for (int t = 0; t < k; t++) {
            int p = o * s + t - pad;
            if (p < 0 || p >= n_in) m |= 1 << t;
        }
        int c = 0;
        while (c < ncls && masks[c] != m) c++;
        if (c == ncls) masks[ncls++] = m;
        cls[o] = c;
    }
    return ncls;
}

/* Float input (xf != NULL, a unused): xf float32 (N, Ci, H, W) is binarized as by bs_pack (groups_a,
 * halo, xscale/xbias, per sample when xper_sample) a band of rows at a time into a buffer of each thread,
 * just before the output rows that read them: the float rows are still in the cache when the epilogue
 * reads them again as the residual, and no packed copy of the whole input is written and read back. */
BS_API int bs_conv(const uint64_t *a, const float *xf, const float *xscale, const float *xbias, int xper_sample,
                   int64_t N, int Ci, int H, int W, int halo, int groups, int groups_a,
                   const uint64_t *w,
                   int Co, int k, int stride, int pad, const bs_epi *epi, float *out, uint64_t *pout,
                   int halo_o, int groups_o, int32_t *yout, int path, int nthreads) {
    path = resolve_path(path);
    if (path < 0) return BS_EPATH;
    if (N < 1 || Ci < 1 || H < 1 || W < 1 || Co < 1 || groups < 1 || k < 1 || k > 15 || pad < 0 || pad > halo)
        return BS_EINVAL;
    if (stride != 1 && stride != 2) return BS_EINVAL;
    if (Ci % groups || Co % groups) return BS_EINVAL;
    if (groups == Ci && groups == Co && groups > 1 && k > 5) return BS_EINVAL; /* 5-bit tap counters */
    if (!out && !pout && !yout && !(epi && epi->sums)) return BS_EINVAL;
    if (!a && !xf) return BS_EINVAL;
    geom_t g;
    memset(&g, 0, sizeof g);
    g.N = N; g.Ci = Ci; g.H = H; g.W = W; g.halo = halo; g.groups = groups;
    g.Co = Co; g.k = k; g.s = stride; g.pad = pad;
    g.Hp = H + 2 * halo; g.Wp = W + 2 * halo; g.plane = (int64_t)g.Hp * g.Wp;
    g.depthwise = (groups == Ci && groups == Co && groups > 1);
    if (g.depthwise) {
        g.cg_in = 1; g.nw_in = (Ci + 63) / 64; g.nwg = g.nw_in; g.cg_out = 1;
    } else {
        g.cg_in = Ci / groups; g.nwg = (g.cg_in + 63) / 64; g.nw_in = g.nwg * groups; g.cg_out = Co / groups;
    }
    if (groups_a != (g.depthwise ? 1 : groups)) { /* dense packing of groups of 4 channels */
        if (groups_a != 1 || g.depthwise || g.cg_in != 4 || k > 7) return BS_EINVAL;
        g.nib = (Ci + 63) / 64;
    }
    g.img = g.plane * (g.nib ? g.nib : g.nw_in);
    g.Ho = (H + 2 * pad - k) / stride + 1;
    g.Wo = (W + 2 * pad - k) / stride + 1;
    if (g.Ho < 1 || g.Wo < 1) return BS_EINVAL;
    if (pout) {
        if (groups_o < 1 || Co % groups_o || halo_o < 0) return BS_EINVAL;
        g.halo_o = halo_o; g.go = groups_o; g.cgo = Co / groups_o; g.nwgo = (g.cgo + 63) / 64;
        g.nwo = g.nwgo * groups_o; g.Hpo = g.Ho + 2 * halo_o; g.Wpo = g.Wo + 2 * halo_o;
        g.plane_o = (int64_t)g.Hpo * g.Wpo; g.img_o = g.plane_o * g.nwo;
    }
    if (epi && epi->aff_s && !epi->aff_b) return BS_EINVAL;
    if (epi && epi->act && (!epi->gamma || !epi->slope || !epi->zeta)) return BS_EINVAL;
    if (epi && epi->act2 && (!epi->gamma2 || !epi->slope2 || !epi->zeta2)) return BS_EINVAL;
    bs_epi e0;
    memset(&e0, 0, sizeof e0);
    const bs_epi *e = epi ? epi : &e0;

    /* border classes and the exact correction table base[rc][o][cc] */
    int *rcls = malloc(sizeof(int) * (size_t)g.Ho), *ccls = malloc(sizeof(int) * (size_t)g.Wo);
    int rmask[64], cmask[64];
    int *bx = malloc(sizeof(int) * (size_t)g.Wo);
    int32_t *pcw = malloc(sizeof(int32_t) * (size_t)Co * k * k);
    if (!rcls || !ccls || !bx || !pcw) {
        free(rcls); free(ccls); free(bx); free(pcw);
        return BS_ENOMEM;
    }
    /* at most 2*k distinct classes per axis (k<=15 -> fits 64) */
    int nrc = axis_classes(g.Ho, H, k, stride, pad, rcls, rmask);
    int ncc = axis_classes(g.Wo, W, k, stride, pad, ccls, cmask);
    int nbx = 0;
    for (int x = 0; x < g.Wo; x++)
        if (ccls[x] != 0) bx[nbx++] = x;
    const int cgi = g.depthwise ? 1 : g.cg_in;
    for (int o = 0; o < Co; o++)
        for (int t = 0; t < k * k; t++) {
            int32_t pc = 0;
            if (g.depthwise) {
                pc = (int32_t)((w[(int64_t)t * g.nw_in + o / 64] >> (o % 64)) & 1u);
            } else {
                for (int j = 0; j < g.nwg; j++) pc += __builtin_popcountll(w[((int64_t)o * k * k + t) * g.nwg + j]);
            }
            pcw[(int64_t)o * k * k + t] = pc;
        }
    int32_t *base = malloc(sizeof(int32_t) * (size_t)nrc * Co * ncc);
    if (!base) {
        free(rcls); free(ccls); free(bx); free(pcw);
        return BS_ENOMEM;
    }
    for (int r = 0; r < nrc; r++)
        for (int o = 0; o < Co; o++)
            for (int c = 0; c < ncc; c++) {
                int32_t kv = 0, inv = 0;
                for (int ky = 0; ky < k; ky++)
                    for (int kx = 0; kx < k; kx++) {
                        int bad = ((rmask[r] >> ky) & 1) || ((cmask[c] >> kx) & 1);
                        if (bad) inv += pcw[(int64_t)o * k * k + ky * k + kx];
                        else kv++;
                    }
                base[((int64_t)r * Co + o) * ncc + c] = kv * cgi + 2 * inv;
            }

    uint64_t *wn = NULL; /* weights of the dense-packed groups (see mknib_generic) */
    if (g.nib) {
        wn = calloc((size_t)g.nib * g.cg_out * k * k, sizeof(uint64_t));
        if (!wn) {
            free(rcls); free(ccls); free(bx); free(pcw); free(base);
            return BS_ENOMEM;
        }
        for (int o = 0; o < Co; o++) {
            const int gi = o / g.cg_out, j = o % g.cg_out;
            for (int t = 0; t < k * k; t++)
                wn[((int64_t)(gi / 16) * g.cg_out + j) * k * k + t] |= (w[(int64_t)o * k * k + t] & 0xFu)
                                                                        << (4 * (gi % 16));
        }
    }
    if (e->sums) { /* per-row sums, reduced in row order after the parallel loop */
        g.rowsum = calloc((size_t)N * g.Ho * Co, sizeof(double));
        if (!g.rowsum) {
            free(rcls); free(ccls); free(bx); free(pcw); free(base); free(wn);
            return BS_ENOMEM;
        }
    }
    const mk_dense_fn mk = MK[path];
    const mkdw_fn mkdw = MKDW[path];
#if BS_X86
    const mknib_fn mknib = path >= BS_PATH_AVX2 ? mknib_avx2 : mknib_generic;
#else
    const mknib_fn mknib = mknib_generic;
#endif
    const epi_fn ep = EPI[path];
    const pack_fn pf = PACK[path];
    const int ntx = (g.Wo + TX - 1) / TX;
    /* float input: bands of output rows whose input rows take about 2 MiB of floats */
    const int64_t row_bytes = (int64_t)Ci * W * (int64_t)sizeof(float) * stride;
    int band = (int)((2 << 20) / (row_bytes > 0 ? row_bytes : 1));
    band = band < 1 ? 1 : band > 64 ? 64 : band > g.Ho ? g.Ho : band;
    const int nband = (g.Ho + band - 1) / band, rows_b = (band - 1) * stride + halo - pad + k;
    const int cgp = Ci / groups_a, nwgp = (cgp + 63) / 64, nplanes = groups_a * nwgp;
    int err = 0;
    nthreads = useful_threads(nthreads, (double)N * g.Ho * g.Wo * Co * (k * k * (double)(g.depthwise ? 1 : g.nwg) + 4));
#pragma omp parallel num_threads(nthreads)
    {
        int32_t *acc = aligned_alloc(64, sizeof(int32_t) * (size_t)Co * TX + 64);
        uint64_t *pk = pout ? aligned_alloc(64, sizeof(uint64_t) * (size_t)Co + 64) : NULL; /* sign masks */
        geom_t gb = g; /* the band buffer's geometry: rows_b rows per plane */
        gb.plane = (int64_t)rows_b * g.Wp;
        gb.img = gb.plane * nplanes;
        uint64_t *ab = xf ? calloc((size_t)gb.img, sizeof(uint64_t)) : NULL;
        if (!acc || (pout && !pk) || (xf && !ab)) {
#pragma omp atomic write
            err = 1;
        }
#pragma omp barrier
        if (!err && xf) {
#pragma omp for collapse(2) schedule(static)
            for (int64_t n = 0; n < N; n++)
                for (int bi = 0; bi < nband; bi++) {
                    const int oy0 = bi * band, oy1 = oy0 + band < g.Ho ? oy0 + band : g.Ho;
                    const float *sc = xscale ? xscale + (xper_sample ? n * Ci : 0) : NULL;
                    const float *bs = xbias ? xbias + (xper_sample ? n * Ci : 0) : NULL;
                    /* buffer row r = padded input row r + oy0 * stride */
                    for (int r = halo - pad; r < (oy1 - 1 - oy0) * stride + halo - pad + k; r++) {
                        const int y = r + oy0 * stride - halo;
                        if (y >= 0 && y < H)
                            pf(xf, n, Ci, H, W, 0, sc, bs, cgp, nwgp, y, ab + (int64_t)r * g.Wp + halo, gb.plane,
                               groups_a);
                        else
                            for (int q = 0; q < nplanes; q++)
                                memset(ab + q * gb.plane + (int64_t)r * g.Wp, 0, sizeof(uint64_t) * (size_t)g.Wp);
                    }
                    for (int oy = oy0; oy < oy1; oy++) {
                        const int32_t *base_r = base + (int64_t)rcls[oy] * Co * ncc;
                        for (int t = 0; t < ntx; t++) {
                            const int x0 = t * TX, nx = g.Wo - x0 < TX ? g.Wo - x0 : TX;
                            if (g.nib) {
                                mknib(&gb, ab, wn, oy - oy0, x0, nx, acc);
                            } else if (g.depthwise) {
                                mkdw(&gb, ab, w, oy - oy0, x0, nx, acc);
                            } else {
                                for (int gi = 0; gi < groups; gi++)
                                    mk(&gb, ab, w, gi, gi * g.cg_out, g.cg_out, oy - oy0, x0, nx, acc);
                            }
                            ep(&g, e, n, oy, x0, nx, acc, base_r, ncc, bx, nbx, ccls, out, pout, yout, pk);
                        }
                    }
                }
        } else if (!err) {
#pragma omp for collapse(2) schedule(static)
            for (int64_t n = 0; n < N; n++)
                for (int oy = 0; oy < g.Ho; oy++) {
                    const uint64_t *an = a + n * g.img;
                    const int32_t *base_r = base + (int64_t)rcls[oy] * Co * ncc;
                    for (int t = 0; t < ntx; t++) {
                        const int x0 = t * TX, nx = g.Wo - x0 < TX ? g.Wo - x0 : TX;
                        if (g.nib) {
                            mknib(&g, an, wn, oy, x0, nx, acc);
                        } else if (g.depthwise) {
                            mkdw(&g, an, w, oy, x0, nx, acc);
                        } else {
                            for (int gi = 0; gi < groups; gi++)
                                mk(&g, an, w, gi, gi * g.cg_out, g.cg_out, oy, x0, nx, acc);
                        }
                        ep(&g, e, n, oy, x0, nx, acc, base_r, ncc, bx, nbx, ccls, out, pout, yout, pk);
                    }
                }
        }
        free(acc);
        free(pk);
        free(ab);
    }
    if (g.rowsum && !err)
        for (int64_t n = 0; n < N; n++)
            for (int o = 0; o < Co; o++) {
                double t = 0;
                for (int oy = 0; oy < g.Ho; oy++) t += g.rowsum[(n * g.Ho + oy) * Co + o];
                e->sums[n * Co + o] = t;
            }
    free(rcls); free(ccls); free(bx); free(pcw); free(base); free(wn); free(g.rowsum);
    return err ? BS_ENOMEM : BS_OK;
}

/* ------------------------------------------------------------------------------------------------ */
/* Float convolution, stride 1 (head/tail layers): direct; input (N, Ci, H, W), zero padding pad, each   */
/* output row computed on a copy of its k input rows, zero-padded to (Ci, k, Wq), Wq = Wr + k - 1;       */
/* output (N, Co4, Ho, Wr), Wr = roundup(Wo, 32), Co4 = roundup(Co, 4) (weights padded with zero        */
/* channels). Register tile: 8 (AVX-512) or 4 channels x 2 vectors of columns.                         */
/* FMA contraction is allowed here: float layers are not bit-exact with any reference anyway.          */

/* rows of QB output channels x 2 vectors of NV columns; every output element accumulates in the same order
 * (channel, ky, kx) with fused multiply-adds wherever the target has them, whatever the vector width and
 * the block of channels */
#define FCONV_BLOCK(VT, NV, QB)                                                                        \
    {                                                                                                  \
        VT acc[QB][2];                                                                                 \
        for (int q = 0; q < QB; q++) {                                                                 \
            const VT zero = {0};                                                                       \
            acc[q][0] = acc[q][1] = zero + (bias ? bias[o0 + q] : 0.f);                                \
        }                                                                                              \
        for (int c = 0; c < Ci; c++)                                                                   \
            for (int ky = 0; ky < k; ky++) {                                                           \
                const float *row = xp + ((int64_t)c * Hp + oy + ky) * Wq + X0;                         \
                const float *wr = w + (((int64_t)o0 * Ci + c) * k + ky) * k;                           \
                const int64_t wq = (int64_t)Ci * k * k;                                                \
                for (int kx = 0; kx < k; kx++) {                                                       \
                    VT a0, a1;                                                                         \
                    memcpy(&a0, row + kx, sizeof a0);                                                  \
                    memcpy(&a1, row + kx + NV, sizeof a1);                                             \
                    for (int q = 0; q < QB; q++) {                                                     \
                        const float wv = wr[q * wq + kx];                                              \
                        acc[q][0] += a0 * wv;                                                          \
                        acc[q][1] += a1 * wv;                                                          \
                    }                                                                                  \
                }                                                                                      \
            }                                                                                          \
        for (int q = 0; q < QB; q++) {                                                                 \
            memcpy(out + (o0 + q) * ostride + X0, &acc[q][0], sizeof(VT));                             \
            memcpy(out + (o0 + q) * ostride + X0 + NV, &acc[q][1], sizeof(VT));                        \
        }                                                                                              \
    }
/* blocks of OCB channels (then of 4) on one block of columns at a time (its input columns stay in L1) */
#define FCONV_ROWS(SUF, VT, NV, OCB)                                                                   \
    static void fconv_rows_##SUF(const float *xp, int Ci, int Hp, int Wq, const float *w, int nob, int k, \
                                 int oy, int Wr, const float *bias, float *out, int64_t ostride) {      \
        for (int X0 = 0; X0 < Wr; X0 += 2 * NV) {                                                      \
            int o0 = 0;                                                                                \
            for (; o0 + OCB <= 4 * nob; o0 += OCB) FCONV_BLOCK(VT, NV, OCB)                            \
            for (; o0 < 4 * nob; o0 += 4) FCONV_BLOCK(VT, NV, 4)                                       \
        }                                                                                              \
    }

#pragma GCC push_options
#pragma GCC optimize("fp-contract=fast")
/* the portable kernel paths: the best instructions of the CPU */
#if BS_X86
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#endif
FCONV_ROWS(any, v16f, 16, 4)
#if BS_X86
#pragma GCC push_options
#pragma GCC target("avx2,fma")
FCONV_ROWS(avx2, v8f, 8, 4) /* 8 accumulators: the 16 AVX2 registers hold them with the operands */
#pragma GCC pop_options
#pragma GCC push_options
#pragma GCC target("avx512f,fma")
FCONV_ROWS(avx512, v16f, 16, 8) /* 16 accumulators of the 32 registers */
#pragma GCC pop_options
#endif
#pragma GCC pop_options

typedef void (*fconv_fn)(const float *, int, int, int, const float *, int, int, int, int, const float *, float *,
                         int64_t);

BS_API int bs_fconv(const float *x, int64_t N, int Ci, int H, int W, int pad, const float *w, int Co4, int k,
                    int Ho, int Wr, const float *bias, float *out, int path, int nthreads) {
    path = resolve_path(path);
    if (path < 0) return BS_EPATH;
    if (N < 1 || Ci < 1 || Co4 < 4 || Co4 % 4 || k < 1 || Ho < 1 || Wr < 32 || Wr % 32) return BS_EINVAL;
    const int Wq = Wr + k - 1; /* the padded rows the row kernel reads */
    if (pad < 0 || H < 1 || W < 1 || Ho != H + 2 * pad - k + 1 || W + 2 * pad > Wq) return BS_EINVAL;
    fconv_fn f = fconv_rows_any;
#if BS_X86
    if (path == BS_PATH_AVX2) f = fconv_rows_avx2;
    if (path == BS_PATH_AVX512) f = fconv_rows_avx512;
#endif
    nthreads = useful_threads(nthreads, (double)N * Ho * Wr * Co4 * Ci * k * k / 4.0);
    const int nob = Co4 / 4;
    int err = 0;
#pragma omp parallel num_threads(nthreads)
    {
        /* the k zero-padded input rows of one output row, every channel: (Ci, k, Wq) */
        float *rows = malloc(sizeof(float) * (size_t)Ci * k * Wq);
        if (!rows) {
#pragma omp atomic write
            err = 1;
        }
#pragma omp for collapse(2) schedule(static)
        for (int64_t n = 0; n < N; n++)
            for (int oy = 0; oy < Ho; oy++) {
                if (!rows) continue;
                for (int c = 0; c < Ci; c++)
                    for (int ky = 0; ky < k; ky++) {
                        float *r = rows + ((int64_t)c * k + ky) * Wq;
                        const int iy = oy - pad + ky;
                        memset(r, 0, sizeof(float) * Wq);
                        if (iy >= 0 && iy < H)
                            memcpy(r + pad, x + ((n * Ci + c) * H + iy) * (int64_t)W, sizeof(float) * W);
                    }
                f(rows, Ci, k, Wq, w, nob, k, 0, Wr, bias, out + (n * Co4 * (int64_t)Ho + oy) * Wr,
                  (int64_t)Ho * Wr);
            }
        free(rows);
    }
    return err ? BS_ENOMEM : BS_OK;
}

/* ------------------------------------------------------------------------------------------------ */
/* RPReLU on float planes: out = prelu(x - gamma[c], slope[c]) + zeta[c]; gamma/zeta may be NULL (PReLU).  */
/* keep_nan = 0: the engine's form, a NaN gives zeta; 1: PyTorch's (training), a NaN stays NaN.        */

/* t = x - g; (max(t, 0) + sl * min(t, 0)) + z */
static inline __attribute__((always_inline)) float rprelu1(float x, float g, float sl, float z) {
    const float t = x - g;
    const float tp = t > 0.f ? t : 0.f, tn = t < 0.f ? t : 0.f;
    return (tp + sl * tn) + z;
}

#if BS_X86
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#endif
static void rprelu_plane(const float *x, int64_t n, float g, float sl, float z, int keep_nan, float *out) {
    if (keep_nan) /* the float32 steps of PyTorch's x - gamma, prelu and + zeta (training) */
        for (int64_t i = 0; i < n; i++) {
            const float t = x[i] - g;
            out[i] = (t > 0.f ? t : sl * t) + z;
        }
    else
        for (int64_t i = 0; i < n; i++) out[i] = rprelu1(x[i], g, sl, z);
}

BS_API int bs_rprelu(const float *x, int64_t N, int C, int64_t HW, const float *gamma, const float *slope,
                     const float *zeta, int keep_nan, float *out, int nthreads) {
    if (N < 1 || C < 1 || HW < 1 || !slope) return BS_EINVAL;
    nthreads = useful_threads(nthreads, (double)N * C * HW);
#pragma omp parallel for collapse(2) schedule(static) num_threads(nthreads)
    for (int64_t n = 0; n < N; n++)
        for (int c = 0; c < C; c++) {
            const int64_t off = (n * C + c) * HW;
            rprelu_plane(x + off, HW, gamma ? gamma[c] : 0.f, slope[c], zeta ? zeta[c] : 0.f, keep_nan, out + off);
        }
    return BS_OK;
}

/* Sign (training): out = x < 0 ? -1 : +1 over n floats (sign(0) = +1; NaN gives +1, as the packed bit test). */

#if BS_X86
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#endif
static void sign_run(const float *x, int64_t n, float *out) {
    for (int64_t i = 0; i < n; i++) out[i] = x[i] < 0.f ? -1.f : 1.f;
}

BS_API int bs_sign(const float *x, int64_t n, float *out, int nthreads) {
    if (n < 1) return BS_EINVAL;
    nthreads = useful_threads(nthreads, (double)n);
    const int64_t chunk = ((n + 64 * nthreads - 1) / (64 * nthreads)) * 64; /* whole cache lines per thread */
#pragma omp parallel for schedule(static) num_threads(nthreads)
    for (int64_t i0 = 0; i0 < n; i0 += chunk) sign_run(x + i0, n - i0 < chunk ? n - i0 : chunk, out + i0);
    return BS_OK;
}

/* ApproxSign backward (training, Bi-Real): gx = max(2 - 2|x|, 0) * g in PyTorch's float32 steps
 * ((|x| * -2) + 2, clamped below at 0 with NaN kept, times g): bitwise its op-by-op result. */
#if BS_X86
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#endif
static void approx_sign_bwd_run(const float *x, const float *g, int64_t n, float *gx) {
    for (int64_t i = 0; i < n; i++) {
        const float b = fabsf(x[i]) * -2.f + 2.f;
        gx[i] = (b < 0.f ? 0.f : b) * g[i];
    }
}

BS_API int bs_approx_sign_backward(const float *x, const float *g, int64_t n, float *gx, int nthreads) {
    if (n < 1) return BS_EINVAL;
    nthreads = useful_threads(nthreads, 2.0 * n);
    const int64_t chunk = ((n + 64 * nthreads - 1) / (64 * nthreads)) * 64; /* whole cache lines per thread */
#pragma omp parallel for schedule(static) num_threads(nthreads)
    for (int64_t i0 = 0; i0 < n; i0 += chunk)
        approx_sign_bwd_run(x + i0, g + i0, n - i0 < chunk ? n - i0 : chunk, gx + i0);
    return BS_OK;
}

/* RPReLU backward (training): x the layer input and g the output gradient, both (N, C, HW); t = x - gamma[c]; */
/*   gx = t > 0 ? g : slope[c] * g (PyTorch's PReLU rule, t = 0 takes the slope), and per plane p = n * C + c */
/*   in double: sums[3p] = sum gx, sums[3p + 1] = sum of g * t where t <= 0, sums[3p + 2] = sum g (eight     */
/*   partial sums, element i in partial i % 8, added in lane order: the same for every thread count).       */

#if BS_X86
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#endif
static void rprelu_bwd_plane(const float *x, const float *g, int64_t n, float ga, float sl, float *gx, double *sums) {
    v8d a0 = {0}, a1 = {0}, a2 = {0};
    const v8f z = {0};
    for (int64_t i = 0; i < n; i += 8) { /* a plane's tail zero-padded: the padding adds 0 to every sum */
        const int m = n - i < 8 ? (int)(n - i) : 8;
        const v8f xv = load8(x + i, m), gv = load8(g + i, m);
        const v8f t = xv - ga;
        const v8i pos = t > 0.f;
        const v8f gs = sel8(pos, gv, gv * sl), gw = sel8(pos, z, gv * t);
        store8(gx + i, gs, m);
        a0 += __builtin_convertvector(gs, v8d), a1 += __builtin_convertvector(gw, v8d);
        a2 += __builtin_convertvector(gv, v8d);
    }
    sums[0] = lanes_in_order(a0), sums[1] = lanes_in_order(a1), sums[2] = lanes_in_order(a2);
}

BS_API int bs_rprelu_backward(const float *x, const float *g, int64_t N, int C, int64_t HW, const float *gamma,
                              const float *slope, float *gx, double *sums, int nthreads) {
    if (N < 1 || C < 1 || HW < 1 || !slope || !sums) return BS_EINVAL;
    nthreads = useful_threads(nthreads, 3.0 * N * C * HW);
#pragma omp parallel for collapse(2) schedule(static) num_threads(nthreads)
    for (int64_t n = 0; n < N; n++)
        for (int c = 0; c < C; c++) {
            const int64_t p = n * C + c;
            rprelu_bwd_plane(x + p * HW, g + p * HW, HW, gamma ? gamma[c] : 0.f, slope[c], gx + p * HW, sums + 3 * p);
        }
    return BS_OK;
}

/* Channel affine backward (training): y = x * k + b with k and b one value per plane p = n * C + c (given per */
/*   plane); x, g (N * C planes of HW): gx = g * k[p], and in double sums[2p] = sum g * x, sums[2p + 1] = sum g */
/*   (eight partial sums, element i in partial i % 8, added in order: the same for every thread count).      */

#if BS_X86
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#endif
static void affine_bwd_plane(const float *x, const float *g, int64_t n, float k, float *gx, double *sums) {
    v8d a0 = {0}, a1 = {0};
    for (int64_t i = 0; i < n; i += 8) { /* a plane's tail zero-padded: the padding adds 0 to both sums */
        const int m = n - i < 8 ? (int)(n - i) : 8;
        const v8f xv = load8(x + i, m), gv = load8(g + i, m);
        store8(gx + i, gv * k, m);
        a0 += __builtin_convertvector(gv * xv, v8d), a1 += __builtin_convertvector(gv, v8d);
    }
    sums[0] = lanes_in_order(a0), sums[1] = lanes_in_order(a1);
}

BS_API int bs_affine_backward(const float *x, const float *g, int64_t P, int64_t HW, const float *k, float *gx,
                              double *sums, int nthreads) {
    if (P < 1 || HW < 1 || !k || !sums) return BS_EINVAL;
    nthreads = useful_threads(nthreads, 3.0 * P * HW);
#pragma omp parallel for schedule(static) num_threads(nthreads)
    for (int64_t p = 0; p < P; p++) affine_bwd_plane(x + p * HW, g + p * HW, HW, k[p], gx + p * HW, sums + 2 * p);
    return BS_OK;
}

/* Scalable-tanh sign backward (training, BiSRNet's surrogate): x, g (N, C, HW), b = beta[c];            */
/*   e = g * s * (1 - s) with s = sigmoid(2 b x) (= g (1 - tanh^2(b x)) / 4), gx = (4 b) * e, and per plane */
/*   p = n * C + c in double: sums[p] = sum of e * x (the gradient of beta is 4 times its sum). exp is the    */
/*   Cephes single-precision polynomial on float32 vectors (a plane's tail is computed zero-padded in one   */
/*   vector): the same results on every path and thread count.                                             */

static inline __attribute__((always_inline)) v8f exp8(v8f z) {
    const v8f hi = (v8f){0} + 88.3762626647949f, lo = (v8f){0} - 87.3365447504f;
    z = sel8(z > hi, hi, z);
    z = sel8(z < lo, lo, z);
    const v8f t = z * 1.44269504088896341f + 0.5f;
    v8i n = __builtin_convertvector(t, v8i);
    n = n + (__builtin_convertvector(n, v8f) > t); /* truncation towards zero -> floor */
    const v8f nf = __builtin_convertvector(n, v8f);
    const v8f r = (z - nf * 0.693359375f) + nf * 2.12194440e-4f;
    v8f q = r * 1.9875691500E-4f + 1.3981999507E-3f;
    q = q * r + 8.3334519073E-3f;
    q = q * r + 4.1665795894E-2f;
    q = q * r + 1.6666665459E-1f;
    q = q * r + 5.0000001201E-1f;
    q = (q * (r * r) + r) + 1.f;
    return q * (v8f)((n + 127) << 23);
}

#if BS_X86
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#endif
static void tanh_sign_bwd_plane(const float *x, const float *g, int64_t n, float b, float *gx, double *sum) {
    v8d a = {0};
    const float m2b = -2.f * b, b4 = 4.f * b;
    for (int64_t i = 0; i < n; i += 8) { /* a plane's tail zero-padded: the padding adds e * x = 0 */
        const int m = n - i < 8 ? (int)(n - i) : 8;
        const v8f xv = load8(x + i, m), gv = load8(g + i, m);
        const v8f s = 1.f / (1.f + exp8(xv * m2b));
        const v8f e = gv * (s * (1.f - s));
        store8(gx + i, e * b4, m);
        a += __builtin_convertvector(e * xv, v8d);
    }
    *sum = lanes_in_order(a);
}

BS_API int bs_tanh_sign_backward(const float *x, const float *g, int64_t N, int C, int64_t HW, const float *beta,
                                 float *gx, double *sums, int nthreads) {
    if (N < 1 || C < 1 || HW < 1 || !beta || !sums) return BS_EINVAL;
    nthreads = useful_threads(nthreads, 12.0 * N * C * HW);
#pragma omp parallel for collapse(2) schedule(static) num_threads(nthreads)
    for (int64_t n = 0; n < N; n++)
        for (int c = 0; c < C; c++) {
            const int64_t p = n * C + c;
            tanh_sign_bwd_plane(x + p * HW, g + p * HW, HW, beta[c], gx + p * HW, sums + p);
        }
    return BS_OK;
}

/* ------------------------------------------------------------------------------------------------ */
/* Per-plane statistics: mean, sqrt(population variance + eps) and mean |v| of v = y * s + b over a plane y */
/* (v in float32; s = 1, b = 0 give y itself) in one pass with double accumulators: with K the plane's     */
/* first value, S1 = sum (v - K), S2 = sum (v - K)^2, mean = K + S1 / n, var = S2 / n - (S1 / n)^2 (the    */
/* shift keeps the cancellation harmless); 8 independent partial sums each, element i in partial i % 8   */
/* (explicit vectors, no serial dependency chain on one accumulator); the results rounded to float32,     */
/* then + eps and sqrt in float32.                                                                          */

typedef int64_t v8l __attribute__((vector_size(64)));

/* partials of S1, S2 and sum |v|: lane k holds partial k (one 512-bit vector each on AVX-512, two halves on
   AVX2: the same sums in the same order either way) */
typedef struct {
    v8d s1, s2, sa;
} sums8;

/* adds the 8 consecutive values f (v = f * s + b) */
static inline __attribute__((always_inline)) void acc8(v8f f, float s, float b, double K, int absum, sums8 *a) {
    const v8l nosign = {INT64_MAX, INT64_MAX, INT64_MAX, INT64_MAX, INT64_MAX, INT64_MAX, INT64_MAX, INT64_MAX};
    v8d d = __builtin_convertvector(f * s + b, v8d);
    if (absum) a->sa += (v8d)((v8l)d & nosign);
    d -= K;
    a->s1 += d;
    a->s2 += d * d;
}

/* the total of 8 partials, pairwise */
static inline double sum8(v8d a) {
    return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}

/* S1, S2 and sum |v| (t[0..2]) over HW floats at r */
#if BS_X86
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#endif
static void plane_sums(const float *r, int64_t HW, float s, float b, double K, int absum, double *t) {
    sums8 a;
    memset(&a, 0, sizeof a);
    int64_t i = 0;
    for (; i + 8 <= HW; i += 8) {
        v8f f;
        if (!(i & 15)) __builtin_prefetch(r + i + 1024); /* a stream from memory */
        memcpy(&f, r + i, sizeof f);
        acc8(f, s, b, K, absum, &a);
    }
    for (; i < HW; i++) { /* the remainder, in order, into partial 0 */
        const double v = (double)(r[i] * s + b), d = v - K;
        a.sa[0] += fabs(v);
        a.s1[0] += d;
        a.s2[0] += d * d;
    }
    t[0] = sum8(a.s1), t[1] = sum8(a.s2), t[2] = sum8(a.sa);
}

/* the inverse Haar transform of band values A, B, C, D (LL, LH, HL, HH; lanes of VT): output row 2i (r = 0) or
   2i + 1 (r = 1), even columns in e and odd columns in o */
#define HAAR_ROW_PAIR(VT, A, B, C, D, r, e, o)                                                             \
    if ((r) == 0) {                                                                                       \
        const VT s1_ = (A) + (B);                                                                         \
        e = ((s1_ + (C)) + (D)) * 0.5f, o = ((s1_ - (C)) - (D)) * 0.5f;                                   \
    } else {                                                                                              \
        const VT d1_ = (A) - (B);                                                                         \
        e = ((d1_ + (C)) - (D)) * 0.5f, o = ((d1_ - (C)) + (D)) * 0.5f;                                   \
    }

/* The same sums over the plane y (2h, 2w) = inverse Haar of the bands (h, w) bd[0..3] (LL, LH, HL, HH; see
   bs_haar_idwt), y never formed: row by row in raster order, so with w % 4 == 0 (8 | 2w) every value goes to
   the partial and in the order plane_sums gives it on y (the same results). */
#if BS_X86
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#endif
static void haar_plane_sums(const float *const *bd, int64_t h, int64_t w, float s, float b, double K, int absum,
                            double *t) {
    typedef float v4f __attribute__((vector_size(16)));
    sums8 a;
    memset(&a, 0, sizeof a);
    for (int64_t i = 0; i < h; i++)
        for (int r = 0; r < 2; r++) { /* output rows 2i and 2i + 1 */
            const float *A = bd[0] + i * w, *B = bd[1] + i * w, *C = bd[2] + i * w, *D = bd[3] + i * w;
            int64_t j = 0;
            for (; j + 8 <= w; j += 8) { /* 16 outputs */
                v8f va, vb, vc, vd, e, o;
                if (!r && !(j & 15)) /* the rows of the bands four rows on (a memory stream each) */
                    for (int q = 0; q < 4; q++) __builtin_prefetch(bd[q] + (i + 4) * w + j);
                memcpy(&va, A + j, sizeof va), memcpy(&vb, B + j, sizeof vb);
                memcpy(&vc, C + j, sizeof vc), memcpy(&vd, D + j, sizeof vd);
                HAAR_ROW_PAIR(v8f, va, vb, vc, vd, r, e, o)
                acc8(__builtin_shufflevector(e, o, 0, 8, 1, 9, 2, 10, 3, 11), s, b, K, absum, &a);
                acc8(__builtin_shufflevector(e, o, 4, 12, 5, 13, 6, 14, 7, 15), s, b, K, absum, &a);
            }
            if (j < w) { /* w % 8 == 4: the last 8 outputs */
                v4f va, vb, vc, vd, e, o;
                memcpy(&va, A + j, sizeof va), memcpy(&vb, B + j, sizeof vb);
                memcpy(&vc, C + j, sizeof vc), memcpy(&vd, D + j, sizeof vd);
                HAAR_ROW_PAIR(v4f, va, vb, vc, vd, r, e, o)
                acc8(__builtin_shufflevector(e, o, 0, 4, 1, 5, 2, 6, 3, 7), s, b, K, absum, &a);
            }
        }
    t[0] = sum8(a.s1), t[1] = sum8(a.s2), t[2] = sum8(a.sa);
}

/* A plane: HW floats at x, or (bd[0] != NULL) the inverse Haar transform of four (h, w) bands, HW = 4hw. */
typedef struct {
    const float *x;
    const float *bd[4];
    int64_t HW, h, w;
} plane_src;

/* mean, sd (when given) and mean |v| (when amean) of a plane */
static void src_moments(const plane_src *p, float s, float b, float eps, float *mean, float *sd, float *amean) {
    double t[3];
    const float *const *bd = p->bd;
    const float y0 = bd[0] ? (((bd[0][0] + bd[1][0]) + bd[2][0]) + bd[3][0]) * 0.5f : p->x[0];
    const double K = (double)(y0 * s + b), n = (double)p->HW;
    if (bd[0])
        haar_plane_sums(bd, p->h, p->w, s, b, K, amean != NULL, t);
    else
        plane_sums(p->x, p->HW, s, b, K, amean != NULL, t);
    const double d = t[0] / n, var = t[1] / n - d * d;
    *mean = (float)(K + d);
    if (amean) *amean = (float)(t[2] / n);
    if (sd) *sd = sqrtf((float)(var > 0.0 ? var : 0.0) + eps);
}

static void plane_moments(const float *r, int64_t HW, float s, float b, float eps, float *mean, float *sd,
                          float *amean) {
    const plane_src p = {r, {NULL, NULL, NULL, NULL}, HW, 0, 0};
    src_moments(&p, s, b, eps, mean, sd, amean);
}

/* Per-plane mean and sqrt(population variance + eps) (see above); sd may be NULL (mean only). */
BS_API int bs_plane_stats(const float *x, int64_t NC, int64_t HW, float eps, float *mean, float *sd,
                          int nthreads) {
    if (NC < 1 || HW < 1) return BS_EINVAL;
    nthreads = useful_threads(nthreads, (sd ? 2.0 : 1.0) * NC * HW);
#pragma omp parallel for schedule(static) num_threads(nthreads)
    for (int64_t p = 0; p < NC; p++) plane_moments(x + p * HW, HW, 1.f, 0.f, eps, mean + p, sd ? sd + p : NULL, NULL);
    return BS_OK;
}

/* ------------------------------------------------------------------------------------------------ */
/* LayerNorm over channels per pixel of x (N, C, HW) in double: mean and population variance summed over */
/* c in order, y = (x - mean) / sqrt(var + eps), out = (float)(y * w[c] + b[c]).                       */

#define BS_LN_BLOCK 256
/* one block of m <= BS_LN_BLOCK pixels, every channel (planes HW apart) */
#if BS_X86
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#endif
static void layernorm_block(const float *xs, int C, int64_t HW, int m, const float *w, const float *b, double eps,
                            float *os) {
    double mean[BS_LN_BLOCK], acc[BS_LN_BLOCK];
    for (int j = 0; j < m; j++) acc[j] = 0.0;
    for (int c = 0; c < C; c++)
        for (int j = 0; j < m; j++) acc[j] += (double)xs[c * HW + j];
    for (int j = 0; j < m; j++) {
        mean[j] = acc[j] / (double)C;
        acc[j] = 0.0;
    }
    for (int c = 0; c < C; c++)
        for (int j = 0; j < m; j++) {
            const double d = (double)xs[c * HW + j] - mean[j];
            acc[j] += d * d;
        }
    for (int j = 0; j < m; j++) acc[j] = sqrt(acc[j] / (double)C + eps);
    for (int c = 0; c < C; c++) {
        const double wc = (double)w[c], bc = (double)b[c];
        for (int j = 0; j < m; j++)
            os[c * HW + j] = (float)((((double)xs[c * HW + j] - mean[j]) / acc[j]) * wc + bc);
    }
}

BS_API int bs_layernorm_c(const float *x, int64_t N, int C, int64_t HW, const float *w, const float *b,
                          double eps, float *out, int nthreads) {
    if (N < 1 || C < 1 || HW < 1 || !w || !b) return BS_EINVAL;
    const int64_t nb = (HW + BS_LN_BLOCK - 1) / BS_LN_BLOCK;
    nthreads = useful_threads(nthreads, 4.0 * N * C * HW);
#pragma omp parallel for schedule(static) num_threads(nthreads)
    for (int64_t t = 0; t < N * nb; t++) {
        const int64_t n = t / nb, p0 = (t % nb) * BS_LN_BLOCK;
        const int m = (int)((HW - p0) < BS_LN_BLOCK ? (HW - p0) : BS_LN_BLOCK);
        layernorm_block(x + n * C * HW + p0, C, HW, m, w, b, eps, out + n * C * HW + p0);
    }
    return BS_OK;
}

/* ------------------------------------------------------------------------------------------------ */
/* Orthonormal Haar DWT of P planes (H, W) -> bands [LL, LH, HL, HH] of (H/2, W/2), band b of plane p at    */
/* band_b + p * pstride (interleaved (P, 4, h, w): pstride = 4hw, bands hw apart; separate band arrays:     */
/* pstride = hw); a, b, c, d the 2x2 block: ((a +- b) +- c) +- d, times 0.5 (float32, the PyTorch summation */
/* order); and its inverse.                                                                                */

#if BS_X86
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#endif
static void haar_dwt_row(const float *r0, const float *r1, int64_t w, float *ll, float *lh, float *hl, float *hh) {
    int64_t j = 0;
    for (; j + 8 <= w; j += 8) { /* even and odd columns of 16 pixels apart */
        v8f x0, x1, y0, y1;
        memcpy(&x0, r0 + 2 * j, sizeof x0), memcpy(&x1, r0 + 2 * j + 8, sizeof x1);
        memcpy(&y0, r1 + 2 * j, sizeof y0), memcpy(&y1, r1 + 2 * j + 8, sizeof y1);
        const v8f a = __builtin_shufflevector(x0, x1, 0, 2, 4, 6, 8, 10, 12, 14);
        const v8f b = __builtin_shufflevector(x0, x1, 1, 3, 5, 7, 9, 11, 13, 15);
        const v8f c = __builtin_shufflevector(y0, y1, 0, 2, 4, 6, 8, 10, 12, 14);
        const v8f d = __builtin_shufflevector(y0, y1, 1, 3, 5, 7, 9, 11, 13, 15);
        const v8f s1 = a + b, d1 = a - b;
        const v8f vll = ((s1 + c) + d) * 0.5f, vlh = ((s1 - c) - d) * 0.5f;
        const v8f vhl = ((d1 + c) - d) * 0.5f, vhh = ((d1 - c) + d) * 0.5f;
        memcpy(ll + j, &vll, sizeof vll), memcpy(lh + j, &vlh, sizeof vlh);
        memcpy(hl + j, &vhl, sizeof vhl), memcpy(hh + j, &vhh, sizeof vhh);
    }
    for (; j < w; j++) {
        const float a = r0[2 * j], b = r0[2 * j + 1], c = r1[2 * j], d = r1[2 * j + 1];
        const float s1 = a + b, d1 = a - b;
        ll[j] = ((s1 + c) + d) * 0.5f;
        lh[j] = ((s1 - c) - d) * 0.5f;
        hl[j] = ((d1 + c) - d) * 0.5f;
        hh[j] = ((d1 - c) + d) * 0.5f;
    }
}

BS_API int bs_haar_dwt(const float *x, int64_t P, int64_t H, int64_t W, float *ll, float *lh, float *hl, float *hh,
                       int64_t pstride, int nthreads) {
    if (P < 1 || H < 2 || W < 2 || (H | W) & 1) return BS_EINVAL;
    const int64_t h = H / 2, w = W / 2;
    if (pstride < h * w) return BS_EINVAL;
    nthreads = useful_threads(nthreads, 2.0 * P * H * W);
#pragma omp parallel for collapse(2) schedule(static) num_threads(nthreads)
    for (int64_t p = 0; p < P; p++)
        for (int64_t i = 0; i < h; i++) {
            const float *r0 = x + (p * H + 2 * i) * W;
            const int64_t o = p * pstride + i * w;
            haar_dwt_row(r0, r0 + W, w, ll + o, lh + o, hl + o, hh + o);
        }
    return BS_OK;
}

BS_API int bs_haar_idwt(const float *ll, const float *lh, const float *hl, const float *hh, int64_t P, int64_t h,
                        int64_t w, int64_t pstride, float *out, int nthreads) {
    if (P < 1 || h < 1 || w < 1 || pstride < h * w) return BS_EINVAL;
    const int64_t W = 2 * w;
    nthreads = useful_threads(nthreads, 2.0 * P * h * w * 4);
#pragma omp parallel for collapse(2) schedule(static) num_threads(nthreads)
    for (int64_t p = 0; p < P; p++)
        for (int64_t i = 0; i < h; i++) {
            const int64_t q = p * pstride + i * w;
            const float *a = ll + q, *b = lh + q, *c = hl + q, *d = hh + q;
            float *o0 = out + (p * 2 * h + 2 * i) * W, *o1 = o0 + W;
            for (int64_t j = 0; j < w; j++) {
                o0[2 * j] = (((a[j] + b[j]) + c[j]) + d[j]) * 0.5f;
                o0[2 * j + 1] = (((a[j] + b[j]) - c[j]) - d[j]) * 0.5f;
                o1[2 * j] = (((a[j] - b[j]) + c[j]) - d[j]) * 0.5f;
                o1[2 * j + 1] = (((a[j] - b[j]) - c[j]) + d[j]) * 0.5f;
            }
        }
    return BS_OK;
}

/* ------------------------------------------------------------------------------------------------ */
/* x2 bilinear upsampling (PyTorch align_corners=False) of P planes (H, W) -> (P, 2H, 2W): rows first,  */
/* then columns, each output sample x[i0]*w0 + x[i1]*w1 with the index/weight form of the numpy code.   */

static void up2_taps(int64_t n, int64_t o, int64_t *i0, int64_t *i1, float *w0, float *w1) {
    if (o == 0) {
        *i0 = 0, *i1 = n > 1 ? 1 : 0, *w0 = 1.f, *w1 = 0.f;
    } else if (o & 1) {
        *i0 = o / 2, *i1 = o / 2 + 1 < n ? o / 2 + 1 : n - 1, *w0 = 0.75f, *w1 = 0.25f;
    } else {
        *i0 = o / 2 - 1, *i1 = o / 2, *w0 = 0.25f, *w1 = 0.75f;
    }
}

/* one output row: t = r0 * w0 + r1 * w1 (W samples, the rows' taps), then the columns 1 .. 2W-2 in pairs
 * (2j + 1: t[j]*0.75 + t[j+1]*0.25, 2j + 2: t[j]*0.25 + t[j+1]*0.75) and the two border columns by their
 * taps (ci0, cw) */
#if BS_X86
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#endif
static void up2_row(const float *r0, const float *r1, float w0, float w1, int64_t W, const int64_t *ci0,
                    const float *cw, float *t, float *orow) {
    for (int64_t j = 0; j < W; j++) t[j] = r0[j] * w0 + r1[j] * w1;
    orow[0] = t[ci0[0]] * cw[0] + t[ci0[1]] * cw[1];
    for (int64_t j = 0; j + 1 < W; j++) {
        orow[2 * j + 1] = t[j] * 0.75f + t[j + 1] * 0.25f;
        orow[2 * j + 2] = t[j] * 0.25f + t[j + 1] * 0.75f;
    }
    const int64_t q = 2 * W - 1;
    orow[q] = t[ci0[2 * q]] * cw[2 * q] + t[ci0[2 * q + 1]] * cw[2 * q + 1];
}

BS_API int bs_upsample2(const float *x, int64_t P, int64_t H, int64_t W, float *out, int nthreads) {
    if (P < 1 || H < 1 || W < 1) return BS_EINVAL;
    int64_t *ci0 = malloc(sizeof(int64_t) * 4 * W);
    float *cw = malloc(sizeof(float) * 4 * W);
    if (!ci0 || !cw) {
        free(ci0), free(cw);
        return BS_ENOMEM;
    }
    for (int64_t q = 0; q < 2 * W; q++) up2_taps(W, q, ci0 + 2 * q, ci0 + 2 * q + 1, cw + 2 * q, cw + 2 * q + 1);
    int err = 0;
    nthreads = useful_threads(nthreads, 8.0 * P * H * W);
#pragma omp parallel num_threads(nthreads)
    {
        float *tmp = malloc(sizeof(float) * W);
        if (!tmp) {
#pragma omp atomic write
            err = 1;
        }
#pragma omp for collapse(2) schedule(static)
        for (int64_t p = 0; p < P; p++)
            for (int64_t o = 0; o < 2 * H; o++) {
                if (!tmp) continue;
                int64_t i0, i1;
                float w0, w1;
                up2_taps(H, o, &i0, &i1, &w0, &w1);
                const float *r0 = x + (p * H + i0) * W, *r1 = x + (p * H + i1) * W;
                up2_row(r0, r1, w0, w1, W, ci0, cw, tmp, out + (p * 2 * H + o) * 2 * W);
            }
        free(tmp);
    }
    free(ci0), free(cw);
    return err ? BS_ENOMEM : BS_OK;
}

/* 2x2 mean of P planes (H, W) -> (P, H/2, W/2) (odd last row/column dropped): ((a + b) + (c + d)) / 4,  */
/* the order of numpy's float32 sum over the two window axes.                                           */
BS_API int bs_avgpool2(const float *x, int64_t P, int64_t H, int64_t W, float *out, int nthreads) {
    const int64_t h = H / 2, w = W / 2;
    if (P < 1 || h < 1 || w < 1) return BS_EINVAL;
    nthreads = useful_threads(nthreads, 1.0 * P * H * W);
#pragma omp parallel for collapse(2) schedule(static) num_threads(nthreads)
    for (int64_t p = 0; p < P; p++)
        for (int64_t i = 0; i < h; i++) {
            const float *r0 = x + (p * H + 2 * i) * W, *r1 = r0 + W;
            float *o = out + (p * h + i) * w;
            for (int64_t j = 0; j < w; j++)
                o[j] = ((r0[2 * j] + r0[2 * j + 1]) + (r1[2 * j] + r1[2 * j + 1])) / 4.f;
        }
    return BS_OK;
}

/* ------------------------------------------------------------------------------------------------ */
/* Fused float glue of BNNPan's units, one plane (n, c) at a time (statistics as bs_plane_stats, every   */
/* elementwise step a float32 operation in the PyTorch order, so the results equal the op-by-op graph).  */
/* restd: re-standardised binary branch, its RPReLU and the residual add of the NBC:                     */
/*   t = (((sd_f / lam[c]) * (xb - mu_b)) / sd_b + mu_f) + eta[c]; t = rprelu(t) (slope given);          */
/*   out = t + xf (residual), with mu and sd = sqrt(var + eps) of xb and xf over the plane.              */
/* calibrate: v = x * s[p] + b[p] (s, b per plane, optional: v = x), out = w[p] * v + x, with            */
/*   bs_affine_stats giving the mean, sd and mean |v| that w is computed from.                            */

#if BS_X86
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#endif
static void restd_plane(const float *xb, const float *xf, int64_t n, float mb, float r, float sb, float mf,
                        float e, int act, float g, float sl, float z, int residual, float *out) {
    for (int64_t i0 = 0; i0 < n; i0 += 512) { /* blocks of L1-resident steps, branch-free inner loops */
        const int64_t m = n - i0 < 512 ? n - i0 : 512;
        const float *b = xb + i0, *f = xf + i0;
        float *o = out + i0;
        for (int64_t i = 0; i < m; i++) o[i] = (((r * (b[i] - mb)) / sb) + mf) + e;
        if (act)
            for (int64_t i = 0; i < m; i++) o[i] = rprelu1(o[i], g, sl, z);
        if (residual)
            for (int64_t i = 0; i < m; i++) o[i] = o[i] + f[i];
    }
}

BS_API int bs_restd(const float *xb, const float *xf, int64_t N, int C, int64_t HW, const float *lam,
                    const float *eta, const float *gamma, const float *slope, const float *zeta, float eps,
                    int residual, float *out, int nthreads) {
    if (N < 1 || C < 1 || HW < 1 || !lam || !eta) return BS_EINVAL;
    nthreads = useful_threads(nthreads, 6.0 * N * C * HW);
#pragma omp parallel for collapse(2) schedule(static) num_threads(nthreads)
    for (int64_t n = 0; n < N; n++)
        for (int c = 0; c < C; c++) {
            const int64_t off = (n * C + c) * HW;
            float mb, sb, mf, sf;
            plane_moments(xb + off, HW, 1.f, 0.f, eps, &mb, &sb, NULL);
            plane_moments(xf + off, HW, 1.f, 0.f, eps, &mf, &sf, NULL);
            restd_plane(xb + off, xf + off, HW, mb, sf / lam[c], sb, mf, eta[c], slope != NULL,
                        gamma ? gamma[c] : 0.f, slope ? slope[c] : 0.f, zeta ? zeta[c] : 0.f, residual,
                        out + off);
        }
    return BS_OK;
}

BS_API int bs_affine_stats(const float *x, int64_t NC, int64_t HW, const float *s, const float *b, float eps,
                           float *mean, float *sd, float *amean, int nthreads) {
    if (NC < 1 || HW < 1 || !mean || !sd || !amean) return BS_EINVAL;
    nthreads = useful_threads(nthreads, 4.0 * NC * HW);
#pragma omp parallel for schedule(static) num_threads(nthreads)
    for (int64_t p = 0; p < NC; p++)
        plane_moments(x + p * HW, HW, s ? s[p] : 1.f, b ? b[p] : 0.f, eps, mean + p, sd + p, amean + p);
    return BS_OK;
}

/* w * (y * s + b) + y, or w * y + y without the affine (aff = 0) */
static inline __attribute__((always_inline)) float calib1(float y, int aff, float s, float b, float wt) {
    return aff ? wt * (y * s + b) + y : wt * y + y;
}

#if BS_X86
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#endif
static void calibrate_plane(const float *x, int64_t n, int aff, float s, float b, float w, float *out) {
    for (int64_t i = 0; i < n; i++) out[i] = calib1(x[i], aff, s, b, w);
}

BS_API int bs_calibrate(const float *x, int64_t NC, int64_t HW, const float *s, const float *b, const float *w,
                        float *out, int nthreads) {
    if (NC < 1 || HW < 1 || !w || !s != !b) return BS_EINVAL;
    nthreads = useful_threads(nthreads, 3.0 * NC * HW);
#pragma omp parallel for schedule(static) num_threads(nthreads)
    for (int64_t p = 0; p < NC; p++)
        calibrate_plane(x + p * HW, HW, s != NULL, s ? s[p] : 1.f, b ? b[p] : 0.f, w[p], out + p * HW);
    return BS_OK;
}

/* Haar forms of calibrate: the input y is given by its Haar bands (inverse transform done on the fly) and */
/* the output written as it is (out) or as its Haar bands (o[0..3]), the same values as bs_haar_idwt,     */
/* bs_affine_stats / bs_calibrate and bs_haar_dwt one after the other. Bands: P planes, band b of plane p */
/* at bd[b] + p * pstride (as bs_haar_idwt); output bands at o[b] + p * opstride.                          */

BS_API int bs_haar_affine_stats(const float *ll, const float *lh, const float *hl, const float *hh, int64_t P,
                                int64_t h, int64_t w, int64_t pstride, const float *s, const float *b, float eps,
                                float *mean, float *sd, float *amean, int nthreads) {
    if (P < 1 || h < 1 || w < 4 || w % 4 || pstride < h * w || !mean || !sd || !amean) return BS_EINVAL;
    nthreads = useful_threads(nthreads, 16.0 * P * h * w);
#pragma omp parallel for schedule(static) num_threads(nthreads)
    for (int64_t p = 0; p < P; p++) {
        const int64_t q = p * pstride;
        const plane_src src = {NULL, {ll + q, lh + q, hl + q, hh + q}, 4 * h * w, h, w};
        src_moments(&src, s ? s[p] : 1.f, b ? b[p] : 0.f, eps, mean + p, sd + p, amean + p);
    }
    return BS_OK;
}

/* the inverse transform of one 2 x 2 block of band values (lanes of VT, a float vector or float), each
   output calibrated: w * (y * s + b) + y (aff) or w * y + y */
#define HAAR_CALIB_BLOCK(VT, A, B, C, D)                                                                   \
    const VT s1 = (A) + (B), d1 = (A) - (B);                                                              \
    VT y00 = ((s1 + (C)) + (D)) * 0.5f, y01 = ((s1 - (C)) - (D)) * 0.5f;                                  \
    VT y10 = ((d1 + (C)) - (D)) * 0.5f, y11 = ((d1 - (C)) + (D)) * 0.5f;                                  \
    if (aff) {                                                                                            \
        y00 = wt * (y00 * s + b) + y00, y01 = wt * (y01 * s + b) + y01;                                   \
        y10 = wt * (y10 * s + b) + y10, y11 = wt * (y11 * s + b) + y11;                                   \
    } else {                                                                                              \
        y00 = wt * y00 + y00, y01 = wt * y01 + y01, y10 = wt * y10 + y10, y11 = wt * y11 + y11;           \
    }
/* the forward transform of the calibrated block into the band values at index J */
#define HAAR_CALIB_DWT(VT, J)                                                                              \
    {                                                                                                     \
        const VT t1 = y00 + y01, u1 = y00 - y01;                                                          \
        const VT ll = ((t1 + y10) + y11) * 0.5f, lh = ((t1 - y10) - y11) * 0.5f;                          \
        const VT hl = ((u1 + y10) - y11) * 0.5f, hh = ((u1 - y10) + y11) * 0.5f;                          \
        memcpy(oll + (J), &ll, sizeof ll), memcpy(olh + (J), &lh, sizeof lh);                             \
        memcpy(ohl + (J), &hl, sizeof hl), memcpy(ohh + (J), &hh, sizeof hh);                             \
    }

#if BS_X86
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#endif
static void haar_calibrate_row(const float *A, const float *B, const float *C, const float *D, int64_t w, int aff,
                               float s, float b, float wt, float *o0, float *o1, float *oll, float *olh,
                               float *ohl, float *ohh) {
    int64_t j = 0;
    for (; j + 8 <= w; j += 8) {
        if (!(j & 15)) { /* the rows of the bands four rows on (a memory stream each) */
            __builtin_prefetch(A + 4 * w + j), __builtin_prefetch(B + 4 * w + j);
            __builtin_prefetch(C + 4 * w + j), __builtin_prefetch(D + 4 * w + j);
        }
        v8f va, vb, vc, vd;
        memcpy(&va, A + j, sizeof va), memcpy(&vb, B + j, sizeof vb);
        memcpy(&vc, C + j, sizeof vc), memcpy(&vd, D + j, sizeof vd);
        HAAR_CALIB_BLOCK(v8f, va, vb, vc, vd)
        if (o0) { /* even and odd columns interleaved */
            const v8f e0 = __builtin_shufflevector(y00, y01, 0, 8, 1, 9, 2, 10, 3, 11);
            const v8f e1 = __builtin_shufflevector(y00, y01, 4, 12, 5, 13, 6, 14, 7, 15);
            const v8f f0 = __builtin_shufflevector(y10, y11, 0, 8, 1, 9, 2, 10, 3, 11);
            const v8f f1 = __builtin_shufflevector(y10, y11, 4, 12, 5, 13, 6, 14, 7, 15);
            memcpy(o0 + 2 * j, &e0, sizeof e0), memcpy(o0 + 2 * j + 8, &e1, sizeof e1);
            memcpy(o1 + 2 * j, &f0, sizeof f0), memcpy(o1 + 2 * j + 8, &f1, sizeof f1);
        } else
            HAAR_CALIB_DWT(v8f, j)
    }
    for (; j < w; j++) {
        HAAR_CALIB_BLOCK(float, A[j], B[j], C[j], D[j])
        if (o0)
            o0[2 * j] = y00, o0[2 * j + 1] = y01, o1[2 * j] = y10, o1[2 * j + 1] = y11;
        else
            HAAR_CALIB_DWT(float, j)
    }
}

BS_API int bs_haar_calibrate(const float *ll, const float *lh, const float *hl, const float *hh, int64_t P,
                             int64_t h, int64_t w, int64_t pstride, const float *s, const float *b, const float *wt,
                             float *out, float *oll, float *olh, float *ohl, float *ohh, int64_t opstride,
                             int nthreads) {
    if (P < 1 || h < 1 || w < 1 || pstride < h * w || !wt || !s != !b) return BS_EINVAL;
    if (!out && (!oll || !olh || !ohl || !ohh || opstride < h * w)) return BS_EINVAL;
    nthreads = useful_threads(nthreads, 12.0 * P * h * w);
#pragma omp parallel for collapse(2) schedule(static) num_threads(nthreads)
    for (int64_t p = 0; p < P; p++)
        for (int64_t i = 0; i < h; i++) {
            const int64_t q = p * pstride + i * w, r = p * opstride + i * w;
            float *o0 = out ? out + (p * 2 * h + 2 * i) * 2 * w : NULL;
            haar_calibrate_row(ll + q, lh + q, hl + q, hh + q, w, s != NULL, s ? s[p] : 1.f, b ? b[p] : 0.f, wt[p],
                               o0, o0 ? o0 + 2 * w : NULL, out ? NULL : oll + r, out ? NULL : olh + r,
                               out ? NULL : ohl + r, out ? NULL : ohh + r);
        }
    return BS_OK;
}

/* ------------------------------------------------------------------------------------------------ */
/* A minimal module object so that the shared library is an importable extension (entry points are    */
/* called through ctypes, which releases the GIL).                                                  */

static struct PyModuleDef bitkern_module = {PyModuleDef_HEAD_INIT, "_bitkern",
                                            "Bit-packed binary convolution kernels (ctypes entry points).", -1,
                                            NULL, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__bitkern(void) { return PyModule_Create(&bitkern_module); }
