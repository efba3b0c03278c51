#include "core/plot.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/check.h"
#include "core/draw.h"

enum { MAX_TICKS = 12 };

// A value axis: its range, drawn from lo to hi (log10 of both when logarithmic), and
// its ticks.
typedef struct {
    double lo, hi, step;
    bool log;
    int n_ticks;
    double ticks[MAX_TICKS + 2];
} axis;

// The smallest of 1, 2 and 5 times a power of ten that splits span into at most
// `count` parts (span > 0 and finite).
static double nice_step(double span, int count) {
    double raw = span / count, unit = pow(10, floor(log10(raw)));
    double m = raw / unit;
    return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * unit;
}

// A linear axis over the finite values of [lo, hi], widened to whole ticks. A range
// with no width (one value, or all equal) is widened by 10% of the value (1 for 0),
// so that it has ticks and the line a place in the middle.
static axis linear_axis(double lo, double hi, int count) {
    if (!(lo <= hi)) lo = 0, hi = 1;  // nothing finite
    double pad = fabs(lo) > 0 ? 0.1 * fabs(lo) : 1;
    if (hi - lo <= 1e-9 * fmax(fabs(lo), fabs(hi))) lo -= pad, hi += pad;
    axis a = {.step = nice_step(hi - lo, count)};
    a.lo = floor(lo / a.step) * a.step, a.hi = ceil(hi / a.step) * a.step;
    for (double t = a.lo; t <= a.hi + a.step / 2 && a.n_ticks < MAX_TICKS + 2; t += a.step) a.ticks[a.n_ticks++] = t;
    return a;
}

// A logarithmic axis over [lo, hi] (both positive), from one power of ten to another,
// with a tick every `step` decades.
static axis log_axis(double lo, double hi, int count) {
    axis a = {.log = true, .lo = floor(log10(lo)), .hi = ceil(log10(hi))};
    if (a.hi == a.lo) a.hi++;
    a.step = ceil((a.hi - a.lo) / count);
    for (double e = a.lo; e <= a.hi && a.n_ticks < MAX_TICKS + 2; e += a.step) a.ticks[a.n_ticks++] = pow(10, e);
    return a;
}

// Where v falls on the axis, 0 at lo and 1 at hi.
static double axis_pos(const axis *a, double v) {
    return ((a->log ? log10(v) : v) - a->lo) / (a->hi - a->lo);
}

// A tick's value with as many digits as the step needs to tell ticks apart.
static void tick_label(char *out, size_t len, const axis *a, double v) {
    if (a->log) {
        snprintf(out, len, "%g", v);
        return;
    }
    if (fabs(v) < a->step * 1e-6) v = 0;  // not 1e-17 for the tick at zero
    int digits = (int)floor(log10(fmax(fabs(v), a->step))) - (int)floor(log10(a->step)) + 1;
    snprintf(out, len, "%.*g", digits < 1 ? 1 : digits > 12 ? 12 : digits, v);
}

// Text turned a quarter to the left, centered on (x, y).
static void draw_text_vertical(cairo_t *cr, double x, double y, const char *text) {
    cairo_save(cr);
    cairo_translate(cr, x, y);
    cairo_rotate(cr, -M_PI / 2);
    draw_text(cr, 0, 0, 0, text);
    cairo_restore(cr);
}

typedef struct {
    double left, top, width, height;
} box;

static double box_y(const box *b, const axis *a, double v) { return b->top + (1 - axis_pos(a, v)) * b->height; }

// A curve of n values against steps 1..n (x from step_lo to step_hi), broken where a
// value is not finite; a lone point is drawn as a dot.
static void draw_curve(cairo_t *cr, const box *b, const axis *y, const double *v, int n, double step_lo,
                       double step_hi) {
    bool open = false;
    for (int i = 0; i < n; i++) {
        if (!isfinite(v[i]) || (y->log && v[i] <= 0)) {
            open = false;
            continue;
        }
        double px = b->left + (i + 1 - step_lo) / (step_hi - step_lo) * b->width, py = box_y(b, y, v[i]);
        bool alone = !open && (i + 1 >= n || !isfinite(v[i + 1]));
        if (alone) {
            cairo_stroke(cr);
            cairo_arc(cr, px, py, 2.5, 0, 2 * M_PI);
            cairo_fill(cr);
        } else if (open) {
            cairo_line_to(cr, px, py);
        } else {
            cairo_move_to(cr, px, py);
        }
        open = !alone;
    }
    cairo_stroke(cr);
}

static void legend_entry(cairo_t *cr, double x, double y, const char *text, bool dashed) {
    double dash = 6;
    cairo_set_dash(cr, &dash, dashed, 0);
    cairo_move_to(cr, x, y - 4), cairo_line_to(cr, x + 24, y - 4);
    cairo_stroke(cr);
    cairo_set_dash(cr, NULL, 0, 0);
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    draw_text(cr, x + 30, y, -1, text);
}

