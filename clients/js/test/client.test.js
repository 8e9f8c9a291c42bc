// The client against the real server: runs, exact bytes in every output format, stdin, attach
// from an offset, errors, and a lost connection.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import WebSocket from 'ws';

import { AuthenticationError, Client, ConnectionError, NotFound, OutputTruncated, ProcessExited, RpcError } from '../procwire.js';
import { TOKEN, URL_, collect, connect, cut } from './helpers.js';

// Every byte value, then a UTF-8 character written in two pieces (split across reads) and a lone 0xff.
const SCRIPT = `printf 'a\\342\\202'; sleep 0.2; printf '\\254b\\377\\n'; printf 'err\\376' >&2; exit 3`;
const EXPECTED = Buffer.from([0x61, 0xe2, 0x82, 0xac, 0x62, 0xff, 0x0a]);
const ALL_BYTES = Buffer.from(Array.from({ length: 256 }, (_, i) => i));

test('hello, ping and a run with its exit code and output as bytes', async (t) => {
  const client = await connect(t);
  assert.equal(client.hello.server, 'procwire');
  assert.equal(typeof client.hello.client_id, 'string');
  assert.equal(typeof (await client.ping()).time, 'number');
  const result = await client.run(['sh', '-c', SCRIPT]);
  assert.equal(result.code, 3);
  assert.equal(result.signal, null);
  assert.deepEqual(Buffer.from(result.stdout), EXPECTED);
  assert.deepEqual(Buffer.from(result.stderr), Buffer.from('err\xfe', 'latin1'));
  const echoed = await client.run(['cat'], { input: ALL_BYTES });
  assert.deepEqual(Buffer.from(echoed.stdout), ALL_BYTES);
  assert.equal((await client.run(['cat'], { input: 'héllo' })).encoding, 'text');
});

for (const [mode, options] of [
  ['text', {}],
  ['base64', { encoding: 'base64' }],
  ['binary frames', { binary: true }],
]) {
  test(`streaming in ${mode}: exact bytes with contiguous offsets, then the exit`, async (t) => {
    const client = await connect(t);
    const process = await client.start(['sh', '-c', SCRIPT], options);
    assert.ok(process.pid > 0);
    const { stdout, stderr } = await collect(process);
    assert.deepEqual(stdout, EXPECTED);
    assert.deepEqual(stderr, Buffer.from('err\xfe', 'latin1'));
    const status = await process.exit;
    assert.equal(status.code, 3);
    assert.deepEqual(await process.wait(), status);
  });
}

test('4 MiB through cat arrive whole, in order, with every byte value', async (t) => {
  const client = await connect(t);
  const input = Buffer.alloc(4 << 20);
  for (let i = 0; i < input.length; i++) input[i] = Math.imul(i, 2654435761) >>> 24;
  const process = await client.start(['cat'], { binary: true });
  const received = collect(process);
  const writes = [];
  for (let at = 0; at < input.length; at += 64 << 10) writes.push(process.write(input.subarray(at, at + (64 << 10))));
  await Promise.all(writes);
  await process.closeStdin();
  assert.deepEqual((await received).stdout, input);
});

test('stdin round trip: text and bytes as requests, bytes as a binary frame', async (t) => {
  const client = await connect(t);
  const process = await client.start(['cat'], { encoding: 'base64' });
  assert.deepEqual(await process.write('héllo\n'), { written: 7 });
  assert.deepEqual(await process.write(ALL_BYTES), { written: 256 });
  process.send(Buffer.from([0, 0xfe, 0xff]));
  process.send('end');
  await process.closeStdin();
  const { stdout } = await collect(process);
  assert.deepEqual(stdout, Buffer.concat([Buffer.from('héllo\n'), ALL_BYTES, Buffer.from([0, 0xfe, 0xff]), Buffer.from('end')]));
  assert.equal((await process.exit).code, 0);
});

test('a terminal: resize, then Ctrl-C through a signal', async (t) => {
  const client = await connect(t);
  const process = await client.start(['sh', '-c', 'read line; stty size; sleep 30'], { pty: { rows: 24, cols: 80 } });
  await process.resize(40, 120);
  await process.write('go\r');
  let text = '';
  for await (const chunk of process) {
    text += Buffer.from(chunk.data).toString();
    if (text.includes('40 120')) break;
  }
  await process.signal('INT');
  assert.equal((await process.exit).signal, 'SIGINT');
});

