// The kernel table for AVX-512: every family of kernels/ compiled with this
// instruction set's flags (build.rs, and test/Makefile), and nothing else in this translation
// unit, so no function compiled for it can be shared with code other CPUs run.

#include "vec_avx512.h"
#include "table.h"

namespace dlgrid {
const Kernels kAvx512Kernels = table<V>("avx512");
}
