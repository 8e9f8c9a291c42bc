// Files into and out of a terminal session, through processes the page starts: the server's
// policy for this token decides what may run and where, as for anything else.  Both run in the
// session's current directory (read from /proc/<pid>/cwd when the session runs on this server's
// host; else in the directory it was started in), and move the exact bytes (base64 on the wire).

import { ConnectionError, bytesToBase64, follow } from './link.js';
import { describeExit, saveFile } from './util.js';

const IN_SESSION_DIR = 'd=$(readlink "/proc/$1/cwd" 2>/dev/null) && cd -- "$d";';
const UPLOAD = `${IN_SESSION_DIR} cat > "$2" && pwd`;
const DOWNLOAD = `${IN_SESSION_DIR} exec cat -- "$2"`;
const CHUNK = 48 * 1024; // bytes per write: well under MAX_STDIN_CHUNK's default (512 KiB)
const WINDOW = 4; // writes in flight: the answers pace the upload to what the process reads

export function baseName(path) {
  return path.replace(/\/+$/, '').split('/').pop() || 'download';
}

// A node is `<hostname>:<port or socket>:<worker pid>`: /proc is shared by the nodes of a host.
function hostOf(node) {
  return String(node).split(':')[0];
}

export class Transfers {
  constructor(app) {
    this.app = app;
  }

  // Start `script` for `session` with `target` as $2; the process's output is collected.  The
  // process is not kept: a lost connection ends it, and `done` rejects with the client's reason.
  async begin(session, script, target, params, onStdout = () => {}) {
    const { link } = this.app;
    const info = session.info || {};
    const here = info.node && link.hello && hostOf(info.node) === hostOf(link.hello.node);
    const argv = ['sh', '-c', script, 'sh', here ? String(info.pid) : '', target];
    const process = await link.start(argv, info.cwd ? { ...params, cwd: info.cwd } : params);
    const collected = { stdout: [], stderr: [], size: 0 };
    const done = new Promise((resolve, reject) => {
      follow(process, {
        output: ({ stream, data }) => {
          collected[stream].push(data);
          if (stream === 'stdout') onStdout((collected.size += data.length));
        },
        exit: (status) => {
          link.call('release', { proc: process.proc }).catch(() => {});
          resolve({ status, ...collected });
        },
        lost: reject,
      });
    });
    done.catch(() => {}); // awaited by the caller, perhaps only after its writes
    return { proc: process.proc, done };
  }

  async upload(session, file, onProgress) {
    const { link } = this.app;
    const { proc, done } = await this.begin(session, UPLOAD, file.name, {});
    const inFlight = [];
    const chunk = Math.min(CHUNK, link.hello.limits?.max_stdin_chunk || CHUNK);
    let sent = 0;
    try {
      for (let at = 0; at < file.size; at += chunk) {
        const bytes = new Uint8Array(await file.slice(at, at + chunk).arrayBuffer());
        const write = link.call('write', { proc, data: bytesToBase64(bytes), encoding: 'base64' })
          .then(() => onProgress((sent += bytes.length), file.size));
        write.catch(() => {}); // awaited below; a refusal is reported by the process's exit
        inFlight.push(write);
        if (inFlight.length >= WINDOW) await inFlight.shift();
      }
      await Promise.all(inFlight);
      await link.call('close_stdin', { proc });
    } catch (error) {
      if (error instanceof ConnectionError) throw error;
      // Refused input: the process has ended, and its exit says why.
    } finally {
      await Promise.allSettled(inFlight);
    }
    const { status, stdout, stderr } = await done;
    if (status.code !== 0) throw new Error(failure(status, stderr));
    const directory = new TextDecoder().decode(concat(stdout)).trim();
    return { path: `${directory.replace(/\/$/, '')}/${file.name}`, bytes: file.size };
  }

  async download(session, path, onProgress) {
    const { done } = await this.begin(session, DOWNLOAD, path, { encoding: 'base64', stdin: 'null' }, onProgress);
    const { status, stdout, stderr, size } = await done;
    if (status.code !== 0) throw new Error(failure(status, stderr));
    saveFile(baseName(path), stdout);
    return { path, bytes: size };
  }
}

function concat(chunks) {
  const total = chunks.reduce((sum, chunk) => sum + chunk.length, 0);
  const bytes = new Uint8Array(total);
  let at = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, at);
    at += chunk.length;
  }
  return bytes;
}

function failure(status, stderr) {
  const said = new TextDecoder().decode(concat(stderr)).trim();
  return said || describeExit(status);
}
