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
const RESUME_RETRY_MS = 500; // between re-attaches the cluster could not serve yet (-32009)
const DEFAULT_MAX_OUTPUT = 16 << 20; // the server's default `max_output` of `run`, per stream
const JSON_SLACK = 4096; // room for the JSON around a message's data
// Calls that only read: in flight when a connection drops, they are sent again on the next one
// (with `reconnect`).  Any other call fails, as it may have been carried out; so does `wait`,
// whose timeout would start over (as in the Python clients, which send nothing again).
export const SAFE_TO_RETRY = new Set(['ping', 'list', 'find', 'lookpath']);

/** An error answer of the server: `code`, `message` and `data` as in docs/protocol.md §9, and the
 * `method` called (null for an error answered with id null).  Its class follows the code, with the
 * Python clients' names (rpcError below); `name` is that class's name. */
export class RpcError extends Error {
  constructor(error, method = null) {
    super(error.message);
    this.name = new.target.name;
    this.code = error.code;
    this.data = error.data ?? null;
    this.method = method;
  }
}

export class ParseError extends RpcError {}
export class InvalidRequest extends RpcError {}
export class MethodNotFound extends RpcError {}
export class InvalidParams extends RpcError {}
export class InternalError extends RpcError {}
/** The executable does not exist or is not in PATH. */
export class NotFound extends RpcError {}
export class NoSuchProcess extends RpcError {}
/** Not executable, a directory, or an unusable `cwd`. */
export class PermissionDenied extends RpcError {}
/** Too many processes, a stdin chunk too large, or the stdin buffer full. */
export class LimitExceeded extends RpcError {}
/** The process has exited, or its stdin is closed. */
export class ProcessExited extends RpcError {}
/** A `wait` timed out on the server, or a wait of this client did. */
export class Timeout extends RpcError {}
export class SpawnFailed extends RpcError {}
export class ProcessRunning extends RpcError {}
/** The process runs on another node, and Redis or that node cannot be reached now. */
export class ClusterUnavailable extends RpcError {}

const ERRORS = new Map([
  [-32700, ParseError], [-32600, InvalidRequest], [-32601, MethodNotFound], [-32602, InvalidParams],
  [-32603, InternalError], [-32001, NotFound], [-32002, NoSuchProcess], [-32003, PermissionDenied],
  [-32004, LimitExceeded], [-32005, ProcessExited], [-32006, Timeout], [-32007, SpawnFailed],
  [-32008, ProcessRunning], [-32009, ClusterUnavailable],
]);

/** The error for a JSON-RPC `error` object: the RpcError subclass of its code. */
export function rpcError(error, method = null) {
  return new (ERRORS.get(error.code) ?? RpcError)(error, method);
}

/** `run` kept only `max_output` bytes of a stream: `result` is the partial result (its
 * `truncated` says which streams were cut).  Pass `on_overflow: "truncate"` to get it instead. */
export class OutputTruncated extends RpcError {
  constructor(result) {
    const cut = ['stdout', 'stderr'].filter((stream) => result.truncated[stream]).join(' and ');
    super({ code: null, message: `process ${result.proc}: ${cut} exceeded max_output; the partial result is in .result (pass on_overflow: "truncate" to get it returned)` }, 'run');
    this.result = result;
  }
}

/** No answer can come: the connection could not be made, was lost or was closed. */
export class ConnectionError extends Error {
  constructor(message, { code = null, reason = '', status = null } = {}) {
    super(message);
    this.name = new.target.name;
    this.code = code; // the WebSocket close code, when there was one
    this.reason = reason;
    this.status = status; // the HTTP status of a refused handshake (401, 403), when it could be known
  }
}

/** The server refused the token (HTTP 401). */
export class AuthenticationError extends ConnectionError {}

/** A followed process that cannot be followed any more (not kept, or unknown after a reconnect). */
export class ProcessLost extends ConnectionError {
  constructor(proc, message) {
    super(message);
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

/** A string's UTF-8 bytes, or bytes as a Uint8Array. */
function toBytes(data) {
  if (typeof data === 'string') return encoder.encode(data);
  return data instanceof Uint8Array ? data : new Uint8Array(data);
}

/** Data for `write` or `run`'s `input`: a string as text, bytes as base64. */
function encodeData(data) {
  if (typeof data === 'string') return { data, encoding: 'text' };
  return { data: bytesToBase64(toBytes(data)), encoding: 'base64' };
}

function concatBytes(chunks) {
  const bytes = new Uint8Array(chunks.reduce((size, chunk) => size + chunk.length, 0));
  let at = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, at);
    at += chunk.length;
  }
  return bytes;
}

