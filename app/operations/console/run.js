// The Run view: start a command, follow one process's output, talk to it.  What it shows is always
// the process's real state: buttons only while it runs and the page is connected, a failed start
// shown with that start (and gone with the next one), and output followed on by the client across
// a reconnect, so that nothing is lost or shown twice.

import { ConnectionError, ProcessLost, RpcError, follow } from './link.js';
import { OutputLog, OutputView } from './outputview.js';
import { OutputSearch } from './search.js';
import { $, commandOf, describeExit, exitClass, splitArgs } from './util.js';

const CURRENT_KEY = 'procwire.run'; // the proc shown, followed again after a reload
const MODE_KEY = 'procwire.run.mode';
const STREAMS = ['stdout', 'stderr'];
const NOT_KEPT = 'ended with the lost connection (not kept)';

// `process`: the client's Process while followed; `last`: the last one, whose offsets say where
// the output shown stops.
function newEntry(proc) {
  return {
    proc, info: null, exit: null, gone: null, process: null, last: null, follow: false, stdinClosed: false,
    decoders: { stdout: new TextDecoder(), stderr: new TextDecoder() }, replayEnd: {}, log: new OutputLog(proc),
  };
}

export class RunView {
  constructor(app) {
    this.app = app;
    this.entries = new Map();
    this.current = null; // the entry shown
    this.failure = null; // {command, message}: the last start, when it failed
    this.view = new OutputView({
      stdout: $('stdout'), stderr: $('stderr'), combined: $('combined'),
      onChange: () => this.search.later(),
    });
    this.search = new OutputSearch({
      input: $('search'), count: $('search-count'), previous: $('search-previous'), next: $('search-next'),
      containers: () => this.view.visiblePanes(),
    });
    this.bind();
    this.setMode(sessionStorage.getItem(MODE_KEY) || 'apart');
    const stored = Number(sessionStorage.getItem(CURRENT_KEY));
    if (stored) this.select(stored, { follow: true });
    this.render();
  }

  bind() {
    $('start-form').addEventListener('submit', (event) => {
      event.preventDefault();
      this.start();
    });
    $('stdin-form').addEventListener('submit', (event) => {
      event.preventDefault();
      this.sendLine();
    });
    $('close-stdin').addEventListener('click', () => this.act('close_stdin', {}, () => {
      this.current.stdinClosed = true;
    }));
    $('send-signal').addEventListener('click', () => this.act('signal', { signal: $('signal').value }));
    $('kill').addEventListener('click', () => this.act('kill', {}));
    for (const mode of ['apart', 'interleaved']) $(`mode-${mode}`).addEventListener('click', () => this.setMode(mode));
    for (const element of document.querySelectorAll('#view-run [data-download]')) {
      element.addEventListener('click', () => this.view.download(element.dataset.download));
    }
  }

  entry(proc) {
    let entry = this.entries.get(proc);
    if (!entry) {
      entry = newEntry(proc);
      this.entries.set(proc, entry);
    }
    return entry;
  }

  // -- what is shown --------------------------------------------------------------------

  select(proc, { follow = false } = {}) {
    const entry = this.entry(proc);
    this.current = entry;
    this.failure = null;
    if (follow) entry.follow = true;
    sessionStorage.setItem(CURRENT_KEY, String(proc));
    $('run-error').textContent = '';
    this.view.show(entry.log);
    this.render();
  }

  show(proc) {
    this.select(proc);
    this.app.showView('run');
  }

  setMode(mode) {
    sessionStorage.setItem(MODE_KEY, mode);
    for (const name of ['apart', 'interleaved']) $(`mode-${name}`).setAttribute('aria-pressed', String(name === mode));
    $('panes-apart').hidden = mode !== 'apart';
    $('pane-combined').hidden = mode === 'apart';
    this.view.setMode(mode);
    this.search.refresh();
  }

