// Cosine similarity on strided matrices: one BLAS product for the dot products, row norms
// computed once, the scaling done in place on the output while it is still in cache.
//
// Header-only and free of Python so the C++ unit tests (tests/cpp) exercise the same code.
#pragma once

#include <algorithm>
#include <atomic>
#include <climits>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "blas.hpp"

// The hot loops are compiled for AVX-512, AVX2 and baseline x86-64; the loader picks one at run
// time, so the built extension stays portable while using the wide vectors where they exist.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define HK_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define HK_CLONES
#endif

namespace harness_kernels {

using idx = std::int64_t;

// A read-only 2-D view: element (i, k) lives at data[i * rs + k * cs] (strides in elements).
template <class T>
struct View {
    const T* data;
    idx rows;
    idx cols;
    idx rs;
    idx cs;
};

// How BLAS sees a view as a row-major operand: `trans` means the view is stored column-major.
struct Layout {
    bool ok;
    bool trans;
    idx ld;
};

// Describe (rows x cols, strides rs/cs) for BLAS without copying; ok=false when impossible.
inline Layout blas_layout(idx rows, idx cols, idx rs, idx cs) {
    const idx bmax = INT_MAX;
    if (rs < 0 || cs < 0) return {false, false, 0};
    // Row-major: unit column stride (any stride works for a single column).
    if ((cs == 1 || cols <= 1) && (rows <= 1 || rs >= std::max<idx>(1, cols))) {
        idx ld = rows <= 1 ? std::max<idx>(1, cols) : rs;
        if (ld <= bmax) return {true, false, ld};
    }
    // Column-major: unit row stride (any stride works for a single row).
    if ((rs == 1 || rows <= 1) && (cols <= 1 || cs >= std::max<idx>(1, rows))) {
        idx ld = cols <= 1 ? std::max<idx>(1, rows) : cs;
        if (ld <= bmax) return {true, true, ld};
    }
    return {false, false, 0};
}

template <class T>
Layout blas_layout(const View<T>& v) {
    return blas_layout(v.rows, v.cols, v.rs, v.cs);
}

// ---------------------------------------------------------------------------------------------
// Vectorized loops (non-template so that target_clones applies; one overload per dtype).

#define HK_DEFINE_LOOPS(T)                                                                       \
    /* out[i] = sum_k x[i, k]^2 for rows with unit column stride. */                            \
    HK_CLONES inline void sumsq_rows(const T* x, idx rows, idx cols, idx rs, T* out) {          \
        for (idx i = 0; i < rows; ++i) {                                                         \
            const T* r = x + i * rs;                                                             \
            T s = 0;                                                                             \
            _Pragma("omp simd reduction(+ : s)") for (idx k = 0; k < cols; ++k) s += r[k] * r[k]; \
            out[i] = s;                                                                          \
        }                                                                                        \
    }                                                                                            \
    /* out[i] = sum_k x[i, k]^2 for columns with unit row stride: sweep column by column. */     \
    HK_CLONES inline void sumsq_cols(const T* x, idx rows, idx cols, idx cs, T* out) {          \
        for (idx i = 0; i < rows; ++i) out[i] = 0;                                               \
        for (idx k = 0; k < cols; ++k) {                                                         \
            const T* c = x + k * cs;                                                             \
            _Pragma("omp simd") for (idx i = 0; i < rows; ++i) out[i] += c[i] * c[i];            \
        }                                                                                        \
    }                                                                                            \
    /* c[i, j] = clip(c[i, j] * ra[i] * rb[j], -1, 1); NaN stays NaN. */                         \
    HK_CLONES inline void scale_clip(T* c, idx rows, idx cols, idx ldc, const T* ra,            \
                                     const T* rb) {                                              \
        for (idx i = 0; i < rows; ++i) {                                                         \
            T* row = c + i * ldc;                                                                \
            const T s = ra[i];                                                                   \
            _Pragma("omp simd") for (idx j = 0; j < cols; ++j) {                                 \
                T v = row[j] * s * rb[j];                                                        \
                v = v > T(1) ? T(1) : v;                                                         \
                v = v < T(-1) ? T(-1) : v;                                                       \
                row[j] = v;                                                                      \
            }                                                                                    \
        }                                                                                        \
    }                                                                                            \
    /* dots[i] = <x_i, q>, sq[i] = |x_i|^2 in one pass over rows with unit column stride. */     \
    HK_CLONES inline void dot_sumsq_rows(const T* x, idx rows, idx cols, idx rs, const T* q,    \
                                         T* dots, T* sq) {                                       \
        for (idx i = 0; i < rows; ++i) {                                                         \
            const T* r = x + i * rs;                                                             \
            T d = 0, s = 0;                                                                      \
            _Pragma("omp simd reduction(+ : d, s)") for (idx k = 0; k < cols; ++k) {             \
                d += r[k] * q[k];                                                                \
                s += r[k] * r[k];                                                                \
            }                                                                                    \
            dots[i] = d;                                                                         \
            sq[i] = s;                                                                           \
        }                                                                                        \
    }                                                                                            \
    /* Row-wise <a_i, b_i>, |a_i|^2, |b_i|^2 for rows with unit column stride. */                \
    HK_CLONES inline void paired_rows(const T* a, idx ars, const T* b, idx brs, idx rows,       \
                                      idx cols, T* dot, T* na, T* nb) {                          \
        for (idx i = 0; i < rows; ++i) {                                                         \
            const T* x = a + i * ars;                                                            \
            const T* y = b + i * brs;                                                            \
            T d = 0, sx = 0, sy = 0;                                                             \
            _Pragma("omp simd reduction(+ : d, sx, sy)") for (idx k = 0; k < cols; ++k) {        \
                d += x[k] * y[k];                                                                \
                sx += x[k] * x[k];                                                               \
                sy += y[k] * y[k];                                                               \
            }                                                                                    \
            dot[i] = d;                                                                          \
            na[i] = sx;                                                                          \
            nb[i] = sy;                                                                          \
        }                                                                                        \
    }                                                                                            \
    /* Same for columns with unit row stride: accumulate column by column into O(rows) sums. */  \
    HK_CLONES inline void paired_cols(const T* a, idx acs, const T* b, idx bcs, idx rows,       \
                                      idx cols, T* dot, T* na, T* nb) {                          \
        for (idx i = 0; i < rows; ++i) dot[i] = na[i] = nb[i] = 0;                               \
        for (idx k = 0; k < cols; ++k) {                                                         \
            const T* x = a + k * acs;                                                            \
            const T* y = b + k * bcs;                                                            \
            _Pragma("omp simd") for (idx i = 0; i < rows; ++i) {                                 \
                dot[i] += x[i] * y[i];                                                           \
                na[i] += x[i] * x[i];                                                            \
                nb[i] += y[i] * y[i];                                                            \
            }                                                                                    \
        }                                                                                        \
    }

HK_DEFINE_LOOPS(float)
HK_DEFINE_LOOPS(double)
#undef HK_DEFINE_LOOPS

// 1/sqrt(s): 0 for a zero vector (cosine 0 with everything), NaN when the row held NaN/inf.
template <class T>
inline T inv_norm(T s) {
    if (s == T(0)) return T(0);
    if (!(s <= std::numeric_limits<T>::max())) return std::numeric_limits<T>::quiet_NaN();
    return T(1) / std::sqrt(s);
}

// out[i] = |v_i|^2 for any layout (BLAS-compatible layouts take the vectorized loops).
template <class T>
void row_sumsq(const View<T>& v, T* out) {
    if (v.cs == 1 || v.cols <= 1) {
        sumsq_rows(v.data, v.rows, v.cols, v.rs, out);
    } else if (v.rs == 1 || v.rows <= 1) {
        sumsq_cols(v.data, v.rows, v.cols, v.cs, out);
    } else {
        for (idx i = 0; i < v.rows; ++i) {
            T s = 0;
            for (idx k = 0; k < v.cols; ++k) {
                const T x = v.data[i * v.rs + k * v.cs];
                s += x * x;
            }
            out[i] = s;
        }
    }
}

template <class T>
void inv_row_norms(const View<T>& v, T* out) {
    row_sumsq(v, out);
    for (idx i = 0; i < v.rows; ++i) out[i] = inv_norm(out[i]);
}

struct Options {
    // Output rows per ?gemm call are chosen so that one block of the output is at most this many
    // bytes: the block is scaled right after BLAS wrote it. 0 means the whole output in one call.
    idx block_bytes = 0;
    // The in-place scaling pass is split over as many threads as OpenBLAS uses once the output
    // has at least this many elements (a memory-bound pass one core cannot saturate). 0: never.
    idx parallel_min_elements = 0;
    // Problems of at most this many multiply-adds (N*M*D) run their ?gemm on the calling thread
    // alone: below it, waking OpenBLAS's threads costs more than they save. 0: never.
    idx serial_max_mnk = 0;
};

// Run fn(r0, r1) over [0, rows) split into `threads` contiguous chunks, the caller taking one.
template <class Fn>
void parallel_rows(idx rows, int threads, Fn fn) {
    if (threads <= 1 || rows < 2) {
        fn(idx(0), rows);
        return;
    }
    const idx chunk = (rows + threads - 1) / threads;
    std::vector<std::thread> pool;
    for (idx r0 = chunk; r0 < rows; r0 += chunk) pool.emplace_back(fn, r0, std::min(rows, r0 + chunk));
    fn(idx(0), std::min(rows, chunk));
    for (auto& t : pool) t.join();
}

// Run fn(r0, r1) over [0, rows) in chunks of `chunk` rows handed out from the LAST chunk down
// to the first, to `threads` threads (the caller being one). BLAS writes the output from its
// first rows to its last, so walking it backwards meets the most recently written rows, still
// in cache, first.
template <class Fn>
void parallel_rows_backwards(idx rows, idx chunk, int threads, Fn fn) {
    const idx chunks = (rows + chunk - 1) / chunk;
    std::atomic<idx> next{chunks - 1};
    auto worker = [&]() {
        for (idx c = next.fetch_sub(1); c >= 0; c = next.fetch_sub(1))
            fn(c * chunk, std::min(rows, (c + 1) * chunk));
    };
    std::vector<std::thread> pool;
    for (int t = 1; t < threads && t < chunks; ++t) pool.emplace_back(worker);
    worker();
    for (auto& t : pool) t.join();
}

// inv_row_norms split over `threads` row ranges (each thread sweeps its rows of any layout).
template <class T>
void inv_row_norms_par(const View<T>& v, T* out, int threads) {
    parallel_rows(v.rows, threads, [&](idx r0, idx r1) {
        inv_row_norms(View<T>{v.data + r0 * v.rs, r1 - r0, v.cols, v.rs, v.cs}, out + r0);
    });
}

inline void check_blas_dim(idx n, const char* what) {
    if (n > INT_MAX)
        throw std::length_error(std::string(what) + " = " + std::to_string(n) +
                                " exceeds the 32-bit BLAS limit");
}

// out (N x M, row stride ldo) = cosine of every row of a with every row of b.
// Extra memory: N + M values. Both views must have a BLAS layout (see blas_layout).
template <class T>
void cosine(const View<T>& a, const View<T>& b, T* out, idx ldo, const Options& opt = {}) {
    if (a.cols != b.cols) throw std::invalid_argument("a and b have different feature sizes");
    const idx n = a.rows, m = b.rows, d = a.cols;
    if (n == 0 || m == 0) return;
    if (d == 0) {  // every vector is empty, hence zero: cosine 0 by definition
        for (idx i = 0; i < n; ++i) std::fill(out + i * ldo, out + i * ldo + m, T(0));
        return;
    }
    const Layout la = blas_layout(a), lb = blas_layout(b);
    if (!la.ok || !lb.ok) throw std::invalid_argument("input strides are not BLAS-compatible");
    check_blas_dim(m, "M");
    check_blas_dim(d, "D");
    check_blas_dim(ldo, "output row stride");

    const bool same = a.data == b.data && n == m && a.rs == b.rs && a.cs == b.cs;
    std::vector<T> norms(same ? n : n + m);
    T* ra = norms.data();
    T* rb = same ? ra : ra + n;
    const bool single = n == 1 || m == 1;
    // With a single vector only its own norm is needed up front (the fused pass does the set).
    auto threads_for = [&](idx elements) {
        return opt.parallel_min_elements > 0 && elements >= opt.parallel_min_elements
                   ? blas::num_threads()
                   : 1;
    };
    if (!single || n == 1) inv_row_norms_par(a, ra, threads_for(n * d));
    if (!same && (!single || n != 1)) inv_row_norms_par(b, rb, threads_for(m * d));

    if (n == 1 || m == 1) {
        // One vector against a set: memory-bound, so one fused pass reads each row of the set
        // once for both its dot product with the vector and its norm (BLAS gemv would need a
        // second pass for the norms), split over OpenBLAS's thread count for large sets.
        const bool query_is_a = n == 1;
        const View<T>& mat = query_is_a ? b : a;
        const View<T>& vec = query_is_a ? a : b;
        const T rq = query_is_a ? ra[0] : rb[0];
        T* rm = query_is_a ? rb : ra;  // filled with the set's squared norms below
        const idx rows = mat.rows;
        const idx step = query_is_a ? 1 : ldo;  // out is C-contiguous (1 x m) or (n x 1)
        std::vector<T> qbuf;
        const T* q = vec.data;
        if (vec.cs != 1 && d > 1) {  // a strided query: gather it once (d values)
            qbuf.resize((size_t)d);
            for (idx k = 0; k < d; ++k) qbuf[(size_t)k] = vec.data[k * vec.cs];
            q = qbuf.data();
        }
        auto work = [&](idx r0, idx r1) {
            std::vector<T> dots;
            T* dst = out + r0 * step;
            if (step != 1) {
                dots.resize((size_t)(r1 - r0));
                dst = dots.data();
            }
            if (mat.cs == 1 || d <= 1) {
                dot_sumsq_rows(mat.data + r0 * mat.rs, r1 - r0, d, mat.rs, q, dst, rm + r0);
            } else {  // column-major set: dot products by columns, then the norms
                for (idx i = r0; i < r1; ++i) dst[i - r0] = 0;
                for (idx k = 0; k < d; ++k) {
                    const T qk = q[k];
                    const T* c = mat.data + k * mat.cs + r0;
                    _Pragma("omp simd") for (idx i = 0; i < r1 - r0; ++i) dst[i] += c[i] * qk;
                }
                row_sumsq(View<T>{mat.data + r0, r1 - r0, d, mat.rs, mat.cs}, rm + r0);
            }
            for (idx i = r0; i < r1; ++i) {
                T v = dst[i - r0] * rq * inv_norm(rm[i]);
                v = v > T(1) ? T(1) : v;
                v = v < T(-1) ? T(-1) : v;
                out[i * step] = v;
            }
        };
        parallel_rows(rows, threads_for(rows * d), work);
        return;
    }

    std::optional<blas::SerialScope> serial;
    if ((double)n * (double)m * (double)d <= (double)opt.serial_max_mnk) serial.emplace();
    idx block = n;
    if (opt.block_bytes > 0)
        block = std::max<idx>(1, opt.block_bytes / (m * (idx)sizeof(T)));
    block = std::min<idx>(block, INT_MAX);
    for (idx i0 = 0; i0 < n; i0 += block) {
        const idx rows = std::min(block, n - i0);
        // Row i0 of a: row-major storage advances by rs per row, column-major by 1 (rs == 1).
        const T* ablk = a.data + i0 * (la.trans ? (idx)1 : a.rs);
        // op(B) must be B^T (d x m): row-major B needs the transpose, column-major B already is.
        blas::gemm(la.trans, !lb.trans, (blas::bint)rows, (blas::bint)m, (blas::bint)d, ablk,
                   (blas::bint)la.ld, b.data, (blas::bint)lb.ld, out + i0 * ldo,
                   (blas::bint)ldo);
        // chunks of about 64 KiB of output: small enough to balance threads, large enough
        // that the atomic hand-out costs nothing
        const idx chunk = std::max<idx>(1, (idx(64) << 10) / (m * (idx)sizeof(T)));
        parallel_rows_backwards(rows, chunk, threads_for(rows * m), [&](idx r0, idx r1) {
            scale_clip(out + (i0 + r0) * ldo, r1 - r0, m, ldo, ra + i0 + r0, rb);
        });
    }
}

// out[i] = cosine(a_i, b_i) for two views of the same shape (any non-negative strides).
template <class T>
void paired_cosine(const View<T>& a, const View<T>& b, T* out) {
    if (a.rows != b.rows || a.cols != b.cols)
        throw std::invalid_argument("a and b have different shapes");
    const idx n = a.rows, d = a.cols;
    if (n == 0) return;
    std::vector<T> buf(2 * (size_t)n);
    T* na = buf.data();
    T* nb = na + n;
    const bool rows_unit = (a.cs == 1 || d <= 1) && (b.cs == 1 || d <= 1);
    const bool cols_unit = (a.rs == 1 || n <= 1) && (b.rs == 1 || n <= 1);
    if (rows_unit) {
        paired_rows(a.data, a.rs, b.data, b.rs, n, d, out, na, nb);
    } else if (cols_unit) {
        paired_cols(a.data, a.cs, b.data, b.cs, n, d, out, na, nb);
    } else {
        for (idx i = 0; i < n; ++i) {
            T dd = 0, sx = 0, sy = 0;
            for (idx k = 0; k < d; ++k) {
                const T x = a.data[i * a.rs + k * a.cs], y = b.data[i * b.rs + k * b.cs];
                dd += x * y;
                sx += x * x;
                sy += y * y;
            }
            out[i] = dd;
            na[i] = sx;
            nb[i] = sy;
        }
    }
    for (idx i = 0; i < n; ++i) {
        T v = out[i] * inv_norm(na[i]) * inv_norm(nb[i]);
        v = v > T(1) ? T(1) : v;
        v = v < T(-1) ? T(-1) : v;
        out[i] = v;
    }
}

}  // namespace harness_kernels
