#!/usr/bin/python3
"""template_cases.py PENSIEVE SHARED - every reference chat-template case through a real `pensieve serve`.

One server per template (stories260K, --chat-template FILE, PENSIEVE_NOW = the cases' `now`, a free port on
127.0.0.1), each case POSTed to /apply-template twice as a chat-completions body: the conversation's messages,
the shared tools/documents when the case passes them, add_generation_prompt, and chat_template_kwargs = the
case's bos_token, eos_token and kwargs.

  verbatim  with "verbatim": true the template gets messages and tools exactly as given, as Hugging Face's
            apply_chat_template does: every case must come back as the reference rendered it, byte for byte,
            or as a 400 in OpenAI's error shape when the reference raises, with raise_exception's message
            exactly. All 520, no exclusions.
  adapted   without it the server adapts what the OpenAI wire format means (api/openai.h, chat/chat.h); where
            that leaves a case's conversation as it was, the answer must still be the reference; where it
            changes it, the answer must be `pensieve template` on the conversation as adapted, computed here:
              - an assistant message's content null or absent -> "", arguments given as JSON text -> that
                JSON, a tool result without a name -> the name of the call it answers;
              - what the template does not render itself (the server's start-up line says what it found by
                probing: tools, calls, results, system text) as text in the documented syntax: the tools block
                of api/prompt.h joined to a leading system message (or opening the first user message when
                the template takes no system text), calls as {"name": ..., "arguments": ...} lines, results
                as "[tool_result] ..." user messages (results in a row, and the user message right after
                them, joined into one).
Micro cases (one-feature snippets) go through too, their variables as chat_template_kwargs (messages, when they
bind them, as the body's own): all of them verbatim, and those that bind no server variable adapted as well.
One case per template also goes through /v1/chat/completions: its usage.prompt_tokens must equal
/apply-template's prompt_tokens.

Bounded: every request has a timeout, every server is stopped by its PID (SIGTERM, then SIGKILL)."""
import http.client, json, os, re, signal, subprocess, sys, tempfile, time

BIN, SHARED = sys.argv[1], sys.argv[2]
CASES = os.path.join(SHARED, "templates", "cases")
MODEL = os.path.join(SHARED, "models", "stories260K.gguf")
SERVER_NAMES = ("messages", "tools", "documents", "add_generation_prompt", "bos_token", "eos_token")
fails = 0
counts = {"verbatim": 0, "reference": 0, "adapted": 0, "adapted_differs": 0, "micro": 0, "micro_verbatim": 0, "tokens": 0}
TOOLS_INTRO = ("# Tools\n\nYou may call these functions. To call one, answer with a JSON object "
               "{\"name\": NAME, \"arguments\": {...}} and nothing else.\n")  # api/prompt.h


def fail(name, detail):
    global fails
    fails += 1
    print("FAIL:", name, str(detail)[:600])


class Server:
    """`pensieve serve` with one chat template, on a free port; stopped by PID."""

    def __init__(self, template_path, now, tmp):
        self.log_path = os.path.join(tmp, "serve.log")
        env = dict(os.environ, PENSIEVE_NOW=now)
        # the server writes through its own open file: a shared file offset would let a read's seek(0) put the
        # server's next line over the first
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen([BIN, "serve", "-m", MODEL, "--port", "0", "--threads", "1", "--parallel",
                                          "1", "--pid-file", os.path.join(tmp, "serve.pid"), "--chat-template",
                                          template_path], stdout=log, stderr=subprocess.STDOUT, env=env)
        self.port = None
        deadline = time.time() + 60  # a loaded machine starts servers slowly
        while time.time() < deadline:
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", self.read_log())
            if m and self.port is None:
                self.port = int(m.group(1))
            if self.port and self.health() == 200:
                caps = re.search(r"renders tools: (\w+), calls: (\w+), results: (\w+), system text: (\w+)",
                                 self.read_log())
                self.caps = dict(zip(("tools", "calls", "results", "system"),
                                     [g == "yes" for g in caps.groups()])) if caps else None
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("the server did not start: " + self.read_log()[-2000:])

    def read_log(self):
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

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


def compact(v):
    """JSON text as the server writes it into the prompt (jansson's JSON_COMPACT, UTF-8 as is)."""
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False)


def tools_block(tools):
    """The tools block of api/prompt.h."""
    out = TOOLS_INTRO
    for t in tools:
        fn = t["function"]
        out += "\n- " + fn["name"] + (": " + fn["description"] if fn.get("description") else "")
        if fn.get("parameters") is not None:
            out += "\n  parameters: " + compact(fn["parameters"])
    return out


def flatten(messages, tools, caps):
    """What the server writes as text for a template with caps (chat/chat.h); other messages as they are."""
    block = tools_block(tools) if tools and not caps["tools"] else None
    in_user, out, placed, after_result = not caps["system"], [], False, False
    for i, m in enumerate(messages):
        role, content = m["role"], m["content"] if isinstance(m.get("content"), str) else ""
        if after_result and role in ("tool", "user"):  # results and the next user words: one user turn
            out[-1] = dict(out[-1], content=out[-1]["content"] + "\n\n" + ("[tool_result] " if role == "tool" else "")
                           + content)
            after_result = role == "tool"
            continue
        after_result = role == "tool" and not caps["results"]
        if after_result:
            m = {"role": "user", "content": "[tool_result] " + content}
        elif role == "assistant" and m.get("tool_calls") and not caps["calls"]:
            for call in m["tool_calls"]:
                fn = call["function"]
                content += ("\n" if content else "") + compact({"name": fn["name"], "arguments": fn["arguments"]})
            m = {"role": "assistant", "content": content}
        elif block and not placed and (role == "user" if in_user else i == 0 and role == "system"):
            placed = True
            m = dict(m, content=block + "\n\n" + content if in_user else content + "\n\n" + block)
        out.append(m)
    if block and not placed:
        out.insert(0, {"role": "user" if in_user else "system", "content": block})
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