  // The header and the buttons, from what is known now.
  render() {
    const box = $('current');
    box.textContent = '';
    delete box.dataset.proc;
    const entry = this.current;
    const up = this.app.link.up;
    if (this.failure) this.renderFailure(box);
    else if (entry) this.renderEntry(box, entry, up);
    else box.textContent = 'Start a command: its stdout and stderr appear below.';
    const live = Boolean(entry && !this.failure && !entry.exit && !entry.gone && up);
    for (const id of ['stdin', 'send-stdin', 'signal', 'send-signal', 'kill']) $(id).disabled = !live;
    $('close-stdin').disabled = !live || entry.stdinClosed || Boolean(entry.info && entry.info.pty);
    $('start').disabled = !up;
    for (const element of document.querySelectorAll('#view-run [data-download]')) {
      element.disabled = !entry || this.failure !== null;
    }
  }

  renderFailure(box) {
    const title = document.createElement('strong');
    title.textContent = 'not started';
    const details = document.createElement('span');
    details.textContent = ` · ${this.failure.command} · `;
    box.append(title, details, this.badge('bad', 'start failed'));
  }

  renderEntry(box, entry, up) {
    box.dataset.proc = entry.proc;
    const title = document.createElement('strong');
    title.textContent = `proc ${entry.proc}`;
    const details = document.createElement('span');
    details.textContent = ` · pid ${entry.info ? entry.info.pid : '?'} · ${commandOf(entry.info)} · `;
    let badge;
    if (entry.exit) badge = this.badge(exitClass(entry.exit), describeExit(entry.exit));
    else if (entry.gone) badge = this.badge('bad', entry.gone);
    else if (!up) badge = this.badge('stale', 'unknown: offline');
    else badge = this.badge('running', entry.process ? 'running' : 'running · not attached');
    box.append(title, details, badge);
  }

  badge(cls, text) {
    const badge = document.createElement('span');
    badge.className = `badge ${cls}`;
    badge.id = 'current-state';
    badge.textContent = text;
    return badge;
  }

  // -- actions ----------------------------------------------------------------------------

  async start() {
    const text = $('argv').value;
    $('run-error').textContent = '';
    let argv;
    try {
      argv = splitArgs(text);
    } catch (error) {
      this.failed(text.trim(), `command: ${error.message}`);
      return;
    }
    const params = { on_disconnect: $('keep').checked ? 'keep' : 'kill' };
    try {
      const process = await this.app.link.start(argv, params);
      const entry = newEntry(process.proc); // a proc id seen before belonged to a server since restarted
      this.entries.set(process.proc, entry);
      entry.info = {
        proc: process.proc, pid: process.pid, argv, pty: false, state: 'running',
        on_disconnect: params.on_disconnect, started_at: Date.now() / 1000,
      };
      entry.follow = true;
      this.follow(entry, process);
      this.show(process.proc);
      this.app.listChanged();
    } catch (error) {
      this.failed(argv.join(' '), `start: ${error.message}`);
    }
  }

  // A start that did not happen: shown in place of the previous process, until the next start.
  failed(command, message) {
    this.current = null;
    this.failure = { command, message };
    sessionStorage.removeItem(CURRENT_KEY);
    this.view.show(null);
    $('run-error').textContent = message;
    this.render();
  }

  act(method, params, then = () => {}) {
    const entry = this.current;
    if (entry === null) return Promise.resolve();
    return this.app.link.call(method, { proc: entry.proc, ...params }).then(then, (error) => {
      if (entry === this.current) $('run-error').textContent = `${method}: ${error.message}`;
    });
  }

  sendLine() {
    const line = $('stdin').value;
    this.act('write', { data: line + '\n' }, () => {
      $('stdin').value = '';
    });
  }

