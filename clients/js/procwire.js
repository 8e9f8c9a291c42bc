// procwire's JavaScript client: JSON-RPC over one WebSocket (docs/protocol.md), for browsers and
// for Node 20+ (given a WebSocket implementation such as the `ws` package).  Output reaches the
// caller as bytes with their exact stream offsets, whether the server sent text, base64 or binary
// frames; with `reconnect`, a dropped connection is replaced and the processes being followed are
// attached again from the last byte received, so that no byte is lost or repeated.
// procwire serves this very file at /client/procwire.js (its web console imports it from there).

const encoder = new TextEncoder();
const BINARY_STREAMS = { 1: 'stdout', 2: 'stderr' };
const CONNECT_TIMEOUT_MS = 10000;
const RESUME = { first: 500, max: 10000, deadline: 60000 };
// Calls that change nothing on the server: in flight when a connection drops, they are sent again
// on the next one (with `reconnect`); any other call fails, as it may have been carried out.
export const SAFE_TO_RETRY = new Set(['ping', 'list', 'find', 'lookpath', 'wait']);

/** An error answer of the server: `code`, `message` and `data` as in docs/protocol.md §9, and the
 * `method` called (null for an error answered with id null). */
export class RpcError extends Error {
  constructor(error, method = null) {
    super(error.message);
    this.name = 'RpcError';
    this.code = error.code;
    this.data = error.data ?? null;
    this.method = method;
  }
}

/** No answer can come: the connection could not be made, was lost or was closed. */
export class ConnectionError extends Error {
  constructor(message, { code = null, reason = '' } = {}) {
    super(message);
    this.name = 'ConnectionError';
    this.code = code; // the WebSocket close code, when there was one
    this.reason = reason;
  }
}

/** A followed process that cannot be followed any more (not kept, or unknown after a reconnect). */
export class ProcessLost extends ConnectionError {
  constructor(proc, message) {
    super(message);
    this.name = 'ProcessLost';
    this.proc = proc;
  }
}