test('attach from an offset, from another connection, replays exactly the rest', async (t) => {
  const first = await connect(t);
  const started = await first.start(['sh', '-c', `printf 'one\\n\\377two\\n'; read line; printf "$line"`], {
    on_disconnect: 'keep',
  });
  let seen = 0;
  for await (const chunk of started) if ((seen += chunk.data.length) === 9) break;
  const second = await connect(t);
  for (const options of [{}, { binary: true }, { encoding: 'base64' }]) {
    const attached = await second.attach(started.proc, { offset: 4, ...options });
    assert.equal(attached.info.replay_from.stdout, 4);
    let received = Buffer.alloc(0);
    const firstChunk = await attached[Symbol.asyncIterator]().next();
    assert.equal(firstChunk.value.offset, 4);
    received = Buffer.concat([received, Buffer.from(firstChunk.value.data)]);
    assert.deepEqual(received, Buffer.from('\xfftwo\n', 'latin1'));
  }
  const attached = second.processes.get(started.proc);
  await attached.write('bye\n');
  const rest = await collect(attached);
  assert.deepEqual(rest.stdout, Buffer.from('bye'));
  assert.equal((await attached.exit).code, 0);
  await second.call('release', { proc: started.proc });
});

test('errors carry code, message and data', async (t) => {
  const client = await connect(t);
  await assert.rejects(client.start(['procwire-no-such-program']), (error) => {
    assert.ok(error instanceof NotFound && error instanceof RpcError);
    assert.equal(error.code, -32001);
    assert.equal(error.data.errno, 2);
    assert.equal(error.method, 'start');
    assert.match(error.message, /executable not found/);
    return true;
  });
  await assert.rejects(client.call('wait', { proc: 999999 }), { name: 'NoSuchProcess', code: -32002 });
  await assert.rejects(client.call('frobnicate'), { code: -32601 });
  const process = await client.start(['true']);
  await process.exit;
  await assert.rejects(process.write('late'), ProcessExited);
  await assert.rejects(client.run(['echo', 'four'], { max_output: 2 }), (error) => {
    assert.ok(error instanceof OutputTruncated);
    assert.deepEqual(Buffer.from(error.result.stdout), Buffer.from('fo'));
    return true;
  });
  const refusals = [];
  const listening = await connect(t, { onError: (error) => refusals.push(error) });
  const exited = await listening.start(['true']);
  await exited.exit;
  exited.send('x');
  await listening.ping();
  assert.equal(refusals[0].code, -32005);
  assert.equal(exited.stdinError, refusals[0]);
});

test('a wrong token is an AuthenticationError; a token in a header works where the implementation allows', async (t) => {
  await assert.rejects(Client.connect(URL_, 'wrong', { WebSocket }), (error) => {
    assert.ok(error instanceof AuthenticationError && error instanceof ConnectionError);
    assert.equal(error.status, 401);
    assert.match(error.message, /HTTP 401: missing or wrong token/);
    return true;
  });
  const client = await connect(t, { auth: 'header' });
  assert.equal(client.hello.identity.name, 'default');
});

test('a dropped connection fails pending calls, followed processes and later calls clearly', async (t) => {
  const client = await connect(t);
  const process = await client.start(['sleep', '30']);
  const waiting = process.wait();
  const closes = [];
  client.options.onClose = (error) => closes.push(error);
  await cut(client.hello.client_id);
  await assert.rejects(waiting, (error) => error instanceof ConnectionError && /was lost \(4000 disconnected by an operator\)/.test(error.message));
  await assert.rejects(process.exit, ConnectionError);
  await assert.rejects(collect(process), ConnectionError);
  await assert.rejects(client.ping(), /was lost \(4000/);
  assert.equal(closes[0].code, 4000);
  assert.ok(client.closed);
});

test('without a WebSocket implementation the constructor says what to pass', { skip: Boolean(globalThis.WebSocket) }, () => {
  assert.throws(() => new Client(URL_, TOKEN), /no WebSocket implementation: pass \{WebSocket\}/);
});

test('a snapshot attach to a terminal delivers its screen to the process, then the output after it', async (t) => {
  const first = await connect(t);
  const shell = await first.start(['sh', '-c', 'printf hello; read line; printf "$line"'], {
    pty: { rows: 10, cols: 40 },
    on_disconnect: 'keep',
  });
  for await (const chunk of shell) if (Buffer.from(chunk.data).toString().includes('hello')) break;
  const second = await connect(t);
  const process = await second.attach(shell.proc, { snapshot: true, binary: false });
  assert.equal(process.info.screen, true);
  await process.write('bye\r');
  const { stdout, screen } = await collect(process);
  assert.match(screen.toString(), /hello/);
  assert.match(process.screen.data, /hello/);
  assert.equal(process.screen.offset, 5);
  assert.deepEqual(stdout, Buffer.from('bye\r\nbye'));
  await second.call('release', { proc: shell.proc });
});

test('close ends pending calls and followed processes, and refuses later calls', async (t) => {
  const client = await connect(t);
  const process = await client.start(['sleep', '30']);
  const waiting = process.wait();
  client.close();
  await assert.rejects(waiting, { name: 'ConnectionError', message: /was closed \(1000 closed by the client\)/ });
  await assert.rejects(process.exit, ConnectionError);
  await assert.rejects(client.ping(), { message: 'the client is closed' });
  assert.equal(client.connected, false);
});
