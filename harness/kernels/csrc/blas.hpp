// Thin C++ overloads over the CBLAS routines the kernel needs, for whichever OpenBLAS the build
// chose: the scipy-openblas32 wheel (symbols prefixed `scipy_`) or the system's libopenblas.
#pragma once

#include <cblas.h>

#include <mutex>

#if defined(HARNESS_BLAS_SCIPY)
#define HK_CBLAS(name) scipy_cblas_##name
#define HK_OPENBLAS(name) scipy_openblas_##name
#else
#define HK_CBLAS(name) cblas_##name
#define HK_OPENBLAS(name) openblas_##name
#endif

namespace harness_kernels::blas {

// 32-bit BLAS integers: callers check that every dimension and leading dimension fits.
using bint = blasint;

inline CBLAS_TRANSPOSE tr(bool t) { return t ? CblasTrans : CblasNoTrans; }

// C (m x n, row-major, ldc) = op(A) (m x k) * op(B) (k x n), all row-major descriptions.
inline void gemm(bool ta, bool tb, bint m, bint n, bint k, const float* a, bint lda,
                 const float* b, bint ldb, float* c, bint ldc) {
    HK_CBLAS(sgemm)(CblasRowMajor, tr(ta), tr(tb), m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c, ldc);
}
inline void gemm(bool ta, bool tb, bint m, bint n, bint k, const double* a, bint lda,
                 const double* b, bint ldb, double* c, bint ldc) {
    HK_CBLAS(dgemm)(CblasRowMajor, tr(ta), tr(tb), m, n, k, 1.0, a, lda, b, ldb, 0.0, c, ldc);
}

// y (incy) = op(A) * x (incx), A described row-major (rows x cols, lda).
inline void gemv(bool ta, bint rows, bint cols, const float* a, bint lda, const float* x,
                 bint incx, float* y, bint incy) {
    HK_CBLAS(sgemv)(CblasRowMajor, tr(ta), rows, cols, 1.0f, a, lda, x, incx, 0.0f, y, incy);
}
inline void gemv(bool ta, bint rows, bint cols, const double* a, bint lda, const double* x,
                 bint incx, double* y, bint incy) {
    HK_CBLAS(dgemv)(CblasRowMajor, tr(ta), rows, cols, 1.0, a, lda, x, incx, 0.0, y, incy);
}

inline int num_threads() { return HK_OPENBLAS(get_num_threads)(); }
inline const char* config() { return HK_OPENBLAS(get_config)(); }

// While at least one SerialScope lives, the library runs every call on its caller's thread.
// OpenBLAS's thread count is process-wide (this OpenBLAS has no thread-local setting), so the
// first scope in saves and lowers it and the last one out restores it; calls made by other
// threads meanwhile also run serially (slower, never wrong), and a count changed by someone
// else while a scope lives is overwritten on exit.
class SerialScope {
  public:
    SerialScope() {
        std::lock_guard<std::mutex> lock(mu_);
        if (users_++ == 0) {
            saved_ = num_threads();
            if (saved_ > 1) HK_OPENBLAS(set_num_threads)(1);
        }
    }
    ~SerialScope() {
        std::lock_guard<std::mutex> lock(mu_);
        if (--users_ == 0 && saved_ > 1) HK_OPENBLAS(set_num_threads)(saved_);
    }
    SerialScope(const SerialScope&) = delete;
    SerialScope& operator=(const SerialScope&) = delete;

  private:
    static inline std::mutex mu_;
    static inline int users_ = 0;  // scopes alive, in any thread
    static inline int saved_ = 0;  // the thread count the first scope found
};

}  // namespace harness_kernels::blas
