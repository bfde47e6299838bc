// The dashboard: a sign-in screen, then a shell with a sidebar and one view
// per page, chosen by the URL fragment (#/meshes, #/m/NAME/nodes, ...).

import { api, getKey, setKey, setUnauthorizedHandler, APIError } from './api.js';
import { h, clear, toast, confirmDialog, bytes, ago, when, until, badge, empty, field, busy, copyButton } from './ui.js';
import { TopologyGraph, LINK_LABEL, nodeState } from './graph.js';

const root = document.getElementById('app');
const state = { me: null, mesh: sessionStorage.getItem('x0t.mesh') || '', meshes: [] };
let stopView = () => {};

// ---------------------------------------------------------------- sign-in

function showSignIn(message) {
  stopView();
  state.me = null;
  const input = h('input#key', { type: 'password', autocomplete: 'off', spellcheck: 'false', placeholder: 'x0t_key_…', required: true });
  const err = h('p.form-error', { role: 'alert', text: message || '' });
  const btn = h('button#signin.btn.btn-primary.btn-block', { type: 'submit' }, 'Sign in');
  const form = h('form.signin-card',
    h('div.brand.brand-large', logo(), h('span', 'x0t')),
    h('h1', 'Sign in to the control plane'),
    h('p.muted', 'Use an API key of your organization. It is kept in this browser tab only and sent to this server alone.'),
    field('API key', input),
    err,
    btn,
    h('p.muted.small', 'No key? The first owner key is in the control plane\'s data directory (admin.key); ', h('code', 'x0t keys create'), ' makes more.'));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    err.textContent = '';
    const key = input.value.trim();
    await busy(btn, async () => {
      try {
        const me = await api.whoami(key);
        setKey(key);
        state.me = me;
        // replaceState fires no hashchange: start renders once. (Setting
        // location.hash rendered twice, and the second render replaced a form
        // the user may already have been typing into.)
        if (!location.hash || location.hash === '#/signin') history.replaceState(null, '', '#/meshes');
        start();
      } catch (ex) {
        err.textContent = ex instanceof APIError && ex.status === 401 ? 'That key was not accepted.' : `Sign-in failed: ${ex.message}`;
        input.select();
      }
    });
  });
  clear(root, h('div.signin', form));
  input.focus();
}

function logo() {
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  svg.setAttribute('viewBox', '0 0 32 32');
  svg.setAttribute('class', 'logo');
  svg.setAttribute('aria-hidden', 'true');
  const pts = [[16, 4], [28, 12], [24, 27], [8, 27], [4, 12]];
  for (let i = 0; i < pts.length; i++) {
    for (let j = i + 1; j < pts.length; j++) {
      const l = document.createElementNS(svg.namespaceURI, 'line');
      l.setAttribute('x1', pts[i][0]); l.setAttribute('y1', pts[i][1]);
      l.setAttribute('x2', pts[j][0]); l.setAttribute('y2', pts[j][1]);
      svg.append(l);
    }
  }
  for (const [x, y] of pts) {
    const c = document.createElementNS(svg.namespaceURI, 'circle');
    c.setAttribute('cx', x); c.setAttribute('cy', y); c.setAttribute('r', 3.2);
    svg.append(c);
  }
  return svg;
}

// ---------------------------------------------------------------- shell

// Icons: 16×16 strokes, drawn here so that no font or file is needed.
const ICONS = {
  meshes: 'M8 1.75a6.25 6.25 0 1 0 0 12.5 6.25 6.25 0 0 0 0-12.5Z M1.75 8h12.5 M8 1.75c2.2 2.3 2.2 10.2 0 12.5 M8 1.75c-2.2 2.3-2.2 10.2 0 12.5',
  nodes: 'M2 2.5h12v4.5H2Z M2 9h12v4.5H2Z M4.5 4.75h1 M4.5 11.25h1 M8 4.75h3.5 M8 11.25h3.5',
  topology: 'M8 2.5v0 M3 13v0 M13 13v0 M7 4.3 3.9 11.2 M9 4.3l3.1 6.9 M5 13h6 M8 1.2a1.6 1.6 0 1 1 0 3.2 1.6 1.6 0 0 1 0-3.2Z M3 11.4a1.6 1.6 0 1 1 0 3.2 1.6 1.6 0 0 1 0-3.2Z M13 11.4a1.6 1.6 0 1 1 0 3.2 1.6 1.6 0 0 1 0-3.2Z',
  acl: 'M8 1.5l5.5 2v4.2c0 3.3-2.3 5.7-5.5 6.8-3.2-1.1-5.5-3.5-5.5-6.8V3.5Z M5.6 8l1.7 1.7 3.2-3.4',
  tokens: 'M10.5 1.75a3.75 3.75 0 1 1-2.9 6.1L2.25 13.2v1.05H4.5v-1.5H6v-1.5h1.5l1.15-1.15A3.75 3.75 0 0 1 10.5 1.75Z M11.25 4.25h.01',
  audit: 'M3.5 1.75h6.25l2.75 2.75v9.75h-9Z M9.5 1.75V4.75h3 M5.75 7.5h4.5 M5.75 10h4.5 M5.75 12.5h2.5',
};

function icon(name) {
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  svg.setAttribute('viewBox', '0 0 16 16');
  svg.setAttribute('class', 'icon');
  svg.setAttribute('aria-hidden', 'true');
  const p = document.createElementNS(svg.namespaceURI, 'path');
  p.setAttribute('d', ICONS[name]);
  svg.append(p);
  return svg;
}

