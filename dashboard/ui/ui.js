// Small DOM helpers. Text from the API is only ever set as text, never as
// markup.

const SVG = 'http://www.w3.org/2000/svg';

// h builds an element: h('div.card#id', {attrs, on: {click}}, ...children).
export function h(spec, props, ...children) {
  if (props == null || typeof props !== 'object' || props instanceof Node || Array.isArray(props)) {
    if (props != null) children.unshift(props);
    props = {};
  }
  const [, tag, rest] = spec.match(/^([a-z0-9-]+)(.*)$/i);
  const el = props.svg ? document.createElementNS(SVG, tag) : document.createElement(tag);
  for (const m of rest.matchAll(/([.#])([\w-]+)/g)) {
    if (m[1] === '.') el.classList.add(m[2]);
    else el.id = m[2];
  }
  for (const [k, v] of Object.entries(props)) {
    if (k === 'svg' || v == null || v === false) continue;
    if (k === 'on') {
      for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
    } else if (k === 'class') {
      for (const c of String(v).split(/\s+/).filter(Boolean)) el.classList.add(c);
    } else if (k === 'dataset') {
      for (const [dk, dv] of Object.entries(v)) if (dv != null) el.dataset[dk] = String(dv);
    } else if (k === 'text') {
      el.textContent = v;
    } else if (k in el && !props.svg && typeof v !== 'string') {
      el[k] = v;
    } else {
      el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  append(el, children);
  return el;
}

export const s = (spec, props, ...children) => h(spec, { ...(props || {}), svg: true }, ...children);

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

// toast shows a short message at the bottom right.
export function toast(msg, kind = 'info') {
  let box = document.getElementById('toasts');
  if (!box) {
    box = h('div#toasts', { role: 'status', 'aria-live': 'polite' });
    document.body.append(box);
  }
  const t = h(`div.toast.toast-${kind}`, { text: msg });
  box.append(t);
  setTimeout(() => t.classList.add('fade'), 4500);
  setTimeout(() => t.remove(), 5000);
}

// confirmDialog asks a yes/no question in a modal dialog.
export function confirmDialog(title, text, action = 'Confirm', danger = true) {
  return new Promise((resolve) => {
    const dlg = h('dialog.modal',
      h('h3', { text: title }),
      h('p', { text }),
      h('div.actions',
        h('button.btn', { type: 'button', on: { click: () => dlg.close('no') } }, 'Cancel'),
        h(`button.btn.${danger ? 'btn-danger' : 'btn-primary'}`, { type: 'button', on: { click: () => dlg.close('yes') } }, action)));
    dlg.addEventListener('close', () => {
      resolve(dlg.returnValue === 'yes');
      dlg.remove();
    });
    document.body.append(dlg);
    dlg.showModal();
  });
}

export function bytes(n) {
  if (!n) return '0 B';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n >= 100 || i === 0 ? Math.round(n) : n.toFixed(1)} ${u[i]}`;
}

export function ago(t, now = Date.now()) {
  if (!t) return 'never';
  const d = Math.max(0, (now - new Date(t).getTime()) / 1000);
  if (d < 2) return 'just now';
  if (d < 60) return `${Math.round(d)} s ago`;
  if (d < 3600) return `${Math.round(d / 60)} min ago`;
  if (d < 86400) return `${Math.round(d / 3600)} h ago`;
  return `${Math.round(d / 86400)} d ago`;
}

// when formats a time as local "2026-01-31 14:05:09".
export function when(t) {
  if (!t) return '';
  const d = new Date(t);
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

export function until(t, now = Date.now()) {
  const d = (new Date(t).getTime() - now) / 1000;
  if (d <= 0) return 'expired';
  if (d < 3600) return `in ${Math.round(d / 60)} min`;
  if (d < 86400) return `in ${Math.round(d / 3600)} h`;
  return `in ${Math.round(d / 86400)} d`;
}

export function badge(text, kind) {
  return h(`span.badge.badge-${kind || text || 'none'}`, { text: text || '—' });
}

export function empty(title, text, ...actions) {
  return h('div.empty', h('div.empty-title', { text: title }), text ? h('p', { text }) : null, actions.length ? h('div.actions', actions) : null);
}

// field builds a labelled form control.
export function field(label, control, hint) {
  return h('label.field', h('span.label', { text: label }), control, hint ? h('span.hint', { text: hint }) : null);
}

// busy disables a button while fn runs.
export async function busy(btn, fn) {
  btn.disabled = true;
  btn.classList.add('busy');
  try {
    return await fn();
  } finally {
    btn.disabled = false;
    btn.classList.remove('busy');
  }
}

export function copyButton(getText) {
  const b = h('button.btn.btn-small', { type: 'button' }, 'Copy');
  b.addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(getText());
      b.textContent = 'Copied';
    } catch {
      b.textContent = 'Select and copy';
    }
    setTimeout(() => (b.textContent = 'Copy'), 1500);
  });
  return b;
}
