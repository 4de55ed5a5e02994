import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { parseGatewayConfig } from '../../src/cluster/gateway/config.js';
import { GatewayMetrics } from '../../src/cluster/gateway/metrics.js';
import { parseServeConfig } from '../../src/cli/serve-config.js';
import { ROOT } from './support/processes.js';

// The Kubernetes manifests parse, and their parts reference each other consistently:
// selectors, ports, probes, Service names, Secrets, the HPA metric and the CLI flags.
// Parsed YAML is untyped; the assertions below are the type check.
type Obj = Record<string, any>;
const DIR = join(ROOT, 'deploy/kubernetes');
const files = readdirSync(DIR).filter((f) => f.endsWith('.yaml'));
const docs: (Obj & { file: string })[] = files.flatMap((file) =>
  parseAllDocuments(readFileSync(join(DIR, file), 'utf8')).map((d) => {
    expect(d.errors, file).toEqual([]);
    return { ...(d.toJS() as Obj), file };
  }),
);
const resources = docs.filter((d) => d.kind !== undefined && d.file !== 'prometheus-adapter-rules.yaml');
const one = (kind: string, name: string): Obj => {
  const found = resources.filter((d) => d.kind === kind && d.metadata?.name === name);
  expect(found, `${kind}/${name}`).toHaveLength(1);
  return found[0]!;
};
const worker = one('Deployment', 'autoglm-worker');
const gateway = one('Deployment', 'autoglm-gateway');
const container = (d: Obj): Obj => d.spec.template.spec.containers[0];
const matches = (selector: Record<string, string>, labels: Record<string, string>): boolean =>
  Object.entries(selector).every(([k, v]) => labels[k] === v);
/** Container args with $(VAR) expanded the way the kubelet does (values made up). */
const expandedArgs = (c: Obj): string[] => (c.args as string[]).map((a) => a.replace(/\$\(POD_NAMESPACE\)/g, 'default'));
const flag = (args: string[], name: string): string | undefined => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
};