const PAGES = [
  { id: 'meshes', label: 'Meshes', global: true },
  { id: 'nodes', label: 'Nodes' },
  { id: 'topology', label: 'Topology' },
  { id: 'acl', label: 'Access policy' },
  { id: 'tokens', label: 'Join tokens' },
  { id: 'audit', label: 'Audit log', global: true },
];

function route() {
  const parts = location.hash.replace(/^#\/?/, '').split('/').filter(Boolean).map(decodeURIComponent);
  if (parts[0] === 'm' && parts[1]) return { page: parts[2] || 'nodes', mesh: parts[1] };
  return { page: parts[0] || 'meshes', mesh: state.mesh };
}

function href(page, mesh = state.mesh) {
  const p = PAGES.find((x) => x.id === page);
  if (p?.global || !mesh) return `#/${page}`;
  return `#/m/${encodeURIComponent(mesh)}/${page}`;
}

let shell = null;

function buildShell() {
  const nav = h('nav.nav');
  const meshSel = h('select#mesh-select', { 'aria-label': 'Mesh' });
  meshSel.addEventListener('change', () => {
    state.mesh = meshSel.value;
    sessionStorage.setItem('x0t.mesh', state.mesh);
    const r = route();
    const page = PAGES.find((p) => p.id === r.page)?.global ? 'nodes' : r.page;
    location.hash = href(page, state.mesh);
  });
  const who = h('div.who');
  const signOut = h('button.btn.btn-ghost.btn-small#signout', { type: 'button' }, 'Sign out');
  signOut.addEventListener('click', () => {
    setKey('');
    sessionStorage.removeItem('x0t.mesh');
    state.mesh = '';
    location.hash = '';
    shell = null;
    showSignIn();
  });
  const title = h('h2.page-title');
  const subtitle = h('div.page-sub');
  const tools = h('div.page-tools');
  const main = h('main.content');
  const layout = h('div.layout',
    h('aside.sidebar', h('div.sidebar-inner',
      h('div.brand', logo(), h('span', 'x0t'), h('span.brand-sub', 'control plane')),
      h('div.mesh-picker', h('span.label', 'Mesh'), meshSel),
      nav,
      h('div.sidebar-foot', who, signOut))),
    h('div.main',
      h('header.topbar', h('div', title, subtitle), tools),
      main));
  clear(root, layout);
  shell = { nav, meshSel, who, title, subtitle, tools, main };
}

function renderShell(r) {
  if (!shell) buildShell();
  const { nav, meshSel, who } = shell;
  clear(nav, PAGES.map((p) => {
    const disabled = !p.global && !state.mesh;
    return h(`a.nav-item${r.page === p.id ? '.active' : ''}${disabled ? '.disabled' : ''}`,
      { href: disabled ? '#/meshes' : href(p.id), dataset: { page: p.id } },
      icon(p.id), h('span', { text: p.label }));
  }));
  clear(meshSel,
    state.meshes.length ? null : h('option', { value: '', text: 'No meshes yet' }),
    state.meshes.map((m) => h('option', { value: m.name, text: m.name, selected: m.name === state.mesh })));
  meshSel.disabled = !state.meshes.length;
  if (state.me) {
    clear(who, h('div.who-org', { text: state.me.org.name }),
      h('div.who-user', { text: `${state.me.user.name} · ${state.me.role}` }));
  }
}

function setHeader(title, sub, ...tools) {
  shell.title.textContent = title;
  clear(shell.subtitle, sub || '');
  clear(shell.tools, tools);
}

async function refreshMeshes() {
  const list = await api.meshes();
  state.meshes = list.items;
  if (state.mesh && !state.meshes.some((m) => m.name === state.mesh)) state.mesh = '';
  if (!state.mesh && state.meshes.length) state.mesh = state.meshes[0].name;
  sessionStorage.setItem('x0t.mesh', state.mesh);
}

// poll runs fn now and then every ms until the view is left.
function poll(fn, ms) {
  let stopped = false;
  let timer = null;
  const ctl = new AbortController();
  const tick = async () => {
    if (stopped) return;
    try {
      await fn(ctl.signal);
    } catch (e) {
      if (!stopped && e.name !== 'AbortError') console.warn(e);
    }
    if (!stopped) timer = setTimeout(tick, ms);
  };
  tick();
  return () => {
    stopped = true;
    clearTimeout(timer);
    ctl.abort();
  };
}

async function start() {
  if (!getKey()) return showSignIn();
  try {
    if (!state.me) state.me = await api.whoami();
    await refreshMeshes();
  } catch (e) {
    if (e instanceof APIError && e.status === 401) return showSignIn('Your key is no longer accepted. Sign in again.');
    return showSignIn(`Could not reach the control plane: ${e.message}`);
  }
  render();
}

// render shows the page of the URL. Renders run one at a time: a
// navigation during one is rendered after it.
let rendering = false;
let renderAgain = false;
async function render() {
  if (rendering) {
    renderAgain = true;
    return;
  }
  rendering = true;
  try {
    do {
      renderAgain = false;
      await renderOnce();
    } while (renderAgain);
  } finally {
    rendering = false;
  }
}

async function renderOnce() {
  if (!state.me) return start();
  stopView();
  stopView = () => {};
  const r = route();
  if (r.mesh && r.mesh !== state.mesh && state.meshes.some((m) => m.name === r.mesh)) {
    state.mesh = r.mesh;
    sessionStorage.setItem('x0t.mesh', state.mesh);
  }
  renderShell(r);
  const page = PAGES.find((p) => p.id === r.page) || PAGES[0];
  document.title = `${page.label} · x0t`;
  clear(shell.main);
  shell.main.dataset.page = page.id;
  if (!page.global && !state.mesh) {
    setHeader(page.label, '');
    shell.main.append(empty('No mesh selected', 'Create a mesh first: nodes, topology, policy and tokens belong to one.',
      h('a.btn.btn-primary', { href: '#/meshes' }, 'Go to meshes')));
    return;
  }
  try {
    stopView = (await VIEWS[page.id](shell.main)) || (() => {});
  } catch (e) {
    shell.main.append(h('div.alert.alert-error', { text: e.message }));
  }
}

// ---------------------------------------------------------------- meshes

async function viewMeshes(main) {
  const form = meshForm();
  setHeader('Meshes', 'Private networks, each with its own post-quantum certificate authority.');
  const table = h('div.card.card-flush');
  await refreshMeshes();
  renderShell(route());
  const draw = () => {
    if (!state.meshes.length) {
      clear(table, empty('No meshes yet', 'Create your first mesh with the form above.'));
      return;
    }
    clear(table, h('table.table#meshes',
      h('thead', h('tr', ['Name', 'Overlay prefixes', 'Nodes', 'Security', 'Transports', 'Created', ''].map((t) => h('th', { text: t })))),
      h('tbody', state.meshes.map((m) => h('tr', { dataset: { mesh: m.name } },
        h('td', h('a.strong', { href: href('nodes', m.name), text: m.name }), m.description ? h('div.muted.small', { text: m.description }) : null),
        h('td.mono', h('div', { text: m.ipv4_prefix }), h('div.muted', { text: m.ipv6_prefix })),
        h('td.num', { text: m.nodes }),
        h('td', badge(m.pq_profile, 'pq'), h('div.muted.small.mono', { title: 'CA fingerprint', text: `CA ${m.ca_fingerprint.slice(0, 16)}…` })),
        h('td', m.transports.map((t) => h('span.chip', { text: t }))),
        h('td', { text: when(m.created_at) }),
        h('td.actions',
          h('a.btn.btn-small', { href: href('topology', m.name) }, 'Topology'),
          h('button.btn.btn-small.btn-ghost-danger', {
            type: 'button',
            on: {
              click: async (e) => {
                if (!(await confirmDialog(`Delete mesh ${m.name}?`, 'Every node of the mesh is cut off and its certificate authority destroyed. This cannot be undone.', 'Delete mesh'))) return;
                await busy(e.target, async () => {
                  try {
                    await api.deleteMesh(m.name);
                    toast(`Mesh ${m.name} deleted`, 'ok');
                    await refreshMeshes();
                    renderShell(route());
                    draw();
                  } catch (ex) {
                    toast(ex.message, 'error');
                  }
                });
              },
            },
          }, 'Delete')))))));
  };
  form.addEventListener('created', async (e) => {
    await refreshMeshes();
    state.mesh = e.detail.name;
    sessionStorage.setItem('x0t.mesh', state.mesh);
    renderShell(route());
    draw();
  });
  main.append(form, table);
  draw();
}

function meshForm() {
  const name = h('input#mesh-name', { required: true, pattern: '[a-z0-9]([a-z0-9\\-]{0,61}[a-z0-9])?', placeholder: 'prod', autocomplete: 'off' });
  const desc = h('input#mesh-desc', { placeholder: 'Production servers', maxLength: 256 });
  const prefix = h('input#mesh-prefix', { placeholder: '100.64.0.0/10', maxLength: 18 });
  const btn = h('button#mesh-create.btn.btn-primary', { type: 'submit' }, 'Create mesh');
  const form = h('form.card.form-inline',
    h('div.card-title', 'New mesh'),
    h('div.form-row',
      field('Name', name, 'Lower-case letters, digits and dashes.'),
      field('Description', desc),
      field('IPv4 prefix', prefix, 'Optional; default 100.64.0.0/10.'),
      h('div.field.field-button', btn)));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    await busy(btn, async () => {
      try {
        const req = { name: name.value.trim() };
        if (desc.value.trim()) req.description = desc.value.trim();
        if (prefix.value.trim()) req.ipv4_prefix = prefix.value.trim();
        const m = await api.createMesh(req);
        toast(`Mesh ${m.name} created`, 'ok');
        form.reset();
        form.dispatchEvent(new CustomEvent('created', { detail: m }));
      } catch (ex) {
        toast(ex.message, 'error');
      }
    });
  });
  return form;
}

