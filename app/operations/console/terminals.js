// The Terminal view: terminals in tabs, the list of this token's kept sessions (any tab or browser
// of the token may open one), and files in and out of the active session.  The first visit opens
// a shell at once: this page's own sessions again after a reload, else a console session nobody
// is attached to, else a new one; "+" always starts a new one.  Opened with a share link, the
// view is that one shared process (openShared).

import { Transfers } from './files.js';
import { TerminalSession } from './terminal.js';
import { $, age, button, commandOf, describeExit, splitArgs } from './util.js';

const TABS_KEY = 'procwire.terminals'; // [{proc, name}] of this page's kept sessions, for a reload
const ACTIVE_KEY = 'procwire.terminal.active';
const NAME_PREFIX = 'console';
const LIST_EVERY_MS = 5000;

export class Terminals {
  constructor(app) {
    this.app = app;
    this.sessions = [];
    this.active = null;
    this.opened = false;
    this.kept = []; // the kept pty processes of the last list
    this.listTimer = null;
    this.transfers = new Transfers(app);
    this.bind();
  }

  bind() {
    $('new-terminal').addEventListener('click', () => this.newTerminal());
    $('share-terminal').addEventListener('click', () => this.active && this.app.share.open(this.active.proc));
    $('end-terminal').addEventListener('click', () => this.active && this.active.kill().catch((error) => {
      this.report(`end: ${error.message}`, true);
    }));
    $('toggle-sessions').addEventListener('click', () => {
      const panel = $('sessions-panel');
      panel.hidden = !panel.hidden;
      $('toggle-sessions').setAttribute('aria-expanded', String(!panel.hidden));
      if (this.active) this.active.fit();
    });
    $('upload').addEventListener('click', () => $('upload-file').click());
    $('upload-file').addEventListener('change', () => this.uploadChosen());
    $('download').addEventListener('click', () => {
      $('download-form').hidden = !$('download-form').hidden;
      if (!$('download-form').hidden) $('download-path').focus();
    });
    $('download-form').addEventListener('submit', (event) => {
      event.preventDefault();
      this.downloadPath();
    });
  }

  has(proc) {
    return this.sessions.some((session) => session.proc === proc);
  }

  // -- opening and closing -------------------------------------------------------------

  shown() {
    if (!this.opened && !this.app.sharing) this.openFirst();
    if (this.active) this.activate(this.active);
    clearInterval(this.listTimer);
    this.listTimer = setInterval(() => this.app.refreshList(), LIST_EVERY_MS);
  }

  hidden() {
    clearInterval(this.listTimer);
  }

  // This page's sessions again (after a reload), else (`start`) a shell: adopted or new.
  openFirst({ start = true } = {}) {
    this.opened = true;
    const stored = JSON.parse(sessionStorage.getItem(TABS_KEY) || '[]');
    for (const { proc, name } of stored) this.add({ plan: { attach: proc }, keep: true, name });
    if (!stored.length && start) {
      this.add({ plan: { start: this.shell(), adopt: true }, keep: this.keepChosen(), name: this.nextName() });
    }
    const active = Number(sessionStorage.getItem(ACTIVE_KEY));
    this.activate(this.sessions.find((session) => session.proc === active) || this.sessions.at(-1));
  }

  newTerminal() {
    let argv;
    try {
      argv = this.shell();
    } catch (error) {
      this.report(`terminal command: ${error.message}`, true);
      return;
    }
    this.activate(this.add({ plan: { start: argv }, keep: this.keepChosen(), name: this.nextName() }));
  }

  // Open session `proc` here: its tab when it has one, else a new tab attached to it.
  open(proc) {
    if (!this.opened) this.openFirst({ start: false });
    let session = this.sessions.find((candidate) => candidate.proc === proc);
    if (!session) {
      const info = this.kept.find((candidate) => candidate.proc === proc) || this.app.infoOf(proc) || {};
      session = this.add({ plan: { attach: proc }, keep: info.on_disconnect !== 'kill', name: info.name || null });
      session.info = info;
    }
    this.app.showView('terminal');
    this.activate(session);
  }

