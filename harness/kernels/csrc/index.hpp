// Exact cosine top-k against a prepared set: the set is normalised once and stored row-major in
// a 64-byte aligned buffer (float32, or float16 with float32 accumulation), each row padded with
// zeros to a multiple of 16 elements so the dot loops need no remainder. Searches stream the set
// in blocks and keep a k-best selection per query and thread; the N x M matrix is never formed.
//
// Header-only and free of Python so the C++ unit tests (tests/cpp) exercise the same code.
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define HK_X86 1
#endif
#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "blas.hpp"
#include "cosine.hpp"

namespace harness_kernels {

// ---------------------------------------------------------------------------------------------
// float16 <-> float32 in software (round to nearest even): the portable path and the oracle the
// C++ tests check the hardware conversions against.

inline std::uint16_t float_to_half(float f) {
    std::uint32_t x;
    std::memcpy(&x, &f, 4);
    const std::uint32_t sign = (x >> 16) & 0x8000u;
    const std::uint32_t mag = x & 0x7fffffffu;
    if (mag >= 0x7f800000u)  // inf or NaN (NaN keeps a set quiet bit)
        return (std::uint16_t)(sign | 0x7c00u | (mag > 0x7f800000u ? 0x200u : 0u));
    if (mag >= 0x477ff000u) return (std::uint16_t)(sign | 0x7c00u);  // rounds to >= 65520: inf
    if (mag < 0x38800000u) {  // below the smallest normal half: subnormal or zero
        if (mag < 0x33000000u) return (std::uint16_t)sign;  // below half the smallest subnormal
        const std::uint32_t m = (mag & 0x7fffffu) | 0x800000u;
        // value = m * 2^(e - 150) = h * 2^-24, so h = m >> (126 - e), 14 <= 126 - e <= 24
        const int s = 126 - (int)(mag >> 23);
        std::uint32_t h = m >> s;
        const std::uint32_t rem = m & ((1u << s) - 1), halfway = 1u << (s - 1);
        if (rem > halfway || (rem == halfway && (h & 1u))) ++h;
        return (std::uint16_t)(sign | h);
    }
    std::uint32_t h = ((mag - 0x38000000u) >> 13);  // rebias 127 -> 15, drop 13 bits
    const std::uint32_t rem = mag & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;
    return (std::uint16_t)(sign | h);
}

inline float half_to_float(std::uint16_t h) {
    const std::uint32_t sign = (std::uint32_t)(h & 0x8000u) << 16;
    const std::uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    std::uint32_t x;
    if (e == 0) {
        if (m == 0) {
            x = sign;
        } else {  // subnormal: value m * 2^-24
            const float v = (float)m * 5.9604644775390625e-8f;
            std::memcpy(&x, &v, 4);
            x |= sign;
        }
    } else if (e == 31) {
        x = sign | 0x7f800000u | (m << 13);
    } else {
        x = sign | ((e + 112u) << 23) | (m << 13);
    }
    float f;
    std::memcpy(&f, &x, 4);
    return f;
}

// ---------------------------------------------------------------------------------------------
// Dot products of (padded, normalised) queries with stored rows: out[j * ldo + i] = <q_j, x_i>
// for j < nq, i < nr; queries `qs` floats apart, rows `stride` elements apart, `d` (a multiple of
// 16) long. Every (query, row) sum is formed the same way whatever the batch, block, thread or
// position: one 16-lane accumulator over k in order, then the same lane reduction. Equal rows
// thus give bit-equal scores (ties are broken by id, deterministically), and a query's results
// do not depend on the other queries searched with it.

template <class T>
using BlockDots = void (*)(const float* q, idx nq, idx qs, const T* x, idx nr, idx stride, idx d,
                           float* out, idx ldo);

inline float to_f32(float v) { return v; }
inline float to_f32(std::uint16_t v) { return half_to_float(v); }

template <class T>
void block_dots_scalar(const float* q, idx nq, idx qs, const T* x, idx nr, idx stride, idx d,
                       float* out, idx ldo) {
    for (idx j = 0; j < nq; ++j)
        for (idx i = 0; i < nr; ++i) {
            const float* qj = q + j * qs;
            const T* r = x + i * stride;
            float lanes[16] = {0};
            for (idx k = 0; k < d; k += 16)
                for (int l = 0; l < 16; ++l) lanes[l] += to_f32(r[k + l]) * qj[k + l];
            float sum = 0;
            for (int l = 0; l < 16; ++l) sum += lanes[l];
            out[j * ldo + i] = sum;
        }
}

#if defined(HK_X86)
// GCC 12 reports its own _mm512_reduce_add_ps (an "undefined" upper half it never reads) as
// uninitialized under -Wall: a false positive, silenced for these loops only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#define HK_LOAD512_F32(p) _mm512_load_ps(p)
#define HK_LOAD512_F16(p) _mm512_cvtph_ps(_mm256_load_si256((const __m256i*)(p)))
#define HK_LOAD256_F32(p) _mm256_load_ps(p)
#define HK_LOAD256_F16(p) _mm256_cvtph_ps(_mm_load_si128((const __m128i*)(p)))

// Software prefetch of the row kPrefetchAhead bytes past the one being read. A one-query scan
// does so little arithmetic per byte that a core waits on memory: on the Intel Xeon host
// (105 MiB L3) the hardware prefetchers alone left float16 at 18 GB/s against float32's 23
// (1 x 1M x 384: f16 47 ms, f32 72-77 ms, 1.54-1.65x), and with this 4 KiB look-ahead f16
// took 30-38 ms and f32 58-72 ms (1.8-2.1x; 2, 3, 4, 6 and 8 KiB tried, 3-4 KiB best).
// Prefetches never fault, so the look-ahead may run past the block (the address is computed
// as an integer).
constexpr std::uintptr_t kPrefetchAhead = 4096;
template <class T>
inline void prefetch_row(const T* row, idx stride) {
    const std::uintptr_t a = reinterpret_cast<std::uintptr_t>(row) + kPrefetchAhead;
    const std::uintptr_t bytes = (std::uintptr_t)stride * sizeof(T);
    for (std::uintptr_t b = 0; b < bytes; b += 64)
        _mm_prefetch(reinterpret_cast<const char*>(a + b), _MM_HINT_T0);
}

// An R rows x Q queries register tile: each step loads R row chunks and Q query chunks for
// R * Q independent pairs. Each pair sums into two accumulators, even and odd 16-element chunks
// (one chain of dependent FMAs made a float16 row, which also pays the conversion, latency
// bound at ~85 cycles per 384 elements), added at the end. Only R = 1 is used: one row read
// front to back ran at the speed of a plain sum, where tiles of two rows ran 2.4x slower for
// one query (6 vs 14 ms for 100,000 x 384 on one core) and no faster for 64 (1 x 4 reached
// 61-66 GFLOP/s on one core, 2 x 4 36-71, 1 x 8 41-49, with other processes loading the
// machine; OpenBLAS sgemm reached 28-34 there).
#define HK_TILE_AVX512(NAME, TYPE, LOAD)                                                          \
    template <int R, int Q>                                                                      \
    __attribute__((target("avx512f,f16c,fma"))) inline void NAME(                                \
        const float* q, idx qs, const TYPE* x, idx stride, idx d, float* out, idx ldo) {         \
        __m512 acc[R][Q][2];                                                                     \
        for (int r = 0; r < R; ++r)                                                              \
            for (int j = 0; j < Q; ++j) acc[r][j][0] = acc[r][j][1] = _mm512_setzero_ps();       \
        idx k = 0;                                                                               \
        for (; k + 32 <= d; k += 32)                                                             \
            for (int h = 0; h < 2; ++h) {                                                        \
                __m512 xr[R];                                                                    \
                for (int r = 0; r < R; ++r) xr[r] = LOAD(x + r * stride + k + 16 * h);           \
                for (int j = 0; j < Q; ++j) {                                                    \
                    const __m512 qj = _mm512_load_ps(q + j * qs + k + 16 * h);                   \
                    for (int r = 0; r < R; ++r)                                                  \
                        acc[r][j][h] = _mm512_fmadd_ps(xr[r], qj, acc[r][j][h]);                 \
                }                                                                                \
            }                                                                                    \
        if (k < d) { /* d is a multiple of 16: one chunk left, into the even accumulator */      \
            __m512 xr[R];                                                                        \
            for (int r = 0; r < R; ++r) xr[r] = LOAD(x + r * stride + k);                        \
            for (int j = 0; j < Q; ++j) {                                                        \
                const __m512 qj = _mm512_load_ps(q + j * qs + k);                                \
                for (int r = 0; r < R; ++r)                                                      \
                    acc[r][j][0] = _mm512_fmadd_ps(xr[r], qj, acc[r][j][0]);                     \
            }                                                                                    \
        }                                                                                        \
        for (int j = 0; j < Q; ++j)                                                              \
            for (int r = 0; r < R; ++r)                                                          \
                out[j * ldo + r] =                                                               \
                    _mm512_reduce_add_ps(_mm512_add_ps(acc[r][j][0], acc[r][j][1]));             \
    }
HK_TILE_AVX512(tile_f32_avx512, float, HK_LOAD512_F32)
HK_TILE_AVX512(tile_f16_avx512, std::uint16_t, HK_LOAD512_F16)
#undef HK_TILE_AVX512

// Rows [0, nr) against Q queries, one row at a time (see the tile above).
template <int Q, class T, class Tile>
inline void rows_avx512(Tile tile, const float* q, idx qs, const T* x, idx nr, idx stride, idx d,
                        float* out, idx ldo) {
    for (idx i = 0; i < nr; ++i) {
        prefetch_row(x + i * stride, stride);
        tile(q, qs, x + i * stride, stride, d, out + i, ldo);
    }
}

#define HK_BLOCK_AVX512(NAME, TYPE, TILE)                                                         \
    template <int Q>                                                                             \
    __attribute__((target("avx512f,f16c,fma"))) inline void NAME##_q(                            \
        const float* q, idx qs, const TYPE* x, idx nr, idx stride, idx d, float* out, idx ldo) { \
        rows_avx512<Q, TYPE>(TILE<1, Q>, q, qs, x, nr, stride, d, out, ldo);                     \
    }                                                                                            \
    __attribute__((target("avx512f,f16c,fma"))) inline void NAME(                                \
        const float* q, idx nq, idx qs, const TYPE* x, idx nr, idx stride, idx d, float* out,    \
        idx ldo) {                                                                               \
        idx j = 0;                                                                               \
        for (; j + 4 <= nq; j += 4) /* 4 queries x 2 accumulators, 2 row loads per 8 FMAs */     \
            NAME##_q<4>(q + j * qs, qs, x, nr, stride, d, out + j * ldo, ldo);                   \
        const float* qr = q + j * qs;                                                            \
        float* o = out + j * ldo;                                                                \
        switch (nq - j) {                                                                        \
            case 3: NAME##_q<3>(qr, qs, x, nr, stride, d, o, ldo); break;                        \
            case 2: NAME##_q<2>(qr, qs, x, nr, stride, d, o, ldo); break;                        \
            case 1: NAME##_q<1>(qr, qs, x, nr, stride, d, o, ldo); break;                        \
            default: break;                                                                      \
        }                                                                                        \
    }
