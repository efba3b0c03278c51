// The CUDA emulator's own tests: its self-test kernels (kernels/emu/emu_selftest.cu),
// proof that a missing __syncthreads gives a wrong answer in either schedule order, and
// misuses that must stop the program, each run in a child process.
#include "tests/test.h"

#ifdef SDFT_HAVE_EMU
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kernels/emu/emu.h"

// Runs death case i in a child with stderr captured; the child must stop with a
// message containing the expected text.
static void expect_death(int i) {
    test_begin("emu/stops on %s", emu_selftest_death_name(i));
    int pipe_fds[2];
    CHECK(pipe(pipe_fds) == 0, "pipe");
    fflush(stdout);
    fflush(stderr);
    pid_t child = fork();
    CHECK(child >= 0, "fork");
    if (child == 0) {
        dup2(pipe_fds[1], 2);
        close(pipe_fds[0]);
        emu_selftest_death_run(i);
        _exit(0);  // it should not have come back
    }
    close(pipe_fds[1]);
    char message[4096];
    size_t got = 0;
    ssize_t n;
    while ((n = read(pipe_fds[0], message + got, sizeof message - 1 - got)) > 0) got += (size_t)n;
    message[got] = 0;
    close(pipe_fds[0]);
    int status = 0;
    waitpid(child, &status, 0);
    EXPECT(!(WIFEXITED(status) && WEXITSTATUS(status) == 0), "the program went on");
    EXPECT(strstr(message, emu_selftest_death_expect(i)) != NULL, "message lacks \"%s\": %s",
           emu_selftest_death_expect(i), message);
    test_end();
}

void suite_emu(void) {
    test_begin("emu/self-test kernels in thread and reversed order");
    int failures = emu_selftest_run();
    EXPECT(failures == 0, "%d self-test checks failed", failures);
    test_end();

    test_begin("emu/missing __syncthreads gives a wrong answer in thread order");
    EXPECT(emu_selftest_missing_barrier() == 1, "a tiled kernel without a barrier was right");
    test_end();

    test_begin("emu/missing __syncthreads gives a wrong answer in reversed order");
    EXPECT(emu_selftest_missing_barrier_reverse() == 1, "a tiled kernel without a barrier was right");
    test_end();

    for (int i = 0; i < emu_selftest_death_cases(); i++) expect_death(i);
}
#else
void suite_emu(void) {
    test_begin("emu");
    test_skip("this build has no CUDA sources, so no emulator");
    test_end();
}
#endif
