// The loop every Kubernetes controller of the control plane runs while it leads: reconcile now,
// again on every resync tick and whenever asked; calls that arrive during a pass coalesce into
// one more pass, so a burst of events costs at most two passes.
export abstract class ReconcileLoop {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  protected active = false;

  constructor(private readonly resyncMs = 60_000) {}

  /** Starts reconciling (on becoming leader). */
  start(): void {
    this.active = true;
    this.timer = setInterval(() => void this.reconcile(), this.resyncMs);
    this.timer.unref();
    void this.reconcile();
  }

  /** Stops (on losing leadership, or shutdown) once the pass in flight ends; what was written stays. */
  async stop(): Promise<void> {
    this.active = false;
    clearInterval(this.timer);
    await this.running;
  }

  /** Brings the cluster in line with the current snapshot; coalesces concurrent calls. */
  reconcile(): Promise<void> {
    if (!this.active) return Promise.resolve();
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      do {
        this.again = false;
        await this.reconcileOnce();
      } while (this.again && this.active);
    })().finally(() => (this.running = undefined));
    return this.running;
  }

  protected abstract reconcileOnce(): Promise<void>;
}