  // The process of a share link (`shared`: the hello's identity.share), once: a reconnect follows it on.
  openShared({ proc, mode }) {
    this.opened = true;
    if (this.has(proc)) return;
    this.activate(this.add({ plan: { attach: proc }, keep: true, name: `shared proc ${proc}`, mode }));
  }

  add({ plan, keep, name, mode = null }) {
    const pane = document.createElement('div');
    pane.className = 'term-pane';
    pane.hidden = true;
    $('terminals').append(pane);
    const session = new TerminalSession(this, { pane, plan, keep, name, mode, onChange: () => this.changed() });
    this.sessions.push(session);
    if (this.app.link.up) this.app.refreshList().then(() => session.up());
    this.changed();
    return session;
  }

  async close(session) {
    const index = this.sessions.indexOf(session);
    this.sessions.splice(index, 1);
    if (this.active === session) this.active = null;
    await session.close();
    const next = this.sessions[Math.min(index, this.sessions.length - 1)];
    if (next) this.activate(next);
    this.changed();
    this.app.refreshList();
  }

  activate(session) {
    if (!session) return;
    this.active = session;
    for (const other of this.sessions) other.pane.hidden = other !== session;
    if (session.proc !== null) sessionStorage.setItem(ACTIVE_KEY, String(session.proc));
    this.changed();
    requestAnimationFrame(() => session.focus());
  }

  // -- what the sessions need from the page (TerminalSession's `app`) ---------------------------

  get link() {
    return this.app.link;
  }

  listChanged() {
    this.app.listChanged();
  }

  // A console session that nobody is attached to: opened instead of starting another shell.
  adoptable() {
    const free = this.kept.filter((info) => info.state === 'running' && info.attached === 0 &&
      String(info.name || '').startsWith(NAME_PREFIX) && !this.has(info.proc));
    return free.sort((a, b) => b.started_at - a.started_at)[0] || null;
  }

  shell() {
    return splitArgs($('shell').value || 'bash');
  }

  keepChosen() {
    return $('terminal-keep').value === 'keep';
  }

  nextName() {
    const names = [...this.kept.map((info) => info.name), ...this.sessions.map((session) => session.name)];
    const numbers = names.map((name) => Number((/^console (\d+)$/.exec(name || '') || [])[1] || 0));
    return `${NAME_PREFIX} ${Math.max(0, ...numbers) + 1}`;
  }

  // -- the connection --------------------------------------------------------------------

  up() {
    for (const session of this.sessions) session.up();
  }

  down() {
    this.changed();
  }

  // The same proc with another pid is another process (the server was restarted).
  listed(processes) {
    this.kept = processes.filter((info) => info.pty && info.on_disconnect === 'keep');
    for (const session of this.sessions) {
      const info = processes.find((candidate) => candidate.proc === session.proc);
      if (!info || session.state === 'gone') continue;
      if (session.info && session.info.pid && session.info.pid !== info.pid) {
        session.gone(`proc ${session.proc} is no longer known to the server`);
      } else {
        session.info = info;
      }
    }
    this.renderSessions();
  }

  // -- drawing -------------------------------------------------------------------------------

  changed() {
    const stored = this.sessions.filter((session) => session.keep && session.proc !== null && !session.exit && !session.mode);
    if (!this.app.sharing) sessionStorage.setItem(TABS_KEY, JSON.stringify(stored.map(({ proc, name }) => ({ proc, name }))));
    this.renderTabs();
    this.renderStatus();
    this.renderSessions();
  }

