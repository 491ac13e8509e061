#!/usr/bin/env python3
"""hi_model.py [--tool-call] IN.gguf OUT.gguf - turn a synthetic llama GGUF (synth_gguf.py) into one that answers
every prompt with "Hello from pensieve!" and then ends its turn (EOS); with --tool-call, one that answers every
prompt with the Hermes/Qwen tool call
    <tool_call>{"name":"weather","arguments":{"city": "Paris"}}</tool_call>
and ends its turn (served with a template that has <tool_call>, the server parses it into a real tool call).

A random model never ends a turn: every reply runs to max_tokens, and Claude Code treats a response that stops
at max_tokens as an error (exit 1). This rewrites the weights into a deterministic bigram model: every block's
attn_output and ffn_down are zero, so the residual stream is just the token embedding; the embeddings and
output rows are one-hot in the model dimension, so the next token depends only on the current one, with a logit
margin of 80 (sampling at temperature 1 is then as good as greedy). Every layer is still computed in full (the
attention over the whole context costs what it costs), only its contribution is zero.

Token chain: any token -> "▁Hello" -> "▁from" -> "▁pens" -> "ieve" -> "!" -> EOS. As a token picks the next one
by itself, a chain cannot repeat a token: the tool call is spelt with 26 distinct pieces of the llama SPM vocabulary
(the second "_" is the byte token <0x5F>), which is why its JSON is compact and the tool is "weather", not
"get_weather". The prompt's last token must not be in the chain (a generation prompt ends in a newline, <0x0A>).
Handles f32, f16 and q8_0 tensors.
"""
import struct
import sys

import numpy as np

PIECES = ["\u2581Hello", "\u2581from", "\u2581pens", "ieve", "!"]
TOOL_CALL = '<tool_call>{"name":"weather","arguments":{"city": "Paris"}}</tool_call>'
TOOL_PIECES = ["<", "tool", "_", "call", ">{", '"', "name", '":"', "we", "ather", '","', "arguments", '":{"', "city",
               '":', '\u2581"', "Par", "is", '"}', "}</", "to", "ol", "<0x5F>", "ca", "ll", ">"]
SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
F32, F16, Q8_0 = 0, 1, 8


class Reader:
    def __init__(self, buf):
        self.b, self.o = buf, 0

    def take(self, fmt):
        v = struct.unpack_from("<" + fmt, self.b, self.o)
        self.o += struct.calcsize("<" + fmt)
        return v[0]

    def string(self):
        n = self.take("Q")
        s = bytes(self.b[self.o:self.o + n]).decode("utf-8", "replace")
        self.o += n
        return s

    def value(self, t):
        if t == 8:
            return self.string()
        if t == 9:
            et, n = self.take("I"), self.take("Q")
            return [self.value(et) for _ in range(n)]
        return self.take(SCALAR[t])


def row_bytes(gtype, n):
    if gtype == F32: return 4 * n
    if gtype == F16: return 2 * n
    if gtype == Q8_0: return n // 32 * 34
    sys.exit(f"hi_model: unsupported tensor type {gtype}")


def encode_row(gtype, vals):
    vals = np.asarray(vals, dtype=np.float32)
    if gtype == F32: return vals.astype("<f4").tobytes()
    if gtype == F16: return vals.astype("<f2").tobytes()
    out = bytearray()
    for blk in vals.reshape(-1, 32):
        amax = float(np.abs(blk).max())
        d = amax / 127 if amax else 0.0
        q = np.round(blk / d).astype("<i1") if d else np.zeros(32, "<i1")
        out += np.float16(d).astype("<f2").tobytes() + q.tobytes()
    return bytes(out)


def piece_text(p):
    return "_" if p == "<0x5F>" else p.replace("\u2581", " ")


def main():
    args = sys.argv[1:]
    pieces = PIECES
    if args and args[0] == "--tool-call":
        args, pieces = args[1:], TOOL_PIECES
        if "".join(map(piece_text, pieces)) != TOOL_CALL or len(set(pieces)) != len(pieces):
            sys.exit("hi_model: TOOL_PIECES must spell TOOL_CALL without repeating a piece")
    if len(args) != 2: sys.exit(__doc__)
    buf = bytearray(open(args[0], "rb").read())
    r = Reader(buf)
    if r.take("I") != 0x46554747: sys.exit("hi_model: not a GGUF file")
    r.take("I")
    n_tensors, n_kv = r.take("Q"), r.take("Q")
    kv = {}
    for _ in range(n_kv):
        k = r.string()
        kv[k] = r.value(r.take("I"))
    tensors = {}
    for _ in range(n_tensors):
        name = r.string()
        dims = [r.take("Q") for _ in range(r.take("I"))]
        tensors[name] = (dims, r.take("I"), r.take("Q"))
    align = kv.get("general.alignment", 32)
    base = (r.o + align - 1) // align * align

    arch = kv["general.architecture"]
    dim, layers = kv[f"{arch}.embedding_length"], kv[f"{arch}.block_count"]
    tokens = kv["tokenizer.ggml.tokens"]
    eos = kv["tokenizer.ggml.eos_token_id"]
    chain = [tokens.index(p) for p in pieces]
    if len(chain) + 1 > dim: sys.exit("hi_model: the model dimension is too small for the chain")

    def put_rows(name, rows):  # rows: {row index: values}; every other row zero
        dims, gtype, off = tensors[name]
        n0, n1 = dims[0], (dims[1] if len(dims) > 1 else 1)
        rb = row_bytes(gtype, n0)
        zero = encode_row(gtype, np.zeros(n0))
        start = base + off
        for i in range(n1):
            buf[start + i * rb:start + (i + 1) * rb] = encode_row(gtype, rows[i]) if i in rows else zero

    def onehot(k, scale=1.0):
        v = np.zeros(dim)
        v[k] = scale
        return v

    # embeddings: a chain token at position i -> e_{i+1}; every other token -> e_0
    dims, gtype, off = tensors["token_embd.weight"]
    emb = {t: onehot(0) for t in range(dims[1])}
    for i, t in enumerate(chain): emb[t] = onehot(i + 1)
    put_rows("token_embd.weight", emb)
    # output rows: chain[i] is read off e_i, EOS off e_len(chain); normed inputs are 8 e_k, so logits are 80 or 0
    out = {t: onehot(i, 10.0) for i, t in enumerate(chain)}
    out[eos] = onehot(len(chain), 10.0)
    put_rows("output.weight", out)
    put_rows("output_norm.weight", {0: np.ones(dim)})
    for b in range(layers):
        put_rows(f"blk.{b}.attn_output.weight", {})
        put_rows(f"blk.{b}.ffn_down.weight", {})
    open(args[1], "wb").write(buf)


if __name__ == "__main__":
    main()
