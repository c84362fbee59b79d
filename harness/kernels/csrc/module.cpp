// pybind11 binding of the cosine kernels. Argument checking with user-facing messages lives in
// harness/kernels/__init__.py; this layer trusts dtypes/shapes, fixes up layouts BLAS cannot take
// (by a compact copy) and releases the GIL for the computation.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

#include "cosine.hpp"
#include "index.hpp"

namespace py = pybind11;
namespace hk = harness_kernels;

namespace {

#ifndef HARNESS_BLAS_NAME
#define HARNESS_BLAS_NAME "unknown"
#endif

// A 2-D view of `arr`, whose dtype is T, or nullopt-like ok=false when strides are unusable.
template <class T>
bool make_view(const py::array& arr, hk::View<T>& v) {
    const auto item = static_cast<py::ssize_t>(sizeof(T));
    const py::ssize_t rs = arr.strides(0), cs = arr.strides(1);
    if (rs % item != 0 || cs % item != 0) return false;
    if (reinterpret_cast<std::uintptr_t>(arr.data()) % alignof(T) != 0) return false;
    v = {static_cast<const T*>(arr.data()), arr.shape(0), arr.shape(1), rs / item, cs / item};
    return true;
}

// `arr` itself when BLAS can read it in place, else a C-contiguous copy (kept alive by `hold`).
template <class T>
hk::View<T> blas_view(const py::array& arr, py::object& hold) {
    hk::View<T> v{};
    if (make_view(arr, v) && hk::blas_layout(v).ok) return v;
    hold = py::module_::import("numpy").attr("ascontiguousarray")(arr);
    make_view(hold.cast<py::array>(), v);
    return v;
}

template <class T>
hk::View<T> any_view(const py::array& arr, py::object& hold) {
    hk::View<T> v{};
    if (make_view(arr, v) && v.rs >= 0 && v.cs >= 0) return v;
    hold = py::module_::import("numpy").attr("ascontiguousarray")(arr);
    make_view(hold.cast<py::array>(), v);
    return v;
}

template <class T>
void cosine_t(const py::array& a, const py::array& b, py::array out, const hk::Options& opt) {
    py::object ha, hb;
    const hk::View<T> va = blas_view<T>(a, ha);
    const hk::View<T> vb = a.is(b) ? va : blas_view<T>(b, hb);
    T* o = static_cast<T*>(out.mutable_data());
    const hk::idx ldo = out.shape(1);
    py::gil_scoped_release nogil;
    hk::cosine<T>(va, vb, o, ldo, opt);
}

template <class T>
void paired_t(const py::array& a, const py::array& b, py::array out) {
    py::object ha, hb;
    const hk::View<T> va = any_view<T>(a, ha);
    const hk::View<T> vb = any_view<T>(b, hb);
    T* o = static_cast<T*>(out.mutable_data());
    py::gil_scoped_release nogil;
    hk::paired_cosine<T>(va, vb, o);
}

bool is_f32(const py::array& x) { return x.dtype().equal(py::dtype::of<float>()); }

void cosine(const py::array& a, const py::array& b, py::array out, hk::idx block_bytes,
            hk::idx parallel_min, hk::idx serial_max_mnk) {
    hk::Options opt;
    opt.block_bytes = block_bytes;
    opt.parallel_min_elements = parallel_min;
    opt.serial_max_mnk = serial_max_mnk;
    if (is_f32(out))
        cosine_t<float>(a, b, out, opt);
    else
        cosine_t<double>(a, b, out, opt);
}

void paired(const py::array& a, const py::array& b, py::array out) {
    if (is_f32(out))
        paired_t<float>(a, b, out);
    else
        paired_t<double>(a, b, out);
}

// Apply fn(view) to `arr` (2-D, float32 or float64; any strides) as a View of its dtype.
template <class Fn>
void with_view(const py::array& arr, Fn&& fn) {
    py::object hold;
    if (is_f32(arr)) {
        const hk::View<float> v = any_view<float>(arr, hold);
        py::gil_scoped_release nogil;
        fn(v);
    } else {
        const hk::View<double> v = any_view<double>(arr, hold);
        py::gil_scoped_release nogil;
        fn(v);
    }
}

py::tuple index_search(const hk::CosineIndex& ix, const py::array& q, hk::idx k,
                       const hk::SearchOptions& opt) {
    const hk::idx n = q.shape(0);
    py::array_t<float> scores({n, k});
    py::array_t<std::int64_t> ids({n, k});
    float* s = scores.mutable_data();
    std::int64_t* i = ids.mutable_data();
    with_view(q, [&](const auto& v) { ix.search(v, k, s, i, opt); });
    return py::make_tuple(scores, ids);
}

void index_similarity(const hk::CosineIndex& ix, const py::array& q, py::array out,
                      const hk::SearchOptions& opt) {
    float* o = static_cast<float*>(out.mutable_data());
    const hk::idx ldo = out.shape(1);
    with_view(q, [&](const auto& v) { ix.similarity(v, o, ldo, opt); });
}

double stream_sum(const py::array& x, int threads, hk::idx chunk) {
    const float* p = static_cast<const float*>(x.data());
    const hk::idx n = x.size();
    py::gil_scoped_release nogil;
    return hk::stream_sum(p, n, threads, chunk);
}

}  // namespace