describe('deploy/kubernetes', () => {
  test('every file parses and kustomization lists every resource file', () => {
    const k = docs.find((d) => d.kind === 'Kustomization')!;
    expect([...k.resources].sort()).toEqual(
      files.filter((f) => f !== 'kustomization.yaml' && f !== 'prometheus-adapter-rules.yaml').sort(),
    );
    for (const d of resources.filter((r) => r.kind !== 'Kustomization')) expect(d.metadata?.name, d.file).toMatch(/^autoglm-/);
  });

  test('Deployments select their own pods; Services and PDBs select the right Deployment', () => {
    for (const d of [worker, gateway]) expect(matches(d.spec.selector.matchLabels, d.spec.template.metadata.labels)).toBe(true);
    expect(matches(worker.spec.selector.matchLabels, gateway.spec.template.metadata.labels)).toBe(false);
    const headless = one('Service', 'autoglm-workers');
    expect(headless.spec.clusterIP).toBe('None');
    expect(matches(headless.spec.selector, worker.spec.template.metadata.labels)).toBe(true);
    expect(matches(one('Service', 'autoglm-gateway').spec.selector, gateway.spec.template.metadata.labels)).toBe(true);
    expect(matches(one('PodDisruptionBudget', 'autoglm-worker').spec.selector.matchLabels, worker.spec.template.metadata.labels)).toBe(
      true,
    );
    expect(matches(one('PodDisruptionBudget', 'autoglm-gateway').spec.selector.matchLabels, gateway.spec.template.metadata.labels)).toBe(
      true,
    );
    expect(gateway.spec.replicas).toBeGreaterThanOrEqual(2);
  });

  test('ports: Service targetPorts name container ports, and those are the ports the CLIs listen on', () => {
    for (const [svc, dep] of [
      ['autoglm-workers', worker],
      ['autoglm-gateway', gateway],
    ] as const) {
      const names = (container(dep).ports as Obj[]).map((p) => p.name);
      for (const p of one('Service', svc).spec.ports as Obj[]) expect(names).toContain(p.targetPort);
    }
    expect(Number(flag(container(worker).args, 'port'))).toBe(container(worker).ports[0].containerPort);
    expect(Number(flag(container(gateway).args, 'port'))).toBe(container(gateway).ports[0].containerPort);
  });

  test('probes: readiness /ready and liveness /health on the http port; GPU, preStop drain and grace period on workers', () => {
    for (const d of [worker, gateway]) {
      const c = container(d);
      expect(c.readinessProbe.httpGet).toEqual({ path: '/ready', port: 'http' });
      expect(c.livenessProbe.httpGet).toEqual({ path: '/health', port: 'http' });
    }
    const c = container(worker);
    expect(Number(c.resources.limits['nvidia.com/gpu'])).toBeGreaterThanOrEqual(1);
    expect(c.lifecycle.preStop.exec.command.join(' ')).toMatch(/kill -TERM/);
    const drainS = Number(flag(c.args, 'drain-timeout-ms')) / 1000;
    expect(worker.spec.template.spec.terminationGracePeriodSeconds).toBeGreaterThan(drainS);
  });

  test('the CLI args are valid flags of autoglm serve and autoglm gateway, and discovery watches the workers Service at the worker port', () => {
    const wargs = expandedArgs(container(worker));
    expect(wargs[0]).toBe('serve');
    const serve = parseServeConfig(wargs.slice(1), {});
    expect(serve).not.toBe('help');
    const gargs = expandedArgs(container(gateway));
    expect(gargs[0]).toBe('gateway');
    const g = parseGatewayConfig(gargs.slice(1), {});
    expect(g).not.toBe('help');
    if (g === 'help' || serve === 'help') return;
    expect(g.registryKind).toBe('kubernetes');
    const service = one('Service', flag(gargs, 'k8s-service')!);
    expect(matches(service.spec.selector, worker.spec.template.metadata.labels)).toBe(true);
    // EndpointSlice ports carry the Service port's name and its target's number: the named
    // Service port must lead to the container port the worker listens on.
    const servicePort = (service.spec.ports as Obj[]).find((p) => p.name === flag(gargs, 'k8s-port-name'));
    expect(servicePort, 'the --k8s-port-name port of the Service').toBeDefined();
    const target = (container(worker).ports as Obj[]).find(
      (p) => p.name === servicePort!.targetPort || p.containerPort === servicePort!.targetPort,
    );
    expect(target?.containerPort).toBe(serve.port);
    expect(servicePort!.port).toBe(serve.port);
  });

  test('the DNS alternative in the gateway Deployment comments is valid and points at the headless Service', () => {
    // The commented-out args ("#   - --registry", "#   - dns", ...), in place of the kubernetes registry's.
    const text = readFileSync(join(DIR, 'gateway-deployment.yaml'), 'utf8');
    const alternative = [...text.matchAll(/^\s*#\s+- (.+)$/gm)].map((m) => String(parseYaml(m[1]!)));
    expect(alternative.slice(0, 2)).toEqual(['--registry', 'dns']);
    const gargs = expandedArgs(container(gateway));
    const registryAt = gargs.indexOf('--registry');
    const withDns = [...gargs.slice(1, registryAt), ...alternative.map((a) => a.replace(/\$\(POD_NAMESPACE\)/g, 'default'))];
    const g = parseGatewayConfig(withDns, {});
    if (g === 'help') throw new Error('help');
    expect(g.registryKind).toBe('dns');
    expect(flag(withDns, 'dns-name')).toBe('autoglm-workers.default.svc.cluster.local');
    expect(one('Service', 'autoglm-workers').spec.clusterIP).toBe('None');
    expect(Number(flag(withDns, 'dns-port'))).toBe(container(worker).ports[0].containerPort);
    // the variable the name uses is set
    expect((container(gateway).env as Obj[]).some((e) => e.name === 'POD_NAMESPACE')).toBe(true);
  });

  test('RBAC: the gateway pods run as a ServiceAccount bound to a Role that may get, list and watch EndpointSlices, nothing more', () => {
    const account = gateway.spec.template.spec.serviceAccountName as string;
    expect(gateway.spec.template.spec.automountServiceAccountToken).not.toBe(false);
    one('ServiceAccount', account);
    const bindings = resources.filter(
      (d) => d.kind === 'RoleBinding' && (d.subjects as Obj[]).some((s) => s.kind === 'ServiceAccount' && s.name === account),
    );
    expect(bindings).toHaveLength(1);
    const binding = bindings[0]!;
    // in the binding's namespace (where kubectl apply puts everything), not elsewhere
    for (const s of binding.subjects as Obj[]) expect(s.namespace).toBeUndefined();
    expect(binding.roleRef).toEqual({ apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: expect.any(String) });
    const role = one('Role', binding.roleRef.name);
    expect(role.rules).toEqual([{ apiGroups: ['discovery.k8s.io'], resources: ['endpointslices'], verbs: ['get', 'list', 'watch'] }]);
  });

  test('env: every secretKeyRef exists in the Secret; both sides share the cluster secret; env names are real AUTOGLM_ flags', () => {
    const secret = one('Secret', 'autoglm-secrets');
    const refs = [worker, gateway].flatMap((d) => (container(d).env as Obj[]).filter((e) => e.valueFrom?.secretKeyRef));
    for (const e of refs) {
      expect(e.valueFrom.secretKeyRef.name).toBe('autoglm-secrets');
      expect(Object.keys(secret.stringData)).toContain(e.valueFrom.secretKeyRef.key);
    }
    const envOf = (d: Obj): Record<string, string> =>
      Object.fromEntries(
        (container(d).env as Obj[]).map((e) => [
          e.name,
          e.valueFrom?.secretKeyRef ? secret.stringData[e.valueFrom.secretKeyRef.key] : e.value,
        ]),
      );
    const wenv = envOf(worker);
    const genv = envOf(gateway);
    const serve = parseServeConfig(expandedArgs(container(worker)).slice(1), wenv);
    const g = parseGatewayConfig(expandedArgs(container(gateway)).slice(1), genv);
    if (serve === 'help' || g === 'help') throw new Error('help');
    expect(serve.clusterSecret).toBeDefined();
    expect(g.options.clusterSecret).toBe(serve.clusterSecret);
    expect(g.options.auth.apiKeys.length).toBeGreaterThan(0);
  });

  test('the HPA scales the worker Deployment on the metric the gateway exports', async () => {
    const hpa = one('HorizontalPodAutoscaler', 'autoglm-worker');
    expect(hpa.spec.scaleTargetRef).toMatchObject({ kind: 'Deployment', name: 'autoglm-worker' });
    const metricName = hpa.spec.metrics[0].external.metric.name as string;
    const rules = docs.find((d) => d.file === 'prometheus-adapter-rules.yaml')!;
    const rule = (rules.rules.external as Obj[]).find((r) => r.name.as === metricName)!;
    expect(rule).toBeDefined();
    const exported = await new GatewayMetrics().registry.getMetricsAsJSON();
    const source = /__name__="([^"]+)"/.exec(rule.seriesQuery)![1]!;
    expect(exported.map((m) => m.name)).toContain(source);
  });

  test('the Dockerfile runs the CLI and exposes the ports the manifests use', () => {
    const dockerfile = readFileSync(join(ROOT, 'deploy/Dockerfile'), 'utf8');
    expect(dockerfile).toMatch(/ENTRYPOINT \[.*"dist\/src\/cli\/main\.js"\]/);
    const exposed = /EXPOSE ([\d ]+)/.exec(dockerfile)![1]!.trim().split(/\s+/).map(Number);
    expect(exposed).toEqual(expect.arrayContaining([container(worker).ports[0].containerPort, container(gateway).ports[0].containerPort]));
    for (const d of [worker, gateway]) expect(container(d).image).toBe('autoglm:latest');
  });
});