// ---------------------------------------------------------------- nodes

function healthBadge(n) {
  const st = nodeState(n);
  const label = { stale: 'no heartbeat', pending: 'pending', unknown: 'unknown' }[st] || st;
  return badge(label, st);
}

async function viewNodes(main) {
  const mesh = state.mesh;
  const filter = h('input.search#node-filter', { type: 'search', placeholder: 'Filter by name, address or tag' });
  setHeader('Nodes', h('span', 'Members of ', h('strong', { text: mesh }), ' — live, refreshed every 2 s.'), filter,
    h('a.btn', { href: href('tokens') }, 'Add a node…'));
  const summary = h('div.stats');
  const table = h('div.card.card-flush');
  main.append(summary, table);
  let last = [];
  const draw = () => {
    const q = filter.value.trim().toLowerCase();
    const items = last.filter((n) => !q || [n.name, n.ipv4, n.ipv6, ...n.tags].some((x) => x && x.toLowerCase().includes(q)));
    const online = last.filter((n) => n.online).length;
    const pending = last.filter((n) => n.status === 'pending').length;
    const unhealthy = last.filter((n) => n.status === 'approved' && n.health && n.health !== 'healthy').length;
    clear(summary,
      stat('Nodes', last.length),
      stat('Online', online, online ? 'ok' : null),
      stat('Pending approval', pending, pending ? 'warn' : null),
      stat('Unhealthy', unhealthy, unhealthy ? 'bad' : null),
      stat('Received', bytes(last.reduce((s, n) => s + n.rx_bytes, 0))),
      stat('Sent', bytes(last.reduce((s, n) => s + n.tx_bytes, 0))));
    if (!last.length) {
      clear(table, empty('No nodes yet', 'Create a join token and run x0t node up with it on a machine.', h('a.btn.btn-primary', { href: href('tokens') }, 'Create a join token')));
      return;
    }
    const now = Date.now();
    clear(table, h('table.table#nodes',
      h('thead', h('tr', ['Node', 'Status', 'Addresses', 'Tags', 'Last seen', 'Health', 'Traffic rx / tx', ''].map((t) => h('th', { text: t })))),
      h('tbody', items.map((n) => h('tr', { dataset: { node: n.name, status: n.status, online: n.online, health: nodeState(n), rx: n.rx_bytes } },
        h('td', h('div.node-cell', h(`span.dot.${n.online ? 'dot-on' : 'dot-off'}`, { title: n.online ? 'online' : 'offline' }), h('strong', { text: n.name })),
          h('div.muted.mono.small', { title: n.id, text: n.id.slice(0, 16) })),
        h('td', badge(n.status)),
        h('td.mono', h('div', { text: n.ipv4 }), n.ipv6 ? h('div.muted.small', { text: n.ipv6 }) : null,
          n.endpoints.length ? h('div.muted.small', { title: 'Underlay endpoints', text: `via ${n.endpoints.join(', ')}` }) : null),
        h('td', n.tags.length ? n.tags.map((t) => h('span.chip', { text: `tag:${t}` })) : h('span.muted', '—')),
        h('td', { title: n.last_seen ? when(n.last_seen) : '' , text: ago(n.last_seen, now) }),
        h('td', healthBadge(n)),
        h('td.num.mono', `${bytes(n.rx_bytes)} / ${bytes(n.tx_bytes)}`),
        h('td.actions', nodeActions(mesh, n)))))));
  };
  filter.addEventListener('input', draw);
  return poll(async (signal) => {
    last = (await api.nodes(mesh, signal)).items.sort((a, b) => a.name.localeCompare(b.name));
    draw();
  }, 2000);
}

