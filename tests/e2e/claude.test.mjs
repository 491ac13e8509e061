// The Claude Code CLI (`claude -p`) against `pensieve serve` (started by run.sh: PENSIEVE_URL, PENSIEVE_KEY; the
// restart test starts its own from PENSIEVE_BIN, PENSIEVE_LOOP_MODEL and PENSIEVE_TEMPLATE).
// Its first request is ~77 KB of JSON (system prompt, 24 tool definitions, a system turn): see
// ../shared/docs/claude-code.md. Each run gets a fresh HOME and working directory (or one shared with the runs of
// the same test, as two terminals in one project would), no telemetry, and a hard timeout
// (PENSIEVE_E2E_CLAUDE_TIMEOUT seconds, default 480) after which it is killed and the test fails.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const baseURL = process.env.PENSIEVE_URL;
const apiKey = process.env.PENSIEVE_KEY;
const loopURL = process.env.PENSIEVE_LOOP_URL;
const { PENSIEVE_BIN: bin, PENSIEVE_LOOP_MODEL: loopModel, PENSIEVE_TEMPLATE: template } = process.env;
if (!baseURL || !apiKey || !loopURL || !bin || !loopModel || !template) {
  throw new Error('PENSIEVE_URL, _KEY, _LOOP_URL, _BIN, _LOOP_MODEL and _TEMPLATE must be set (run.sh does it)');
}
const claude = join(dirname(fileURLToPath(import.meta.url)), 'node_modules', '.bin', 'claude');
const limitS = Number(process.env.PENSIEVE_E2E_CLAUDE_TIMEOUT || 480);

// runs claude with ARGS and the auth variables AUTH against URL, with HOME and working directory `home` (default: a
// fresh one, removed afterwards); resolves {code, signal, stdout, stderr, seconds}
function runClaude(args, auth, { url = baseURL, home = null } = {}) {
  const own = !home;
  if (own) home = mkdtempSync(join(tmpdir(), 'pv-claude-'));
  const env = {
    PATH: process.env.PATH, HOME: home, TMPDIR: process.env.TMPDIR || '/tmp', LANG: 'C.UTF-8',
    ANTHROPIC_BASE_URL: url, CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1', DISABLE_TELEMETRY: '1',
    DISABLE_AUTOUPDATER: '1',
    CLAUDE_CODE_MAX_RETRIES: '0', // fail fast: a refused or broken response is not retried for minutes
    ...auth,
  };
  const t0 = Date.now();
  return new Promise((resolve) => {
    const child = spawn(claude, args, { cwd: home, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '', stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => child.kill('SIGKILL'), limitS * 1000);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (own) rmSync(home, { recursive: true, force: true });
      const seconds = (Date.now() - t0) / 1000;
      console.log(`# claude ${args.join(' ')}: exit ${code}${signal ? ' ' + signal : ''} after ${seconds.toFixed(1)} s`);
      resolve({ code, signal, stdout, stderr, seconds });
    });
  });
}

const T = { timeout: (limitS + 30) * 1000 };

test('claude -p "say hi" (x-api-key) prints the reply and exits 0', T, async () => {
  const r = await runClaude(['-p', 'say hi'], { ANTHROPIC_API_KEY: apiKey });
  assert.equal(r.signal, null, `killed after ${limitS} s; stderr: ${r.stderr}`);
  assert.equal(r.code, 0, `exit ${r.code}; stdout: ${r.stdout}; stderr: ${r.stderr}`);
  assert.match(r.stdout, /Hello from pensieve!/);
});

test('claude -p --output-format json (Authorization: Bearer) reports a successful result', T, async () => {
  const r = await runClaude(['-p', 'say hi', '--output-format', 'json'], { ANTHROPIC_AUTH_TOKEN: apiKey });
  assert.equal(r.signal, null, `killed after ${limitS} s; stderr: ${r.stderr}`);
  assert.equal(r.code, 0, `exit ${r.code}; stdout: ${r.stdout}; stderr: ${r.stderr}`);
  const out = JSON.parse(r.stdout);
  assert.equal(out.type, 'result');
  assert.equal(out.is_error, false);
  assert.match(out.result, /Hello from pensieve!/);
});

test('claude -p with a wrong key fails (the server refuses it)', T, async () => {
  const r = await runClaude(['-p', 'say hi'], { ANTHROPIC_API_KEY: 'not-' + apiKey });
  assert.equal(r.signal, null, `killed after ${limitS} s; stderr: ${r.stderr}`);
  assert.notEqual(r.code, 0);
  assert.match(r.stdout + r.stderr, /401|authentication|api key/i);
});

// the server's counters of prompt tokens: {computed, cached}
async function promptCounters(url) {
  const text = await (await fetch(`${url}/metrics`)).text();
  const read = (name) => Number(text.match(new RegExp(`^${name} (\\d+)$`, 'm'))[1]);
  return {
    computed: read('pensieve_prompt_tokens_computed_total'), cached: read('pensieve_prompt_tokens_cached_total'),
  };
}

