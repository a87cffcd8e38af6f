// Validates rendered ServiceMonitor / PrometheusRule objects against the
// prometheus-operator CRD schemas shipped by the npm package
// @kubernetes-models/prometheus-operator (generated from the operator's API
// types: types, enums, patterns and required fields; it does not reject
// unknown fields - render_checks.py crd-fields does that).
//
// usage: node crd_validate.mjs NODE_PREFIX CRD_JSON
//   NODE_PREFIX: directory whose node_modules holds the package
//   CRD_JSON:    JSON array of objects (render_checks.py split)
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [prefix, file] = process.argv.slice(2);
if (!prefix || !file) {
  console.error("usage: node crd_validate.mjs NODE_PREFIX CRD_JSON");
  process.exit(2);
}
const modelsDir = join(prefix, "node_modules", "@kubernetes-models", "prometheus-operator",
  "monitoring.coreos.com", "v1");
const load = async (kind) => (await import(pathToFileURL(join(modelsDir, `${kind}.js`)).href))[kind];
const models = {
  ServiceMonitor: await load("ServiceMonitor"),
  PrometheusRule: await load("PrometheusRule"),
};

const docs = JSON.parse(readFileSync(file, "utf8"));
let failed = 0;
for (const doc of docs) {
  const where = `${doc.kind}/${doc.metadata?.name}`;
  const Model = models[doc.kind];
  if (!Model || doc.apiVersion !== "monitoring.coreos.com/v1") {
    console.error(`error: ${where}: no schema for ${doc.apiVersion} ${doc.kind}`);
    failed++;
    continue;
  }
  try {
    new Model(doc).validate();
    console.log(`ok: ${where} matches the monitoring.coreos.com/v1 ${doc.kind} schema`);
  } catch (e) {
    console.error(`error: ${where}: ${e.message}`);
    failed++;
  }
}
if (docs.length === 0) {
  console.error("error: no custom resources to validate");
  failed++;
}
process.exit(failed ? 1 : 0);