function stat(label, value, kind) {
  return h(`div.stat${kind ? `.stat-${kind}` : ''}`, h('div.stat-value', { text: value }), h('div.stat-label', { text: label }));
}

function nodeActions(mesh, n) {
  const act = (label, cls, fn, confirmText) => h(`button.btn.btn-small${cls}`, {
    type: 'button',
    on: {
      click: async (e) => {
        if (confirmText && !(await confirmDialog(`${label} ${n.name}?`, confirmText, label))) return;
        await busy(e.target, async () => {
          try {
            await fn();
            toast(`${label}: ${n.name}`, 'ok');
          } catch (ex) {
            toast(ex.message, 'error');
          }
        });
      },
    },
  }, label);
  const out = [];
  if (n.status === 'pending') out.push(act('Approve', '.btn-primary', () => api.approveNode(mesh, n.name)));
  if (n.status === 'approved') out.push(act('Revoke', '.btn-ghost-danger', () => api.revokeNode(mesh, n.name), 'Every peer refuses the node within seconds. A revoked node can not be approved again.'));
  if (n.status !== 'approved') out.push(act('Delete', '.btn-ghost-danger', () => api.deleteNode(mesh, n.name), 'The node record is removed; its certificate stays revoked until it expires.'));
  return out;
}

// ---------------------------------------------------------------- topology

