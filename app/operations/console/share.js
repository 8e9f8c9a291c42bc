// Share links: the owner's Share dialog (a link to one process, to watch or to control, copied at
// once), and what the console needs to open such a link: `?share=TOKEN` in the page's address, or
// a link pasted where the token goes.  A share link reaches that one process and nothing else
// (docs/protocol.md, share).

import { $ } from './util.js';

const EXPIRIES = [
  [600, '10 minutes'],
  [3600, '1 hour'],
  [86400, '1 day'],
  [604800, '7 days'],
];

/** The share token in a pasted link (the console's `?share=`, or the server's ws:// `url`), else null. */
export function shareTokenOf(text) {
  let url;
  try {
    url = new URL(text.trim());
  } catch {
    return null; // not a link: a token
  }
  return url.searchParams.get('share');
}

/** This console's address opening the share `token` (relative to the page: a path prefix stays). */
export function consoleLink(token) {
  const url = new URL('./', location.href);
  url.searchParams.set('share', token);
  return url.href;
}

// Copy `text`; the clipboard API needs a secure context, the old way works in any page.
async function copy(text, input) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    input.select();
    return document.execCommand('copy');
  }
}

export class ShareDialog {
  constructor(app) {
    this.app = app;
    this.proc = null;
    this.made = null; // the last `share` answer
    const expiry = $('share-expires');
    for (const [seconds, text] of EXPIRIES) expiry.add(new Option(text, String(seconds), false, seconds === 3600));
    $('share-create').addEventListener('click', () => this.create());
    $('share-copy').addEventListener('click', () => this.copy());
    $('share-revoke').addEventListener('click', () => this.revoke());
    $('share-close').addEventListener('click', () => $('share-dialog').close());
  }

  open(proc) {
    this.proc = proc;
    this.made = null;
    $('share-proc').textContent = String(proc);
    $('share-result').hidden = true;
    $('share-error').textContent = '';
    $('share-create').disabled = false;
    $('share-dialog').showModal();
  }

  async create() {
    const params = {
      proc: this.proc,
      mode: $('share-mode').value,
      expires_in: Number($('share-expires').value),
      single_use: $('share-single').checked,
    };
    $('share-create').disabled = true;
    $('share-error').textContent = '';
    try {
      this.made = await this.app.link.call('share', params);
    } catch (error) {
      $('share-error').textContent = `share: ${error.message}`;
      $('share-create').disabled = false;
      return;
    }
    const { token, url, mode, expires_at: expiresAt } = this.made;
    $('share-link').value = consoleLink(token);
    $('share-cli').value = url;
    const until = new Date(expiresAt * 1000).toLocaleString([], { hour12: false });
    const what = mode === 'view' ? 'watch (read-only)' : 'type into and control';
    $('share-expiry').textContent = `Anyone with this link can ${what} proc ${this.proc} until ${until}${params.single_use ? ', once' : ''}.`;
    $('share-result').hidden = false;
    $('share-create').disabled = false;
    await this.copy();
  }

  async copy() {
    const copied = await copy($('share-link').value, $('share-link'));
    $('share-copied').textContent = copied ? 'Link copied.' : 'Select the link and copy it.';
  }

  async revoke() {
    if (!this.made) return;
    try {
      await this.app.link.call('unshare', { id: this.made.id });
    } catch (error) {
      $('share-error').textContent = `revoke: ${error.message}`;
      return;
    }
    this.made = null;
    $('share-result').hidden = true;
    this.app.message(`The link to proc ${this.proc} was revoked.`);
    $('share-dialog').close();
  }
}

/** The banner over a shared terminal: what this page may do with it. */
export function showShareBanner({ proc, mode }) {
  const banner = $('share-banner');
  banner.hidden = false;
  banner.classList.toggle('read-only', mode === 'view');
  banner.textContent = mode === 'view'
    ? `Read-only: proc ${proc} is shared with you to watch. Keys do nothing here.`
    : `Shared with you: you control proc ${proc}. Keys go to it.`;
}
