// The vector type V of the kernels for CPUs with AVX-512 (F, BW, VL): 16 float lanes, tails and byte
// indices through lane masks. Compiled with -mavx512f -mavx512bw -mavx512vl -mfma (build.rs);
// only called where the CPU has them (dispatch.cpp).

#pragma once


#include <immintrin.h>

#include <cstdint>

namespace {

struct V {
  static constexpr int N = 16;
  // Vector registers the forward convolution may fill, and the budget of the gradient's
  // blocks (a few spills of bias sums cost less than a smaller block).
  static constexpr int kRegisters = 32;
  static constexpr int kGradRegisters = 35;
  using F = __m512;
  using M = __mmask16;  // a comparison's lanes
  using T = __mmask16;  // the lanes a load or store touches
  using I = __m128i;    // 16 byte indices

  static T tail(int64_t n) {
    return n <= 0 ? T(0) : n >= 16 ? T(0xFFFF) : T((1u << n) - 1);
  }
  static F load(T t, const float* p) { return _mm512_maskz_loadu_ps(t, p); }
  static F load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(T t, float* p, F v) { _mm512_mask_storeu_ps(p, t, v); }
  static void store(float* p, F v) { _mm512_storeu_ps(p, v); }
  static F set1(float v) { return _mm512_set1_ps(v); }
  static F fmadd(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }
  static F add(F a, F b) { return _mm512_add_ps(a, b); }
  static F sub(F a, F b) { return _mm512_sub_ps(a, b); }
  static F mul(F a, F b) { return _mm512_mul_ps(a, b); }
  // aten's rule for taking `b` over the running maximum `a`: b > a or b is NaN.
  static M beats(F b, F a) {
    return _mm512_cmp_ps_mask(b, a, _CMP_GT_OQ) | _mm512_cmp_ps_mask(b, b, _CMP_UNORD_Q);
  }
  static F blend(M m, F a, F b) { return _mm512_mask_blend_ps(m, a, b); }
  static void store_index(M tb, M td, M t1, uint8_t* at, int64_t n) {
    const __m128i i0 = _mm_maskz_mov_epi8(tb, _mm_set1_epi8(1));
    const __m128i i1 = _mm_mask_blend_epi8(td, _mm_set1_epi8(2), _mm_set1_epi8(3));
    _mm_mask_storeu_epi8(at, tail(n), _mm_mask_blend_epi8(t1, i0, i1));
  }
  static I load_index(const uint8_t* at, int64_t n) { return _mm_maskz_loadu_epi8(tail(n), at); }
  // `g` where the window position is `p`, 0 elsewhere.
  static F route(F g, I pos, int p) {
    return _mm512_maskz_mov_ps(_mm_cmpeq_epi8_mask(pos, _mm_set1_epi8(char(p))), g);
  }
  // 32 consecutive floats (lo, hi) into their even and odd elements.
  static void deinterleave(F lo, F hi, F& even, F& odd) {
    const __m512i e = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i o = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    even = _mm512_permutex2var_ps(lo, e, hi);
    odd = _mm512_permutex2var_ps(lo, o, hi);
  }
  // The inverse: a0 b0 a1 b1 ... into `first` (16 floats) and `second` (16 floats).
  static void interleave(F a, F b, F& first, F& second) {
    const __m512i f = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i s = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    first = _mm512_permutex2var_ps(a, f, b);
    second = _mm512_permutex2var_ps(a, s, b);
  }
};

}  // namespace
