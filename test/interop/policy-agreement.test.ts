// Issue 15 item 3: the L4 AuthorizationPolicy and PeerAuthentication cases the suite already tests
// (test/integration/authz.test.ts, authz-semantics.test.ts, test/e2e/netns-peer-authn-precedence,
// test/unit/controlplane/authz-convert), written once, compiled once by ambit's control plane, and
// enforced twice: by ambit's node proxy (destination amb-server) and by Istio's ztunnel (destination
// zt-pod). Both destinations carry the same label (role=target) and service account (target), so a
// policy reads the same on both; the client is amb-client (sa client) behind ambit's node proxy.
// Each row asserts the expected decision for both, and that a denial was the destination's policy
// (its log line), not a broken path. Plaintext rows go to ztunnel only: in ambit's local mode an
// app's own listener takes plaintext without a proxy in between (ambit's plaintext enforcement is
// tested in network namespaces: test/e2e/netns-peer-authn-precedence.test.ts), and say so.
// 10.240.241.0/24; skips, saying why, without AMBIT_ZTUNNEL_BIN or root.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type ProbeResult,
  ZtunnelInterop,
  sharedModeSkipReason,
  ztunnelSkipReason,
} from '../support/ztunnel.js';

const skip = ztunnelSkipReason();
if (skip) console.log(`ztunnel policy agreement skipped: ${skip}`);
// Shared mode is how ambient runs ztunnel; dedicated mode enforces with the same code.
const sharedSkip = sharedModeSkipReason();
const MODE = sharedSkip ? 'dedicated' : 'shared';
if (!skip && sharedSkip) console.log(`ztunnel policy agreement in dedicated mode: ${sharedSkip}`);

const K = 241;
const CLIENT_IP = `10.240.${K}.10`;
type Decision = 'allow' | 'deny';
interface Probe {
  port: number;
  /** hbone: amb-client through ambit's node proxy; plaintext: from outside the mesh (10.240.241.1). */
  via: 'hbone' | 'plaintext';
  expect: Decision;
}
interface Case {
  name: string;
  /** The test of the suite this row repeats. */
  mirrors: string;
  yaml?: string;
  probes: Probe[];
}

const ap = (name: string, spec: string, ns = 'demo', annotations = '') =>
  `apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: ${name}, namespace: ${ns}${annotations}}\nspec:\n${spec}\n`;
const pa = (name: string, spec: string, created = '2024-01-01T00:00:00Z') =>
  `apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: ${name}, namespace: demo, creationTimestamp: "${created}"}\nspec:\n${spec}\n`;
const SEL = '  selector: {matchLabels: {role: target}}';
const hb = (port: number, expect: Decision): Probe => ({ port, via: 'hbone', expect });
const pt = (port: number, expect: Decision): Probe => ({ port, via: 'plaintext', expect });

