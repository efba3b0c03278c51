// Learning-rate schedules as diffusers' get_scheduler defines them (LambdaLR
// multipliers of the base rate, computed in double as Python does).
#pragma once

typedef enum {
    LR_CONSTANT,
    LR_CONSTANT_WITH_WARMUP,
    LR_LINEAR,
    LR_COSINE,
    LR_COSINE_WITH_RESTARTS,
    LR_POLYNOMIAL,
} lr_kind;

// The names, in lr_kind order, NULL-terminated (the config's choices).
extern const char *const lr_schedule_names[];

typedef struct {
    lr_kind kind;
    double base_lr;
    int warmup_steps;
    int total_steps;
    double num_cycles;  // cosine: 0.5 by default; cosine_with_restarts: 1 (restarts)
    double power;       // polynomial
    double lr_end;      // polynomial's final rate (diffusers' default 1e-7)
} lr_schedule;

// The rate at optimizer step `step` (0-based, as the scheduler has stepped `step` times).
double lr_at(const lr_schedule *s, int step);
