// The kernel table for AVX2 + FMA: every family of kernels/ compiled with this
// instruction set's flags (build.rs, and test/Makefile), and nothing else in this translation
// unit, so no function compiled for it can be shared with code other CPUs run.

#include "vec_avx2.h"
#include "table.h"

namespace dlgrid {
const Kernels kAvx2Kernels = table<V>("avx2");
}