// Order matters only in that each row must change what the proxies hold (setPolicies waits for it).
const CASES: Case[] = [
  {
    name: 'no policy: everything allowed, plaintext too (PERMISSIVE by default)',
    mirrors: 'authz.test.ts (baseline)',
    probes: [hb(7000, 'allow'), hb(7001, 'allow'), pt(7000, 'allow')],
  },
  {
    name: 'ALLOW principal + ports: the listed port only',
    mirrors: 'authz.test.ts: denies a port the ALLOW policy does not list',
    yaml: ap(
      'allow-client-7000',
      `${SEL}\n  action: ALLOW\n  rules:\n  - from: [{source: {principals: ["cluster.local/ns/demo/sa/client"]}}]\n    to: [{operation: {ports: ["7000"]}}]`,
    ),
    probes: [hb(7000, 'allow'), hb(7001, 'deny')],
  },
  {
    name: 'ALLOW someone else’s principal: denied',
    mirrors: 'authz-convert: principals exact',
    yaml: ap(
      'allow-other',
      `${SEL}\n  rules:\n  - from: [{source: {principals: ["cluster.local/ns/demo/sa/other"]}}]`,
    ),
    probes: [hb(7000, 'deny')],
  },
  {
    name: 'ALLOW principal by prefix wildcard (cluster.local/ns/demo/*)',
    mirrors: 'authz-rule-fields: Istio * strings',
    yaml: ap(
      'allow-demo-prefix',
      `${SEL}\n  rules:\n  - from: [{source: {principals: ["cluster.local/ns/demo/*"]}}]`,
    ),
    probes: [hb(7000, 'allow')],
  },
  {
    name: 'ALLOW principal by suffix wildcard (*/sa/other): denied',
    mirrors: 'authz-rule-fields: Istio * strings',
    yaml: ap('allow-other-suffix', `${SEL}\n  rules:\n  - from: [{source: {principals: ["*/sa/other"]}}]`),
    probes: [hb(7000, 'deny')],
  },
  {
    name: 'ALLOW from namespace demo',
    mirrors: 'authz-convert: namespaces',
    yaml: ap('allow-ns-demo', `${SEL}\n  rules:\n  - from: [{source: {namespaces: ["demo"]}}]`),
    probes: [hb(7000, 'allow')],
  },
  {
    name: 'ALLOW from namespace other: denied',
    mirrors: 'authz-convert: namespaces',
    yaml: ap('allow-ns-other', `${SEL}\n  rules:\n  - from: [{source: {namespaces: ["other"]}}]`),
    probes: [hb(7000, 'deny')],
  },
  {
    name: 'ALLOW serviceAccounts [client] (ns defaults to the policy’s)',
    mirrors: 'authz-convert: serviceAccounts',
    yaml: ap('allow-sa-client', `${SEL}\n  rules:\n  - from: [{source: {serviceAccounts: ["client"]}}]`),
    probes: [hb(7000, 'allow')],
  },
  {
    name: 'ALLOW serviceAccounts [demo/other]: denied',
    mirrors: 'authz-convert: serviceAccounts',
    yaml: ap('allow-sa-other', `${SEL}\n  rules:\n  - from: [{source: {serviceAccounts: ["demo/other"]}}]`),
    probes: [hb(7000, 'deny')],
  },
  {
    name: 'ALLOW ipBlocks of the client’s pod IP (the verified TCP peer)',
    mirrors: 'authz.test.ts: applies an ipBlocks policy to the verified TCP peer address',
    yaml: ap('allow-client-ip', `${SEL}\n  rules:\n  - from: [{source: {ipBlocks: ["${CLIENT_IP}/32"]}}]`),
    probes: [hb(7000, 'allow')],
  },
  {
    name: 'ALLOW ipBlocks elsewhere (192.0.2.0/24): denied',
    mirrors: 'authz.test.ts: ipBlocks',
    yaml: ap('allow-other-ip', `${SEL}\n  rules:\n  - from: [{source: {ipBlocks: ["192.0.2.0/24"]}}]`),
    probes: [hb(7000, 'deny')],
  },
  {
    name: 'ALLOW notPorts [7001]',
    mirrors: 'authz-convert: notPorts',
    yaml: ap('allow-not-7001', `${SEL}\n  rules:\n  - to: [{operation: {notPorts: ["7001"]}}]`),
    probes: [hb(7000, 'allow'), hb(7001, 'deny')],
  },
  {
    name: 'ALLOW when destination.port 7001 and source.ip',
    mirrors: 'authz-rule-fields: L4 when keys',
    yaml: ap(
      'allow-when',
      `${SEL}\n  rules:\n  - when: [{key: destination.port, values: ["7001"]}, {key: source.ip, values: ["${CLIENT_IP}"]}]`,
    ),
    probes: [hb(7000, 'deny'), hb(7001, 'allow')],
  },
  {
    name: 'DENY port 7001',
    mirrors: 'authz.test.ts: a new DENY policy applies to new connections',
    yaml: ap('deny-7001', `${SEL}\n  action: DENY\n  rules:\n  - to: [{operation: {ports: ["7001"]}}]`),
    probes: [hb(7000, 'allow'), hb(7001, 'deny')],
  },
  {
    name: 'DENY notPrincipals [client]: the client is not denied',
    mirrors: 'authz-convert: notPrincipals',
    yaml: ap(
      'deny-not-client',
      `${SEL}\n  action: DENY\n  rules:\n  - from: [{source: {notPrincipals: ["cluster.local/ns/demo/sa/client"]}}]`,
    ),
    probes: [hb(7000, 'allow')],
  },
  {
    name: 'DENY with HTTP attributes only (methods): no effect at L4',
    mirrors: 'authz.test.ts: a DENY with only HTTP attributes has no effect at L4',
    yaml: ap(
      'deny-l7-only',
      `${SEL}\n  action: DENY\n  rules:\n  - to: [{operation: {methods: ["DELETE"]}}]`,
    ),
    probes: [hb(7000, 'allow')],
  },
  {
    name: 'DENY from namespaces + an HTTP-only when: a no-op at L4 (istiod handleRule)',
    mirrors: 'authz-semantics.test.ts issue 13 #1',
    yaml: ap(
      'deny-header',
      `${SEL}\n  action: DENY\n  rules:\n  - from: [{source: {namespaces: [demo]}}]\n    when: [{key: 'request.headers[x-block]', values: ['1']}]`,
    ),
    probes: [hb(7000, 'allow')],
  },
  {
    name: 'DENY namespaces beside requestPrincipals in one source: denies (stricter)',
    mirrors: 'authz-semantics.test.ts issue 13 #1 (mixed)',
    yaml: ap(
      'deny-mixed',
      `${SEL}\n  action: DENY\n  rules:\n  - from: [{source: {namespaces: [demo], requestPrincipals: ['*']}}]`,
    ),
    probes: [hb(7000, 'deny')],
  },
  {
    name: 'ALLOW with an HTTP field: the rule never matches, so nothing is allowed',
    mirrors: 'authz-convert: ALLOW with HTTP fields (istiod handleRule)',
    yaml: ap('allow-get', `${SEL}\n  rules:\n  - to: [{operation: {methods: ["GET"]}}]`),
    probes: [hb(7000, 'deny')],
  },
  {
    name: 'root-namespace DENY (istio-system, no selector) applies mesh-wide',
    mirrors: 'authz.test.ts: a root-namespace DENY applies mesh-wide',
    yaml: ap(
      'root-deny-7001',
      `  action: DENY\n  rules:\n  - to: [{operation: {ports: ["7001"]}}]`,
      'istio-system',
    ),
    probes: [hb(7000, 'allow'), hb(7001, 'deny')],
  },
  {
    name: 'namespace allow-nothing (spec: {})',
    mirrors: 'authz-convert: empty spec',
    yaml: ap('allow-nothing', '  {}'),
    probes: [hb(7000, 'deny')],
  },
  {
    name: 'dry-run DENY (istio.io/dry-run) decides nothing',
    mirrors: 'authz-convert: dry_run',
    yaml: ap(
      'dry-deny',
      `${SEL}\n  action: DENY\n  rules:\n  - to: [{operation: {ports: ["7000"]}}]`,
      'demo',
      ', annotations: {istio.io/dry-run: "true"}',
    ),
    probes: [hb(7000, 'allow')],
  },
  {
    name: 'PeerAuthentication STRICT: HBONE allowed, plaintext refused',
    mirrors: 'netns-peer-authn-precedence (STRICT)',
    yaml: pa('strict', `${SEL}\n  mtls: {mode: STRICT}`),
    probes: [hb(7000, 'allow'), pt(7000, 'deny')],
  },
  {
    name: 'PeerAuthentication PERMISSIVE: plaintext admitted',
    mirrors: 'netns-peer-authn-precedence (PERMISSIVE)',
    yaml: pa('permissive', `${SEL}\n  mtls: {mode: PERMISSIVE}`),
    probes: [hb(7000, 'allow'), pt(7000, 'allow')],
  },
  {
    name: 'PeerAuthentication: the older STRICT wins over a newer PERMISSIVE',
    mirrors: 'netns-peer-authn-precedence: the older STRICT wins',
    yaml: [
      pa('a-strict', `${SEL}\n  mtls: {mode: STRICT}`, '2024-01-01T00:00:00Z'),
      pa('z-permissive', `${SEL}\n  mtls: {mode: PERMISSIVE}`, '2025-06-01T00:00:00Z'),
    ].join('---\n'),
    probes: [pt(7000, 'deny')],
  },
  {
    name: 'PeerAuthentication STRICT with portLevelMtls 7001 PERMISSIVE',
    mirrors: 'authz-convert: converted_peer_authentication_<name>',
    yaml: pa('port-level', `${SEL}\n  mtls: {mode: STRICT}\n  portLevelMtls: {"7001": {mode: PERMISSIVE}}`),
    probes: [hb(7000, 'allow'), pt(7000, 'deny'), pt(7001, 'allow')],
  },
  {
    name: 'namespace-wide STRICT (no selector)',
    mirrors: 'authz-convert: namespace STRICT',
    yaml: pa('ns-strict', '  mtls: {mode: STRICT}'),
    probes: [hb(7001, 'allow'), pt(7001, 'deny')],
  },
];

