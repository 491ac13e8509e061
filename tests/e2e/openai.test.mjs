// The npm OpenAI SDK against `pensieve serve` (started by run.sh: PENSIEVE_URL, PENSIEVE_KEY; PENSIEVE_TOOL_URL).
// PENSIEVE_URL's model is hi_model.py's: it answers every prompt with " Hello from pensieve!" and ends its turn.
// PENSIEVE_TOOL_URL's is hi_model.py --tool-call's, served with a Qwen2.5 chat template (Hermes tool calls): it
// answers every prompt with <tool_call>{"name":"weather","arguments":{"city": "Paris"}}</tool_call>, which the
// server's tool-call parser turns into message.tool_calls when the request offers tools.
//
// tool_choice "required" (or a named function) and response_format constrain decoding (src/model/grammar.h): the
// hi model, which answers text, then writes a call or a JSON object; only the mask makes them appear, so their
// schemas bound the strings (a model that draws among all allowed tokens writes long strings otherwise).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';

const url = process.env.PENSIEVE_URL;
const apiKey = process.env.PENSIEVE_KEY;
const toolUrl = process.env.PENSIEVE_TOOL_URL;
if (!url || !apiKey || !toolUrl)
  throw new Error('PENSIEVE_URL, PENSIEVE_TOOL_URL and PENSIEVE_KEY must be set (tests/e2e/run.sh does it)');

const REPLY = 'Hello from pensieve!';
const client = new OpenAI({ baseURL: `${url}/v1`, apiKey, maxRetries: 0, timeout: 120_000 });
const toolClient = new OpenAI({ baseURL: `${toolUrl}/v1`, apiKey, maxRetries: 0, timeout: 120_000 });
const hi = [{ role: 'user', content: 'say hi' }];
const T = { timeout: 120_000 };

const WEATHER = {
  type: 'function',
  function: {
    name: 'weather',
    description: 'The current weather in a city',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
  },
};
const CALL = { name: 'weather', arguments: { city: 'Paris' } };
// bounded schemas for constrained calls
const FORECAST = {
  type: 'function',
  function: {
    name: 'forecast',
    description: 'The weather forecast for a city',
    parameters: {
      type: 'object',
      properties: {
        city: { type: 'string', minLength: 1, maxLength: 12 },
        unit: { type: 'string', enum: ['celsius', 'fahrenheit'] },
        days: { type: 'integer' },
      },
      required: ['city', 'unit'],
    },
  },
};
const SEARCH = {
  type: 'function',
  function: {
    name: 'search',
    description: 'Search the web',
    parameters: {
      type: 'object',
      properties: { terms: { type: 'array', items: { type: 'string', maxLength: 8 }, minItems: 1, maxItems: 3 } },
      required: ['terms'],
    },
  },
};

// explicit checks of the two schemas above (no validator library)
function checkForecast(a) {
  assert.equal(typeof a, 'object');
  assert.deepEqual(Object.keys(a).filter((k) => !['city', 'unit', 'days'].includes(k)), [], 'no other properties');
  assert.equal(typeof a.city, 'string');
  assert.ok(a.city.length >= 1 && [...a.city].length <= 12, `city ${JSON.stringify(a.city)}`);
  assert.ok(['celsius', 'fahrenheit'].includes(a.unit));
  if ('days' in a) assert.ok(Number.isInteger(a.days));
}
function checkSearch(a) {
  assert.deepEqual(Object.keys(a), ['terms']);
  assert.ok(Array.isArray(a.terms) && a.terms.length >= 1 && a.terms.length <= 3);
  for (const t of a.terms) assert.ok(typeof t === 'string' && [...t].length <= 8);
}

// the chunks of a chat.completions stream, and the text of their content deltas
async function collect(stream) {
  const chunks = [];
  for await (const c of stream) chunks.push(c);
  const text = chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('');
  return { chunks, text };
}

