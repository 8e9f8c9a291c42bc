// Small helpers shared by the console's views: argv parsing, bytes, exit statuses, saving files.

export const $ = (id) => document.getElementById(id);

// A command line as argv: a JSON array of strings, or shell-like words
// (blanks separate words; '...' is literal; "..." and \ escape; no expansion).
export function splitArgs(text) {
  const trimmed = text.trim();
  if (trimmed.startsWith('[')) {
    const argv = JSON.parse(trimmed);
    if (!Array.isArray(argv) || !argv.every((arg) => typeof arg === 'string')) {
      throw new Error('a JSON argv must be an array of strings');
    }
    return argv;
  }
  const argv = [];
  let word = null;
  let quote = null;
  for (let i = 0; i < trimmed.length; i++) {
    const c = trimmed[i];
    if (quote === "'") {
      if (c === "'") quote = null;
      else word += c;
    } else if (quote === '"') {
      if (c === '"') quote = null;
      else if (c === '\\' && i + 1 < trimmed.length && '"\\$`'.includes(trimmed[i + 1])) word += trimmed[++i];
      else word += c;
    } else if (c === "'" || c === '"') {
      quote = c;
      word = word ?? '';
    } else if (c === '\\' && i + 1 < trimmed.length) {
      word = (word ?? '') + trimmed[++i];
    } else if (/\s/.test(c)) {
      if (word !== null) argv.push(word);
      word = null;
    } else {
      word = (word ?? '') + c;
    }
  }
  if (quote) throw new Error(`unterminated ${quote} quote`);
  if (word !== null) argv.push(word);
  if (argv.length === 0) throw new Error('no command given');
  return argv;
}

function quoteArg(arg) {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : "'" + arg.replaceAll("'", "'\\''") + "'";
}

// What to show as a process's command line: the server's `command` when it has one.
export function commandOf(info) {
  if (!info) return '';
  return info.command || info.argv.map(quoteArg).join(' ');
}

export function describeExit(status) {
  if (!status) return '';
  if (status.lost) return `lost with ${status.node}`;
  let text = status.signal ? `killed by ${status.signal}` : `exit ${status.code}`;
  if (status.core_dumped) text += ' (core dumped)';
  if (status.timed_out) text += ' (timed out)';
  if (status.output_incomplete) text += ' (output incomplete)';
  return text;
}

export function exitClass(status) {
  return status && status.code === 0 ? 'ok' : 'bad';
}

export function age(startedAt, now = Date.now() / 1000) {
  const seconds = Math.max(0, Math.round(now - startedAt));
  if (seconds < 60) return `${seconds} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ${Math.floor((seconds % 3600) / 60)} min`;
  return `${Math.floor(seconds / 86400)} d`;
}

export function clockTime(date) {
  return date.toLocaleTimeString([], { hour12: false }) + '.' + String(date.getMilliseconds()).padStart(3, '0');
}

// -- files ----------------------------------------------------------------------------

// Offer `parts` (strings or bytes) to the user as a file named `name`.
export function saveFile(name, parts, type = 'application/octet-stream') {
  const url = URL.createObjectURL(new Blob(parts, { type }));
  const link = document.createElement('a');
  link.href = url;
  link.download = name;
  link.hidden = true;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

export function button(label, action, { cls = '', name = label.toLowerCase(), disabled = false, title = '' } = {}) {
  const element = document.createElement('button');
  element.type = 'button';
  element.textContent = label;
  element.className = cls;
  element.dataset.action = name;
  element.disabled = disabled;
  if (title) element.title = title;
  element.addEventListener('click', action);
  return element;
}
