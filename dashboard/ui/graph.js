// The live topology graph: nodes as circles coloured by health, direct
// links as lines coloured by link state, drawn in SVG and updated in place
// (no re-creation, so positions and hover state survive each refresh).

import { s } from './ui.js';

const W = 820;
const H = 470;

export const LINK_LABEL = {
  good: 'Good', degraded: 'Degraded', bad: 'Bad', down: 'Down', unknown: 'Not measured',
};

export function nodeState(n) {
  if (n.status === 'pending') return 'pending';
  if (n.stale || !n.last_seen) return 'stale';
  return n.health || 'unknown';
}

// layout places nodes: on a circle for small meshes (every pair is visible),
// by a force simulation seeded from the circle for larger ones.
function layout(nodes, links, prev) {
  const n = nodes.length;
  const pos = new Map();
  const cx = W / 2;
  const cy = H / 2;
  if (n === 1) {
    pos.set(nodes[0].id, { x: cx, y: cy });
    return pos;
  }
  const r = Math.min(W, H) / 2 - 75;
  nodes.forEach((nd, i) => {
    const a = -Math.PI / 2 + (2 * Math.PI * i) / n;
    pos.set(nd.id, { x: cx + r * Math.cos(a) * (W / H > 1.4 && n > 2 ? 1.25 : 1), y: cy + r * Math.sin(a) });
  });
  if (n <= 12) return pos;
  // Fruchterman–Reingold, starting from the previous positions when known.
  for (const nd of nodes) if (prev.has(nd.id)) pos.set(nd.id, { ...prev.get(nd.id) });
  const k = Math.sqrt((W * H) / n) * 0.8;
  let temp = W / 8;
  for (let it = 0; it < 250; it++) {
    const disp = new Map(nodes.map((nd) => [nd.id, { x: 0, y: 0 }]));
    for (let i = 0; i < n; i++) {
      for (let j = i + 1; j < n; j++) {
        const a = pos.get(nodes[i].id);
        const b = pos.get(nodes[j].id);
        let dx = a.x - b.x;
        let dy = a.y - b.y;
        const d = Math.max(1, Math.hypot(dx, dy));
        const f = (k * k) / d;
        dx = (dx / d) * f;
        dy = (dy / d) * f;
        disp.get(nodes[i].id).x += dx;
        disp.get(nodes[i].id).y += dy;
        disp.get(nodes[j].id).x -= dx;
        disp.get(nodes[j].id).y -= dy;
      }
    }
    for (const l of links) {
      const a = pos.get(l.a);
      const b = pos.get(l.b);
      if (!a || !b) continue;
      const dx = a.x - b.x;
      const dy = a.y - b.y;
      const d = Math.max(1, Math.hypot(dx, dy));
      const f = (d * d) / k / d;
      disp.get(l.a).x -= dx * f;
      disp.get(l.a).y -= dy * f;
      disp.get(l.b).x += dx * f;
      disp.get(l.b).y += dy * f;
    }
    for (const nd of nodes) {
      const p = pos.get(nd.id);
      const dv = disp.get(nd.id);
      const d = Math.max(1, Math.hypot(dv.x, dv.y));
      p.x = Math.min(W - 60, Math.max(60, p.x + (dv.x / d) * Math.min(d, temp)));
      p.y = Math.min(H - 50, Math.max(40, p.y + (dv.y / d) * Math.min(d, temp)));
    }
    temp *= 0.97;
  }
  return pos;
}

