// The npm Anthropic SDK against `pensieve serve` (started by run.sh: PENSIEVE_URL, PENSIEVE_KEY).
// The model is hi_model.py's: it answers every prompt with " Hello from pensieve!" and ends its turn.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';

const baseURL = process.env.PENSIEVE_URL;
const apiKey = process.env.PENSIEVE_KEY;
if (!baseURL || !apiKey) throw new Error('PENSIEVE_URL and PENSIEVE_KEY must be set (tests/e2e/run.sh does it)');

const REPLY = 'Hello from pensieve!';
const client = new Anthropic({ baseURL, apiKey, maxRetries: 0, timeout: 120_000 });
const hi = [{ role: 'user', content: 'say hi' }];
const T = { timeout: 120_000 };

test('messages.create: a whole message', T, async () => {
  const msg = await client.messages.create({ model: 'claude-test', max_tokens: 64, messages: hi });
  assert.equal(msg.type, 'message');
  assert.equal(msg.role, 'assistant');
  assert.match(msg.id, /^msg_/);
  assert.equal(msg.model, 'claude-test', 'the requested model name is echoed');
  assert.equal(msg.content.length, 1);
  assert.equal(msg.content[0].type, 'text');
  assert.equal(msg.content[0].text.trim(), REPLY);
  assert.equal(msg.stop_reason, 'end_turn');
  assert.equal(msg.stop_sequence, null);
  assert.ok(msg.usage.input_tokens > 0);
  assert.equal(msg.usage.output_tokens, 5);
});

test('messages.create: max_tokens and stop_sequences', T, async () => {
  const short = await client.messages.create({ model: 'm', max_tokens: 2, messages: hi });
  assert.equal(short.stop_reason, 'max_tokens');
  assert.equal(short.content[0].text.trim(), 'Hello from');
  assert.equal(short.usage.output_tokens, 2);

  const stopped = await client.messages.create({ model: 'm', max_tokens: 64, messages: hi, stop_sequences: ['pens'] });
  assert.equal(stopped.stop_reason, 'stop_sequence');
  assert.equal(stopped.stop_sequence, 'pens');
  assert.equal(stopped.content[0].text.trim(), 'Hello from');
});