HK_BLOCK_AVX512(block_dots_f32_avx512, float, tile_f32_avx512)
HK_BLOCK_AVX512(block_dots_f16_avx512, std::uint16_t, tile_f16_avx512)
#undef HK_BLOCK_AVX512

// AVX2: per pair, two 8-lane accumulators (the low and high half of each 16-element chunk),
// summed lane by lane; no register blocking (machines without AVX-512 get correct, slower
// many-query searches).
#define HK_BLOCK_AVX2(NAME, TYPE, LOAD)                                                           \
    __attribute__((target("avx2,f16c,fma"))) inline void NAME(                                   \
        const float* q, idx nq, idx qs, const TYPE* x, idx nr, idx stride, idx d, float* out,    \
        idx ldo) {                                                                               \
        for (idx j = 0; j < nq; ++j)                                                             \
            for (idx i = 0; i < nr; ++i) {                                                       \
                const TYPE* r = x + i * stride;                                                  \
                if (j == 0) prefetch_row(r, stride);                                             \
                const float* qj = q + j * qs;                                                    \
                __m256 lo = _mm256_setzero_ps(), hi = lo;                                        \
                for (idx k = 0; k < d; k += 16) {                                                \
                    lo = _mm256_fmadd_ps(LOAD(r + k), _mm256_load_ps(qj + k), lo);               \
                    hi = _mm256_fmadd_ps(LOAD(r + k + 8), _mm256_load_ps(qj + k + 8), hi);       \
                }                                                                                \
                alignas(32) float l[16];                                                         \
                _mm256_store_ps(l, lo);                                                          \
                _mm256_store_ps(l + 8, hi);                                                      \
                float sum = 0;                                                                   \
                for (int m = 0; m < 16; ++m) sum += l[m];                                        \
                out[j * ldo + i] = sum;                                                          \
            }                                                                                    \
    }
