#!/usr/bin/python3
"""template_cases.py PENSIEVE SHARED - every reference chat-template case through a real `pensieve serve`.

One server per template (stories260K, --chat-template FILE, PENSIEVE_NOW = the cases' `now`, a free port on
127.0.0.1), each case POSTed to /apply-template as a chat-completions body: the conversation's messages, the
shared tools/documents when the case passes them, add_generation_prompt, and chat_template_kwargs = the case's
bos_token, eos_token and kwargs. The answer must be the reference rendering byte for byte, or a 400 in OpenAI's
error shape when the reference raises, with raise_exception's message exactly.

The server is an OpenAI server, and its conversion adapts what the OpenAI wire format means (api/openai.h,
chat/chat.h); where that changes a case's conversation, the reference no longer applies, and the case is
compared byte for byte with `pensieve template` on the conversation as adapted:
  - an assistant message's content null or absent -> "", arguments given as JSON text -> that JSON,
    a tool result without a name -> the name of the call it answers (computed here from the case);
  - a template that never mentions "tools" gets tools, calls and results as text (chat.h): the flattened
    conversation is read back from a server whose template prints it ({{ messages | tojson }}).
Micro cases (one-feature snippets) go through too, their variables as chat_template_kwargs, except the two
that bind `messages` themselves. One case per template also goes through /v1/chat/completions: its
usage.prompt_tokens must equal /apply-template's prompt_tokens.

Bounded: every request has a timeout, every server is stopped by its PID (SIGTERM, then SIGKILL)."""
import http.client, json, os, re, signal, subprocess, sys, tempfile, time

BIN, SHARED = sys.argv[1], sys.argv[2]
CASES = os.path.join(SHARED, "templates", "cases")
MODEL = os.path.join(SHARED, "models", "stories260K.gguf")
SERVER_NAMES = ("messages", "tools", "documents", "add_generation_prompt", "bos_token", "eos_token")
fails = 0
counts = {"reference": 0, "adapted": 0, "micro": 0, "tokens": 0}


def fail(name, detail):
    global fails
    fails += 1
    print("FAIL:", name, str(detail)[:600])


class Server:
    """`pensieve serve` with one chat template, on a free port; stopped by PID."""

    def __init__(self, template_path, now, tmp):
        self.log = open(os.path.join(tmp, "serve.log"), "w+")
        env = dict(os.environ, PENSIEVE_NOW=now)
        self.proc = subprocess.Popen([BIN, "serve", "-m", MODEL, "--port", "0", "--threads", "1", "--parallel", "1",
                                      "--pid-file", os.path.join(tmp, "serve.pid"), "--chat-template", template_path],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=env)
        self.port = None
        for _ in range(300):
            self.log.seek(0)
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", self.log.read())
            if m and self.port is None:
                self.port = int(m.group(1))
            if self.port and self.health() == 200:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.log.seek(0)
        raise RuntimeError("the server did not start: " + self.log.read()[-2000:])

    def health(self):
        try:
            return self.post("/health", None)[0]
        except OSError:
            return None

    def post(self, path, body):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        c.request("GET" if body is None else "POST", path, body=None if body is None else json.dumps(body).encode(),
                  headers={"content-type": "application/json"})
        r = c.getresponse()
        raw = r.read()
        c.close()
        return r.status, json.loads(raw)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=20)
        self.log.close()


