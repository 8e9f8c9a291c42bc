// One terminal tab: an xterm.js terminal bound to one process on a pseudo-terminal.  Keystrokes are
// never dropped: typed before the process is known or while connecting, they wait and go in order.
// A fresh attach asks for the current screen (a `screen` notification) instead of a replay of the
// whole history; across a lost connection the client follows the process on by itself.  A tab
// opened with a view share link is read-only: keys do nothing, and it takes the process's size
// instead of giving it one.

import { ConnectionError, ProcessLost, RpcError, follow } from './link.js';
import { describeExit } from './util.js';

const THEME_BACKGROUND = '#14161b';
const MAX_QUEUED = 64 * 1024; // characters typed while the process cannot take them yet
const dim = (text) => `\r\n\x1b[2m[${text}]\x1b[0m\r\n`;

export class TerminalSession {
  /**
   * `plan`: what to run once connected: {attach: proc} or {start: argv, name, adopt: bool}.
   * `keep`: the process outlives this page (on_disconnect "keep") or ends with it ("kill").
   * `mode`: a share link's ("view" or "control"), asked for when attaching; null for the owner.
   */
  constructor(app, { pane, plan, keep, name = null, mode = null, onChange }) {
    this.app = app;
    this.pane = pane;
    this.plan = plan;
    this.keep = keep;
    this.name = name;
    this.onChange = onChange;
    this.mode = mode;
    this.readOnly = mode === 'view';
    this.proc = plan.attach ?? null;
    this.info = null;
    this.state = 'connecting'; // connecting, starting, attaching, running, exited, gone, failed
    this.exit = null;
    this.process = null; // the client's Process, while this tab follows it
    this.queue = [];
    this.queued = 0;
    this.busy = false;
    this.term = this.createTerminal();
  }

  createTerminal() {
    const term = new window.Terminal({
      cursorBlink: !this.readOnly,
      disableStdin: this.readOnly,
      fontFamily: 'ui-monospace, "DejaVu Sans Mono", Menlo, monospace',
      fontSize: 14,
      scrollback: 5000,
      theme: { background: THEME_BACKGROUND },
    });
    this.fitter = new window.FitAddon.FitAddon();
    term.loadAddon(this.fitter);
    term.open(this.pane);
    term.onData((data) => this.input({ data }));
    term.onBinary((data) => this.input({ data: btoa(data), encoding: 'base64' }));
    term.onResize(({ rows, cols }) => {
      if (this.live && !this.readOnly) this.app.link.call('resize', { proc: this.proc, rows, cols }).catch(() => {});
      this.onChange(this);
    });
    new ResizeObserver(() => requestAnimationFrame(() => this.fit())).observe(this.pane);
    return term;
  }

  get live() {
    return this.proc !== null && this.state === 'running' && this.app.link.up;
  }

  get visible() {
    return !this.pane.hidden && this.pane.offsetParent !== null;
  }

  // A read-only tab keeps the process's size (from its screen): only controllers size it.
  fit() {
    if (this.visible && !this.readOnly) this.fitter.fit();
  }

  focus() {
    this.fit();
    this.term.focus();
  }

  text() {
    const buffer = this.term.buffer.active;
    const lines = [];
    for (let i = 0; i < buffer.length; i++) lines.push(buffer.getLine(i).translateToString(true));
    return lines.join('\n');
  }

  // -- keystrokes ---------------------------------------------------------------------

  input(params) {
    if (this.readOnly || ['exited', 'gone', 'failed'].includes(this.state)) return;
    if (this.queued + params.data.length > MAX_QUEUED) return;
    this.queue.push(params);
    this.queued += params.data.length;
    this.flush();
  }

  // Typed text goes out in order, one write at a time, once the process can take it.
  async flush() {
    if (this.busy) return;
    this.busy = true;
    try {
      while (this.queue.length && this.live) {
        const params = this.queue[0];
        try {
          await this.app.link.call('write', { proc: this.proc, ...params });
        } catch (error) {
          if (error instanceof ConnectionError) break; // sent again on the next connection
          this.term.write(dim(`typing failed: ${error.message}`));
        }
        this.queue.shift();
        this.queued -= params.data.length;
      }
    } finally {
      this.busy = false;
    }
  }

  // -- the process --------------------------------------------------------------------

  // Connected: run the plan (again, when the connection was lost before it was carried out).
  async up() {
    if (this.state === 'connecting') {
      if (this.proc === null) await this.open();
      else await this.attach();
    }
    this.flush();
  }

  async open() {
    const adopt = this.plan.adopt ? this.app.adoptable() : null;
    if (adopt) {
      this.proc = adopt.proc;
      this.name = adopt.name;
      await this.attach();
    } else {
      await this.start();
    }
  }

