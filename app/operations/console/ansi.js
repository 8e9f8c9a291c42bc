// ANSI text to DOM: the Run view shows colours and bold as a terminal would (SGR sequences), and
// drops the other control sequences (cursor moves, titles) that only make sense on a terminal.

const PALETTE = [
  '#3b4048', '#e06c75', '#98c379', '#e5c07b', '#61afef', '#c678dd', '#56b6c2', '#d7dae0',
  '#5c6370', '#ff7b86', '#b5e890', '#ffd68a', '#7cc4ff', '#de95f0', '#6fd6e3', '#ffffff',
];

function color256(n) {
  if (n < 16) return PALETTE[n];
  if (n < 232) {
    const levels = [0, 95, 135, 175, 215, 255];
    const i = n - 16;
    return `rgb(${levels[Math.floor(i / 36)]}, ${levels[Math.floor(i / 6) % 6]}, ${levels[i % 6]})`;
  }
  const grey = 8 + (n - 232) * 10;
  return `rgb(${grey}, ${grey}, ${grey})`;
}

// ESC [ params final | ESC ] ... BEL or ESC \ | ESC and one more character; a bare C0 control.
const SEQUENCE = /\x1b\[([0-?]*)[ -/]*([@-~])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[ -~]|[\x00-\x08\x0b-\x1f\x7f]/g;
// An escape sequence cut at the end of a chunk: kept until the next chunk completes it.
const UNFINISHED = /\x1b(?:\[[0-?]*[ -/]*|\][^\x07\x1b]*\x1b?)?$/;

function freshStyle() {
  return { fg: null, bg: null, bold: false, dim: false, italic: false, underline: false, inverse: false, strike: false };
}

// Extended colours: 38;5;n or 38;2;r;g;b (same for 48). Returns [colour, codes consumed].
function extendedColor(codes, i) {
  if (codes[i + 1] === 5 && codes.length > i + 2) return [color256(codes[i + 2] & 255), 3];
  if (codes[i + 1] === 2 && codes.length > i + 4) return [`rgb(${codes[i + 2]}, ${codes[i + 3]}, ${codes[i + 4]})`, 5];
  return [null, codes.length - i];
}

function applySgr(style, params) {
  const codes = params === '' ? [0] : params.split(/[;:]/).map((code) => Number(code) || 0);
  for (let i = 0; i < codes.length; i++) {
    const code = codes[i];
    if (code === 0) Object.assign(style, freshStyle());
    else if (code === 1) style.bold = true;
    else if (code === 2) style.dim = true;
    else if (code === 3) style.italic = true;
    else if (code === 4) style.underline = true;
    else if (code === 7) style.inverse = true;
    else if (code === 9) style.strike = true;
    else if (code === 22) style.bold = style.dim = false;
    else if (code === 23) style.italic = false;
    else if (code === 24) style.underline = false;
    else if (code === 27) style.inverse = false;
    else if (code === 29) style.strike = false;
    else if (code >= 30 && code <= 37) style.fg = PALETTE[code - 30];
    else if (code >= 90 && code <= 97) style.fg = PALETTE[code - 90 + 8];
    else if (code === 39) style.fg = null;
    else if (code >= 40 && code <= 47) style.bg = PALETTE[code - 40];
    else if (code >= 100 && code <= 107) style.bg = PALETTE[code - 100 + 8];
    else if (code === 49) style.bg = null;
    else if (code === 38 || code === 48) {
      const [value, used] = extendedColor(codes, i);
      if (code === 38) style.fg = value;
      else style.bg = value;
      i += used - 1;
    }
  }
}

function isPlain(style) {
  return !style.fg && !style.bg && !style.bold && !style.dim && !style.italic && !style.underline &&
    !style.inverse && !style.strike;
}

function styledNode(text, style) {
  if (isPlain(style)) return document.createTextNode(text);
  const span = document.createElement('span');
  span.textContent = text;
  const fg = style.inverse ? style.bg || 'var(--pane)' : style.fg;
  const bg = style.inverse ? style.fg || 'var(--pane-text)' : style.bg;
  if (fg) span.style.color = fg;
  if (bg) span.style.backgroundColor = bg;
  if (style.bold) span.style.fontWeight = 'bold';
  if (style.dim) span.style.opacity = '0.7';
  if (style.italic) span.style.fontStyle = 'italic';
  const lines = [style.underline && 'underline', style.strike && 'line-through'].filter(Boolean);
  if (lines.length) span.style.textDecoration = lines.join(' ');
  return span;
}

/** Renders one stream's text into `target`, keeping colours across chunks. */
export class AnsiRenderer {
  constructor(target) {
    this.target = target;
    this.style = freshStyle();
    this.pending = '';
  }

  // Append `text` (decoded output) to the target; returns the plain text appended.
  write(text) {
    let input = this.pending + text;
    const cut = input.match(UNFINISHED);
    this.pending = cut ? cut[0] : '';
    if (cut) input = input.slice(0, cut.index);
    input = input.replace(/\r+\n/g, '\n');
    let plain = '';
    let last = 0;
    const fragment = document.createDocumentFragment();
    const emit = (end) => {
      if (end <= last) return;
      const piece = input.slice(last, end);
      plain += piece;
      fragment.append(styledNode(piece, this.style));
    };
    for (const match of input.matchAll(SEQUENCE)) {
      emit(match.index);
      last = match.index + match[0].length;
      if (match[2] === 'm') applySgr(this.style, match[1]);
    }
    emit(input.length);
    this.target.append(fragment);
    return plain;
  }
}

/** The text without any escape sequence: for downloads of a transcript. */
export function stripAnsi(text) {
  return text.replace(/\r+\n/g, '\n').replace(SEQUENCE, '');
}