/** The output of `process` until its exit, at most `limit` bytes per stream kept (`truncated`: cut). */
async function collectOutput(process, limit) {
  const kept = { stdout: [], stderr: [] };
  const sizes = { stdout: 0, stderr: 0 };
  const truncated = { stdout: false, stderr: false };
  for await (const { stream, data } of process) {
    if (!kept[stream]) continue; // a screen
    const room = Math.max(limit - sizes[stream], 0);
    if (data.length > room) truncated[stream] = true;
    kept[stream].push(data.subarray(0, room));
    sizes[stream] += Math.min(data.length, room);
  }
  return { stdout: concatBytes(kept.stdout), stderr: concatBytes(kept.stderr), truncated };
}

/** `promise`, or a Timeout after `seconds` (null: no limit); the work it waits for goes on. */
export async function within(promise, seconds, message) {
  if (seconds === null || seconds === undefined) return promise;
  let timer;
  const late = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Timeout({ code: -32006, message })), seconds * 1000);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
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
  constructor(client, proc, { pid = null, pgid = null, pty = false, resumable = false, format = {}, mode = null } = {}) {
    this.client = client;
    this.proc = proc;
    this.pid = pid;
    this.pgid = pgid;
    this.pty = pty;
    this.resumable = resumable; // attached again after a reconnect (kept, or attached to)
    this.format = format; // {binary, encoding} asked for, asked again when re-attaching
    this.mode = mode; // "control" or "view" once attached (null: started here, in control)
    this.offsets = { stdout: 0, stderr: 0 }; // per stream, the offset of the next byte expected
    this.truncated = false; // some bytes asked for were no longer held by the server
    this.info = null; // the answer of the last attach
    this.screen = null; // the last `screen` notification (an attach with `snapshot`)
    this.status = null;
    this.stdinError = null; // the last write refused after the fact (a binary frame's)
    this.refused = null; // that refusal, until a write or flush reports it
    this.detached = false;
    this.writing = Promise.resolve(); // the writes before: one write's chunks are never interleaved
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

  /** Not ended yet: no exit, no detach, no loss. */
  get running() {
    return !this.ended;
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

  // The screen of a snapshot attach: the first chunk iterated, as stream "screen".
  screened(params) {
    this.screen = params;
    this.chunks.push({ stream: 'screen', data: encoder.encode(params.data), offset: params.offset });
    this.emit('screen', params);
    this.wake();
  }

  // An attach answer: each stream goes on from its `replay_from` (the screen's offset for a snapshot).
  attached(answer) {
    this.info = answer;
    if (answer.mode) this.mode = answer.mode;
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

  // Its output goes elsewhere now (a detach, or an attach of the same process on this client).
  unfollowed() {
    if (this.ended) return;
    this.detached = true;
    this.ended = true;
    this.wake();
  }

  /** The output chunks in order, `{stream, data: Uint8Array, offset}`, until the exit; after a
   * snapshot attach, the screen first as stream "screen" (ANSI repainting it whole). */
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

  /**
   * Bytes to stdin (a string as its UTF-8 bytes) in chunks the server takes, as requests or with
   * `binary` as binary frames; resolves with `{written}` once every byte is in the pipe.  Rejects
   * with ProcessExited once the process exited or its stdin is closed, and with a refusal of an
   * earlier binary frame.  Writes made at once go in their order, one after the other.
   */
  write(data, options = {}) {
    const written = this.writing.then(() => this.writeNow(data, options));
    this.writing = written.catch(() => {});
    return written;
  }

  async writeNow(data, { binary = false }) {
    this.reportRefusal();
    if (this.status) throw new ProcessExited({ code: -32005, message: `process ${this.proc} has exited: its stdin takes no more bytes` }, 'write');
    const bytes = toBytes(data);
    const limits = this.client.hello?.limits ?? {};
    const room = ((limits.max_message_bytes ?? 1 << 20) - JSON_SLACK) * 0.75; // base64 takes 4 for 3
    const step = Math.floor(Math.min(limits.max_stdin_chunk ?? 1 << 16, room));
    for (let at = 0; at < bytes.length; at += step) {
      const chunk = bytes.subarray(at, at + step);
      if (!binary) await this.call('write', encodeData(chunk));
      else {
        this.send(chunk);
        await this.flush(); // one chunk at a time in the server's stdin buffer
      }
    }
    return { written: bytes.length };
  }

  /** Bytes as a binary stdin frame (§4): not answered; a refusal goes to `stdinError`, to the next
   * write or flush, and to the client's onError. */
  send(data) {
    const bytes = toBytes(data);
    const frame = new Uint8Array(5 + bytes.length);
    new DataView(frame.buffer).setUint32(1, this.proc);
    frame.set(bytes, 5);
    this.client.sendFrame(frame, this);
  }

  /** Resolves once every byte sent before is in the pipe; rejects with a refusal of any of them. */
  async flush() {
    await this.call('write', { data: '', encoding: 'text' });
    this.reportRefusal();
  }

  reportRefusal() {
    const error = this.refused;
    this.refused = null;
    if (error) throw error;
  }

  closeStdin() {
    return this.call('close_stdin');
  }

  /** Writes `input` (if any) and closes stdin, then resolves with all the output until the exit:
   * `{stdout, stderr}` as bytes.  A process that stops reading its stdin is no error here. */
  async communicate(input = null) {
    const [, { stdout, stderr }] = await Promise.all([this.feed(input), collectOutput(this, Infinity)]);
    return { stdout, stderr };
  }

  async feed(input) {
    try {
      if (input !== null) await this.write(input);
      if (input !== null || !this.pty) await this.closeStdin(); // on a terminal that would type ^D
    } catch (error) {
      if (!(error instanceof RpcError)) throw error;
    }
  }

  resize(rows, cols) {
    return this.client.resize(this.proc, rows, cols);
  }

  /** A link to this process for someone else (options: the params of `share`). */
  share(options = {}) {
    return this.client.share(this.proc, options);
  }

  signal(signal, options = {}) {
    return this.client.signal(this.proc, signal, options);
  }

  kill() {
    return this.client.kill(this.proc);
  }

  stop(options = {}) {
    return this.client.stop(this.proc, options);
  }

  /** The exit status once it came (after a detach: the server's `wait`).  `timeout` in seconds:
   * past it, a Timeout (the process runs on).  Rejects with ConnectionError (or ProcessLost) when
   * the exit cannot come. */
  wait(timeout = null) {
    if (this.detached) return this.client.wait(this.proc, timeout);
    return within(this.exit, timeout, `process ${this.proc} is still running after ${timeout} s`);
  }

  /** Stop receiving its output here (iteration ends after what came); the process goes on. */
  async detach() {
    await this.call('detach');
    if (this.client.processes.get(this.proc) === this) this.client.processes.delete(this.proc);
    this.unfollowed();
  }

  release() {
    return this.client.release(this.proc);
  }
}

/**
 * A connection to procwire.  `options`: `WebSocket` (the implementation; default
 * globalThis.WebSocket), `auth` ("query": `?token=`, as browsers must; "header": an
 * Authorization header, for implementations taking `{headers}` such as `ws`), `connectTimeout`
 * (ms), `reconnect` (false; true or {first, max, deadline} in ms: see resume), and the hooks
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
    this.closed = false; // for good: closed, or lost and not resumed
    this.failure = null; // why, when lost: what later calls reject with
    this.reconnects = 0; // connections made again after a loss
    this.lastWriter = null; // the Process of the last binary stdin frame: a refusal names no proc
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
        else this.refusal(failure, event).then(reject);
      };
    });
  }

  // Why a connection was refused: a WebSocket hides the HTTP status of a refused handshake, so the
  // same URL is asked over HTTP (401: an AuthenticationError, with the server's reason).
  async refusal(failure, event) {
    let status = null;
    let why = failure || 'refused or unreachable';
    if (event.code === 1006 && globalThis.fetch) {
      try {
        const url = new URL(this.url);
        url.protocol = url.protocol === 'wss:' ? 'https:' : 'http:';
        const headers = this.token === null || this.token === undefined ? {} : { Authorization: `Bearer ${this.token}` };
        const response = await fetch(url, { headers, signal: AbortSignal.timeout(CONNECT_TIMEOUT_MS) });
        if (response.status === 401 || response.status === 403) {
          status = response.status;
          why = `HTTP ${status}: ${(await response.json()).error}`;
        }
      } catch {
        // unreachable, or no JSON: the WebSocket's reason stands
      }
    }
    const Refused = status === 401 ? AuthenticationError : ConnectionError;
    return new Refused(`cannot connect to ${this.url}: ${why}${closeText(event)}`, { code: event.code, reason: event.reason, status });
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
    this.reconnectNow(); // a wait before reconnecting ends now, and the attempts with it
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
      if (message.error) this.stray(rpcError(message.error));
      return;
    }
    this.pending.delete(message.id);
    if (message.error) waiting.reject(rpcError(message.error, waiting.method));
    else waiting.resolve(waiting.adopt ? waiting.adopt(message.result) : message.result);
  }

  // An error answered with id null: a refused binary stdin frame (blamed on the process of the
  // last one sent), or a frame the server could not read.
  stray(error) {
    const writer = this.lastWriter;
    if (writer) {
      writer.stdinError = error;
      writer.refused ??= error;
    }
    if (this.options.onError) this.options.onError(error);
  }

  // To the process followed, then to the onNotification hook.
  notify(method, params) {
    const process = this.processes.get(params.proc);
    if (process) {
      if (method === 'output') process.received(params.stream, params.offset, params.data);
      else if (method === 'screen') process.screened(params);
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
        reject(this.failure ?? new ConnectionError(this.closed ? 'the client is closed' : 'not connected'));
        return;
      }
      const id = this.nextId++;
      this.pending.set(id, { resolve, reject, method, params, adopt });
      this.ws.send(JSON.stringify({ jsonrpc: '2.0', id, method, params }));
    });
  }

  sendFrame(frame, writer = null) {
    if (!this.ws || !this.hello) throw this.failure ?? new ConnectionError('not connected');
    this.lastWriter = writer;
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
      const pty = Boolean(options.pty);
      const process = new Process(this, result.proc, { pid: result.pid, pgid: result.pgid, pty, resumable, format });
      this.processes.set(result.proc, process);
      return process;
    });
  }

  /** Follow process `proc` from `offset` (options: the params of `attach`); resolves with a new
   * Process (one this client followed already ends, as after a detach). */
  attach(proc, options = {}) {
    const format = { binary: options.binary ?? null, encoding: options.encoding ?? null };
    return this.request('attach', { proc, ...options }, (result) => {
      const process = new Process(this, proc, { resumable: true, format, mode: options.mode ?? null });
      process.attached(result);
      this.processes.get(proc)?.unfollowed();
      this.processes.set(proc, process);
      return process;
    });
  }

  /**
   * Run `argv` to its end (options: the params of `run`; `input` a string or bytes, streamed
   * through `start` when too large for one message): the exit status with stdout and stderr as
   * bytes.  Past `max_output` bytes of a stream, rejects with OutputTruncated (its `result` the
   * partial one) unless `on_overflow` is "truncate".
   */
  async run(argv, options = {}) {
    const { input = null, max_output: maxOutput = null, on_overflow: onOverflow = 'raise', ...spawn } = options;
    const params = { argv, ...spawn };
    if (maxOutput !== null) params.max_output = maxOutput;
    let result = null;
    if (input !== null) {
      const { data, encoding } = encodeData(input);
      if (data.length + JSON_SLACK > (this.hello?.limits.max_message_bytes ?? Infinity)) {
        result = await this.runStreamed(argv, spawn, input, maxOutput ?? DEFAULT_MAX_OUTPUT);
      } else Object.assign(params, { input: data, input_encoding: encoding });
    }
    if (result === null) {
      const answer = await this.call('run', params);
      result = { ...answer, stdout: decodeData(answer.stdout, answer.encoding), stderr: decodeData(answer.stderr, answer.encoding) };
    }
    if (onOverflow !== 'truncate' && (result.truncated.stdout || result.truncated.stderr)) throw new OutputTruncated(result);
    return result;
  }

  async runStreamed(argv, spawn, input, limit) {
    const process = await this.start(argv, spawn);
    const [, output] = await Promise.all([process.feed(input), collectOutput(process, limit)]);
    const status = await process.exit;
    await process.release().catch(() => {});
    return { ...status, ...output, encoding: spawn.encoding ?? 'text' };
  }

  list() {
    return this.call('list').then((result) => result.processes);
  }

  /** The process of this token with this pid (NoSuchProcess otherwise). */
  find(pid) {
    return this.call('find', { pid });
  }

  ping() {
    return this.call('ping');
  }

  /** The path of executable `file` in the server's PATH (NotFound, PermissionDenied). */
  lookpath(file) {
    return this.call('lookpath', { file }).then((result) => result.path);
  }

  /** Wait on the server for any process of this token; `timeout` in seconds (then Timeout). */
  wait(proc, timeout = null) {
    return this.call('wait', timeout === null ? { proc } : { proc, timeout });
  }

  signal(proc, signal, { group = true } = {}) {
    return this.call('signal', { proc, signal, group });
  }

  kill(proc) {
    return this.call('kill', { proc });
  }

  /** `signal`, then SIGKILL after `grace` seconds if anything is left; resolves with the exit status. */
  stop(proc, { signal = 'SIGTERM', grace = null } = {}) {
    return this.call('stop', grace === null ? { proc, signal } : { proc, signal, grace });
  }

  /** Resolves with `{size}`: the size the terminal took (its size rule may pick a smaller one). */
  resize(proc, rows, cols) {
    return this.call('resize', { proc, rows, cols });
  }

  /**
   * A link to process `proc` for someone else: `options` `mode` ("view", the default, or
   * "control"), `expires_in` (seconds), `single_use`.  Resolves with {id, token, url, mode,
   * expires_at}; connect with `new Client(url, null)` (the token is in the URL).
   */
  share(proc, options = {}) {
    return this.call('share', { proc, ...options });
  }

  /** Revoke the share `id`: its link is refused from now on, its connections are closed. */
  unshare(id) {
    return this.call('unshare', { id });
  }

  /** Forget an exited process on the server (ProcessRunning while its exit is not sent yet). */
  release(proc) {
    return this.call('release', { proc });
  }

  // -- losing the connection and resuming -----------------------------------------------------

  lost(event) {
    this.ws = null;
    this.hello = null;
    const closing = this.closed; // by close(), rather than lost
    const error = new ConnectionError(`the connection to ${this.url} was ${closing ? 'closed' : 'lost'}${closeText(event)}`, event);
    const resuming = this.policy !== null && !closing;
    const retry = [...this.pending.values()].filter((call) => resuming && SAFE_TO_RETRY.has(call.method));
    for (const call of this.pending.values()) if (!retry.includes(call)) call.reject(error);
    this.pending.clear();
    if (this.options.onClose && !closing) this.options.onClose(error);
    if (resuming) {
      this.resume(error, retry);
      return;
    }
    this.over(error);
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
        const timer = setTimeout(resolve, delay);
        this.retryNow = () => {
          clearTimeout(timer); // a pending timer would keep Node running until it fires
          resolve();
        };
      });
      this.retryNow = null;
      if (this.closed || Date.now() >= deadline) {
        this.over(error);
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
      for (const process of [...this.processes.values()]) await this.reattach(process, deadline);
      this.reconnects++;
      if (this.options.onReconnect) this.options.onReconnect(this.hello);
      for (const call of retry) this.request(call.method, call.params, call.adopt).then(call.resolve, call.reject);
      return;
    }
  }

  // Lost for good (not resumed): later calls reject with `error`.
  over(error) {
    if (this.closed) return;
    this.closed = true;
    this.failure = error;
  }

  /** While reconnecting: make the next attempt now rather than at the end of its wait. */
  reconnectNow() {
    if (this.retryNow) this.retryNow();
  }

  // Attach `process` again from the offsets received.  -32009 says the cluster cannot reach the
  // process's node now (a node that died is declared lost within CLUSTER_NODE_TIMEOUT, and the
  // attach then answers its lost exit): asked again every RESUME_RETRY_MS until `deadline`.
  async reattach(process, deadline) {
    const params = { offset: { ...process.offsets } };
    if (process.format.binary !== null && process.format.binary !== undefined) params.binary = process.format.binary;
    if (process.format.encoding) params.encoding = process.format.encoding;
    if (process.mode === 'view') params.mode = 'view'; // never more than it had
    for (;;) {
      try {
        await this.request('attach', { proc: process.proc, ...params }, (answer) => process.attached(answer));
        return;
      } catch (error) {
        if (!(error instanceof RpcError)) return; // lost again: the next resume attaches it again
        if (!(error instanceof ClusterUnavailable) || Date.now() + RESUME_RETRY_MS >= deadline) {
          this.drop(process, `the server no longer knows it: ${error.message}`);
          return;
        }
      }
      await new Promise((resolve) => setTimeout(resolve, RESUME_RETRY_MS));
      if (this.closed) return;
    }
  }

  drop(process, why) {
    this.processes.delete(process.proc);
    process.fail(new ProcessLost(process.proc, `process ${process.proc} was lost: ${why}`));
  }
}
