// The waypoint controller (istiod's gateway deployment controller, for class istio-waypoint):
// for each such Gateway it creates and keeps a ServiceAccount, a Deployment and a Service rendered
// from daemonset/waypoint-template.yaml, each owned by the Gateway (ownerReference, controller:
// true), so that deleting the Gateway garbage-collects them. It writes the Gateway's status:
// addresses (the Service's cluster IP and hostname) and the Accepted and Programmed conditions
// with Gateway API reasons. Runs on the leader only; reconciles on Gateway changes and on a
// resync timer, which also restores objects someone deleted or edited by hand.
//
// Decide, then do: `renderWaypoint` and `gatewayStatus` are pure; `reconcileGateway` does the I/O.
import { ReconcileLoop } from './kube-reconcile-loop.js';
import { readFile } from 'node:fs/promises';
import { parseAllDocuments } from 'yaml';
import { errorMessage } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { isConflict, type KubeClient, type OwnerReference, type RawObject } from '../config/kube-client.js';
import { sameContent } from '../config/diff.js';
import {
  DEPLOYMENT,
  GATEWAY,
  GATEWAY_CLASS,
  SERVICE,
  SERVICE_ACCOUNT,
  type KubeResourceType,
} from '../config/kube-resources.js';
import type { ConfigSnapshot, Gateway } from '../config/types.js';
import { isWaypointGateway, WAYPOINT_GATEWAY_CLASS } from './waypoints.js';
import { DOMAIN_SUFFIX } from './workload-builder.js';

/** The controller name Istio gives class istio-waypoint; ambit answers to it so manifests carry over. */
export const WAYPOINT_CONTROLLER_NAME = 'istio.io/mesh-controller';

export const DEFAULT_WAYPOINT_TEMPLATE = new URL('../../daemonset/waypoint-template.yaml', import.meta.url);

/** What the template is filled with. */
export interface WaypointTemplateValues {
  image: string;
  controlPlane: string;
  trustDomain: string;
}

const TYPES: Record<string, KubeResourceType> = {
  ServiceAccount: SERVICE_ACCOUNT,
  Deployment: DEPLOYMENT,
  Service: SERVICE,
};

/** The template's objects for one Gateway, each owned by it. Throws if the template is not the three kinds. */
export function renderWaypoint(template: string, gw: Gateway, values: WaypointTemplateValues): RawObject[] {
  const vars: Record<string, string> = {
    NAME: gw.metadata.name,
    NAMESPACE: gw.metadata.namespace ?? 'default',
    IMAGE: values.image,
    CONTROL_PLANE: values.controlPlane,
    TRUST_DOMAIN: values.trustDomain,
  };
  const text = template.replace(/\$\{([A-Z_]+)\}/g, (m, k: string) => vars[k] ?? m);
  const owner: OwnerReference = {
    apiVersion: gw.apiVersion,
    kind: 'Gateway',
    name: gw.metadata.name,
    uid: gw.metadata.uid ?? '',
    controller: true,
  };
  const objects = parseAllDocuments(text)
    .map((d) => d.toJS() as RawObject | null)
    .filter((o): o is RawObject => o !== null);
  const kinds = objects.map((o) => o.kind).sort();
  if (!sameContent(kinds, ['Deployment', 'Service', 'ServiceAccount'])) {
    throw new Error(
      `waypoint template must hold one ServiceAccount, Deployment and Service (has ${kinds.join(', ')})`,
    );
  }
  for (const o of objects) o.metadata.ownerReferences = [owner];
  return objects;
}

interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  observedGeneration?: number;
  lastTransitionTime?: string;
}

export interface GatewayStatus {
  addresses: { type: 'IPAddress' | 'Hostname'; value: string }[];
  conditions: Condition[];
}

/** The Gateway status for what the controller achieved (`clusterIP` undefined: not yet). */
export function gatewayStatus(
  gw: Gateway,
  outcome: { clusterIP?: string; error?: string },
  now: Date,
): GatewayStatus {
  const generation = gw.metadata.generation;
  const hostname = `${gw.metadata.name}.${gw.metadata.namespace ?? 'default'}.${DOMAIN_SUFFIX}`;
  const programmed: Condition = outcome.error
    ? {
        type: 'Programmed',
        status: 'False',
        reason: 'Invalid',
        message: `Failed to deploy the waypoint: ${outcome.error}`,
      }
    : outcome.clusterIP
      ? {
          type: 'Programmed',
          status: 'True',
          reason: 'Programmed',
          message: `Resources programmed; service ${hostname} has address ${outcome.clusterIP}`,
        }
      : {
          type: 'Programmed',
          status: 'False',
          reason: 'AddressNotAssigned',
          message: 'Waiting for the waypoint Service to get an address',
        };
  const conditions: Condition[] = [
    { type: 'Accepted', status: 'True', reason: 'Accepted', message: 'Resource accepted' },
    programmed,
  ];
  const prev = (gw.status as { conditions?: Condition[] } | undefined)?.conditions ?? [];
  for (const c of conditions) {
    if (generation !== undefined) c.observedGeneration = generation;
    const old = prev.find((p) => p.type === c.type);
    // lastTransitionTime moves only when the status value does.
    c.lastTransitionTime =
      old && old.status === c.status && old.lastTransitionTime
        ? old.lastTransitionTime
        : now.toISOString().replace(/\.\d+Z$/, 'Z');
  }
  const addresses: GatewayStatus['addresses'] = outcome.clusterIP
    ? [
        { type: 'IPAddress', value: outcome.clusterIP },
        { type: 'Hostname', value: hostname },
      ]
    : [];
  return { addresses, conditions };
}

