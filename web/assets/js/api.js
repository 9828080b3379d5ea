// The gateway's API as the pages use it: the namespace and token of this tab, JSON lists,
// and the WebSocket address and subprotocols of a run's watch. The token lives in this
// tab's sessionStorage only: never in localStorage, a cookie or a URL.

const TOKEN = 'synqx.token';
const NAMESPACE = 'synqx.namespace';
/** The watch subprotocol the gateway selects (`synqx_api::gateway::PROTOCOL`). */
export const PROTOCOL = 'v1.watch.synqx.io';
const BEARER = 'base64url.bearer.authorization.k8s.io.';

let config = { token: true, title: '' };

/** Reads what the server says of itself (`/ui/config.json`). */
export async function loadConfig() {
  const response = await fetch('/ui/config.json', { cache: 'no-cache' });
  if (!response.ok) throw new Error(`the server's /ui/config.json answered ${response.status}`);
  config = await response.json();
  return config;
}

export function usesToken() {
  return config.token !== false;
}

export function token() {
  return sessionStorage.getItem(TOKEN) || '';
}

export function setToken(value) {
  const trimmed = (value || '').trim();
  if (trimmed) sessionStorage.setItem(TOKEN, trimmed);
  else sessionStorage.removeItem(TOKEN);
}

export function defaultNamespace() {
  return sessionStorage.getItem(NAMESPACE) || config.namespace || 'default';
}

export function rememberNamespace(ns) {
  sessionStorage.setItem(NAMESPACE, ns);
}

/** A refusal of the API: its HTTP code and the `Status` message. */
export class ApiError extends Error {
  constructor(code, reason, message) {
    super(message);
    this.code = code;
    this.reason = reason;
  }
}

function headers() {
  const t = usesToken() ? token() : '';
  return t ? { Authorization: `Bearer ${t}` } : {};
}

/** `GET path` as JSON; a refusal becomes an `ApiError` with the server's message. */
export async function getJson(path) {
  let response;
  try {
    response = await fetch(path, { headers: headers(), cache: 'no-store' });
  } catch (error) {
    throw new ApiError(0, 'Unreachable', `the server did not answer (${error.message}): is the port-forward still running?`);
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) {
    const message = body && body.message ? body.message : `${path} answered ${response.status}`;
    throw new ApiError(response.status, body && body.reason, message);
  }
  return body;
}

const base = (ns) => `/api/v1/namespaces/${encodeURIComponent(ns)}`;

export async function pipelines(ns) {
  return (await getJson(`${base(ns)}/pipelines`)).items || [];
}

export async function runs(ns, pipeline) {
  const query = pipeline ? `?pipeline=${encodeURIComponent(pipeline)}` : '';
  return (await getJson(`${base(ns)}/pipelineruns${query}`)).items || [];
}

/** The graph of the plan a run pinned: `{revision, layers, edges}`. */
export async function runGraph(ns, name) {
  return getJson(`${base(ns)}/pipelineruns/${encodeURIComponent(name)}/graph`);
}

/** The URL and subprotocols of a run's watch, resuming after `since` when given. */
export function watch(ns, name, since) {
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const query = since === undefined || since === null ? '' : `?since=${since}`;
  const url = `${scheme}://${location.host}${base(ns)}/pipelineruns/${encodeURIComponent(name)}/watch${query}`;
  const protocols = [PROTOCOL];
  const t = usesToken() ? token() : '';
  if (t) protocols.push(BEARER + base64url(t));
  return { url, protocols };
}

function base64url(text) {
  const utf8 = new TextEncoder().encode(text);
  let binary = '';
  for (const byte of utf8) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}