def render_cli(template_path, ctx, now):
    """`pensieve template` on ctx: ("ok", text) or ("error", message)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False, encoding="utf-8") as f:
        json.dump(ctx, f, ensure_ascii=False)
    try:
        r = subprocess.run([BIN, "template", "-t", template_path, "-c", f.name], capture_output=True, timeout=60,
                           env=dict(os.environ, PENSIEVE_NOW=now))
    finally:
        os.unlink(f.name)
    if r.returncode == 0:
        return "ok", r.stdout.decode("utf-8")
    return "error", r.stderr.decode("utf-8").strip().removeprefix("pensieve: ")


def adapt(messages):
    """The conversation as the OpenAI conversion passes it on (see the module comment)."""
    out, names = [], {}
    for m in messages:
        m = json.loads(json.dumps(m))
        if m["role"] == "assistant":
            if m.get("content") is None:
                m["content"] = ""
            for call in m.get("tool_calls", []):
                fn = call["function"]
                if isinstance(fn.get("arguments"), str):
                    try:
                        parsed = json.loads(fn["arguments"])
                    except ValueError:
                        parsed = None
                    if isinstance(parsed, (dict, list)):
                        fn["arguments"] = parsed
                if "id" in call:
                    names[call["id"]] = fn["name"]
        if m["role"] == "tool" and "name" not in m and m.get("tool_call_id") in names:
            m["name"] = names[m["tool_call_id"]]
        out.append(m)
    return out


def check_answer(name, status, j, want_kind, want, exact_error):
    """want_kind "ok": 200 with prompt == want; "error": a 400 in OpenAI's shape (param "messages") whose message
    is want (exact_error), the CLI's message want, or, want None, the server's for a template's runtime error."""
    if want_kind == "ok":
        if status != 200 or j.get("prompt") != want:
            got = j.get("prompt") if status == 200 else j
            if isinstance(got, str):
                i = next((k for k in range(min(len(got), len(want))) if got[k] != want[k]), min(len(got), len(want)))
                got = "differs at byte %d: want %r, got %r" % (i, want[max(0, i - 40):i + 80], got[max(0, i - 40):i + 80])
            fail(name, got)
            return False
        return True
    e = j.get("error") if isinstance(j, dict) else None
    ok = status == 400 and isinstance(e, dict) and e.get("type") == "invalid_request_error" and \
        e.get("param") == "messages" and isinstance(e.get("message"), str)
    if ok and exact_error:  # raise_exception's message, as is
        ok = e["message"] == want
    elif ok and want is not None:  # the CLI's message: raise_exception's as is, others after "chat template: "
        ok = e["message"] in (want, "chat template: " + want)
    elif ok:  # a runtime error of the reference: the server names the template as its source
        ok = e["message"].startswith("chat template: ")
    if not ok:
        fail(name, "want a 400 (%r), got %s %s" % (want, status, j))
    return ok


def run_template(tpl, cases, data, dump, tmp):
    path = os.path.join(SHARED, "templates", tpl)
    src = open(path, encoding="utf-8").read()
    flat_template = "tools" not in src  # chat.h: tools, calls and results go in as text
    convs = {c["name"]: c for c in data["conversations"]}
    srv = Server(path, cases[0]["now"], tmp)
    try:
        shortest = None
        for c in cases:
            msgs = convs[c["conversation"]]["messages"]
            body = {"messages": msgs, "add_generation_prompt": c["add_generation_prompt"],
                    "chat_template_kwargs": dict(c["kwargs"], bos_token=c["bos_token"], eos_token=c["eos_token"])}
            if c["tools"]:
                body["tools"] = data["tools"]
            if c["documents"]:
                body["documents"] = data["documents"]
            status, j = srv.post("/apply-template", body)
            ctx = dict(body["chat_template_kwargs"], add_generation_prompt=c["add_generation_prompt"],
                       documents=data["documents"] if c["documents"] else None, tools=None)
            has_tool_turns = any(m.get("tool_calls") or m["role"] == "tool" for m in msgs)
            flattened = flat_template and (c["tools"] or has_tool_turns)
            if flattened or adapt(msgs) != msgs:
                if flattened:
                    d_status, d = dump.post("/apply-template", {"messages": msgs, "tools": body.get("tools")})
                    ctx["messages"] = json.loads(d["prompt"]) if d_status == 200 else None
                else:
                    ctx.update(messages=adapt(msgs), tools=data["tools"] if c["tools"] else None)
                kind, want = render_cli(path, ctx, c["now"])
                ok = check_answer(c["id"] + (" (flattened)" if flattened else " (adapted)"), status, j, kind, want,
                                  False)
                same = c.get("expected") == want if kind == "ok" else "error" in c and \
                    (c["error_kind"] != "raise_exception" or c["error"] == want)
                counts["reference" if same else "adapted"] += ok
            else:
                raised = c.get("error_kind") == "raise_exception"  # other errors only need to be errors
                ok = check_answer(c["id"], status, j, "ok" if "expected" in c else "error",
                                  c["expected"] if "expected" in c else c["error"] if raised else None, raised)
                counts["reference"] += ok
            if ok and status == 200 and (shortest is None or len(j["prompt"]) < shortest[0]):
                shortest = (len(j["prompt"]), body, j["prompt_tokens"])
        if shortest:  # the same prompt as /v1/chat/completions renders for generation
            _, body, n = shortest
            status, j = srv.post("/v1/chat/completions", dict(body, model="x", max_tokens=1, temperature=0))
            if status != 200 or j["usage"]["prompt_tokens"] != n or n < 1:
                fail(tpl + ": /v1/chat/completions' prompt_tokens = /apply-template's (%d)" % n, (status, j))
            else:
                counts["tokens"] += 1
    finally:
        srv.stop()