async function viewTopology(main) {
  const mesh = state.mesh;
  const updated = h('span.live', h('span.live-dot'), h('span#topo-updated', 'connecting…'));
  setHeader('Topology', h('span', 'Direct links of ', h('strong', { text: mesh }), ', coloured by health from the nodes\' RTT and loss reports.'), updated);
  const details = h('div.card.topo-details');
  let topo = null;
  let sel = null;
  const graph = new TopologyGraph({
    onSelect: (kind, id) => {
      sel = sel && sel.id === id ? null : { kind, id };
      graph.select(sel?.kind, sel?.id);
      drawDetails();
    },
  });
  const legend = h('div.legend',
    h('span.legend-title', 'Links'),
    ['good', 'degraded', 'bad', 'down', 'unknown'].map((st) => h('span.legend-item', h(`span.swatch.state-${st}`), LINK_LABEL[st])),
    h('span.legend-sep'),
    h('span.legend-title', 'Nodes'),
    [['healthy', 'Healthy'], ['degraded', 'Degraded'], ['critical', 'Critical'], ['stale', 'No heartbeat']].map(([st, label]) =>
      h('span.legend-item', h(`span.node-swatch.health-${st}`), label)));
  const canvas = h('div.card.topo-canvas', graph.svg, legend);
  const emptyBox = h('div', { hidden: true });
  main.append(emptyBox, h('div.topo-layout', canvas, details));

  const nameOf = (id) => topo?.nodes.find((n) => n.id === id)?.name || id.slice(0, 8);
  const pair = (l) => [nameOf(l.a), nameOf(l.b)].sort().join(' ↔ ');
  const drawDetails = () => {
    if (!topo) return;
    if (sel?.kind === 'node') {
      const n = topo.nodes.find((x) => x.id === sel.id);
      if (n) {
        const mine = topo.links.filter((l) => l.a === n.id || l.b === n.id);
        clear(details, h('div.card-title', { text: n.name }),
          h('dl.kv',
            kv('Status', badge(n.status)), kv('Health', healthBadge(n)),
            kv('Online', n.online ? 'yes' : 'no'), kv('Address', h('span.mono', { text: [n.ipv4, n.ipv6].filter(Boolean).join('  ') })),
            kv('Tags', n.tags.length ? n.tags.map((t) => h('span.chip', { text: t })) : '—'),
            kv('Last seen', ago(n.last_seen)), kv('Uptime', n.uptime_seconds ? `${Math.round(n.uptime_seconds / 60)} min` : '—'),
            kv('Traffic', `${bytes(n.rx_bytes)} in / ${bytes(n.tx_bytes)} out`),
            kv('Open incidents', String(n.open_incidents)),
            n.reasons?.length ? kv('Reasons', n.reasons.join('; ')) : null),
          linkTable(mine, pair));
        return;
      }
    }
    if (sel?.kind === 'link') {
      const l = topo.links.find((x) => `${x.a}-${x.b}` === sel.id);
      if (l) {
        clear(details, h('div.card-title', pair(l)),
          h('dl.kv', kv('State', badge(LINK_LABEL[l.state], `link-${l.state}`)), kv('RTT', l.rtt_ms ? `${l.rtt_ms.toFixed(2)} ms` : '—'),
            kv('Loss', `${((l.loss || 0) * 100).toFixed(1)} %`), kv('Report age', `${l.age_seconds.toFixed(1)} s`)),
          h('table.table.table-compact', h('thead', h('tr', ['From', 'Link', 'RTT', 'Loss', 'Age'].map((t) => h('th', { text: t })))),
            h('tbody', l.reports.map((r) => h('tr', h('td', { text: nameOf(r.from) }), h('td', { text: r.link || '—' }),
              h('td', { text: r.rtt_ms ? `${r.rtt_ms.toFixed(2)} ms` : '—' }), h('td', { text: `${((r.loss || 0) * 100).toFixed(1)} %` }),
              h('td', { text: `${r.age_seconds.toFixed(1)} s${r.stale ? ' (stale)' : ''}` }))))));
        return;
      }
    }
    const counts = {};
    for (const l of topo.links) counts[l.state] = (counts[l.state] || 0) + 1;
    clear(details, h('div.card-title', 'Links'),
      h('div.stats.stats-compact', ['good', 'degraded', 'bad', 'down'].map((st) => stat(LINK_LABEL[st], counts[st] || 0, { good: 'ok', degraded: 'warn', bad: 'bad', down: 'bad' }[st]))),
      topo.links.length ? linkTable(topo.links, pair) : h('p.muted', 'No links reported yet.'),
      h('p.muted.small', 'Click a node or a link for details.'));
  };
  return poll(async (signal) => {
    topo = await api.topology(mesh, signal);
    graph.update(topo);
    emptyBox.hidden = topo.nodes.length > 0;
    if (!topo.nodes.length) {
      clear(emptyBox, h('div.alert', 'This mesh has no nodes yet: they appear here as soon as they enroll. ', h('a', { href: href('tokens') }, 'Create a join token')));
    }
    document.getElementById('topo-updated').textContent = `live · updated ${new Date(topo.time).toLocaleTimeString()}`;
    drawDetails();
  }, 1000);
}

function kv(k, ...v) {
  return [h('dt', { text: k }), h('dd', v)];
}

function linkTable(links, pair) {
  const order = { down: 0, bad: 1, degraded: 2, unknown: 3, good: 4 };
  return h('table.table.table-compact#links',
    h('thead', h('tr', ['Link', 'State', 'RTT', 'Loss'].map((t) => h('th', { text: t })))),
    h('tbody', [...links].sort((x, y) => order[x.state] - order[y.state] || pair(x).localeCompare(pair(y))).map((l) => h('tr', { dataset: { state: l.state } },
      h('td', { text: pair(l) }),
      h('td', badge(LINK_LABEL[l.state], `link-${l.state}`)),
      h('td.num', { text: l.rtt_ms ? `${l.rtt_ms.toFixed(1)} ms` : '—' }),
      h('td.num', { text: `${((l.loss || 0) * 100).toFixed(1)} %` })))));
}

// ---------------------------------------------------------------- ACL