HK_BLOCK_AVX2(block_dots_f32_avx2, float, HK_LOAD256_F32)
HK_BLOCK_AVX2(block_dots_f16_avx2, std::uint16_t, HK_LOAD256_F16)
#undef HK_BLOCK_AVX2

__attribute__((target("f16c"))) inline void f32_to_half_f16c(const float* src, idx n,
                                                            std::uint16_t* dst) {
    idx i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i*)(dst + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; ++i) dst[i] = float_to_half(src[i]);
}
#pragma GCC diagnostic pop
#endif

// The instruction set the dot loops use: "avx512", "avx2" or "scalar" (chosen once, at load;
// HARNESS_KERNELS_ISA=avx2|scalar forces a narrower one, for tests).
struct Isa {
    BlockDots<float> dots_f32 = block_dots_scalar<float>;
    BlockDots<std::uint16_t> dots_f16 = block_dots_scalar<std::uint16_t>;
    bool f16c = false;
    const char* name = "scalar";

    static Isa detect(const char* force = nullptr) {
        Isa s;
#if defined(HK_X86)
        const std::string want = force ? force : "";
        const bool f16c = __builtin_cpu_supports("f16c") && __builtin_cpu_supports("fma");
        if (want == "scalar") return s;
        if ((want.empty() || want == "avx512") && __builtin_cpu_supports("avx512f") && f16c)
            return {block_dots_f32_avx512, block_dots_f16_avx512, true, "avx512"};
        if (__builtin_cpu_supports("avx2") && f16c)
            return {block_dots_f32_avx2, block_dots_f16_avx2, true, "avx2"};
#else
        (void)force;
#endif
        return s;
    }
};

