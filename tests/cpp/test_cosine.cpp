// C++ unit tests of harness/kernels/csrc/cosine.hpp against a naive float64 oracle.
// Usage: test_cosine <case>; ctest runs every case (see CMakeLists.txt).
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "cosine.hpp"

namespace hk = harness_kernels;
using hk::idx;

static std::atomic<int> failures{0};

#define CHECK(cond, ...)                                                 \
    do {                                                                 \
        if (!(cond)) {                                                   \
            ++failures;                                                  \
            std::fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, \
                         __LINE__, #cond);                               \
            std::fprintf(stderr, __VA_ARGS__);                           \
            std::fprintf(stderr, "\n");                                  \
        }                                                                \
    } while (0)

// A matrix stored row-major (C) or column-major (F), each line padded by `pad` elements.
template <class T>
struct Mat {
    idx rows, cols;
    bool fortran;
    idx pad;
    std::vector<T> buf;
    Mat(idx r, idx c, bool f = false, idx p = 0) : rows(r), cols(c), fortran(f), pad(p) {
        buf.assign((size_t)std::max<idx>(1, f ? (r + p) * c : r * (c + p)), T(0));
    }
    idx rs() const { return fortran ? 1 : cols + pad; }
    idx cs() const { return fortran ? rows + pad : 1; }
    T& at(idx i, idx k) { return buf[(size_t)(i * rs() + k * cs())]; }
    T at(idx i, idx k) const { return buf[(size_t)(i * rs() + k * cs())]; }
    hk::View<T> view() const { return {buf.data(), rows, cols, rs(), cs()}; }
};

template <class T>
void fill(Mat<T>& m, unsigned seed) {
    std::mt19937 gen(seed);
    std::normal_distribution<double> dist;
    for (idx i = 0; i < m.rows; ++i)
        for (idx k = 0; k < m.cols; ++k) m.at(i, k) = (T)dist(gen);
}

// Naive float64 cosine of row i of a with row j of b; 0 for a zero vector.
template <class T>
double oracle(const Mat<T>& a, idx i, const Mat<T>& b, idx j) {
    double d = 0, na = 0, nb = 0;
    for (idx k = 0; k < a.cols; ++k) {
        const double x = a.at(i, k), y = b.at(j, k);
        d += x * y;
        na += x * x;
        nb += y * y;
    }
    if (na == 0 || nb == 0) return 0.0;
    return std::max(-1.0, std::min(1.0, d / std::sqrt(na) / std::sqrt(nb)));
}

template <class T>
double tol() {
    return sizeof(T) == 4 ? 1e-5 : 1e-12;
}

template <class T>
std::vector<T> run(const Mat<T>& a, const Mat<T>& b, idx block_bytes = 0, idx parallel_min = 0) {
    std::vector<T> out((size_t)std::max<idx>(1, a.rows * b.rows), T(-7));
    hk::Options opt;
    opt.block_bytes = block_bytes;
    opt.parallel_min_elements = parallel_min;
    hk::cosine<T>(a.view(), b.view(), out.data(), b.rows, opt);
    return out;
}

template <class T>
void expect_oracle(const Mat<T>& a, const Mat<T>& b, const std::vector<T>& out, const char* tag) {
    double worst = 0;
    for (idx i = 0; i < a.rows; ++i)
        for (idx j = 0; j < b.rows; ++j)
            worst = std::max(worst, std::fabs((double)out[(size_t)(i * b.rows + j)] -
                                              oracle(a, i, b, j)));
    CHECK(worst <= tol<T>(), "%s (%lld x %lld x %lld): max error %.3g > %.3g", tag,
          (long long)a.rows, (long long)b.rows, (long long)a.cols, worst, tol<T>());
}