async function viewACL(main) {
  const mesh = state.mesh;
  const res = await api.acl(mesh);
  let etag = res.headers.get('ETag') || '';
  let saved = JSON.stringify(res.body, null, 2);
  const editor = h('textarea#acl-editor.code', { spellcheck: 'false', rows: 22, wrap: 'off', 'aria-label': 'Policy' });
  editor.value = saved;
  const gutter = h('pre.gutter', { 'aria-hidden': 'true' });
  const status = h('div#acl-status.acl-status');
  const results = h('div#acl-results');
  const validateBtn = h('button#acl-validate.btn', { type: 'button' }, 'Validate');
  const saveBtn = h('button#acl-save.btn.btn-primary', { type: 'button', disabled: true }, 'Save policy');
  const formatBtn = h('button.btn.btn-ghost', { type: 'button' }, 'Format');
  const resetBtn = h('button.btn.btn-ghost', { type: 'button' }, 'Revert');
  // The draft must be validated and tested, as it is now, before it is saved.
  let validated = null; // the text that validated
  let tested = null; // the text a packet test ran against
  const steps = h('ol.steps');

  const updateGutter = () => {
    const n = editor.value.split('\n').length;
    gutter.textContent = Array.from({ length: n }, (_, i) => i + 1).join('\n');
    gutter.scrollTop = editor.scrollTop;
  };
  editor.addEventListener('scroll', () => (gutter.scrollTop = editor.scrollTop));
  const refresh = () => {
    const text = editor.value;
    const changed = text !== saved;
    const v = validated === text;
    const t = tested === text;
    saveBtn.disabled = !(changed && v && t);
    clear(steps,
      h(`li${changed ? '.done' : ''}`, 'Edit the policy'),
      h(`li${v ? '.done' : ''}`, 'Validate it against the mesh\'s nodes'),
      h(`li${t ? '.done' : ''}`, 'Test a connection it should allow or deny'),
      h(`li${!changed && validated !== null ? '.done' : ''}`, 'Save'));
    if (!changed) status.dataset.state = status.dataset.state || 'saved';
    updateGutter();
  };
  editor.addEventListener('input', () => {
    status.dataset.state = 'edited';
    clear(status, 'Unsaved changes: validate and test them before saving.');
    refresh();
  });
  editor.addEventListener('keydown', (e) => {
    if (e.key === 'Tab') {
      e.preventDefault();
      editor.setRangeText('  ', editor.selectionStart, editor.selectionEnd, 'end');
      editor.dispatchEvent(new Event('input'));
    }
  });
  const parsed = () => {
    try {
      JSON.parse(editor.value);
      return true;
    } catch (e) {
      status.dataset.state = 'invalid';
      clear(status, h('strong', 'Not JSON: '), e.message);
      return false;
    }
  };
  formatBtn.addEventListener('click', () => {
    if (!parsed()) return;
    editor.value = JSON.stringify(JSON.parse(editor.value), null, 2);
    editor.dispatchEvent(new Event('input'));
  });
  resetBtn.addEventListener('click', () => {
    editor.value = saved;
    validated = tested = null;
    clear(results);
    status.dataset.state = 'saved';
    clear(status, `Saved policy (version ${etag}).`);
    refresh();
  });
  validateBtn.addEventListener('click', () => busy(validateBtn, async () => {
    if (!parsed()) return;
    const text = editor.value;
    try {
      const v = await api.validateACL(mesh, text);
      if (v.valid) {
        validated = text;
        status.dataset.state = 'valid';
        clear(status, h('strong', 'Valid. '), `${v.results.length} embedded test${v.results.length === 1 ? '' : 's'} passed.`);
      } else {
        validated = null;
        status.dataset.state = 'invalid';
        clear(status, h('strong', 'Refused: '), v.error);
      }
      clear(results, v.results.length ? resultTable('Embedded tests', v.results) : null);
    } catch (e) {
      validated = null;
      status.dataset.state = 'invalid';
      clear(status, h('strong', 'Refused: '), e.message);
    }
    refresh();
  }));

  // One packet: can SRC reach DST on PROTO/PORT under the draft?
  const src = h('input#acl-src', { placeholder: 'node name or address', required: true });
  const dst = h('input#acl-dst', { placeholder: 'node name or address', required: true });
  const proto = h('select#acl-proto', ['tcp', 'udp', 'icmp', 'sctp'].map((p) => h('option', { value: p, text: p })));
  const port = h('input#acl-port', { type: 'number', min: 0, max: 65535, value: '22' });
  const testBtn = h('button#acl-test.btn', { type: 'submit' }, 'Run test');
  const testOut = h('div#acl-test-result');
  const testForm = h('form.form-row.test-form', field('From', src), field('To', dst), field('Protocol', proto), field('Port', port), h('div.field.field-button', testBtn));
  testForm.addEventListener('submit', (e) => {
    e.preventDefault();
    busy(testBtn, async () => {
      if (!parsed()) return;
      const text = editor.value;
      try {
        const req = { policy: JSON.parse(text), src: src.value.trim(), dst: dst.value.trim(), proto: proto.value };
        if (proto.value !== 'icmp') req.port = Number(port.value || 0);
        const r = await api.testACL(mesh, req);
        const one = r.results[0];
        tested = text;
        testOut.dataset.verdict = one?.got || 'error';
        clear(testOut, one?.error
          ? h('div.verdict.verdict-error', { text: one.error })
          : h(`div.verdict.verdict-${one.got}`, h('strong', { text: one.got === 'accept' ? 'Allowed' : 'Denied' }),
            ` — ${one.src} → ${one.dst} ${one.proto || ''}${one.port ? `/${one.port}` : ''}`));
      } catch (ex) {
        testOut.dataset.verdict = 'error';
        clear(testOut, h('div.verdict.verdict-error', { text: ex.message }));
      }
      refresh();
    });
  });
  proto.addEventListener('change', () => (port.disabled = proto.value === 'icmp'));

  saveBtn.addEventListener('click', () => busy(saveBtn, async () => {
    const text = editor.value;
    if (validated !== text || tested !== text) return;
    try {
      const r = await api.setACL(mesh, text, etag);
      etag = r.headers.get('ETag') || etag;
      saved = JSON.stringify(r.body, null, 2);
      editor.value = saved;
      validated = tested = saved;
      status.dataset.state = 'saved';
      clear(status, h('strong', 'Saved. '), `Nodes receive the new rules with their next netmap (version ${etag}).`);
      toast('Policy saved', 'ok');
    } catch (e) {
      status.dataset.state = 'invalid';
      clear(status, h('strong', e.status === 412 ? 'Changed elsewhere: ' : 'Refused: '), e.message);
    }
    refresh();
  }));

  const nodes = (await api.nodes(mesh)).items.filter((n) => n.status !== 'revoked');
  const dl = h('datalist#acl-nodes', nodes.map((n) => h('option', { value: n.name })));
  src.setAttribute('list', 'acl-nodes');
  dst.setAttribute('list', 'acl-nodes');
  if (nodes[0]) src.value = nodes[0].name;
  if (nodes[1]) dst.value = nodes[1].name;

  setHeader('Access policy', h('span', 'Who may reach whom in ', h('strong', { text: mesh }), '. Default deny; every change is validated and tested before it is saved.'));
  status.dataset.state = 'saved';
  clear(status, `Saved policy (version ${etag}).`);
  main.append(h('div.acl-layout',
    h('div.card.card-editor',
      h('div.card-head', h('div.card-title', 'Policy (JSON)'), h('div.btn-group', formatBtn, resetBtn)),
      h('div.editor', gutter, editor),
      status,
      h('div.card-foot', validateBtn, saveBtn)),
    h('div.acl-side',
      h('div.card', h('div.card-title', 'Before saving'), steps),
      h('div.card', h('div.card-title', 'Test a connection'), h('p.muted.small', 'Checks one packet against the draft above, not the saved policy.'), testForm, testOut, dl),
      results,
      h('div.card', h('div.card-title', 'Syntax'), h('p.muted.small', 'Rules: {"action":"accept","src":[...],"dst":["SEL:PORTS"],"proto":"tcp"}. Selectors: *, node:NAME, tag:NAME, group:NAME, a host name, or a prefix. Tests: {"src","dst","proto","port","want":"accept|deny"}.')))));
  refresh();
}

