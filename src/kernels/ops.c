#include "kernels/ops.h"

#include <math.h>

void pv_rmsnorm(float *out, const float *x, const float *w, int n, float eps) {
    double ss = 0.0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float scale = (float)(1.0 / sqrt(ss / n + eps));
    for (int i = 0; i < n; i++) out[i] = x[i] * scale * w[i];
}

void pv_softmax(float *x, int n) {
    float max = x[0];
    for (int i = 1; i < n; i++)
        if (x[i] > max) max = x[i];
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - max);
        sum += x[i];
    }
    float inv = (float)(1.0 / sum);
    for (int i = 0; i < n; i++) x[i] *= inv;
}

void pv_rope_pairs(float *x, int n_rot, int pos, float base) {
    for (int i = 0; i < n_rot; i += 2) {
        float theta = (float)pos * powf(base, -(float)i / (float)n_rot);
        float c = cosf(theta), s = sinf(theta);
        float x0 = x[i], x1 = x[i + 1];
        x[i] = x0 * c - x1 * s;
        x[i + 1] = x0 * s + x1 * c;
    }
}

void pv_swiglu(float *a, const float *b, int n) {
    for (int i = 0; i < n; i++) a[i] = a[i] / (1.0f + expf(-a[i])) * b[i];
}

void pv_add(float *y, const float *x, int n) {
    for (int i = 0; i < n; i++) y[i] += x[i];
}
