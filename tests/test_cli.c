// suite_cli: the programs' arguments. Every number argument of sdft-sample,
// sdft-eval and sdft-train is read whole, finite and in range (sdft-sample's take
// the ranges of the config keys they stand for: --width is validation.width), and
// prompts must be UTF-8; anything else stops the program at once with exit status 2
// and one line that names the argument. The model given does not exist, so a
// program that let a bad argument through reports that instead (or runs).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "core/files.h"
#include "tests/test.h"

// Runs "program args"; its exit status (-1 when it did not exit) and stderr (caller frees).
static int run_program(const char *program, const char *args, char **err) {
    char path[1024], cmd[4096];
    path_beside_program(path, sizeof path, program);
    snprintf(cmd, sizeof cmd, "timeout 60 '%s' %s > /dev/null 2> '%s'", path, args, scratch_path("cli.stderr"));
    int status = system(cmd);
    *err = NULL;
    read_text_file(scratch_path("cli.stderr"), err, NULL);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static bool one_line(const char *text) {
    size_t len = text ? strlen(text) : 0;
    return len > 1 && text[len - 1] == '\n' && !memchr(text, '\n', len - 1);
}

static void test_refusals(void) {
    static const struct {
        const char *program, *args, *named, *says;
    } cases[] = {
        {"sdft-sample", "--cfg nan", "--cfg", "a number from 0 to 100"},
        {"sdft-sample", "--cfg inf", "--cfg", "a number"},
        {"sdft-sample", "--cfg 1e999", "--cfg", "a number"},
        {"sdft-sample", "--cfg 0x10", "--cfg", "a number"},
        {"sdft-sample", "--cfg 101", "--cfg", "from 0 to 100"},
        {"sdft-sample", "--cfg ''", "--cfg", "a number"},
        {"sdft-sample", "--cfg 7.5x", "--cfg", "\"7.5x\""},
        {"sdft-sample", "--steps 0", "--steps", "an integer from 1 to 1000"},
        {"sdft-sample", "--steps 2.5", "--steps", "an integer"},
        {"sdft-sample", "--steps 100000", "--steps", "from 1 to 1000"},
        {"sdft-sample", "--seed -1", "--seed", "an integer from 0 to"},
        {"sdft-sample", "--seed 99999999999999999999", "--seed", "an integer"},
        {"sdft-sample", "--width 65536", "--width", "from 8 to 8192"},
        {"sdft-sample", "--height 65536", "--height", "from 8 to 8192"},
        {"sdft-sample", "--width ' 64'", "--width", "an integer"},
        {"sdft-sample", "--batch 0", "--batch", "from 1 to 64"},
        {"sdft-sample", "--clip-skip 0", "--clip-skip", "from 1 to 48"},
        {"sdft-sample", "--lora x.safetensors:nan", "--lora FILE:SCALE", "a number from -10 to 10"},
        {"sdft-sample", "--lora x.safetensors:inf", "--lora FILE:SCALE", "a number"},
        {"sdft-sample", "--lora x.safetensors:1e6", "--lora FILE:SCALE", "from -10 to 10"},
        {"sdft-sample", "--sampler dpm_fast", "--sampler", "unknown sampler"},
        {"sdft-sample", "--prompt \"$(printf 'caf\\351')\"", "--prompt", "not valid UTF-8 text (byte 3)"},
        {"sdft-sample", "--prompt dog --negative-prompt \"$(printf '\\303')\"", "--negative-prompt", "not valid UTF-8"},
        {"sdft-eval", "--adapter x --draws 0", "--draws", "an integer from 1 to 1000"},
        {"sdft-eval", "--adapter x --draws nan", "--draws", "an integer"},
        {"sdft-eval", "--adapter x --seed 12abc", "--seed", "an integer"},
        {"sdft-train", "--stop-after 0", "--stop-after", "an integer from 1 to"},
        {"sdft-train", "--stop-after 1e3", "--stop-after", "an integer"},
        {"sdft-train", "--stop-after -5", "--stop-after", "an integer"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        test_begin("cli: %s %s is refused at once, naming %s", cases[i].program, cases[i].args, cases[i].named);
        char args[1024], *err;
        bool sample = strcmp(cases[i].program, "sdft-sample") == 0;
        // Everything else a run needs, so only the bad argument can stop it (the
        // model does not exist: a program that let the argument through fails there).
        snprintf(args, sizeof args, "%s %s %s", sample ? "--model /nonexistent/model" : "--config /nonexistent.yaml",
                 sample && !strstr(cases[i].args, "--prompt") ? "--prompt dog" : "", cases[i].args);
        int status = run_program(cases[i].program, args, &err);
        EXPECT(status == 2 && one_line(err) && strstr(err, cases[i].named) && strstr(err, cases[i].says),
               "status %d, stderr: %s", status, err ? err : "");
        free(err);
        test_end();
    }
}

void suite_cli(void) { test_refusals(); }
