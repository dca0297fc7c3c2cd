// nnf_int.h: arbitrary-width integers for the HLS C++ that nnforge generates.
// Written by nnforge; it copies no vendor header.
//
// Under Vitis HLS (__SYNTHESIS__ is defined) or with -DNNF_USE_AP_INT, nnf_int<W> and
// nnf_uint<W> are the vendor's ap_int<W> and ap_uint<W> from <ap_int.h>.  For plain g++ C
// simulation they are nnf::Int<W> and nnf::UInt<W> below, which behave the same way for every
// operation the generated kernels use (nnf_acc<W>: the accumulators, ap_int<W> under HLS):
//   * storing any integer keeps its low W bits: two's complement wrap-around with sign
//     extension for Int, modulo 2^W for UInt (ap_int's default AP_WRAP);
//   * reading a value widens it to int64_t, so + and * happen on exact 64-bit values.
//     ap_int widens the result type of + and * instead; the kernels always store results into
//     a declared type and never form a product wider than 64 bits, so both give the same bits.
#pragma once

#include <cstdint>

// Constant arrays (weights, biases, tables) are declared NNF_ROM(T, R): of element type T, except
// in a C simulation against ap_int, where they hold the plain integer type R (wide enough for every
// value): ap_int's constructors are not constexpr, so an ap_int array literal is one dynamic
// initialiser per element (g++ takes seconds per few thousand).  Reading an element converts it to
// T's value, the same number either way.
#if defined(NNF_USE_AP_INT) && !defined(__SYNTHESIS__)
#define NNF_ROM(T, R) R
#else
#define NNF_ROM(T, R) T
#endif

#if defined(__SYNTHESIS__) || defined(NNF_USE_AP_INT)
#include <ap_int.h>
template <int W> using nnf_int = ap_int<W>;
template <int W> using nnf_uint = ap_uint<W>;
template <int W> using nnf_acc = ap_int<W>;
#else
#include <type_traits>

namespace nnf {

template <int W, bool S>
class Integer {
    static_assert(W >= 1 && W <= (S ? 64 : 63), "nnf::Int<W>: 1 <= W <= 64; nnf::UInt<W>: 1 <= W <= 63");
    using storage = std::conditional_t<
        (W <= 8), std::conditional_t<S, int8_t, uint8_t>,
        std::conditional_t<(W <= 16), std::conditional_t<S, int16_t, uint16_t>,
                           std::conditional_t<(W <= 32), std::conditional_t<S, int32_t, uint32_t>,
                                              std::conditional_t<S, int64_t, uint64_t>>>>;
    storage v_;

    // The low W bits of x, sign-extended for signed types.  Shifting through uint64_t avoids
    // undefined behaviour; the right shift of a negative int64_t is arithmetic on gcc and clang
    // (implementation-defined before C++20; the generated code is built with -std=c++17 by g++).
    static constexpr storage wrap(int64_t x) {
        if constexpr (W == 8 * sizeof(storage)) {
            // a full-width type: the conversion through the unsigned type keeps the low W bits
            // (modulo 2^W; unsigned -> signed is two's complement on gcc and clang, and in C++20)
            return static_cast<storage>(static_cast<std::make_unsigned_t<storage>>(x));
        } else if constexpr (S) {
            return static_cast<storage>(static_cast<int64_t>(static_cast<uint64_t>(x) << (64 - W)) >> (64 - W));
        } else {
            return static_cast<storage>(static_cast<uint64_t>(x) & ((uint64_t(1) << W) - 1));
        }
    }

public:
    constexpr Integer() : v_(0) {}
    constexpr Integer(int64_t x) : v_(wrap(x)) {}
    template <int V, bool T>
    constexpr Integer(Integer<V, T> x) : v_(wrap(static_cast<int64_t>(x))) {}

    constexpr operator int64_t() const { return static_cast<int64_t>(v_); }

    constexpr Integer& operator+=(int64_t x) {
        v_ = wrap(static_cast<int64_t>(static_cast<uint64_t>(static_cast<int64_t>(v_)) + static_cast<uint64_t>(x)));
        return *this;
    }
    constexpr Integer& operator-=(int64_t x) {
        v_ = wrap(static_cast<int64_t>(static_cast<uint64_t>(static_cast<int64_t>(v_)) - static_cast<uint64_t>(x)));
        return *this;
    }
};

template <int W> using Int = Integer<W, true>;
template <int W> using UInt = Integer<W, false>;

}  // namespace nnf

template <int W> using nnf_int = nnf::Int<W>;
template <int W> using nnf_uint = nnf::UInt<W>;
// Accumulators (only ever `acc += int64 product` and read back): int32_t / int64_t wrap the same
// way as Int<32> / Int<64> (conversion modulo 2^W on gcc and clang) and let g++ vectorize the
// multiply-accumulate loops.
template <int W>
using nnf_acc = std::conditional_t<W == 32, int32_t, std::conditional_t<W == 64, int64_t, nnf::Int<W>>>;
#endif
