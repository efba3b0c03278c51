// sdft-train: DreamBooth-LoRA training from a YAML run config (make train).
//
//   build/sdft-train --config configs/demo.yaml [section.key=value ...]
//
// See docs/training.md for the config and what the run writes.
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/args.h"
#include "core/check.h"
#include "train/trainer.h"

static void usage(FILE *f) {
    fputs("usage: sdft-train --config FILE [section.key=value ...] [options]\n"
          "\n"
          "Trains LoRA adapters DreamBooth-style on the photos in data.instance_dir, with\n"
          "prior preservation on class images it generates, and writes them (diffusers/PEFT\n"
          "and kohya layouts), training states, metrics, a loss curve and validation grids\n"
          "to output.dir. key=value arguments override the file (e.g. train.steps=200).\n"
          "\n"
          "  --config FILE      the run config (YAML; docs/training.md)\n"
          "  --stop-after N     stop after N steps of this run, saving the state (continue\n"
          "                     with train.resume=latest)\n"
          "  --quiet            no progress bar\n"
          "  --help-config      every config key with its default and meaning\n"
          "  --help             this text\n",
          f);
}

int main(int argc, char **argv) {
    const char *config = NULL;
    train_options opt = {.show_progress = isatty(STDERR_FILENO)};
    static const struct option longopts[] = {{"config", required_argument, 0, 'c'},
                                              {"stop-after", required_argument, 0, 's'},
                                              {"quiet", no_argument, 0, 'q'},
                                              {"help-config", no_argument, 0, 'H'},
                                              {"help", no_argument, 0, 'h'},
                                              {0, 0, 0, 0}};
    for (int c; (c = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1;) {
        switch (c) {
        case 'c': config = optarg; break;
        case 's':
            if (arg_field(&opt.stop_after, "--stop-after", optarg, run_config_field("train.steps"))) {
                fprintf(stderr, "sdft-train: %s\n", err_msg());
                return 2;
            }
            break;
        case 'q': opt.show_progress = false; break;
        case 'H': config_print_help(stdout, &run_config_schema); return 0;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!config) {
        fprintf(stderr, "sdft-train: --config FILE is required (see --help)\n");
        return 2;
    }
    run_config cfg;
    int rc = run_config_read(&cfg, config, argc - optind, argv + optind);
    if (rc == 0) rc = train_run(&cfg, &opt);
    if (rc) fprintf(stderr, "sdft-train: %s\n", err_msg());
    config_free(&run_config_schema, &cfg);
    return rc ? 1 : 0;
}
