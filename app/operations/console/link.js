// The page's link to the server: JSON-RPC over one WebSocket (docs/protocol.md), binary output
// frames decoded, and a new connection by itself after a loss, with backoff and jitter.

const RETRY_FIRST_MS = 500;
const RETRY_MAX_MS = 10000;
// A connection not greeted by then is given up (an unresponsive server may accept and say nothing).
const CONNECT_TIMEOUT_MS = 10000;
const BINARY_STREAMS = { 1: 'stdout', 2: 'stderr' };

export class RpcError extends Error {
  constructor(error) {
    super(error.message);
    this.code = error.code;
    this.data = error.data;
  }
}

// A call that could not get an answer because the connection is gone: not the call's fault.
export class OfflineError extends Error {}

class Connection {
  constructor(url, handlers) {
    this.handlers = handlers;
    this.ws = new WebSocket(url);
    this.ws.binaryType = 'arraybuffer';
    this.nextId = 1;
    this.pending = new Map();
    this.hello = null;
    this.ws.onmessage = (event) => this.receive(event.data);
    this.ws.onclose = (event) => {
      for (const { reject } of this.pending.values()) reject(new OfflineError('the connection closed'));
      this.pending.clear();
      handlers.onClose(this, event);
    };
  }

  receive(data) {
    if (typeof data !== 'string') {
      this.receiveBinary(new Uint8Array(data));
      return;
    }
    const message = JSON.parse(data);
    for (const item of Array.isArray(message) ? message : [message]) this.dispatch(item);
  }

  // Binary output (a server that still sends this process's output in the starting client's
  // format): the same as an `output` notification whose offset is "right after the last chunk".
  receiveBinary(frame) {
    const stream = BINARY_STREAMS[frame[0]];
    if (frame.length < 5 || !stream) return;
    const proc = new DataView(frame.buffer, frame.byteOffset, 5).getUint32(1);
    this.handlers.onNotification('output', { proc, stream, offset: null, bytes: frame.subarray(5) });
  }

  dispatch(message) {
    if (message.method !== undefined && message.id === undefined) {
      if (message.method === 'hello') {
        this.hello = message.params || {};
        this.handlers.onHello(this);
      } else {
        this.handlers.onNotification(message.method, message.params || {});
      }
      return;
    }
    const waiting = this.pending.get(message.id);
    if (waiting === undefined) {
      // id null: a refused write sent without id, or a frame the server could not read.
      if (message.error) this.handlers.onStrayError(message.error);
      return;
    }
    this.pending.delete(message.id);
    if (message.error) waiting.reject(new RpcError(message.error));
    else waiting.resolve(message.result);
  }

  call(method, params) {
    return new Promise((resolve, reject) => {
      if (this.ws.readyState !== WebSocket.OPEN) {
        reject(new OfflineError('not connected'));
        return;
      }
      const id = this.nextId++;
      this.pending.set(id, { resolve, reject });
      this.ws.send(JSON.stringify({ jsonrpc: '2.0', id, method, params }));
    });
  }

  close() {
    this.ws.onclose = null;
    this.ws.onmessage = null;
    for (const { reject } of this.pending.values()) reject(new OfflineError('logged out'));
    this.ws.close(1000);
  }
}

function socketUrl(token) {
  // Relative to the page, so that /some/prefix/ connects to /some/prefix/ws.
  const url = new URL('ws', location.href);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  url.search = '?token=' + encodeURIComponent(token);
  return url.href;
}

// The next wait before connecting again: doubling from RETRY_FIRST_MS up to RETRY_MAX_MS,
// each spread by ±20 % so that many pages do not all come back at the same instant.
export function backoff(attempt) {
  const base = Math.min(RETRY_FIRST_MS * 2 ** attempt, RETRY_MAX_MS);
  return Math.round(base * (0.8 + 0.4 * Math.random()));
}