inline const Isa& isa() {
    static const Isa s = Isa::detect(std::getenv("HARNESS_KERNELS_ISA"));
    return s;
}

inline void f32_to_half(const float* src, idx n, std::uint16_t* dst) {
#if defined(HK_X86)
    if (isa().f16c) return f32_to_half_f16c(src, n, dst);
#endif
    for (idx i = 0; i < n; ++i) dst[i] = float_to_half(src[i]);
}

// ---------------------------------------------------------------------------------------------
// Memory.

// A 64-byte aligned, zero-initialised byte buffer; large ones ask the kernel for huge pages
// (fewer TLB misses while streaming a set of gigabytes).
class AlignedBuffer {
  public:
    AlignedBuffer() = default;
    explicit AlignedBuffer(std::size_t bytes) : bytes_(bytes) {
        if (bytes == 0) return;
        const std::size_t align = bytes >= (std::size_t(4) << 20) ? (std::size_t(2) << 20) : 64;
        const std::size_t rounded = (bytes + align - 1) / align * align;
        void* p = std::aligned_alloc(align, rounded);
        if (!p) throw std::bad_alloc();
#if defined(__linux__) && defined(MADV_HUGEPAGE)
        if (align > 64) madvise(p, rounded, MADV_HUGEPAGE);
#endif
        std::memset(p, 0, rounded);
        ptr_.reset(static_cast<unsigned char*>(p));
    }
    unsigned char* data() const { return ptr_.get(); }
    std::size_t size() const { return bytes_; }

