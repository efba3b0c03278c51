// The emulator's execution engine: fibers, the block scheduler, __syncthreads and the
// warp collectives (docs/emulation.md describes the model).
//
// Every OS thread that runs blocks owns a worker: 1024 fibers with their stacks, made
// once and reused for every block. A block runs all its fibers on that OS thread:
// the scheduler sweeps over them in thread order (or reversed) and resumes each one
// that is ready; a fiber runs until it reaches a sync point and switches back. When
// nothing is ready and every thread waits at __syncthreads, the barrier opens;
// when nothing is ready otherwise, the block can never finish and the program stops.
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <new>
#include <string>

#include "kernels/emu/cuda_emu.h"
#include "kernels/emu/emu_internal.h"

#if defined(__SANITIZE_ADDRESS__)
#define EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define EMU_ASAN 1
#endif
#endif
#ifdef EMU_ASAN
#include <sanitizer/common_interface_defs.h>
#endif

// glibc's swapcontext makes a sigprocmask system call on every switch; on x86-64 a
// few instructions do (docs/emulation.md has the measured costs). -DSDFT_EMU_UCONTEXT
// forces the portable path for comparison.
#if defined(__x86_64__) && !defined(SDFT_EMU_UCONTEXT)
#define EMU_ASM_SWITCH 1
#else
#include <ucontext.h>
#endif

__thread emu::coords emu::here;
const int warpSize = 32;

namespace {

constexpr unsigned max_block_threads = 1024;
// ASan's redzones make frames several times larger.
#ifdef EMU_ASAN
constexpr size_t stack_bytes = 512 * 1024;
#else
constexpr size_t stack_bytes = 128 * 1024;
#endif

#ifdef EMU_ASM_SWITCH
// Saves the callee-saved registers of the System V ABI on the current stack, stores
// the stack pointer in *save_sp, and resumes the stack at load_sp the same way. MXCSR
// and the x87 control word are callee-saved too, but nothing here changes them.
extern "C" void sdft_emu_switch(void **save_sp, void *load_sp);
asm(R"(
    .text
    .p2align 4
    .globl sdft_emu_switch
    .hidden sdft_emu_switch
    .type sdft_emu_switch, @function
sdft_emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size sdft_emu_switch, .-sdft_emu_switch
)");
struct context {
    void *sp;
};
#else
typedef ucontext_t context;
#endif

enum class fiber_state : unsigned char { ready, at_barrier, at_warp_op, exited };

struct fiber {
    char *stack = nullptr;  // lowest usable byte; a guard page lies below
    context saved;
    void *asan_fake_stack = nullptr;
    fiber_state state;
    uint3 idx;
    unsigned linear;
    const char *wait_file;  // the sync point it waits at
    int wait_line;
};

struct lane_slot {
    emu::warp_request request;
    uint64_t result;
};

struct warp {
    unsigned live;     // lanes that exist (a last warp may be partial) and have not exited
    unsigned arrived;  // lanes waiting at a collective that has not completed
    lane_slot lanes[32];
};

struct launch_desc {
    dim3 grid, block;
    unsigned threads;
    size_t dynamic_shared_bytes;
    emu::kernel_body body;
    const void *closure;
    emu::launch_site site;
    bool reverse;
};

struct worker {
    fiber fibers[max_block_threads];
    unsigned stacks_made = 0;
    warp warps[max_block_threads / 32];
    context scheduler;
    const void *scheduler_stack_bottom = nullptr;  // for ASan's fiber annotations
    size_t scheduler_stack_size = 0;
    void *scheduler_fake_stack = nullptr;
    const launch_desc *launch = nullptr;
    fiber *current = nullptr;  // the fiber running now, null in the scheduler
    unsigned exited = 0, at_barrier = 0;
    unsigned block_linear = 0;
    unsigned char *dynamic_shared = nullptr;

