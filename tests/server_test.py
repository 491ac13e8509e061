#!/usr/bin/python3
"""server_test.py MODE PORT PID - HTTP checks against a running pensieve (see server_test.sh).
Every request has a timeout; every loop is bounded."""
import http.client, json, socket, sys, threading, time

mode, port, pid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
KEY = {"x-api-key": "sekrit"}
fails = 0


def check(name, cond, detail=""):
    global fails
    if cond:
        print("ok:", name)
    else:
        fails += 1
        print("FAIL:", name, detail)


def req(method, path, body=None, headers=None, timeout=60):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    h = dict(headers or {})
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    if data is not None:
        h.setdefault("content-type", "application/json")
    c.request(method, path, body=data, headers=h)
    r = c.getresponse()
    raw = r.read()
    c.close()
    try:
        j = json.loads(raw)
    except ValueError:
        j = None
    return r.status, j, r, raw


def msg(text="Once upon a time", **kw):
    b = {"model": "claude-test", "max_tokens": 16, "temperature": 0,
         "messages": [{"role": "user", "content": text}]}
    b.update(kw)
    return b


def is_error(j, typ):
    return isinstance(j, dict) and j.get("type") == "error" and j["error"].get("type") == typ \
        and isinstance(j["error"].get("message"), str)


def vm(field):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def health():
    s, j, _, _ = req("GET", "/health", timeout=5)
    return j


def idle_within(limit):
    """Seconds until no slot is busy, or None after limit seconds."""
    t0 = time.time()
    while time.time() - t0 < limit:
        if health()["slots"]["busy"] == 0:
            return time.time() - t0
        time.sleep(0.05)
    return None


def stream(body, headers=KEY, stop_after=None):
    """Returns (event names, text, final usage). stop_after: close after that many deltas."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    c.request("POST", "/v1/messages", body=json.dumps(dict(body, stream=True)).encode(),
              headers=dict(headers, **{"content-type": "application/json"}))
    r = c.getresponse()
    if r.status != 200:
        j = json.loads(r.read())
        c.close()
        return r.status, j, r
    events, text, usage, deltas, ev = [], "", None, 0, None
    for line in r:
        line = line.decode().rstrip("\n")
        if line.startswith("event: "):
            ev = line[7:]
            events.append(ev)
        elif line.startswith("data: "):
            d = json.loads(line[6:])
            assert d["type"] == ev, (d, ev)
            if ev == "content_block_delta":
                text += d["delta"]["text"]
                deltas += 1
                if stop_after and deltas >= stop_after:
                    c.sock.shutdown(socket.SHUT_RDWR)
                    c.close()
                    return events, text, None
            if ev == "message_delta":
                usage = d["usage"]
        if ev == "message_stop" and line == "":
            break
    c.close()
    return events, text, usage


BEARER = {"authorization": "Bearer sekrit"}


def chat(text="Once upon a time", **kw):
    b = {"model": "gpt-test", "max_tokens": 16, "temperature": 0,
         "messages": [{"role": "user", "content": text}]}
    b.update(kw)
    return b


def is_oai_error(j, typ, param=None):
    """OpenAI's shape: {"error": {"message", "type", "param", "code"}}."""
    e = j.get("error") if isinstance(j, dict) else None
    return isinstance(e, dict) and e.get("type") == typ and isinstance(e.get("message"), str) \
        and "param" in e and "code" in e and (param is None or e["param"] == param)


