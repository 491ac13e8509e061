#!/usr/bin/env python3
"""serve_bench.py - load a real `pensieve serve` over HTTP and report what clients feel.

Starts the server on a free 127.0.0.1 port (or uses --url), then runs N concurrent clients, each
sending R streaming /v1/messages requests. Prompts mix lengths, and a share of them start with a
common prefix (as Claude Code's turns do). Prints time to first token p50/p99, aggregate and
per-stream generated tokens/s, inter-token gaps, prefix-cache reuse, the server's peak RSS, and
(fairness) each client's first stream's rate over the time all of them generated at once, as a
table and JSON.

  bench/serve_bench.py -m build/bench/issue6-32k.gguf --clients 4 --requests 2 --prefix-tokens 2000

  --scenario scaling   rounds (--rounds) of 1 client and of --clients clients on one server, in alternating
                       order, each run with prompts of its own: per round the ratio of their aggregate generated
                       tokens/s (and of their rates while all streams generated at once), and the medians
  bench/serve_bench.py -m build/bench/tinyllama-1.1b-q4_0.gguf --scenario scaling --clients 4 --rounds 5 \
      --requests 2 --max-tokens 128 --prompt-words 20 --parallel 4 --threads 2 --ctx-size 2048

Two-turn scenarios (a conversation's turn 2 repeats turn 1 and its reply, then asks more), each printing
both turns' time to first token and their ratio:
  --scenario restart   turn 1 cold, then the server is stopped (SIGTERM) and started again with the same
                       --cache-dir (a temporary folder unless given), then turn 2
  --scenario reuse     turn 1; another client's request runs to its end; another client's long request is
                       still generating (so it holds the slot turn 1 had: turn 2 lands in another slot,
                       --parallel >= 2); then turn 2

  bench/serve_bench.py -m build/bench/issue6-32k.gguf --scenario restart --prefix-tokens 3000 --ctx-size 8192

  --scenario long      clients - 1 streams generate (--max-tokens each) while one more client sends a prompt of
                       --prefix-tokens words: the others' inter-token gaps while it is read, and its TTFT
  bench/serve_bench.py -m build/bench/issue6-32k.gguf --scenario long --clients 3 --max-tokens 2000 \
      --prefix-tokens 8000 --ctx-size 16384
"""
import argparse, http.client, json, os, random, shutil, signal, socket, statistics, subprocess, sys, tempfile, threading, time

WORDS = ("the cat sat on a mat while the dog ran in the park and a bird sang in the tall green tree "
         "once upon a time there was a little girl who liked to read books about stars and the sea").split()


def text_of(n_words, rng):
    return " ".join(rng.choice(WORDS) for _ in range(n_words))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def stream_once(host, port, body, timeout, first=None):
    """One streaming request: (ttft seconds, generated tokens, generation seconds, usage, text, arrival
    times of its text deltas); sets the threading.Event first (if any) at the first token."""
    c = http.client.HTTPConnection(host, port, timeout=timeout)
    t0 = time.monotonic()
    c.request("POST", "/v1/messages", body=json.dumps(body).encode(),
              headers={"content-type": "application/json", "x-api-key": "bench"})
    r = c.getresponse()
    if r.status != 200:
        raise RuntimeError(f"status {r.status}: {r.read()[:200]!r}")
    t_first, usage, ev, text, arrivals = None, {}, None, "", []
    for line in r:
        line = line.decode().rstrip("\n")
        if line.startswith("event: "):
            ev = line[7:]
        elif line.startswith("data: "):
            d = json.loads(line[6:])
            if ev == "content_block_delta":
                arrivals.append(time.monotonic())
                t_first = t_first or arrivals[-1]
                if first:
                    first.set()
                text += d["delta"].get("text", "")
            if ev == "message_delta":
                usage = d["usage"]
        if ev == "message_stop" and line == "":
            break
    t_end = time.monotonic()
    c.close()
    ttft = (t_first or t_end) - t0
    return ttft, usage.get("output_tokens", 0), t_end - (t_first or t_end), usage, text, arrivals


