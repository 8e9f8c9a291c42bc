// procwire's web console: the JSON-RPC protocol of /ws (docs/protocol.md), spoken from the browser.
// This module logs in (a token, a one-time code from the address bar, an auth proxy's sign-in, or
// a share link: then the page is one shared terminal and nothing else), keeps the link's state on
// screen and switches views; each part follows its own processes through the client.

import { Link } from './link.js';
import { ProcessesView } from './processes.js';
import { RecordingsView } from './recordings.js';
import { RunView } from './run.js';
import { ShareDialog, shareTokenOf, showShareBanner } from './share.js';
import { Terminals } from './terminals.js';
import { $, splitArgs } from './util.js';

const TOKEN_KEY = 'procwire.token';
const VIEW_KEY = 'procwire.view';
const SHARE_KEY = 'procwire.share'; // a share link's token, while this tab uses one
const VIEWS = ['run', 'processes', 'terminal', 'recordings'];

let token = sessionStorage.getItem(TOKEN_KEY);
let retryAt = null;
let countdown = null;
let messageTimer = null;

const app = {
  link: null,
  sharing: false, // opened with a share link: one process, no list, no other views
  refreshList: () => app.processes.refresh(),
  listChanged: () => app.processes.schedule(),
  listed(processes) {
    app.run.listed(processes);
    app.terminals.listed(processes);
  },
  infoOf: (proc) => (app.processes.last ? app.processes.last.processes.find((info) => info.proc === proc) : null),
  showView,
  message,
};

// -- the link's state on screen ---------------------------------------------------------------

// "offline" from the first lost or refused connection until a connection is up again: attempts
// in between (which may hang on an unresponsive server) do not hide it.
let offline = false;

function setState({ state, why, hello }) {
  const status = $('status');
  clearInterval(countdown);
  if (state === 'up') offline = false;
  if (state === 'down') offline = true;
  status.className = `status ${offline ? 'down' : state}`;
  $('offline').hidden = !offline;
  if (state === 'up') {
    status.textContent = 'connected';
    status.title = `${hello.server} ${hello.version} · client ${hello.client_id} · ${hello.identity ? hello.identity.name : ''}`;
  } else if (!offline) {
    status.textContent = 'connecting…';
  } else {
    status.textContent = 'offline';
    if (why) {
      status.title = why;
      $('offline-why').textContent = why;
    }
    if (state === 'down') countdown = setInterval(showCountdown, 250);
    showCountdown(state === 'connecting');
  }
}

function showCountdown(now = false) {
  const seconds = now ? 0 : Math.max(0, Math.ceil((retryAt - Date.now()) / 1000));
  $('offline-retry').textContent = seconds ? `Reconnecting in ${seconds} s.` : 'Reconnecting…';
}

function message(text, isError = false) {
  const box = $('message');
  box.textContent = text;
  box.className = isError ? 'error' : '';
  clearTimeout(messageTimer);
  messageTimer = setTimeout(() => {
    box.textContent = '';
  }, isError ? 10000 : 4000);
}

// -- the connection -------------------------------------------------------------------------

function onNotification(method, params) {
  if (method === 'exit') app.processes.schedule();
  if (method === 'recording') message(`process ${params.proc}: ${params.error}`, true);
}

async function onUp(hello) {
  if (app.sharing) {
    const shared = hello.identity && hello.identity.share;
    if (!shared) {
      message('This link opened no shared process.', true);
      return;
    }
    showShareBanner(shared);
    app.terminals.openShared(shared);
    app.terminals.up();
    return;
  }
  await app.processes.refresh(); // the list first: a terminal may adopt a session from it
  app.run.up();
  app.terminals.up();
}

function onDown() {
  app.run.down();
  app.terminals.down();
  app.processes.render();
}

// -- views ----------------------------------------------------------------------------------------

function showView(name) {
  const view = VIEWS.includes(name) ? name : 'run';
  sessionStorage.setItem(VIEW_KEY, view);
  for (const section of document.querySelectorAll('.view')) section.classList.toggle('active', section.id === `view-${view}`);
  for (const tab of document.querySelectorAll('.tab')) tab.classList.toggle('active', tab.dataset.view === view);
  $('message').textContent = '';
  if (view === 'terminal') app.terminals.shown();
  else app.terminals.hidden();
  if (view === 'processes') app.processes.refresh();
  if (view === 'recordings') app.recordings.refresh();
}

// -- logging in and out -----------------------------------------------------------------------

function logIn(event) {
  event.preventDefault();
  const value = $('token').value.trim();
  if (!value) return;
  $('token').value = '';
  const shared = shareTokenOf(value);
  if (shared) beginShared(shared);
  else begin(value);
}