// GET /ws without the upgrade: 401 for a wrong token, 400 once the token passed.
async function refusalReason(token) {
  try {
    const response = await fetch(new URL('ws', location.href), {
      headers: { Authorization: 'Bearer ' + token },
      cache: 'no-store',
      signal: AbortSignal.timeout(5000),
    });
    let error = '';
    try {
      if (!response.ok && response.status !== 400) error = (await response.json()).error || '';
    } catch {
      // not JSON: no reason to show
    }
    return { status: response.status, error };
  } catch {
    return { status: null, error: '' }; // unreachable
  }
}

/**
 * One logical link that outlives its connections.  `events` receives:
 * onState({state: 'connecting'|'up'|'down', why, retryAt}), onUp(hello), onDown(),
 * onNotification(method, params), onUnauthorized(), onStrayError(error).
 */
export class Link {
  constructor(events) {
    this.events = events;
    this.connection = null;
    this.token = null;
    this.attempt = 0;
    this.retryTimer = null;
  }

  get up() {
    return Boolean(this.connection && this.connection.hello);
  }

  get hello() {
    return this.connection ? this.connection.hello : null;
  }

  start(token) {
    this.token = token;
    this.connect();
  }

  stop() {
    clearTimeout(this.retryTimer);
    if (this.connection) this.connection.close();
    this.connection = null;
    this.token = null;
  }

  retryNow() {
    if (this.token && !this.connection) this.connect();
  }

  call(method, params = {}) {
    if (!this.up) return Promise.reject(new OfflineError('not connected'));
    return this.connection.call(method, params);
  }

  /**
   * `attach` asking for this page's own output format (JSON text: the page never wants binary
   * frames, whoever started the process and however), and with `snapshot` for a terminal's
   * current screen.  A server older than these params refuses them (-32602): then the attach
   * is made as before, and binary frames, if the process sends them, are decoded all the same.
   */
  async attach(params, { snapshot = false } = {}) {
    const extra = { binary: false, encoding: 'text' };
    if (snapshot) extra.snapshot = true;
    try {
      return await this.call('attach', { ...params, ...extra });
    } catch (error) {
      if (!(error instanceof RpcError) || error.code !== -32602 || !/binary|encoding|snapshot/.test(error.message)) {
        throw error;
      }
      return this.call('attach', params);
    }
  }

  connect() {
    clearTimeout(this.retryTimer);
    this.events.onState({ state: 'connecting' });
    const connection = new Connection(socketUrl(this.token), {
      onHello: (connection) => this.greeted(connection),
      onClose: (connection, event) => this.closed(connection, event),
      onNotification: (method, params) => this.events.onNotification(method, params),
      onStrayError: (error) => this.events.onStrayError(error),
    });
    this.connection = connection;
    setTimeout(() => {
      if (this.connection === connection && !connection.hello) connection.ws.close();
    }, CONNECT_TIMEOUT_MS);
  }

  greeted(connection) {
    if (connection !== this.connection) return;
    this.attempt = 0;
    this.events.onState({ state: 'up', hello: connection.hello });
    this.events.onUp(connection.hello);
  }

  async closed(connection, event) {
    if (connection !== this.connection) return;
    this.connection = null;
    const wasUp = Boolean(connection.hello);
    if (wasUp) this.events.onDown();
    let why = event.reason ? `closed by the server: ${event.reason}` : 'the server cannot be reached';
    if (!wasUp) {
      // A refused upgrade hides its HTTP status from scripts: ask the same URL over plain HTTP.
      const { status, error } = await refusalReason(this.token);
      if (this.token === null) return; // logged out meanwhile
      if (status === 401) {
        this.events.onUnauthorized();
        return;
      }
      if (status === 403 || error) why = `refused: ${error || 'forbidden'}`;
      else if (status !== null) {
        why = `the WebSocket was refused (a proxy that does not pass upgrades, or this page's origin ${location.origin} not in ALLOWED_ORIGINS)`;
      }
    }
    const delay = backoff(this.attempt++);
    this.events.onState({ state: 'down', why, retryAt: Date.now() + delay, code: event.code });
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }
}