  private:
    struct Free {
        void operator()(unsigned char* p) const { std::free(p); }
    };
    std::unique_ptr<unsigned char, Free> ptr_;
    std::size_t bytes_ = 0;
};

template <class T>
T* aligned_as(AlignedBuffer& b) {
    return reinterpret_cast<T*>(b.data());
}

inline idx padded_dim(idx d) { return (d + 15) / 16 * 16; }

// Rows of `v` (any strides), each scaled to unit length (norm summed in float64; a zero row
// stays zero, a row holding NaN/inf becomes all NaN), written as float32 into `dst` (row stride
// `stride`, padding left as is).
template <class T>
void normalise_rows(const View<T>& v, float* dst, idx stride) {
    for (idx i = 0; i < v.rows; ++i) {
        double s = 0;
        for (idx k = 0; k < v.cols; ++k) {
            const double x = (double)v.data[i * v.rs + k * v.cs];
            s += x * x;
        }
        const double inv = inv_norm(s);
        float* o = dst + i * stride;
        for (idx k = 0; k < v.cols; ++k) o[k] = (float)((double)v.data[i * v.rs + k * v.cs] * inv);
    }
}

// ---------------------------------------------------------------------------------------------
// Top-k selection.

struct Hit {
    float key;  // the score, NaN mapped to -inf so that it ranks below every number
    std::int64_t id;
};

// a ranks before b: higher score first, the smaller id on equal scores.
inline bool ranks_before(const Hit& a, const Hit& b) {
    return a.key > b.key || (a.key == b.key && a.id < b.id);
}

inline float rank_key(float s) { return s == s ? s : -std::numeric_limits<float>::infinity(); }

// Scores clipped to [-1, 1] as cosine_similarity reports them; NaN stays NaN.
inline float clip_score(float s) { return s > 1.0f ? 1.0f : (s < -1.0f ? -1.0f : s); }

// The k best (score, id) seen so far, for ids offered in increasing order: the worst kept hit
// is at the front of a heap, and a new score needs to beat it strictly (an equal score comes
// with a larger id, which ranks after).
class TopK {
  public:
    explicit TopK(idx k = 0) : k_(k) { heap_.reserve((std::size_t)k); }

    // Offer scores[i] with ids first_id + i (increasing). Scores are clipped here.
    void offer(const float* scores, idx n, std::int64_t first_id) {
        idx i = 0;
        for (; i < n && (idx)heap_.size() < k_; ++i) {
            heap_.push_back({rank_key(clip_score(scores[i])), first_id + i});
            std::push_heap(heap_.begin(), heap_.end(), ranks_before);
        }
        if (i == n) return;
        float thr = heap_.front().key;
        // Past the first blocks almost no score enters: one vectorised pass says so, instead of
        // a compare and branch per score. With thr a clipped score (>= -1; -inf only while a
        // NaN is kept), s > thr holds whenever the loop's clip_score(s) > thr does, so a block
        // it rejects is one the loop would leave unchanged.
        if (thr >= -1.0f) {
            const float* sc = scores + i;
            const idx len = n - i;
            int enters = 0;
            _Pragma("omp simd reduction(| : enters)") for (idx j = 0; j < len; ++j) enters |=
                sc[j] > thr ? 1 : 0;
            if (!enters) return;
        }
        for (; i < n; ++i) {
            const float s = clip_score(scores[i]);
            if (s > thr) {  // false for NaN: a NaN never displaces a kept hit
                std::pop_heap(heap_.begin(), heap_.end(), ranks_before);
                heap_.back() = {s, first_id + i};
                std::push_heap(heap_.begin(), heap_.end(), ranks_before);
                thr = heap_.front().key;
            }
        }
    }

    const std::vector<Hit>& hits() const { return heap_; }

  private:
    idx k_;
    std::vector<Hit> heap_;
};

