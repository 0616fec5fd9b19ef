// The vector type V of the kernels for CPUs with AVX2 and FMA (every x86-64 server CPU since 2013, AMD
// EPYC included): 8 float lanes, 16 vector registers; tails through masked loads and stores of
// 32-bit lanes, byte indices packed from the comparison masks. Compiled with -mavx2 -mfma
// (build.rs); only called where the CPU has them (dispatch.cpp).

#pragma once


#include <immintrin.h>

#include <cstdint>
#include <cstring>

namespace {

struct V {
  static constexpr int N = 8;
  static constexpr int kRegisters = 16;
  static constexpr int kGradRegisters = 15;
  using F = __m256;
  using M = __m256;   // a comparison's lanes: all ones or all zeros
  // The lanes a load or store touches: their count, and a mask (sign bit set) for a part of a
  // vector. Whole vectors take plain loads and stores: a masked store is microcoded on AMD's
  // CPUs, several times slower.
  struct T {
    __m256i mask;
    int n;
  };
  using I = __m256i;  // 8 indices as 32-bit lanes

  static T tail(int64_t n) {
    const int k = n <= 0 ? 0 : n >= 8 ? 8 : int(n);
    return {_mm256_cmpgt_epi32(_mm256_set1_epi32(k), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)),
            k};
  }
  // Masked-off lanes are neither read (no fault past the end of a row) nor written.
  static F load(T t, const float* p) {
    if (t.n == 8) return _mm256_loadu_ps(p);
    return t.n == 0 ? _mm256_setzero_ps() : _mm256_maskload_ps(p, t.mask);
  }
  static F load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(T t, float* p, F v) {
    if (t.n == 8)
      _mm256_storeu_ps(p, v);
    else if (t.n > 0)
      _mm256_maskstore_ps(p, t.mask, v);
  }
  static void store(float* p, F v) { _mm256_storeu_ps(p, v); }
  static F set1(float v) { return _mm256_set1_ps(v); }
  static F fmadd(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }
  static F add(F a, F b) { return _mm256_add_ps(a, b); }
  static F sub(F a, F b) { return _mm256_sub_ps(a, b); }
  static F mul(F a, F b) { return _mm256_mul_ps(a, b); }
  static M beats(F b, F a) {
    return _mm256_or_ps(_mm256_cmp_ps(b, a, _CMP_GT_OQ), _mm256_cmp_ps(b, b, _CMP_UNORD_Q));
  }
  static F blend(M m, F a, F b) { return _mm256_blendv_ps(a, b, m); }
  static void store_index(M tb, M td, M t1, uint8_t* at, int64_t n) {
    const __m256i one = _mm256_set1_epi32(1);
    const __m256i i0 = _mm256_and_si256(_mm256_castps_si256(tb), one);
    const __m256i i1 = _mm256_or_si256(_mm256_and_si256(_mm256_castps_si256(td), one),
                                       _mm256_set1_epi32(2));
    const __m256i k = _mm256_blendv_epi8(i0, i1, _mm256_castps_si256(t1));
    const __m128i w16 = _mm_packs_epi32(_mm256_castsi256_si128(k), _mm256_extracti128_si256(k, 1));
    const uint64_t bytes = uint64_t(_mm_cvtsi128_si64(_mm_packus_epi16(w16, w16)));
    std::memcpy(at, &bytes, size_t(n < 8 ? n : 8));
  }
  static I load_index(const uint8_t* at, int64_t n) {
    uint64_t bytes = 0;
    std::memcpy(&bytes, at, size_t(n < 8 ? n : 8));
    return _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(int64_t(bytes)));
  }
  static F route(F g, I pos, int p) {
    return _mm256_and_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(pos, _mm256_set1_epi32(p))), g);
  }
  // 16 consecutive floats (lo, hi) into their even and odd elements. The shuffle works within
  // 128-bit halves ([lo0 lo2 hi0 hi2 | lo4 lo6 hi4 hi6]); the 64-bit permute puts them in order.
  static void deinterleave(F lo, F hi, F& even, F& odd) {
    even = order(_mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0)));
    odd = order(_mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(3, 1, 3, 1)));
  }
  static F order(F v) {
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(v), _MM_SHUFFLE(3, 1, 2, 0)));
  }
  // a0 b0 a1 b1 ... a7 b7 into `first` (a0..a3's pairs) and `second` (a4..a7's).
  static void interleave(F a, F b, F& first, F& second) {
    const F l = _mm256_unpacklo_ps(a, b);  // a0 b0 a1 b1 | a4 b4 a5 b5
    const F h = _mm256_unpackhi_ps(a, b);  // a2 b2 a3 b3 | a6 b6 a7 b7
    first = _mm256_permute2f128_ps(l, h, 0x20);
    second = _mm256_permute2f128_ps(l, h, 0x31);
  }
};

}  // namespace