def run_micro(m, tmp):
    path = os.path.join(tmp, "micro.jinja")
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(m["template"])
    srv = Server(path, m["now"], tmp)
    try:
        body = {"messages": [{"role": "user", "content": "-"}], "chat_template_kwargs": m["context"]}
        status, j = srv.post("/apply-template", body)
        if "expected" in m:
            ok = check_answer("micro " + m["name"], status, j, "ok", m["expected"], False)
        else:
            raised = m["error_kind"] == "raise_exception"
            ok = check_answer("micro " + m["name"], status, j, "error", m["error"] if raised else None, raised)
        counts["micro"] += ok
    finally:
        srv.stop()


def main():
    if not os.path.isfile(os.path.join(CASES, "cases.jsonl")) or not os.path.isfile(MODEL):
        print("skipped: template cases (%s or %s is absent)" % (CASES, MODEL))
        return 0
    data = json.load(open(os.path.join(CASES, "conversations.json"), encoding="utf-8"))
    cases = [json.loads(line) for line in open(os.path.join(CASES, "cases.jsonl"), encoding="utf-8")]
    micro = [json.loads(line) for line in open(os.path.join(CASES, "micro_cases.jsonl"), encoding="utf-8")]
    groups = {}
    for c in cases:
        groups.setdefault((c["template"], c["now"]), []).append(c)
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        dump_path = os.path.join(tmp, "dump.jinja")
        with open(dump_path, "w") as f:
            f.write("{{ messages | tojson }}")
        os.mkdir(os.path.join(tmp, "dump"))
        os.mkdir(os.path.join(tmp, "one"))
        dump = Server(dump_path, cases[0]["now"], os.path.join(tmp, "dump"))
        try:
            for (tpl, _), cs in sorted(groups.items()):
                run_template(tpl, cs, data, dump, os.path.join(tmp, "one"))
        finally:
            dump.stop()
        skipped = [m["name"] for m in micro if any(n in m["context"] or n in m["template"] for n in SERVER_NAMES)]
        for m in micro:
            if m["name"] not in skipped:
                run_micro(m, os.path.join(tmp, "one"))
    n = len(cases)
    print("%s: %d/%d template cases through /apply-template (%d against the reference, %d adapted as OpenAI's wire "
          "format means, against `pensieve template`), %d/%d micro cases (%s bind server variables: not sent), "
          "%d templates' prompt_tokens = /v1/chat/completions' (%.0f s)"
          % ("ok" if fails == 0 else "FAIL", counts["reference"] + counts["adapted"], n, counts["reference"],
             counts["adapted"], counts["micro"], len(micro), ", ".join(skipped), counts["tokens"], time.time() - t0))
    return 1 if fails else 0


sys.exit(main())
