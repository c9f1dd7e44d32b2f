// The SPIFFE ids of ambient-enrolled pods, by the node they are scheduled on: what the CA lets a
// node proxy sign for (node-auth.ts; issue 12, hole 4). The ambient index decides which pods count
// (enrolled, not terminated, scheduled) and records them here; this keeps the two maps in step.
export class EnrolledIdentities {
  private readonly byNode = new Map<string, Map<string, string>>(); // node → pod key → SPIFFE id
  private readonly nodeOf = new Map<string, string>(); // pod key → node, to undo the above

  /** Records pod `key` as `id` on `node`, or forgets it when `node` is undefined. */
  set(key: string, node: string | undefined, id?: string): void {
    const oldNode = this.nodeOf.get(key);
    if (oldNode !== undefined) {
      this.nodeOf.delete(key);
      const ids = this.byNode.get(oldNode);
      if (ids?.delete(key) && ids.size === 0) this.byNode.delete(oldNode);
    }
    if (node === undefined || id === undefined) return;
    let ids = this.byNode.get(node);
    if (!ids) this.byNode.set(node, (ids = new Map()));
    ids.set(key, id);
    this.nodeOf.set(key, node);
  }

  /** A fresh set of the ids of pods on `node`. */
  onNode(node: string): Set<string> {
    return new Set(this.byNode.get(node)?.values());
  }
}
