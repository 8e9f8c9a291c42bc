// What the Run view shows of a process: its output as received (records with their stream and
// arrival time, plus the raw bytes for downloads), drawn either as stdout and stderr side by side
// or as one interleaved transcript with timestamps.

import { AnsiRenderer, stripAnsi } from './ansi.js';
import { clockTime, saveFile } from './util.js';

const MAX_TEXT = 1 << 20; // characters per stream kept for the page, per process
const MAX_RAW = 8 << 20; // bytes per stream kept for downloads, per process

/** One process's output, in the page. */
export class OutputLog {
  constructor(proc) {
    this.proc = proc;
    this.records = [];
    this.chars = { stdout: 0, stderr: 0 };
    this.raw = { stdout: [], stderr: [] };
    this.rawBytes = { stdout: 0, stderr: 0 };
    this.rawTrimmed = { stdout: false, stderr: false };
  }

  // A record: {stream, text, time, note}; `note` marks the page's own remarks (gaps, replays).
  add(record, bytes = null) {
    this.records.push(record);
    this.chars[record.stream] += record.text.length;
    if (bytes) this.keepRaw(record.stream, bytes);
    if (this.chars[record.stream] <= MAX_TEXT) return false;
    this.trim(record.stream);
    return true;
  }

  keepRaw(stream, bytes) {
    this.raw[stream].push(bytes.slice());
    this.rawBytes[stream] += bytes.length;
    while (this.rawBytes[stream] > MAX_RAW) {
      this.rawBytes[stream] -= this.raw[stream].shift().length;
      this.rawTrimmed[stream] = true;
    }
  }

  trim(stream) {
    let drop = this.chars[stream] - MAX_TEXT / 2;
    this.records = this.records.filter((record) => {
      if (record.stream !== stream || drop <= 0) return true;
      drop -= record.text.length;
      this.chars[stream] -= record.text.length;
      return false;
    });
    this.records.unshift({ stream, text: '[… earlier output dropped by the page …]\n', time: new Date(), note: true });
  }

  // The transcript of both streams in arrival order, timestamped, without escape sequences.
  transcript() {
    const lines = [];
    const open = { stdout: false, stderr: false };
    for (const record of this.records) {
      const parts = stripAnsi(record.text).split('\n');
      parts.forEach((part, i) => {
        const last = i === parts.length - 1;
        if (last && part === '') return;
        if (open[record.stream] && i === 0) lines[lines.length - 1] += part;
        else lines.push(`${clockTime(record.time)} ${record.stream === 'stderr' ? 'err' : 'out'} ${part}`);
        open[record.stream] = last;
      });
    }
    return lines.join('\n') + (lines.length ? '\n' : '');
  }
}

/** The panes of the Run view. */
export class OutputView {
  constructor({ stdout, stderr, combined, onChange }) {
    this.panes = { stdout, stderr };
    this.combined = combined;
    this.onChange = onChange;
    this.mode = 'apart';
    this.log = null;
    this.reset();
  }

  reset() {
    for (const pane of [...Object.values(this.panes), this.combined]) pane.textContent = '';
    this.renderers = {
      stdout: new AnsiRenderer(this.panes.stdout),
      stderr: new AnsiRenderer(this.panes.stderr),
    };
    this.openLine = null; // {stream, content}: the interleaved line a stream's next text continues
  }

  setMode(mode) {
    this.mode = mode;
    this.show(this.log);
  }

  // Draw `log` (or nothing) from scratch.
  show(log) {
    this.log = log;
    this.reset();
    if (log) for (const record of log.records) this.draw(record);
    for (const pane of this.visiblePanes()) pane.scrollTop = pane.scrollHeight;
    this.onChange();
  }

  visiblePanes() {
    return this.mode === 'apart' ? Object.values(this.panes) : [this.combined];
  }

  // A new record of `log`: drawn at once when it is the log shown (redrawn after a trim).
  append(log, record, trimmed) {
    if (log !== this.log) return;
    if (trimmed) {
      this.show(log);
      return;
    }
    const panes = this.visiblePanes();
    const atBottom = panes.map((pane) => pane.scrollTop + pane.clientHeight >= pane.scrollHeight - 4);
    this.draw(record);
    panes.forEach((pane, i) => {
      if (atBottom[i]) pane.scrollTop = pane.scrollHeight;
    });
    this.onChange();
  }

  draw(record) {
    if (this.mode === 'apart') this.drawApart(record);
    else this.drawInterleaved(record);
  }

  drawApart(record) {
    if (record.note) {
      const note = document.createElement('span');
      note.className = 'note';
      note.textContent = record.text;
      this.panes[record.stream].append(note);
    } else {
      this.renderers[record.stream].write(record.text);
    }
  }

  drawInterleaved(record) {
    const parts = record.text.split('\n');
    parts.forEach((part, i) => {
      const last = i === parts.length - 1;
      if (last && part === '') {
        if (this.openLine && this.openLine.stream === record.stream) this.openLine = null;
        return;
      }
      const continues = i === 0 && this.openLine && this.openLine.stream === record.stream;
      const content = continues ? this.openLine.content : this.newLine(record);
      if (record.note) content.append(part);
      else {
        this.renderers[record.stream].target = content;
        this.renderers[record.stream].write(part);
      }
      this.openLine = last ? { stream: record.stream, content } : null;
    });
  }

  newLine(record) {
    const line = document.createElement('div');
    line.className = `line ${record.stream}${record.note ? ' note' : ''}`;
    const time = document.createElement('span');
    time.className = 'time';
    time.textContent = `${clockTime(record.time)} `;
    if (record.replayed) time.title = 'received when the page attached: the server keeps no output times';
    const stream = document.createElement('span');
    stream.className = 'stream';
    stream.textContent = record.stream === 'stderr' ? 'err ' : 'out ';
    const content = document.createElement('span');
    content.className = 'text';
    line.append(time, stream, content);
    this.combined.append(line);
    return content;
  }

  // Save what is shown: a stream's exact bytes, or the timestamped transcript.
  download(what) {
    const log = this.log;
    if (!log) return;
    if (what === 'transcript') {
      saveFile(`proc-${log.proc}.log`, [log.transcript()], 'text/plain');
      return;
    }
    const tail = log.rawTrimmed[what] ? '-tail' : ''; // the page kept only the last MAX_RAW bytes
    saveFile(`proc-${log.proc}${tail}.${what}`, log.raw[what]);
  }
}
