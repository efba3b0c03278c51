#include "train/lr_schedule.h"

#include <math.h>
#include <stdbool.h>

const char *const lr_schedule_names[] = {"constant", "constant_with_warmup", "linear", "cosine",
                                         "cosine_with_restarts", "polynomial", 0};

static double warmup_factor(const lr_schedule *s, int step) {
    return (double)step / (double)(s->warmup_steps > 1 ? s->warmup_steps : 1);
}

// Progress through the steps after warmup, in [0, 1] and beyond.
static double progress(const lr_schedule *s, int step) {
    int span = s->total_steps - s->warmup_steps;
    return (double)(step - s->warmup_steps) / (double)(span > 1 ? span : 1);
}

static double multiplier(const lr_schedule *s, int step) {
    bool warming = step < s->warmup_steps;
    switch (s->kind) {
    case LR_CONSTANT: return 1.0;
    case LR_CONSTANT_WITH_WARMUP: return warming ? warmup_factor(s, step) : 1.0;
    case LR_LINEAR: {
        if (warming) return warmup_factor(s, step);
        int span = s->total_steps - s->warmup_steps;
        return fmax(0.0, (double)(s->total_steps - step) / (double)(span > 1 ? span : 1));
    }
    case LR_COSINE:
        if (warming) return warmup_factor(s, step);
        return fmax(0.0, 0.5 * (1.0 + cos(M_PI * s->num_cycles * 2.0 * progress(s, step))));
    case LR_COSINE_WITH_RESTARTS: {
        if (warming) return warmup_factor(s, step);
        double p = progress(s, step);
        if (p >= 1.0) return 0.0;
        return fmax(0.0, 0.5 * (1.0 + cos(M_PI * fmod(s->num_cycles * p, 1.0))));
    }
    case LR_POLYNOMIAL: {
        if (warming) return warmup_factor(s, step);
        if (step > s->total_steps) return s->lr_end / s->base_lr;
        double range = s->base_lr - s->lr_end;
        double remaining = 1.0 - (double)(step - s->warmup_steps) / (double)(s->total_steps - s->warmup_steps);
        return (range * pow(remaining, s->power) + s->lr_end) / s->base_lr;
    }
    }
    return 1.0;
}

double lr_at(const lr_schedule *s, int step) { return s->base_lr * multiplier(s, step); }