def gaps_of(arrivals, lo=float("-inf"), hi=float("inf")):
    """Inter-token gaps of one stream whose later token arrived within [lo, hi]."""
    return [b - a for a, b in zip(arrivals, arrivals[1:]) if lo <= b <= hi]


def start_server(a, port, extra=()):
    """`pensieve serve` on 127.0.0.1:port, once /health answers 200 (or after 60 s)."""
    cmd = [a.bin, "serve", "-m", a.model, "--port", str(port), "--parallel", str(a.parallel),
           "--ctx-size", str(a.ctx_size), "--queue", str(a.clients * a.requests)] + list(extra)
    if a.threads:
        cmd += ["--threads", str(a.threads)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/health")
            if c.getresponse().status == 200:
                break
        except OSError:
            pass
        time.sleep(0.1)
    return proc


def stop_server(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def two_turns(a):
    """--scenario restart | reuse: both turns' time to first token, and their ratio."""
    rng = random.Random(a.seed)
    port = free_port()
    body = lambda msgs, n: {"model": "bench", "max_tokens": n, "temperature": 0, "stream": True, "messages": msgs}
    turn1 = [{"role": "user", "content": text_of(a.prefix_tokens, rng) + " What happened next?"}]
    cache_dir = a.cache_dir or tempfile.mkdtemp(prefix="pv-bench-cache-")
    extra = ["--cache-dir", cache_dir] if a.scenario == "restart" else []
    proc = start_server(a, port, extra)
    between = []
    try:
        t1 = stream_once("127.0.0.1", port, body(turn1, a.max_tokens), a.timeout)
        if a.scenario == "restart":
            stop_server(proc)
            proc = start_server(a, port, extra)
        else:  # another client: one request to its end, then one still generating while turn 2 comes
            other = lambda: [{"role": "user", "content": text_of(300, rng)}]
            between.append(stream_once("127.0.0.1", port, body(other(), 16), a.timeout))
            ended, generating = [], threading.Event()
            th = threading.Thread(target=lambda: (between.append(
                stream_once("127.0.0.1", port, body(other(), 1024), a.timeout, generating)),
                ended.append(time.monotonic())))
            th.start()
            generating.wait(a.timeout)  # its prompt is in and it generates, holding the slot turn 1 had
        turn2 = turn1 + [{"role": "assistant", "content": t1[4]}, {"role": "user", "content": "And then?"}]
        t2_start = time.monotonic()
        t2 = stream_once("127.0.0.1", port, body(turn2, a.max_tokens), a.timeout)
        if a.scenario == "reuse":
            th.join()
            if ended and ended[0] < t2_start + t2[0]:
                print("note: the other client's request ended before turn 2's first token", file=sys.stderr)
    finally:
        stop_server(proc)
        if not a.cache_dir:
            shutil.rmtree(cache_dir, ignore_errors=True)
    p1 = t1[3].get("input_tokens", 0) + t1[3].get("cache_read_input_tokens", 0)
    p2 = t2[3].get("input_tokens", 0) + t2[3].get("cache_read_input_tokens", 0)
    out = {"scenario": a.scenario, "turn1_prompt_tokens": p1, "turn1_ttft_s": t1[0], "turn2_prompt_tokens": p2,
           "turn2_cached_tokens": t2[3].get("cache_read_input_tokens", 0), "turn2_ttft_s": t2[0],
           "ttft_ratio": t2[0] / t1[0] if t1[0] > 0 else float("nan"), "requests_between": len(between)}
    if not a.json:
        print("| scenario | turn 1 prompt tokens | turn 1 TTFT s | turn 2 prompt tokens (cached) | turn 2 TTFT s | ratio |")
        print("|---|---|---|---|---|---|")
        print(f"| {a.scenario} | {p1} | {t1[0]:.2f} | {p2} ({out['turn2_cached_tokens']}) | {t2[0]:.3f} | "
              f"{100 * out['ttft_ratio']:.1f}% |")
    print(json.dumps(out))
    return 0


def long_prompt(a):
    """--scenario long: clients - 1 streams generate while one more client sends a long prompt
    (--prefix-tokens words); reports the others' inter-token gaps while that prompt is read."""
    rng = random.Random(a.seed)
    port = free_port()
    proc = start_server(a, port)
    body = lambda text, n: {"model": "bench", "max_tokens": n, "temperature": 0.7, "stream": True,
                            "messages": [{"role": "user", "content": text}]}
    others, lock, started = [], threading.Lock(), [threading.Event() for _ in range(max(a.clients - 1, 0))]
    try:
        def other(k):
            r = stream_once("127.0.0.1", port, body(text_of(50, rng), a.max_tokens), a.timeout, started[k])
            with lock:
                others.append(r)
        threads = [threading.Thread(target=other, args=(k,)) for k in range(len(started))]
        for t in threads:
            t.start()
        for e in started:
            e.wait(a.timeout)
        t_long = time.monotonic()
        long = stream_once("127.0.0.1", port, body(text_of(a.prefix_tokens, rng), 4), a.timeout)
        window = (t_long, t_long + long[0])
        for t in threads:
            t.join()
    finally:
        stop_server(proc)
    gaps = [g for r in others for g in gaps_of(r[5], *window)]
    still = [r for r in others if r[5] and r[5][-1] >= window[1]]
    out = {"scenario": "long", "long_prompt_tokens": long[3].get("input_tokens", 0), "long_ttft_s": long[0],
           "streams": len(others), "streams_outliving_prompt": len(still), "gaps_during_prompt": len(gaps),
           "gap_p50_s": pct(gaps, 50), "gap_p99_s": pct(gaps, 99), "gap_max_s": max(gaps, default=float("nan"))}
    if not a.json:
        print("| long prompt tokens | its TTFT s | other streams | their gaps meanwhile | gap p50 s | gap p99 s | gap max s |")
        print("|---|---|---|---|---|---|---|")
        print(f"| {out['long_prompt_tokens']} | {long[0]:.2f} | {len(others)} | {len(gaps)} | {out['gap_p50_s']:.3f} | "
              f"{out['gap_p99_s']:.3f} | {out['gap_max_s']:.3f} |")
        if len(still) < len(others):
            print("note: some streams ended before the long prompt's first token; raise --max-tokens", file=sys.stderr)
    print(json.dumps(out))
    return 0


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else float("nan")


def peak_rss_of(pid):
    """The server's peak resident memory (VmHWM) in bytes, 0 if unknown."""
    if pid:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    return 0


def run_mix(a, host, port, clients, seed):
    """clients concurrent clients, each sending a.requests streaming requests whose prompts come from seed:
    (summary dict, errors)."""
    rng = random.Random(seed)
    lengths = [int(x) for x in a.prompt_words.split(",")]
    prefix = text_of(a.prefix_tokens, rng) if a.prefix_tokens else ""
    jobs = []
    for i in range(clients * a.requests):
        body = text_of(rng.choice(lengths), rng)
        if prefix and rng.random() < a.shared_ratio:
            body = prefix + " " + body
        jobs.append({"model": "bench", "max_tokens": a.max_tokens, "temperature": 0.7, "stream": True,
                     "messages": [{"role": "user", "content": body}]})
    results, errors, lock, first_wave = [], [], threading.Lock(), []

    def client(k):
        for j in range(a.requests):
            try:
                r = stream_once(host, port, jobs[k * a.requests + j], a.timeout)
                with lock:
                    results.append(r)
                    if j == 0:
                        first_wave.append(r)
            except Exception as e:  # reported, not fatal
                with lock:
                    errors.append(str(e))

    t0 = time.monotonic()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    ttfts = [r[0] for r in results]
    gen = sum(r[1] for r in results)
    per_stream = [r[1] / r[2] for r in results if r[2] > 0 and r[1] > 1]
    gaps = [g for r in results for g in gaps_of(r[5])]
    # fairness: each client's first stream, over the time all of them were generating at once
    lo = max((r[5][0] for r in first_wave if r[5]), default=0.0)
    hi = min((r[5][-1] for r in first_wave if r[5]), default=0.0)
    window = [sum(1 for t in r[5] if lo <= t <= hi) / (hi - lo) for r in first_wave] if hi - lo > 0.5 else []
    cached = sum(r[3].get("cache_read_input_tokens", 0) for r in results)
    prompt = sum(r[3].get("input_tokens", 0) + r[3].get("cache_read_input_tokens", 0) for r in results)
    return {"clients": clients, "requests": len(results), "errors": len(errors),
            "ttft_p50_s": pct(ttfts, 50), "ttft_p99_s": pct(ttfts, 99),
            "aggregate_gen_tps": gen / wall if wall > 0 else 0.0,
            "per_stream_gen_tps_p50": pct(per_stream, 50), "per_stream_gen_tps_min": min(per_stream, default=0.0),
            "per_stream_gen_tps_max": max(per_stream, default=0.0),
            "inter_token_gap_p50_s": pct(gaps, 50), "inter_token_gap_p99_s": pct(gaps, 99),
            "together_s": max(hi - lo, 0.0), "together_tps_min": min(window, default=0.0),
            "together_tps_max": max(window, default=0.0), "together_tps_sum": sum(window),
            "prompt_tokens": prompt, "cached_prompt_tokens": cached, "wall_s": wall}, errors


def print_mix(out, errors):
    print(f"| clients | requests | errors | TTFT p50 s | TTFT p99 s | gen tok/s (all) | per stream p50 (min-max) | "
          f"gap p99 s | cached / prompt tokens | peak RSS MiB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(f"| {out['clients']} | {out['requests']} | {out['errors']} | {out['ttft_p50_s']:.2f} | "
          f"{out['ttft_p99_s']:.2f} | {out['aggregate_gen_tps']:.1f} | {out['per_stream_gen_tps_p50']:.1f} "
          f"({out['per_stream_gen_tps_min']:.1f}-{out['per_stream_gen_tps_max']:.1f}) | "
          f"{out['inter_token_gap_p99_s']:.3f} | {out['cached_prompt_tokens']} / {out['prompt_tokens']} | "
          f"{out['peak_rss_bytes'] / 1048576:.1f} |")
    if out["together_tps_max"] > 0:
        print(f"while all {out['clients']} first streams generated ({out['together_s']:.1f} s): "
              f"{out['together_tps_min']:.1f}-{out['together_tps_max']:.1f} tok/s each (the slowest at "
              f"{100 * out['together_tps_min'] / out['together_tps_max']:.0f}% of the fastest)")
    for e in errors[:5]:
        print("error:", e, file=sys.stderr)


def scaling(a, host, port, pid):
    """--scenario scaling: rounds of 1 client and of --clients clients on one server, in alternating order,
    each run with prompts of its own (no prefix shared across runs); per round the ratio of the aggregate
    generated tokens/s, and of the rates while all streams generated at once; medians over the rounds."""
    rounds, errors = [], []
    for r in range(a.rounds):
        runs = {}
        for clients in ((1, a.clients) if r % 2 == 0 else (a.clients, 1)):
            runs[clients], errs = run_mix(a, host, port, clients, a.seed + 1000 * r + clients)
            errors += errs
        one, many = runs[1], runs[a.clients]
        ratio = lambda x, y: x / y if x > 0 and y > 0 else None  # None: no such window (runs under 0.5 s)
        rounds.append({"one_tps": one["aggregate_gen_tps"], "many_tps": many["aggregate_gen_tps"],
                       "ratio": ratio(many["aggregate_gen_tps"], one["aggregate_gen_tps"]),
                       "one_together_tps": one["together_tps_sum"], "many_together_tps": many["together_tps_sum"],
                       "together_ratio": ratio(many["together_tps_sum"], one["together_tps_sum"]),
                       "many_slowest_of_fastest": ratio(many["together_tps_min"], many["together_tps_max"]),
                       "cached_prompt_tokens": one["cached_prompt_tokens"] + many["cached_prompt_tokens"]})
    def med(k):
        xs = [x[k] for x in rounds if x[k] is not None]
        return statistics.median(xs) if xs else None
    f = lambda v, fmt: "-" if v is None else fmt % v
    out = {"scenario": "scaling", "clients": a.clients, "requests": a.requests, "max_tokens": a.max_tokens,
           "errors": len(errors), "rounds": rounds, "ratio_median": med("ratio"),
           "together_ratio_median": med("together_ratio"), "peak_rss_bytes": peak_rss_of(pid)}
    if not a.json:
        n = a.clients
        print(f"| round | 1 client tok/s | {n} clients tok/s | ratio | while all generate: 1 / {n} tok/s | ratio | "
              f"slowest of {n} |")
        print("|---|---|---|---|---|---|---|")
        for i, x in enumerate(rounds):
            slowest = x["many_slowest_of_fastest"]
            print(f"| {i + 1} | {x['one_tps']:.1f} | {x['many_tps']:.1f} | {f(x['ratio'], '%.2fx')} | "
                  f"{x['one_together_tps']:.1f} / {x['many_together_tps']:.1f} | {f(x['together_ratio'], '%.2fx')} | "
                  f"{f(slowest and 100 * slowest, '%.0f%%')} |")
        print(f"median over {len(rounds)} rounds: {f(out['ratio_median'], '%.2fx')} aggregate, "
              f"{f(out['together_ratio_median'], '%.2fx')} while all generate; peak RSS "
              f"{out['peak_rss_bytes'] / 1048576:.1f} MiB")
        for e in errors[:5]:
            print("error:", e, file=sys.stderr)
    print(json.dumps(out))
    return 1 if errors else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-m", "--model", help="GGUF to serve (omit with --url)")
    ap.add_argument("--url", help="an already running server, e.g. http://127.0.0.1:7777")
    ap.add_argument("--bin", default="build/pensieve")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--requests", type=int, default=2, help="requests per client")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--prompt-words", default="50,200,800", help="a mix of prompt lengths in words")
    ap.add_argument("--prefix-tokens", type=int, default=0, help="words of a prefix shared by some prompts")
    ap.add_argument("--shared-ratio", type=float, default=0.5, help="share of requests that start with the prefix")
    ap.add_argument("--parallel", type=int, default=4)
    ap.add_argument("--ctx-size", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--rounds", type=int, default=3, help="rounds of the scaling scenario")
    ap.add_argument("--json", action="store_true", help="print only the JSON")
    ap.add_argument("--scenario", choices=("mix", "scaling", "restart", "reuse", "long"), default="mix",
                    help="mix: concurrent clients (default); scaling: 1 client against --clients, alternated; "
                         "restart, reuse: two turns of one conversation; "
                         "long: streams keep generating while a long prompt is read")
    ap.add_argument("--cache-dir", help="--cache-dir of the restart scenario (default: a new temporary folder)")
    a = ap.parse_args()
    if a.scenario not in ("mix", "scaling"):
        if not a.model:
            ap.error("--scenario %s starts its own server: give -m" % a.scenario)
        return long_prompt(a) if a.scenario == "long" else two_turns(a)

    proc, host, port = None, "127.0.0.1", None
    if a.url:
        host, port = a.url.split("://")[1].rsplit(":", 1)
        port = int(port)
    else:
        port = free_port()
        proc = start_server(a, port)
    try:
        if a.scenario == "scaling":
            return scaling(a, host, port, proc.pid if proc else None)
        out, errors = run_mix(a, host, port, a.clients, a.seed)
        out["peak_rss_bytes"] = peak_rss_of(proc.pid if proc else None)
        if not a.json:
            print_mix(out, errors)
        print(json.dumps(out))
        return 1 if errors else 0
    finally:
        if proc:
            stop_server(proc)


if __name__ == "__main__":
    sys.exit(main())