// The k best of several partial selections, best first; scores -inf (from NaN) back to NaN.
inline void merge_topk(const std::vector<const TopK*>& parts, idx k, float* scores,
                       std::int64_t* ids) {
    std::vector<Hit> all;
    for (const TopK* p : parts) all.insert(all.end(), p->hits().begin(), p->hits().end());
    const idx take = std::min<idx>(k, (idx)all.size());
    std::partial_sort(all.begin(), all.begin() + take, all.end(), ranks_before);
    for (idx j = 0; j < take; ++j) {
        const bool nan = all[(size_t)j].key == -std::numeric_limits<float>::infinity();
        scores[j] = nan ? std::numeric_limits<float>::quiet_NaN() : all[(size_t)j].key;
        ids[j] = all[(size_t)j].id;
    }
    for (idx j = take; j < k; ++j) {  // only when the set has fewer than k rows
        scores[j] = std::numeric_limits<float>::quiet_NaN();
        ids[j] = -1;
    }
}

// ---------------------------------------------------------------------------------------------
// Threads.

// fn(t, lo, hi) over [0, n) in chunks of `chunk`, handed out in increasing order to `threads`
// threads (the caller is thread 0, the others start per call). Each thread meets its chunks in
// increasing order (what TopK needs). Claimed, not pre-split: with fixed halves a single-query
// scan waits for a thread that starts late or is preempted by another process (this VM's two
// cores are shared), where one thread alone nearly saturates memory; here the running thread
// takes the chunks the other has not claimed yet.
template <class Fn>
void parallel_chunks(idx n, idx chunk, int threads, Fn&& fn) {
    chunk = std::max<idx>(1, chunk);
    const idx chunks = (n + chunk - 1) / chunk;
    threads = (int)std::max<idx>(1, std::min<idx>(threads, chunks));
    std::atomic<idx> next{0};
    auto worker = [&](int t) {
        for (idx c = next.fetch_add(1, std::memory_order_relaxed); c < chunks;
             c = next.fetch_add(1, std::memory_order_relaxed))
            fn(t, c * chunk, std::min(n, (c + 1) * chunk));
    };
    std::vector<std::thread> pool;
    for (int t = 1; t < threads; ++t) pool.emplace_back(worker, t);
    worker(0);
    for (auto& th : pool) th.join();
}

// ---------------------------------------------------------------------------------------------
// The index.

struct SearchOptions {
    // Rows per block: each block of the set meets every query while it is in cache (64 rows of
    // 384 float32 are 96 KiB, in L2), and its scores go to the top-k selection.
    idx block_rows = 64;
    idx query_block = 64;  // queries per pass over a block (bounds the scores scratch)
    // Work (queries x rows x dim multiply-adds) from which the set is split over `threads`.
    idx parallel_min_work = idx(1) << 24;
    // Rows a thread claims at a time (see parallel_chunks); rounded up to whole blocks.
    idx chunk_rows = 1024;
    int threads = 0;  // 0: OpenBLAS's thread count (the cores)
};

enum class Storage { f32, f16 };

class CosineIndex {
  public:
    CosineIndex(idx dim, Storage storage) : dim_(dim), stride_(padded_dim(dim)), storage_(storage) {
        if (dim <= 0) throw std::invalid_argument("the vector size D must be positive");
        check_blas_dim(stride_, "D");
    }

    idx size() const { return rows_; }
    idx dim() const { return dim_; }
    idx stride() const { return stride_; }
    Storage storage() const { return storage_; }
    std::size_t elem_bytes() const { return storage_ == Storage::f32 ? 4 : 2; }
    std::size_t nbytes() const { return (std::size_t)rows_ * (std::size_t)stride_ * elem_bytes(); }
    const void* data() const { return buf_.data(); }

