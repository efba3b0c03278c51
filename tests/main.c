// The test runner: `run_tests [PREFIX...]` runs the suites whose name starts with
// one of the prefixes (all when none); `run_tests --list-op-cases` prints the op
// harness's cases as JSON for tools/golden/ops.py.
#include <stdio.h>
#include <string.h>

#include "tests/harness.h"
#include "tests/test.h"

extern int tests_passed, tests_failed, tests_skipped;

static const struct {
    const char *name;
    void (*run)(void);
} suites[] = {
    {"rng", suite_rng},           {"tensor", suite_tensor}, {"autograd", suite_autograd},
    {"safetensors", suite_safetensors}, {"emu", suite_emu}, {"planted", suite_planted},
    {"ops", suite_ops}, {"golden", suite_golden},
};

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "--list-op-cases") == 0) {
        harness_print_cases_json(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof suites / sizeof suites[0]; i++) {
        bool selected = argc == 1;
        for (int a = 1; a < argc; a++) selected |= strncmp(suites[i].name, argv[a], strlen(argv[a])) == 0;
        if (!selected) continue;
        printf("== %s\n", suites[i].name);
        suites[i].run();
    }
    printf("%d passed, %d failed, %d skipped\n", tests_passed, tests_failed, tests_skipped);
    return tests_failed ? 1 : 0;
}
