// The page's link to the server, on procwire's JavaScript client (served at /client/procwire.js:
// the very module third parties get).  The client's own reconnect-and-resume replaces a lost
// connection and follows the page's processes again from the last byte received; this module
// retries a first connection that fails, and finds out for the page why one was refused.

import { Client, ConnectionError, ProcessLost, RpcError, backoff, bytesToBase64 } from '../client/procwire.js';

export { ConnectionError, ProcessLost, RpcError, backoff, bytesToBase64 };

// The page never wants binary frames, whoever started a process and however.
const TEXT = { binary: false, encoding: 'text' };
// The client never gives up reconnecting: the page stays open until its user closes it.
const RECONNECT = { deadline: Infinity };
const CONNECT_TIMEOUT_MS = 10000;

// Relative to the page, so that /some/prefix/ connects to /some/prefix/ws (the client adds ?token=;
// a share link's token goes as ?share=).
function socketUrl(share = null) {
  const url = new URL('ws', location.href);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  if (share !== null) url.searchParams.set('share', share);
  return url.href;
}

// GET /ws without the upgrade: 401 for a wrong token, 400 once the token passed.
// No token (null): signed in by an auth proxy, whose identity the request carries.
async function refusalReason(token) {
  try {
    const response = await fetch(new URL('ws', location.href), {
      headers: token === null ? {} : { Authorization: 'Bearer ' + token },
      cache: 'no-store',
      signal: AbortSignal.timeout(5000),
    });
    let error = '';
    try {
      if (!response.ok && response.status !== 400) error = (await response.json()).error || '';
    } catch {
      // not JSON: no reason to show
    }
    return { status: response.status, error, redirected: response.redirected };
  } catch {
    return { status: null, error: '', redirected: false }; // unreachable
  }
}

/**
 * Hand the output chunks of `process` (a client's Process) to `output(chunk, gap)`, `gap` the
 * bytes before the chunk that the server no longer held, and a snapshot attach's screen (ANSI
 * that repaints it whole) to `screen(chunk)`; then its exit status to `exit`, or to
 * `lost` the error saying why it cannot be followed (ProcessLost: not kept, or unknown after a
 * reconnect).  A detached process just ends.
 */
export async function follow(process, { output, screen = () => {}, exit = () => {}, lost = () => {} }) {
  const ends = { ...process.offsets };
  try {
    for await (const chunk of process) {
      if (chunk.stream === 'screen') {
        screen(chunk);
        continue;
      }
      output(chunk, Math.max(0, chunk.offset - (ends[chunk.stream] ?? 0)));
      ends[chunk.stream] = chunk.offset + chunk.data.length;
    }
  } catch (error) {
    lost(error);
    return;
  }
  if (process.status) exit(process.status);
}

/**
 * One logical link that outlives its connections.  `events` receives:
 * onState({state: 'connecting'|'up'|'down', why, retryAt}), onUp(hello), onDown(),
 * onNotification(method, params), onUnauthorized(), onStrayError(error).
 */
export class Link {
  constructor(events) {
    this.events = events;
    this.client = null;
    this.token = null;
    this.attempt = 0;
    this.retryTimer = null;
  }

  get up() {
    return Boolean(this.client && this.client.connected);
  }

  get hello() {
    return this.client ? this.client.hello : null;
  }

  /** Connect with `token`; `share`: it is a share link's token (one process, see share.js). */
  logIn(token, { share = false } = {}) {
    this.token = token;
    this.client = new Client(share ? socketUrl(token) : socketUrl(), share ? null : token, {
      connectTimeout: CONNECT_TIMEOUT_MS,
      reconnect: RECONNECT,
      onNotification: (method, params) => this.events.onNotification(method, params),
      onError: (error) => this.events.onStrayError(error),
      onClose: (error) => this.lost(error),
      onRetry: ({ delay, error }) => this.retrying(delay, error),
      onReconnect: (hello) => this.greeted(hello),
    });
    this.connect();
  }

  logOut() {
    clearTimeout(this.retryTimer);
    const client = this.client;
    this.client = null;
    this.token = null;
    if (client) client.close();
  }

  retryNow() {
    if (!this.client || this.up) return;
    if (this.retryTimer !== null) this.connect(); // a first connection, waiting
    else this.client.reconnectNow();
  }

  call(method, params = {}) {
    if (!this.up) return Promise.reject(new ConnectionError('not connected'));
    return this.client.call(method, params);
  }

  /** Start `argv` (`options`: the params of `start`): its Process, followed until its exit. */
  start(argv, options = {}) {
    if (!this.up) return Promise.reject(new ConnectionError('not connected'));
    return this.client.start(argv, options);
  }

  /**
   * Follow process `proc` (`options`: the params of `attach`; `snapshot` for a terminal's current
   * screen): its Process, with its output as text.  A server older than these params refuses them
   * (-32602): then the attach is made as before, and binary frames are decoded all the same.
   */
  async attach(proc, options = {}) {
    if (!this.up) throw new ConnectionError('not connected');
    try {
      return await this.client.attach(proc, { ...TEXT, ...options });
    } catch (error) {
      if (!(error instanceof RpcError) || error.code !== -32602 || !/binary|encoding|snapshot/.test(error.message)) {
        throw error;
      }
      return this.client.attach(proc, { offset: options.offset ?? null });
    }
  }

  // The first connection, tried again until one is up; after that, the client reconnects.
  connect() {
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.events.onState({ state: 'connecting' });
    const client = this.client;
    client.connect().then((hello) => this.greeted(hello), async (error) => {
      if (client !== this.client) return;
      const why = await this.refused(error);
      if (why === null || client !== this.client) return;
      const delay = backoff(this.attempt++);
      this.events.onState({ state: 'down', why, retryAt: Date.now() + delay, code: error.code });
      this.retryTimer = setTimeout(() => this.connect(), delay);
    });
  }

  greeted(hello) {
    this.attempt = 0;
    this.events.onState({ state: 'up', hello });
    this.events.onUp(hello);
  }

  // `error`: the client's ConnectionError, with the close `code` and `reason` when there were some.
  lost(error) {
    this.events.onDown();
    const why = error.reason ? `closed by the server: ${error.reason}` : 'the server cannot be reached';
    this.events.onState({ state: 'down', why, code: error.code });
  }

  // The client waits `delay` ms before its next attempt; `error`: why the previous one failed.
  async retrying(delay, error) {
    const client = this.client;
    const retryAt = Date.now() + delay;
    if (error === null) {
      this.events.onState({ state: 'down', retryAt });
      return;
    }
    const why = await this.refused(error);
    if (why !== null && client === this.client) this.events.onState({ state: 'down', why, retryAt, code: error.code });
  }

  // Why a connection could not be made; null once the page logs out (a refused token: it does).
  // A refused upgrade hides its HTTP status from scripts: ask the same URL over plain HTTP.
  async refused(error) {
    const { status, error: said, redirected } = await refusalReason(this.token);
    if (this.client === null) return null; // logged out meanwhile
    if (redirected) {
      location.reload(); // sent to sign in: an auth proxy in front whose session ended
      return null;
    }
    if (status === 401) {
      this.events.onUnauthorized();
      return null;
    }
    if (status === 403 || said) return `refused: ${said || 'forbidden'}`;
    if (status !== null) {
      return `the WebSocket was refused (a proxy that does not pass upgrades, or this page's origin ${location.origin} not in ALLOWED_ORIGINS)`;
    }
    return error.reason ? `closed by the server: ${error.reason}` : 'the server cannot be reached';
  }
}
