#include "kernels/ops.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "base/fp16.h"

/* llama.cpp's order: float squares summed in double, the mean and scale in float. */
static void rms_scale(float *out, const float *x, const float *w, int n, float eps, double ss) {
    float mean = (float)(ss / n), scale = 1.0f / sqrtf(mean + eps);
    for (int i = 0; i < n; i++) out[i] = x[i] * scale * w[i];
}

void pv_rmsnorm(float *out, const float *x, const float *w, int n, float eps) {
    double ss = 0.0;
    for (int i = 0; i < n; i++) ss += (double)(x[i] * x[i]);
    rms_scale(out, x, w, n, eps, ss);
}

/* Four rows' sums in one loop: each is still one sequential sum (the same
 * bits), but the four chains of dependent additions run side by side. */
void pv_rmsnorm_rows(float *out, const float *x, const float *w, int n, float eps, int rows) {
    int r = 0;
    for (; r + 4 <= rows; r += 4) {
        const float *x0 = x + (size_t)r * n, *x1 = x0 + n, *x2 = x1 + n, *x3 = x2 + n;
        double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
        for (int i = 0; i < n; i++) {
            s0 += (double)(x0[i] * x0[i]);
            s1 += (double)(x1[i] * x1[i]);
            s2 += (double)(x2[i] * x2[i]);
            s3 += (double)(x3[i] * x3[i]);
        }
        float *o = out + (size_t)r * n;
        rms_scale(o, x0, w, n, eps, s0);
        rms_scale(o + n, x1, w, n, eps, s1);
        rms_scale(o + 2 * (size_t)n, x2, w, n, eps, s2);
        rms_scale(o + 3 * (size_t)n, x3, w, n, eps, s3);
    }
    for (; r < rows; r++) pv_rmsnorm(out + (size_t)r * n, x + (size_t)r * n, w, n, eps);
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

void pv_rope_apply_from(float *x, int n_rot, const float *cs, int neox, int from) {
    int half = n_rot / 2;
    for (int i = from; i < half; i++) {
        float *a = neox ? &x[i] : &x[2 * i], *b = neox ? &x[i + half] : &x[2 * i + 1];
        float c = cs[2 * i], s = cs[2 * i + 1], x0 = *a, x1 = *b;
        *a = fmaf(x0, c, -(x1 * s));
        *b = fmaf(x0, s, x1 * c);
    }
}

void pv_rope_apply_ref(float *x, int n_rot, const float *cs, int neox) { pv_rope_apply_from(x, n_rot, cs, neox, 0); }

static float f32_of(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static uint32_t bits_of(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

float pv_exp_ggml(float x) {
    const float shift = 0x1.8p23f;
    float z = fmaf(x, 0x1.715476p+0f, shift), n = z - shift;
    float b = fmaf(-n, 0x1.7f7d1cp-20f, fmaf(-n, 0x1.62e4p-1f, x)), u = b * b;
    uint32_t e = bits_of(z) << 23;
    float k = f32_of(e + bits_of(1.0f));
    float j = fmaf(fmaf(fmaf(0x1.0e4020p-7f, b, 0x1.573e2ep-5f), u, fmaf(0x1.555e66p-3f, b, 0x1.fffdb6p-2f)), u,
                   0x1.ffffecp-1f * b);
    if (!(fabsf(n) > 126.0f)) return fmaf(j, k, k);
    uint32_t g = n <= 0.0f ? 0x82000000u : 0u;
    float s1 = f32_of(g + 0x7f000000u), s2 = f32_of(e - g);
    return fabsf(n) > 192.0f ? s1 * s1 : fmaf(s2, j, s2) * s1;
}

void pv_exp_shifted_ref(float *y, const float *x, int n, float max, float scale) {
    for (int i = 0; i < n; i++) y[i] = x[i] == -INFINITY ? 0.0f : pv_exp_ggml((x[i] - max) * scale);
}

/* Whole groups of 8 through ggml's vector exp, the rest through expf, as
 * llama.cpp's swiglu does. */
void pv_swiglu_ref(float *a, const float *b, int n) {
    int i = 0, full = n & ~7;
    for (; i < full; i++) a[i] = a[i] / (1.0f + pv_exp_ggml(0.0f - a[i])) * b[i];
    for (; i < n; i++) a[i] = a[i] / (1.0f + expf(-a[i])) * b[i];
}

void pv_add(float *y, const float *x, int n) {
    for (int i = 0; i < n; i++) y[i] += x[i];
}

size_t pv_attn_scratch_size(int hd) { return PV_ATTN_TILE_OWN(hd) + 2 * (size_t)PV_ATTN_TILE * (size_t)hd; }

static float round_half(float x) { return pv_f16_to_f32(pv_f32_to_f16(x)); }

/* x . y (halves) as llama.cpp's AVX2 ggml_vec_dot_f16 sums it: the first
 * n & ~31 elements in four accumulators of 8 lanes (element 32c + 8j + l goes
 * to accumulator j, lane l, with one fused multiply-add per chunk c), reduced
 * as (a0 + a2) + (a1 + a3), then lane l + lane l + 4, then pairwise; the rest
 * in double, product by product. */
float pv_dot_f16_ggml(const uint16_t *x, const uint16_t *y, int64_t n) {
    int64_t np = n & ~(int64_t)31;
    float a[4][8] = {{0}}, s[8], t[4];
    for (int64_t c = 0; c < np; c += 32)
        for (int j = 0; j < 4; j++)
            for (int l = 0; l < 8; l++)
                a[j][l] = fmaf(pv_f16_to_f32(x[c + 8 * j + l]), pv_f16_to_f32(y[c + 8 * j + l]), a[j][l]);
    for (int l = 0; l < 8; l++) s[l] = (a[0][l] + a[2][l]) + (a[1][l] + a[3][l]);
    for (int m = 0; m < 4; m++) t[m] = s[m] + s[m + 4];
    double sum = (t[0] + t[1]) + (t[2] + t[3]);
    for (int64_t i = np; i < n; i++) sum += (double)(pv_f16_to_f32(x[i]) * pv_f16_to_f32(y[i]));
    return (float)sum;
}

/* One row at a time, position by position, in llama.cpp's order (its
 * S = S * ms + vs compiled to one fused multiply-add). scratch is not needed here. */
void pv_attn_block_ref(const float *q, int nr, const uint16_t *k, const uint16_t *v, size_t stride, const int *n_pos,
                       int hd, float scale, pv_attn_state_t *st, float *acc, float *scratch) {
    (void)scratch;
    int fused = hd & ~31; /* llama.cpp's vector loop covers these dimensions, with fused multiply-adds */
    uint16_t qh[PV_ATTN_MAX_HEAD];
    for (int r = 0; r < nr; r++, q += hd, acc += hd) {
        pv_attn_state_t *t = &st[r];
        for (int i = 0; i < hd; i++) qh[i] = pv_f32_to_f16(q[i]); /* exact: the queries are halves */
        for (int p = 0; p < n_pos[r]; p++) {
            const uint16_t *kp = k + (size_t)p * stride, *vp = v + (size_t)p * stride;
            float s = pv_dot_f16_ggml(kp, qh, hd) * scale, ms = 1.0f, w = 1.0f;
            if (s > t->M) { /* new maximum: rescale what has been summed so far */
                ms = expf(t->M - s);
                t->M = s;
                for (int i = 0; i < hd; i++) acc[i] = round_half(acc[i] * ms);
            } else {
                w = expf(s - t->M);
            }
            for (int i = 0; i < fused; i++) acc[i] = round_half(fmaf(pv_f16_to_f32(vp[i]), w, acc[i]));
            for (int i = fused; i < hd; i++) acc[i] = round_half(acc[i] + pv_f16_to_f32(vp[i]) * w);
            t->S = fmaf(t->S, ms, w);
        }
    }
}

/* One row at a time, in the order of llama.cpp's tiled flash attention: each
 * score a chain of fused multiply-adds over the dimensions, weights through
 * ggml's vector exp (its softmax's), their sum taken 8 at a time in float
 * (lanes l and l + 4, then pairwise) and in double across, each position's
 * values added by a fused multiply-add. */
void pv_attn_tile_ref(const float *q, int nr, const float *kf, const float *vf, const int *n_pos, int hd, float scale,
                      pv_attn_state_t *st, float *acc, float *scratch) {
    (void)scratch;
    for (int r = 0; r < nr; r++, q += hd, acc += hd) {
        pv_attn_state_t *t = &st[r];
        int n = n_pos[r];
        if (n <= 0) continue;
        float s[PV_ATTN_TILE], e[PV_ATTN_TILE] = {0}, M = t->M;
        for (int p = 0; p < n; p++) {
            float dot = 0.0f;
            for (int i = 0; i < hd; i++) dot = fmaf(q[i], kf[(size_t)p * hd + i], dot);
            s[p] = dot * scale;
            if (s[p] > M) M = s[p];
        }
        float f = M > t->M ? expf(t->M - M) : 1.0f;
        for (int i = 0; i < hd; i++) acc[i] *= f;
        for (int p = 0; p < n; p++) e[p] = pv_exp_ggml(s[p] - M);
        double sum = 0.0;
        for (int g = 0; g < n; g += 8) {
            const float *x = e + g;
            sum += ((x[0] + x[4]) + (x[2] + x[6])) + ((x[1] + x[5]) + (x[3] + x[7]));
        }
        for (int p = 0; p < n; p++)
            for (int i = 0; i < hd; i++) acc[i] = fmaf(e[p], vf[(size_t)p * hd + i], acc[i]);
        t->S = (float)((double)(t->S * f) + sum);
        t->M = M;
    }
}
