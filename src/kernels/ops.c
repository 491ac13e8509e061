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

void pv_swiglu_ref(float *a, const float *b, int n) {
    for (int i = 0; i < n; i++) a[i] = a[i] / (1.0f + expf(-a[i])) * b[i];
}

void pv_add(float *y, const float *x, int n) {
    for (int i = 0; i < n; i++) y[i] += x[i];
}

size_t pv_attn_scratch_size(int hd) { return PV_ATTN_TILE_OWN(hd) + 2 * (size_t)PV_ATTN_TILE * (size_t)hd; }

static float round_half(float x) { return pv_f16_to_f32(pv_f32_to_f16(x)); }

/* One row at a time, position by position; dot products summed in double.
 * scratch is not needed here. */
void pv_attn_block_ref(const float *q, int nr, const uint16_t *k, const uint16_t *v, size_t stride, const int *n_pos,
                       int hd, float scale, pv_attn_state_t *st, float *acc, float *scratch) {
    (void)scratch;
    int fused = hd & ~31; /* llama.cpp's vector loop covers these dimensions, with fused multiply-adds */
    for (int r = 0; r < nr; r++, q += hd, acc += hd) {
        pv_attn_state_t *t = &st[r];
        for (int p = 0; p < n_pos[r]; p++) {
            const uint16_t *kp = k + (size_t)p * stride, *vp = v + (size_t)p * stride;
            double dot = 0.0;
            for (int i = 0; i < hd; i++) dot += q[i] * pv_f16_to_f32(kp[i]);
            float s = (float)dot * scale, ms = 1.0f, w = 1.0f;
            if (s > t->M) { /* new maximum: rescale what has been summed so far */
                ms = expf(t->M - s);
                t->M = s;
                for (int i = 0; i < hd; i++) acc[i] = round_half(acc[i] * ms);
            } else {
                w = expf(s - t->M);
            }
            for (int i = 0; i < fused; i++) acc[i] = round_half(fmaf(pv_f16_to_f32(vp[i]), w, acc[i]));
            for (int i = fused; i < hd; i++) acc[i] = round_half(acc[i] + pv_f16_to_f32(vp[i]) * w);
            t->S = t->S * ms + w;
        }
    }
}

/* One row at a time; dot products and the tile's sum of weights in double. */
void pv_attn_tile_ref(const float *q, int nr, const float *kf, const float *vf, const int *n_pos, int hd, float scale,
                      pv_attn_state_t *st, float *acc, float *scratch) {
    (void)scratch;
    for (int r = 0; r < nr; r++, q += hd, acc += hd) {
        pv_attn_state_t *t = &st[r];
        int n = n_pos[r];
        if (n <= 0) continue;
        float s[PV_ATTN_TILE], M = t->M;
        for (int p = 0; p < n; p++) {
            double dot = 0.0;
            for (int i = 0; i < hd; i++) dot += q[i] * kf[(size_t)p * hd + i];
            s[p] = (float)dot * scale;
            if (s[p] > M) M = s[p];
        }
        float f = expf(t->M - M);
        double sum = 0.0;
        for (int i = 0; i < hd; i++) acc[i] *= f;
        for (int p = 0; p < n; p++) {
            float w = expf(s[p] - M);
            sum += w;
            for (int i = 0; i < hd; i++) acc[i] += w * vf[(size_t)p * hd + i];
        }
        t->S = t->S * f + (float)sum;
        t->M = M;
    }
}