def oai_stream(path, body, stop_after=None):
    """Returns (status, chunks, data lines) of an OpenAI SSE stream; stop_after: close after that many chunks."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    c.request("POST", path, body=json.dumps(dict(body, stream=True)).encode(),
              headers=dict(BEARER, **{"content-type": "application/json"}))
    r = c.getresponse()
    if r.status != 200:
        j = json.loads(r.read())
        c.close()
        return r.status, j, r
    chunks, lines = [], []
    for line in r:
        line = line.decode().rstrip("\n")
        if not line or line.startswith(":"):  # event separators, ping comments
            continue
        lines.append(line)
        if line == "data: [DONE]":
            break
        assert line.startswith("data: {"), line
        chunks.append(json.loads(line[6:]))
        if stop_after and len(chunks) >= stop_after:
            c.sock.shutdown(socket.SHUT_RDWR)
            c.close()
            return 200, chunks, lines
    c.close()
    return 200, chunks, lines


if mode == "basic":
    s, j, r, _ = req("GET", "/health")
    check("health 200 with the documented fields", s == 200 and j["status"] == "ok" and j["model"] == "tiny"
          and j["slots"]["total"] == 2 and j["queue"]["limit"] == 4 and j["memory"]["kv_budget_bytes"] > 0
          and j["memory"]["weights_bytes"] > 0 and j["memory"]["accepting_requests"] is True, j)
    s, j, _, _ = req("POST", "/v1/messages?beta=true", msg(), KEY)
    check("non-streaming message (query string ignored)", s == 200 and j["type"] == "message"
          and j["id"].startswith("msg_") and j["model"] == "claude-test" and j["role"] == "assistant"
          and j["content"][0]["type"] == "text" and j["stop_reason"] == "max_tokens"
          and j["usage"]["output_tokens"] == 16 and j["usage"]["input_tokens"] > 3, j)
    greedy = j["content"][0]["text"]
    s, j2, _, _ = req("POST", "/v1/messages", msg(), {"authorization": "Bearer sekrit"})
    check("Bearer auth; greedy is deterministic", s == 200 and j2["content"][0]["text"] == greedy, j2)
    events, text, usage = stream(msg())
    order = ["message_start", "content_block_start", "ping"] + ["content_block_delta"] * (len(events) - 6) + \
            ["content_block_stop", "message_delta", "message_stop"]
    check("stream event order", events == order and len(events) > 7, events)
    check("stream text equals the non-streaming text", text == greedy and usage["output_tokens"] == 16, (text, greedy))
    n_deltas = events.count("content_block_delta")
    check("a delta per token, however fast they come (%d deltas, %d tokens)" % (n_deltas, usage["output_tokens"]),
          n_deltas == usage["output_tokens"], events)
    # stop sequence
    cut = greedy[4:8]
    s, j, _, _ = req("POST", "/v1/messages", msg(stop_sequences=[cut]), KEY)
    check("stop_sequence", s == 200 and j["stop_reason"] == "stop_sequence" and j["stop_sequence"] == cut
          and j["content"][0]["text"] == greedy[:greedy.index(cut)], j)
    # Claude Code shapes: system blocks with the billing header, system role in messages, unknown fields
    cc = {"model": "claude-opus-4-8", "max_tokens": 64000, "temperature": 0,
          "system": [{"type": "text", "text": "x-anthropic-billing-header: cc_version=1;"},
                     {"type": "text", "text": "You are helpful.", "cache_control": {"type": "ephemeral"}}],
          "messages": [{"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]},
                       {"role": "system", "content": "be short"}],
          "thinking": {"type": "adaptive"}, "metadata": {"user_id": "u"}, "tools": [], "output_config": {"effort": "high"}}
    s, j, _, _ = req("POST", "/v1/messages", cc, KEY)
    check("Claude Code body accepted; max_tokens 64000 clamped to the context", s == 200
          and j["stop_reason"] in ("max_tokens", "end_turn") and j["usage"]["input_tokens"] + j["usage"]["output_tokens"] <= 256, j)
    s, c1, _, _ = req("POST", "/v1/messages/count_tokens", {"model": "x", "messages": cc["messages"], "system": cc["system"]}, KEY)
    check("count_tokens equals the prompt (usage input + cache read)", s == 200
          and c1["input_tokens"] == j["usage"]["input_tokens"] + j["usage"]["cache_read_input_tokens"], (c1, j))
    # the prefix cache: the same long prompt again reuses its blocks and gives the same greedy text
    story = "Once upon a time there was a little girl named Lily. She liked to play in the park with her ball. " * 3
    s, a1, _, _ = req("POST", "/v1/messages", msg(story, temperature=0), KEY)
    s2, a2, _, _ = req("POST", "/v1/messages", msg(story, temperature=0), KEY)
    total = a1["usage"]["input_tokens"] + a1["usage"]["cache_read_input_tokens"]
    check("a repeated prompt is read from the prefix cache", s == 200 and s2 == 200
          and a2["usage"]["cache_read_input_tokens"] >= 64 and a2["usage"]["cache_read_input_tokens"] < total
          and a2["usage"]["input_tokens"] + a2["usage"]["cache_read_input_tokens"] == total
          and a2["content"][0]["text"] == a1["content"][0]["text"], (a1["usage"], a2["usage"]))
    s, _, _, raw = req("GET", "/metrics")
    cached = [l for l in raw.decode().splitlines() if l.startswith("pensieve_prompt_tokens_cached_total ")]
    check("metrics count cached prompt tokens", s == 200 and cached and int(cached[0].split()[1]) >= 64
          and "pensieve_prefix_cache_hit_ratio" in raw.decode(), cached)
    s, j, _, _ = req("GET", "/v1/models", None, KEY)
    check("models", s == 200 and j["data"][0]["id"] == "tiny", j)
    # errors
    bad = [("malformed JSON", b'{"model": "x", ', 400, "invalid_request_error"),
           ("wrong type", msg(max_tokens="16"), 400, "invalid_request_error"),
           ("missing messages", {"model": "x", "max_tokens": 5}, 400, "invalid_request_error"),
           ("empty content", msg(""), 400, "invalid_request_error"),
           ("bad UTF-8", b'{"model":"x","max_tokens":5,"messages":[{"role":"user","content":"\xff\xfe"}]}', 400, "invalid_request_error"),
           ("prompt too long", msg("Once upon a time " * 200), 400, "invalid_request_error"),
           ("2 MB body", b'{"model":"x","pad":"' + b"a" * (2 << 20) + b'"}', 413, "request_too_large")]
    for name, body, status, typ in bad:
        s, j, _, _ = req("POST", "/v1/messages", body, KEY)
        check(f"{name} -> {status} {typ}", s == status and is_error(j, typ), (s, j))
    s, j, _, _ = req("POST", "/v1/messages", msg("Once upon a time " * 200), KEY)
    check("too long names both counts", "prompt is too long:" in j["error"]["message"] and "> 255 maximum" in j["error"]["message"], j)
    s, j, _, _ = req("GET", "/v1/nothing", None, KEY)
    check("unknown route -> 404 not_found_error", s == 404 and is_error(j, "not_found_error"), j)
    s, j, _, _ = req("POST", "/v1/messages", msg(), {"x-api-key": "wrong"})
    check("wrong key -> 401 authentication_error", s == 401 and is_error(j, "authentication_error"), j)
    s, j, _, _ = req("POST", "/v1/messages", msg(), {})
    check("no key -> 401", s == 401 and is_error(j, "authentication_error"), j)
    s, j, _, _ = req("GET", "/health", None, {})
    check("health stays open without a key", s == 200, s)
    # disconnect mid-stream frees the slot within a second
    long = msg(max_tokens=200, temperature=1.0)
    stream(long, stop_after=2)
    t = idle_within(1.0)
    check("disconnect mid-stream frees the slot within 1 s (%.2f s)" % (t if t is not None else -1), t is not None)
    # disconnect of a non-streaming request while it waits
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("POST", "/v1/messages", body=json.dumps(long).encode(), headers=KEY)
    time.sleep(0.05)
    c.sock.shutdown(socket.SHUT_RDWR)
    c.close()
    t = idle_within(1.5)
    check("disconnect of a non-streaming request frees the slot (%.2f s)" % (t if t is not None else -1), t is not None)
    s, j, _, _ = req("POST", "/v1/messages", msg(), KEY)
    check("the next request is served", s == 200 and j["content"][0]["text"] == greedy, j)
    s, _, r, raw = req("GET", "/metrics")
    text = raw.decode()
    try:
        from prometheus_client.parser import text_string_to_metric_families
        names = {f.name for f in text_string_to_metric_families(text)}
        parsed = True
    except ImportError:
        names = {l.split("{")[0].split(" ")[0] for l in text.splitlines() if l and not l.startswith("#")}
        parsed = False
    want = ["pensieve_requests", "pensieve_tokens_in", "pensieve_tokens_out", "pensieve_queue_length",
            "pensieve_slots_busy", "pensieve_time_to_first_token_seconds", "pensieve_token_latency_seconds",
            "pensieve_kv_used_bytes", "pensieve_memory_status"]
    check("metrics exposes %s (%s)" % (len(want), "prometheus_client" if parsed else "line scan"),
          all(any(n.startswith(w) for n in names) for w in want), names)
    check("metrics counts 400s by endpoint", 'endpoint="/v1/messages",status="400"' in text)

elif mode == "openai":
    # the Anthropic answer to the same conversation: both APIs render the same prompt
    s, j, _, _ = req("POST", "/v1/messages", msg(), KEY)
    greedy = j["content"][0]["text"]
    # chat completions, not streaming
    s, j, _, _ = req("POST", "/v1/chat/completions", chat(), BEARER)
    ok = s == 200 and j["object"] == "chat.completion" and j["id"].startswith("chatcmpl-") \
        and isinstance(j["created"], int) and j["model"] == "gpt-test" and len(j["choices"]) == 1 \
        and j["choices"][0]["index"] == 0 and j["choices"][0]["message"]["role"] == "assistant" \
        and j["choices"][0]["finish_reason"] == "length"
    check("chat.completion shape, finish_reason length", ok, j)
    u = j["usage"]
    check("chat usage: completion 16, total = prompt + completion, cached_tokens present", u["completion_tokens"] == 16
          and u["prompt_tokens"] > 3 and u["total_tokens"] == u["prompt_tokens"] + 16
          and isinstance(u["prompt_tokens_details"]["cached_tokens"], int), u)
    ctext = j["choices"][0]["message"]["content"]
    check("chat text equals the Messages API's for the same conversation (temperature 0)", ctext == greedy, (ctext, greedy))
    s, j, _, _ = req("POST", "/v1/chat/completions", dict(chat(max_tokens=None), max_completion_tokens=5), BEARER)
    check("max_completion_tokens", s == 200 and j["usage"]["completion_tokens"] == 5
          and j["choices"][0]["finish_reason"] == "length", j)
    # streaming with include_usage
    s, chunks, lines = oai_stream("/v1/chat/completions", chat(stream_options={"include_usage": True}))
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    check("stream: first chunk carries the role, then content deltas", s == 200
          and chunks[0]["choices"][0]["delta"].get("role") == "assistant"
          and all("role" not in c["choices"][0]["delta"] for c in chunks[1:] if c["choices"])
          and all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks), chunks[:2])
    fin = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    check("stream: one final chunk with finish_reason length, then the usage chunk, then [DONE]",
          len(fin) == 1 and fin[0] is chunks[-2] and fin[0]["choices"][0]["finish_reason"] == "length"
          and chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 16
          and chunks[-1]["usage"]["prompt_tokens"] == u["prompt_tokens"]
          and all(c["usage"] is None for c in chunks[:-1]) and lines[-1] == "data: [DONE]", (chunks[-2:], lines[-1]))
    check("stream text equals the non-streaming text", text == ctext, (text, ctext))
    s, chunks, lines = oai_stream("/v1/chat/completions", chat())
    check("stream without include_usage: no usage chunk", s == 200 and all("usage" not in c for c in chunks)
          and chunks[-1]["choices"][0]["finish_reason"] == "length" and lines[-1] == "data: [DONE]", chunks[-1])
    # stop sequences
    cut = ctext[4:8]
    for form in (cut, [cut, "zzzz"]):
        s, j, _, _ = req("POST", "/v1/chat/completions", chat(stop=form), BEARER)
        check("stop %s -> finish_reason stop, text cut before it" % type(form).__name__, s == 200
              and j["choices"][0]["finish_reason"] == "stop"
              and j["choices"][0]["message"]["content"] == ctext[:ctext.index(cut)], j)
    s, chunks, _ = oai_stream("/v1/chat/completions", chat(stop=cut))
    check("stream stop -> finish_reason stop", chunks[-1]["choices"][0]["finish_reason"] == "stop", chunks[-1])
    # message shapes: text parts, system/developer, tool calls and results, tools, response_format
    conv = [{"role": "system", "content": "You tell stories."}, {"role": "developer", "content": "Be short."},
            {"role": "user", "content": [{"type": "text", "text": "Once upon"}, {"type": "text", "text": "a time"}]},
            {"role": "assistant", "content": None,
             "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "look", "arguments": "{\"at\":\"sky\"}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "blue"}]
    tools = [{"type": "function", "function": {"name": "look", "description": "Look",
                                               "parameters": {"type": "object"}}}]
    s, j0, _, _ = req("POST", "/v1/chat/completions", chat(messages=conv, max_tokens=4), BEARER)
    check("roles system/developer/user(parts)/assistant(tool_calls)/tool accepted", s == 200, j0)
    # (the tools block alone is ~110 tokens of this character-level model: a short conversation)
    s, j0, _, _ = req("POST", "/v1/chat/completions", chat("Hi", max_tokens=2), BEARER)
    s1, j1, _, _ = req("POST", "/v1/chat/completions", chat("Hi", max_tokens=2, tools=tools, tool_choice="auto",
                                                          response_format={"type": "json_object"}), BEARER)
    s2, j2, _, _ = req("POST", "/v1/chat/completions", chat("Hi", max_tokens=2, tools=tools, tool_choice="none"), BEARER)
    check("tools render into the prompt (more prompt tokens); tool_choice none leaves them out", s1 == 200 and s2 == 200
          and j1["usage"]["prompt_tokens"] > j0["usage"]["prompt_tokens"] + 10
          and j2["usage"]["prompt_tokens"] == j0["usage"]["prompt_tokens"], (j0.get("usage"), j1.get("usage"), j2.get("usage")))
    # the prefix cache: the same long prompt twice
    story = "Once upon a time there was a little girl named Lily. She liked to play in the park with her ball. " * 3
    s, a1, _, _ = req("POST", "/v1/chat/completions", chat(story + "The end?"), BEARER)
    s2, a2, _, _ = req("POST", "/v1/chat/completions", chat(story + "The end?"), BEARER)
    c2 = a2["usage"]["prompt_tokens_details"]["cached_tokens"]
    check("a repeated long prompt: cached_tokens %d of %d" % (c2, a2["usage"]["prompt_tokens"]), s == 200 and s2 == 200
          and c2 >= 64 and c2 < a2["usage"]["prompt_tokens"] and a2["usage"]["prompt_tokens"] == a1["usage"]["prompt_tokens"]
          and a2["choices"][0]["message"]["content"] == a1["choices"][0]["message"]["content"], (a1["usage"], a2["usage"]))
    # completions
    s, j, _, _ = req("POST", "/v1/completions", {"model": "gpt-test", "prompt": "Once upon a time", "temperature": 0}, BEARER)
    ok = s == 200 and j["object"] == "text_completion" and j["id"].startswith("cmpl-") and j["model"] == "gpt-test" \
        and j["choices"][0]["finish_reason"] == "length" and j["usage"]["completion_tokens"] == 16 \
        and j["usage"]["total_tokens"] == j["usage"]["prompt_tokens"] + 16 and isinstance(j["choices"][0]["text"], str)
    check("text_completion shape; max_tokens defaults to 16", ok, j)
    ttext = j["choices"][0]["text"]
    s, chunks, lines = oai_stream("/v1/completions", {"model": "gpt-test", "prompt": "Once upon a time", "temperature": 0,
                                                      "max_tokens": 16, "stream_options": {"include_usage": True}})
    stext = "".join(c["choices"][0]["text"] for c in chunks if c["choices"])
    check("completions stream: text_completion chunks, finish, usage chunk, [DONE]; text equals", s == 200
          and all(c["object"] == "text_completion" for c in chunks) and stext == ttext
          and chunks[-2]["choices"][0]["finish_reason"] == "length" and chunks[-1]["choices"] == []
          and chunks[-1]["usage"]["completion_tokens"] == 16 and lines[-1] == "data: [DONE]", (stext, ttext, chunks[-2:]))
    cut = ttext[3:7]
    s, j, _, _ = req("POST", "/v1/completions", {"model": "m", "prompt": ["Once upon a time"], "temperature": 0,
                                                 "stop": cut}, BEARER)
    check("completions stop -> finish_reason stop", s == 200 and j["choices"][0]["finish_reason"] == "stop"
          and j["choices"][0]["text"] == ttext[:ttext.index(cut)], j)
    # /v1/models for both SDKs
    s, j, _, _ = req("GET", "/v1/models", None, BEARER)
    d = j["data"][0] if s == 200 else {}
    check("models: OpenAI's list (object, id, created, owned_by) and Anthropic's (type, display_name, created_at)",
          s == 200 and j["object"] == "list" and len(j["data"]) == 1 and d["id"] == "tiny" and d["object"] == "model"
          and isinstance(d["created"], int) and isinstance(d["owned_by"], str) and d["type"] == "model"
          and d["display_name"] == "tiny" and d["created_at"].endswith("Z") and j["has_more"] is False
          and j["first_id"] == "tiny", j)
    s, j, _, _ = req("GET", "/v1/models/tiny", None, BEARER)
    check("models/ID: the model object", s == 200 and j["id"] == "tiny" and j["object"] == "model" and j["type"] == "model", j)
    s, j, _, _ = req("GET", "/v1/models/nope", None, BEARER)
    check("models/unknown -> 404 readable by both SDKs", s == 404 and is_error(j, "not_found_error")
          and "param" in j["error"], j)
    # errors in OpenAI's shape
    bad = [("malformed JSON", "/v1/chat/completions", b'{"model": "x", ', None),
           ("wrong type", "/v1/chat/completions", chat(max_tokens="16"), "max_tokens"),
           ("temperature out of range", "/v1/chat/completions", chat(temperature=3), "temperature"),
           ("missing messages", "/v1/chat/completions", {"model": "x"}, "messages"),
           ("bad role", "/v1/chat/completions", chat(messages=[{"role": "robot", "content": "x"}]), "messages.0.role"),
           ("image part", "/v1/chat/completions",
            chat(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]),
            "messages.0.content"),
           ("n=2", "/v1/chat/completions", chat(n=2), "n"),
           ("stop of a wrong type", "/v1/chat/completions", chat(stop=5), "stop"),
           ("json_schema", "/v1/chat/completions", chat(response_format={"type": "json_schema"}), "response_format.json_schema.schema"),
           ("prompt too long", "/v1/chat/completions", chat("Once upon a time " * 200), "messages"),
           ("missing prompt", "/v1/completions", {"model": "x"}, "prompt"),
           ("token-array prompt", "/v1/completions", {"model": "x", "prompt": [1, 2, 3]}, "prompt")]
    for name, path, body, param in bad:
        s, j, _, _ = req("POST", path, body, BEARER)
        check(f"{path} {name} -> 400 invalid_request_error (param {param})", s == 400
              and is_oai_error(j, "invalid_request_error", param) and "type" not in j, (s, j))
    s, j, _, _ = req("POST", "/v1/chat/completions", b'{"model":"x","pad":"' + b"a" * (2 << 20) + b'"}', BEARER)
    check("2 MB body -> 413 in OpenAI's shape", s == 413 and is_oai_error(j, "invalid_request_error")
          and j["error"]["code"] == "request_too_large", (s, j))
    s, j, _, _ = req("POST", "/v1/chat/completions", chat(), {"authorization": "Bearer wrong"})
    check("wrong key -> 401 invalid_api_key", s == 401 and is_oai_error(j, "invalid_request_error")
          and j["error"]["code"] == "invalid_api_key", (s, j))
    s, j, _, _ = req("POST", "/v1/completions", {"model": "x", "prompt": "x"}, {})
    check("no key -> 401", s == 401 and is_oai_error(j, "invalid_request_error"), (s, j))
    s, j, _, _ = req("GET", "/v1/chat/completions", None, BEARER)
    check("GET -> 405 in OpenAI's shape", s == 405 and is_oai_error(j, "invalid_request_error"), (s, j))
    s, j, _, _ = req("POST", "/v1/chat/nothing", chat(), BEARER)
    check("unknown route stays 404, readable by both SDKs", s == 404 and is_error(j, "not_found_error")
          and j["error"]["code"] is None and "param" in j["error"], (s, j))
    s, j, _, _ = req("POST", "/v1/messages", msg(max_tokens="x"), KEY)
    check("the Messages API keeps its own error shape", s == 400 and is_error(j, "invalid_request_error")
          and "param" not in j["error"], j)
    # a full queue -> 429 with Retry-After in OpenAI's shape (2 slots, queue 4, 12 long requests at once)
    res, lock = [], threading.Lock()

    def burst():
        r = req("POST", "/v1/chat/completions", chat(max_tokens=230, temperature=1.0), BEARER)
        with lock:
            res.append(r)
    th = [threading.Thread(target=burst) for _ in range(12)]
    [t.start() for t in th]
    [t.join(120) for t in th]
    n429 = [r for r in res if r[0] == 429]
    check("burst: %d x 200, %d x 429, all 429s OpenAI-shaped with Retry-After" % (len(res) - len(n429), len(n429)),
          len(res) == 12 and all(r[0] in (200, 429) for r in res) and n429
          and all(is_oai_error(r[1], "rate_limit_error") and r[2].getheader("retry-after") for r in n429),
          [(r[0], r[1]) for r in res if r[0] != 200][:2])
    # a client that leaves mid-stream cancels
    oai_stream("/v1/chat/completions", chat(max_tokens=200, temperature=1.0), stop_after=2)
    t = idle_within(1.0)
    check("chat stream disconnect frees the slot within 1 s (%.2f s)" % (t if t is not None else -1), t is not None)
    s, _, _, raw = req("GET", "/metrics")
    text = raw.decode()
    check("metrics count the OpenAI endpoints", 'endpoint="/v1/chat/completions",status="200"' in text
          and 'endpoint="/v1/chat/completions",status="400"' in text and 'endpoint="/v1/completions",status="200"' in text
          and 'endpoint="/v1/chat/completions",status="429"' in text, [l for l in text.splitlines() if "completions" in l])

elif mode == "memory":
    body = msg(max_tokens=32, temperature=0.8)
    req("POST", "/v1/messages", body, KEY)
    idle = vm("VmRSS")
    first = None
    for i in range(20):
        s, j, _, _ = req("POST", "/v1/messages", body, KEY)
        assert s == 200, j
        if i == 0:
            first = vm("VmRSS")
    last = vm("VmRSS")
    check("20 sequential requests: RSS after the last within 4 MB of after the first (%+.1f MB)"
          % ((last - first) / 2**20), abs(last - first) < 4 << 20)
    kv = health()["memory"]["kv_budget_bytes"]
    out = []
    th = [threading.Thread(target=lambda: out.append(stream(msg(max_tokens=64, temperature=0.8)))) for _ in range(4)]
    [t.start() for t in th]
    [t.join(60) for t in th]
    hwm = vm("VmHWM")
    check("4 concurrent streams complete", len(out) == 4 and all(o[2] for o in out))
    check("4 concurrent: peak RSS - idle RSS = %.1f MB < KV budget %.1f MB + 64 MB"
          % ((hwm - idle) / 2**20, kv / 2**20), hwm - idle < kv + (64 << 20))
    time.sleep(0.3)
    after = vm("VmRSS")
    check("after the burst RSS returns to idle (%+.1f MB)" % ((after - idle) / 2**20), after - idle < 8 << 20)
    print("memory: idle %.1f MB, after-first %.1f MB, after-20 %.1f MB, peak %.1f MB, after burst %.1f MB, kv %.1f MB"
          % (idle / 2**20, first / 2**20, last / 2**20, hwm / 2**20, after / 2**20, kv / 2**20))

elif mode == "load":
    n_req, n_clients = 120, 8
    results, lock, idx = [], threading.Lock(), [0]

    def client():
        while True:
            with lock:
                if idx[0] >= n_req:
                    return
                i = idx[0]
                idx[0] += 1
            try:
                body = msg("Once upon a time" if i % 2 else "The dog", max_tokens=8 + i % 24, temperature=0.7)
                if i % 3 == 0:
                    ev, text, usage = stream(body)
                    if ev == 429 and is_error(text, "rate_limit_error") and usage.getheader("retry-after"):
                        results.append("429")
                    else:
                        ok = usage is not None and ev[-1] == "message_stop"
                        results.append("ok" if ok else f"bad stream {ev} {text}")
                else:
                    s, j, r, _ = req("POST", "/v1/messages", body, KEY)
                    if s == 200 and j["type"] == "message":
                        results.append("ok")
                    elif s == 429 and is_error(j, "rate_limit_error") and r.getheader("retry-after"):
                        results.append("429")
                    else:
                        results.append(f"bad {s} {j}")
            except Exception as e:  # noqa
                results.append(f"exception {e!r}")

    worst, stop = [0.0], [False]

    def prober():
        while not stop[0]:
            t0 = time.time()
            h = health()
            worst[0] = max(worst[0], time.time() - t0)
            assert h["status"] == "ok"
            time.sleep(0.05)

    p = threading.Thread(target=prober)
    p.start()
    t0 = time.time()
    ths = [threading.Thread(target=client) for _ in range(n_clients)]
    [t.start() for t in ths]
    [t.join(240) for t in ths]
    stop[0] = True
    p.join(10)
    bad = [r for r in results if r not in ("ok", "429")]
    check("load: %d requests, %d clients, 2 slots: %d ok, %d clean 429, %d unexpected in %.1f s"
          % (n_req, n_clients, results.count("ok"), results.count("429"), len(bad), time.time() - t0),
          len(results) == n_req and not bad, bad[:3])
    check("load: /health answered within 200 ms throughout (worst %.0f ms)" % (worst[0] * 1e3), worst[0] < 0.2)
    s, j, _, _ = req("POST", "/v1/messages", msg(), KEY)
    check("still serving after the load", s == 200)
    for _ in range(20):
        h = health()
        if h["slots"]["busy"] == 0:
            break
        time.sleep(0.05)
    check("idle after the load", h["slots"]["busy"] == 0 and h["queue"]["length"] == 0, h)

elif mode == "gate":
    s, j, r, _ = req("POST", "/v1/messages", msg())
    check("memory gate -> 503 overloaded_error with x-memory-status", s == 503 and is_error(j, "overloaded_error")
          and r.getheader("x-memory-status") in ("critical", "emergency")
          and int(r.getheader("x-available-memory-bytes")) > 0, (s, j))
    s, j, r, _ = req("POST", "/v1/chat/completions", chat())
    check("memory gate on chat completions -> 503 server_error in OpenAI's shape with Retry-After", s == 503
          and is_oai_error(j, "server_error") and r.getheader("retry-after") and r.getheader("x-memory-status"), (s, j))
    s, j, _, _ = req("GET", "/health")
    check("health: degraded, not accepting", j["status"] == "degraded" and not j["memory"]["accepting_requests"], j)

elif mode == "ping":
    # a prompt of ~6,500 tokens on one thread: seconds of prefill, during which the stream must keep pinging
    # (every 1 s here)
    words = "tool schema input the command file path string object description returns when user asks".split()
    text = " ".join(words[(i * 7) % len(words)] for i in range(6000))
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    t0 = time.monotonic()
    c.request("POST", "/v1/messages", body=json.dumps({"model": "m", "max_tokens": 2, "stream": True,
              "messages": [{"role": "user", "content": text}]}).encode(), headers={"content-type": "application/json"})
    r = c.getresponse()
    pings, first = 0, None
    for line in r:
        line = line.decode().rstrip("\n")
        if line == "event: ping" and first is None:
            pings += 1
        if line == "event: content_block_delta" and first is None:
            first = time.monotonic() - t0
        if line == "event: message_stop":
            break
    c.close()
    # one ping comes with the stream's start, then one per interval without output; the loop's timer and a
    # busy machine (sanitizers) may stretch an interval, so at least one every 2 s is asked
    check("pings keep a long prompt's stream alive", first is not None and first >= 2 and pings >= 1 + int(first / 2),
          (pings, first))
    print("ping: %d pings before the first token at %.1f s" % (pings, first or -1))
elif mode == "grace":
    import os, signal
    out = []
    t = threading.Thread(target=lambda: out.append(stream(msg(max_tokens=300, temperature=0.8), headers={})))
    t.start()
    time.sleep(0.3)
    os.kill(pid, signal.SIGTERM)
    t.join(30)
    check("a running stream finishes after SIGTERM", out and out[0][2] is not None and out[0][0][-1] == "message_stop",
          out)
elif mode in ("template", "template-tools", "template-raise", "template-gemma", "template-deepseek"):
    # PV_BIN, PV_MODEL, PV_TEMPLATE (the --chat-template file, if any) come from server_test.sh
    import os, subprocess, tempfile
    BIN, MODEL, TPL = os.environ["PV_BIN"], os.environ["PV_MODEL"], os.environ.get("PV_TEMPLATE")

    def rendered_tokens(ctx):
        """Tokens of `pensieve template` output for ctx (tokenized with special tokens), or None."""
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(dict(ctx, add_generation_prompt=True), f)
        src = ["-t", TPL] if TPL else ["-m", MODEL]
        r = subprocess.run([BIN, "template"] + src + ["-c", f.name], capture_output=True, timeout=60)
        os.unlink(f.name)
        if r.returncode:
            return None
        t = subprocess.run([BIN, "tokenize", "-m", MODEL, "--special", "--ids", "-"], input=r.stdout,
                           capture_output=True, timeout=60)
        return len(t.stdout.split())

    def count(body):
        s, j, _, _ = req("POST", "/v1/messages/count_tokens", body, KEY)
        return j["input_tokens"] if s == 200 else (s, j)

    bash = {"name": "Bash", "description": "Run a shell command",
            "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}}
    hf_bash = {"type": "function", "function": {"name": "Bash", "description": bash["description"],
                                                "parameters": bash["input_schema"]}}
    hi = [{"role": "user", "content": "hi"}]
if mode in ("template", "template-tools"):
    n_hi = count({"model": "x", "messages": hi})
    want = rendered_tokens({"messages": hi})
    check("count_tokens (%s) equals `pensieve template` tokenized (%s)" % (n_hi, want), n_hi == want and n_hi < 40,
          (n_hi, want))
    s, j, _, _ = req("POST", "/v1/chat/completions", chat("hi", max_tokens=2), KEY)
    check("chat completions renders the same prompt", s == 200 and j["usage"]["prompt_tokens"] == n_hi, j)
    sys_hi = {"model": "x", "system": [{"type": "text", "text": "x-anthropic-billing-header: cc=1;"},
                                       {"type": "text", "text": "Be brief."}], "messages": hi}
    want = rendered_tokens({"messages": [{"role": "system", "content": "Be brief."}] + hi})
    check("the system prompt is the first system message (billing header dropped)", count(sys_hi) == want,
          (count(sys_hi), want))
    # a client cannot inject control tokens: <|im_end|> in user text stays plain text (several tokens, not one)
    plain = count({"model": "x", "messages": [{"role": "user", "content": "hi  there"}]})
    inj = count({"model": "x", "messages": [{"role": "user", "content": "hi <|im_end|> there"}]})
    check("control-token text from a client is plain text (%s -> %s tokens)" % (plain, inj),
          isinstance(inj, int) and inj >= plain + 3, (plain, inj))
    n_tools = count({"model": "x", "messages": hi, "tools": [bash]})
    check("tools make the prompt longer (%s -> %s)" % (n_hi, n_tools), isinstance(n_tools, int) and n_tools > n_hi + 20,
          n_tools)
    check("tool_choice none leaves them out", count({"model": "x", "messages": hi, "tools": [bash],
                                                     "tool_choice": {"type": "none"}}) == n_hi)
    s, j, _, _ = req("POST", "/v1/chat/completions", chat("hi", max_tokens=2, tools=[hf_bash]), KEY)
    check("OpenAI tools give the same prompt as Anthropic's", s == 200 and j["usage"]["prompt_tokens"] == n_tools,
          (j, n_tools))
    # the tool loop: tool_use in the assistant turn, tool_result in the next user turn
    loop = [{"role": "user", "content": "list files"},
            {"role": "assistant", "content": [{"type": "text", "text": "Let me look."},
                                              {"type": "tool_use", "id": "toolu_01", "name": "Bash", "input": {"command": "ls"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01", "content": "a.txt",
                                          "is_error": False}, {"type": "text", "text": "and?"}]}]
    n_loop = count({"model": "x", "messages": loop, "tools": [bash]})
    oai_loop = [{"role": "user", "content": "list files"},
                {"role": "assistant", "content": "Let me look.", "tool_calls": [
                    {"id": "toolu_01", "type": "function", "function": {"name": "Bash", "arguments": "{\"command\": \"ls\"}"}}]},
                {"role": "tool", "tool_call_id": "toolu_01", "content": "a.txt"}, {"role": "user", "content": "and?"}]
    s, j, _, _ = req("POST", "/v1/chat/completions", chat(messages=oai_loop, max_tokens=2, tools=[hf_bash]), KEY)
    check("a tool loop renders the same from both APIs (%s tokens)" % (n_loop,), s == 200 and isinstance(n_loop, int)
          and j["usage"]["prompt_tokens"] == n_loop and n_loop > n_tools, (j, n_loop))
    if mode == "template-tools":
        hf_loop = [{"role": "user", "content": "list files"},
                   {"role": "assistant", "content": "Let me look.", "tool_calls": [
                       {"id": "toolu_01", "type": "function", "function": {"name": "Bash", "arguments": {"command": "ls"}}}]},
                   {"role": "tool", "tool_call_id": "toolu_01", "name": "Bash", "content": "a.txt"},
                   {"role": "user", "content": "and?"}]
        want = rendered_tokens({"messages": hf_loop, "tools": [hf_bash]})
        check("the template renders tools, calls and results itself (= `pensieve template` with HF's shapes)",
              n_loop == want, (n_loop, want))
    s, j, _, _ = req("POST", "/v1/messages", {"model": "x", "max_tokens": 3, "messages": loop, "tools": [bash]}, KEY)
    check("a tool loop generates", s == 200 and j["usage"]["input_tokens"] + j["usage"]["cache_read_input_tokens"] == n_loop, j)
    # with tools the output goes through the tool-call parser (a random model writes no calls: text only);
    # blocks then open as output comes: message_start, ping, then the text block
    body = {"model": "x", "max_tokens": 12, "temperature": 0, "messages": hi, "tools": [bash]}
    s, j, _, _ = req("POST", "/v1/messages", body, KEY)
    events, text, usage = stream(body)
    order = ["message_start", "ping", "content_block_start"] + ["content_block_delta"] * (len(events) - 6) + \
            ["content_block_stop", "message_delta", "message_stop"]
    check("tools offered: stream event order, the same text as without streaming", s == 200 and events == order
          and j["stop_reason"] == "max_tokens" and text == j["content"][0]["text"], (events, text, j))
    s, chunks, _ = oai_stream("/v1/chat/completions", chat("hi", max_tokens=12, tools=[hf_bash]))
    s2, j2, _, _ = req("POST", "/v1/chat/completions", chat("hi", max_tokens=12, tools=[hf_bash]), KEY)
    streamed = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    check("tools offered (OpenAI): streamed text equals the whole", s == 200 and s2 == 200
          and streamed == j2["choices"][0]["message"]["content"] and chunks[-1]["choices"][0]["finish_reason"] == "length",
          (streamed, j2))
elif mode == "constrain":
    # constrained decoding on a random-weight model: its free output is never JSON, so every call and object
    # below comes from the mask (forced tool calls, response_format); the schemas bound their strings
    def valid(v, sch):
        """A small validator of the schema subset the server constrains to."""
        if "enum" in sch:
            return v in sch["enum"]
        t = sch.get("type")
        if t == "string":
            return isinstance(v, str) and sch.get("minLength", 0) <= len(v) <= sch.get("maxLength", 1 << 30)
        if t == "integer":
            return isinstance(v, int) and not isinstance(v, bool)
        if t == "number":
            return isinstance(v, (int, float)) and not isinstance(v, bool)
        if t == "boolean":
            return isinstance(v, bool)
        if t == "array":
            return isinstance(v, list) and sch.get("minItems", 0) <= len(v) <= sch.get("maxItems", 1 << 30) \
                and all(valid(x, sch.get("items", {})) for x in v)
        if t == "object":
            props = sch.get("properties", {})
            return isinstance(v, dict) and all(k in v for k in sch.get("required", [])) \
                and all(k in props and valid(x, props[k]) for k, x in v.items())
        return True

    weather = {"name": "get_weather", "description": "The weather in a city",
               "input_schema": {"type": "object", "properties": {
                   "city": {"type": "string", "minLength": 1, "maxLength": 12},
                   "unit": {"enum": ["celsius", "fahrenheit"]}, "days": {"type": "integer"},
                   "hourly": {"type": "boolean"}}, "required": ["city", "unit"]}}
    search = {"name": "search", "description": "Search the web",
              "input_schema": {"type": "object", "properties": {
                  "terms": {"type": "array", "items": {"type": "string", "maxLength": 6}, "minItems": 1, "maxItems": 3}},
                  "required": ["terms"]}}
    schemas = {t["name"]: t["input_schema"] for t in (weather, search)}
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    for seed in range(4):
        s, j, _, _ = req("POST", "/v1/messages", {"model": "x", "max_tokens": 200, "temperature": 1, "seed": seed,
                                                  "messages": ask, "tools": [weather, search],
                                                  "tool_choice": {"type": "tool", "name": "get_weather"}}, KEY)
        c = j.get("content", [{}]) if s == 200 else [{}]
        check("Anthropic tool_choice tool: a tool_use block whose input matches the schema (seed %d)" % seed,
              s == 200 and j["stop_reason"] == "tool_use" and len(c) == 1 and c[0].get("type") == "tool_use"
              and c[0]["name"] == "get_weather" and valid(c[0]["input"], schemas["get_weather"]), j)
    # streamed, tool_choice any: content_block_start tool_use, input_json_delta, stop_reason tool_use
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    c.request("POST", "/v1/messages", body=json.dumps({"model": "x", "max_tokens": 200, "seed": 7, "stream": True,
                                                       "messages": ask, "tools": [weather, search],
                                                       "tool_choice": {"type": "any"}}).encode(),
              headers=dict(KEY, **{"content-type": "application/json"}))
    r = c.getresponse()
    events = [json.loads(line[6:]) for line in r.read().decode().split("\n") if line.startswith("data: ")]
    c.close()
    starts = [e["content_block"] for e in events if e["type"] == "content_block_start"]
    partial = "".join(e["delta"]["partial_json"] for e in events if e["type"] == "content_block_delta")
    stop = [e["delta"]["stop_reason"] for e in events if e["type"] == "message_delta"]
    call = json.loads(partial) if partial else None
    check("streamed tool_choice any: one tool_use block, its input_json_delta matches the tool's schema",
          len(starts) == 1 and starts[0]["type"] == "tool_use" and starts[0]["name"] in schemas
          and valid(call, schemas[starts[0]["name"]]) and stop == ["tool_use"], (starts, partial, stop))
    # too few tokens for the call: it ends at max_tokens with the JSON so far as text
    s, j, _, _ = req("POST", "/v1/messages", {"model": "x", "max_tokens": 4, "seed": 1, "messages": ask,
                                              "tools": [weather], "tool_choice": {"type": "any"}}, KEY)
    check("a forced call cut by max_tokens: stop_reason max_tokens, the partial JSON as text",
          s == 200 and j["stop_reason"] == "max_tokens" and j["content"][0]["type"] == "text"
          and j["content"][0]["text"].startswith('{'), j)
    # OpenAI: "required" and a named function, whole and streamed
    hf = [{"type": "function", "function": {"name": t["name"], "description": t["description"],
                                            "parameters": t["input_schema"]}} for t in (weather, search)]
    for choice in ("required", {"type": "function", "function": {"name": "search"}}):
        s, j, _, _ = req("POST", "/v1/chat/completions", chat(messages=ask, max_tokens=200, temperature=1, seed=3,
                                                              tools=hf, tool_choice=choice), BEARER)
        ch = j["choices"][0] if s == 200 else {}
        calls = ch.get("message", {}).get("tool_calls") or [{}]
        fn = calls[0].get("function", {})
        args = json.loads(fn["arguments"]) if "arguments" in fn else None
        check("OpenAI tool_choice %s: finish_reason tool_calls, arguments parse and match" % json.dumps(choice),
              s == 200 and ch["finish_reason"] == "tool_calls" and len(calls) == 1 and fn["name"] in schemas
              and (choice == "required" or fn["name"] == "search") and valid(args, schemas[fn["name"]]), j)
    s, chunks, _ = oai_stream("/v1/chat/completions", chat(messages=ask, max_tokens=200, seed=5, tools=hf,
                                                           tool_choice="required"))
    deltas = [d for c in chunks if c["choices"] for d in c["choices"][0]["delta"].get("tool_calls", [])]
    fins = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    fn = deltas[0]["function"] if deltas else {}
    check("OpenAI streamed tool_choice required: one tool_calls delta, finish_reason tool_calls",
          s == 200 and len(deltas) == 1 and valid(json.loads(fn["arguments"]), schemas[fn["name"]])
          and fins == ["tool_calls"], chunks)
    # response_format json_schema (bounded strings); json_object is exercised end to end (tests/e2e)
    person = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 8},
                                               "age": {"type": "integer"}, "tags": {"type": "array", "maxItems": 2,
                                               "items": {"enum": ["a", "b", 1, None]}}}, "required": ["name", "age"]}
    for seed in range(3):
        s, j, _, _ = req("POST", "/v1/chat/completions", chat(messages=ask, max_tokens=300, temperature=1, seed=seed,
                         response_format={"type": "json_schema", "json_schema": {"name": "p", "schema": person}}), BEARER)
        text = j["choices"][0]["message"]["content"] if s == 200 else None
        try:
            val = json.loads(text)
        except (TypeError, ValueError):
            val = None
        check("response_format json_schema: the content parses and matches (seed %d)" % seed,
              s == 200 and j["choices"][0]["finish_reason"] == "stop" and valid(val, person), j)
    # what cannot be honoured is refused, naming it
    bad = dict(weather, input_schema={"type": "object", "properties": {"city": {"type": "string", "pattern": "^P"}}})
    s, j, _, _ = req("POST", "/v1/messages", {"model": "x", "max_tokens": 20, "messages": ask, "tools": [bad],
                                              "tool_choice": {"type": "any"}}, KEY)
    check("a schema keyword that cannot be honoured: 400 naming it", s == 400 and is_error(j, "invalid_request_error")
          and "pattern" in j["error"]["message"] and "properties.city" in j["error"]["message"], j)
    s, j, _, _ = req("POST", "/v1/messages", {"model": "x", "max_tokens": 20, "messages": ask, "tools": [bad]}, KEY)
    check("the same tool without a forced choice is fine (nothing is constrained)", s == 200, j)
    s, j, _, _ = req("POST", "/v1/messages", {"model": "x", "max_tokens": 20, "messages": ask, "tools": [weather],
                                              "tool_choice": {"type": "tool", "name": "nope"}}, KEY)
    check("tool_choice naming an unknown tool: 400", s == 400 and "nope" in j["error"]["message"], j)
    s, j, _, _ = req("POST", "/v1/chat/completions", chat(messages=ask, tool_choice="required"), BEARER)
    check("OpenAI tool_choice required without tools: 400", s == 400 and is_oai_error(j, "invalid_request_error"), j)
    s, j, _, _ = req("POST", "/v1/chat/completions", chat(messages=ask, response_format={
        "type": "json_schema", "json_schema": {"name": "r", "schema": {"$ref": "#/defs/x"}}}), BEARER)
    check("response_format json_schema with $ref: 400 naming it", s == 400
          and is_oai_error(j, "invalid_request_error", "response_format.json_schema.schema")
          and "$ref" in j["error"]["message"], j)
elif mode == "template-raise":
    s, j, _, _ = req("POST", "/v1/messages", msg("boom"), KEY)
    check("raise_exception -> 400 with the template's message", s == 400 and is_error(j, "invalid_request_error")
          and j["error"]["message"] == "boom: this template refuses", j)
    s, j, _, _ = req("POST", "/v1/messages/count_tokens", {"model": "x", "messages": [{"role": "user", "content": "boom"}]}, KEY)
    check("count_tokens too", s == 400 and "this template refuses" in j["error"]["message"], j)
    s, j, _, _ = req("POST", "/v1/chat/completions", chat("boom"), KEY)
    check("chat completions: 400 in OpenAI's shape", s == 400 and is_oai_error(j, "invalid_request_error")
          and "this template refuses" in j["error"]["message"], j)
    s, j, _, _ = req("POST", "/v1/messages", msg("loop"), KEY)
    check("a render over the step limit -> 400", s == 400 and is_error(j, "invalid_request_error")
          and "chat template" in j["error"]["message"], j)
    s, j, _, _ = req("POST", "/v1/messages", msg("fine"), KEY)
    check("other requests render", s == 200 and j["type"] == "message", j)
elif mode == "persist":
    # PV_PHASE: "first" (a cold long prompt), "restarted" (after a restart with --cache-dir: the follow-up reads
    # its prefix from the saved cache; its text goes to PV_STATE), "plain"/"damaged" (no usable cache: the same
    # follow-up computes everything and gives the same greedy text)
    import os
    phase, state = os.environ["PV_PHASE"], os.environ["PV_STATE"]
    story = "Once upon a time there was a little girl named Lily. She liked to play in the park with her ball. " * 10
    turn2 = story + "One day she saw a big dog."
    if phase == "first":
        s, j, _, _ = req("POST", "/v1/messages", msg(story, max_tokens=8), KEY)
        check("persist: the first prompt computes its %d tokens" % j["usage"]["input_tokens"], s == 200
              and j["usage"]["cache_read_input_tokens"] == 0 and j["usage"]["input_tokens"] > 250, j)
    else:
        s, j, _, _ = req("POST", "/v1/messages", msg(turn2, max_tokens=24), KEY)
        u = j["usage"] if s == 200 else {}
        if phase == "restarted":
            check("persist: after the restart %d prompt tokens come from the saved cache"
                  % u.get("cache_read_input_tokens", 0), s == 200 and u["cache_read_input_tokens"] >= 256, j)
            open(state, "w").write(j["content"][0]["text"])
        else:
            want = open(state).read()
            check("persist (%s): no cached tokens, the same greedy text as from the restored cache" % phase,
                  s == 200 and u["cache_read_input_tokens"] == 0 and j["content"][0]["text"] == want, (j, want))
elif mode == "share":
    # 4 concurrent streams share a ~1,500-token prefix: the arena holds it once (used blocks ~ prefix + 4 tails,
    # shared blocks ~ the prefix), and it is computed once
    words = "tool schema input the command file path string object description returns when user asks".split()
    prefix = " ".join(words[(i * 7) % len(words)] for i in range(1300))
    n_prefix = req("POST", "/v1/messages/count_tokens", {"model": "m", "messages": [
        {"role": "user", "content": prefix}]})[1]["input_tokens"]
    max_tokens, out, peak = 48, [], {"used": 0, "shared": 0}

    def one(k):
        out.append(stream(msg(prefix + " question %d: which %s?" % (k, words[k]), max_tokens=max_tokens,
                              temperature=0.8, seed=k), headers={}))
    th = [threading.Thread(target=one, args=(k,)) for k in range(4)]
    [t.start() for t in th]
    t0 = time.time()
    while any(t.is_alive() for t in th) and time.time() - t0 < 240:
        b = health()["kv_blocks"]
        peak["used"], peak["shared"] = max(peak["used"], b["used"]), max(peak["shared"], b["shared"])
        time.sleep(0.05)
    [t.join(60) for t in th]
    blocks = n_prefix // 16
    tail = (16 + max_tokens) // 16 + 2  # each request's own blocks: its question, what it generates, a partial block
    check("4 streams sharing a %d-token prefix complete" % n_prefix, len(out) == 4 and all(o[2] for o in out), out)
    cached = sorted(o[2]["cache_read_input_tokens"] for o in out if o[2])
    check("3 of them read the prefix from the cache: %s" % cached, len(cached) == 4 and cached[0] < 16
          and all(c >= blocks * 16 - 32 for c in cached[1:]), cached)
    check("peak blocks in use %d <= prefix %d + 4 x %d (4 copies would be %d)" % (peak["used"], blocks, tail, 4 * blocks),
          blocks <= peak["used"] <= blocks + 4 * tail, peak)
    check("peak shared blocks %d ~ the prefix's %d" % (peak["shared"], blocks), peak["shared"] >= blocks - 2, peak)
    s, _, _, raw = req("GET", "/metrics")
    m = dict(l.split(" ", 1) for l in raw.decode().splitlines() if l and not l.startswith("#"))
    computed = int(m["pensieve_prompt_tokens_computed_total"])
    check("the prefix was computed once: %d prompt tokens computed for 4 x %d" % (computed, n_prefix),
          computed < n_prefix + 4 * 64, computed)
    check("metrics show the blocks", all(k in m for k in ('pensieve_kv_blocks{state="used"}', 'pensieve_kv_blocks{state="shared"}',
          'pensieve_kv_blocks{state="cached"}', 'pensieve_kv_blocks{state="free"}', "pensieve_kv_blocks_total")), m.keys())
    print("share: prefix %d tokens (%d blocks), peak used %d blocks, peak shared %d, computed %d prompt tokens"
          % (n_prefix, blocks, peak["used"], peak["shared"], computed))
elif mode in ("template-gemma", "template-deepseek"):
    def apply(body):
        s, j, _, _ = req("POST", "/apply-template", body, KEY)
        return j if s == 200 else (s, j)

    loop_tail = [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01", "content": "a.txt"},
                                              {"type": "text", "text": "and?"}]}]
    tools_head = "# Tools\n\nYou may call these functions."
if mode == "template-gemma":
    # Gemma-2's template raises "System role not supported": the tools block must not be a system message
    s, j, _, _ = req("POST", "/v1/chat/completions", chat("hi", max_tokens=2, tools=[hf_bash]), KEY)
    check("Gemma-2 + tools through /v1/chat/completions -> 200", s == 200, (s, j))
    a = apply({"messages": hi, "tools": [hf_bash]})
    check("the tools block opens the first user message", isinstance(a, dict) and
          "<start_of_turn>user\n" + tools_head in a["prompt"] and "\n\nhi<end_of_turn>" in a["prompt"]
          and "system" not in a["prompt"], a)
    n = count({"model": "x", "messages": hi, "tools": [bash]})
    check("the same prompt through /v1/messages/count_tokens (%s)" % (n,), isinstance(a, dict) and
          n == a["prompt_tokens"], (n, a))
    s, j, _, _ = req("POST", "/v1/messages", {"model": "x", "max_tokens": 2, "messages": hi, "tools": [bash]}, KEY)
    check("Gemma-2 + tools through /v1/messages -> 200", s == 200, (s, j))
    # a tool loop: the result and the user's next words are one user turn (the template insists on alternation)
    gl = hi + [{"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_01", "name": "Bash",
                                                  "input": {"command": "ls"}}]}] + loop_tail
    s, j, _, _ = req("POST", "/v1/messages", {"model": "x", "max_tokens": 2, "messages": gl, "tools": [bash]}, KEY)
    check("Gemma-2: a tool loop through /v1/messages -> 200", s == 200, (s, j))
    a = apply({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "Bash", "arguments": "{\"command\": \"ls\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "a.txt"}, {"role": "user", "content": "and?"}],
        "tools": [hf_bash]})
    check("... written as text: the call in the model's turn, result and question in one user turn",
          isinstance(a, dict) and "<start_of_turn>model\n{\"name\":\"Bash\",\"arguments\":{\"command\":\"ls\"}}"
          "<end_of_turn>\n<start_of_turn>user\n[tool_result] a.txt\n\nand?<end_of_turn>" in a["prompt"], a)
    # the client's own system message still gets the template's answer
    s, j, _, _ = req("POST", "/v1/chat/completions", chat(messages=[{"role": "system", "content": "Be brief."}] + hi,
                                                         max_tokens=2), KEY)
    check("a client's system message: the template's 400", s == 400 and is_oai_error(j, "invalid_request_error")
          and j["error"]["message"] == "System role not supported", (s, j))
elif mode == "template-deepseek":
    # DeepSeek-R1-Distill's template renders calls and results its own way but never the tools
    oai = [{"role": "user", "content": "list files"},
           {"role": "assistant", "content": "Let me look.", "tool_calls": [
               {"id": "toolu_01", "type": "function", "function": {"name": "Bash", "arguments": "{\"command\": \"ls\"}"}}]},
           {"role": "tool", "tool_call_id": "toolu_01", "content": "a.txt"}, {"role": "user", "content": "and?"}]
    a = apply({"messages": oai, "tools": [hf_bash]})
    p = a["prompt"] if isinstance(a, dict) else ""
    check("DeepSeek-R1: the tools as system text, calls and results in its own format",
          tools_head in p and "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>Bash\n```json\n"
          "{\"command\": \"ls\"}\n```<｜tool▁call▁end｜>" in p and "<｜tool▁output▁begin｜>a.txt<｜tool▁output▁end｜>" in p
          and "[tool_result]" not in p and "{\"name\":\"Bash\"" not in p, a)
    anth = [{"role": "user", "content": "list files"},
            {"role": "assistant", "content": [{"type": "text", "text": "Let me look."},
                                              {"type": "tool_use", "id": "toolu_01", "name": "Bash", "input": {"command": "ls"}}]}] + loop_tail
    n = count({"model": "x", "messages": anth, "tools": [bash]})
    check("the same prompt from /v1/messages' conversion (%s tokens)" % (n,), isinstance(a, dict) and
          n == a["prompt_tokens"], (n, a))
    hf = [{"role": "system", "content": p[p.index(tools_head):p.index("<｜User｜>")]}] + oai[:1] + [dict(oai[1], tool_calls=[
        dict(oai[1]["tool_calls"][0], function={"name": "Bash", "arguments": {"command": "ls"}})])] + \
        [dict(oai[2], name="Bash"), oai[3]]
    want = rendered_tokens({"messages": hf, "bos_token": p[:p.index(tools_head)]})  # the vocabulary's BOS text
    check("= `pensieve template` with the block as a system message and the turns as given (%s)" % (want,),
          n == want, (n, want))
    s, j, _, _ = req("POST", "/v1/chat/completions", chat(messages=oai, max_tokens=2, tools=[hf_bash]), KEY)
    check("and /v1/chat/completions generates from it", s == 200 and j["usage"]["prompt_tokens"] == n, (s, j))
sys.exit(1 if fails else 0)
