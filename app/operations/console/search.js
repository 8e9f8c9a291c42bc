// Search in the Run view's output: every match highlighted (the CSS Custom Highlight API: no change
// to the output's DOM, so coloured spans and matches may overlap freely), one of them current.

function textNodes(container) {
  const walker = document.createTreeWalker(container, NodeFilter.SHOW_TEXT);
  const nodes = [];
  let start = 0;
  let text = '';
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    nodes.push({ node, start });
    text += node.data;
    start += node.data.length;
  }
  return { nodes, text };
}

// The text node holding character `index` of the container's text, and the offset in it.
function locate(nodes, index, isEnd) {
  let low = 0;
  let high = nodes.length - 1;
  while (low < high) {
    const middle = (low + high + 1) >> 1;
    const before = isEnd ? nodes[middle].start < index : nodes[middle].start <= index;
    if (before) low = middle;
    else high = middle - 1;
  }
  return { node: nodes[low].node, offset: index - nodes[low].start };
}

function matchesIn(container, needle) {
  const { nodes, text } = textNodes(container);
  const haystack = text.toLowerCase();
  const ranges = [];
  for (let at = haystack.indexOf(needle); at !== -1; at = haystack.indexOf(needle, at + needle.length)) {
    const start = locate(nodes, at, false);
    const end = locate(nodes, at + needle.length, true);
    const range = document.createRange();
    range.setStart(start.node, start.offset);
    range.setEnd(end.node, end.offset);
    ranges.push({ range, container });
  }
  return ranges;
}

export class OutputSearch {
  constructor({ input, count, previous, next, containers }) {
    this.input = input;
    this.count = count;
    this.containers = containers; // () => the elements searched now (the visible panes)
    this.matches = [];
    this.current = -1;
    this.timer = null;
    input.addEventListener('input', () => this.refresh({ jump: true }));
    input.addEventListener('keydown', (event) => {
      if (event.key === 'Enter') {
        event.preventDefault();
        this.step(event.shiftKey ? -1 : 1);
      } else if (event.key === 'Escape') {
        input.value = '';
        this.refresh();
      }
    });
    previous.addEventListener('click', () => this.step(-1));
    next.addEventListener('click', () => this.step(1));
  }

  // After new output: highlights follow, at most a few times a second.
  later() {
    if (!this.input.value || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.refresh();
    }, 200);
  }

  refresh({ jump = false } = {}) {
    const needle = this.input.value.toLowerCase();
    this.matches = needle ? this.containers().flatMap((container) => matchesIn(container, needle)) : [];
    if (this.current >= this.matches.length || jump) this.current = this.matches.length ? 0 : -1;
    if (this.current === -1 && this.matches.length) this.current = 0;
    this.paint();
    if (jump) this.reveal();
  }

  step(delta) {
    if (!this.matches.length) return;
    this.current = (this.current + delta + this.matches.length) % this.matches.length;
    this.paint();
    this.reveal();
  }

  paint() {
    const total = this.matches.length;
    this.count.textContent = this.input.value ? `${total ? this.current + 1 : 0} of ${total}` : '';
    if (!window.CSS || !CSS.highlights) return;
    CSS.highlights.set('search', new Highlight(...this.matches.map((match) => match.range)));
    const current = this.matches[this.current];
    CSS.highlights.set('search-current', current ? new Highlight(current.range) : new Highlight());
  }

  reveal() {
    const match = this.matches[this.current];
    if (!match) return;
    const box = match.container.getBoundingClientRect();
    const rect = match.range.getBoundingClientRect();
    match.container.scrollTop += rect.top - box.top - match.container.clientHeight / 2;
  }
}
