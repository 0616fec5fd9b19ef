// Which of our kernel tables runs: one table per instruction set (kernels/kernels.h); the
// CPU's best is used unless a caller chose otherwise (the worker's measured choice, tests forcing
// each variant), and aten's own kernels when the CPU has neither or "aten" was chosen. The one
// place that asks the CPU what it supports.

#include <atomic>

#include "ops.h"

namespace {

#if defined(__x86_64__)

// The most capable set allowed (DLGRID_MAX_CPU_ISA, as oneDNN's ONEDNN_MAX_CPU_ISA): lets one
// machine run as an older CPU would, for benchmarks and tests.
std::atomic<int> isa_cap{2};

bool cpu_supports(int isa) {
  if (isa > isa_cap.load(std::memory_order_relaxed)) return false;
  static const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  static const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") &&
                             __builtin_cpu_supports("avx512bw") &&
                             __builtin_cpu_supports("avx512vl");
  switch (isa) {
    case 0: return true;  // aten
    case 1: return avx2;
    case 2: return avx512;
    default: return false;
  }
}

int best_isa() { return cpu_supports(2) ? 2 : cpu_supports(1) ? 1 : 0; }

constexpr int kFollowProcess = -2;
std::atomic<int> chosen_isa{-1};                // the process's choice; -1: the best the CPU has
thread_local int thread_isa = kFollowProcess;  // a thread's own (tests compare the variants)

int current_isa() {
  const int c =
      thread_isa != kFollowProcess ? thread_isa : chosen_isa.load(std::memory_order_relaxed);
  return c < 0 ? best_isa() : c;
}

// The kernels to use now; null for aten's.
const dlgrid::Kernels* kernels_now() {
  switch (current_isa()) {
    case 2: return &dlgrid::kAvx512Kernels;
    case 1: return &dlgrid::kAvx2Kernels;
    default: return nullptr;
  }
}

#else  // not x86-64: aten's kernels throughout.

std::atomic<int> isa_cap{0};
bool cpu_supports(int isa) { return isa == 0; }
int best_isa() { return 0; }
constexpr int kFollowProcess = -2;
std::atomic<int> chosen_isa{-1};
thread_local int thread_isa = kFollowProcess;
int current_isa() { return 0; }
const dlgrid::Kernels* kernels_now() { return nullptr; }

#endif

}  // namespace

const dlgrid::Kernels* dlgrid::cpu_kernels() { return kernels_now(); }

extern "C" {

// Which kernels run from now on: 0 = aten's throughout, 1 = AVX2, 2 = AVX-512, -1 = the best
// this CPU has (the default); in the whole process, or (`this_thread`) for calls made on this
// thread only, where -2 returns it to the process's choice. Fails, naming the reason, for a set
// the CPU lacks.
int dlgrid_kernels_set(int isa, int this_thread) {
  return dlgrid::guarded([&] {
    TORCH_CHECK(isa >= (this_thread ? kFollowProcess : -1) && isa <= 2, "unknown kernel set ",
                isa);
    TORCH_CHECK(isa < 0 || cpu_supports(isa), "this CPU cannot run the ",
                isa == 2 ? "AVX-512" : "AVX2", " kernels");
    if (this_thread)
      thread_isa = isa;
    else
      chosen_isa.store(isa, std::memory_order_relaxed);
  });
}

// Makes the kernel sets above `isa` unavailable (0, 1, 2 as above), as if the CPU lacked them.
void dlgrid_kernels_cap(int isa) { isa_cap.store(isa, std::memory_order_relaxed); }

// The kernels calls on this thread use now (0, 1, 2 as above).
int dlgrid_kernels_get() { return current_isa(); }

// Whether this CPU can run kernel set `isa`.
int dlgrid_kernels_supported(int isa) { return cpu_supports(isa) ? 1 : 0; }

}  // extern "C"