  // Follow `proc` from where the output shown stops (all of it, the first time).
  async attach(proc, { show = true } = {}) {
    const entry = this.entry(proc);
    entry.follow = true;
    if (show) this.show(proc);
    const offset = entry.last ? { ...entry.last.offsets } : { stdout: 0, stderr: 0 };
    try {
      const process = await this.app.link.attach(proc, { offset });
      this.attached(entry, process, offset);
    } catch (error) {
      if (error instanceof ConnectionError) return; // the next connection attaches again
      if (error instanceof RpcError && error.code === -32002) {
        entry.gone = entry.info && entry.info.on_disconnect === 'kill' ? NOT_KEPT : 'no longer known to the server';
        entry.follow = false;
      } else if (entry === this.current) $('run-error').textContent = `attach: ${error.message}`;
    }
    this.render();
    this.app.listChanged();
  }

  attached(entry, process, asked) {
    const answer = process.info;
    if (answer.exit) entry.exit = answer.exit;
    entry.replayEnd = answer.offsets;
    for (const name of STREAMS) {
      const from = answer.replay_from[name] ?? 0;
      if (from > (asked[name] ?? 0)) this.note(entry, name, `[… ${from - asked[name]} bytes no longer held by the server …]\n`);
    }
    this.follow(entry, process);
  }

  follow(entry, process) {
    Object.assign(entry, { process, last: process });
    follow(process, {
      output: (chunk, gap) => this.output(entry, chunk, gap),
      exit: (status) => this.exit(entry, status),
      lost: (error) => this.lost(entry, process, error),
    }).finally(() => {
      if (entry.process === process) entry.process = null;
      if (entry === this.current) this.render();
    });
  }

  detach(proc) {
    const entry = this.entry(proc);
    if (!entry.process) return Promise.resolve();
    return entry.process.detach().then(() => {
      entry.follow = false;
      this.render();
      this.app.listChanged();
    }, (error) => this.app.message(`detach: ${error.message}`, true));
  }

  // -- what the followed processes say ------------------------------------------------------

  note(entry, stream, text) {
    const record = { stream, text, time: new Date(), note: true };
    this.view.append(entry.log, record, entry.log.add(record));
  }

  output(entry, { stream, data, offset }, gap) {
    if (gap) this.note(entry, stream, `\n[… ${gap} bytes no longer held by the server …]\n`);
    const text = entry.decoders[stream].decode(data, { stream: true });
    const replayed = offset < (entry.replayEnd[stream] ?? 0);
    const record = { stream, text, time: new Date(), replayed };
    this.view.append(entry.log, record, entry.log.add(record, data));
  }

  exit(entry, status) {
    Object.assign(entry, { exit: status, follow: false });
    for (const name of STREAMS) {
      const text = entry.decoders[name].decode();
      if (!text) continue;
      const record = { stream: name, text, time: new Date() };
      this.view.append(entry.log, record, entry.log.add(record));
    }
  }

  // The client could not follow the process across a lost connection: not kept, or unknown since.
  lost(entry, process, error) {
    if (!(error instanceof ProcessLost)) return;
    entry.follow = false;
    entry.gone = process.resumable ? 'no longer known to the server' : NOT_KEPT;
  }

  // -- the connection ----------------------------------------------------------------------

  down() {
    this.render();
  }

  // Connected: follow what the page should follow and does not yet (the client follows the rest on).
  up() {
    for (const entry of this.entries.values()) {
      if (entry.follow && !entry.process && !entry.exit && !entry.gone) this.attach(entry.proc, { show: false });
    }
    this.render();
  }

  // What `list` says about processes the page knows.  The same proc with another pid is another
  // process (the server was restarted): the one the page knew is gone, and forgotten here.
  listed(processes) {
    for (const info of processes) {
      const entry = this.entries.get(info.proc);
      if (!entry) continue;
      if (entry.info && entry.info.pid !== info.pid) {
        this.entries.delete(info.proc);
        Object.assign(entry, { gone: 'no longer known to the server', follow: false });
        continue;
      }
      entry.info = info;
      if (info.exit && !entry.exit && !entry.process) entry.exit = info.exit;
    }
    if (this.current !== null) this.render();
  }
}
