// The encoded xDS resources the control plane serves, by type URL and name, each with a version
// derived from its bytes. Setting a resource records in `changes` only what really changed on
// the wire, so the xDS server pushes true deltas.
import { resourceVersion } from './workload-builder.js';

export interface XdsResource {
  name: string;
  version: string;
  aliases: string[];
  bytes: Uint8Array;
}

/** Names of one type whose encoded content changed (upserted) or that no longer exist. */
export interface Changes {
  upserted: Set<string>;
  removed: Set<string>;
}

export const noChanges = (): Changes => ({ upserted: new Set(), removed: new Set() });

export class ResourceStore {
  private readonly byType: Map<string, Map<string, XdsResource>>;

  constructor(typeUrls: readonly string[]) {
    this.byType = new Map(typeUrls.map((t) => [t, new Map()]));
  }

  /** Stores `bytes` as `name` (undefined removes it); notes the change unless the bytes are the same. */
  set(
    typeUrl: string,
    name: string,
    bytes: Uint8Array | undefined,
    changes: Changes,
    aliases: string[] = [],
  ): void {
    const store = this.of(typeUrl);
    if (!bytes) {
      if (store.delete(name)) {
        changes.removed.add(name);
        changes.upserted.delete(name);
      }
      return;
    }
    const version = resourceVersion(bytes);
    if (store.get(name)?.version === version) return;
    store.set(name, { name, version, aliases, bytes });
    changes.upserted.add(name);
    changes.removed.delete(name);
  }

  has(typeUrl: string, name: string): boolean {
    return this.of(typeUrl).has(name);
  }

  typeUrls(): string[] {
    return [...this.byType.keys()];
  }

  resources(typeUrl: string): ReadonlyMap<string, XdsResource> {
    return this.byType.get(typeUrl) ?? new Map();
  }

  private of(typeUrl: string): Map<string, XdsResource> {
    const store = this.byType.get(typeUrl);
    if (!store) throw new Error(`unknown resource type ${typeUrl}`);
    return store;
  }
}