  async start() {
    this.state = 'starting';
    this.onChange(this);
    const { rows, cols } = this.term;
    const params = { pty: { rows, cols }, on_disconnect: this.keep ? 'keep' : 'kill' };
    if (this.name) params.name = this.name;
    try {
      const process = await this.app.link.start(this.plan.start, params);
      this.proc = process.proc;
      this.info = { proc: process.proc, pid: process.pid, argv: this.plan.start, cwd: null, node: null };
      this.state = 'running';
      this.follow(process);
      this.app.listChanged();
      this.flush();
    } catch (error) {
      if (error instanceof ConnectionError) {
        this.state = 'connecting'; // started again on the next connection
      } else {
        this.state = 'failed';
        this.term.write(dim(`cannot start ${this.plan.start.join(' ')}: ${error.message}`));
      }
    }
    this.onChange(this);
  }

  // Follow the process from its current screen, at this tab's size.
  async attach() {
    const { link } = this.app;
    const proc = this.proc;
    this.state = 'attaching';
    this.onChange(this);
    try {
      const { rows, cols } = this.term;
      if (!this.readOnly) {
        await link.call('resize', { proc, rows, cols }).catch((error) => {
          if (!(error instanceof RpcError && error.code === -32005)) throw error; // -32005: exited
        });
      }
      this.term.write('\x1bc'); // a full reset, in order with what is written next
      const process = await link.attach(proc, this.mode ? { snapshot: true, mode: this.mode } : { snapshot: true });
      if (this.mode && !process.info.screen) this.term.options.convertEol = true; // pipes: bare newlines
      if (process.info.exit) this.exited(process.info.exit);
      else this.state = 'running';
      this.follow(process);
      this.app.listChanged();
      this.flush();
    } catch (error) {
      if (error instanceof ConnectionError) {
        this.state = 'connecting';
      } else if (error instanceof RpcError && error.code === -32002) {
        this.gone(`cannot attach to proc ${proc}: ${error.message}`);
      } else {
        this.state = 'failed';
        this.term.write(dim(`cannot attach to proc ${proc}: ${error.message}`));
      }
    }
    this.onChange(this);
  }

  // The process's screen and output, until it exits, is detached or is lost, or the tab closes.
  follow(process) {
    this.process = process;
    const shown = () => this.process === process;
    follow(process, {
      screen: ({ data }) => {
        if (!shown()) return;
        if (this.readOnly && process.screen) this.term.resize(process.screen.cols, process.screen.rows);
        this.term.write('\x1bc'); // reset, then the screen as it is now
        this.term.write(data);
      },
      output: ({ data }, gap) => {
        if (!shown()) return;
        if (gap) this.term.write(dim(`${gap} bytes no longer held by the server`));
        this.term.write(data);
      },
      exit: (status) => {
        if (shown()) this.exited(status);
      },
      lost: (error) => {
        if (shown() && error instanceof ProcessLost) this.gone(error.message);
      },
    }).finally(() => {
      if (this.process === process) this.process = null;
    });
  }

  // The server does not know this process (any more): its id may now be another process's.
  gone(reason) {
    Object.assign(this, { state: 'gone', queue: [], queued: 0 });
    this.term.write(dim(reason));
    this.onChange(this);
  }

  exited(status) {
    if (this.exit) return;
    Object.assign(this, { exit: status, state: 'exited', queue: [], queued: 0 });
    this.term.write(dim(`process ${status.proc} ended: ${describeExit(status)}`));
    this.onChange(this);
  }

  kill() {
    if (this.proc === null || this.exit) return Promise.resolve();
    return this.app.link.call('kill', { proc: this.proc });
  }

  // Closing the tab: a kept session stays for later (detached), the other one ends now.
  async close() {
    try {
      if (this.keep && this.process) await this.process.detach();
      else if (!this.keep) await this.kill();
    } catch {
      // gone already, or offline: a kept session stays anyway, the other ends with the connection
    }
    this.process = null; // whatever the client still says of it is for no tab
    this.term.dispose();
    this.pane.remove();
  }

  statusText() {
    const size = `${this.term.rows}×${this.term.cols}`;
    let mode = this.keep ? 'kept when the tab closes' : 'ends with the tab';
    if (this.mode) mode = this.readOnly ? 'shared with you, read-only' : 'shared with you';
    if (this.proc === null) return `${this.state === 'failed' ? 'not started' : this.state + '…'} · ${size}`;
    let state = this.state;
    if (this.exit) state = `ended: ${describeExit(this.exit)}`;
    else if (!this.app.link.up && this.state !== 'gone') state = 'offline';
    return `proc ${this.proc} · ${state} · ${mode} · ${size}`;
  }
}