export function base64ToBytes(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

export function bytesToBase64(bytes) {
  let binary = '';
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}

/** The bytes carried by `data` in `encoding` ("text": its UTF-8 bytes; "base64"). */
export function decodeData(data, encoding) {
  return encoding === 'base64' ? base64ToBytes(data) : encoder.encode(data);
}

/** Data for `write` or `run`'s `input`: a string as text, bytes as base64. */
function encodeData(data) {
  if (typeof data === 'string') return { data, encoding: 'text' };
  return { data: bytesToBase64(data instanceof Uint8Array ? data : new Uint8Array(data)), encoding: 'base64' };
}

/** The wait before reconnect attempt `attempt` (from 0): doubling from `first` to `max` ms, ±20 %. */
export function backoff(attempt, { first = RESUME.first, max = RESUME.max } = {}) {
  const base = Math.min(first * 2 ** attempt, max);
  return Math.round(base * (0.8 + 0.4 * Math.random()));
}

function closeText(event) {
  if (event.reason) return ` (${event.code} ${event.reason})`;
  return event.code ? ` (code ${event.code})` : '';
}

/** One process followed by a client: its output as chunks, its exit, and the methods acting on it. */
export class Process {
  constructor(client, proc, { pid = null, pgid = null, resumable = false, format = {} } = {}) {
    this.client = client;
    this.proc = proc;
    this.pid = pid;
    this.pgid = pgid;
    this.resumable = resumable; // attached again after a reconnect (kept, or attached to)
    this.format = format; // {binary, encoding} asked for, asked again when re-attaching
    this.offsets = { stdout: 0, stderr: 0 }; // per stream, the offset of the next byte expected
    this.truncated = false; // some bytes asked for were no longer held by the server
    this.screen = null; // the last `screen` notification (an attach with `snapshot`)
    this.status = null;
    this.chunks = [];
    this.wakers = [];
    this.failure = null;
    this.ended = false;
    this.listeners = { output: [], exit: [], screen: [] };
    this.exit = new Promise((resolve, reject) => {
      this.settle = { resolve, reject };
    });
    this.exit.catch(() => {}); // a loss is reported to whoever awaits it, never as unhandled
  }

  /** `event`: "output" ({stream, data, offset}), "exit" (the exit status), "screen" (params). */
  on(event, listener) {
    this.listeners[event].push(listener);
    return this;
  }

  emit(event, value) {
    for (const listener of this.listeners[event]) listener(value);
  }

  wake() {
    for (const wake of this.wakers.splice(0)) wake();
  }

  // A chunk at `offset` (null: right after the last one, as binary frames carry none). Bytes
  // already received (a replay overlapping them after a reconnect) are dropped here.
  received(stream, offset, data) {
    const next = this.offsets[stream] ?? 0;
    const at = offset ?? next;
    if (at + data.length <= next) return;
    const chunk = at < next ? { stream, data: data.subarray(next - at), offset: next } : { stream, data, offset: at };
    this.offsets[stream] = at + data.length;
    this.chunks.push(chunk);
    this.emit('output', chunk);
    this.wake();
  }

  // An attach answer: each stream goes on from its `replay_from` (the screen's offset for a snapshot).
  attached(answer) {
    Object.assign(this.offsets, answer.replay_from);
    if (answer.truncated) this.truncated = true;
  }

  exited(status) {
    if (this.ended) return;
    this.status = status;
    this.ended = true;
    this.settle.resolve(status);
    this.emit('exit', status);
    this.wake();
  }

  fail(error) {
    if (this.ended) return;
    this.failure = error;
    this.ended = true;
    this.settle.reject(error);
    this.wake();
  }

  /** The output chunks in order, `{stream, data: Uint8Array, offset}`, until the exit. */
  async *[Symbol.asyncIterator]() {
    for (;;) {
      if (this.chunks.length) yield this.chunks.shift();
      else if (this.failure) throw this.failure;
      else if (this.ended) return;
      else await new Promise((resolve) => this.wakers.push(resolve));
    }
  }

  call(method, params = {}) {
    return this.client.call(method, { proc: this.proc, ...params });
  }

  /** A string goes as its UTF-8 bytes, bytes as base64; answered once every byte is in the pipe. */
  write(data) {
    return this.call('write', encodeData(data));
  }

  /** Bytes as a binary stdin frame (§4): not answered; a refusal comes to the client's onError. */
  send(data) {
    const bytes = typeof data === 'string' ? encoder.encode(data) : new Uint8Array(data);
    const frame = new Uint8Array(5 + bytes.length);
    new DataView(frame.buffer).setUint32(1, this.proc);
    frame.set(bytes, 5);
    this.client.sendFrame(frame);
  }

  closeStdin() {
    return this.call('close_stdin');
  }

  resize(rows, cols) {
    return this.call('resize', { rows, cols });
  }

  signal(signal, { group = true } = {}) {
    return this.call('signal', { signal, group });
  }

  kill() {
    return this.call('kill');
  }

  stop({ signal = 'SIGTERM', grace = null } = {}) {
    return this.call('stop', { signal, grace });
  }

  wait(timeout = null) {
    return this.call('wait', { timeout });
  }

  async detach() {
    await this.call('detach');
    this.client.processes.delete(this.proc);
    this.ended = true;
    this.wake();
  }

  release() {
    return this.call('release');
  }
}

/**
 * A connection to procwire.  `options`: `WebSocket` (the implementation; default
 * globalThis.WebSocket), `auth` ("query": `?token=`, as browsers must; "header": an
 * Authorization header, for implementations taking `{headers}` such as `ws`), `connectTimeout`
 * (ms), `reconnect` (false; true or {first, max, deadline} in ms), and the hooks
 * `onNotification(method, params)`, `onError(rpcError)` (errors answered with id null),
 * `onClose(error)` (every lost connection), `onRetry({attempt, delay, error})` (before each
 * wait of a reconnect; `error`: why the previous attempt failed, null before the first) and
 * `onReconnect(hello)`.
 */
export class Client {
  constructor(url, token, options = {}) {
    this.url = url;
    this.token = token;
    this.options = options;
    this.WebSocket = options.WebSocket ?? globalThis.WebSocket;
    if (!this.WebSocket) throw new TypeError('no WebSocket implementation: pass {WebSocket} (in Node 20, the ws package)');
    this.policy = options.reconnect ? { ...RESUME, ...(options.reconnect === true ? {} : options.reconnect) } : null;
    this.ws = null;
    this.hello = null;
    this.nextId = 1;
    this.pending = new Map();
    this.processes = new Map(); // proc -> Process followed by this client
    this.closed = false;
    this.retryNow = null; // while reconnecting: ends the wait before the next attempt
  }

  static async connect(url, token, options = {}) {
    const client = new Client(url, token, options);
    await client.connect();
    return client;
  }

  get connected() {
    return this.hello !== null;
  }

  /** Open the connection; resolves with the server's `hello` (docs/protocol.md §2). */
  connect() {
    return new Promise((resolve, reject) => {
      const ws = this.socket();
      ws.binaryType = 'arraybuffer';
      let failure = '';
      const timer = setTimeout(() => {
        failure = 'no hello from the server in time';
        ws.close();
      }, this.options.connectTimeout ?? CONNECT_TIMEOUT_MS);
      this.greet = (hello) => {
        clearTimeout(timer);
        if (this.closed) {
          failure = 'the client was closed meanwhile';
          ws.close(1000);
          return;
        }
        this.ws = ws;
        this.hello = hello;
        resolve(hello);
      };
      ws.onerror = (event) => {
        failure = event.message || failure;
      };
      ws.onmessage = (event) => this.receive(event.data);
      ws.onclose = (event) => {
        clearTimeout(timer);
        if (this.ws === ws) this.lost(event);
        else reject(new ConnectionError(`cannot connect to ${this.url}: ${failure || 'refused or unreachable'}${closeText(event)}`, event));
      };
    });
  }

  socket() {
    if (this.options.auth === 'header') {
      return new this.WebSocket(this.url, [], { headers: { Authorization: `Bearer ${this.token}` } });
    }
    const url = new URL(this.url);
    if (this.token !== null && this.token !== undefined) url.searchParams.set('token', this.token);
    return new this.WebSocket(url.href);
  }

  /** Close for good: pending calls and followed processes fail with a ConnectionError. */
  close() {
    this.closed = true;
    const ws = this.ws;
    this.lost({ code: 1000, reason: 'closed by the client' });
    if (ws) {
      ws.onclose = null;
      ws.onmessage = null;
      ws.close(1000);
    }
  }

  // -- receiving ---------------------------------------------------------------------------

  receive(data) {
    if (typeof data !== 'string') {
      this.receiveFrame(new Uint8Array(data));
      return;
    }
    const message = JSON.parse(data);
    for (const item of Array.isArray(message) ? message : [message]) this.dispatch(item);
  }

  // Binary output (§4): stream byte, proc, bytes; the offset follows the stream's last chunk.
  receiveFrame(frame) {
    const stream = BINARY_STREAMS[frame[0]];
    if (frame.length < 5 || !stream) return;
    const proc = new DataView(frame.buffer, frame.byteOffset, 5).getUint32(1);
    const process = this.processes.get(proc);
    const offset = process ? process.offsets[stream] ?? 0 : null;
    this.notify('output', { proc, stream, offset, data: frame.subarray(5) });
  }

  dispatch(message) {
    if (message.method !== undefined && message.id === undefined) {
      if (message.method === 'hello') this.greet(message.params ?? {});
      else if (message.method === 'output') {
        const { proc, stream, offset, data, encoding } = message.params;
        this.notify('output', { proc, stream, offset, data: decodeData(data, encoding) });
      } else this.notify(message.method, message.params ?? {});
      return;
    }
    const waiting = this.pending.get(message.id);
    if (waiting === undefined) {
      // id null: a refused write notification or binary frame, or a frame the server could not read.
      if (message.error && this.options.onError) this.options.onError(new RpcError(message.error));
      return;
    }
    this.pending.delete(message.id);
    if (message.error) waiting.reject(new RpcError(message.error, waiting.method));
    else waiting.resolve(waiting.adopt ? waiting.adopt(message.result) : message.result);
  }

  // To the process followed, then to the onNotification hook.
  notify(method, params) {
    const process = this.processes.get(params.proc);
    if (process) {
      if (method === 'output') process.received(params.stream, params.offset, params.data);
      else if (method === 'screen') {
        process.screen = params;
        process.emit('screen', params);
      }
      else if (method === 'exit') {
        this.processes.delete(params.proc);
        process.exited(params);
      }
    }
    if (this.options.onNotification) this.options.onNotification(method, params);
  }

  // -- calling -------------------------------------------------------------------------------

  /** A JSON-RPC request; resolves with its result, rejects with RpcError or ConnectionError. */
  call(method, params = {}) {
    return this.request(method, params, null);
  }

  // `adopt` turns the result into the value resolved, synchronously as the answer is read: before
  // the notifications that follow it in the same read (the output of a start, a replay).
  request(method, params, adopt) {
    return new Promise((resolve, reject) => {
      if (!this.ws || !this.hello) {
        reject(new ConnectionError(this.closed ? 'the client is closed' : 'not connected'));
        return;
      }
      const id = this.nextId++;
      this.pending.set(id, { resolve, reject, method, params, adopt });
      this.ws.send(JSON.stringify({ jsonrpc: '2.0', id, method, params }));
    });
  }

  sendFrame(frame) {
    if (!this.ws || !this.hello) throw new ConnectionError('not connected');
    this.ws.send(frame);
  }

  /**
   * Start `argv` (options: the params of `start`); resolves with its Process, whose output
   * follows.  With `on_disconnect: "keep"` the process survives a reconnect.
   */
  start(argv, options = {}) {
    const format = { binary: Boolean(options.binary), encoding: options.encoding ?? 'text' };
    return this.request('start', { argv, ...options }, (result) => {
      const resumable = options.on_disconnect === 'keep';
      const process = new Process(this, result.proc, { pid: result.pid, pgid: result.pgid, resumable, format });
      this.processes.set(result.proc, process);
      return process;
    });
  }

  /** Follow process `proc` from `offset` (options: the params of `attach`); resolves with its Process. */
  attach(proc, options = {}) {
    return this.request('attach', { proc, ...options }, (result) => {
      const format = { binary: options.binary ?? null, encoding: options.encoding ?? null };
      const process = this.processes.get(proc) ?? new Process(this, proc, { resumable: true, format });
      process.attached(result);
      process.info = result;
      this.processes.set(proc, process);
      return process;
    });
  }

  /** `run` in one call (options: its params; `input` a string or bytes): stdout and stderr as bytes. */
  async run(argv, options = {}) {
    const params = { argv, ...options };
    if (options.input !== undefined && options.input !== null) {
      const { data, encoding } = encodeData(options.input);
      Object.assign(params, { input: data, input_encoding: encoding });
    }
    const result = await this.call('run', params);
    return { ...result, stdout: decodeData(result.stdout, result.encoding), stderr: decodeData(result.stderr, result.encoding) };
  }

  list() {
    return this.call('list').then((result) => result.processes);
  }

  ping() {
    return this.call('ping');
  }

  // -- losing the connection and resuming -----------------------------------------------------

  lost(event) {
    this.ws = null;
    this.hello = null;
    const error = new ConnectionError(`the connection to ${this.url} was ${this.closed ? 'closed' : 'lost'}${closeText(event)}`, event);
    const resuming = this.policy !== null && !this.closed;
    const retry = [...this.pending.values()].filter((call) => resuming && SAFE_TO_RETRY.has(call.method));
    for (const call of this.pending.values()) if (!retry.includes(call)) call.reject(error);
    this.pending.clear();
    if (this.options.onClose && !this.closed) this.options.onClose(error);
    if (resuming) {
      this.resume(error, retry);
      return;
    }
    for (const process of this.processes.values()) process.fail(error);
    this.processes.clear();
  }

  // Connect again with backoff until the deadline, attach again every kept process followed from
  // the offsets received, then send the `retry` calls again.  A process that was not kept ended
  // with the lost connection.
  async resume(error, retry) {
    for (const process of [...this.processes.values()]) {
      if (!process.resumable) this.drop(process, 'it was not kept (on_disconnect "keep"), so it ended with the lost connection');
    }
    const deadline = Date.now() + (this.policy.deadline ?? Infinity);
    let failure = null;
    for (let attempt = 0; !this.closed; attempt++) {
      const delay = Math.min(backoff(attempt, this.policy), Math.max(0, deadline - Date.now()));
      if (this.options.onRetry) this.options.onRetry({ attempt, delay, error: failure });
      await new Promise((resolve) => {
        this.retryNow = resolve;
        setTimeout(resolve, delay);
      });
      this.retryNow = null;
      if (this.closed || Date.now() >= deadline) {
        this.closed = true;
        for (const call of retry) call.reject(error);
        for (const process of this.processes.values()) process.fail(error);
        this.processes.clear();
        return;
      }
      try {
        await this.connect();
      } catch (error) {
        failure = error;
        continue;
      }
      if (this.options.onReconnect) this.options.onReconnect(this.hello);
      for (const process of [...this.processes.values()]) await this.reattach(process);
      for (const call of retry) this.request(call.method, call.params, call.adopt).then(call.resolve, call.reject);
      return;
    }
  }

  /** While reconnecting: make the next attempt now rather than at the end of its wait. */
  reconnectNow() {
    if (this.retryNow) this.retryNow();
  }

  async reattach(process) {
    const params = { offset: { ...process.offsets } };
    if (process.format.binary !== null && process.format.binary !== undefined) params.binary = process.format.binary;
    if (process.format.encoding) params.encoding = process.format.encoding;
    try {
      await this.attach(process.proc, params);
    } catch (error) {
      if (error instanceof RpcError) this.drop(process, `the server no longer knows it: ${error.message}`);
      // a ConnectionError: lost again, and the next resume attaches it again
    }
  }

  drop(process, why) {
    this.processes.delete(process.proc);
    process.fail(new ProcessLost(process.proc, `process ${process.proc} was lost: ${why}`));
  }
}
