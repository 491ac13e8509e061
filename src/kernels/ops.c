#include "kernels/ops.h"

#include <math.h>

#include "base/fp16.h"

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

void pv_rope_angles(float *cs, int n_rot, int pos, float base, const float *ff, float mscale) {
    float theta_scale = powf(base, -2.0f / (float)n_rot), theta = (float)pos;
    for (int i = 0; i < n_rot / 2; i++) {
        float t = ff ? theta / ff[i] : theta;
        cs[2 * i] = cosf(t) * mscale;
        cs[2 * i + 1] = sinf(t) * mscale;
        theta *= theta_scale;
    }
}

void pv_rope_apply(float *x, int n_rot, const float *cs, int neox) {
    int half = n_rot / 2;
    for (int i = 0; i < half; i++) {
        float *a = neox ? &x[i] : &x[2 * i], *b = neox ? &x[i + half] : &x[2 * i + 1];
        float c = cs[2 * i], s = cs[2 * i + 1], x0 = *a, x1 = *b;
        *a = x0 * c - x1 * s;
        *b = x0 * s + x1 * c;
    }
}

void pv_swiglu(float *a, const float *b, int n) {
    for (int i = 0; i < n; i++) a[i] = a[i] / (1.0f + expf(-a[i])) * b[i];
}

void pv_add(float *y, const float *x, int n) {
    for (int i = 0; i < n; i++) y[i] += x[i];
}

void pv_attn_fold_ref(const uint16_t *qh, const uint16_t *k, const uint16_t *v, size_t stride, int n, int hd,
                      float scale, pv_attn_state_t *st, uint16_t *acc) {
    for (int p = 0; p < n; p++, k += stride, v += stride) {
        double dot = 0.0;
        for (int i = 0; i < hd; i++) dot += pv_f16_to_f32(qh[i]) * pv_f16_to_f32(k[i]);
        float s = (float)dot * scale, ms = 1.0f, vs = 1.0f;
        if (s > st->M) { /* new maximum: rescale what has been summed so far */
            ms = expf(st->M - s);
            st->M = s;
            for (int i = 0; i < hd; i++) acc[i] = pv_f32_to_f16(pv_f16_to_f32(acc[i]) * ms);
        } else {
            vs = expf(s - st->M);
        }
        for (int i = 0; i < hd; i++) acc[i] = pv_f32_to_f16(pv_f16_to_f32(acc[i]) + pv_f16_to_f32(v[i]) * vs);
        st->S = st->S * ms + vs;
    }
}

void pv_attn_fold_group_ref(const uint16_t *const *qh, int nq, const uint16_t *k, const uint16_t *v, size_t stride,
                            const int *n_pos, int hd, float scale, pv_attn_state_t *st, uint16_t *const *acc) {
    for (int j = 0; j < nq; j++)
        if (n_pos[j] > 0) pv_attn_fold_ref(qh[j], k, v, stride, n_pos[j], hd, scale, &st[j], acc[j]);
}