const zt = new ZtunnelInterop({
  name: 'agree',
  k: K,
  mode: MODE,
  appPorts: [7000, 7001],
  capturePlaintext: [7000, 7001],
});
const table: string[] = [];

describe.skipIf(!!skip)(
  'L4 policy: ambit’s node proxy and ztunnel decide alike (same manifests, same control plane)',
  () => {
    beforeAll(async () => {
      await zt.start();
    }, 60_000);
    afterAll(async () => {
      if (table.length)
        console.log(
          [`decision table, ztunnel in ${MODE} mode (ambit | ztunnel | expected):`, ...table].join('\n'),
        );
      await zt.stop();
    }, 30_000);

    let first = true;
    it.each(CASES.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
      if (!(first && c.yaml === undefined)) await zt.setPolicies('case', c.yaml);
      first = false;
      for (const p of c.probes) {
        // One after the other, so that each denial line found is the one this probe caused.
        const ambit = await decide('ambit', p);
        const ztunnel = await decide('ztunnel', p);
        table.push(`${c.name} | ${p.via}:${p.port} | ${ambit} | ${ztunnel} | ${p.expect}`);
        expect({ probe: `${p.via}:${p.port}`, ambit, ztunnel }).toEqual({
          probe: `${p.via}:${p.port}`,
          ambit: p.via === 'plaintext' ? 'not applicable' : p.expect,
          ztunnel: p.expect,
        });
      }
    });
  },
);

