// nnf_kernels.h: the integer steps every generated kernel shares (written by nnforge).
//
// They implement nnforge's numerics contract (docs/numerics.md, compiler/numerics.py) on
// int64_t, exactly as the numpy reference does: products and sums wrap modulo 2^64 like numpy's
// int64 (computed through uint64_t, so C++ has no undefined behaviour), and the right shift of
// a negative value is arithmetic (gcc and clang define it so; implementation-defined before
// C++20, and the code is built with -std=c++17).  The per-layer numbers (multiplier with any
// left shift folded in, right shift, rounding half, wrap mask, clamp bounds) come from Python.
#pragma once

#include <cstdint>

// Scratch arrays inside a kernel: static in C simulation (off the stack; one caller at a time),
// plain local arrays under HLS.
#ifdef __SYNTHESIS__
#define NNF_LOCAL
#else
#define NNF_LOCAL static
#endif

namespace nnf {

// round_shift(acc * m, n): m already carries the left shift of a negative n, half is
// 2^(n-1) for RND with n > 0 and 0 otherwise, sh = max(n, 0) (at most 63).
static inline int64_t requant(int64_t acc, int64_t m, int sh, int64_t half) {
    const int64_t v = static_cast<int64_t>(static_cast<uint64_t>(acc) * static_cast<uint64_t>(m));
    return static_cast<int64_t>(static_cast<uint64_t>(v) + static_cast<uint64_t>(half)) >> sh;
}

// WRAP: keep the low bits (v & mask), then map codes above the type's hi to negative ones
// (signed types; for unsigned types hi == mask and nothing moves).
static inline int64_t wrap(int64_t v, int64_t mask, int64_t hi, int64_t mod) {
    const int64_t u = static_cast<int64_t>(static_cast<uint64_t>(v) & static_cast<uint64_t>(mask));
    return u > hi ? static_cast<int64_t>(static_cast<uint64_t>(u) - static_cast<uint64_t>(mod)) : u;
}

// numpy.clip(v, lo, hi) == minimum(maximum(v, lo), hi)
static inline int64_t clamp(int64_t v, int64_t lo, int64_t hi) {
    v = v < lo ? lo : v;
    return v > hi ? hi : v;
}

static inline int64_t add(int64_t a, int64_t b) {
    return static_cast<int64_t>(static_cast<uint64_t>(a) + static_cast<uint64_t>(b));
}

static inline int64_t mul(int64_t a, int64_t b) {
    return static_cast<int64_t>(static_cast<uint64_t>(a) * static_cast<uint64_t>(b));
}

#ifndef __SYNTHESIS__
// C simulation only: copy one buffer into the trace (every layer's output codes).
template <class T>
static inline void trace_copy(const T* x, int n, int64_t* dst) {
    for (int i = 0; i < n; ++i) dst[i] = static_cast<int64_t>(x[i]);
}
#endif

}  // namespace nnf
