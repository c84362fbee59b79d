// C++ unit tests of harness/kernels/csrc/index.hpp (CosineIndex, top-k selection, float16)
// against naive oracles: float64 cosines and a full std::sort by (score desc, id asc, NaN last).
// Usage: test_index <case>; ctest runs every case (see CMakeLists.txt).
#include <atomic>
#include <cmath>
#include <cstdio>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "index.hpp"

namespace hk = harness_kernels;
using hk::idx;

static int failures = 0;

#define CHECK(cond, ...)                                                                      \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            ++failures;                                                                       \
            std::fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond);     \
            std::fprintf(stderr, __VA_ARGS__);                                                \
            std::fprintf(stderr, "\n");                                                       \
        }                                                                                     \
    } while (0)

static const float NaN = std::numeric_limits<float>::quiet_NaN();

std::vector<float> normal(idx n, unsigned seed) {
    std::mt19937 gen(seed);
    std::normal_distribution<float> dist;
    std::vector<float> v((size_t)n);
    for (auto& x : v) x = dist(gen);
    return v;
}

// float64 cosine of two rows; 0 for a zero vector, NaN when either holds NaN/inf.
double cosine64(const float* a, const float* b, idx d) {
    double dot = 0, na = 0, nb = 0;
    for (idx k = 0; k < d; ++k) {
        dot += (double)a[k] * b[k];
        na += (double)a[k] * a[k];
        nb += (double)b[k] * b[k];
    }
    if (!std::isfinite(na) || !std::isfinite(nb) || std::isnan(dot)) return NAN;
    if (na == 0 || nb == 0) return 0.0;
    return std::max(-1.0, std::min(1.0, dot / std::sqrt(na) / std::sqrt(nb)));
}

// The oracle's ranking of `scores`: descending, smaller id first on ties, NaN after numbers.
std::vector<idx> oracle_order(const std::vector<double>& scores) {
    std::vector<idx> ids(scores.size());
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = (idx)i;
    auto key = [&](idx i) { return std::isnan(scores[(size_t)i]) ? -INFINITY : scores[(size_t)i]; };
    std::stable_sort(ids.begin(), ids.end(), [&](idx a, idx b) { return key(a) > key(b); });
    return ids;
}

// ---------------------------------------------------------------- float16 conversion

void test_half() {
    // every half value survives half -> float -> half (NaN stays NaN)
    for (unsigned h = 0; h < 65536; ++h) {
        const float f = hk::half_to_float((std::uint16_t)h);
        const std::uint16_t back = hk::float_to_half(f);
        if (std::isnan(f))
            CHECK(std::isnan(hk::half_to_float(back)), "NaN 0x%04x", h);
        else
            CHECK(back == h, "0x%04x -> %g -> 0x%04x", h, f, back);
    }
    // rounding: to nearest, ties to even; overflow to inf; underflow through subnormals to 0
    CHECK(hk::float_to_half(1.0f) == 0x3c00, "1");
    CHECK(hk::float_to_half(1.0f + 1.0f / 2048) == 0x3c00, "tie rounds to even (down)");
    CHECK(hk::float_to_half(1.0f + 3.0f / 2048) == 0x3c02, "tie rounds to even (up)");
    CHECK(hk::float_to_half(65504.0f) == 0x7bff, "max");
    CHECK(hk::float_to_half(65520.0f) == 0x7c00, "overflow");
    CHECK(hk::float_to_half(-1e-8f) == 0x8000, "underflow keeps the sign");
    CHECK(hk::float_to_half(5.9604645e-8f) == 0x0001, "smallest subnormal");
    // the hardware conversion (F16C, when present) agrees with the software one
    std::vector<float> v = normal(100000, 1);
    for (size_t i = 0; i < v.size(); ++i) v[i] *= std::ldexp(1.0f, (int)(i % 40) - 30);
    std::vector<std::uint16_t> hw(v.size());
    hk::f32_to_half(v.data(), (idx)v.size(), hw.data());
    for (size_t i = 0; i < v.size(); ++i)
        CHECK(hw[i] == hk::float_to_half(v[i]), "%g: 0x%04x vs 0x%04x", v[i], hw[i],
              hk::float_to_half(v[i]));
}

// ---------------------------------------------------------------- selection