  renderTabs() {
    const bar = $('term-tabs');
    bar.textContent = '';
    this.sessions.forEach((session, index) => {
      const tab = document.createElement('div');
      tab.className = `term-tab state-${session.exit ? 'exited' : session.state}`;
      tab.classList.toggle('active', session === this.active);
      if (session.proc !== null) tab.dataset.proc = session.proc;
      const label = button(session.name || `terminal ${index + 1}`, () => this.activate(session), { cls: 'term-label', name: 'show' });
      label.setAttribute('role', 'tab');
      label.setAttribute('aria-selected', String(session === this.active));
      label.title = session.statusText();
      const close = button('×', () => this.close(session), {
        cls: 'term-close', name: 'close', title: session.keep ? 'Close the tab (the session is kept)' : 'Close the tab and end the session',
      });
      tab.append(label, close);
      bar.append(tab);
    });
  }

  renderStatus() {
    const session = this.active;
    $('terminal-status').textContent = session ? session.statusText() : 'No terminal: + opens one.';
    const live = Boolean(session && session.live);
    $('end-terminal').disabled = !live;
    $('share-terminal').disabled = !live;
    $('upload').disabled = !live;
    $('download').disabled = !live;
    $('download-go').disabled = !live;
  }

  renderSessions() {
    const body = $('sessions').tBodies[0];
    body.textContent = '';
    for (const info of this.kept) {
      const row = body.insertRow();
      row.dataset.proc = info.proc;
      row.classList.toggle('here', this.has(info.proc));
      const part = (cls, text) => {
        const span = document.createElement('span');
        span.className = cls;
        span.textContent = text;
        return span;
      };
      row.insertCell().append(part('name', info.name || `proc ${info.proc}`), part('command', commandOf(info)));
      const state = info.exit ? describeExit(info.exit) : `running · ${info.attached} attached`;
      row.insertCell().append(part('state', state), part('age', age(info.started_at)));
      row.insertCell().append(...this.sessionActions(info));
    }
    if (!this.kept.length) {
      const cell = body.insertRow().insertCell();
      cell.colSpan = 3;
      cell.className = 'hint';
      cell.textContent = this.app.link.up ? 'No kept sessions.' : 'Not connected.';
    }
  }

  sessionActions(info) {
    const up = this.app.link.up;
    const failed = (what) => (error) => this.report(`${what}: ${error.message}`, true);
    const actions = [button(this.has(info.proc) ? 'Show' : 'Open', () => this.open(info.proc), { name: 'open', disabled: !up })];
    if (info.state === 'running') {
      actions.push(button('End', () => this.app.link.call('kill', { proc: info.proc }).catch(failed('end')), { cls: 'danger', name: 'end', disabled: !up }));
    } else {
      const release = () => this.app.link.call('release', { proc: info.proc }).then(() => this.app.refreshList(), failed('forget'));
      actions.push(button('Forget', release, { name: 'forget', disabled: !up }));
    }
    return actions;
  }

  report(text, isError = false) {
    const status = $('transfer-status');
    status.textContent = text;
    status.className = isError ? 'error' : 'hint';
  }

  // -- files --------------------------------------------------------------------------------

  async uploadChosen() {
    const session = this.active;
    const files = [...$('upload-file').files];
    $('upload-file').value = '';
    for (const file of files) {
      try {
        const done = await this.transfers.upload(session, file, (sent, total) => this.report(`uploading ${file.name}: ${sent} of ${total} bytes`));
        this.report(`uploaded ${done.path} (${done.bytes} bytes)`);
      } catch (error) {
        this.report(`upload of ${file.name} failed: ${error.message}`, true);
      }
    }
    session.focus();
  }

  async downloadPath() {
    const session = this.active;
    const path = $('download-path').value.trim();
    if (!path) return;
    try {
      const done = await this.transfers.download(session, path, (received) => this.report(`downloading ${path}: ${received} bytes`));
      this.report(`downloaded ${done.path} (${done.bytes} bytes)`);
      $('download-form').hidden = true;
    } catch (error) {
      this.report(`download of ${path} failed: ${error.message}`, true);
    }
    session.focus();
  }

  text(index) {
    const session = index === undefined ? this.active : this.sessions[index];
    return session ? session.text() : '';
  }
}
