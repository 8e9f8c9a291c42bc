// The page's link to the server, on procwire's JavaScript client (served at /client/procwire.js:
// the very module third parties get): a new connection by itself after a loss, with backoff and
// jitter, and the reason for a refused connection found out for the page.

import { Client, ConnectionError, RpcError, backoff, bytesToBase64 } from '../client/procwire.js';

export { ConnectionError, RpcError, backoff, bytesToBase64 };

// A connection not greeted by then is given up (an unresponsive server may accept and say nothing).
const CONNECT_TIMEOUT_MS = 10000;

// Relative to the page, so that /some/prefix/ connects to /some/prefix/ws (the client adds ?token=).
function socketUrl() {
  const url = new URL('ws', location.href);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  return url.href;
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

  start(token) {
    this.token = token;
    this.connect();
  }

  stop() {
    clearTimeout(this.retryTimer);
    const client = this.client;
    this.client = null;
    this.token = null;
    if (client) client.close();
  }

  retryNow() {
    if (this.token && !this.client) this.connect();
  }

  call(method, params = {}) {
    if (!this.up) return Promise.reject(new ConnectionError('not connected'));
    return this.client.call(method, params);
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
    const client = new Client(socketUrl(), this.token, {
      connectTimeout: CONNECT_TIMEOUT_MS,
      onNotification: (method, params) => this.events.onNotification(method, params),
      onError: (error) => this.events.onStrayError(error),
      onClose: (error) => this.closed(client, error, true),
    });
    this.client = client;
    client.connect().then(() => this.greeted(client), (error) => this.closed(client, error, false));
  }

  greeted(client) {
    if (client !== this.client) return;
    this.attempt = 0;
    this.events.onState({ state: 'up', hello: client.hello });
    this.events.onUp(client.hello);
  }

  // `event`: the client's ConnectionError, with the close `code` and `reason` when there were some.
  async closed(client, event, wasUp) {
    if (client !== this.client) return;
    this.client = null;
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