// A share link: the one process it reaches, in the Terminal view, with nothing else on the page.
function beginShared(value) {
  app.sharing = true;
  sessionStorage.setItem(SHARE_KEY, value);
  document.body.classList.add('shared');
  $('login').hidden = true;
  $('app').hidden = false;
  $('login-error').textContent = '';
  showView('terminal');
  app.link.logIn(value, { share: true });
}

// `value` null: signed in by an auth proxy in front, no token to keep.
function begin(value) {
  token = value;
  if (token !== null) sessionStorage.setItem(TOKEN_KEY, token);
  $('login').hidden = true;
  $('app').hidden = false;
  $('login-error').textContent = '';
  showView(sessionStorage.getItem(VIEW_KEY) || 'run');
  app.link.logIn(token);
}

function logOut(reason = '') {
  app.link.logOut();
  token = null;
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(SHARE_KEY);
  app.sharing = false;
  document.body.classList.remove('shared');
  $('share-banner').hidden = true;
  $('app').hidden = true;
  $('login').hidden = false;
  $('login-error').textContent = reason;
  $('token').focus();
}

// Take `name` out of the address bar and its history (a secret: it stays in this tab only).
function unlist(name) {
  const url = new URL(location.href);
  url.searchParams.delete(name);
  history.replaceState(history.state, '', url.href);
}

// `?code=` in the address: a one-time way in (`make run` prints it), traded for the token
// once, then removed from the address bar and its history.
async function redeem(code) {
  unlist('code');
  try {
    const response = await fetch(new URL('console/redeem', location.href), {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ code }),
      cache: 'no-store',
    });
    const body = await response.json().catch(() => ({}));
    if (response.ok && body.token) return body.token;
    $('login-error').textContent = body.error || `The one-time link was refused (HTTP ${response.status}).`;
  } catch (error) {
    $('login-error').textContent = `The one-time link could not be used: ${error.message}`;
  }
  return null;
}

// Behind an auth proxy that signed the user in (docs/security.md, "Single sign-on") the server
// knows who this is without a token: ask before asking for one.
async function signedInByProxy() {
  try {
    const response = await fetch(new URL('api/whoami', location.href), {
      cache: 'no-store',
      signal: AbortSignal.timeout(5000),
    });
    return response.ok;
  } catch {
    return false;
  }
}

async function init() {
  app.link = new Link({
    onState: (state) => {
      if (state.retryAt) retryAt = state.retryAt;
      setState(state);
    },
    onUp,
    onDown,
    onNotification,
    onUnauthorized: () => logOut(app.sharing
      ? 'The server refused this share link: it expired, was revoked, or was for one use and used.'
      : 'The server refused this token.'),
    onStrayError: (error) => message(`server: ${error.message}`, true),
  });
  app.run = new RunView(app);
  app.processes = new ProcessesView(app);
  app.terminals = new Terminals(app);
  app.share = new ShareDialog(app);
  app.recordings = new RecordingsView(app);
  $('login-form').addEventListener('submit', logIn);
  $('logout').addEventListener('click', () => {
    sessionStorage.clear(); // the token and what the page showed: nothing is restored for the next login
    location.reload();
  });
  $('offline-now').addEventListener('click', () => app.link.retryNow());
  for (const tab of document.querySelectorAll('.tab')) tab.addEventListener('click', () => showView(tab.dataset.view));
  const query = new URLSearchParams(location.search);
  const linked = query.get('share');
  if (linked) unlist('share');
  const code = query.get('code');
  if (code) token = (await redeem(code)) || token;
  const shared = linked || sessionStorage.getItem(SHARE_KEY);
  if (shared) beginShared(shared);
  else if (token) begin(token);
  else if (await signedInByProxy()) begin(null);
  else {
    $('login').hidden = false;
    $('token').focus();
  }
}

// For tests and the curious (read-only): what the terminals hold, as text.
window.procwireConsole = {
  get terminal() {
    return app.terminals.active ? app.terminals.active.term : null;
  },
  get terminalProc() {
    return app.terminals.active ? app.terminals.active.proc : null;
  },
  get terminals() {
    return app.terminals.sessions.map(({ proc, name, state, keep }) => ({ proc, name, state, keep }));
  },
  get clientId() {
    return app.link.hello ? app.link.hello.client_id : null;
  },
  get readOnly() {
    return app.terminals.active ? app.terminals.active.readOnly : null;
  },
  terminalText: (index) => app.terminals.text(index),
  splitArgs,
};

init();
