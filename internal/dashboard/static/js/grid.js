// The device grid: one cell per device, coloured by status and marked so that colour is not
// the only sign, drawn on a canvas so that 10,000 devices cost one element. Hovering or
// focusing a cell names the device and its status; a click or Enter opens it.
import { h, colours, label } from './ui.js';

const maxHeight = 420;

export class Grid {
  /** onOpen(deviceId) is called when a cell is clicked, or Enter is pressed on it. */
  constructor(onOpen) {
    this.devices = [];
    this.focus = -1;
    this.onOpen = onOpen;
    this.canvas = h('canvas', {
      id: 'grid', tabindex: 0, role: 'img', 'aria-roledescription': 'device grid',
      'aria-describedby': 'grid-help', 'aria-label': 'Devices',
    });
    this.tip = h('div', { class: 'tip', hidden: true, 'aria-hidden': 'true' });
    this.said = h('p', { id: 'grid-said', class: 'grid-said', 'aria-live': 'polite' });
    this.el = h('div', { class: 'grid' }, this.canvas, this.tip,
      h('p', { id: 'grid-help', class: 'muted small' },
        'One cell per device, in submission order. Point at a cell, or focus the grid and use the arrow keys, to name a device; click or press Enter to open its output.'),
      this.said);
    this.canvas.addEventListener('mousemove', (e) => this.hover(e));
    this.canvas.addEventListener('mouseleave', () => { this.tip.hidden = true; });
    this.canvas.addEventListener('click', (e) => {
      const i = this.at(e);
      if (i >= 0) { this.focus = i; this.draw(); this.onOpen(this.devices[i].id); }
    });
    this.canvas.addEventListener('keydown', (e) => this.key(e));
    // Focus from the keyboard picks a cell to start from; a click picks its own.
    this.canvas.addEventListener('focus', () => {
      if (this.focus < 0 && this.devices.length && this.canvas.matches(':focus-visible')) this.move(0);
    });
    new ResizeObserver(() => this.draw()).observe(this.el);
  }

  /** set replaces the devices ({id, status}, in order) and redraws. */
  set(devices) {
    this.devices = devices;
    this.canvas.dataset.count = devices.length;
    this.draw();
  }

  layout() {
    const width = Math.max(200, this.el.clientWidth || 600);
    const n = Math.max(1, this.devices.length);
    const size = Math.max(4, Math.min(22, Math.floor(Math.sqrt((width * maxHeight) / n))));
    const cols = Math.max(1, Math.floor(width / size));
    return { width, size, cols, rows: Math.ceil(this.devices.length / cols) };
  }

  draw() {
    const { width, size, cols, rows } = this.layout();
    const dpr = window.devicePixelRatio || 1;
    const height = Math.max(size, rows * size);
    const c = this.canvas;
    c.style.width = width + 'px';
    c.style.height = height + 'px';
    c.width = Math.round(width * dpr);
    c.height = Math.round(height * dpr);
    Object.assign(c.dataset, { cell: size, cols });
    const g = c.getContext('2d');
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, width, height);
    const gap = size >= 6 ? 1 : 0;
    const inner = size - gap;
    this.devices.forEach((d, i) => {
      const x = (i % cols) * size;
      const y = Math.floor(i / cols) * size;
      g.fillStyle = colours[d.status] || '#999';
      g.fillRect(x, y, inner, inner);
      if (inner >= 7) mark(g, d.status, x, y, inner);
    });
    if (this.focus >= 0 && this.focus < this.devices.length) {
      g.strokeStyle = '#111';
      g.lineWidth = 2;
      g.strokeRect((this.focus % cols) * size + 1, Math.floor(this.focus / cols) * size + 1, inner - 2 + gap, inner - 2 + gap);
    }
    const counts = {};
    this.devices.forEach((d) => { counts[d.status] = (counts[d.status] || 0) + 1; });
    c.setAttribute('aria-label', `${this.devices.length} devices: ` +
      Object.entries(counts).map(([s, n]) => `${n} ${label(s)}`).join(', '));
  }

  at(e) {
    const { size, cols } = this.layout();
    const r = this.canvas.getBoundingClientRect();
    const col = Math.floor((e.clientX - r.left) / size);
    const row = Math.floor((e.clientY - r.top) / size);
    const i = row * cols + col;
    return col < cols && i >= 0 && i < this.devices.length ? i : -1;
  }

  hover(e) {
    const i = this.at(e);
    if (i < 0) { this.tip.hidden = true; return; }
    const d = this.devices[i];
    this.tip.textContent = `${d.id} · ${label(d.status)}`;
    this.tip.hidden = false;
    const r = this.el.getBoundingClientRect();
    this.tip.style.left = Math.min(e.clientX - r.left + 12, r.width - 160) + 'px';
    this.tip.style.top = (e.clientY - r.top + 12) + 'px';
  }

  move(i) {
    this.focus = Math.max(0, Math.min(this.devices.length - 1, i));
    const d = this.devices[this.focus];
    this.said.textContent = `${d.id}: ${label(d.status)} (${this.focus + 1} of ${this.devices.length})`;
    this.draw();
  }

  key(e) {
    if (!this.devices.length) return;
    const { cols } = this.layout();
    const step = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: cols, ArrowUp: -cols, Home: -this.focus, End: this.devices.length }[e.key];
    if (step !== undefined) {
      e.preventDefault();
      this.move(this.focus + step);
    } else if ((e.key === 'Enter' || e.key === ' ') && this.focus >= 0) {
      e.preventDefault();
      this.onOpen(this.devices[this.focus].id);
    }
  }
}

/** mark draws a status's sign inside its cell: a slash for a failure, a dot while running. */
function mark(g, status, x, y, s) {
  g.strokeStyle = 'rgba(255,255,255,0.9)';
  g.fillStyle = 'rgba(255,255,255,0.9)';
  g.lineWidth = Math.max(1, s / 8);
  switch (status) {
    case 'failed': case 'undeliverable':
      g.beginPath(); g.moveTo(x + 2, y + s - 2); g.lineTo(x + s - 2, y + 2); g.stroke();
      if (status === 'undeliverable') { g.beginPath(); g.moveTo(x + 2, y + 2); g.lineTo(x + s - 2, y + s - 2); g.stroke(); }
      break;
    case 'timed_out':
      g.fillRect(x + 2, y + s / 2 - g.lineWidth / 2, s - 4, g.lineWidth);
      break;
    case 'running':
      g.beginPath(); g.arc(x + s / 2, y + s / 2, s / 5, 0, 2 * Math.PI); g.fill();
      break;
  }
}
