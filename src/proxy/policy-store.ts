// The node proxy's L4 policies, fed by xDS (istio.security.Authorization). Validates each resource
// at the edge (a bad one is NACKed by the xDS client and its last good version stays in force)
// and answers "which policies apply to this workload". Never fails open: a policy that was
// rejected and has no good version denies the traffic of the workloads it may govern (those that
// name it, and those in its namespace), with the reason in the denial.
import { EventEmitter } from 'node:events';
import { errorMessage } from '../common/errors.js';
import { decodeAuthorization, type Authorization } from '../xds/authorization.js';
import type { Workload } from '../xds/resources.js';
import { applicablePolicies, type EvalPolicy } from './authz.js';

export class PolicyStore extends EventEmitter<{ change: [] }> {
  private readonly policies = new Map<string, EvalPolicy>();
  /** Rejected names without a good version: name → why. */
  private readonly rejected = new Map<string, string>();
  private changeQueued = false;

  /** xDS decode: validates; remembers a rejection (then rethrows so the response is NACKed). */
  decode(name: string, bytes: Uint8Array): Authorization {
    try {
      return decodeAuthorization(name, bytes);
    } catch (err) {
      if (!this.policies.has(name) && this.rejected.get(name) !== errorMessage(err)) {
        this.rejected.set(name, errorMessage(err));
        this.queueChange();
      }
      throw err;
    }
  }

  apply(upserted: ReadonlyMap<string, Authorization>, removed: readonly string[]): void {
    for (const name of removed) {
      this.policies.delete(name);
      this.rejected.delete(name);
    }
    for (const [name, a] of upserted) {
      this.policies.set(name, a);
      this.rejected.delete(name);
    }
    this.queueChange();
  }

  /**
   * Replaces everything with the primary's set (a worker of a multi-worker node proxy,
   * proxy/fan-out.ts): good policies and the rejected names that deny fail-closed.
   */
  mirror(policies: ReadonlyMap<string, Authorization>, rejected: ReadonlyMap<string, string>): void {
    this.policies.clear();
    this.rejected.clear();
    for (const [name, a] of policies) this.policies.set(name, a);
    for (const [name, why] of rejected) this.rejected.set(name, why);
    this.queueChange();
  }

  /** The policies that govern connections to `w`, including fail-closed stand-ins for rejected ones. */
  forWorkload(w: Pick<Workload, 'namespace' | 'authorizationPolicies'>): EvalPolicy[] {
    if (this.rejected.size === 0) return applicablePolicies(w, this.policies);
    const all = new Map(this.policies);
    for (const [name, why] of this.rejected) {
      const [namespace = '', policyName = name] = name.split('/');
      all.set(name, {
        name: policyName,
        namespace,
        scope: 'NAMESPACE',
        action: 'DENY',
        rules: [],
        invalid: why,
      });
    }
    return applicablePolicies(w, all);
  }

  all(): ReadonlyMap<string, EvalPolicy> {
    return this.policies;
  }

  rejections(): ReadonlyMap<string, string> {
    return this.rejected;
  }

  private queueChange(): void {
    if (this.changeQueued) return;
    this.changeQueued = true;
    queueMicrotask(() => {
      this.changeQueued = false;
      this.emit('change');
    });
  }
}
