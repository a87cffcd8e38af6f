// The console's only way to the server: the public JSON API (/v1/...) and
// the tail WebSocket, with the user's bearer token when one is set. The
// token lives in sessionStorage (this tab only, gone when it closes).

import { parseJson } from './json.js';

const TOKEN_KEY = 'weir.console.token';

export function getToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) || '';
  } catch {
    return '';
  }
}

export function setToken(token) {
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // Storage disabled: the token lasts as long as the page.
  }
  memoryToken = token || '';
  window.dispatchEvent(new CustomEvent('weir:token'));
}

let memoryToken = '';
const token = () => getToken() || memoryToken;

/** A failed call: HTTP status and the problem document's code and detail. */
export class ApiError extends Error {
  constructor(status, problem) {
    const detail = (problem && (problem.detail || problem.title)) || `HTTP ${status}`;
    super(detail);
    this.status = status;
    this.code = (problem && problem.code) || (status ? `http_${status}` : 'network');
    this.detail = detail;
    this.field = problem ? problem.field : undefined;
  }
}

/** One-line description of an error for the user. */
export function describe(err) {
  if (err instanceof ApiError) {
    const where = err.field ? ` (${err.field})` : '';
    return err.status ? `${err.status} ${err.code}: ${err.detail}${where}` : err.detail;
  }
  return String((err && err.message) || err);
}

/**
 * Calls the API. A 401 also raises `weir:unauthorized` (the console then
 * asks for a token) unless `quiet`.
 */
export async function request(method, path, { body, json, quiet = false, text = false } = {}) {
  const headers = { accept: text ? 'text/plain' : 'application/json' };
  const bearer = token();
  if (bearer) headers.authorization = `Bearer ${bearer}`;
  const payload = json !== undefined ? json : body === undefined ? undefined : JSON.stringify(body);
  if (payload !== undefined) headers['content-type'] = 'application/json';
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: payload,
      cache: 'no-store',
      credentials: 'omit',
      redirect: 'error',
    });
  } catch (e) {
    throw new ApiError(0, { code: 'network', detail: `cannot reach the server: ${e.message}` });
  }
  const answer = await response.text();
  if (!response.ok) {
    let problem = null;
    try {
      problem = JSON.parse(answer);
    } catch {
      problem = null;
    }
    if (!problem || typeof problem !== 'object') problem = null;
    if (response.status === 401 && !quiet) {
      window.dispatchEvent(new CustomEvent('weir:unauthorized', { detail: { hadToken: Boolean(bearer) } }));
    }
    throw new ApiError(response.status, problem);
  }
  if (text) return answer;
  return answer ? parseJson(answer) : null;
}

const enc = encodeURIComponent;
const topicPath = (t) => `/v1/topics/${enc(t)}`;
const subPath = (t, s) => `${topicPath(t)}/subscriptions/${enc(s)}`;

/** Every page of a list endpoint, up to `max` items. */
async function allPages(path, field, max) {
  const items = [];
  let cursor = null;
  do {
    const q = new URLSearchParams({ limit: '1000' });
    if (cursor) q.set('cursor', cursor);
    const page = await request('GET', `${path}?${q}`);
    items.push(...page[field]);
    cursor = page.next;
  } while (cursor && items.length < max);
  return { items, truncated: Boolean(cursor) };
}

export const api = {
  readyz: () =>
    fetch('/readyz', { cache: 'no-store' })
      .then(async (r) => ({ ok: r.ok, status: (await r.json()).status }))
      .catch(() => ({ ok: false, status: 'unreachable' })),
  /** Prometheus text, or null when the caller may not read it. */
  metricsText: () => request('GET', '/metrics', { quiet: true, text: true }).catch(() => null),

  topics: () => allPages('/v1/topics', 'topics', 5000),
  topic: (t) => request('GET', topicPath(t)),
  putTopic: (t, spec) => request('PUT', topicPath(t), { body: spec }),
  deleteTopic: (t) => request('DELETE', topicPath(t)),
  produce: (t, messages) => request('POST', `${topicPath(t)}/messages`, { body: { messages } }),
  /** Produces one message whose JSON payload is sent as typed (`rawValue`,
   * already checked to be one JSON value), so its text and numbers are
   * stored exactly, as any other producer's would be. */
  produceRaw: (t, message, rawValue) => {
    JSON.parse(rawValue);
    const rest = JSON.stringify(message);
    const members = rest === '{}' ? '' : `${rest.slice(1, -1)},`;
    return request('POST', `${topicPath(t)}/messages`, { json: `{"messages":[{${members}"value":${rawValue}}]}` });
  },
  read: (t, partition, query) =>
    request('GET', `${topicPath(t)}/partitions/${enc(partition)}/messages?${new URLSearchParams(query)}`),

  subscriptions: (t) => allPages(`${topicPath(t)}/subscriptions`, 'subscriptions', 5000),
  subscription: (t, s) => request('GET', subPath(t, s)),
  putSubscription: (t, s, spec) => request('PUT', subPath(t, s), { body: spec }),
  deleteSubscription: (t, s) => request('DELETE', subPath(t, s)),
  pull: (t, s, body) => request('POST', `${subPath(t, s)}/pull`, { body }),
  ack: (t, s, ackIds) => request('POST', `${subPath(t, s)}/ack`, { body: { ack_ids: ackIds } }),
  nack: (t, s, body) => request('POST', `${subPath(t, s)}/nack`, { body }),
  seek: (t, s, to) => request('POST', `${subPath(t, s)}/seek`, { body: { to } }),
  // `max_messages` is understood by every server; filters and dry runs
  // only by those that list dead-letter records.
  redrive: (t, s, max) =>
    request('POST', `${subPath(t, s)}/dead-letters/redrive`, { body: { max_messages: max } }),
  redriveFiltered: (t, s, body) => request('POST', `${subPath(t, s)}/dead-letters/redrive`, { body }),
  // Announced in the API contract, not served by every server: callers
  // check the subscription's `paused` field / a 404 `not_found` first.
  pause: (t, s, reason) => request('POST', `${subPath(t, s)}/pause`, { body: reason ? { reason } : {} }),
  resume: (t, s) => request('POST', `${subPath(t, s)}/resume`, { body: {} }),
  /** The leases out now (every consumer's), or null on servers without the list. */
  leases: (t, s) => request('GET', `${subPath(t, s)}/leases?limit=200`, { quiet: true }).catch(() => null),
  deadLetters: (t, s, query) =>
    request('GET', `${subPath(t, s)}/dead-letters?${new URLSearchParams(query)}`),
};

/**
 * Opens the live tail of a topic. Browsers cannot set headers on a
 * WebSocket, so the token travels as the subprotocol `bearer.<token>`
 * next to `weir` (which the server selects, so its answer does not echo
 * the token).
 */
export function openTail(topic, from) {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const url = `${scheme}//${location.host}${topicPath(topic)}/ws?${new URLSearchParams({ from })}`;
  const bearer = token();
  const protocols = bearer ? ['weir', `bearer.${bearer}`] : ['weir'];
  return new WebSocket(url, protocols);
}