// The tool loop (../shared/docs/claude-code.md): the first answer is a Bash tool_use, which Claude Code runs in its
// working directory and returns as a tool_result; the model (hi_model.py --tool-loop) answers that second request
// with text, and the turn ends. Each request starts with the same ~21k tokens of system prompt and tools (the system
// prompt names the project's directory and HOME: the same for two terminals in one project), which the prefix cache
// must serve after the first time.
async function toolLoop(home, url = loopURL) {
  const r = await runClaude(['-p', 'write the proof file', '--allowedTools', 'Bash'], { ANTHROPIC_API_KEY: apiKey },
    { url, home });
  assert.equal(r.signal, null, `killed after ${limitS} s; stderr: ${r.stderr}`);
  assert.equal(r.code, 0, `exit ${r.code}; stdout: ${r.stdout}; stderr: ${r.stderr}`);
  assert.match(r.stdout, /Hello from pensieve!/);
}

// runs fn() and checks that the Bash call ran in home; returns the prompt tokens the server at url computed and
// took from its cache meanwhile
async function countingTokens(url, home, fn) {
  rmSync(join(home, 'proof.txt'), { force: true });
  const before = await promptCounters(url);
  await fn();
  const after = await promptCounters(url);
  assert.equal(readFileSync(join(home, 'proof.txt'), 'utf8'), 'pensieve-ok\n');
  const n = { computed: after.computed - before.computed, cached: after.cached - before.cached };
  console.log(`# ${n.computed} prompt tokens computed, ${n.cached} from the prefix cache`);
  return n;
}

// runs fn(home) in a fresh directory (removed afterwards) with the loop server's counts (countingTokens)
async function inProject(fn) {
  const home = mkdtempSync(join(tmpdir(), 'pv-claude-'));
  try {
    return await countingTokens(loopURL, home, () => fn(home));
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
}

const servers = new Set(); // processes this file started, killed by PID if it ends early
process.on('exit', () => { for (const p of servers) p.kill('SIGKILL'); });

// starts `pensieve serve ARGS` on a free 127.0.0.1 port; resolves {proc, url} once /health answers 200
async function startServer(args) {
  const proc = spawn(bin, ['serve', '--port', '0', '--api-key', apiKey, ...args],
    { stdio: ['ignore', 'ignore', 'pipe'] });
  servers.add(proc);
  let log = '';
  proc.stderr.on('data', (d) => { log += d; });
  for (let i = 0; i < 600; i++) {
    const m = log.match(/listening on (http:\/\/127\.0\.0\.1:\d+)/);
    if (m) {
      const ok = await fetch(`${m[1]}/health`, { signal: AbortSignal.timeout(2000) }).then((r) => r.status === 200,
        () => false);
      if (ok) return { proc, url: m[1] };
    }
    if (proc.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  proc.kill('SIGKILL');
  throw new Error(`pensieve serve ${args.join(' ')} did not start: ${log}`);
}

// SIGTERM (SIGKILL 60 s later if it is still there), then the exit status (a clean shutdown writes the prefix
// cache); a server already stopped gives null
async function stopServer(srv) {
  if (!srv || !servers.has(srv.proc)) return null;
  const { proc } = srv;
  const gone = proc.exitCode !== null || proc.signalCode !== null;
  const done = gone ? Promise.resolve({ code: proc.exitCode, signal: proc.signalCode })
    : new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  proc.kill('SIGTERM');
  const timer = setTimeout(() => proc.kill('SIGKILL'), 60000);
  const r = await done;
  clearTimeout(timer);
  servers.delete(proc);
  return r;
}

test('claude -p runs the model\'s Bash call, sends the result back and prints the answer', T, async () => {
  const n = await inProject(toolLoop);
  // the second request's prefix (the first one's whole prompt but its last few tokens) is not computed again
  assert.ok(n.cached > 10000 && n.cached > 0.9 * n.computed, `prefix not reused: ${JSON.stringify(n)}`);
});

test('two claude sessions at once in one project (two slots) compute their shared prefix once', T, async () => {
  const n = await inProject((home) => Promise.all([toolLoop(home), toolLoop(home)]));
  // four requests: the prefix computed once (by whichever came first), read from the cache three times
  assert.ok(n.cached > 2 * n.computed, `prefix not shared: ${JSON.stringify(n)}`);
});

test('after a clean restart with --cache-dir, the next session reads its prefix from the saved cache', T, async () => {
  const home = mkdtempSync(join(tmpdir(), 'pv-claude-'));
  const cacheDir = mkdtempSync(join(tmpdir(), 'pv-cache-'));
  const args = ['-m', loopModel, '--ctx-size', '32768', '--chat-template', template, '--cache-dir', cacheDir];
  let srv = null;
  try {
    srv = await startServer(args);
    const cold = await countingTokens(srv.url, home, () => toolLoop(home, srv.url));
    assert.deepEqual(await stopServer(srv), { code: 0, signal: null });
    srv = await startServer(args);
    const warm = await countingTokens(srv.url, home, () => toolLoop(home, srv.url));
    assert.deepEqual(await stopServer(srv), { code: 0, signal: null });
    // the cold session computed its prefix; the restarted server computes only what follows it
    assert.ok(cold.computed > 10000, `cold: ${JSON.stringify(cold)}`);
    assert.ok(warm.cached > 10 * warm.computed, `restart did not keep the prefix: ${JSON.stringify(warm)}`);
  } finally {
    await stopServer(srv); // after a failure on the way
    rmSync(home, { recursive: true, force: true });
    rmSync(cacheDir, { recursive: true, force: true });
  }
});
