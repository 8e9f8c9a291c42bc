// The Recordings view: this token's session recordings (GET api/recordings; an admin's: everybody's),
// a terminal's played with asciinema-player (vendor/asciinema-player.js, from node_modules), the
// lines of pipes shown as text.  The files are fetched with the token, never through a plain link.

import { $, button } from './util.js';

export class RecordingsView {
  constructor(app) {
    this.app = app;
    this.player = null;
    this.last = [];
    $('recordings-refresh').addEventListener('click', () => this.refresh());
  }

  async api(path) {
    const response = await fetch(new URL(path, location.href), {
      headers: { Authorization: 'Bearer ' + this.app.link.token },
      cache: 'no-store',
    });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      throw new Error(body.error || `HTTP ${response.status}`);
    }
    return response;
  }

  async refresh() {
    const note = $('recordings-note');
    try {
      const answer = await (await this.api('api/recordings')).json();
      this.last = answer.recordings;
      note.textContent = answer.partial ? 'Some nodes of the cluster did not answer: the list is partial.' : '';
      note.className = answer.partial ? 'error' : 'hint';
    } catch (error) {
      note.textContent = `recordings: ${error.message}`;
      note.className = 'error';
    }
    this.render();
  }

  render() {
    const body = $('recordings').tBodies[0];
    body.textContent = '';
    for (const meta of [...this.last].reverse()) {
      const row = body.insertRow();
      row.dataset.recording = meta.id;
      const started = new Date(meta.started_at * 1000);
      for (const text of [meta.proc, meta.owner, meta.command, meta.format, meta.state, meta.bytes, started.toLocaleString()]) {
        row.insertCell().textContent = String(text ?? '');
      }
      row.cells[2].className = 'command';
      row.cells[2].title = meta.id;
      row.insertCell().append(button('Play', () => this.play(meta)));
    }
    if (this.last.length === 0) {
      const cell = body.insertRow().insertCell();
      cell.colSpan = 8;
      cell.className = 'hint';
      cell.textContent = 'No recordings.';
    }
  }

  async play(meta) {
    const stage = $('recording-player');
    const title = $('recording-title');
    if (this.player) this.player.dispose();
    this.player = null;
    stage.textContent = '';
    title.textContent = `${meta.command} · ${meta.id}`;
    let text;
    try {
      text = await (await this.api(`api/recordings/${encodeURIComponent(meta.id)}`)).text();
    } catch (error) {
      title.textContent = `${meta.id}: ${error.message}`;
      return;
    }
    if (meta.format === 'asciicast') {
      this.player = window.AsciinemaPlayer.create({ data: text }, stage, { autoPlay: true, fit: 'width' });
    } else {
      stage.append(pipesTranscript(text));
    }
  }
}

// Pipes: each chunk's text after its time and stream, in the order written.
function pipesTranscript(text) {
  const pre = document.createElement('pre');
  pre.className = 'output recording-lines';
  const lines = text.split('\n').filter(Boolean).slice(1).map((line) => JSON.parse(line));
  for (const event of lines) {
    const span = document.createElement('span');
    if (event.exit) span.textContent = `[${event.time.toFixed(3)}] exit ${JSON.stringify(event.exit.code ?? event.exit.signal)}\n`;
    else if (event.eof) span.textContent = `[${event.time.toFixed(3)}] ${event.stream}: end of file\n`;
    else span.textContent = `[${event.time.toFixed(3)}] ${event.stream}: ${event.encoding === 'base64' ? atob(event.data) : event.data}`;
    if (event.stream === 'stderr') span.className = 'stderr';
    pre.append(span);
  }
  return pre;
}
