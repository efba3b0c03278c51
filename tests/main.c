// The test runner: `run_tests [PREFIX...]` runs the suites whose name starts with
// one of the prefixes (all but the long ones when none; those run only when named
// in full, as make test-full does); `run_tests --list-op-cases` prints the op
// harness's cases as JSON for tools/golden/ops.py. An argument that selects no
// suite is an error (exit status 2).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/files.h"
#include "tests/harness.h"
#include "tests/test.h"

extern int tests_passed, tests_failed, tests_skipped;

static void suite_runner(void);

// The CLIP tokenizer folder the build derives from ../shared/data/clip (not in the tree):
// suites that read it are SKIPPED, with the reason, where it was not made (a machine
// without ../shared).
#define TOKENIZER "clip-tokenizer/vocab.json"
static const char *const reads_tokenizer[] = {"tokenizer", "pipeline", "train", "eval"};

static bool needs_tokenizer(const char *suite) {
    for (size_t i = 0; i < sizeof reads_tokenizer / sizeof *reads_tokenizer; i++)
        if (strcmp(reads_tokenizer[i], suite) == 0) return true;
    return false;
}

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
    {"eval", suite_eval, false},
    {"cli", suite_cli, false},
    {"lora", suite_lora, false},
    {"full", suite_full, true},
    {"runner", suite_runner, false},
};

static const size_t n_suites = sizeof suites / sizeof suites[0];

// Whether the argument selects suite i: a prefix of its name, or a long suite's
// whole name.
static bool selects(const char *arg, size_t i) {
    return suites[i].only_when_named ? strcmp(suites[i].name, arg) == 0
                                     : strncmp(suites[i].name, arg, strlen(arg)) == 0;
}

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "--list-op-cases") == 0) {
        harness_print_cases_json(stdout);
        return 0;
    }
    // A name that selects nothing is a typo, not a pass: refuse it before running
    // anything.
    for (int a = 1; a < argc; a++) {
        bool used = false;
        for (size_t i = 0; i < n_suites; i++) used |= selects(argv[a], i);
        if (!used) {
            char names[512] = "";
            for (size_t i = 0; i < n_suites; i++)
                snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", i ? ", " : "",
                         suites[i].name);
            fprintf(stderr, "run_tests: \"%s\" names no suite (the suites: %s)\n", argv[a], names);
            return 2;
        }
    }
    for (size_t i = 0; i < n_suites; i++) {
        bool selected = argc == 1 && !suites[i].only_when_named;
        for (int a = 1; a < argc; a++) selected |= selects(argv[a], i);
        if (!selected) continue;
        printf("== %s\n", suites[i].name);
        char needed[1024];
        if (needs_tokenizer(suites[i].name) &&
            access(path_beside_program(needed, sizeof needed, TOKENIZER), R_OK) != 0) {
            test_begin("%s", suites[i].name);
            test_skip("the suite reads %s, which is absent (the build derives it from ../shared/data/clip)", needed);
            test_end();
            continue;
        }
        suites[i].run();
    }
    printf("%d passed, %d failed, %d skipped\n", tests_passed, tests_failed, tests_skipped);
    return tests_failed ? 1 : 0;
}

// --- the runner's own checks ----------------------------------------------------------------

// This binary run with args (output to the scratch folder): its exit status and
// what it printed.
static int run_self(const char *args, char **output) {
    char self[4096], cmd[8192];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    CHECK(n > 0, "cannot read /proc/self/exe");
    self[n] = '\0';
    const char *out = scratch_path("runner.out");
    snprintf(cmd, sizeof cmd, "'%s' %s >'%s' 2>&1", self, args, out);
    int status = system(cmd);
    *output = (char *)read_whole(out, NULL);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void suite_runner(void) {
    test_begin("runner: a name that selects no suite fails, naming it, before any suite runs");
    char *output;
    int rc = run_self("nosuchsuite", &output);
    EXPECT(rc == 2 && strstr(output, "run_tests: \"nosuchsuite\" names no suite (the suites: rng, "),
           "exit %d, output:\n%s", rc, output);
    free(output);
    // Also beside a good name, and for a long suite named by a prefix only.
    rc = run_self("rng ful", &output);
    EXPECT(rc == 2 && strstr(output, "\"ful\" names no suite") && !strstr(output, "== rng"),
           "exit %d, output:\n%s", rc, output);
    free(output);
    test_end();
}
