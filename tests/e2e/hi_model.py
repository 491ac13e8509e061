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
With --tool-loop, a model for Claude Code's tool loop (../shared/docs/claude-code.md): a prompt without a tool
result gets the Bash call
    <tool_call>{"name":"Bash","arguments":{"command":"echo pensieve-ok > proof.txt"}}</tool_call>
and one that holds a tool result (Qwen2.5's template renders it inside <tool_response> tags) gets "Hello from
pensieve!" and EOS. A bigram model cannot tell the two apart (both prompts end in the same newline), so this one
reads its context: in block 0 one attention head scores 50 on every position whose token is the tags' "response"
piece and 0 elsewhere (its query and key sit on the slowest RoPE pair, which turns by under 0.1 rad over the few
hundred positions between the tags and the end of the prompt), and carries a flag into the residual stream; in block 1
the feed-forward turns "current token outside the chains, and the flag" into a direction from which the
Hello chain's first piece is read. Every token also carries a constant direction for the head's query.
Handles f32, f16 and q8_0 tensors.
"""
import struct
import sys

import numpy as np

PIECES = ["\u2581Hello", "\u2581from", "\u2581pens", "ieve", "!"]
TOOL_CALL = '<tool_call>{"name":"weather","arguments":{"city": "Paris"}}</tool_call>'
TOOL_PIECES = ["<", "tool", "_", "call", ">{", '"', "name", '":"', "we", "ather", '","', "arguments", '":{"', "city",
               '":', '\u2581"', "Par", "is", '"}', "}</", "to", "ol", "<0x5F>", "ca", "ll", ">"]
BASH_CALL = '<tool_call>{"name":"Bash","arguments":{"command":"echo pensieve-ok > proof.txt"}}</tool_call>'
BASH_PIECES = ["<0x3C>", "tool", "<0x5F>", "cal", "<0x6C>", ">{", "<0x22>", "name", '":', '"', "Bas", "<0x68>", '","',
               "arguments", '":{"', "command", '":"', "echo", "\u2581pen", "s", "iev", "e", "<0x2D>", "ok", "\u2581>",
               "\u2581proof", ".", "txt", '"}', "}</", "to", "ol", "_", "call", "<0x3E>"]
RESPONSE = "response"  # the piece inside <tool_response> and </tool_response> (after "_", so without a word mark)
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
    if len(p) == 6 and p.startswith("<0x") and p.endswith(">"): return chr(int(p[3:5], 16))
    return p.replace("\u2581", " ")


def check_pieces(pieces, text, others, flag):
    """pieces must spell text, each once, none of them among others (the other chain and the detector's piece)."""
    if "".join(map(piece_text, pieces)) != text or len(set(pieces)) != len(pieces) or set(pieces) & set(others):
        sys.exit(f"hi_model: the pieces of {flag} must spell its text without repeating a piece")


def main():
    args = sys.argv[1:]
    mode = args.pop(0) if args and args[0] in ("--tool-call", "--tool-loop") else None
    pieces = {None: PIECES, "--tool-call": TOOL_PIECES, "--tool-loop": BASH_PIECES}[mode]
    if mode == "--tool-call": check_pieces(TOOL_PIECES, TOOL_CALL, [], mode)
    if mode == "--tool-loop": check_pieces(BASH_PIECES, BASH_CALL, PIECES + [RESPONSE], mode)
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
    if len(chain) + 1 + (len(PIECES) + 4 if mode == "--tool-loop" else 0) > dim:
        sys.exit("hi_model: the model dimension is too small for the chain")

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
    # output rows: chain[i] is read off e_i, EOS off e_len(chain); normed inputs are 8 e_k, so logits are 80 or 0
    out = {t: onehot(i, 10.0) for i, t in enumerate(chain)}
    out[eos] = onehot(len(chain), 10.0)
    for b in range(layers):
        put_rows(f"blk.{b}.attn_output.weight", {})
        put_rows(f"blk.{b}.ffn_down.weight", {})
    if mode == "--tool-loop":
        tool_loop(kv, arch, tokens, emb, out, len(chain) + 1, put_rows, onehot, eos, layers)
    put_rows("token_embd.weight", emb)
    put_rows("output.weight", out)
    put_rows("output_norm.weight", {0: np.ones(dim)})
    open(args[1], "wb").write(buf)


def tool_loop(kv, arch, tokens, emb, out, d0, put_rows, onehot, eos, layers):
    """Adds the Hello chain (dimensions d0..) and the tool-result detector to the Bash chain's rows (see the top)."""
    if layers < 2 or kv[f"{arch}.attention.head_count_kv"] < 1: sys.exit("hi_model: --tool-loop needs 2 blocks")
    dim = kv[f"{arch}.embedding_length"]
    hd = dim // kv[f"{arch}.attention.head_count"]
    hello = [tokens.index(p) for p in PIECES]
    B, R, F, G = d0 + len(hello), d0 + len(hello) + 1, d0 + len(hello) + 2, d0 + len(hello) + 3
    chain_dims = list(range(1, d0 + len(hello)))
    for j, t in enumerate(hello):
        emb[t] = onehot(d0 + j)
        out[t] = onehot(d0 + j - 1, 10.0) if j else onehot(G, 10.0)
    out[eos] = out[eos] + onehot(d0 + len(hello) - 1, 10.0)  # either chain's last piece ends the turn
    emb[tokens.index(RESPONSE)] = onehot(R)
    for t in emb: emb[t] = emb[t] + onehot(B)
    ones = {0: np.ones(dim)}
    slow = hd - 2  # the head's last RoPE pair turns slowest
    # block 0: head 0 scores 8 a^2 = 50 on "response" positions (the normed inputs are 8/sqrt(2) = 5.66 on B and R)
    a = 2.5
    put_rows("blk.0.attn_norm.weight", ones)
    put_rows("blk.0.attn_q.weight", {slow: onehot(B, a)})
    put_rows("blk.0.attn_k.weight", {slow: onehot(R, a)})
    put_rows("blk.0.attn_v.weight", {0: onehot(R)})
    put_rows("blk.0.attn_output.weight", {F: onehot(0, 1 / 5.66)})  # the flag: 1.0 on F
    # block 1: gate 3 on e_0 (-3 on the chains and R), up on F; at a prompt's end after a tool result the normed
    # input is 4.62 on e_0, B and F: silu(13.9) * 4.62 * 0.8 = 51 on G, so the final norm puts 8 on G (logit 80)
    gate = onehot(0, 3.0)
    for d in chain_dims + [R]: gate[d] = -3.0
    put_rows("blk.1.ffn_norm.weight", ones)
    put_rows("blk.1.ffn_gate.weight", {0: gate})
    put_rows("blk.1.ffn_up.weight", {0: onehot(F)})
    down = np.zeros(kv[f"{arch}.feed_forward_length"])
    down[0] = 0.8
    put_rows("blk.1.ffn_down.weight", {G: down})


if __name__ == "__main__":
    main()