test('chat.completions.create: a whole completion', T, async () => {
  const r = await client.chat.completions.create({ model: 'gpt-test', messages: hi });
  assert.match(r.id, /^chatcmpl-/);
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.model, 'gpt-test', 'the requested model name is echoed');
  assert.ok(Number.isInteger(r.created) && r.created > 1.6e9);
  assert.equal(r.choices.length, 1);
  const [c] = r.choices;
  assert.equal(c.index, 0);
  assert.equal(c.message.role, 'assistant');
  assert.equal(c.message.content.trim(), REPLY);
  assert.equal(c.message.tool_calls, undefined);
  assert.equal(c.finish_reason, 'stop');
  assert.ok(r.usage.prompt_tokens > 0);
  assert.equal(r.usage.completion_tokens, 5);
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + 5);
  assert.ok(Number.isInteger(r.usage.prompt_tokens_details.cached_tokens));
});

test('chat.completions.create: a repeated prompt is read from the prefix cache (usage.prompt_tokens_details)', T, async () => {
  // long enough to fill whole cache blocks, and new to this server run
  const content = `Tell me about the number ${Date.now()}. ` + 'It is a fine number with many digits. '.repeat(12);
  const req = { model: 'm', messages: [{ role: 'system', content: 'You are terse.' }, { role: 'user', content }] };
  const a = await client.chat.completions.create(req);
  const b = await client.chat.completions.create(req);
  assert.equal(b.usage.prompt_tokens, a.usage.prompt_tokens);
  assert.ok(a.usage.prompt_tokens > 64, `${a.usage.prompt_tokens} prompt tokens`);
  const ca = a.usage.prompt_tokens_details.cached_tokens, cb = b.usage.prompt_tokens_details.cached_tokens;
  assert.ok(cb > ca, `cached_tokens ${ca} then ${cb}`);
  assert.ok(cb >= a.usage.prompt_tokens / 2 && cb < a.usage.prompt_tokens, `${cb} of ${a.usage.prompt_tokens} cached`);
  assert.equal(b.choices[0].message.content, a.choices[0].message.content);
});

test('chat.completions.create({stream: true}): deltas add up to the non-streaming text; the usage chunk', T, async () => {
  const whole = await client.chat.completions.create({ model: 'm', messages: hi, temperature: 0 });
  const stream = await client.chat.completions.create({
    model: 'm', messages: hi, temperature: 0, stream: true, stream_options: { include_usage: true },
  });
  const { chunks, text } = await collect(stream);
  assert.equal(text, whole.choices[0].message.content, 'the deltas concatenate to the non-streaming content');
  for (const c of chunks) {
    assert.equal(c.object, 'chat.completion.chunk');
    assert.equal(c.id, chunks[0].id, 'one id for the whole stream');
    assert.equal(c.model, 'm');
  }
  assert.equal(chunks[0].choices[0].delta.role, 'assistant');
  assert.ok(chunks.filter((c) => c.choices[0]?.delta?.content).length >= 2, 'streamed in pieces');
  const fin = chunks.filter((c) => c.choices[0]?.finish_reason);
  assert.equal(fin.length, 1);
  assert.equal(fin[0].choices[0].finish_reason, 'stop');
  const last = chunks.at(-1);
  assert.deepEqual(last.choices, [], 'the usage chunk has no choices');
  assert.equal(last.usage.completion_tokens, 5);
  assert.equal(last.usage.prompt_tokens, whole.usage.prompt_tokens);
  assert.equal(last.usage.total_tokens, last.usage.prompt_tokens + 5);
  for (const c of chunks.slice(0, -1)) assert.equal(c.usage ?? null, null, 'only the last chunk has usage');

  // without include_usage: no usage chunk
  const plain = await collect(await client.chat.completions.create({ model: 'm', messages: hi, stream: true }));
  assert.equal(plain.text.trim(), REPLY);
  assert.ok(plain.chunks.every((c) => c.choices.length === 1 && c.usage == null));
});

test('chat.completions.stream(): the SDK\'s stream helper and finalChatCompletion()', T, async () => {
  const stream = client.chat.completions.stream({ model: 'm', messages: hi, stream_options: { include_usage: true } });
  const deltas = [];
  stream.on('content', (delta) => deltas.push(delta));
  const final = await stream.finalChatCompletion();
  assert.equal(final.choices[0].message.content.trim(), REPLY);
  assert.equal(deltas.join(''), final.choices[0].message.content);
  assert.equal(final.choices[0].finish_reason, 'stop');
  assert.equal(final.usage?.completion_tokens, 5);
});