template <class T>
void oracle_shapes() {
    const idx shapes[][3] = {{1, 1, 1},   {3, 5, 7},   {17, 33, 65},  {64, 64, 128},
                             {100, 1, 31}, {1, 100, 384}, {31, 47, 4096}, {2, 2, 1}};
    unsigned seed = 1;
    for (const auto& s : shapes) {
        Mat<T> a(s[0], s[2]), b(s[1], s[2]);
        fill(a, seed++);
        fill(b, seed++);
        expect_oracle(a, b, run(a, b), "C/C");
    }
}

void test_layout() {
    auto l = hk::blas_layout(4, 3, 3, 1);
    CHECK(l.ok && !l.trans && l.ld == 3, "C-contiguous");
    l = hk::blas_layout(4, 3, 1, 4);
    CHECK(l.ok && l.trans && l.ld == 4, "F-contiguous");
    l = hk::blas_layout(4, 3, 8, 1);
    CHECK(l.ok && !l.trans && l.ld == 8, "padded rows");
    l = hk::blas_layout(1, 3, 100, 5);
    CHECK(l.ok && l.trans && l.ld == 5, "single row with a column stride: column-major");
    l = hk::blas_layout(4, 1, 7, 9);
    CHECK(l.ok && !l.trans && l.ld == 7, "single column");
    CHECK(!hk::blas_layout(4, 3, 6, 2).ok, "both strides non-unit");
    CHECK(!hk::blas_layout(4, 3, -3, 1).ok, "negative stride");
    CHECK(!hk::blas_layout(4, 3, 0, 1).ok, "broadcast rows (stride 0)");
}

template <class T>
void layouts() {
    for (int fa = 0; fa < 2; ++fa)
        for (int fb = 0; fb < 2; ++fb) {
            Mat<T> a(23, 37, fa, 3), b(19, 37, fb, 5);
            fill(a, 10 + fa);
            fill(b, 20 + fb);
            expect_oracle(a, b, run(a, b), fa ? (fb ? "F/F" : "F/C") : (fb ? "C/F" : "C/C"));
        }
}

void test_blocks() {
    Mat<float> a(50, 40), b(30, 40);
    fill(a, 3);
    fill(b, 4);
    for (idx rows : {1, 3, 7, 49, 50, 1000}) {
        auto out = run(a, b, rows * b.rows * (idx)sizeof(float));
        expect_oracle(a, b, out, "blocked");
        expect_oracle(a, b, run(a, b, rows * b.rows * (idx)sizeof(float), 1), "blocked threaded");
    }
    Mat<float> af(50, 40, true, 2);
    fill(af, 3);
    expect_oracle(af, b, run(af, b, 7 * b.rows * (idx)sizeof(float)), "blocked F");
}

// Small products run on the calling thread and leave OpenBLAS's thread count as it was, also
// with scopes overlapping from several threads.
void test_serial() {
    namespace blas = hk::blas;
    const int before = blas::num_threads();
    {
        blas::SerialScope outer;
        CHECK(blas::num_threads() == 1, "inside a serial scope: %d threads", blas::num_threads());
        { blas::SerialScope inner; }
        CHECK(blas::num_threads() == 1, "after a nested scope: %d threads", blas::num_threads());
    }
    CHECK(blas::num_threads() == before, "restored %d threads, had %d", blas::num_threads(), before);
    Mat<float> a(64, 128), b(48, 128);
    fill(a, 5);
    fill(b, 6);
    std::vector<std::thread> pool;
    for (int t = 0; t < 4; ++t)
        pool.emplace_back([&] {
            std::vector<float> out((size_t)(a.rows * b.rows));
            hk::Options opt;
            opt.serial_max_mnk = 1 << 20;
            for (int r = 0; r < 50; ++r) hk::cosine<float>(a.view(), b.view(), out.data(), b.rows, opt);
            expect_oracle(a, b, out, "serial, 4 threads");
        });
    for (auto& t : pool) t.join();
    CHECK(blas::num_threads() == before, "after 4 threads: %d threads, had %d", blas::num_threads(),
          before);
}