function resultTable(title, rs) {
  return h('div.card', h('div.card-title', { text: title }),
    h('table.table.table-compact', h('thead', h('tr', ['From', 'To', 'Port', 'Want', 'Got', ''].map((t) => h('th', { text: t })))),
      h('tbody', rs.map((r) => h('tr', h('td', { text: r.src }), h('td', { text: r.dst }), h('td', { text: `${r.proto || 'any'}${r.port ? `/${r.port}` : ''}` }),
        h('td', { text: r.want || '' }), h('td', { text: r.got }), h('td', badge(r.pass ? 'pass' : 'fail', r.pass ? 'ok' : 'bad')))))));
}

// ---------------------------------------------------------------- tokens

async function viewTokens(main) {
  const mesh = state.mesh;
  setHeader('Join tokens', h('span', 'Tokens that let a machine enroll into ', h('strong', { text: mesh }), '. The secret is shown once.'));
  const desc = h('input#token-desc', { placeholder: 'e.g. web servers', maxLength: 256 });
  const tags = h('input#token-tags', { placeholder: 'web, eu', autocomplete: 'off' });
  const ttl = h('select#token-ttl', [['1h', '1 hour'], ['24h', '1 day'], ['168h', '7 days'], ['720h', '30 days']].map(([v, t]) => h('option', { value: v, text: t, selected: v === '24h' })));
  const uses = h('input#token-uses', { type: 'number', min: 0, max: 1000000, value: '1' });
  const auto = h('input#token-auto', { type: 'checkbox' });
  const btn = h('button#token-create.btn.btn-primary', { type: 'submit' }, 'Create token');
  const secretBox = h('div');
  const form = h('form.card',
    h('div.card-title', 'New join token'),
    h('div.form-row',
      field('Description', desc),
      field('Tags', tags, 'Comma-separated; every node enrolled gets them (admins).'),
      field('Expires', ttl),
      field('Max uses', uses, '0 = unlimited'),
      h('label.field.field-check', auto, h('span', 'Approve nodes automatically')),
      h('div.field.field-button', btn)),
    secretBox);
  const table = h('div.card.card-flush');
  main.append(form, table);
  const draw = async () => {
    const list = (await api.tokens(mesh)).items.sort((a, b) => b.created_at.localeCompare(a.created_at));
    if (!list.length) {
      clear(table, empty('No join tokens', 'Create one above, then run x0t node up with it on the machine to enroll.'));
      return;
    }
    clear(table, h('table.table#tokens',
      h('thead', h('tr', ['Token', 'Description', 'Tags', 'Approval', 'Uses', 'Expires', 'State', ''].map((t) => h('th', { text: t })))),
      h('tbody', list.map((t) => h('tr', { dataset: { token: t.id, valid: t.valid } },
        h('td.mono', { text: `${t.prefix}…` }),
        h('td', { text: t.description || '—' }),
        h('td', t.tags.length ? t.tags.map((x) => h('span.chip', { text: `tag:${x}` })) : h('span.muted', '—')),
        h('td', { text: t.auto_approve ? 'automatic' : 'by an admin' }),
        h('td.num', { text: `${t.uses} / ${t.max_uses || '∞'}` }),
        h('td', { title: when(t.expires_at), text: until(t.expires_at) }),
        h('td', t.revoked_at ? badge('revoked') : badge(t.valid ? 'valid' : 'used up', t.valid ? 'ok' : 'none')),
        h('td.actions', t.valid ? h('button.btn.btn-small.btn-ghost-danger', {
          type: 'button',
          on: {
            click: async (e) => {
              if (!(await confirmDialog('Revoke this token?', 'Machines can no longer enroll with it. Nodes already enrolled stay.', 'Revoke'))) return;
              await busy(e.target, async () => {
                try {
                  await api.revokeToken(mesh, t.id);
                  toast('Token revoked', 'ok');
                  await draw();
                } catch (ex) {
                  toast(ex.message, 'error');
                }
              });
            },
          },
        }, 'Revoke') : null))))));
  };
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    busy(btn, async () => {
      try {
        const req = { ttl: ttl.value, max_uses: Number(uses.value || 0) };
        if (desc.value.trim()) req.description = desc.value.trim();
        const tl = tags.value.split(',').map((x) => x.trim()).filter(Boolean);
        if (tl.length) req.tags = tl;
        if (auto.checked) req.auto_approve = true;
        const t = await api.createToken(mesh, req);
        const cmd = `x0t node up --control ${location.origin} --token ${t.token}`;
        clear(secretBox, h('div.secret',
          h('div.secret-head', h('strong', 'Token created.'), ' Copy it now: it is not shown again.'),
          h('div.secret-row', h('code#token-secret', { text: t.token }), copyButton(() => t.token)),
          h('div.muted.small', 'On the machine to enroll:'),
          h('div.secret-row', h('code.cmd', { text: cmd }), copyButton(() => cmd))));
        toast('Join token created', 'ok');
        await draw();
      } catch (ex) {
        toast(ex.message, 'error');
      }
    });
  });
  await draw();
}