test('messages.create: what Claude Code sends (system blocks, tools, thinking, a system turn, tool results)', T, async () => {
  const msg = await client.messages.create({
    model: 'claude-opus-4-8',
    max_tokens: 64000,
    metadata: { user_id: '{"device_id":"x"}' },
    thinking: { type: 'adaptive' },
    system: [
      { type: 'text', text: 'x-anthropic-billing-header: cc_version=0; cc_entrypoint=sdk-test;' },
      { type: 'text', text: 'You are a helpful assistant.', cache_control: { type: 'ephemeral' } },
    ],
    tools: [{
      name: 'Bash', description: 'Run a command',
      input_schema: { type: 'object', properties: { command: { type: 'string' } }, required: ['command'] },
    }],
    messages: [
      { role: 'user', content: [{ type: 'text', text: 'run echo', cache_control: { type: 'ephemeral' } }] },
      { role: 'assistant', content: [{ type: 'tool_use', id: 'toolu_01', name: 'Bash', input: { command: 'echo ok' } }] },
      { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_01', content: [{ type: 'text', text: 'ok' }] }] },
    ],
  });
  assert.equal(msg.stop_reason, 'end_turn');
  assert.equal(msg.content[0].text.trim(), REPLY);
});

// A forced tool_choice constrains decoding (src/model/grammar.h): this model answers text, so only the mask makes
// the call appear. The schema bounds its string, or a model drawing among all allowed tokens writes a long one.
const WEATHER = {
  name: 'get_weather',
  description: 'The current weather in a city',
  input_schema: {
    type: 'object',
    properties: {
      city: { type: 'string', minLength: 1, maxLength: 12 },
      unit: { type: 'string', enum: ['celsius', 'fahrenheit'] },
      days: { type: 'integer' },
      hourly: { type: 'boolean' },
    },
    required: ['city', 'unit'],
  },
};
const CLOCK = { name: 'clock', description: 'The time', input_schema: { type: 'object', properties: {} } };

// the input against WEATHER's schema, field by field
function checkWeather(input) {
  assert.equal(typeof input, 'object');
  for (const k of Object.keys(input)) assert.ok(k in WEATHER.input_schema.properties, `unexpected property ${k}`);
  assert.equal(typeof input.city, 'string');
  assert.ok(input.city.length >= 1 && [...input.city].length <= 12, `city ${JSON.stringify(input.city)}`);
  assert.ok(['celsius', 'fahrenheit'].includes(input.unit), `unit ${input.unit}`);
  if ('days' in input) assert.ok(Number.isInteger(input.days));
  if ('hourly' in input) assert.equal(typeof input.hourly, 'boolean');
}

test('a forced tool_choice: a tool_use block whose input matches the schema, then a tool_result turn', T, async () => {
  const ask = [{ role: 'user', content: 'What is the weather in Paris?' }];
  const msg = await client.messages.create({
    model: 'm', max_tokens: 300, messages: ask, tools: [WEATHER, CLOCK], tool_choice: { type: 'tool', name: 'get_weather' },
  });
  assert.equal(msg.stop_reason, 'tool_use');
  assert.equal(msg.content.length, 1, 'the call alone');
  const [use] = msg.content;
  assert.equal(use.type, 'tool_use');
  assert.match(use.id, /^toolu_/);
  assert.equal(use.name, 'get_weather');
  checkWeather(use.input);

  // the SDK's message goes back as it is, with the tool's result: the next turn answers
  const next = await client.messages.create({
    model: 'm', max_tokens: 64, tools: [WEATHER, CLOCK],
    messages: [...ask, { role: 'assistant', content: msg.content },
      { role: 'user', content: [{ type: 'tool_result', tool_use_id: use.id, content: '21 C and clear' }] }],
  });
  assert.equal(next.stop_reason, 'end_turn');
  assert.equal(next.content[0].text.trim(), REPLY);
  assert.ok(next.usage.input_tokens + next.usage.cache_read_input_tokens > msg.usage.input_tokens + msg.usage.cache_read_input_tokens);
});

test('a forced tool_choice, streamed: the SDK assembles input_json_delta into the tool_use input', T, async () => {
  const stream = client.messages.stream({
    model: 'm', max_tokens: 300, messages: [{ role: 'user', content: 'Weather?' }], tools: [CLOCK, WEATHER],
    tool_choice: { type: 'any' },
  });
  const types = [];
  stream.on('streamEvent', (ev) => types.push(ev.type === 'content_block_delta' ? ev.delta.type : ev.type));
  const final = await stream.finalMessage();
  assert.equal(final.stop_reason, 'tool_use');
  assert.equal(final.content.length, 1);
  const [use] = final.content;
  assert.equal(use.type, 'tool_use');
  if (use.name === 'get_weather') checkWeather(use.input);
  else assert.deepEqual(use.input, {}, 'clock takes no properties');
  assert.ok(types.includes('input_json_delta'), types.join(' '));
  assert.ok(!types.includes('text_delta'), 'no text');
});

test('messages.stream: events, text deltas, finalMessage()', T, async () => {
  const stream = client.messages.stream({ model: 'claude-test', max_tokens: 64, messages: hi });
  const deltas = [];
  const events = [];
  stream.on('text', (delta) => deltas.push(delta));
  stream.on('streamEvent', (ev) => events.push(ev.type));
  const final = await stream.finalMessage();
  assert.equal(final.content.length, 1);
  assert.equal(final.content[0].type, 'text');
  assert.equal(final.content[0].text.trim(), REPLY);
  assert.equal(deltas.join(''), final.content[0].text, 'the deltas add up to the final text');
  assert.ok(deltas.length >= 2, `streamed in pieces (${deltas.length})`);
  assert.equal(final.stop_reason, 'end_turn');
  assert.equal(final.usage.output_tokens, 5);
  assert.equal(final.model, 'claude-test');
  assert.equal(events[0], 'message_start');
  assert.equal(events.at(-1), 'message_stop');
  for (const t of ['content_block_start', 'content_block_delta', 'content_block_stop', 'message_delta'])
    assert.ok(events.includes(t), `saw ${t}`);
});

test('messages.create({stream: true}): the raw events', T, async () => {
  const stream = await client.messages.create({ model: 'm', max_tokens: 3, messages: hi, stream: true });
  let text = '';
  let stop = null;
  for await (const ev of stream) {
    if (ev.type === 'content_block_delta' && ev.delta.type === 'text_delta') text += ev.delta.text;
    if (ev.type === 'message_delta') stop = ev.delta.stop_reason;
  }
  assert.equal(text.trim(), 'Hello from pens');
  assert.equal(stop, 'max_tokens');
});

test('messages.countTokens', T, async () => {
  const a = await client.messages.countTokens({ model: 'm', messages: hi });
  const b = await client.messages.countTokens({
    model: 'm', system: 'You are terse.', messages: [{ role: 'user', content: 'say hi, and then say it again' }],
  });
  assert.ok(Number.isInteger(a.input_tokens) && a.input_tokens > 0);
  assert.ok(b.input_tokens > a.input_tokens);
  const msg = await client.messages.create({ model: 'm', max_tokens: 1, messages: hi });
  assert.equal(msg.usage.input_tokens, a.input_tokens, 'count_tokens agrees with usage');
});

test('models.list', T, async () => {
  const ids = [];
  for await (const m of client.models.list()) {
    assert.equal(m.type, 'model');
    ids.push(m.id);
  }
  assert.ok(ids.length >= 1);
  assert.ok(ids.includes(process.env.PENSIEVE_MODEL_NAME ?? ids[0]));
});

test('errors surface as the SDK\'s APIError subclasses with the right status', T, async () => {
  await assert.rejects(client.messages.create({ model: 'm', max_tokens: 16, messages: [] }), (e) => {
    assert.ok(e instanceof Anthropic.APIError);
    assert.ok(e instanceof Anthropic.BadRequestError);
    assert.equal(e.status, 400);
    assert.equal(e.error?.type, 'error');
    assert.equal(e.error?.error?.type, 'invalid_request_error');
    return true;
  });
  await assert.rejects(client.messages.create({ model: 'm', max_tokens: 0, messages: hi }), Anthropic.BadRequestError);

  const bad = new Anthropic({ baseURL, apiKey: 'wrong-key', maxRetries: 0 });
  await assert.rejects(bad.messages.create({ model: 'm', max_tokens: 16, messages: hi }), (e) => {
    assert.ok(e instanceof Anthropic.AuthenticationError);
    assert.equal(e.status, 401);
    assert.equal(e.error?.error?.type, 'authentication_error');
    return true;
  });
  // a stream that is refused before it starts rejects finalMessage() the same way
  await assert.rejects(bad.messages.stream({ model: 'm', max_tokens: 16, messages: hi }).finalMessage(),
    Anthropic.AuthenticationError);
});

test('a prompt longer than the context is a 400 naming both sizes', T, async () => {
  const long = 'lorem ipsum dolor sit amet '.repeat(9000); // ~45k tokens > 32768
  await assert.rejects(client.messages.create({ model: 'm', max_tokens: 16, messages: [{ role: 'user', content: long }] }),
    (e) => {
      assert.ok(e instanceof Anthropic.BadRequestError);
      assert.match(e.message, /prompt is too long: \d+ tokens > \d+ maximum/);
      return true;
    });
});

test('a ~20k-token prompt (the size of Claude Code\'s first request) streams its reply', { timeout: 900_000 }, async () => {
  const words = ['tool', 'schema', 'input', 'the', 'command', 'file', 'path', 'string', 'object', 'description',
    'returns', 'when', 'user', 'asks', 'must', 'never', 'always', 'output', 'edit', 'search'];
  let seed = 7;
  const next = () => (seed = (seed * 1103515245 + 12345) % 2147483648);
  const text = Array.from({ length: 20000 }, () => words[next() % words.length]).join(' ');
  const { input_tokens: n } = await client.messages.countTokens({ model: 'm', messages: [{ role: 'user', content: text }] });
  assert.ok(n > 18000 && n < 26000, `${n} tokens`);
  const t0 = Date.now();
  let first = null;
  const stream = client.messages.stream({ model: 'm', max_tokens: 64, messages: [{ role: 'user', content: text }] },
    { timeout: 900_000 });
  stream.on('text', () => { first ??= (Date.now() - t0) / 1000; });
  const final = await stream.finalMessage();
  assert.equal(final.content[0].text.trim(), REPLY);
  assert.equal(final.usage.input_tokens, n);
  console.log(`# ${n}-token prompt: first token after ${first.toFixed(1)} s, done after ${((Date.now() - t0) / 1000).toFixed(1)} s`);
});