test('chat.completions.create: stop -> finish_reason "stop", max_tokens -> "length"', T, async () => {
  const stopped = await client.chat.completions.create({ model: 'm', messages: hi, stop: ['pens'] });
  assert.equal(stopped.choices[0].finish_reason, 'stop');
  assert.equal(stopped.choices[0].message.content.trim(), 'Hello from');

  const several = await client.chat.completions.create({ model: 'm', messages: hi, stop: ['zzz', 'from'] });
  assert.equal(several.choices[0].finish_reason, 'stop');
  assert.equal(several.choices[0].message.content.trim(), 'Hello');

  const short = await client.chat.completions.create({ model: 'm', messages: hi, max_tokens: 2 });
  assert.equal(short.choices[0].finish_reason, 'length');
  assert.equal(short.choices[0].message.content.trim(), 'Hello from');
  assert.equal(short.usage.completion_tokens, 2);

  const newer = await client.chat.completions.create({ model: 'm', messages: hi, max_completion_tokens: 3 });
  assert.equal(newer.choices[0].finish_reason, 'length');
  assert.equal(newer.usage.completion_tokens, 3);

  const s = await collect(await client.chat.completions.create({ model: 'm', messages: hi, max_tokens: 2, stream: true }));
  assert.equal(s.text.trim(), 'Hello from');
  assert.equal(s.chunks.find((c) => c.choices[0]?.finish_reason)?.choices[0].finish_reason, 'length');
});

test('completions.create (legacy): non-streaming and streaming', T, async () => {
  const r = await client.completions.create({ model: 'm', prompt: 'Once upon a time' });
  assert.match(r.id, /^cmpl-/);
  assert.equal(r.object, 'text_completion');
  assert.equal(r.model, 'm');
  assert.equal(r.choices.length, 1);
  assert.equal(r.choices[0].text.trim(), REPLY);
  assert.equal(r.choices[0].finish_reason, 'stop');
  assert.equal(r.usage.completion_tokens, 5);
  assert.ok(r.usage.prompt_tokens > 0);

  const short = await client.completions.create({ model: 'm', prompt: ['Once upon a time'], max_tokens: 1 });
  assert.equal(short.choices[0].text.trim(), 'Hello');
  assert.equal(short.choices[0].finish_reason, 'length');

  const stream = await client.completions.create({
    model: 'm', prompt: 'Once upon a time', stream: true, stream_options: { include_usage: true },
  });
  const chunks = [];
  for await (const c of stream) chunks.push(c);
  const text = chunks.map((c) => c.choices[0]?.text ?? '').join('');
  assert.equal(text, r.choices[0].text, 'the streamed pieces add up to the whole text');
  assert.ok(chunks.every((c) => c.object === 'text_completion'));
  assert.equal(chunks.find((c) => c.choices[0]?.finish_reason)?.choices[0].finish_reason, 'stop');
  assert.equal(chunks.at(-1).usage?.completion_tokens, 5);
});

test('models.list and models.retrieve', T, async () => {
  const name = process.env.PENSIEVE_MODEL_NAME;
  const models = [];
  for await (const m of client.models.list()) models.push(m);
  assert.ok(models.length >= 1);
  const ids = models.map((m) => m.id);
  assert.ok(ids.includes(name ?? ids[0]), `${name} in ${ids}`);
  for (const m of models) {
    assert.equal(m.object, 'model');
    assert.equal(m.owned_by, 'pensieve');
    assert.ok(Number.isInteger(m.created));
  }
  const one = await client.models.retrieve(ids[0]);
  assert.equal(one.id, ids[0]);
  await assert.rejects(client.models.retrieve('no-such-model'), (e) => {
    assert.ok(e instanceof OpenAI.NotFoundError);
    assert.equal(e.status, 404);
    return true;
  });
  const tools = [];
  for await (const m of toolClient.models.list()) tools.push(m.id);
  assert.ok(tools.includes(process.env.PENSIEVE_TOOL_MODEL_NAME ?? tools[0]));
});

