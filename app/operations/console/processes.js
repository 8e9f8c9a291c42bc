// The Processes view: this token's processes from `list`, with what can be done to each.  The
// same list feeds the Run view's headers and the Terminal view's session list.  Offline, the
// table says that its states are unknown instead of showing stale "running" rows.

import { $, button, clockTime, commandOf, describeExit } from './util.js';

const COLUMNS = 11;

export class ProcessesView {
  constructor(app) {
    this.app = app;
    this.timer = null;
    this.last = null; // the last list: {processes, partial, at}
    $('refresh').addEventListener('click', () => this.refresh());
  }

  schedule(delay = 150) {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.refresh(), delay);
  }

  async refresh() {
    clearTimeout(this.timer);
    if (this.app.sharing) return; // a share link may list nothing
    const { link } = this.app;
    if (!link.up) {
      this.render();
      return;
    }
    try {
      const result = await link.call('list');
      this.last = { ...result, at: new Date() };
      $('processes-error').textContent = '';
    } catch (error) {
      if (link.up) $('processes-error').textContent = `list: ${error.message}`;
      return;
    }
    this.app.listed(this.last.processes);
    this.render();
  }

  render() {
    const body = $('processes').tBodies[0];
    body.textContent = '';
    const up = this.app.link.up;
    const note = $('processes-note');
    if (!up) note.textContent = this.last ? `Offline: states unknown since ${clockTime(this.last.at)}.` : 'Offline.';
    else if (this.last && this.last.partial) note.textContent = "The cluster is unreachable: only this worker's processes are listed.";
    else note.textContent = '';
    note.className = up && !(this.last && this.last.partial) ? 'hint' : 'error';
    $('refresh').disabled = !up;
    const processes = this.last ? this.last.processes : [];
    for (const info of processes) body.append(this.row(info, up));
    if (processes.length === 0) {
      const cell = body.insertRow().insertCell();
      cell.colSpan = COLUMNS;
      cell.className = 'hint';
      cell.textContent = up ? 'No processes yet.' : 'Not connected.';
    }
  }

  row(info, up) {
    const row = document.createElement('tr');
    row.dataset.proc = info.proc;
    const state = up || info.state !== 'running' ? info.state : 'unknown'; // an exit seen stays known
    const cells = [
      ['proc', String(info.proc)],
      ['pid', String(info.pid)],
      ['command', (info.name ? `[${info.name}] ` : '') + commandOf(info)],
      ['state', state],
      ['exit', describeExit(info.exit)],
      ['mode', info.pty ? 'pty' : 'pipes'],
      ['on-disconnect', info.on_disconnect],
      ['attached', String(info.attached)],
      ['started', new Date(info.started_at * 1000).toLocaleTimeString([], { hour12: false })],
      ['node', info.node],
    ];
    for (const [name, text] of cells) {
      const cell = row.insertCell();
      cell.className = name;
      cell.textContent = text;
    }
    row.querySelector('.state').classList.add(state);
    const actions = row.insertCell();
    actions.className = 'actions';
    actions.append(...this.actions(info));
    if (!up) for (const element of actions.querySelectorAll('button')) element.disabled = true;
    return row;
  }

  actions(info) {
    const { run, terminals, link } = this.app;
    const running = info.state === 'running';
    const buttons = [];
    if (info.pty) {
      if (running || terminals.has(info.proc)) buttons.push(button('Open', () => terminals.open(info.proc)));
    } else {
      const entry = run.entries.get(info.proc);
      const following = Boolean(entry && entry.process);
      if (following || (entry && entry.log.records.length)) buttons.push(button('Show', () => run.show(info.proc)));
      if (!following && running) buttons.push(button('Attach', () => run.attach(info.proc)));
      if (following && info.on_disconnect === 'keep') buttons.push(button('Detach', () => run.detach(info.proc)));
    }
    const failed = (what) => (error) => {
      $('processes-error').textContent = `${what}: ${error.message}`;
    };
    if (running) {
      buttons.push(button('Share', () => this.app.share.open(info.proc)));
      // A process of another worker or host sends its exit only to those attached: list again.
      const killed = () => this.schedule(300);
      buttons.push(button('Kill', () => link.call('kill', { proc: info.proc }).then(killed, failed('kill')), { cls: 'danger' }));
    } else {
      buttons.push(button('Release', () => link.call('release', { proc: info.proc }).then(() => this.schedule(), failed('release'))));
    }
    return buttons;
  }
}
