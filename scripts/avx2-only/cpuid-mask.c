// LD_PRELOAD shim: an AVX2-only x86 CPU on a machine that has AVX-512, at native speed.
//
// It turns on CPUID faulting (arch_prctl ARCH_SET_CPUID: the CPU must list `cpuid_fault`), so every
// CPUID instruction traps, and answers each one as the CPU would but with the AVX-512, VNNI and
// AVX-VNNI feature bits cleared. Libraries that choose their kernels by CPUID (ONNX Runtime's MLAS,
// oneDNN, fbgemm, V8) then run their AVX2 code paths: int8 GEMMs sum pairs of products in saturating
// 16-bit lanes, as on an AVX2-only EPYC. qemu-x86_64 -cpu Haswell shows the same arithmetic but runs
// 20-50x slower; this runs at the speed of the AVX2 code on this core (not of an older core).
//
// Node resets every signal disposition at start and later installs its own SIGSEGV handler, so the
// shim wraps sigaction(): its own handler stays in place and calls the program's for every fault
// that is not a CPUID. Used by scripts/avx2-only/run.mjs; see docs/benchmarks.md.
#define _GNU_SOURCE
#include <signal.h>
#include <string.h>
#include <ucontext.h>
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <stdlib.h>
#include <dlfcn.h>
#include <asm/prctl.h>

static long ap(int code, unsigned long addr) { return syscall(SYS_arch_prctl, code, addr); }
static struct sigaction previous;
static int (*real_sigaction)(int, const struct sigaction *, struct sigaction *);
static int installed;

// Node resets every signal's disposition at start and later installs its own SIGSEGV handler: keep
// ours in place, and call theirs for faults that are not a CPUID.
int sigaction(int signo, const struct sigaction *act, struct sigaction *old) {
  if (!real_sigaction) real_sigaction = dlsym(RTLD_NEXT, "sigaction");
  if (signo == SIGSEGV && installed) {
    if (old) *old = previous;
    if (act) previous = *act;
    return 0;
  }
  return real_sigaction(signo, act, old);
}

static void handler(int sig, siginfo_t *si, void *vctx) {
  ucontext_t *uc = vctx;
  greg_t *g = uc->uc_mcontext.gregs;
  unsigned char *ip = (unsigned char *)g[REG_RIP];
  if (ip[0] == 0x0f && ip[1] == 0xa2) {
    unsigned int leaf = (unsigned int)g[REG_RAX], sub = (unsigned int)g[REG_RCX], a, b, c, d;
    ap(ARCH_SET_CPUID, 1);
    __cpuid_count(leaf, sub, a, b, c, d);
    ap(ARCH_SET_CPUID, 0);
    if (leaf == 7 && sub == 0) {
      // EBX: avx512f 16, dq 17, ifma 21, pf 26, er 27, cd 28, bw 30, vl 31
      b &= ~((1u << 16) | (1u << 17) | (1u << 21) | (1u << 26) | (1u << 27) | (1u << 28) | (1u << 30) | (1u << 31));
      // ECX: vbmi 1, vbmi2 6, vnni 11, bitalg 12, vpopcntdq 14
      c &= ~((1u << 1) | (1u << 6) | (1u << 11) | (1u << 12) | (1u << 14));
      // EDX: 4vnniw 2, 4fmaps 3, vp2intersect 8, avx512fp16 23
      d &= ~((1u << 2) | (1u << 3) | (1u << 8) | (1u << 23));
    }
    if (leaf == 7 && sub == 1) a &= ~((1u << 4) | (1u << 5)); // avx-vnni, avx512_bf16
    g[REG_RAX] = a; g[REG_RBX] = b; g[REG_RCX] = c; g[REG_RDX] = d;
    g[REG_RIP] += 2;
    return;
  }
  // Not ours: the handler the program set, or the default (a crash) when it set none.
  if ((previous.sa_flags & SA_SIGINFO) && previous.sa_sigaction) { previous.sa_sigaction(sig, si, vctx); return; }
  if (previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN && previous.sa_handler) { previous.sa_handler(sig); return; }
  struct sigaction dfl; memset(&dfl, 0, sizeof dfl); dfl.sa_handler = SIG_DFL;
  installed = 0; real_sigaction(SIGSEGV, &dfl, 0);
}

__attribute__((constructor)) static void init(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = handler;
  sa.sa_flags = SA_SIGINFO | SA_NODEFER;
  if (!real_sigaction) real_sigaction = dlsym(RTLD_NEXT, "sigaction");
  real_sigaction(SIGSEGV, &sa, &previous);
  installed = 1;
  ap(ARCH_SET_CPUID, 0);
}