test('errors surface as the SDK\'s APIError subclasses with the right status', T, async () => {
  await assert.rejects(client.chat.completions.create({ model: 'm', messages: [] }), (e) => {
    assert.ok(e instanceof OpenAI.APIError);
    assert.ok(e instanceof OpenAI.BadRequestError);
    assert.equal(e.status, 400);
    assert.equal(e.type, 'invalid_request_error');
    assert.equal(e.param, 'messages');
    return true;
  });
  await assert.rejects(client.chat.completions.create({ model: 'm', messages: hi, n: 2 }), (e) => {
    assert.ok(e instanceof OpenAI.BadRequestError);
    assert.equal(e.param, 'n');
    return true;
  });
  await assert.rejects(client.chat.completions.create({ model: 'm', messages: hi, logprobs: true }),
    OpenAI.BadRequestError);
  await assert.rejects(client.chat.completions.create({ // a schema constrained decoding cannot honour
    model: 'm', messages: hi,
    response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'string', pattern: '^a' } } },
  }), (e) => {
    assert.ok(e instanceof OpenAI.BadRequestError);
    assert.equal(e.param, 'response_format.json_schema.schema');
    assert.match(e.message, /pattern/);
    return true;
  });

  const bad = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'wrong-key', maxRetries: 0 });
  await assert.rejects(bad.chat.completions.create({ model: 'm', messages: hi }), (e) => {
    assert.ok(e instanceof OpenAI.AuthenticationError);
    assert.equal(e.status, 401);
    assert.equal(e.code, 'invalid_api_key');
    return true;
  });
  // a stream refused before it starts rejects at create()
  await assert.rejects(bad.chat.completions.create({ model: 'm', messages: hi, stream: true }), OpenAI.AuthenticationError);
  await assert.rejects(bad.completions.create({ model: 'm', prompt: 'x' }), OpenAI.AuthenticationError);
  await assert.rejects(bad.models.list(), OpenAI.AuthenticationError);
});

test('tool_choice "required" and a named function force a call out of a model that answers text', T, async () => {
  const plain = await client.chat.completions.create({ model: 'm', messages: hi });
  const r = await client.chat.completions.create({ model: 'm', messages: hi, tools: [FORECAST, SEARCH], tool_choice: 'required' });
  assert.ok(r.usage.prompt_tokens > plain.usage.prompt_tokens + 20,
    `the tools are in the prompt (${plain.usage.prompt_tokens} -> ${r.usage.prompt_tokens} tokens)`);
  const [c] = r.choices;
  assert.equal(c.finish_reason, 'tool_calls');
  assert.equal(c.message.content, null, 'no text beside the call');
  assert.equal(c.message.tool_calls.length, 1);
  const [call] = c.message.tool_calls;
  assert.match(call.id, /^call_/);
  assert.ok(['forecast', 'search'].includes(call.function.name));
  (call.function.name === 'forecast' ? checkForecast : checkSearch)(JSON.parse(call.function.arguments));

  const named = await client.chat.completions.create({
    model: 'm', messages: hi, tools: [FORECAST, SEARCH], tool_choice: { type: 'function', function: { name: 'search' } },
  });
  assert.equal(named.choices[0].finish_reason, 'tool_calls');
  assert.equal(named.choices[0].message.tool_calls[0].function.name, 'search');
  checkSearch(JSON.parse(named.choices[0].message.tool_calls[0].function.arguments));

  const none = await client.chat.completions.create({ model: 'm', messages: hi, tools: [FORECAST], tool_choice: 'none' });
  assert.equal(none.usage.prompt_tokens, plain.usage.prompt_tokens, 'tool_choice "none" leaves the tools out');
  assert.equal(none.choices[0].message.content.trim(), REPLY);
});

test('response_format json_object and json_schema: JSON.parse-able content from a model that answers text', T, async () => {
  // a fixed seed: drawing among every allowed token, this run closes its object within max_tokens
  const r = await client.chat.completions.create({
    model: 'm', messages: hi, max_tokens: 4000, seed: 20, response_format: { type: 'json_object' },
  });
  assert.equal(r.choices[0].finish_reason, 'stop');
  const obj = JSON.parse(r.choices[0].message.content);
  assert.ok(obj !== null && typeof obj === 'object' && !Array.isArray(obj));
  assert.ok(Object.keys(obj).length >= 1, 'not just {}');

  const schema = FORECAST.function.parameters;
  const s = await client.chat.completions.create({
    model: 'm', messages: hi, response_format: { type: 'json_schema', json_schema: { name: 'forecast', schema } },
  });
  assert.equal(s.choices[0].finish_reason, 'stop');
  checkForecast(JSON.parse(s.choices[0].message.content));
});