export interface WaypointControllerOptions {
  client: KubeClient;
  snapshot(): ConfigSnapshot;
  values: WaypointTemplateValues;
  templateFile?: URL | string;
  resyncMs?: number;
  logger: Logger;
}

export class WaypointController extends ReconcileLoop {
  private template = '';
  /** Gateways we deployed for, by "ns/name" → uid: one that stops being a waypoint is cleaned up. */
  private readonly managed = new Map<string, string>();

  constructor(private readonly o: WaypointControllerOptions) {
    super(o.resyncMs);
  }

  /** Loads the template (a bad one stops the control plane at start, not later). */
  async load(): Promise<void> {
    this.template = await readFile(this.o.templateFile ?? DEFAULT_WAYPOINT_TEMPLATE, 'utf8');
    renderWaypoint(
      this.template,
      {
        apiVersion: 'gateway.networking.k8s.io/v1',
        kind: 'Gateway',
        metadata: { name: 'check', namespace: 'check' },
        spec: {},
      },
      this.o.values,
    );
  }

  protected async reconcileOnce(): Promise<void> {
    await this.acceptClass();
    const seen = new Set<string>();
    for (const o of this.o.snapshot().objects.values()) {
      if (o.kind !== 'Gateway') continue;
      const key = `${o.metadata.namespace ?? 'default'}/${o.metadata.name}`;
      if (!isWaypointGateway(o)) continue;
      seen.add(key);
      this.managed.set(key, o.metadata.uid ?? '');
      await this.reconcileGateway(o);
    }
    for (const [key, uid] of this.managed) {
      if (seen.has(key)) continue;
      // Gone: the garbage collector deletes what it owned. Still there but no longer a
      // waypoint (class changed): the collector will not, so we do.
      const [ns, name] = key.split('/') as [string, string];
      const gw = this.o.snapshot().objects.get(`Gateway/${ns}/${name}`);
      if (gw) await this.removeOwned(ns, name, uid);
      this.managed.delete(key);
    }
  }

  private async reconcileGateway(gw: Gateway): Promise<void> {
    const key = `${gw.metadata.namespace}/${gw.metadata.name}`;
    const log = this.o.logger.child({ waypoint: key });
    let outcome: { clusterIP?: string; error?: string };
    try {
      const objects = renderWaypoint(this.template, gw, this.o.values);
      let clusterIP: string | undefined;
      for (const desired of objects) {
        const applied = await this.apply(desired, gw, log);
        if (applied.kind === 'Service' || desired.kind === 'Service') {
          const ip = (applied.spec as { clusterIP?: string } | undefined)?.clusterIP;
          if (ip && ip !== 'None') clusterIP = ip;
        }
      }
      outcome = { clusterIP };
    } catch (err) {
      outcome = { error: errorMessage(err) };
      log.warn({ err: outcome.error }, `waypoint ${key} not deployed`);
    }
    await this.writeStatus(gw, outcome, log);
  }

  /** Creates the object, or brings one we own back to the template; never touches one we do not own. */
  private async apply(desired: RawObject, gw: Gateway, log: Logger): Promise<RawObject> {
    const t = TYPES[desired.kind!]!;
    const ns = gw.metadata.namespace;
    const name = desired.metadata.name;
    const current = await this.o.client.get(t, ns, name);
    if (!current) {
      const created = await this.o.client.create(t, ns, desired);
      log.info(
        { object: `${desired.kind}/${ns}/${name}` },
        `created ${desired.kind} ${ns}/${name} for waypoint`,
      );
      return created;
    }
    const owners = current.metadata.ownerReferences ?? [];
    if (!owners.some((r) => r.uid === gw.metadata.uid)) {
      throw new Error(
        `${desired.kind} ${ns}/${name} exists and is not owned by this Gateway; not overwriting it`,
      );
    }
    if (subsetOf(desired, current)) return current;
    const next = mergeInto(current, desired);
    try {
      const updated = await this.o.client.replace(t, ns, name, next);
      log.info(
        { object: `${desired.kind}/${ns}/${name}` },
        `updated ${desired.kind} ${ns}/${name} to the template`,
      );
      return updated;
    } catch (err) {
      if (isConflict(err)) return current; // changed under us: the next reconcile looks again
      throw err;
    }
  }