// ---------------------------------------------------------------- audit

async function viewAudit(main) {
  const verifyBtn = h('button#audit-verify.btn.btn-primary', { type: 'button' }, 'Verify chain');
  const cpBtn = h('button.btn', { type: 'button' }, 'Sign checkpoint');
  setHeader('Audit log', 'Every change, hash-chained and signed at checkpoints. Newest first.', cpBtn, verifyBtn);
  const verdict = h('div#audit-verdict');
  const table = h('div.card.card-flush');
  const more = h('button.btn', { type: 'button' }, 'Older entries');
  const foot = h('div.center', more);
  main.append(verdict, table, foot);
  const rows = h('tbody');
  clear(table, h('table.table#audit',
    h('thead', h('tr', ['#', 'Time', 'Actor', 'Action', 'Object', 'Hash', ''].map((t) => h('th', { text: t })))), rows));
  let next = 0;
  const load = async () => {
    const page = await api.audit(next, 50);
    for (const e of page.events) {
      const detail = h('tr.audit-detail', { hidden: true },
        h('td', { colSpan: 7 }, h('div.diff',
          h('div', h('div.label', 'Before'), h('pre.code', { text: e.before ? JSON.stringify(e.before, null, 2) : '—' })),
          h('div', h('div.label', 'After'), h('pre.code', { text: e.after ? JSON.stringify(e.after, null, 2) : '—' }))),
        h('div.muted.small.mono', { text: `prev ${e.prev_hash}` }),
        h('div.muted.small.mono', { text: `hash ${e.hash}` })));
      const toggle = h('button.btn.btn-small.btn-ghost', { type: 'button', on: { click: () => (detail.hidden = !detail.hidden) } }, 'Details');
      rows.append(h('tr', { dataset: { seq: e.seq } },
        h('td.num', { text: e.seq }), h('td.nowrap', { text: when(e.time) }), h('td.mono.small', { text: e.actor }),
        h('td', h('span.chip.chip-action', { text: e.action })), h('td', h('span.muted', { text: `${e.kind} ` }), h('span.mono.small', { text: e.target })),
        h('td.mono.small.muted', { title: e.hash, text: `${e.hash.slice(0, 12)}…` }), h('td.actions', toggle)), detail);
    }
    next = page.next || 0;
    foot.hidden = !next;
  };
  more.addEventListener('click', () => busy(more, load));
  verifyBtn.addEventListener('click', () => busy(verifyBtn, async () => {
    try {
      const v = await api.verifyAudit();
      verdict.dataset.ok = v.ok;
      clear(verdict, v.ok
        ? h('div.alert.alert-ok', h('strong', 'Chain verified. '), `${v.events} events, head #${v.head}, ${v.checkpoints} signed checkpoint${v.checkpoints === 1 ? '' : 's'} checked.`)
        : h('div.alert.alert-error', h('strong', 'Chain broken '), `at #${v.broken.seq} (${v.broken.action || '?'} ${v.broken.target || ''}): ${v.broken.reason}`));
    } catch (e) {
      verdict.dataset.ok = 'error';
      clear(verdict, h('div.alert.alert-error', { text: e.message }));
    }
  }));
  cpBtn.addEventListener('click', () => busy(cpBtn, async () => {
    try {
      const c = await api.checkpoint();
      toast(`Checkpoint signed at #${c.seq}`, 'ok');
    } catch (e) {
      toast(e.message, 'error');
    }
  }));
  try {
    await load();
  } catch (e) {
    clear(table, h('div.alert.alert-error', { text: e.status === 403 ? 'The audit log needs an admin key.' : e.message }));
    foot.hidden = true;
  }
}

const VIEWS = { meshes: viewMeshes, nodes: viewNodes, topology: viewTopology, acl: viewACL, tokens: viewTokens, audit: viewAudit };

setUnauthorizedHandler(() => {
  setKey('');
  shell = null;
  showSignIn('Your key is no longer accepted. Sign in again.');
});
window.addEventListener('hashchange', () => {
  if (state.me) render();
});
start();