    // Append the rows of `v` (D columns, any strides), normalised.
    template <class T>
    void add(const View<T>& v) {
        if (v.cols != dim_)
            throw std::invalid_argument("vectors have " + std::to_string(v.cols) +
                                        " columns; the index holds D = " + std::to_string(dim_));
        std::unique_lock<std::shared_mutex> lock(mu_);
        reserve(rows_ + v.rows);
        const std::size_t eb = elem_bytes();
        unsigned char* base = buf_.data() + (std::size_t)rows_ * (std::size_t)stride_ * eb;
        if (storage_ == Storage::f32) {
            normalise_rows(v, reinterpret_cast<float*>(base), stride_);
        } else {  // normalise in float32 a block at a time, then round to float16
            const idx blk = 256;
            std::vector<float> tmp((size_t)(blk * stride_), 0.0f);
            auto* dst = reinterpret_cast<std::uint16_t*>(base);
            for (idx r0 = 0; r0 < v.rows; r0 += blk) {
                const idx n = std::min(blk, v.rows - r0);
                normalise_rows(View<T>{v.data + r0 * v.rs, n, v.cols, v.rs, v.cs}, tmp.data(),
                               stride_);
                f32_to_half(tmp.data(), n * stride_, dst + r0 * stride_);
            }
        }
        rows_ += v.rows;
    }

    // Normalised, padded float32 copies of the queries (n x stride).
    template <class T>
    AlignedBuffer prepare_queries(const View<T>& q) const {
        if (q.cols != dim_)
            throw std::invalid_argument("queries have " + std::to_string(q.cols) +
                                        " columns; the index holds D = " + std::to_string(dim_));
        AlignedBuffer b((std::size_t)q.rows * (std::size_t)stride_ * 4);
        normalise_rows(q, aligned_as<float>(b), stride_);
        return b;
    }

    // scores/ids (n x k, row-major): the k best rows per query, best first (see TopK).
    template <class T>
    void search(const View<T>& q, idx k, float* scores, std::int64_t* ids,
                const SearchOptions& opt = {}) const {
        if (k <= 0) throw std::invalid_argument("k must be positive");
        AlignedBuffer qb = prepare_queries(q);
        std::shared_lock<std::shared_mutex> lock(mu_);
        if (k > rows_)
            throw std::invalid_argument("k = " + std::to_string(k) + " exceeds the " +
                                        std::to_string(rows_) + " vectors of the index");
        const idx n = q.rows;
        const int threads = plan_threads(n, opt);
        std::vector<std::vector<TopK>> sel((size_t)threads, std::vector<TopK>((size_t)n, TopK(k)));
        scan(aligned_as<float>(qb), n, threads, opt,
             [&](int t, idx q0, idx nq, idx r0, idx nr, const float* s, idx lds) {
                 for (idx j = 0; j < nq; ++j)
                     sel[(size_t)t][(size_t)(q0 + j)].offer(s + j * lds, nr, r0);
             });
        std::vector<const TopK*> parts((size_t)threads);
        for (idx j = 0; j < n; ++j) {
            for (int t = 0; t < threads; ++t) parts[(size_t)t] = &sel[(size_t)t][(size_t)j];
            merge_topk(parts, k, scores + j * k, ids + j * k);
        }
    }

    // out (n x size(), row stride ldo) = cosine of every query with every stored row, clipped.
    template <class T>
    void similarity(const View<T>& q, float* out, idx ldo, const SearchOptions& opt = {}) const {
        AlignedBuffer qb = prepare_queries(q);
        std::shared_lock<std::shared_mutex> lock(mu_);
        scan(aligned_as<float>(qb), q.rows, plan_threads(q.rows, opt), opt,
             [&](int, idx q0, idx nq, idx r0, idx nr, const float* s, idx lds) {
                 for (idx j = 0; j < nq; ++j) {
                     float* o = out + (q0 + j) * ldo + r0;
                     const float* src = s + j * lds;
                     for (idx i = 0; i < nr; ++i) o[i] = clip_score(src[i]);
                 }
             });
    }

    // Threads a search of n queries would use (1 below opt.parallel_min_work).
    int plan_threads(idx n, const SearchOptions& opt) const {
        const int t = opt.threads > 0 ? opt.threads : std::max(1, blas::num_threads());
        const double work = (double)n * (double)rows_ * (double)dim_;
        if (t <= 1 || work < (double)opt.parallel_min_work || rows_ < 2 * t) return 1;
        return t;
    }