image_u8 plot_loss(const float *loss, const double *lr, int n, int width, int height, float ema, const char *title) {
    CHECK(n >= 1 && width >= 320 && height >= 200 && ema > 0 && ema < 1, "plot_loss: %d values on %dx%d, ema %g", n,
          width, height, ema);
    // The values in double, the moving average over the finite ones, and their range.
    double *raw = xmalloc((size_t)n * sizeof *raw), *avg = xmalloc((size_t)n * sizeof *avg);
    double lo = INFINITY, hi = -INFINITY, lr_hi = 0, mean = NAN;
    for (int i = 0; i < n; i++) {
        raw[i] = loss[i];
        if (isfinite(raw[i])) {
            lo = fmin(lo, raw[i]), hi = fmax(hi, raw[i]);
            mean = isnan(mean) ? raw[i] : ema * mean + (1 - ema) * raw[i];
        }
        avg[i] = mean;
        if (lr && isfinite(lr[i])) lr_hi = fmax(lr_hi, lr[i]);
    }
    axis y = lo > 0 && hi / lo > 100 ? log_axis(lo, hi, 6) : linear_axis(lo, hi, 6);
    axis y_lr = linear_axis(0, lr_hi > 0 ? lr_hi : 1, 6);
    // Steps 1..n along the bottom (0..2 for a single step, so its point is centered),
    // ticks at whole steps.
    double step_lo = n > 1 ? 1 : 0, step_hi = n > 1 ? n : 2;
    double x_step = fmax(1, nice_step(step_hi - step_lo, 8));

    cairo_t *cr = draw_new(width, height, 1, 1, 1);
    box b = {.left = 80, .top = 44, .width = width - 80 - (lr ? 84 : 24), .height = height - 44 - 56};
    char label[64];

    // Grid, ticks and their values.
    cairo_set_line_width(cr, 1);
    draw_font(cr, 11, false);
    for (int i = 0; i < y.n_ticks; i++) {
        double py = round(box_y(&b, &y, y.ticks[i])) + 0.5;
        cairo_set_source_rgb(cr, 0.88, 0.88, 0.88);
        cairo_move_to(cr, b.left, py), cairo_line_to(cr, b.left + b.width, py);
        cairo_stroke(cr);
        cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
        cairo_move_to(cr, b.left - 5, py), cairo_line_to(cr, b.left, py);
        cairo_stroke(cr);
        tick_label(label, sizeof label, &y, y.ticks[i]);
        draw_text(cr, b.left - 8, py + 4, 1, label);
    }
    for (double s = ceil(step_lo / x_step) * x_step; s <= step_hi; s += x_step) {
        if (s < 1 || s > n) continue;  // no step 0 (nor 2) for a single step
        double px = round(b.left + (s - step_lo) / (step_hi - step_lo) * b.width) + 0.5;
        cairo_set_source_rgb(cr, 0.88, 0.88, 0.88);
        cairo_move_to(cr, px, b.top), cairo_line_to(cr, px, b.top + b.height);
        cairo_stroke(cr);
        cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
        cairo_move_to(cr, px, b.top + b.height), cairo_line_to(cr, px, b.top + b.height + 5);
        cairo_stroke(cr);
        snprintf(label, sizeof label, "%.0f", s);
        draw_text(cr, px, b.top + b.height + 18, 0, label);
    }
    if (lr)
        for (int i = 0; i < y_lr.n_ticks; i++) {
            double py = round(box_y(&b, &y_lr, y_lr.ticks[i])) + 0.5, right = b.left + b.width;
            cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
            cairo_move_to(cr, right, py), cairo_line_to(cr, right + 5, py);
            cairo_stroke(cr);
            tick_label(label, sizeof label, &y_lr, y_lr.ticks[i]);
            draw_text(cr, right + 8, py + 4, -1, label);
        }

    // The curves, clipped to the box: the rate under the losses.
    cairo_save(cr);
    cairo_rectangle(cr, b.left, b.top, b.width, b.height);
    cairo_clip(cr);
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
    if (lr) {
        double dash = 6;
        cairo_set_dash(cr, &dash, 1, 0);
        cairo_set_source_rgb(cr, 0.9, 0.5, 0.1);
        cairo_set_line_width(cr, 1.5);
        draw_curve(cr, &b, &y_lr, lr, n, step_lo, step_hi);
        cairo_set_dash(cr, NULL, 0, 0);
    }
    cairo_set_source_rgb(cr, 0.63, 0.75, 0.92);
    cairo_set_line_width(cr, 1.2);
    draw_curve(cr, &b, &y, raw, n, step_lo, step_hi);
    cairo_set_source_rgb(cr, 0.08, 0.24, 0.63);
    cairo_set_line_width(cr, 2);
    draw_curve(cr, &b, &y, avg, n, step_lo, step_hi);
    cairo_restore(cr);

    // The frame, axis names, title and legend.
    cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
    cairo_set_line_width(cr, 1);
    cairo_rectangle(cr, b.left + 0.5, b.top + 0.5, b.width - 1, b.height - 1);
    cairo_stroke(cr);
    draw_font(cr, 13, false);
    draw_text(cr, b.left + b.width / 2, height - 12, 0, "step");
    draw_text_vertical(cr, 20, b.top + b.height / 2, y.log ? "loss (log scale)" : "loss");
    if (lr) draw_text_vertical(cr, width - 14, b.top + b.height / 2, "learning rate");
    draw_font(cr, 15, true);
    draw_text(cr, width / 2.0, 28, 0, title);

    draw_font(cr, 11, false);
    snprintf(label, sizeof label, "moving average (%g)", ema);
    double legend_w = 30 + draw_text_width(cr, label) + 12, legend_h = lr ? 58 : 40;
    double lx = b.left + b.width - legend_w - 8, ly = b.top + 8;
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_rectangle(cr, lx, ly, legend_w, legend_h);
    cairo_fill_preserve(cr);
    cairo_set_source_rgb(cr, 0.7, 0.7, 0.7);
    cairo_stroke(cr);
    cairo_set_line_width(cr, 2);
    cairo_set_source_rgb(cr, 0.63, 0.75, 0.92);
    legend_entry(cr, lx + 6, ly + 16, "loss", false);
    cairo_set_source_rgb(cr, 0.08, 0.24, 0.63);
    legend_entry(cr, lx + 6, ly + 34, label, false);
    if (lr) {
        cairo_set_source_rgb(cr, 0.9, 0.5, 0.1);
        legend_entry(cr, lx + 6, ly + 52, "learning rate", true);
    }
    free(raw), free(avg);
    return draw_finish(cr, 3);
}
