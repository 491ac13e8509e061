#!/usr/bin/python3
"""fuzz_server.py PORT PID [REQUESTS] [SECONDS] [SEED] - hostile bodies against a running pensieve (see server_test.sh).

Valid requests of every endpoint (tools, tool results, forced tool calls, JSON schemas, streams, stop sequences)
are mutated: values replaced by odd strings (NUL, lone surrogates, control tokens, 5,000 characters), odd numbers
(2^64, 1e308, -1), random JSON schemas, nesting thousands deep; keys dropped or added; the text itself cut, bit-flipped
or spliced with bad UTF-8; damaged HTTP around the bodies (methods, versions, lengths, chunking, pipelining,
headers of 20 KB or 500 of them, sent in dribbles); clients that leave mid-body or mid-stream. Every answer to a
well-formed HTTP request must be of the API's shape (200, or a 4xx with a JSON error body; 503/529 only under
memory pressure), and the server must live through all of it and serve a plain request after. Bounded by REQUESTS
(default 3000) and SECONDS (default 60); the seed (default 1) makes a failure reproducible."""
import copy, http.client, json, random, re, socket, sys, time

port, pid = int(sys.argv[1]), int(sys.argv[2])
n_max = int(sys.argv[3]) if len(sys.argv) > 3 else 3000
seconds = float(sys.argv[4]) if len(sys.argv) > 4 else 60.0
seed = int(sys.argv[5]) if len(sys.argv) > 5 else 1
KEY = "sekrit"
rng = random.Random(seed)

SCHEMA = {"type": "object", "properties": {
    "city": {"type": "string", "minLength": 1, "maxLength": 20}, "days": {"type": "integer", "minimum": 1, "maximum": 7},
    "units": {"enum": ["c", "f"]}, "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
    "opt": {"anyOf": [{"type": "null"}, {"type": "number"}]}}, "required": ["city"], "additionalProperties": False}
TOOL = {"name": "get_weather", "description": "Weather", "input_schema": SCHEMA}
OAI_TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": SCHEMA}}
SEEDS = [
    ("/v1/messages", {"model": "m", "max_tokens": 4, "messages": [{"role": "user", "content": "Hi"}]}),
    ("/v1/messages", {"model": "m", "max_tokens": 4, "stream": True, "system": [{"type": "text", "text": "sys"}],
                      "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]},
                                   {"role": "assistant", "content": [{"type": "tool_use", "id": "t1",
                                                                      "name": "get_weather", "input": {"city": "x"}}]},
                                   {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1",
                                                                 "content": "sunny"}]}],
                      "tools": [TOOL], "tool_choice": {"type": "auto"}, "stop_sequences": ["\n\n"],
                      "temperature": 0.5, "top_p": 0.9, "top_k": 5}),
    ("/v1/messages", {"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "weather?"}],
                      "tools": [TOOL], "tool_choice": {"type": "tool", "name": "get_weather"}}),
    ("/v1/messages/count_tokens", {"model": "m", "messages": [{"role": "user", "content": "Hi"}], "tools": [TOOL],
                                   "system": "be brief"}),
    ("/v1/chat/completions", {"model": "m", "max_tokens": 4, "seed": 3, "stop": ["x"], "tools": [OAI_TOOL],
                              "tool_choice": "auto", "messages": [
                                  {"role": "system", "content": "s"}, {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
                                  {"role": "assistant", "content": None, "tool_calls": [
                                      {"id": "c1", "type": "function",
                                       "function": {"name": "get_weather", "arguments": "{\"city\":\"x\"}"}}]},
                                  {"role": "tool", "tool_call_id": "c1", "content": "sunny"}]}),
    ("/v1/chat/completions", {"model": "m", "max_tokens": 6, "stream": True, "stream_options": {"include_usage": True},
                              "messages": [{"role": "user", "content": "json"}],
                              "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": SCHEMA}}}),
    ("/v1/chat/completions", {"model": "m", "max_completion_tokens": 6, "messages": [{"role": "user", "content": "x"}],
                              "tools": [OAI_TOOL], "tool_choice": "required"}),
    ("/v1/completions", {"model": "m", "prompt": "Once upon", "max_tokens": 4, "stop": "\n"}),
    ("/v1/completions", {"model": "m", "prompt": "a b", "max_tokens": 3, "stream": True}),
    ("/apply-template", {"messages": [{"role": "user", "content": "x"}], "tools": [OAI_TOOL], "add_generation_prompt": True}),
]
ODD_STR = ["", "\u0000", "\ud800", "\udfff", "\U0001F600" * 50, "a" * 5000, "<|im_start|>", "<s>", "{{", "{%", "\\",
           "\"", "\u2028", "null", "1e999", "\n" * 50, "{\"city\":", "[" * 100]
ODD_NUM = [0, -1, 1, 2**31, -2**31, 2**63, 2**64, -2**63, 1e308, -1e308, 1e-320, 0.5, 3.9, 65536, 10**30]