template <class T>
void single_vector_t() {
    for (int f = 0; f < 2; ++f) {
        Mat<T> q(1, 384, f, 2), m(257, 384, f, 1);
        fill(q, 5);
        fill(m, 6);
        expect_oracle(q, m, run(q, m), "1 x M");
        expect_oracle(m, q, run(m, q), "N x 1");
        expect_oracle(q, m, run(q, m, 0, 1), "1 x M threaded");
        expect_oracle(m, q, run(m, q, 0, 1), "N x 1 threaded");
    }
    // a query that is a strided row: column 2 of a column-major (384 x 5) matrix is contiguous,
    // row 3 of a row-major one has stride 5.
    Mat<T> big(384, 5), m(100, 384);
    fill(big, 7);
    fill(m, 8);
    std::vector<T> col(384);
    for (idx k = 0; k < 384; ++k) col[(size_t)k] = big.at(k, 3);
    hk::View<T> qv{big.buf.data() + 3, 1, 384, 0, 5};
    std::vector<T> out(100);
    hk::cosine<T>(qv, m.view(), out.data(), 100);
    Mat<T> q(1, 384);
    q.buf = col;
    expect_oracle(q, m, out, "strided query");
}

void test_single_vector() {
    single_vector_t<float>();
    single_vector_t<double>();
}

void test_zero_vectors() {
    Mat<double> a(5, 9), b(4, 9);
    fill(a, 9);
    fill(b, 10);
    for (idx k = 0; k < 9; ++k) a.at(1, k) = 0, b.at(2, k) = 0;
    auto out = run(a, b);
    for (idx j = 0; j < 4; ++j) CHECK(out[(size_t)(4 + j)] == 0.0, "zero row of a, col %lld", (long long)j);
    for (idx i = 0; i < 5; ++i) CHECK(out[(size_t)(i * 4 + 2)] == 0.0, "zero row of b, row %lld", (long long)i);
    expect_oracle(a, b, out, "with zero vectors");
    // gemv path
    Mat<double> z(1, 9);
    auto o1 = run(z, b);
    for (double v : o1) CHECK(v == 0.0, "zero query");
}

template <class T>
void nonfinite_t() {
    Mat<T> a(6, 11), b(5, 11);
    fill(a, 11);
    fill(b, 12);
    a.at(2, 5) = std::numeric_limits<T>::quiet_NaN();
    b.at(3, 1) = std::numeric_limits<T>::infinity();
    a.at(4, 0) = -std::numeric_limits<T>::infinity();
    for (idx k = 0; k < 11; ++k) b.at(0, k) = 0;  // a zero column meets the NaN row
    auto out = run(a, b);
    for (idx i = 0; i < 6; ++i)
        for (idx j = 0; j < 5; ++j) {
            const T v = out[(size_t)(i * 5 + j)];
            const bool bad = i == 2 || i == 4 || j == 3;
            if (bad) {
                CHECK(std::isnan(v), "(%lld, %lld) should be NaN, got %g", (long long)i, (long long)j, (double)v);
            } else {
                CHECK(std::fabs((double)v - oracle(a, i, b, j)) <= tol<T>(), "(%lld, %lld) = %g",
                      (long long)i, (long long)j, (double)v);
            }
        }
}

void test_nonfinite() {
    nonfinite_t<float>();
    nonfinite_t<double>();
}

void test_clip() {
    // parallel and anti-parallel vectors whose rounded cosine could leave [-1, 1]
    Mat<float> a(64, 301);
    fill(a, 13);
    Mat<float> b = a;
    for (idx i = 0; i < 64; ++i)
        for (idx k = 0; k < 301; ++k) b.at(i, k) = (i % 2 ? -3.7f : 1.3f) * a.at(i, k);
    auto out = run(a, b);
    for (float v : out) CHECK(v >= -1.0f && v <= 1.0f, "out of range: %.9g", (double)v);
    for (idx i = 0; i < 64; ++i) {
        const float d = out[(size_t)(i * 64 + i)];
        CHECK(std::fabs(std::fabs(d) - 1.0f) <= 1e-6f, "diagonal %lld = %.9g", (long long)i, (double)d);
    }
    auto self = run(a, a);  // same storage: norms computed once
    for (idx i = 0; i < 64; ++i) CHECK(std::fabs(self[(size_t)(i * 64 + i)] - 1.0f) <= 1e-6f, "self");
}

