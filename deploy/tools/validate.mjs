// validate.mjs - the Kubernetes manifests of deploy/kubernetes, offline:
// each document against its API schema (kubernetes-models, and the
// Prometheus Operator's for ServiceMonitor), then what no schema can see:
// the kustomization lists every file, names and labels agree between the
// DaemonSet, the Service and the ServiceMonitor, the probes and ports name
// a port that exists, and every flag the DaemonSet passes is one
// `natscope run --help` lists.
//
//   node deploy/tools/validate.mjs MANIFEST_DIR NATSCOPE_BINARY
//
// Exit 0 when all hold, 1 otherwise (each problem on its own line).
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parseAllDocuments } from "yaml";
import { DaemonSet } from "kubernetes-models/apps/v1/DaemonSet";
import { Namespace } from "kubernetes-models/v1/Namespace";
import { Service } from "kubernetes-models/v1/Service";
import { ServiceAccount } from "kubernetes-models/v1/ServiceAccount";
import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor";

const MODELS = {
  "apps/v1/DaemonSet": DaemonSet,
  "v1/Namespace": Namespace,
  "v1/Service": Service,
  "v1/ServiceAccount": ServiceAccount,
  "monitoring.coreos.com/v1/ServiceMonitor": ServiceMonitor,
};

const [dir, natscope] = process.argv.slice(2);
const problems = [];
const bad = (msg) => problems.push(msg);
const objs = {};

let kustomization = null;
for (const file of readdirSync(dir).filter((f) => f.endsWith(".yaml")).sort()) {
  const docs = parseAllDocuments(readFileSync(join(dir, file), "utf8"));
  for (const doc of docs) {
    if (doc.errors.length) {
      bad(`${file}: YAML: ${doc.errors[0].message}`);
      continue;
    }
    const o = doc.toJS();
    if (!o) continue;
    if (o.kind === "Kustomization") {
      kustomization = { file, o };
      continue;
    }
    const key = `${o.apiVersion}/${o.kind}`;
    const Model = MODELS[key];
    if (!Model) {
      bad(`${file}: no schema here for ${key}`);
      continue;
    }
    try {
      new Model(o).validate();
    } catch (e) {
      bad(`${file}: ${key} ${o.metadata?.name}: ${e.message}`);
    }
    objs[o.kind] = { file, o };
  }
}

// the kustomization names every manifest, and only those
if (!kustomization) bad("no kustomization.yaml");
else {
  const listed = new Set(kustomization.o.resources || []);
  const files = readdirSync(dir).filter((f) => f.endsWith(".yaml") && f !== "kustomization.yaml");
  for (const f of files) if (!listed.has(f)) bad(`kustomization.yaml does not list ${f}`);
  for (const f of listed) if (!files.includes(f)) bad(`kustomization.yaml lists ${f}, which is missing`);
}

const ds = objs.DaemonSet?.o, svc = objs.Service?.o, sm = objs.ServiceMonitor?.o;
if (!ds || !svc || !sm) bad("a DaemonSet, a Service and a ServiceMonitor are expected");
else {
  const podLabels = ds.spec.template.metadata.labels || {};
  const matches = (sel) => Object.entries(sel || {}).every(([k, v]) => podLabels[k] === v);
  if (!matches(ds.spec.selector.matchLabels)) bad("the DaemonSet's selector does not match its pods");
  if (!matches(svc.spec.selector)) bad("the Service's selector does not match the pods");
  const svcLabels = svc.metadata.labels || {};
  if (!Object.entries(sm.spec.selector.matchLabels || {}).every(([k, v]) => svcLabels[k] === v))
    bad("the ServiceMonitor's selector does not match the Service");
  const c = ds.spec.template.spec.containers[0];
  const ports = new Set((c.ports || []).map((p) => p.name));
  for (const probe of ["startupProbe", "livenessProbe", "readinessProbe"]) {
    const p = c[probe]?.httpGet;
    if (!p) bad(`no ${probe}`);
    else if (!ports.has(p.port)) bad(`${probe} names port ${p.port}, which the container lacks`);
    else if (p.path !== "/healthz") bad(`${probe} asks ${p.path}, not /healthz`);
  }
  if (!ports.has(svc.spec.ports[0].targetPort)) bad("the Service's targetPort is no container port");
  if (sm.spec.endpoints[0].port !== svc.spec.ports[0].name) bad("the ServiceMonitor's port is not the Service's");
  if (!ds.spec.template.spec.hostNetwork) bad("the DaemonSet must use the host network (the node's conntrack)");
  const caps = c.securityContext?.capabilities || {};
  if (JSON.stringify(caps.drop) !== '["ALL"]' || JSON.stringify(caps.add) !== '["NET_ADMIN"]')
    bad("capabilities: drop ALL and add NET_ADMIN only");
  if (!c.securityContext?.readOnlyRootFilesystem) bad("the root file system must be read-only");
  // every flag the DaemonSet passes exists
  if (natscope) {
    const help = execFileSync(natscope, [c.args[0], "--help"], { encoding: "utf8" });
    for (const a of c.args.filter((x) => x.startsWith("--")))
      if (!new RegExp(`(^|\\s)${a}(\\s|$)`, "m").test(help))
        bad(`the DaemonSet passes ${a}, which natscope ${c.args[0]} --help does not list`);
  }
}

for (const p of problems) console.log("validate: " + p);
console.log(`validate: ${problems.length ? "FAIL" : "ok"}: ${Object.keys(objs).length} objects in ${dir}`);
process.exit(problems.length ? 1 : 0);
