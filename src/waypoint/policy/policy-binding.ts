// Which requests at a waypoint a targetRefs policy governs (AuthorizationPolicy and
// RequestAuthentication share this): targetRef Gateway (this waypoint), GatewayClass
// istio-waypoint (root namespace only), Service, ServiceEntry — as Istio binds them.
import { stringMatches } from '../../proxy/authz.js';
import type { StringMatch } from '../../xds/authorization.js';

export const GATEWAY_API_GROUP = 'gateway.networking.k8s.io';
export const WAYPOINT_GATEWAY_CLASS = 'istio-waypoint';
/** A policy-like object as read from config (AuthorizationPolicy, RequestAuthentication). */
export interface PolicyObject {
  kind: string;
  metadata: { name: string; namespace?: string; annotations?: Record<string, string> };
  spec: Record<string, unknown>;
}

export interface WaypointRef {
  namespace: string;
  name: string;
}

/** The requests a targetRefs policy governs at this waypoint. */
export interface PolicyTarget {
  /** Every request through the waypoint (targetRef Gateway or GatewayClass istio-waypoint). */
  all: boolean;
  /** Requests for these services only (targetRef Service or ServiceEntry). */
  services: { namespace: string; name?: string; hosts: StringMatch[] }[];
}

export interface ServiceRef {
  namespace: string;
  hostname: string;
  name?: string;
}

interface TargetRef {
  group?: string;
  kind?: string;
  name?: string;
  namespace?: string;
}

/**
 * Which requests at `waypoint` a targetRefs policy governs; undefined when none (no targetRefs,
 * or refs to other waypoints and unknown kinds). Shared with RequestAuthentication (jwt.ts).
 */
export function policyTarget(
  obj: PolicyObject,
  waypoint: WaypointRef,
  rootNamespace: string,
  objects: readonly PolicyObject[],
  warnings: string[],
  opts: { clusterDomain?: string } = {},
): PolicyTarget | undefined {
  const spec = obj.spec as { targetRef?: TargetRef; targetRefs?: TargetRef[] };
  const refs = [...(spec.targetRef ? [spec.targetRef] : []), ...(spec.targetRefs ?? [])];
  if (refs.length === 0) return undefined; // selector or namespace-wide: node proxies' business
  const ns = obj.metadata.namespace ?? 'default';
  const id = `${obj.kind} ${ns}/${obj.metadata.name}`;
  const domain = opts.clusterDomain ?? 'cluster.local';
  const target: PolicyTarget = { all: false, services: [] };
  for (const ref of refs) {
    const group = ref.group ?? '';
    if (ref.namespace && ref.namespace !== ns) {
      warnings.push(
        `${id}: targetRef to namespace ${ref.namespace} ignored (a policy targets its own namespace)`,
      );
      continue;
    }
    if (ref.kind === 'Gateway' && group === GATEWAY_API_GROUP) {
      if (ns === waypoint.namespace && ref.name === waypoint.name) target.all = true;
    } else if (ref.kind === 'GatewayClass' && group === GATEWAY_API_GROUP) {
      if (ref.name !== WAYPOINT_GATEWAY_CLASS) continue;
      if (ns === rootNamespace) target.all = true;
      else
        warnings.push(
          `${id}: targetRef GatewayClass ${ref.name} is honoured only in the root namespace ${rootNamespace}`,
        );
    } else if (ref.kind === 'Service' && (group === '' || group === 'core')) {
      const name = ref.name ?? '';
      target.services.push({ namespace: ns, name, hosts: [{ exact: `${name}.${ns}.svc.${domain}` }] });
    } else if (ref.kind === 'ServiceEntry' && group === 'networking.istio.io') {
      const se = objects.find(
        (o) =>
          o.kind === 'ServiceEntry' &&
          o.metadata.name === ref.name &&
          (o.metadata.namespace ?? 'default') === ns,
      );
      const hosts = ((se?.spec.hosts as string[] | undefined) ?? []).filter((h) => h !== '');
      if (!se)
        warnings.push(`${id}: targetRef ServiceEntry ${ns}/${ref.name} does not exist; it governs nothing`);
      target.services.push({
        namespace: ns,
        hosts: hosts.map((h) =>
          h.startsWith('*') ? { suffix: h.slice(1).toLowerCase() } : { exact: h.toLowerCase() },
        ),
      });
    } else {
      warnings.push(`${id}: targetRef ${group || 'core'}/${ref.kind} is not a waypoint target; ignored`);
    }
  }
  return target.all || target.services.length ? target : undefined;
}

/** Whether a policy governs a request for `service` (undefined: addressed by pod IP). */
export function targetCovers(t: PolicyTarget, service: ServiceRef | undefined): boolean {
  if (t.all) return true;
  if (!service) return false;
  const host = service.hostname.toLowerCase();
  return t.services.some(
    (s) =>
      s.namespace === service.namespace &&
      ((s.name !== undefined && s.name === service.name) || s.hosts.some((h) => stringMatches(h, host))),
  );
}
