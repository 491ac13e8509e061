/* arch.h - what distinguishes the supported architectures, as data.
 *
 * Every architecture here is the llama block (RMSNorm, attention with RoPE,
 * SwiGLU feed-forward) with a few real differences, listed per entry; model.c
 * binds tensors from these flags and forward.c runs one pass for all. */
#ifndef PV_ARCH_H
#define PV_ARCH_H

#define PV_ARCH_FUSED_QKV 1u /* attn_qkv holds the q, k and v rows, in that order */
#define PV_ARCH_FUSED_UP 2u  /* ffn_up holds the gate rows then the up rows; no ffn_gate */
#define PV_ARCH_QKV_BIAS 4u  /* attn_q/k/v.bias are added after the projections */
#define PV_ARCH_QK_NORM 8u   /* attn_q_norm/attn_k_norm: RMSNorm of each head of q and k */
#define PV_ARCH_Q_PRESCALE 16u /* q times 1/sqrt(head_dim) after RoPE, attention scores unscaled (llama.cpp's phi3 graph) */

typedef struct {
    const char *name; /* general.architecture */
    int rope_neox;    /* 1: RoPE rotates (x[i], x[i + n_rot/2]); 0: adjacent pairs */
    unsigned flags;   /* PV_ARCH_* */
} pv_arch_t;

/* The entry for general.architecture = name, or NULL when unsupported. */
const pv_arch_t *pv_arch_find(const char *name);

/* "llama, phi3, qwen2, qwen3", for messages. */
const char *pv_arch_names(void);

#endif