void test_empty() {
    Mat<float> a0(0, 5), b(3, 5), a(2, 0), b0(4, 0);
    std::vector<float> out(8, -7.0f);
    hk::cosine<float>(a0.view(), b.view(), out.data(), 3);
    CHECK(out[0] == -7.0f, "N = 0 must not write");
    hk::cosine<float>(a.view(), b0.view(), out.data(), 4);
    for (float v : out) CHECK(v == 0.0f, "D = 0 gives zeros, got %g", (double)v);
}

template <class T>
void paired_check(const Mat<T>& a, const Mat<T>& b, const char* tag) {
    std::vector<T> out((size_t)std::max<idx>(1, a.rows));
    hk::paired_cosine<T>(a.view(), b.view(), out.data());
    double worst = 0;
    for (idx i = 0; i < a.rows; ++i)
        worst = std::max(worst, std::fabs((double)out[(size_t)i] - oracle(a, i, b, i)));
    CHECK(worst <= tol<T>(), "paired %s: max error %.3g", tag, worst);
}

void test_paired() {
    Mat<float> a(77, 129), b(77, 129);
    fill(a, 14);
    fill(b, 15);
    for (idx k = 0; k < 129; ++k) a.at(3, k) = 0;
    paired_check(a, b, "f32");
    Mat<double> c(5, 4096), d(5, 4096);
    fill(c, 16);
    fill(d, 17);
    paired_check(c, d, "f64");
}

void test_paired_layouts() {
    Mat<double> a(33, 21, true, 2), b(33, 21, true, 0), c(33, 21, false, 4);
    fill(a, 18);
    fill(b, 19);
    fill(c, 20);
    paired_check(a, b, "F/F");
    paired_check(a, c, "F/C");
    // both strides non-unit: every second row and column of a larger matrix
    Mat<double> big(66, 42);
    fill(big, 21);
    Mat<double> sub(33, 21);
    for (idx i = 0; i < 33; ++i)
        for (idx k = 0; k < 21; ++k) sub.at(i, k) = big.at(2 * i, 2 * k);
    hk::View<double> sv{big.buf.data(), 33, 21, 2 * 42, 2};
    std::vector<double> out(33);
    hk::paired_cosine<double>(sv, c.view(), out.data());
    double worst = 0;
    for (idx i = 0; i < 33; ++i) worst = std::max(worst, std::fabs(out[(size_t)i] - oracle(sub, i, c, i)));
    CHECK(worst <= 1e-12, "paired strided: %.3g", worst);
}

int main(int argc, char** argv) {
    const std::map<std::string, std::function<void()>> cases = {
        {"layout", test_layout},
        {"oracle_f32", oracle_shapes<float>},
        {"oracle_f64", oracle_shapes<double>},
        {"layouts", [] { layouts<float>(); layouts<double>(); }},
        {"blocks", test_blocks},
        {"serial", test_serial},
        {"single_vector", test_single_vector},
        {"zero_vectors", test_zero_vectors},
        {"nonfinite", test_nonfinite},
        {"clip", test_clip},
        {"empty", test_empty},
        {"paired", test_paired},
        {"paired_layouts", test_paired_layouts},
    };
    if (argc != 2 || !cases.count(argv[1])) {
        std::fprintf(stderr, "usage: %s <case>; cases:", argv[0]);
        for (const auto& kv : cases) std::fprintf(stderr, " %s", kv.first.c_str());
        std::fprintf(stderr, "\n");
        return 2;
    }
    cases.at(argv[1])();
    std::printf("%s: %s\n", argv[1], failures ? "FAILED" : "ok");
    return failures ? 1 : 0;
}