  private:
    void reserve(idx rows) {
        if (rows <= cap_) return;
        const idx cap = std::max<idx>(rows, cap_ + cap_ / 2);
        AlignedBuffer nb((std::size_t)cap * (std::size_t)stride_ * elem_bytes());
        if (rows_ > 0) std::memcpy(nb.data(), buf_.data(), nbytes());
        buf_ = std::move(nb);
        cap_ = cap;
    }

    // Feed fn(thread, q0, nq, r0, nr, scores, lds) with the raw dot products of queries
    // [q0, q0 + nq) and rows [r0, r0 + nr): `threads` threads claim chunks of opt.chunk_rows
    // rows (parallel_chunks) and stream each in blocks of rows; each block meets every query
    // (in groups of query_block) while it is in cache. Within a thread rows arrive in
    // increasing order. Scratch: query_block x block_rows floats per thread.
    template <class Fn>
    void scan(const float* qn, idx n, int threads, const SearchOptions& opt, Fn&& fn) const {
        if (n == 0 || rows_ == 0) return;
        const idx blk = std::max<idx>(1, opt.block_rows);
        const idx qblk = std::max<idx>(1, opt.query_block);
        const idx chunk = std::max<idx>(1, (opt.chunk_rows + blk - 1) / blk) * blk;
        std::vector<std::vector<float>> scratch((size_t)threads);
        parallel_chunks(rows_, chunk, threads, [&](int t, idx lo, idx hi) {
            std::vector<float>& s = scratch[(size_t)t];  // this thread's alone
            if (s.empty()) s.resize((size_t)(std::min(n, qblk) * blk));
            for (idx r0 = lo; r0 < hi; r0 += blk) {
                const idx nr = std::min(blk, hi - r0);
                for (idx q0 = 0; q0 < n; q0 += qblk) {
                    const idx nq = std::min(qblk, n - q0);
                    const float* qp = qn + q0 * stride_;
                    if (storage_ == Storage::f32)
                        isa().dots_f32(qp, nq, stride_, rows_f32() + r0 * stride_, nr, stride_,
                                       stride_, s.data(), nr);
                    else
                        isa().dots_f16(qp, nq, stride_, rows_f16() + r0 * stride_, nr, stride_,
                                       stride_, s.data(), nr);
                    fn(t, q0, nq, r0, nr, s.data(), nr);
                }
            }
        });
    }

    const float* rows_f32() const { return reinterpret_cast<const float*>(buf_.data()); }
    const std::uint16_t* rows_f16() const {
        return reinterpret_cast<const std::uint16_t*>(buf_.data());
    }

    idx dim_;
    idx stride_;
    Storage storage_;
    idx rows_ = 0;
    idx cap_ = 0;
    AlignedBuffer buf_;
    mutable std::shared_mutex mu_;  // searches share it; add() takes it alone (it may move buf_)
};

// Sum of n floats read by `threads` threads claiming chunks of `chunk` floats, as a search claims
// its rows (parallel_chunks): a streaming read of the same kind a single-query search does, to
// measure the memory bandwidth the search is bound by.
inline double stream_sum(const float* x, idx n, int threads, idx chunk) {
    threads = std::max(1, threads);
    std::vector<double> part((size_t)threads, 0.0);
    parallel_chunks(n, chunk, threads, [&](int t, idx r0, idx r1) {
        float acc[16] = {0};
        idx i = r0;
        for (; i + 16 <= r1; i += 16) {
#if defined(HK_X86)
            // the search's look-ahead (prefetch_row): the bound reads no slower than a search
            _mm_prefetch(reinterpret_cast<const char*>(
                             reinterpret_cast<std::uintptr_t>(x + i) + kPrefetchAhead),
                         _MM_HINT_T0);
#endif
            _Pragma("omp simd") for (int l = 0; l < 16; ++l) acc[l] += x[i + l];
        }
        double s = 0;
        for (; i < r1; ++i) s += x[i];
        for (int l = 0; l < 16; ++l) s += acc[l];
        part[(size_t)t] += s;
    });
    double s = 0;
    for (double p : part) s += p;
    return s;
}

}  // namespace harness_kernels