/** What `who` (the destination's proxy) decided for one probe, checked against its own log. */
async function decide(who: 'ambit' | 'ztunnel', p: Probe): Promise<Decision | 'not applicable' | string> {
  const dst = who === 'ambit' ? zt.ip.ambServer : zt.ip.ztunnelPod;
  if (who === 'ambit' && p.via === 'plaintext') return 'not applicable';
  const fromZt = zt.ztLogs.length;
  const fromMesh = zt.meshLogs.length;
  const r: ProbeResult =
    p.via === 'hbone' ? await zt.fromAmbitPod(dst, p.port) : await zt.plaintext(dst, p.port);
  if (r.ok) return 'allow';
  // A refusal must be the destination's policy, in its own words; anything else is a broken path.
  const denied = () =>
    who === 'ambit'
      ? zt.meshLogs
          .slice(fromMesh)
          .some(
            (l) =>
              l.component === 'node/node-a' &&
              l.rec.msg === 'connection denied by policy' &&
              String(l.rec['dst.addr']).startsWith(`${dst}:`),
          )
      : zt.ztLogs.slice(fromZt).some((l) => /policy rejection/.test(l.fields.error ?? ''));
  try {
    await zt.waitFor(denied, 3000, `${who} denial line`);
    return 'deny';
  } catch {
    return `failed without a policy denial (${r.error ?? 'no data'})`;
  }
}
