// Drives one procwire.js Client for tests written in Python (tests/js_client_adapter.py): JSON lines
// on stdin, one answer line per command on stdout.  It only translates: whatever a command does is
// the client's own behaviour.
//
//   {"id": 1, "op": "connect", "args": [url, token, options]}     the Client (one per bridge)
//   {"id": 2, "target": "client" | handle, "op": "run", "args": [...]}   a method, its answer
//   {"id": 3, "target": ..., "op": "get", "args": ["hello"]}          a property
//   {"id": 4, "target": handle, "op": "next", "args": [seconds]}      the next chunk of the output
//   -> {"id": 2, "result": value} or {"id": 2, "error": {"class", "message", "fields"}}
//
// Values: bytes are {"$bytes": base64}; a Process is {"$process": handle, "proc", "pid"}; an error
// as a value is {"$error": ...}.  Stdin's end closes the client and ends the bridge.

import { createInterface } from 'node:readline';
import WebSocket from 'ws';

import { Client, Process, base64ToBytes, bytesToBase64, within } from '../procwire.js';

let client = null;
const processes = []; // handle -> Process
const iterators = new Map(); // Process -> {iterator, pending: the next() a timeout left unanswered}

function encodeError(error) {
  const fields = {};
  for (const [key, value] of Object.entries(error)) fields[key] = encode(value);
  return { class: error.name, message: error.message, fields };
}

function encode(value) {
  if (value instanceof Uint8Array) return { $bytes: bytesToBase64(value) };
  if (value instanceof Process) {
    if (!processes.includes(value)) processes.push(value);
    return { $process: processes.indexOf(value), proc: value.proc, pid: value.pid };
  }
  if (value instanceof Error) return { $error: encodeError(value) };
  if (Array.isArray(value)) return value.map(encode);
  if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, encode(item)]));
  return value ?? null;
}

function decode(value) {
  if (Array.isArray(value)) return value.map(decode);
  if (value && typeof value === 'object') {
    if ('$bytes' in value) return base64ToBytes(value.$bytes);
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, decode(item)]));
  }
  return value;
}

// One chunk of `process`'s output, or null at its end; a next() outlived by `seconds` is kept for
// the following command, so that no chunk is lost to a timeout.
async function next(process, seconds) {
  if (!iterators.has(process)) iterators.set(process, { iterator: process[Symbol.asyncIterator](), pending: null });
  const state = iterators.get(process);
  state.pending ??= state.iterator.next();
  const { done, value } = await within(state.pending, seconds, `process ${process.proc} did not finish its output within ${seconds} s`);
  state.pending = null;
  return done ? null : value;
}

async function perform({ op, target, args }) {
  if (op === 'connect') {
    const [url, token, options] = args;
    client = await Client.connect(url, token, { WebSocket, auth: 'header', ...options });
    return client.hello;
  }
  const object = target === 'client' ? client : processes[target];
  if (op === 'get') return object[args[0]];
  if (op === 'next') return next(object, args[0]);
  return object[op](...decode(args));
}

function answer(message) {
  process.stdout.write(`${JSON.stringify(message)}\n`);
}

const lines = createInterface({ input: process.stdin });
lines.on('line', (line) => {
  const command = JSON.parse(line);
  perform(command).then(
    (result) => answer({ id: command.id, result: encode(result) }),
    (error) => answer({ id: command.id, error: encodeError(error) }),
  );
});
lines.on('close', () => {
  if (client) client.close();
  process.exit(0);
});