void test_topk() {
    // scores from a small alphabet (many exact ties) with NaN; split into parts like threads
    std::mt19937 gen(2);
    for (int trial = 0; trial < 200; ++trial) {
        const idx n = 1 + gen() % 300, k = 1 + gen() % n, parts = 1 + gen() % 4;
        std::vector<float> s((size_t)n);
        for (auto& x : s) {
            const unsigned r = gen() % 12;
            x = r == 0 ? NaN : r == 1 ? 1.5f : r == 2 ? -3.0f : (float)(r % 5) / 4 - 0.5f;
        }
        std::vector<double> clipped(s.size());
        for (size_t i = 0; i < s.size(); ++i) clipped[i] = hk::clip_score(s[i]);
        const std::vector<idx> want = oracle_order(clipped);
        std::vector<hk::TopK> sel((size_t)parts, hk::TopK(k));
        const idx chunk = (n + parts - 1) / parts;
        for (idx p = 0; p < parts; ++p) {
            const idx lo = std::min(n, p * chunk), hi = std::min(n, lo + chunk);
            for (idx b = lo; b < hi;) {  // offered in random-sized blocks, increasing ids
                const idx len = std::min<idx>(hi - b, 1 + gen() % 17);
                sel[(size_t)p].offer(s.data() + b, len, b);
                b += len;
            }
        }
        std::vector<const hk::TopK*> ptrs;
        for (auto& t : sel) ptrs.push_back(&t);
        std::vector<float> got_s((size_t)k);
        std::vector<std::int64_t> got_i((size_t)k);
        hk::merge_topk(ptrs, k, got_s.data(), got_i.data());
        for (idx j = 0; j < k; ++j) {
            CHECK(got_i[(size_t)j] == want[(size_t)j], "trial %d rank %lld: id %lld vs %lld",
                  trial, (long long)j, (long long)got_i[(size_t)j], (long long)want[(size_t)j]);
            const double w = clipped[(size_t)want[(size_t)j]];
            CHECK((std::isnan(w) && std::isnan(got_s[(size_t)j])) || got_s[(size_t)j] == w,
                  "trial %d rank %lld: score %g vs %g", trial, (long long)j, got_s[(size_t)j], w);
        }
    }
}

// ---------------------------------------------------------------- the index

struct Case {
    idx m, n, d, k;
    hk::Storage storage;
    hk::SearchOptions opt;
};

// search and similarity against the float64 oracle; ids exact where the oracle is unambiguous
void check_case(const Case& c, const std::vector<float>& x, const std::vector<float>& q) {
    const double tol = c.storage == hk::Storage::f32 ? 2e-6 : 2e-3;
    hk::CosineIndex index(c.d, c.storage);
    index.add(hk::View<float>{x.data(), c.m / 2, c.d, c.d, 1});  // two adds: ids continue
    index.add(hk::View<float>{x.data() + (c.m / 2) * c.d, c.m - c.m / 2, c.d, c.d, 1});
    CHECK(index.size() == c.m, "size %lld", (long long)index.size());
    std::vector<float> scores((size_t)(c.n * c.k)), sims((size_t)(c.n * c.m));
    std::vector<std::int64_t> ids((size_t)(c.n * c.k));
    const hk::View<float> qv{q.data(), c.n, c.d, c.d, 1};
    index.search(qv, c.k, scores.data(), ids.data(), c.opt);
    index.similarity(qv, sims.data(), c.m, c.opt);
    for (idx j = 0; j < c.n; ++j) {
        std::vector<double> ref((size_t)c.m);
        for (idx i = 0; i < c.m; ++i) ref[(size_t)i] = cosine64(&q[(size_t)(j * c.d)], &x[(size_t)(i * c.d)], c.d);
        const std::vector<idx> want = oracle_order(ref);
        for (idx i = 0; i < c.m; ++i) {
            const double s = sims[(size_t)(j * c.m + i)], r = ref[(size_t)i];
            CHECK((std::isnan(r) && std::isnan(s)) || std::fabs(s - r) <= tol,
                  "m=%lld n=%lld d=%lld sim[%lld,%lld] %g vs %g", (long long)c.m, (long long)c.n,
                  (long long)c.d, (long long)j, (long long)i, s, r);
        }
        for (idx p = 0; p < c.k; ++p) {
            const std::int64_t id = ids[(size_t)(j * c.k + p)];
            const double s = scores[(size_t)(j * c.k + p)], w = ref[(size_t)want[(size_t)p]];
            CHECK((std::isnan(w) && std::isnan(s)) || std::fabs(s - w) <= tol,
                  "query %lld rank %lld: %g vs %g", (long long)j, (long long)p, s, w);
            // the reported score is the similarity of the reported id, bit for bit
            const float sim = sims[(size_t)(j * c.m + id)];
            CHECK((std::isnan(sim) && std::isnan(s)) || sim == (float)s, "score of id %lld",
                  (long long)id);
            bool unique = std::isfinite(w);
            for (idx i = 0; i < c.m && unique; ++i)
                if (i != want[(size_t)p] && std::fabs(ref[(size_t)i] - w) <= 2 * tol) unique = false;
            if (unique) CHECK(id == want[(size_t)p], "query %lld rank %lld: id %lld vs %lld",
                              (long long)j, (long long)p, (long long)id, (long long)want[(size_t)p]);
        }
    }
}

