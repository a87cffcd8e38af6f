// What the console takes from /metrics (when the caller may read it):
// produce counters for rates, subscription lag, storage figures. Parses
// the Prometheus text format just enough for plain samples.

import { api } from './api.js';

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

export function parseMetrics(text) {
  const samples = new Map();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = LINE.exec(line);
    if (!m) continue;
    const labels = {};
    for (const l of (m[2] || '').matchAll(LABEL)) {
      labels[l[1]] = l[2].replace(/\\(.)/g, (_, c) => (c === 'n' ? '\n' : c));
    }
    if (!samples.has(m[1])) samples.set(m[1], []);
    samples.get(m[1]).push({ labels, value: Number(m[3]) });
  }
  return samples;
}

/** The metrics, or null when /metrics is not readable. */
export async function fetchMetrics() {
  const text = await api.metricsText();
  if (text === null) return null;
  const samples = parseMetrics(text);
  return {
    /** The value of a metric with exactly these label values, or null. */
    get(name, labels = {}) {
      const found = (samples.get(name) || []).find((s) =>
        Object.entries(labels).every(([k, v]) => s.labels[k] === v),
      );
      return found ? found.value : null;
    },
  };
}
