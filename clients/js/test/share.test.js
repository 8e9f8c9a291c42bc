// Sharing and the size rule through the client, against the real server: a share link's client,
// a view attachment that stays one across a reconnect, revocation, and the size a resize gets.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import WebSocket from 'ws';

import { Client, ConnectionError, PermissionDenied } from '../procwire.js';
import { connect, cut, until } from './helpers.js';

// A shell that says what it reads (it ends with its owner's connection, when the test ends).
function sharedShell(owner, options = {}) {
  return owner.start(['sh', '-c', 'while read line; do echo "got-$line"; done'], { pty: { rows: 24, cols: 80 }, ...options });
}

async function readUntil(process, needle) {
  let text = '';
  for await (const chunk of process) {
    text += Buffer.from(chunk.data).toString();
    if (text.includes(needle)) return text;
  }
  throw new Error(`${needle} never came: ${text}`);
}

async function linkClient(t, url, options = {}) {
  const client = await Client.connect(url, null, { WebSocket, ...options });
  t.after(() => client.close());
  return client;
}

test('a view link: the client it opens watches its one process, and may not touch it', async (t) => {
  const owner = await connect(t);
  const shell = await sharedShell(owner);
  const link = await shell.share({ mode: 'view', expires_in: 600 });
  assert.match(link.url, /\/ws\?share=/);
  assert.equal(link.mode, 'view');
  const viewer = await linkClient(t, link.url);
  assert.deepEqual(viewer.hello.identity.share, { id: link.id, proc: shell.proc, mode: 'view' });
  const watched = await viewer.attach(shell.proc, { snapshot: true });
  assert.equal(watched.mode, 'view');
  await shell.write('one\r');
  await readUntil(watched, 'got-one');
  await assert.rejects(watched.write('two\r'), PermissionDenied);
  await assert.rejects(watched.resize(10, 10), PermissionDenied);
  await assert.rejects(viewer.list(), PermissionDenied);

  await owner.unshare(link.id);
  await assert.rejects(watched.exit, ConnectionError); // closed by the server: 4003 share revoked
});

test('a view attachment is attached in view mode again after a reconnect', async (t) => {
  const owner = await connect(t);
  const shell = await sharedShell(owner);
  const viewer = await connect(t, { reconnect: { first: 50, max: 200, deadline: 10000 } });
  const watched = await viewer.attach(shell.proc, { mode: 'view' });
  assert.equal(watched.mode, 'view');
  const attachedBefore = watched.info;
  await cut(viewer.hello.client_id);
  await until(() => watched.info !== attachedBefore); // attached again on a new connection
  await shell.write('again\r');
  await readUntil(watched, 'got-again'); // followed on from where it was
  assert.equal(watched.info.mode, 'view');
  await assert.rejects(watched.write('no\r'), PermissionDenied);
});

test('resize answers the size the terminal took under its size rule', async (t) => {
  const owner = await connect(t);
  const shell = await sharedShell(owner, { size_rule: 'smallest' });
  const other = await connect(t);
  const attached = await other.attach(shell.proc);
  assert.deepEqual(await attached.resize(50, 60), { size: { rows: 24, cols: 60 } });
  const info = await owner.find(shell.pid);
  assert.equal(info.size_rule, 'smallest');
  assert.deepEqual(info.size, { rows: 24, cols: 60 });
  await attached.detach(); // its size stops counting: the owner's alone
  assert.deepEqual((await owner.find(shell.pid)).size, { rows: 24, cols: 80 });
});