std::vector<hk::SearchOptions> option_sets() {
    std::vector<hk::SearchOptions> all(4);
    all[1].block_rows = 3;
    all[1].query_block = 5;
    all[1].parallel_min_work = 0;
    all[1].threads = 2;
    all[1].chunk_rows = 4;  // rounded up to 2 blocks: threads claim many small chunks
    all[2].block_rows = 1;
    all[2].query_block = 1;
    all[3].parallel_min_work = 0;
    all[3].threads = 3;
    all[3].chunk_rows = 1;  // a block per claim
    return all;
}

void test_oracle(hk::Storage storage) {
    unsigned seed = 10;
    for (idx m : {1, 7, 64, 301})
        for (idx n : {1, 3, 8, 13})
            for (idx d : {1, 16, 17, 100})
                for (const auto& opt : option_sets()) {
                    const idx k = std::min<idx>(m, 5);
                    const std::vector<float> x = normal(m * d, ++seed);
                    const std::vector<float> q = normal(n * d, ++seed);
                    check_case({m, n, d, k, storage, opt}, x, q);
                }
}

void test_ties() {
    // rows copied and scaled by powers of two normalise to the same stored row: exact ties
    const idx d = 24, m = 200, n = 11;
    const std::vector<float> base = normal(5 * d, 40);
    std::vector<float> x((size_t)(m * d));
    std::mt19937 gen(41);
    std::vector<idx> which((size_t)m);
    for (idx i = 0; i < m; ++i) {
        which[(size_t)i] = gen() % 5;
        const float scale = std::ldexp(1.0f, (int)(gen() % 7) - 3);
        for (idx k = 0; k < d; ++k)
            x[(size_t)(i * d + k)] = base[(size_t)(which[(size_t)i] * d + k)] * scale;
    }
    const std::vector<float> q = normal(n * d, 42);
    for (hk::Storage st : {hk::Storage::f32, hk::Storage::f16})
        for (const auto& opt : option_sets()) {
            hk::CosineIndex index(d, st);
            index.add(hk::View<float>{x.data(), m, d, d, 1});
            std::vector<float> s((size_t)(n * m));
            std::vector<std::int64_t> ids((size_t)(n * m));
            index.search(hk::View<float>{q.data(), n, d, d, 1}, m, s.data(), ids.data(), opt);
            for (idx j = 0; j < n; ++j)
                for (idx p = 0; p + 1 < m; ++p) {
                    const std::int64_t a = ids[(size_t)(j * m + p)], b = ids[(size_t)(j * m + p + 1)];
                    CHECK(s[(size_t)(j * m + p)] >= s[(size_t)(j * m + p + 1)], "descending");
                    if (which[(size_t)a] == which[(size_t)b]) CHECK(a < b, "tie %lld %lld", (long long)a, (long long)b);
                    if (s[(size_t)(j * m + p)] == s[(size_t)(j * m + p + 1)]) CHECK(a < b, "equal");
                }
        }
}

