// procwire's web console: the JSON-RPC protocol of /ws (docs/protocol.md), spoken from the browser.
(() => {
  'use strict';

  const TOKEN_KEY = 'procwire.token';
  const TERMINAL_KEY = 'procwire.terminal'; // the kept terminal's proc, attached again after a reload
  const VIEW_KEY = 'procwire.view';
  const MAX_PANE_CHARS = 1 << 20; // per stream and process, in the page
  const RETRY_MAX_MS = 10000;

  const $ = (id) => document.getElementById(id);
  const encoder = new TextEncoder();

  // -- JSON-RPC over one WebSocket ---------------------------------------------------

  class RpcError extends Error {
    constructor(error) {
      super(error.message);
      this.code = error.code;
      this.data = error.data;
    }
  }

  class Connection {
    constructor(url, onNotification, onClose) {
      this.ws = new WebSocket(url);
      this.nextId = 1;
      this.pending = new Map();
      this.greeted = false;
      this.ws.onmessage = (event) => {
        if (typeof event.data !== 'string') return; // binary frames: never asked for
        const message = JSON.parse(event.data);
        for (const item of Array.isArray(message) ? message : [message]) this.dispatch(item, onNotification);
      };
      this.ws.onclose = (event) => {
        for (const { reject } of this.pending.values()) reject(new Error('the connection closed'));
        this.pending.clear();
        onClose(this, event);
      };
    }

    dispatch(message, onNotification) {
      if (message.method !== undefined && message.id === undefined) {
        if (message.method === 'hello') this.greeted = true;
        onNotification(message.method, message.params || {});
        return;
      }
      const waiting = this.pending.get(message.id);
      if (waiting === undefined) {
        // id null: a refused write sent without id, or a frame the server could not read.
        if (message.error) showMessage(`server: ${message.error.message}`, true);
        return;
      }
      this.pending.delete(message.id);
      if (message.error) waiting.reject(new RpcError(message.error));
      else waiting.resolve(message.result);
    }

    call(method, params) {
      return new Promise((resolve, reject) => {
        if (this.ws.readyState !== WebSocket.OPEN) {
          reject(new Error('not connected'));
          return;
        }
        const id = this.nextId++;
        this.pending.set(id, { resolve, reject });
        this.ws.send(JSON.stringify({ jsonrpc: '2.0', id, method, params }));
      });
    }

    close() {
      this.ws.onclose = null;
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

  // -- helpers ---------------------------------------------------------------------

  function splitArgs(text) {
    const trimmed = text.trim();
    if (trimmed.startsWith('[')) {
      const argv = JSON.parse(trimmed);
      if (!Array.isArray(argv) || !argv.every((arg) => typeof arg === 'string')) {
        throw new Error('a JSON argv must be an array of strings');
      }
      return argv;
    }
    // Shell-like: blanks separate words; '...' is literal; "..." and \ escape. No expansion.
    const argv = [];
    let word = null;
    let quote = null;
    for (let i = 0; i < trimmed.length; i++) {
      const c = trimmed[i];
      if (quote === "'") {
        if (c === "'") quote = null;
        else word += c;
      } else if (quote === '"') {
        if (c === '"') quote = null;
        else if (c === '\\' && i + 1 < trimmed.length && '"\\$`'.includes(trimmed[i + 1])) word += trimmed[++i];
        else word += c;
      } else if (c === "'" || c === '"') {
        quote = c;
        word = word ?? '';
      } else if (c === '\\' && i + 1 < trimmed.length) {
        word = (word ?? '') + trimmed[++i];
      } else if (/\s/.test(c)) {
        if (word !== null) argv.push(word);
        word = null;
      } else {
        word = (word ?? '') + c;
      }
    }
    if (quote) throw new Error(`unterminated ${quote} quote`);
    if (word !== null) argv.push(word);
    if (argv.length === 0) throw new Error('no command given');
    return argv;
  }

  function quoteArg(arg) {
    return /^[\w@%+=:,./-]+$/.test(arg) ? arg : "'" + arg.replaceAll("'", "'\\''") + "'";
  }

  function chunkBytes(params) {
    if (params.encoding === 'base64') return Uint8Array.from(atob(params.data), (c) => c.charCodeAt(0));
    return encoder.encode(params.data);
  }

  function describeExit(status) {
    if (!status) return '';
    if (status.lost) return `lost with ${status.node}`;
    let text = status.signal ? `killed by ${status.signal}` : `exit ${status.code}`;
    if (status.core_dumped) text += ' (core dumped)';
    if (status.timed_out) text += ' (timed out)';
    if (status.output_incomplete) text += ' (output incomplete)';
    return text;
  }

  let messageTimer = null;
  function showMessage(text, isError = false) {
    const message = $('message');
    message.textContent = text;
    message.className = isError ? 'error' : '';
    clearTimeout(messageTimer);
    if (!isError) messageTimer = setTimeout(() => { message.textContent = ''; }, 4000);
  }

  function failed(what) {
    return (error) => showMessage(`${what}: ${error.message}`, true);
  }

  // -- state -------------------------------------------------------------------------

  let token = sessionStorage.getItem(TOKEN_KEY);
  let connection = null;
  let retryMs = 1000;
  let retryTimer = null;
  let listTimer = null;

  // Everything the page knows about a process, by proc id.
  const procs = new Map();
  let current = null; // the proc shown in the Run view

  function procEntry(proc) {
    let entry = procs.get(proc);
    if (!entry) {
      entry = {
        proc, info: null, exit: null, subscribed: false, pty: false,
        streams: { stdout: newStream(), stderr: newStream() },
      };
      procs.set(proc, entry);
    }
    return entry;
  }

  function newStream() {
    return { next: 0, text: '', decoder: new TextDecoder() };
  }

  // The bytes of an output chunk not seen yet: a replay may overlap what arrived live.
  function fresh(stream, params) {
    const bytes = chunkBytes(params);
    const end = params.offset + bytes.length;
    if (end <= stream.next) return { bytes: null, gap: 0 };
    const skip = Math.max(stream.next - params.offset, 0);
    const gap = Math.max(params.offset - stream.next, 0);
    stream.next = end;
    return { bytes: bytes.subarray(skip), gap };
  }

  // -- connection ----------------------------------------------------------------------

  function connect() {
    clearTimeout(retryTimer);
    setStatus('connecting…');
    connection = new Connection(socketUrl(token), onNotification, onClose);
  }

  function setStatus(text, ok = false) {
    $('status').textContent = text;
    $('status').classList.toggle('ok', ok);
  }

  async function onClose(closed, event) {
    if (closed !== connection) return;
    connection = null;
    for (const entry of procs.values()) {
      entry.wasSubscribed = entry.subscribed;
      entry.subscribed = false;
    }
    terminal.subscribed = false;
    terminal.attaching = false;
    let why = `disconnected (${event.code}${event.reason ? ' ' + event.reason : ''})`;
    if (!closed.greeted) {
      // A refused upgrade hides its HTTP status from scripts: ask the same URL over plain HTTP.
      const { status, error } = await refusalReason();
      if (status === 401) {
        logOut('The server refused this token.');
        return;
      }
      if (status === 403) {
        setStatus(`refused: ${error || 'forbidden'}`);
        return;
      }
      why = error
        ? `refused: ${error}`
        : `the WebSocket was refused (server down, a proxy that does not pass upgrades, or this page's origin ${location.origin} not in ALLOWED_ORIGINS)`;
    }
    setStatus(`${why}; retrying in ${retryMs / 1000} s`);
    retryTimer = setTimeout(connect, retryMs);
    retryMs = Math.min(retryMs * 2, RETRY_MAX_MS);
  }

  // GET /ws without the upgrade: 401 for a wrong token, 400 once the token passed.
  async function refusalReason() {
    try {
      const response = await fetch(new URL('ws', location.href), {
        headers: { Authorization: 'Bearer ' + token },
        cache: 'no-store',
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

  function onNotification(method, params) {
    if (method === 'hello') onHello(params);
    else if (method === 'output') onOutput(params);
    else if (method === 'exit') onExit(params);
  }

  function onHello(hello) {
    retryMs = 1000;
    setStatus(`connected · ${hello.server} ${hello.version} · client ${hello.client_id}`, true);
    refreshList();
    // Kept processes this page was following before the connection dropped: follow on.
    for (const entry of procs.values()) {
      const kept = entry.info && entry.info.on_disconnect === 'keep';
      if (entry.wasSubscribed && kept && !entry.exit && !entry.pty) attach(entry.proc, { show: false });
      entry.wasSubscribed = false;
    }
    if (terminal.term) resumeTerminal();
  }

  function onOutput(params) {
    if (params.proc === terminal.proc) {
      terminalOutput(params);
      return;
    }
    const entry = procEntry(params.proc);
    const stream = entry.streams[params.stream];
    const { bytes, gap } = fresh(stream, params);
    if (bytes === null) return;
    let text = gap ? `\n[… ${gap} bytes no longer held by the server …]\n` : '';
    text += stream.decoder.decode(bytes, { stream: true });
    appendText(entry, params.stream, text);
  }

  function appendText(entry, name, text) {
    const stream = entry.streams[name];
    stream.text += text;
    let trimmed = false;
    if (stream.text.length > MAX_PANE_CHARS) {
      stream.text = '[… earlier output dropped by the page …]\n' + stream.text.slice(-MAX_PANE_CHARS / 2);
      trimmed = true;
    }
    if (entry.proc !== current) return;
    const pane = $(name);
    const atBottom = pane.scrollTop + pane.clientHeight >= pane.scrollHeight - 4;
    if (trimmed) pane.textContent = stream.text;
    else pane.append(text);
    if (atBottom) pane.scrollTop = pane.scrollHeight;
  }

  function onExit(status) {
    if (status.proc === terminal.proc) terminalExited(status);
    const entry = procEntry(status.proc);
    entry.exit = status;
    entry.subscribed = false;
    for (const stream of Object.values(entry.streams)) {
      const rest = stream.decoder.decode();
      if (rest) appendText(entry, stream === entry.streams.stdout ? 'stdout' : 'stderr', rest);
    }
    if (status.proc === current) renderCurrent();
    scheduleList();
  }

  // -- Run view ------------------------------------------------------------------------

  function renderCurrent() {
    const box = $('current');
    const entry = procs.get(current);
    if (!entry) return;
    const argv = entry.info ? entry.info.argv.map(quoteArg).join(' ') : '';
    const state = entry.exit ? describeExit(entry.exit) : entry.subscribed ? 'running' : 'not attached';
    box.textContent = '';
    const title = document.createElement('strong');
    title.textContent = `proc ${entry.proc}`;
    const details = document.createElement('span');
    details.textContent = ` · pid ${entry.info ? entry.info.pid : '?'} · ${argv} · `;
    const badge = document.createElement('span');
    badge.className = 'badge ' + (entry.exit ? (entry.exit.code === 0 ? 'ok' : 'bad') : 'running');
    badge.textContent = state;
    badge.id = 'current-state';
    box.append(title, details, badge);
    box.dataset.proc = entry.proc;
  }

  function showProc(proc) {
    current = proc;
    const entry = procEntry(proc);
    $('stdout').textContent = entry.streams.stdout.text;
    $('stderr').textContent = entry.streams.stderr.text;
    renderCurrent();
    showView('run');
  }

  async function startCommand(event) {
    event.preventDefault();
    let argv;
    try {
      argv = splitArgs($('argv').value);
    } catch (error) {
      showMessage(`command: ${error.message}`, true);
      return;
    }
    const params = { argv };
    if ($('keep').checked) params.on_disconnect = 'keep';
    try {
      const result = await rpc('start', params);
      const entry = procEntry(result.proc);
      entry.subscribed = true;
      entry.info = { proc: result.proc, pid: result.pid, argv, on_disconnect: params.on_disconnect || 'kill' };
      showProc(result.proc);
      scheduleList();
    } catch (error) {
      showMessage(`start: ${error.message}`, true);
    }
  }

  function rpc(method, params) {
    if (!connection) return Promise.reject(new Error('not connected'));
    return connection.call(method, params);
  }

  function needCurrent() {
    if (current === null) showMessage('start a command first', true);
    return current;
  }

  function sendLine(event) {
    event.preventDefault();
    const proc = needCurrent();
    if (proc === null) return;
    const line = $('stdin').value;
    rpc('write', { proc, data: line + '\n' }).then(() => { $('stdin').value = ''; }, failed('write'));
  }

  // -- attach / detach ------------------------------------------------------------------

  async function attach(proc, { show = true } = {}) {
    const entry = procEntry(proc);
    const offset = { stdout: entry.streams.stdout.next, stderr: entry.streams.stderr.next };
    try {
      const answer = await rpc('attach', { proc, offset });
      entry.subscribed = answer.state === 'running';
      if (answer.truncated) {
        for (const name of ['stdout', 'stderr']) {
          if (answer.replay_from[name] > entry.streams[name].next) {
            appendText(entry, name, '[… the start of this output is no longer held by the server …]\n');
          }
        }
      }
      if (show) showProc(proc);
      scheduleList();
    } catch (error) {
      showMessage(`attach: ${error.message}`, true);
    }
  }

  function detach(proc) {
    rpc('detach', { proc }).then(() => {
      procEntry(proc).subscribed = false;
      if (proc === current) renderCurrent();
      scheduleList();
    }, failed('detach'));
  }

  // -- Processes view ---------------------------------------------------------------------

  function scheduleList() {
    clearTimeout(listTimer);
    listTimer = setTimeout(refreshList, 150);
  }

  async function refreshList() {
    if (!connection || !connection.greeted) return;
    let result;
    try {
      result = await rpc('list', {});
    } catch (error) {
      if (connection) showMessage(`list: ${error.message}`, true);
      return;
    }
    const body = $('processes').tBodies[0];
    body.textContent = '';
    for (const info of result.processes) {
      const entry = procEntry(info.proc);
      entry.info = info;
      entry.pty = Boolean(info.pty);
      if (info.exit) entry.exit = info.exit;
      body.append(processRow(info, entry));
    }
    if (result.processes.length === 0) {
      const row = body.insertRow();
      const cell = row.insertCell();
      cell.colSpan = 11;
      cell.className = 'hint';
      cell.textContent = 'No processes yet.';
    }
    if (result.partial) showMessage('The cluster is unreachable: only this worker\'s processes are listed.', true);
    if (procs.has(current)) renderCurrent();
  }

  function processRow(info, entry) {
    const row = document.createElement('tr');
    row.dataset.proc = info.proc;
    const cells = [
      ['proc', String(info.proc)],
      ['pid', String(info.pid)],
      ['command', (info.name ? `[${info.name}] ` : '') + info.argv.map(quoteArg).join(' ')],
      ['state', info.state],
      ['exit', describeExit(info.exit)],
      ['mode', entry.pty ? 'pty' : 'pipes'],
      ['on-disconnect', info.on_disconnect],
      ['attached', String(info.attached)],
      ['started', new Date(info.started_at * 1000).toLocaleTimeString()],
      ['node', info.node],
    ];
    for (const [name, text] of cells) {
      const cell = row.insertCell();
      cell.className = name;
      cell.textContent = text;
    }
    row.querySelector('.state').classList.add(info.state);
    const actions = row.insertCell();
    actions.className = 'actions';
    const button = (label, action, cls = '') => {
      const b = document.createElement('button');
      b.type = 'button';
      b.textContent = label;
      b.className = cls;
      b.dataset.action = label.toLowerCase();
      b.addEventListener('click', action);
      actions.append(b);
    };
    const mine = entry.pty ? info.proc === terminal.proc && terminal.subscribed : entry.subscribed;
    if (entry.pty) {
      if (mine) button('Show', () => showView('terminal'));
      else if (info.state === 'running') button('Attach', () => attachTerminal(info.proc, 0));
    } else if (mine || entry.streams.stdout.text || entry.streams.stderr.text) {
      button('Show', () => showProc(info.proc));
    }
    if (!entry.pty && !mine && info.state === 'running') button('Attach', () => attach(info.proc));
    if (!entry.pty && mine && info.on_disconnect === 'keep') button('Detach', () => detach(info.proc));
    if (info.state === 'running') {
      // A process of another worker or host sends its exit only to those attached: list again.
      const killed = () => setTimeout(scheduleList, 300);
      button('Kill', () => rpc('kill', { proc: info.proc }).then(killed, failed('kill')), 'danger');
    } else {
      button('Release', () => rpc('release', { proc: info.proc }).then(scheduleList, failed('release')));
    }
    return row;
  }

  // -- Terminal view ----------------------------------------------------------------------

  // One terminal per page; `next` is the offset of the next byte it expects.
  const terminal = {
    term: null, fit: null, proc: null, next: 0, running: false, subscribed: false, attaching: false,
  };

  function ensureTerminal() {
    if (terminal.term) return;
    const term = new window.Terminal({
      cursorBlink: true,
      fontFamily: 'ui-monospace, "DejaVu Sans Mono", Menlo, monospace',
      fontSize: 14,
      scrollback: 5000,
      theme: { background: '#14161b' },
    });
    const fit = new window.FitAddon.FitAddon();
    term.loadAddon(fit);
    term.open($('terminal'));
    terminal.term = term;
    terminal.fit = fit;
    term.onData((data) => terminalWrite({ data }));
    term.onBinary((data) => terminalWrite({ data: btoa(data), encoding: 'base64' }));
    term.onResize(({ rows, cols }) => {
      if (terminal.running && terminal.subscribed) {
        rpc('resize', { proc: terminal.proc, rows, cols }).catch(failed('resize'));
      }
      renderTerminalStatus();
    });
    new ResizeObserver(() => requestAnimationFrame(fitTerminal)).observe($('terminal'));
    fitTerminal();
  }

  function fitTerminal() {
    if (terminal.fit && $('view-terminal').classList.contains('active')) terminal.fit.fit();
  }

  function terminalWrite(params) {
    if (!terminal.running || !terminal.subscribed) return;
    rpc('write', { proc: terminal.proc, ...params }).catch(failed('write'));
  }

  function renderTerminalStatus() {
    const { term, proc, running } = terminal;
    let text = term ? `${term.rows}×${term.cols}` : '';
    if (proc !== null) text = `proc ${proc} · ${running ? 'running' : 'exited'} · ` + text;
    $('terminal-status').textContent = text;
    $('open-terminal').disabled = running;
    $('kill-terminal').disabled = !running;
  }

  async function openTerminal() {
    ensureTerminal();
    fitTerminal();
    let argv;
    try {
      argv = splitArgs($('shell').value || 'bash');
    } catch (error) {
      showMessage(`terminal command: ${error.message}`, true);
      return;
    }
    const { term } = terminal;
    try {
      const result = await rpc('start', {
        argv,
        pty: { rows: term.rows, cols: term.cols },
        on_disconnect: 'keep',
        name: 'console terminal',
      });
      term.reset();
      Object.assign(terminal, { proc: result.proc, next: 0, running: true, subscribed: true });
      sessionStorage.setItem(TERMINAL_KEY, String(result.proc));
      renderTerminalStatus();
      term.focus();
      scheduleList();
    } catch (error) {
      showMessage(`terminal: ${error.message}`, true);
    }
  }

  // After a reload (nothing shown yet: replay from 0) or a reconnect (from what is shown).
  function resumeTerminal() {
    if (!connection || !connection.greeted || terminal.attaching) return;
    if (terminal.proc !== null) {
      if (terminal.running && !terminal.subscribed) attachTerminal(terminal.proc, terminal.next, { show: false });
      return;
    }
    const stored = sessionStorage.getItem(TERMINAL_KEY);
    if (stored) attachTerminal(Number(stored), 0, { show: false });
  }

  async function attachTerminal(proc, offset, { show = true } = {}) {
    ensureTerminal();
    if (terminal.proc !== null && terminal.proc !== proc && terminal.running && terminal.subscribed) {
      rpc('detach', { proc: terminal.proc }).catch(() => {});
    }
    if (offset === 0) terminal.term.reset();
    Object.assign(terminal, { proc, next: offset, running: true, subscribed: false, attaching: true });
    try {
      const answer = await rpc('attach', { proc, offset });
      terminal.subscribed = answer.state === 'running';
      terminal.running = answer.state === 'running';
      if (answer.truncated) terminal.term.write('\x1b[2m[earlier output is no longer held by the server]\x1b[0m\r\n');
      if (terminal.running) {
        sessionStorage.setItem(TERMINAL_KEY, String(proc));
        const { rows, cols } = terminal.term;
        rpc('resize', { proc, rows, cols }).catch(failed('resize'));
      }
      if (show) showView('terminal');
    } catch (error) {
      // A lost connection is not an answer: the next hello attaches again.
      if (error instanceof RpcError) {
        if (error.code === -32002) sessionStorage.removeItem(TERMINAL_KEY);
        terminal.running = false;
        terminal.term.write(`\x1b[2m[cannot attach to proc ${proc}: ${error.message}]\x1b[0m\r\n`);
      }
    } finally {
      terminal.attaching = false;
    }
    renderTerminalStatus();
    scheduleList();
  }

  function terminalOutput(params) {
    const stream = { next: terminal.next };
    const { bytes, gap } = fresh(stream, params);
    terminal.next = stream.next;
    if (bytes === null) return;
    if (gap) terminal.term.write(`\r\n\x1b[2m[${gap} bytes no longer held by the server]\x1b[0m\r\n`);
    terminal.term.write(bytes);
  }

  function terminalExited(status) {
    terminal.running = false;
    terminal.subscribed = false;
    sessionStorage.removeItem(TERMINAL_KEY);
    terminal.term.write(`\r\n\x1b[2m[process ${status.proc} ended: ${describeExit(status)}]\x1b[0m\r\n`);
    renderTerminalStatus();
  }

  // -- views, login, logout ---------------------------------------------------------------

  function showView(name) {
    sessionStorage.setItem(VIEW_KEY, name);
    for (const view of document.querySelectorAll('.view')) view.classList.toggle('active', view.id === `view-${name}`);
    for (const tab of document.querySelectorAll('.tab')) tab.classList.toggle('active', tab.dataset.view === name);
    if (name === 'terminal') {
      ensureTerminal();
      fitTerminal();
      renderTerminalStatus();
      resumeTerminal();
    }
    if (name === 'processes') refreshList();
  }

  function logIn(event) {
    event.preventDefault();
    token = $('token').value.trim();
    if (!token) return;
    sessionStorage.setItem(TOKEN_KEY, token);
    $('token').value = '';
    start();
  }

  function logOut(reason = '') {
    clearTimeout(retryTimer);
    if (connection) connection.close();
    connection = null;
    token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    $('app').hidden = true;
    $('login').hidden = false;
    $('login-error').textContent = reason;
    $('token').focus();
  }

  function start() {
    $('login').hidden = true;
    $('app').hidden = false;
    $('login-error').textContent = '';
    showView(sessionStorage.getItem(VIEW_KEY) || 'run');
    connect();
  }

  function init() {
    $('login-form').addEventListener('submit', logIn);
    $('logout').addEventListener('click', () => logOut());
    for (const tab of document.querySelectorAll('.tab')) tab.addEventListener('click', () => showView(tab.dataset.view));
    $('start-form').addEventListener('submit', startCommand);
    $('stdin-form').addEventListener('submit', sendLine);
    $('close-stdin').addEventListener('click', () => {
      const proc = needCurrent();
      if (proc !== null) rpc('close_stdin', { proc }).catch(failed('close_stdin'));
    });
    $('send-signal').addEventListener('click', () => {
      const proc = needCurrent();
      if (proc !== null) rpc('signal', { proc, signal: $('signal').value }).catch(failed('signal'));
    });
    $('kill').addEventListener('click', () => {
      const proc = needCurrent();
      if (proc !== null) rpc('kill', { proc }).catch(failed('kill'));
    });
    $('refresh').addEventListener('click', refreshList);
    $('open-terminal').addEventListener('click', openTerminal);
    $('kill-terminal').addEventListener('click', () => {
      if (terminal.proc !== null) rpc('kill', { proc: terminal.proc }).catch(failed('kill'));
    });
    if (token) start();
    else $('login').hidden = false;
  }

  // For tests and the curious: what the terminal holds, as text.
  window.procwireConsole = {
    get terminal() { return terminal.term; },
    get terminalProc() { return terminal.proc; },
    terminalText() {
      const term = terminal.term;
      if (!term) return '';
      const buffer = term.buffer.active;
      const lines = [];
      for (let i = 0; i < buffer.length; i++) lines.push(buffer.getLine(i).translateToString(true));
      return lines.join('\n');
    },
    splitArgs,
  };

  init();
})();
