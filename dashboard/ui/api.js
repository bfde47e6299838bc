// The REST API under /api/v1, called with the API key the user signed in
// with. The key lives in sessionStorage: it is gone when the tab closes.

const KEY = 'x0t.apiKey';

export class APIError extends Error {
  constructor(status, problem) {
    const detail = problem?.detail || problem?.title || `HTTP ${status}`;
    const extra = (problem?.errors || [])
      .map((e) => [e.location, e.message].filter(Boolean).join(': '))
      .filter((m) => m && m !== detail);
    super(extra.length ? `${detail} (${extra.join('; ')})` : detail);
    this.status = status;
    this.problem = problem;
  }
}

export function getKey() {
  return sessionStorage.getItem(KEY) || '';
}

export function setKey(k) {
  if (k) sessionStorage.setItem(KEY, k);
  else sessionStorage.removeItem(KEY);
}

// onUnauthorized is called when a request is refused for the key (401).
export let onUnauthorized = () => {};
export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

// call sends one request and returns {status, body, headers}; it throws an
// APIError for an error status. body may be an object (sent as JSON) or a
// string (sent as is, as JSON).
export async function call(method, path, body, { headers = {}, signal, key } = {}) {
  const h = { Accept: 'application/json, application/problem+json', ...headers };
  const k = key ?? getKey();
  if (k) h.Authorization = `Bearer ${k}`;
  let payload;
  if (body !== undefined) {
    h['Content-Type'] = 'application/json';
    payload = typeof body === 'string' ? body : JSON.stringify(body);
  }
  const resp = await fetch(`/api/v1${path}`, { method, headers: h, body: payload, signal, cache: 'no-store' });
  let data = null;
  const text = await resp.text();
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (!resp.ok) {
    if (resp.status === 401 && key === undefined) onUnauthorized();
    throw new APIError(resp.status, typeof data === 'object' ? data : { detail: String(data || resp.statusText) });
  }
  return { status: resp.status, body: data, headers: resp.headers };
}

export const get = async (path, opts) => (await call('GET', path, undefined, opts)).body;
export const post = async (path, body, opts) => (await call('POST', path, body, opts)).body;
export const del = async (path, opts) => (await call('DELETE', path, undefined, opts)).body;

const enc = encodeURIComponent;

export const api = {
  whoami: (key) => get('/auth/whoami', { key }),
  meshes: () => get('/meshes?limit=1000'),
  createMesh: (req) => post('/meshes', req),
  deleteMesh: (m) => del(`/meshes/${enc(m)}`),
  nodes: (m, signal) => get(`/meshes/${enc(m)}/nodes?limit=1000`, { signal }),
  approveNode: (m, n) => post(`/meshes/${enc(m)}/nodes/${enc(n)}/approve`),
  revokeNode: (m, n) => post(`/meshes/${enc(m)}/nodes/${enc(n)}/revoke`),
  deleteNode: (m, n) => del(`/meshes/${enc(m)}/nodes/${enc(n)}`),
  topology: (m, signal) => get(`/meshes/${enc(m)}/topology`, { signal }),
  tokens: (m) => get(`/meshes/${enc(m)}/tokens?limit=1000`),
  createToken: (m, req) => post(`/meshes/${enc(m)}/tokens`, req),
  revokeToken: (m, id) => del(`/meshes/${enc(m)}/tokens/${enc(id)}`),
  acl: (m) => call('GET', `/meshes/${enc(m)}/acl`),
  validateACL: (m, text) => post(`/meshes/${enc(m)}/acl/validate`, text),
  testACL: (m, req) => post(`/meshes/${enc(m)}/acl/test`, req),
  setACL: (m, text, etag) => call('PUT', `/meshes/${enc(m)}/acl`, text, { headers: etag ? { 'If-Match': etag } : {} }),
  audit: (before, limit = 50) => get(`/audit?limit=${limit}${before ? `&before=${before}` : ''}`),
  verifyAudit: () => get('/audit/verify'),
  checkpoint: () => post('/audit/checkpoints'),
};