def schema(depth=0):
    kind = rng.choice(["object", "array", "string", "integer", "number", "boolean", "null", "enum", "any", "const",
                       "odd"] if depth < 4 else ["string", "integer", "boolean"])
    if kind == "object":
        props = {("p%d" % i if rng.random() < 0.9 else rng.choice(ODD_STR)): schema(depth + 1)
                 for i in range(rng.randint(0, 4))}
        s = {"type": "object", "properties": props}
        if props and rng.random() < 0.6:
            s["required"] = rng.sample(list(props), rng.randint(0, len(props)))
        if rng.random() < 0.5:
            s["additionalProperties"] = rng.choice([False, True, schema(depth + 1)])
        return s
    if kind == "array":
        s = {"type": "array", "items": schema(depth + 1)}
        for k in ("minItems", "maxItems"):
            if rng.random() < 0.5:
                s[k] = rng.choice(ODD_NUM)
        return s
    if kind == "string":
        s = {"type": "string"}
        for k in ("minLength", "maxLength"):
            if rng.random() < 0.4:
                s[k] = rng.choice(ODD_NUM)
        if rng.random() < 0.2:
            s["pattern"] = rng.choice(["^a+$", "[", "(a|b)*c"])
        if rng.random() < 0.2:
            s["format"] = rng.choice(["date", "date-time", "email", "uuid", "zz"])
        return s
    if kind in ("integer", "number"):
        s = {"type": kind}
        for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"):
            if rng.random() < 0.3:
                s[k] = rng.choice(ODD_NUM)
        return s
    if kind == "enum":
        return {"enum": [rng.choice(ODD_STR + ODD_NUM + [None, True, {}, []]) for _ in range(rng.randint(0, 4))]}
    if kind == "any":
        return {rng.choice(["anyOf", "oneOf", "allOf"]): [schema(depth + 1) for _ in range(rng.randint(0, 3))]}
    if kind == "const":
        return {"const": rng.choice(ODD_STR + ODD_NUM + [None, {"a": 1}, [1, 2]])}
    if kind == "odd":
        return rng.choice([{}, True, False, None, [], "x", {"type": ["string", "null"]}, {"$ref": "#"}, {"type": 5},
                           {"not": {}}, {"type": "string", "enum": []},
                           {"type": "object", "properties": {"a": {"$ref": "#"}}}])
    return {"type": kind}


def value(depth=0):
    r = rng.random()
    if r < 0.25:
        return rng.choice(ODD_STR)
    if r < 0.45:
        return rng.choice(ODD_NUM)
    if r < 0.55:
        return rng.choice([None, True, False])
    if r < 0.7 and depth < 3:
        return [value(depth + 1) for _ in range(rng.randint(0, 3))]
    if r < 0.85 and depth < 3:
        return {rng.choice(["type", "text", "role", "content", "name", "id", "input", "x"]): value(depth + 1)
                for _ in range(rng.randint(0, 3))}
    if r < 0.92:
        return schema()
    return "__DEEP_%d_%d__" % (rng.randint(50, 5000), rng.randint(0, 1))  # nesting, spliced into the text


def paths(v, path=()):
    yield path
    if len(path) < 30 and isinstance(v, (dict, list)):
        for k in (list(v) if isinstance(v, dict) else range(len(v))):
            yield from paths(v[k], path + (k,))


def mutate(body):
    b = copy.deepcopy(body)
    for _ in range(rng.randint(1, 4)):
        p = rng.choice(list(paths(b)))
        if not p:
            continue
        parent = b
        for k in p[:-1]:
            parent = parent[k]
        k, op = p[-1], rng.random()
        if op < 0.5:
            parent[k] = value()
        elif op < 0.65:
            del parent[k]
        elif op < 0.75 and isinstance(parent, list):
            parent.insert(k, copy.deepcopy(parent[k]))
        elif op < 0.85 and isinstance(parent, dict):
            parent[rng.choice(["type", "cache_control", "metadata", "thinking", "x"])] = value()
        else:
            parent[k] = schema()
    for key in ("max_tokens", "max_completion_tokens"):  # short answers keep the run fast
        if isinstance(b.get(key), int) and not isinstance(b.get(key), bool) and b[key] > 16:
            b[key] = 16
    return b


def deepen(text):
    return re.sub(r'"__DEEP_(\d+)_(\d)__"', lambda m: ("[" * int(m.group(1)) + "1" + "]" * int(m.group(1)))
                  if m.group(2) == "0" else ('{"a":' * int(m.group(1)) + "1" + "}" * int(m.group(1))), text)


def damage(data):
    d = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        if not d:
            break
        i, op = rng.randrange(len(d)), rng.random()
        if op < 0.4:
            d[i] = rng.randrange(256)
        elif op < 0.6:
            del d[i:i + rng.randint(1, 20)]
        elif op < 0.8:
            d[i:i] = rng.choice([b"\xff", b"\xc0\x80", b"\\u", b"\"", b"}", b"]", b"\x00", b"\\ud800", b"1e99999"])
        else:
            del d[i:]
    return bytes(d)