export class TopologyGraph {
  constructor({ onSelect } = {}) {
    this.onSelect = onSelect || (() => {});
    this.svg = s('svg.topology', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': 'Mesh topology' });
    this.gLinks = s('g.links');
    this.gLabels = s('g.link-labels');
    this.gNodes = s('g.nodes');
    this.svg.append(this.gLinks, this.gLabels, this.gNodes);
    this.nodeEls = new Map();
    this.linkEls = new Map();
    this.pos = new Map();
    this.shape = '';
    this.selected = null;
  }

  select(kind, id) {
    this.selected = id ? { kind, id } : null;
    for (const [k, el] of this.nodeEls) el.g.classList.toggle('selected', kind === 'node' && k === id);
    for (const [k, el] of this.linkEls) el.line.classList.toggle('selected', kind === 'link' && k === id);
  }

  update(topo) {
    const nodes = [...topo.nodes].sort((a, b) => a.name.localeCompare(b.name));
    const byID = new Map(nodes.map((n) => [n.id, n]));
    const shape = nodes.map((n) => n.id).join(',');
    if (shape !== this.shape) {
      this.pos = layout(nodes, topo.links, this.pos);
      this.shape = shape;
    }

    // Links.
    const seen = new Set();
    for (const l of topo.links) {
      const a = this.pos.get(l.a);
      const b = this.pos.get(l.b);
      if (!a || !b) continue;
      const key = `${l.a}-${l.b}`;
      seen.add(key);
      let el = this.linkEls.get(key);
      if (!el) {
        const title = s('title');
        const line = s('line.link', { dataset: { a: l.a, b: l.b } }, title);
        const hit = s('line.link-hit', {}, s('title'));
        const label = s('text.link-label', { 'text-anchor': 'middle' });
        const labelBg = s('rect.link-label-bg', { rx: 4, ry: 4 });
        const lg = s('g.link-label-group', {}, labelBg, label);
        const select = () => this.onSelect('link', key);
        line.addEventListener('click', select);
        hit.addEventListener('click', select);
        this.gLinks.append(line, hit);
        this.gLabels.append(lg);
        el = { line, hit, title, label, labelBg, lg };
        this.linkEls.set(key, el);
      }
      const an = byID.get(l.a);
      const bn = byID.get(l.b);
      for (const ln of [el.line, el.hit]) {
        ln.setAttribute('x1', a.x);
        ln.setAttribute('y1', a.y);
        ln.setAttribute('x2', b.x);
        ln.setAttribute('y2', b.y);
      }
      el.line.setAttribute('class', `link state-${l.state}${this.selected?.id === key ? ' selected' : ''}`);
      el.line.dataset.state = l.state;
      el.line.dataset.aName = an?.name || l.a;
      el.line.dataset.bName = bn?.name || l.b;
      const metrics = [l.rtt_ms ? `${l.rtt_ms.toFixed(1)} ms` : null, l.loss ? `${(l.loss * 100).toFixed(1)}% loss` : null].filter(Boolean);
      const text = `${an?.name} ↔ ${bn?.name}: ${LINK_LABEL[l.state] || l.state}${metrics.length ? ` · ${metrics.join(' · ')}` : ''}`;
      el.title.textContent = text;
      el.hit.firstChild.textContent = text;
      const lbl = l.state === 'down' ? 'down' : l.rtt_ms ? `${l.rtt_ms < 10 ? l.rtt_ms.toFixed(1) : Math.round(l.rtt_ms)} ms` : '';
      el.label.textContent = lbl;
      el.lg.setAttribute('class', `link-label-group state-${l.state}`);
      el.lg.style.display = lbl && topo.nodes.length <= 16 ? '' : 'none';
      const mx = (a.x + b.x) / 2;
      const my = (a.y + b.y) / 2;
      el.label.setAttribute('x', mx);
      el.label.setAttribute('y', my + 4);
      const w = lbl.length * 7.2 + 12;
      el.labelBg.setAttribute('x', mx - w / 2);
      el.labelBg.setAttribute('y', my - 10);
      el.labelBg.setAttribute('width', w);
      el.labelBg.setAttribute('height', 20);
    }
    for (const [key, el] of this.linkEls) {
      if (!seen.has(key)) {
        el.line.remove();
        el.hit.remove();
        el.lg.remove();
        this.linkEls.delete(key);
      }
    }

    // Nodes.
    for (const n of nodes) {
      const p = this.pos.get(n.id);
      let el = this.nodeEls.get(n.id);
      if (!el) {
        const title = s('title');
        const ring = s('circle.node-ring', { r: 26 });
        const dot = s('circle.node-dot', { r: 19 });
        const initial = s('text.node-initial', { 'text-anchor': 'middle', y: 5 });
        const name = s('text.node-name', { 'text-anchor': 'middle', y: 49 });
        const addr = s('text.node-addr', { 'text-anchor': 'middle', y: 65 });
        const g = s('g.node', { tabindex: 0 }, title, ring, dot, initial, name, addr);
        g.addEventListener('click', () => this.onSelect('node', n.id));
        g.addEventListener('keydown', (e) => {
          if (e.key === 'Enter' || e.key === ' ') this.onSelect('node', n.id);
        });
        this.gNodes.append(g);
        el = { g, title, initial, name, addr };
        this.nodeEls.set(n.id, el);
      }
      const st = nodeState(n);
      el.g.setAttribute('class', `node health-${st}${n.online ? ' online' : ' offline'}${this.selected?.id === n.id ? ' selected' : ''}`);
      el.g.setAttribute('transform', `translate(${p.x},${p.y})`);
      el.g.dataset.id = n.id;
      el.g.dataset.name = n.name;
      el.g.dataset.health = st;
      el.initial.textContent = n.name.slice(0, 2).toUpperCase();
      el.name.textContent = n.name;
      el.addr.textContent = n.ipv4;
      el.title.textContent = `${n.name} (${n.ipv4}) — ${st}${n.online ? ', online' : ', offline'}`;
    }
    for (const [id, el] of this.nodeEls) {
      if (!byID.has(id)) {
        el.g.remove();
        this.nodeEls.delete(id);
      }
    }
  }
}
