// The test runner: `run_tests [PREFIX...]` runs the suites whose name starts with
// one of the prefixes (all but the long ones when none; those run only when named
// in full, as make test-full does); `run_tests --list-op-cases` prints the op
// harness's cases as JSON for tools/golden/ops.py.
#include <stdio.h>
#include <string.h>

#include "tests/harness.h"
#include "tests/test.h"

extern int tests_passed, tests_failed, tests_skipped;

static const struct {
    const char *name;
    void (*run)(void);
    bool only_when_named;  // long checks outside make test
} suites[] = {
    {"rng", suite_rng, false},           {"tensor", suite_tensor, false},
    {"autograd", suite_autograd, false}, {"safetensors", suite_safetensors, false},
    {"emu", suite_emu, false},           {"planted", suite_planted, false},
    {"ops", suite_ops, false},           {"golden", suite_golden, false},
    {"tokenizer", suite_tokenizer, false}, {"models", suite_models, false},
    {"png", suite_png, false},
    {"data", suite_data, false},
    {"config", suite_config, false},
    {"schedulers", suite_schedulers, false},
    {"pipeline", suite_pipeline, false},
    {"train", suite_train, false},
    {"lora", suite_lora, false},
    {"full", suite_full, true},
};

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "--list-op-cases") == 0) {
        harness_print_cases_json(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof suites / sizeof suites[0]; i++) {
        bool selected = argc == 1 && !suites[i].only_when_named;
        for (int a = 1; a < argc; a++)
            selected |= suites[i].only_when_named ? strcmp(suites[i].name, argv[a]) == 0
                                                  : strncmp(suites[i].name, argv[a], strlen(argv[a])) == 0;
        if (!selected) continue;
        printf("== %s\n", suites[i].name);
        suites[i].run();
    }
    printf("%d passed, %d failed, %d skipped\n", tests_passed, tests_failed, tests_skipped);
    return tests_failed ? 1 : 0;
}
