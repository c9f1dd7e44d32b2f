// The waypoints the ambient index publishes: which Gateways of class istio-waypoint exist, on
// which Nodes they can run, and the plan (address, node, identity) or why a Gateway is not
// programmed. The index feeds it Nodes and Gateways and asks it to re-plan when one changed;
// the plan's differences are what the index republishes and re-binds.
import type { KubeResource } from '../config/types.js';
import { spiffeIdOf } from '../xds/resources.js';
import { isWaypointGateway, planWaypoints, type WaypointInfo, type WaypointProblem } from './waypoints.js';

/** A waypoint's state as the control plane knows it (the file source is read-only: status lives here). */
export interface WaypointStatus {
  /** "namespace/name" of the Gateway. */
  key: string;
  programmed: boolean;
  address?: string;
  node?: string;
  identity?: string;
  waypointFor?: string;
  /** Why it is not programmed. */
  reason?: string;
}

/** What a re-plan changed. */
export interface Replan {
  /** Keys of waypoints added, removed or moved. */
  changed: Set<string>;
  /** Waypoints no longer planned as they were (their old resources go). */
  withdrawn: WaypointInfo[];
  /** Every waypoint now planned (their resources are set; unchanged bytes cost nothing). */
  planned: WaypointInfo[];
  /** Status changes to announce. */
  statuses: WaypointStatus[];
}

export class WaypointPlanner {
  private readonly nodes = new Set<string>();
  private readonly gateways = new Map<string, KubeResource>();
  private plan = new Map<string, WaypointInfo>();
  private problems = new Map<string, WaypointProblem>();

  constructor(
    private readonly pool: string,
    private readonly trustDomain: string,
  ) {}

  /** Records a Node; true when that changes the set of nodes. */
  trackNode(name: string, present: boolean): boolean {
    const had = this.nodes.has(name);
    if (present) this.nodes.add(name);
    else this.nodes.delete(name);
    return had !== present;
  }

  /** Records a Gateway by object id (only waypoint Gateways are kept); true when that changes anything. */
  trackGateway(id: string, obj: KubeResource | undefined): boolean {
    const prev = this.gateways.get(id);
    if (obj && isWaypointGateway(obj)) this.gateways.set(id, obj);
    else this.gateways.delete(id);
    return prev !== this.gateways.get(id);
  }

  /** What this planner holds, for a rebuild to tell what disappeared. */
  knownNodes(): Iterable<string> {
    return this.nodes;
  }
  knownGateways(): Iterable<[string, KubeResource]> {
    return this.gateways;
  }

  /** The waypoints planned now, by "namespace/name". */
  current(): ReadonlyMap<string, WaypointInfo> {
    return this.plan;
  }

  replan(): Replan {
    const objects = [
      ...this.gateways.values(),
      ...[...this.nodes].map((name) => ({ kind: 'Node', metadata: { name } })),
    ];
    const { waypoints, problems } = planWaypoints(objects, this.pool);
    const next = new Map(waypoints.map((w) => [w.key, w]));
    const changed = new Set<string>();
    const withdrawn: WaypointInfo[] = [];
    for (const [k, w] of this.plan) {
      if (JSON.stringify(next.get(k)) === JSON.stringify(w)) continue;
      changed.add(k);
      withdrawn.push(w);
    }
    for (const [k, w] of next) if (JSON.stringify(this.plan.get(k)) !== JSON.stringify(w)) changed.add(k);
    const statuses: WaypointStatus[] = [];
    const nextProblems = new Map(problems.map((p) => [p.key, p]));
    for (const p of nextProblems.values())
      if (this.problems.get(p.key)?.reason !== p.reason)
        statuses.push({ key: p.key, programmed: false, reason: p.reason });
    this.plan = next;
    this.problems = nextProblems;
    for (const k of changed) if (next.has(k)) statuses.push(this.statusOf(next.get(k)!));
    return { changed, withdrawn, planned: [...next.values()], statuses };
  }

  /** SPIFFE ids of the waypoints placed on `node` (its node proxy may sign for them). */
  identitiesOnNode(node: string): string[] {
    return [...this.plan.values()].filter((w) => w.node === node).map((w) => this.identityOf(w));
  }

  /** SPIFFE ids of every planned waypoint, wherever it runs. */
  identities(): Set<string> {
    return new Set([...this.plan.values()].map((w) => this.identityOf(w)));
  }

  /** Every waypoint Gateway: programmed (address, node, identity) or why not. */
  statuses(): WaypointStatus[] {
    const out: WaypointStatus[] = [];
    for (const w of this.plan.values()) out.push(this.statusOf(w));
    for (const p of this.problems.values()) out.push({ key: p.key, programmed: false, reason: p.reason });
    return out.sort((a, b) => a.key.localeCompare(b.key));
  }

  private identityOf(w: WaypointInfo): string {
    return spiffeIdOf({
      trustDomain: this.trustDomain,
      namespace: w.namespace,
      serviceAccount: w.serviceAccount,
    });
  }

  private statusOf(w: WaypointInfo): WaypointStatus {
    return {
      key: w.key,
      programmed: true,
      address: w.ip,
      node: w.node,
      identity: this.identityOf(w),
      waypointFor: w.waypointFor,
    };
  }
}