PYBIND11_MODULE(_cosine, m) {
    m.doc() = "C++/BLAS cosine-similarity kernels (use harness.kernels, which checks arguments)";
    m.def("cosine", &cosine, py::arg("a"), py::arg("b"), py::arg("out"),
          py::arg("block_bytes"), py::arg("parallel_min_elements"), py::arg("serial_max_mnk"),
          "out[:] = cosine(a, b); a, b, out share a float dtype, out is C-contiguous (N, M)");
    m.def("paired", &paired, py::arg("a"), py::arg("b"), py::arg("out"),
          "out[:] = row-wise cosine(a_i, b_i); a, b (N, D) and out (N,) share a float dtype");
    m.def("blas_threads", &hk::blas::num_threads, "OpenBLAS thread count of the linked library");
    m.def("blas_config", []() { return std::string(hk::blas::config()); },
          "OpenBLAS build configuration string of the linked library");
    m.attr("BLAS") = HARNESS_BLAS_NAME;

    py::class_<hk::SearchOptions>(m, "SearchOptions", "Blocking/threading of CosineIndex scans")
        .def(py::init<>())
        .def_readwrite("block_rows", &hk::SearchOptions::block_rows)
        .def_readwrite("query_block", &hk::SearchOptions::query_block)
        .def_readwrite("parallel_min_work", &hk::SearchOptions::parallel_min_work)
        .def_readwrite("chunk_rows", &hk::SearchOptions::chunk_rows)
        .def_readwrite("threads", &hk::SearchOptions::threads);
    py::class_<hk::CosineIndex>(m, "Index", "Normalised set for exact cosine top-k (C++)")
        .def(py::init([](hk::idx dim, bool half) {
                 return new hk::CosineIndex(dim, half ? hk::Storage::f16 : hk::Storage::f32);
             }),
             py::arg("dim"), py::arg("float16"))
        .def("add", [](hk::CosineIndex& ix,
                       const py::array& v) { with_view(v, [&](const auto& w) { ix.add(w); }); },
             py::arg("vectors"), "append rows (2-D float32/float64 of D columns), normalised")
        .def("search", &index_search, py::arg("queries"), py::arg("k"), py::arg("options"),
             "(scores (n, k) float32, ids (n, k) int64): best first, ties by smaller id")
        .def("similarity", &index_similarity, py::arg("queries"), py::arg("out"),
             py::arg("options"), "out (n, size) float32 C-contiguous = cosines, clipped")
        .def("threads", &hk::CosineIndex::plan_threads, py::arg("queries"), py::arg("options"),
             "threads a search of this many queries uses")
        .def_property_readonly("size", &hk::CosineIndex::size)
        .def_property_readonly("dim", &hk::CosineIndex::dim)
        .def_property_readonly("stride", &hk::CosineIndex::stride)
        .def_property_readonly("nbytes", &hk::CosineIndex::nbytes);
    m.def("index_isa", []() { return std::string(hk::isa().name); },
          "instruction set of CosineIndex's dot loops: avx512, avx2 or scalar");
    m.def("stream_sum", &stream_sum, py::arg("x"), py::arg("threads"), py::arg("chunk"),
          "sum of a C-contiguous float32 array read by `threads` threads claiming `chunk` "
          "elements at a time, as a search claims rows (bandwidth probe)");
}