def body_of(path, seed_body):
    r = rng.random()
    if r < 0.8:
        text = json.dumps(mutate(seed_body if r < 0.65 else mutate(seed_body)), ensure_ascii=rng.random() < 0.5)
        return deepen(text).encode("utf-8", "surrogatepass")
    return damage(json.dumps(seed_body).encode())


def leave_early(path, data):
    """A client that goes away mid-body or right after the first bytes of its answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        head = ("POST %s HTTP/1.1\r\nHost: x\r\nx-api-key: %s\r\ncontent-type: application/json\r\n"
                "content-length: %d\r\n\r\n" % (path, KEY, len(data))).encode()
        try:
            if rng.random() < 0.5:
                s.sendall(head + data[:rng.randint(0, len(data))])
            else:
                s.sendall(head + data)
                s.recv(rng.randint(1, 200))
        except OSError:
            pass


def raw_request(path, data):
    """A damaged HTTP request (method, version, headers, lengths, chunking, pipelining, bytes), sent whole or
    dribbled; whatever comes back is read briefly and not judged: the server has only to live on."""
    method = rng.choice([b"POST", b"GET", b"PUT", b"HEAD", b"OPTIONS", b"POSTX", b""])
    target = rng.choice([path.encode(), b"/health", b"/v1/models/x", b"/" + b"a" * 9000, b"/%00", b"//v1//messages"])
    version = rng.choice([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/9", b""])
    heads = [b"Host: x", b"x-api-key: " + KEY.encode()]
    length = rng.choice([len(data), len(data), 0, -1, 2**63, len(data) + 5, max(len(data) - 3, 0), None, "abc"])
    if length is not None:
        heads.append(b"Content-Length: " + str(length).encode())
    if rng.random() < 0.2:
        heads.append(b"Transfer-Encoding: chunked")
        data = (b"%x\r\n" % len(data) + data + b"\r\n0\r\n\r\n") if rng.random() < 0.7 else b"zz\r\n" + data
    for _ in range(rng.randint(0, 4)):
        heads.append(rng.choice([b"Content-Type: application/json", b"X: " + b"y" * rng.randint(0, 20000), b"Bad Header",
                                 b":", b"\x00: \x00", b"Expect: 100-continue", b"Connection: close",
                                 b"Accept: text/event-stream"]))
    if rng.random() < 0.05:
        heads += [b"H%d: v" % i for i in range(500)]
    sep = rng.choice([b"\r\n", b"\r\n", b"\n"])
    raw = method + b" " + target + b" " + version + sep + sep.join(heads) + sep + sep + data
    if rng.random() < 0.3:
        raw *= rng.randint(2, 3)  # pipelined
    if rng.random() < 0.2:
        raw = damage(raw)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        step = 7 if rng.random() < 0.1 else len(raw) or 1
        try:  # the server may answer a broken request and close before it is all sent
            for i in range(0, len(raw), step):
                s.sendall(raw[i:i + step])
            s.settimeout(0.3)
            while s.recv(65536):
                pass
        except OSError:  # the timeout included
            pass


def post(path, data, timeout=60):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("POST", path, body=data, headers={"content-type": "application/json", "x-api-key": KEY})
        r = c.getresponse()
        return r.status, r.getheader("content-type") or "", r.read()
    finally:
        c.close()


def alive():
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")  # not a zombie
    except OSError:
        return False


fails, counts, bad = 0, {}, []
t_end = time.monotonic() + seconds
n = 0
while n < n_max and time.monotonic() < t_end and alive():
    path, seed_body = rng.choice(SEEDS)
    data = body_of(path, seed_body)
    n += 1
    try:
        r = rng.random()
        if r < 0.04:
            leave_early(path, data)
            continue
        if r < 0.08:
            raw_request(path, data)
            continue
        status, ctype, raw = post(path, data)
    except (OSError, http.client.HTTPException) as e:
        bad.append("request %d: %s: %s; body %r" % (n, type(e).__name__, e, data[:300]))
        continue
    counts[status] = counts.get(status, 0) + 1
    shaped = status == 200
    if 400 <= status < 500 or status in (503, 529):
        try:
            j = json.loads(raw)
            shaped = isinstance(j, dict) and isinstance(j.get("error"), dict) and isinstance(j["error"].get("message"), str)
        except ValueError:
            shaped = False
    if not shaped:
        bad.append("request %d: %d %s %r; body %r" % (n, status, ctype, raw[:200], data[:300]))


def check(name, cond, detail=""):
    global fails
    print("ok:" if cond else "FAIL:", name, "" if cond else detail)
    fails += not cond


summary = ", ".join("%d x %d" % (v, k) for k, v in sorted(counts.items()))
check("fuzz (seed %d): %d hostile requests (%s), every answer of the API's shape" % (seed, n, summary),
      alive() and not bad, "\n".join(bad[:5]) + ("" if alive() else "\nthe server is gone"))
status, _, raw = post("/v1/messages", json.dumps({"model": "m", "max_tokens": 2, "messages": [
    {"role": "user", "content": "Once upon a time"}]}).encode()) if alive() else (0, "", b"")
check("after the fuzz a plain request is served", status == 200, (status, raw[:200]))
sys.exit(1 if fails else 0)
