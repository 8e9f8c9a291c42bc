// Reconnect and resume: the connection is cut for real by the server (DELETE /api/clients/<id>)
// while kept processes write a known byte sequence; the iterators go on with every byte once.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { test } from 'node:test';

import { ProcessLost } from '../procwire.js';
import { collect, connect, cut, until } from './helpers.js';

// 600 numbered lines of 12 bytes with a non-UTF-8 byte in each, written over about 3 s.
const WRITER = `i=0; while [ $i -lt 600 ]; do printf '%04d \\377 line\\n' $i; i=$((i+1)); [ $((i % 20)) = 0 ] && sleep 0.1; done`;
const EXPECTED = Buffer.concat(
  Array.from({ length: 600 }, (_, i) => Buffer.concat([Buffer.from(`${String(i).padStart(4, '0')} `), Buffer.from([0xff]), Buffer.from(' line\n')])),
);
const FAST = { first: 50, max: 200, deadline: 10000 };

for (const [mode, options] of [
  ['text', {}],
  ['binary frames', { binary: true }],
]) {
  test(`cut twice mid-stream in ${mode}: every byte arrives exactly once, offsets contiguous`, async (t) => {
    const reconnects = [];
    const client = await connect(t, { reconnect: FAST, onReconnect: (hello) => reconnects.push(hello.client_id) });
    const kept = await client.start(['sh', '-c', WRITER], { on_disconnect: 'keep', ...options });
    const lost = await client.start(['sleep', '30']);
    const received = collect(kept);
    const waited = kept.wait(); // the exit, which comes across both cuts
    const firstId = client.hello.client_id;
    await until(() => kept.offsets.stdout > 1500);
    await cut(firstId);
    await assert.rejects(lost.exit, (error) => error instanceof ProcessLost && /not kept/.test(error.message));
    await until(() => reconnects.length === 1);
    await until(() => kept.offsets.stdout > 4500);
    await cut(client.hello.client_id);
    const { stdout } = await received;
    assert.deepEqual(stdout, EXPECTED);
    assert.equal((await kept.exit).code, 0);
    assert.deepEqual(await waited, await kept.exit);
    assert.equal(reconnects.length, 2);
    assert.notEqual(reconnects[0], firstId);
    await client.call('release', { proc: kept.proc });
  });
}

test('a write in flight and calls made while reconnecting fail clearly; a process gone meanwhile is lost', async (t) => {
  const client = await connect(t, { reconnect: { first: 300, max: 300, deadline: 10000 } });
  const kept = await client.start(['sleep', '30'], { on_disconnect: 'keep' });
  const other = await connect(t);
  // `sleep` never reads: the last of these writes waits for room in its pipe (at most 1 MiB), in flight.
  const writes = [1, 2, 3].map(() => kept.write(new Uint8Array(512 << 10)));
  for (const write of writes) write.catch(() => {});
  const writing = writes[2]; // it may have been partly carried out, so it fails rather than being sent again
  await cut(client.hello.client_id);
  await assert.rejects(writing, { name: 'ConnectionError' });
  await until(() => !client.connected);
  await assert.rejects(client.ping(), { name: 'ConnectionError', message: 'not connected' });
  await other.call('kill', { proc: kept.proc });
  await other.call('wait', { proc: kept.proc });
  await other.call('release', { proc: kept.proc });
  await assert.rejects(kept.exit, (error) => error instanceof ProcessLost && /no longer knows it/.test(error.message));
  assert.ok(client.connected);
});

test('onRetry tells each wait before a reconnect, and reconnectNow cuts it short', async (t) => {
  const retries = [];
  const reconnects = [];
  const client = await connect(t, {
    reconnect: { first: 60000, max: 60000, deadline: 120000 },
    onRetry: (retry) => retries.push(retry),
    onReconnect: (hello) => reconnects.push(hello.client_id),
  });
  const kept = await client.start(['sh', '-c', 'read line; echo got-$line'], { on_disconnect: 'keep' });
  await cut(client.hello.client_id);
  await until(() => retries.length === 1);
  assert.deepEqual({ ...retries[0], delay: null }, { attempt: 0, delay: null, error: null });
  assert.ok(retries[0].delay >= 48000, `a wait of ${retries[0].delay} ms`);
  client.reconnectNow(); // long before the minute is over
  await until(() => reconnects.length === 1);
  await until(() => client.processes.get(kept.proc)?.info?.state === 'running');
  await kept.write('again\n');
  const { stdout } = await collect(kept);
  assert.equal(stdout.toString(), 'got-again\n');
  assert.equal(retries.length, 1);
  await client.call('release', { proc: kept.proc });
});

// A Node program (its own process) whose connection is cut while the reconnect waits a minute: it
// ends the wait (reconnectNow, then close; or close at once) and must then exit by itself, with no
// timer of the client left to keep it running.
const LEAVES_NOTHING = `
import WebSocket from 'ws';
import { Client } from './procwire.js';
import { URL_, TOKEN, cut, until } from './test/helpers.js';
const retries = [];
const client = await Client.connect(URL_, TOKEN, {
  WebSocket, reconnect: { first: 60000, max: 60000, deadline: 120000 }, onRetry: (retry) => retries.push(retry),
});
await cut(client.hello.client_id);
await until(() => retries.length === 1);
if (process.argv[1] === 'reconnectNow') {
  client.reconnectNow();
  await until(() => client.connected && client.reconnects === 1);
}
client.close();
`;

for (const how of ['reconnectNow', 'close']) {
  test(`after ${how} during a reconnect's wait, a Node program exits by itself`, async () => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', LEAVES_NOTHING, how], {
      cwd: new URL('..', import.meta.url),
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    let code = null;
    child.on('exit', (exitCode, signal) => (code = exitCode ?? signal));
    try {
      await until(() => code !== null, 15000); // the wait was a minute
    } finally {
      if (code === null) child.kill('SIGKILL');
    }
    assert.equal(code, 0);
  });
}