  private async writeStatus(
    gw: Gateway,
    outcome: { clusterIP?: string; error?: string },
    log: Logger,
  ): Promise<void> {
    const status = gatewayStatus(gw, outcome, new Date());
    const cur = (gw.status ?? {}) as Partial<GatewayStatus>;
    if (
      sameContent(cur.addresses ?? [], status.addresses) &&
      sameContent(cur.conditions ?? [], status.conditions)
    )
      return;
    try {
      await this.o.client.mergePatch(GATEWAY, gw.metadata.namespace, gw.metadata.name, { status }, 'status');
      const p = status.conditions.find((c) => c.type === 'Programmed')!;
      log.info(
        { programmed: p.status, reason: p.reason, addresses: status.addresses.map((a) => a.value) },
        `Gateway status: Programmed=${p.status} (${p.reason})`,
      );
    } catch (err) {
      log.warn({ err: errorMessage(err) }, 'cannot write the Gateway status');
    }
  }

  /** GatewayClass istio-waypoint: Accepted=True when it names our controller (as istiod does). */
  private async acceptClass(): Promise<void> {
    try {
      const gc = await this.o.client.get(GATEWAY_CLASS, undefined, WAYPOINT_GATEWAY_CLASS);
      if (
        !gc ||
        (gc.spec as { controllerName?: string } | undefined)?.controllerName !== WAYPOINT_CONTROLLER_NAME
      )
        return;
      const generation = gc.metadata.generation as number | undefined;
      const prev = ((gc.status as { conditions?: Condition[] } | undefined)?.conditions ?? []).find(
        (c) => c.type === 'Accepted',
      );
      if (prev?.status === 'True' && prev.observedGeneration === generation) return;
      const accepted: Condition = {
        type: 'Accepted',
        status: 'True',
        reason: 'Accepted',
        message: 'Handled by ambit (waypoints)',
        lastTransitionTime: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
        ...(generation !== undefined ? { observedGeneration: generation } : {}),
      };
      await this.o.client.mergePatch(
        GATEWAY_CLASS,
        undefined,
        WAYPOINT_GATEWAY_CLASS,
        { status: { conditions: [accepted] } },
        'status',
      );
      this.o.logger.info(`GatewayClass ${WAYPOINT_GATEWAY_CLASS} accepted`);
    } catch (err) {
      this.o.logger.debug({ err: errorMessage(err) }, 'cannot update the GatewayClass status');
    }
  }

  private async removeOwned(ns: string, name: string, uid: string): Promise<void> {
    for (const t of [DEPLOYMENT, SERVICE, SERVICE_ACCOUNT]) {
      try {
        const cur = await this.o.client.get(t, ns, name);
        if (cur?.metadata.ownerReferences?.some((r) => r.uid === uid)) {
          await this.o.client.delete(t, ns, name, { uid: cur.metadata.uid });
          this.o.logger.info(
            { waypoint: `${ns}/${name}` },
            `deleted ${t.kind} ${ns}/${name}: Gateway is no longer a waypoint`,
          );
        }
      } catch (err) {
        this.o.logger.warn({ waypoint: `${ns}/${name}`, err: errorMessage(err) }, `cannot delete ${t.kind}`);
      }
    }
  }
}

/** Whether every field the template sets has that value in `actual` (server defaults are ignored). */
function subsetOf(want: unknown, actual: unknown): boolean {
  if (typeof want !== 'object' || want === null) return sameContent(want, actual);
  if (Array.isArray(want)) {
    return (
      Array.isArray(actual) && want.length === actual.length && want.every((w, i) => subsetOf(w, actual[i]))
    );
  }
  if (typeof actual !== 'object' || actual === null || Array.isArray(actual)) return false;
  return Object.entries(want).every(([k, v]) => subsetOf(v, (actual as Record<string, unknown>)[k]));
}

/** Objects merge key by key (server-set fields such as clusterIP survive); lists are replaced. */
function deepMerge(base: unknown, over: unknown): unknown {
  if (typeof over !== 'object' || over === null || Array.isArray(over)) return over;
  if (typeof base !== 'object' || base === null || Array.isArray(base)) return over;
  const out: Record<string, unknown> = { ...(base as Record<string, unknown>) };
  for (const [k, v] of Object.entries(over)) out[k] = deepMerge(out[k], v);
  return out;
}

/** The current object with the template's fields written over it (resourceVersion kept: a CAS). */
function mergeInto(current: RawObject, desired: RawObject): RawObject {
  const out = structuredClone(current) as Record<string, unknown>;
  for (const [k, v] of Object.entries(desired)) {
    if (k !== 'metadata') out[k] = deepMerge(out[k], v);
  }
  const meta = out.metadata as RawObject['metadata'];
  meta.labels = { ...meta.labels, ...desired.metadata.labels };
  meta.annotations = { ...meta.annotations, ...desired.metadata.annotations };
  meta.ownerReferences = desired.metadata.ownerReferences;
  return out as RawObject;
}
