// What the tests share: the server under test (PROCWIRE_URL, PROCWIRE_TOKEN, PROCWIRE_HTTP, set by
// tests/test_js_client.py, which starts it), a connected client, and byte helpers.

import WebSocket from 'ws';
import { Client } from '../procwire.js';

function required(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run these tests through tests/test_js_client.py, which starts a server`);
  return value;
}

export const URL_ = required('PROCWIRE_URL');
export const TOKEN = required('PROCWIRE_TOKEN');
export const HTTP = required('PROCWIRE_HTTP');

/** A client connected to the server under test; closed when the test `t` ends. */
export async function connect(t, options = {}) {
  const client = await Client.connect(URL_, TOKEN, { WebSocket, ...options });
  t.after(() => client.close());
  return client;
}

/** Every chunk of `process` until its exit, per stream (a screen too), its offsets checked contiguous. */
export async function collect(process) {
  const bytes = { stdout: [], stderr: [], screen: [] };
  const next = { stdout: null, stderr: null, screen: null };
  for await (const { stream, data, offset } of process) {
    if (next[stream] !== null && offset !== next[stream]) throw new Error(`${stream}: offset ${offset}, expected ${next[stream]}`);
    if (stream !== 'screen') next[stream] = offset + data.length;
    bytes[stream].push(data);
  }
  return { stdout: concat(bytes.stdout), stderr: concat(bytes.stderr), screen: concat(bytes.screen) };
}

export function concat(chunks) {
  return Buffer.concat(chunks.map((chunk) => Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length)));
}

/** Cut connection `clientId` from the server's side (DELETE /api/clients/<id>, an admin's call). */
export async function cut(clientId) {
  const response = await fetch(`${HTTP}/api/clients/${clientId}`, {
    method: 'DELETE',
    headers: { Authorization: `Bearer ${TOKEN}` },
  });
  if (response.status !== 200) throw new Error(`DELETE /api/clients/${clientId}: HTTP ${response.status}`);
}

/** Resolves once `condition()` holds; polls every 20 ms for at most `ms`. */
export async function until(condition, ms = 10000) {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