    ~worker() {
        long page = sysconf(_SC_PAGESIZE);
        for (unsigned i = 0; i < stacks_made; i++)
            munmap(fibers[i].stack - page, stack_bytes + page);
    }
};

thread_local std::unique_ptr<worker> this_worker;

worker &worker_here() {
    if (!this_worker) this_worker.reset(new worker);
    return *this_worker;
}

std::atomic<int> order_setting{-1};  // -1: not read from the environment yet

bool reverse_order() {
    int order = order_setting.load();
    if (order < 0) {
        const char *env = getenv("SDFT_EMU_ORDER");
        if (env && strcmp(env, "reverse") != 0 && strcmp(env, "forward") != 0)
            DIE("SDFT_EMU_ORDER=%s: expected forward or reverse", env);
        order = env && strcmp(env, "reverse") == 0;
        order_setting.store(order);
    }
    return order == 1;
}

// --- fibers ----------------------------------------------------------------------------
[[noreturn]] void fiber_main();

void make_stacks(worker &w, unsigned n) {
    long page = sysconf(_SC_PAGESIZE);
    for (; w.stacks_made < n; w.stacks_made++) {
        void *base = mmap(nullptr, stack_bytes + page, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
        if (base == MAP_FAILED) DIE("cuda-emu: cannot map a %zu-byte fiber stack", stack_bytes);
        if (mprotect(base, page, PROT_NONE) != 0) DIE("cuda-emu: cannot protect a stack guard");
        w.fibers[w.stacks_made].stack = static_cast<char *>(base) + page;
    }
}

// Makes f start at fiber_main when it is next resumed.
void prepare(fiber &f) {
#ifdef EMU_ASM_SWITCH
    // What sdft_emu_switch pops: six registers, then fiber_main as the return address.
    // Above that a zero return address for fiber_main, so it starts with the stack
    // aligned as after a call (rsp + 8 a multiple of 16).
    uintptr_t *top = reinterpret_cast<uintptr_t *>(f.stack + stack_bytes);
    top[-1] = 0;
    top[-2] = reinterpret_cast<uintptr_t>(&fiber_main);
    for (int r = 3; r <= 8; r++) top[-r] = 0;
    f.saved.sp = top - 8;
#else
    getcontext(&f.saved);
    f.saved.uc_stack.ss_sp = f.stack;
    f.saved.uc_stack.ss_size = stack_bytes;
    f.saved.uc_link = nullptr;
    makecontext(&f.saved, fiber_main, 0);
#endif
}

inline void switch_context(context &save, context &load) {
#ifdef EMU_ASM_SWITCH
    sdft_emu_switch(&save.sp, load.sp);
#else
    swapcontext(&save, &load);
#endif
}

void resume(worker &w, fiber &f) {
    w.current = &f;
    emu::here.thread_idx = f.idx;
#ifdef EMU_ASAN
    __sanitizer_start_switch_fiber(&w.scheduler_fake_stack, f.stack, stack_bytes);
#endif
    switch_context(w.scheduler, f.saved);
#ifdef EMU_ASAN
    __sanitizer_finish_switch_fiber(w.scheduler_fake_stack, nullptr, nullptr);
#endif
    w.current = nullptr;
}

// Back to the scheduler; returns when the scheduler resumes this fiber.
void yield(worker &w, fiber &f, bool exiting = false) {
#ifdef EMU_ASAN
    // An exiting fiber passes no fake-stack slot, so ASan frees its fake stack.
    __sanitizer_start_switch_fiber(exiting ? nullptr : &f.asan_fake_stack,
                                   w.scheduler_stack_bottom, w.scheduler_stack_size);
#endif
    switch_context(f.saved, w.scheduler);
#ifdef EMU_ASAN
    __sanitizer_finish_switch_fiber(f.asan_fake_stack, nullptr, nullptr);
#endif
}

void lane_exited(worker &w, fiber &f);

[[noreturn]] void fiber_main() {
    worker &w = *this_worker;
#ifdef EMU_ASAN
    __sanitizer_finish_switch_fiber(nullptr, &w.scheduler_stack_bottom, &w.scheduler_stack_size);
#endif
    w.launch->body(w.launch->closure);
    fiber &f = *w.current;
    f.state = fiber_state::exited;
    w.exited++;
    lane_exited(w, f);
    yield(w, f, true);
    __builtin_unreachable();
}

fiber &current_fiber(worker *w, const char *what, const char *file, int line) {
    if (!w || !w->current) die_at(file, line, "%s called outside an emulated kernel", what);
    return *w->current;
}

// --- diagnostics -------------------------------------------------------------------------
const char *op_name(emu::warp_op op) {
    switch (op) {
    case emu::warp_op::sync: return "__syncwarp";
    case emu::warp_op::shfl: return "__shfl_sync";
    case emu::warp_op::shfl_up: return "__shfl_up_sync";
    case emu::warp_op::shfl_down: return "__shfl_down_sync";
    case emu::warp_op::shfl_xor: return "__shfl_xor_sync";
    case emu::warp_op::ballot: return "__ballot_sync";
    case emu::warp_op::any: return "__any_sync";
    case emu::warp_op::all: return "__all_sync";
    case emu::warp_op::wmma_fill: return "wmma::fill_fragment";
    case emu::warp_op::wmma_load: return "wmma::load_matrix_sync";
    case emu::warp_op::wmma_store: return "wmma::store_matrix_sync";
    case emu::warp_op::wmma_mma: return "wmma::mma_sync";
    }
    return "?";
}

bool same_site(const fiber &a, const fiber &b) {
    return a.wait_line == b.wait_line &&
           (a.wait_file == b.wait_file || strcmp(a.wait_file, b.wait_file) == 0);
}

// One line per group of threads in the same state at the same place, e.g.
// "192 threads (first (64,0,0)) exited; 64 threads (first (0,0,0)) wait at
// __syncthreads (k.cu:40)".
std::string describe_threads(const worker &w) {
    std::string out;
    unsigned n = w.launch->threads;
    std::unique_ptr<bool[]> told(new bool[n]());
    for (unsigned i = 0; i < n; i++) {
        if (told[i]) continue;
        const fiber &f = w.fibers[i];
        const warp &wp = w.warps[i / 32];
        unsigned count = 0;
        for (unsigned j = i; j < n; j++) {
            const fiber &g = w.fibers[j];
            bool alike = g.state == f.state && (f.state == fiber_state::exited || same_site(f, g));
            if (alike && f.state == fiber_state::at_warp_op)
                alike = w.warps[j / 32].lanes[j % 32].request.op == wp.lanes[i % 32].request.op;
            if (alike) told[j] = true, count++;
        }
        char line[512];
        int len = snprintf(line, sizeof line, "%s%u thread%s (first (%u,%u,%u)) ",
                           out.empty() ? "" : "; ", count, count == 1 ? "" : "s", f.idx.x,
                           f.idx.y, f.idx.z);
        if (f.state == fiber_state::exited)
            snprintf(line + len, sizeof line - len, "exited");
        else if (f.state == fiber_state::at_barrier)
            snprintf(line + len, sizeof line - len, "wait at __syncthreads (%s:%d)", f.wait_file,
                     f.wait_line);
        else
            snprintf(line + len, sizeof line - len, "wait at %s mask 0x%08x (%s:%d)",
                     op_name(wp.lanes[i % 32].request.op), wp.lanes[i % 32].request.mask,
                     f.wait_file, f.wait_line);
        out += line;
    }
    return out;
}

[[noreturn]] void die_in_block(const worker &w, const char *what, const std::string &detail) {
    const launch_desc &L = *w.launch;
    uint3 b = emu::here.block_idx;
    die_at(L.site.file, L.site.line,
           "cuda-emu: kernel launched in %s, block (%u,%u,%u) of (%u,%u,%u), threads "
           "(%u,%u,%u): %s: %s",
           L.site.function, b.x, b.y, b.z, L.grid.x, L.grid.y, L.grid.z, L.block.x, L.block.y,
           L.block.z, what, detail.c_str());
}

// --- __syncthreads ---------------------------------------------------------------------------
// Nothing is ready any more: either every thread waits at the same __syncthreads and
// the barrier opens, or the block is stuck.
void open_barrier_or_die(worker &w) {
    unsigned n = w.launch->threads;
    if (w.at_barrier != n) {
        const char *what = w.exited && w.at_barrier + w.exited == n
                               ? "__syncthreads deadlock: some threads exited while the "
                                 "others wait at a barrier (undefined in CUDA)"
                               : "deadlock: no thread can continue";
        die_in_block(w, what, describe_threads(w));
    }
    for (unsigned i = 1; i < n; i++)
        if (!same_site(w.fibers[i], w.fibers[0]))
            die_in_block(w, "threads wait at different __syncthreads (undefined in CUDA)",
                         describe_threads(w));
    for (unsigned i = 0; i < n; i++) w.fibers[i].state = fiber_state::ready;
    w.at_barrier = 0;
}

// --- warp collectives --------------------------------------------------------------------
// A word of garbage: NaN, +3.4e38, -3.4e38 or -4.3e8 as a float, and as both halves
// read as bf16; salt picks which, so neighbouring words differ.
uint32_t garbage_word(uint64_t salt) {
    static const uint32_t words[4] = {0x7fc17fc1u, 0x7f7f7f7fu, 0xff7fff7fu, 0xcdcdcdcdu};
    return words[salt % 4];
}

// The lane whose value `lane` receives, or -1 for "its own value" (a shuffle up, down
// or xor that leaves its width-sized segment returns the caller's value).
int source_lane(const emu::warp_request &r, unsigned lane) {
    unsigned start = lane & ~(unsigned)(r.width - 1), end = start + (unsigned)r.width;
    unsigned src;
    switch (r.op) {
    case emu::warp_op::shfl: return (int)(start + ((unsigned)r.arg & (unsigned)(r.width - 1)));
    case emu::warp_op::shfl_up:
        if (lane < start + (unsigned)r.arg) return -1;
        return (int)(lane - (unsigned)r.arg);
    case emu::warp_op::shfl_down: src = lane + (unsigned)r.arg; break;
    case emu::warp_op::shfl_xor: src = lane ^ (unsigned)r.arg; break;
    default: return -1;
    }
    return src >= end ? -1 : (int)src;
}

// Completes the collective of the lanes of mask if every one that has not exited is
// waiting at it: computes each lane's result and makes them ready.
void try_complete(worker &w, unsigned warp_index, unsigned mask) {
    warp &wp = w.warps[warp_index];
    unsigned group = mask & wp.live;
    if ((wp.arrived & group) != group) return;
    unsigned first = (unsigned)__builtin_ctz(group);
    const emu::warp_request &lead = wp.lanes[first].request;
    bool wmma = lead.op >= emu::warp_op::wmma_fill;
    for (unsigned lane = first; lane < 32; lane++) {
        if (!(group >> lane & 1)) continue;
        const emu::warp_request &r = wp.lanes[lane].request;
        if (r.op != lead.op || r.mask != lead.mask)
            die_in_block(w, "lanes of a warp meet at different warp collectives or masks",
                         describe_threads(w));
        if (wmma && r.value != lead.value)
            die_in_block(w, "lanes of a warp pass different arguments to a wmma call",
                         describe_threads(w));
    }
    if (wmma && group != 0xffffffffu)
        die_in_block(w, "wmma needs all 32 lanes of a full warp",
                     describe_threads(w));
    unsigned ballot = 0;
    for (unsigned lane = 0; lane < 32; lane++)
        if ((group >> lane & 1) && wp.lanes[lane].request.value) ballot |= 1u << lane;
    for (unsigned lane = 0; lane < 32; lane++) {
        if (!(group >> lane & 1)) continue;
        lane_slot &s = wp.lanes[lane];
        switch (s.request.op) {
        case emu::warp_op::ballot: s.result = ballot; break;
        case emu::warp_op::any: s.result = ballot != 0; break;
        case emu::warp_op::all: s.result = ballot == group; break;
        case emu::warp_op::shfl:
        case emu::warp_op::shfl_up:
        case emu::warp_op::shfl_down:
        case emu::warp_op::shfl_xor: {
            int src = source_lane(s.request, lane);
            if (src < 0)
                s.result = s.request.value;
            else if (group >> src & 1)
                s.result = wp.lanes[src].request.value;
            else  // a lane that takes no part: undefined on the GPU
                s.result = garbage_word(src + w.block_linear) |
                           (uint64_t)garbage_word(src + w.block_linear + 1) << 32;
            break;
        }
        default: s.result = 0; break;
        }
        w.fibers[warp_index * 32 + lane].state = fiber_state::ready;
    }
    wp.arrived &= ~group;
}

// An exited lane no longer holds up the collectives it was named in.
void lane_exited(worker &w, fiber &f) {
    unsigned warp_index = f.linear / 32;
    warp &wp = w.warps[warp_index];
    wp.live &= ~(1u << (f.linear % 32));
    for (unsigned lane = 0; lane < 32; lane++)
        if (wp.arrived >> lane & 1) try_complete(w, warp_index, wp.lanes[lane].request.mask);
}

// --- blocks --------------------------------------------------------------------------------
void fill_garbage(unsigned char *p, size_t bytes, uint64_t salt) {
    size_t words = bytes / 4;
    for (size_t i = 0; i < words; i++) {
        uint32_t g = garbage_word(i + salt);
        memcpy(p + 4 * i, &g, 4);
    }
    memset(p + 4 * words, 0xcd, bytes % 4);
}

void run_block(worker &w, unsigned block_linear) {
    const launch_desc &L = *w.launch;
    unsigned n = L.threads;
    w.block_linear = block_linear;
    emu::here.block_idx = {block_linear % L.grid.x, block_linear / L.grid.x % L.grid.y,
                           block_linear / L.grid.x / L.grid.y};
    fill_garbage(w.dynamic_shared, L.dynamic_shared_bytes, block_linear);
    for (unsigned i = 0; i < (n + 31) / 32; i++) {
        unsigned lanes = n - 32 * i < 32 ? n - 32 * i : 32;
        w.warps[i].live = lanes == 32 ? 0xffffffffu : (1u << lanes) - 1;
        w.warps[i].arrived = 0;
    }
    for (unsigned i = 0; i < n; i++) {
        w.fibers[i].state = fiber_state::ready;
        prepare(w.fibers[i]);
    }
    w.exited = w.at_barrier = 0;
    for (;;) {
        bool ran = false;
        for (unsigned k = 0; k < n; k++) {
            fiber &f = w.fibers[L.reverse ? n - 1 - k : k];
            if (f.state != fiber_state::ready) continue;
            resume(w, f);
            ran = true;
        }
        if (w.exited == n) return;
        if (!ran) open_barrier_or_die(w);
    }
}

void begin_launch(worker &w, const launch_desc &L) {
    if (w.current) DIE("cuda-emu: a kernel launch from inside a kernel is not emulated");
    w.launch = &L;
    make_stacks(w, L.threads);
    for (unsigned t = 0; t < L.threads; t++) {
        fiber &f = w.fibers[t];
        f.idx = {t % L.block.x, t / L.block.x % L.block.y, t / L.block.x / L.block.y};
        f.linear = t;
    }
    emu::here.block_dim = {L.block.x, L.block.y, L.block.z};
    emu::here.grid_dim = {L.grid.x, L.grid.y, L.grid.z};
    // Exactly the requested size, so ASan catches a read past the end.
    w.dynamic_shared = static_cast<unsigned char *>(
        ::operator new(L.dynamic_shared_bytes, std::align_val_t{64}));
}

void end_launch(worker &w) {
    ::operator delete(w.dynamic_shared, std::align_val_t{64});
    w.dynamic_shared = nullptr;
    w.launch = nullptr;
}

}  // namespace

// --- the interface of cuda_emu.h ------------------------------------------------------------
namespace emu {

void launch(dim3 grid, dim3 block, size_t dynamic_shared_bytes, kernel_body body,
            const void *closure, launch_site site) {
    uint64_t threads = (uint64_t)block.x * block.y * block.z;
    if (block.x == 0 || block.y == 0 || block.z == 0 || block.x > 1024 || block.y > 1024 ||
        block.z > 64 || threads > max_block_threads)
        die_at(site.file, site.line,
               "cuda-emu: kernel launched in %s with block (%u,%u,%u): a block has 1 to 1024 "
               "threads, at most (1024,1024,64)",
               site.function, block.x, block.y, block.z);
    if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.x > 0x7fffffffu || grid.y > 65535 ||
        grid.z > 65535)
        die_at(site.file, site.line,
               "cuda-emu: kernel launched in %s with grid (%u,%u,%u): each dimension is 1 to "
               "(2^31-1, 65535, 65535)",
               site.function, grid.x, grid.y, grid.z);
    if (dynamic_shared_bytes > max_dynamic_shared_bytes)
        die_at(site.file, site.line,
               "cuda-emu: kernel launched in %s with %zu bytes of dynamic shared memory; a "
               "block has at most %zu",
               site.function, dynamic_shared_bytes, max_dynamic_shared_bytes);
    if (dynamic_shared_bytes > default_dynamic_shared_bytes &&
        dynamic_shared_bytes > dynamic_shared_opt_in())
        die_at(site.file, site.line,
               "cuda-emu: kernel launched in %s with %zu bytes of dynamic shared memory, more "
               "than 48 KiB without cudaFuncSetAttribute("
               "cudaFuncAttributeMaxDynamicSharedMemorySize) opting in",
               site.function, dynamic_shared_bytes);
    uint64_t blocks = (uint64_t)grid.x * grid.y * grid.z;
    if (blocks > 0xffffffffu)
        die_at(site.file, site.line, "cuda-emu: kernel launched in %s with %llu blocks; the "
               "emulator runs at most 2^32-1", site.function, (unsigned long long)blocks);
    launch_desc L = {grid, block, (unsigned)threads, dynamic_shared_bytes, body, closure, site,
                     reverse_order()};
    if (blocks == 1) {  // no thread team to wake up
        worker &w = worker_here();
        begin_launch(w, L);
        run_block(w, 0);
        end_launch(w);
        launch_finished();
        return;
    }
    // Block i always runs on OS thread i % threads: with the same thread count every
    // run is the same, down to what one block leaves in static shared memory for the next.
#pragma omp parallel
    {
        worker &w = worker_here();
        begin_launch(w, L);
#pragma omp for schedule(static, 1)
        for (long long i = 0; i < (long long)blocks; i++) run_block(w, (unsigned)i);
        end_launch(w);
    }
    launch_finished();
}

void sync_threads(const char *file, int line) {
    worker *w = this_worker.get();
    fiber &f = current_fiber(w, "__syncthreads", file, line);
    f.state = fiber_state::at_barrier;
    f.wait_file = file;
    f.wait_line = line;
    w->at_barrier++;
    yield(*w, f);
}

uint64_t warp_collective(const warp_request &r) {
    worker *w = this_worker.get();
    fiber &f = current_fiber(w, op_name(r.op), r.file, r.line);
    unsigned warp_index = f.linear / 32, lane = f.linear % 32;
    if (!(r.mask >> lane & 1))
        die_at(r.file, r.line, "cuda-emu: %s with mask 0x%08x called by lane %u, which is not "
               "in the mask", op_name(r.op), r.mask, lane);
    if (r.width < 1 || r.width > 32 || (r.width & (r.width - 1)))
        die_at(r.file, r.line, "cuda-emu: %s with width %d: must be a power of 2 up to 32",
               op_name(r.op), r.width);
    warp &wp = w->warps[warp_index];
    wp.lanes[lane].request = r;
    wp.arrived |= 1u << lane;
    f.state = fiber_state::at_warp_op;
    f.wait_file = r.file;
    f.wait_line = r.line;
    try_complete(*w, warp_index, r.mask);
    if (f.state != fiber_state::ready) yield(*w, f);
    return wp.lanes[lane].result;
}

unsigned active_lanes(void) {
    worker *w = this_worker.get();
    fiber &f = current_fiber(w, "__activemask", __FILE__, __LINE__);
    return w->warps[f.linear / 32].live;
}

void fill_garbage_pattern(void *p, size_t bytes) {
    fill_garbage(static_cast<unsigned char *>(p), bytes, 0);
}

}  // namespace emu

void *emu_dynamic_shared(void) {
    worker *w = this_worker.get();
    current_fiber(w, "emu_dynamic_shared", __FILE__, __LINE__);
    return w->dynamic_shared;
}

extern "C" void emu_set_reverse_order(bool reverse) { order_setting.store(reverse ? 1 : 0); }
extern "C" bool emu_reverse_order(void) { return reverse_order(); }