def check_reference(name, status, j, c):
    """The answer is the reference's: its text, or its error (raise_exception's message exactly)."""
    raised = c.get("error_kind") == "raise_exception"  # other errors only need to be errors
    return check_answer(name, status, j, "ok" if "expected" in c else "error",
                        c["expected"] if "expected" in c else c["error"] if raised else None, raised)


def run_template(tpl, cases, data, tmp):
    path = os.path.join(SHARED, "templates", tpl)
    convs = {c["name"]: c for c in data["conversations"]}
    srv = Server(path, cases[0]["now"], tmp)
    try:
        if srv.caps is None:
            fail(tpl, "the start-up line does not say what the template renders")
            return
        shortest = None
        for c in cases:
            msgs = convs[c["conversation"]]["messages"]
            tools = data["tools"] if c["tools"] else None
            body = {"messages": msgs, "add_generation_prompt": c["add_generation_prompt"],
                    "chat_template_kwargs": dict(c["kwargs"], bos_token=c["bos_token"], eos_token=c["eos_token"])}
            if c["tools"]:
                body["tools"] = tools
            if c["documents"]:
                body["documents"] = data["documents"]
            # verbatim: the reference, always
            status, j = srv.post("/apply-template", dict(body, verbatim=True))
            counts["verbatim"] += check_reference(c["id"] + " (verbatim)", status, j, c)
            # adapted: the reference where the adaptation leaves the conversation as it was
            status, j = srv.post("/apply-template", body)
            adapted = flatten(adapt(msgs), tools, srv.caps)
            t_tools = tools if srv.caps["tools"] else None
            if adapted == msgs and t_tools == tools:
                ok = check_reference(c["id"], status, j, c)
                counts["reference"] += ok
            else:
                ctx = dict(body["chat_template_kwargs"], add_generation_prompt=c["add_generation_prompt"],
                           documents=data["documents"] if c["documents"] else None, messages=adapted, tools=t_tools)
                kind, want = render_cli(path, ctx, c["now"])
                ok = check_answer(c["id"] + " (adapted)", status, j, kind, want, False)
                counts["adapted"] += ok
                counts["adapted_differs"] += ok and (kind, want) != (("ok", c["expected"]) if "expected" in c else
                                                                     ("error", c.get("error", want)))
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
    """Verbatim: the context's messages (and other server variables) as the body's own fields, the rest as
    chat_template_kwargs; adapted too when the case binds none of them."""
    path = os.path.join(tmp, "micro.jinja")
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(m["template"])
    srv = Server(path, m["now"], tmp)
    try:
        ctx = dict(m["context"])
        body = {"messages": ctx.pop("messages", [{"role": "user", "content": "-"}])}
        for k in ("tools", "documents", "add_generation_prompt"):
            if k in ctx:
                body[k] = ctx.pop(k)
        body["chat_template_kwargs"] = ctx
        raised = m.get("error_kind") == "raise_exception"
        want_kind, want = ("ok", m["expected"]) if "expected" in m else ("error", m["error"] if raised else None)
        status, j = srv.post("/apply-template", dict(body, verbatim=True))
        counts["micro_verbatim"] += check_answer("micro " + m["name"] + " (verbatim)", status, j, want_kind, want,
                                                 raised)
        if not any(n in m["context"] or n in m["template"] for n in SERVER_NAMES):
            status, j = srv.post("/apply-template", body)
            counts["micro"] += check_answer("micro " + m["name"], status, j, want_kind, want, raised)
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
        for (tpl, _), cs in sorted(groups.items()):
            run_template(tpl, cs, data, tmp)
        for m in micro:
            run_micro(m, tmp)
    bound = [m["name"] for m in micro if any(n in m["context"] or n in m["template"] for n in SERVER_NAMES)]
    n, n_micro = len(cases), len(micro)
    if counts["verbatim"] != n or counts["reference"] + counts["adapted"] != n or \
            counts["micro_verbatim"] != n_micro or counts["micro"] != n_micro - len(bound):
        fail("totals", counts)
    print("%s: %d/%d template cases verbatim through /apply-template = the reference; adapted as OpenAI's wire "
          "format means: %d/%d (%d = the reference, %d changed = `pensieve template` on the adapted conversation, %d "
          "of which render differently from the reference); "
          "micro cases: %d/%d verbatim, %d/%d adapted (%s bind server variables); %d templates' prompt_tokens = "
          "/v1/chat/completions' (%.0f s)"
          % ("ok" if fails == 0 else "FAIL", counts["verbatim"], n, counts["reference"] + counts["adapted"], n,
             counts["reference"], counts["adapted"], counts["adapted_differs"], counts["micro_verbatim"], n_micro, counts["micro"],
             n_micro - len(bound), ", ".join(bound), counts["tokens"], time.time() - t0))
    return 1 if fails else 0


sys.exit(main())