void test_zero_nonfinite() {
    const idx d = 20, m = 50, n = 4;
    std::vector<float> x = normal(m * d, 50), q = normal(n * d, 51);
    for (idx k = 0; k < d; ++k) x[(size_t)(10 * d + k)] = 0;          // zero row
    x[(size_t)(20 * d + 3)] = NaN;                                    // NaN row
    x[(size_t)(30 * d)] = INFINITY;                                   // inf row
    for (idx k = 0; k < d; ++k) q[(size_t)(1 * d + k)] = 0;           // zero query
    q[(size_t)(2 * d + 5)] = -INFINITY;                               // inf query
    for (hk::Storage st : {hk::Storage::f32, hk::Storage::f16})
        for (const auto& opt : option_sets()) check_case({m, n, d, m, st, opt}, x, q);
}

void test_errors() {
    hk::CosineIndex index(8, hk::Storage::f32);
    const std::vector<float> x = normal(80, 60);
    index.add(hk::View<float>{x.data(), 10, 8, 8, 1});
    float s[20];
    std::int64_t i[20];
    auto throws = [&](std::function<void()> f) {
        try {
            f();
        } catch (const std::invalid_argument&) {
            return true;
        }
        return false;
    };
    CHECK(throws([&] { index.search(hk::View<float>{x.data(), 1, 8, 8, 1}, 11, s, i); }), "k > M");
    CHECK(throws([&] { index.search(hk::View<float>{x.data(), 1, 8, 8, 1}, 0, s, i); }), "k = 0");
    CHECK(throws([&] { index.search(hk::View<float>{x.data(), 1, 7, 7, 1}, 1, s, i); }), "D");
    CHECK(throws([&] { index.add(hk::View<float>{x.data(), 1, 9, 9, 1}); }), "add D");
    CHECK(throws([] { hk::CosineIndex bad(0, hk::Storage::f32); }), "D = 0");
    CHECK(index.size() == 10, "unchanged");
}

void test_stream_sum() {
    std::vector<float> x((size_t)100003, 0.5f);
    for (int t : {1, 2, 3})
        for (idx chunk : {1, 17, 4096, 100003, 1 << 20})
            CHECK(hk::stream_sum(x.data(), (idx)x.size(), t, chunk) == 50001.5, "%d %lld", t,
                  (long long)chunk);
}

// Every element claimed exactly once, each thread's chunks in increasing order.
void test_chunks() {
    for (int threads : {1, 2, 3, 5})
        for (idx n : {0, 1, 7, 1000})
            for (idx chunk : {1, 3, 64, 5000}) {
                std::vector<std::atomic<int>> seen((size_t)n);
                std::vector<idx> last((size_t)threads, -1);
                std::atomic<bool> ordered{true}, in_range{true};
                hk::parallel_chunks(n, chunk, threads, [&](int t, idx lo, idx hi) {
                    if (t < 0 || t >= threads || lo >= hi || hi - lo > chunk) {
                        in_range = false;
                        return;
                    }
                    if (lo <= last[(size_t)t]) ordered = false;
                    last[(size_t)t] = lo;
                    for (idx i = lo; i < hi; ++i) ++seen[(size_t)i];
                });
                CHECK(ordered && in_range, "threads %d n %lld chunk %lld", threads, (long long)n,
                      (long long)chunk);
                for (idx i = 0; i < n; ++i)
                    CHECK(seen[(size_t)i] == 1, "element %lld seen %d times", (long long)i,
                          seen[(size_t)i].load());
            }
}

int main(int argc, char** argv) {
    const std::map<std::string, std::function<void()>> cases = {
        {"half", test_half},
        {"topk", test_topk},
        {"oracle_f32", [] { test_oracle(hk::Storage::f32); }},
        {"oracle_f16", [] { test_oracle(hk::Storage::f16); }},
        {"ties", test_ties},
        {"zero_nonfinite", test_zero_nonfinite},
        {"errors", test_errors},
        {"stream_sum", test_stream_sum},
        {"chunks", test_chunks},
    };
    if (argc != 2 || !cases.count(argv[1])) {
        std::fprintf(stderr, "usage: %s <case>; cases:", argv[0]);
        for (const auto& kv : cases) std::fprintf(stderr, " %s", kv.first.c_str());
        std::fprintf(stderr, "\n");
        return 2;
    }
    cases.at(argv[1])();
    std::printf("%s (%s loops): %s\n", argv[1], hk::isa().name, failures ? "FAILED" : "ok");
    return failures ? 1 : 0;
}