test('tools with tool_choice "auto": a Hermes <tool_call> the model writes comes back as a parseable message.tool_calls', T, async () => {
  const messages = [{ role: 'user', content: 'What is the weather in Paris?' }];
  const r = await toolClient.chat.completions.create({
    model: 'gpt-test', messages, tools: [WEATHER], tool_choice: 'auto',
  });
  const [c] = r.choices;
  assert.equal(c.finish_reason, 'tool_calls');
  assert.equal(c.message.role, 'assistant');
  assert.equal(c.message.content, null, 'no text beside the call');
  assert.equal(c.message.tool_calls.length, 1);
  const [call] = c.message.tool_calls;
  assert.match(call.id, /^call_/);
  assert.equal(call.type, 'function');
  assert.equal(call.function.name, CALL.name);
  assert.equal(typeof call.function.arguments, 'string');
  assert.deepEqual(JSON.parse(call.function.arguments), CALL.arguments);
  assert.equal(r.usage.completion_tokens, 26);

  // the SDK's message goes back as it is, with the tool's result; the template renders both
  const next = await toolClient.chat.completions.create({
    model: 'm', tools: [WEATHER], tool_choice: 'auto',
    messages: [...messages, c.message, { role: 'tool', tool_call_id: call.id, content: '{"sky": "clear", "c": 21}' }],
  });
  assert.ok(next.usage.prompt_tokens > r.usage.prompt_tokens + 20, 'the call and its result are in the prompt');
  assert.equal(next.choices[0].finish_reason, 'tool_calls');

  // without tools there is nothing to parse: the call is the text it was
  const raw = await toolClient.chat.completions.create({ model: 'm', messages });
  assert.equal(raw.choices[0].finish_reason, 'stop');
  assert.equal(raw.choices[0].message.tool_calls, undefined);
  assert.equal(raw.choices[0].message.content, '<tool_call>{"name":"weather","arguments":{"city": "Paris"}}</tool_call>');
});

test('tools, streaming: one delta.tool_calls chunk, finish_reason "tool_calls", and the stream helper\'s final message', T, async () => {
  const req = { model: 'm', messages: [{ role: 'user', content: 'Weather in Paris?' }], tools: [WEATHER], tool_choice: 'auto' };
  const { chunks, text } = await collect(await toolClient.chat.completions.create({
    ...req, stream: true, stream_options: { include_usage: true },
  }));
  assert.equal(text, '', 'no text deltas');
  const calls = chunks.flatMap((c) => c.choices[0]?.delta?.tool_calls ?? []);
  assert.equal(calls.length, 1);
  assert.equal(calls[0].index, 0);
  assert.match(calls[0].id, /^call_/);
  assert.equal(calls[0].function.name, CALL.name);
  assert.deepEqual(JSON.parse(calls[0].function.arguments), CALL.arguments);
  assert.equal(chunks.find((c) => c.choices[0]?.finish_reason)?.choices[0].finish_reason, 'tool_calls');
  assert.equal(chunks.at(-1).usage?.completion_tokens, 26);

  // the SDK's own accumulation of tool-call deltas
  const stream = toolClient.chat.completions.stream(req);
  const done = [];
  stream.on('tool_calls.function.arguments.done', (ev) => done.push(ev));
  const final = await stream.finalChatCompletion();
  assert.equal(final.choices[0].finish_reason, 'tool_calls');
  const [call] = final.choices[0].message.tool_calls;
  assert.equal(call.function.name, CALL.name);
  assert.deepEqual(JSON.parse(call.function.arguments), CALL.arguments);
  assert.equal(done.length, 1);
  assert.equal(done[0].name, CALL.name);
  assert.deepEqual(done[0].parsed_arguments ?? JSON.parse(done[0].arguments), CALL.arguments);
});
