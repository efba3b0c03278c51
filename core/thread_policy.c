// Every program's OpenMP threads wait passively unless the user chooses otherwise.
//
// libgomp's idle threads spin (300000 rounds by default) before they sleep. When other
// processes want the cores, the spinning threads burn the time slices that the threads
// with work need: beside two busy processes on 2 cores, a render of the tiny model used
// 3 to 60 times the CPU time of a quiet one (a 1 s render took 31 s, a 128 px one 4
// minutes), while with OMP_WAIT_POLICY=passive it used the same. libgomp reads that
// variable once, in its own constructor, before main() runs, so a program cannot set
// it for itself at run time; and not from a .preinit_array function with setenv()
// either: those run before the C library's own initialisation, which then points
// `environ` back at the initial environment, before libgomp's constructor reads it.
//
// So the function below, which runs before any library is initialised, executes the
// program again (same binary, same arguments) with OMP_WAIT_POLICY=passive added to
// its environment, when the user has set neither OMP_WAIT_POLICY nor GOMP_SPINCOUNT: a
// policy the user sets wins (active waiting is the faster one on a machine of one's own).
// Child processes inherit the variable, as they would an exported one. Whoever debugs
// or runs a program under valgrind sets OMP_WAIT_POLICY to skip the second exec.
//
// Nothing calls into this file, and the linker leaves out archive members nobody
// references: the Makefile links every program with
// --require-defined=thread_policy_preinit.
#include <string.h>
#include <sys/auxv.h>
#include <unistd.h>

void thread_policy_preinit(int argc, char **argv, char **envp);

static int env_has(char **envp, const char *name) {
    size_t n = strlen(name);
    for (char **e = envp; *e; e++)
        if (strncmp(*e, name, n) == 0 && (*e)[n] == '=') return 1;
    return 0;
}

void thread_policy_preinit(int argc, char **argv, char **envp) {
    if (!envp || env_has(envp, "OMP_WAIT_POLICY") || env_has(envp, "GOMP_SPINCOUNT")) return;
    // Started as `ld.so PROGRAM` (no interpreter, so no AT_BASE): /proc/self/exe is the
    // loader, which would not know what to run.
    if (getauxval(AT_BASE) == 0) return;
    size_t count = 0;
    while (envp[count]) count++;
    static char passive[] = "OMP_WAIT_POLICY=passive";
    char *with_policy[count + 2];
    memcpy(with_policy, envp, count * sizeof *envp);
    with_policy[count] = passive;
    with_policy[count + 1] = NULL;
    execve("/proc/self/exe", argv, with_policy);
    // Only returns when there is no /proc: the program runs with libgomp's default.
}

__attribute__((section(".preinit_array"), used)) static void (*preinit_entry)(int, char **, char **) =
    thread_policy_preinit;
