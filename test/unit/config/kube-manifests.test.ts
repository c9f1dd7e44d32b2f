// daemonset/ checked offline: every manifest parses and has what its kind requires, and the names,
// ports and flags in it are the ones the code uses (so the two cannot drift apart). Where kubectl
// is installed it renders the kustomization and runs a client-side dry-run apply against the fake
// API server (kubectl needs discovery even for a client dry-run; the fake serves it).
import { describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { parseAllDocuments } from 'yaml';
import { FakeApiServer } from '../../support/fake-apiserver.js';
import { WATCHED_TYPES } from '../../../src/config/kube-resources.js';
import { CONTROL_PLANE_DEBUG_PORT, HBONE_PORT, READINESS_PORT } from '../../../src/common/ports.js';
import { CA_SECRET_NAME } from '../../../src/controlplane/kube-ca-secret.js';
import { CA_TOKEN_AUDIENCE } from '../../../src/controlplane/kube-token-review.js';
import { TRUST_BUNDLE_CONFIGMAP, TRUST_BUNDLE_KEY } from '../../../src/controlplane/kube-trust-bundle.js';
import {
  CONTROL_PLANE_SERVICE,
  DEFAULT_NAMESPACE,
  LEADER_LEASE,
  NODE_SERVICE_ACCOUNT,
} from '../../../src/controlplane/kube-controlplane.js';
import { renderWaypoint } from '../../../src/controlplane/kube-waypoint-controller.js';

const run = promisify(execFile);
const DIR = path.resolve(__dirname, '../../../daemonset');

type Doc = Record<string, unknown> & {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
};
interface Container {
  name: string;
  image: string;
  args?: string[];
  command?: string[];
  ports?: { containerPort: number; name?: string }[];
  readinessProbe?: { httpGet?: { port: number; path: string }; tcpSocket?: { port: number } };
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  securityContext?: { capabilities?: { add?: string[]; drop?: string[] } };
}
interface PodTemplate {
  metadata: { labels: Record<string, string> };
  spec: { serviceAccountName: string; containers: Container[]; volumes?: Record<string, unknown>[] };
}

const KNOWN: Record<string, string> = {
  Namespace: 'v1',
  ServiceAccount: 'v1',
  Service: 'v1',
  ClusterRole: 'rbac.authorization.k8s.io/v1',
  ClusterRoleBinding: 'rbac.authorization.k8s.io/v1',
  Role: 'rbac.authorization.k8s.io/v1',
  RoleBinding: 'rbac.authorization.k8s.io/v1',
  Deployment: 'apps/v1',
  DaemonSet: 'apps/v1',
  PodDisruptionBudget: 'policy/v1',
  GatewayClass: 'gateway.networking.k8s.io/v1',
};
const CLUSTER_SCOPED = new Set(['Namespace', 'ClusterRole', 'ClusterRoleBinding', 'GatewayClass']);

async function manifests(): Promise<Map<string, Doc[]>> {
  const out = new Map<string, Doc[]>();
  for (const f of (await readdir(DIR)).filter((f) => f.endsWith('.yaml')).sort()) {
    if (f === 'kustomization.yaml' || f === 'waypoint-template.yaml') continue;
    const docs = parseAllDocuments(await readFile(path.join(DIR, f), 'utf8'));
    for (const d of docs) expect(d.errors, f).toEqual([]);
    out.set(f, docs.map((d) => d.toJS() as Doc).filter(Boolean));
  }
  return out;
}
const all = async () => [...(await manifests()).values()].flat();
const find = (docs: Doc[], kind: string, name: string) => {
  const d = docs.find((x) => x.kind === kind && x.metadata.name === name);
  if (!d) throw new Error(`${kind} ${name} missing from daemonset/`);
  return d;
};
const template = (d: Doc) => (d.spec as { template: PodTemplate }).template;

/** The flags `ambit <sub>` accepts, read from the parseArgs options in src/cli/main.ts. */
async function cliFlags(sub: string): Promise<Set<string>> {
  const src = await readFile(path.resolve(__dirname, '../../../src/cli/main.ts'), 'utf8');
  const body = src.split(`async function ${sub}(args: string[])`)[1]!.split('\nasync function ')[0]!;
  const options = body.split('options: {')[1]!.split('\n    },')[0]!;
  return new Set([...options.matchAll(/^\s+'?([a-z-]+)'?: \{ type:/gm)].map((m) => m[1]!));
}

describe('daemonset/ manifests', () => {
  it('parse, and every object has a known apiVersion/kind, a name and the right scope', async () => {
    const docs = await all();
    expect(docs.length).toBeGreaterThanOrEqual(14);
    for (const d of docs) {
      expect(KNOWN[d.kind], `${d.kind} ${d.metadata?.name}`).toBe(d.apiVersion);
      expect(d.metadata.name).toMatch(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/);
      if (CLUSTER_SCOPED.has(d.kind)) expect(d.metadata.namespace).toBeUndefined();
      else expect(d.metadata.namespace).toBe(DEFAULT_NAMESPACE);
    }
  });

  it('lists every manifest in kustomization.yaml', async () => {
    const k = parseAllDocuments(await readFile(path.join(DIR, 'kustomization.yaml'), 'utf8'))[0]!.toJS() as {
      resources: string[];
    };
    expect([...k.resources].sort()).toEqual([...(await manifests()).keys()].sort());
  });

  it('workloads: selectors match their pods, containers have images, resources and probes on the code ports', async () => {
    const docs = await all();
    for (const d of docs.filter((x) => x.kind === 'Deployment' || x.kind === 'DaemonSet')) {
      const sel = (d.spec as { selector: { matchLabels: Record<string, string> } }).selector.matchLabels;
      expect(template(d).metadata.labels).toMatchObject(sel);
      for (const c of template(d).spec.containers) {
        expect(c.image).toBeTruthy();
        expect(
          c.resources?.requests?.cpu && c.resources.requests.memory && c.resources.limits?.memory,
        ).toBeTruthy();
        expect(c.securityContext?.capabilities?.drop).toEqual(['ALL']);
      }
    }
    const cp = template(find(docs, 'Deployment', CONTROL_PLANE_SERVICE)).spec.containers[0]!;
    expect(cp.ports!.map((p) => p.containerPort).sort()).toEqual([15012, CONTROL_PLANE_DEBUG_PORT]);
    expect(cp.readinessProbe?.tcpSocket?.port).toBe(15012);
    const svc = find(docs, 'Service', CONTROL_PLANE_SERVICE).spec as { ports: { port: number }[] };
    expect(svc.ports.map((p) => p.port)).toEqual([15012, CONTROL_PLANE_DEBUG_PORT]);
    const np = template(find(docs, 'DaemonSet', NODE_SERVICE_ACCOUNT));
    expect(np.spec.serviceAccountName).toBe(NODE_SERVICE_ACCOUNT);
    const proxy = np.spec.containers[0]!;
    expect(proxy.readinessProbe?.httpGet).toEqual({ path: '/healthz/ready', port: READINESS_PORT });
    // Admin (15000) binds the node's 127.0.0.1 only (issue 12): no port is declared for it.
    expect(proxy.ports!.map((p) => p.containerPort)).toEqual([15020, 15021]);
    expect(proxy.securityContext?.capabilities?.add?.sort()).toEqual([
      'NET_ADMIN',
      'NET_RAW',
      'SYS_ADMIN',
      'SYS_PTRACE',
    ]);
  });

  it('uses the names, audience and flags the code uses', async () => {
    const docs = await all();
    const role = find(docs, 'Role', CONTROL_PLANE_SERVICE) as Doc & {
      rules: { resources: string[]; resourceNames?: string[] }[];
    };
    expect(role.rules.flatMap((r) => r.resourceNames ?? []).sort()).toEqual(
      [LEADER_LEASE, CA_SECRET_NAME].sort(),
    );
    const np = template(find(docs, 'DaemonSet', NODE_SERVICE_ACCOUNT));
    const vols = JSON.stringify(np.spec.volumes);
    expect(vols).toContain(`"audience":"${CA_TOKEN_AUDIENCE}"`);
    expect(vols).toContain(`"name":"${TRUST_BUNDLE_CONFIGMAP}"`);
    expect(vols).toContain(`"key":"${TRUST_BUNDLE_KEY}"`);
    // Flags: every --flag given to `ambit node` / `ambit controlplane` exists in the CLI.
    const nodeCmd = np.spec.containers[0]!.args!.join(' ');
    expect(nodeCmd).toContain(`--controlplane ${CONTROL_PLANE_SERVICE}.${DEFAULT_NAMESPACE}.svc:15012`);
    const nodeFlags = await cliFlags('node');
    for (const f of nodeCmd.split('ambit.js node ')[1]!.matchAll(/--([a-z-]+)/g))
      expect(nodeFlags, f[1]).toContain(f[1]);
    const cpArgs = template(find(docs, 'Deployment', CONTROL_PLANE_SERVICE)).spec.containers[0]!.args!;
    expect(cpArgs[0]).toBe('controlplane');
    const cpFlags = await cliFlags('controlplane');
    for (const a of cpArgs.filter((x) => x.startsWith('--'))) expect(cpFlags, a).toContain(a.slice(2));
  });

  it('grants the control plane list/watch on every kind it watches, and nothing to write config', async () => {
    const docs = await all();
    const cr = find(docs, 'ClusterRole', CONTROL_PLANE_SERVICE) as Doc & {
      rules: { apiGroups: string[]; resources: string[]; verbs: string[] }[];
    };
    for (const t of Object.values(WATCHED_TYPES)) {
      const group = t.apiVersion.includes('/') ? t.apiVersion.split('/')[0]! : '';
      const rule = cr.rules.find(
        (r) => r.apiGroups.includes(group) && r.resources.includes(t.plural) && r.verbs.includes('watch'),
      );
      expect(rule, `${t.kind} watch`).toBeDefined();
      expect(rule!.verbs).toEqual(['get', 'list', 'watch']);
    }
  });

  it('renders the waypoint template into an owned ServiceAccount, Deployment and Service on the HBONE port', async () => {
    const text = await readFile(path.join(DIR, 'waypoint-template.yaml'), 'utf8');
    const gw = {
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'Gateway' as const,
      metadata: { name: 'wp', namespace: 'shop', uid: 'u-1' },
      spec: { gatewayClassName: 'istio-waypoint' },
    };
    const objs = renderWaypoint(text, gw, {
      image: 'ambit:1',
      controlPlane: 'cp:15012',
      trustDomain: 'cluster.local',
    });
    expect(objs.map((o) => `${o.kind} ${o.metadata.namespace}/${o.metadata.name}`)).toEqual([
      'ServiceAccount shop/wp',
      'Deployment shop/wp',
      'Service shop/wp',
    ]);
    for (const o of objs)
      expect(o.metadata.ownerReferences).toEqual([
        { apiVersion: gw.apiVersion, kind: 'Gateway', name: 'wp', uid: 'u-1', controller: true },
      ]);
    expect(JSON.stringify(objs)).not.toMatch(/\$\{/);
    const svc = objs[2]!.spec as { ports: { port: number }[] };
    expect(svc.ports[0]!.port).toBe(HBONE_PORT);
    const c = (objs[1]!.spec as { template: PodTemplate }).template.spec.containers[0]!;
    const flags = await cliFlags('waypoint');
    for (const a of c.args!.filter((x) => x.startsWith('--'))) expect(flags, a).toContain(a.slice(2));
  });

  it('kubectl renders the kustomization and accepts it in a client-side dry run', async (ctx) => {
    const kubectl = await run('kubectl', ['version', '--client']).catch(() => undefined);
    if (!kubectl) {
      console.log(
        'skipped: kubectl is not installed (apt-get install kubernetes-client, or a kubectl binary)',
      );
      ctx.skip();
      return;
    }
    const rendered = await run('kubectl', ['kustomize', DIR]);
    const kinds = parseAllDocuments(rendered.stdout).map((d) => (d.toJS() as Doc).kind);
    expect(kinds.length).toBe((await all()).length);
    const api = await new FakeApiServer({ host: '127.0.55.3' }).start();
    const tmp = await mkdtemp(path.join(tmpdir(), 'ambit-kubectl-'));
    try {
      await writeFile(path.join(tmp, 'config'), api.kubeconfig());
      const env = { ...process.env, KUBECONFIG: path.join(tmp, 'config'), HOME: tmp };
      const out = await run('kubectl', ['apply', '--dry-run=client', '--validate=false', '-k', DIR], {
        env,
        timeout: 30_000,
      });
      const lines = out.stdout.trim().split('\n');
      expect(lines).toHaveLength(kinds.length);
      for (const l of lines) expect(l).toMatch(/ created \(dry run\)$/);
      expect(api.list('Namespace')).toEqual([]); // a dry run writes nothing
    } finally {
      await api.stop();
      await rm(tmp, { recursive: true, force: true });
    }
  });
});
