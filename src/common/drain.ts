// One drain helper for every listener: stop accepting, let open connections finish until a
// deadline, then destroy what is left (after ztunnel's drain.rs).
import type { Server, Socket } from 'node:net';

export class ConnectionTracker {
  private readonly open = new Set<{ destroy(): void }>();

  track<T extends { destroy(): void; once(ev: 'close', fn: () => void): unknown }>(conn: T): T {
    this.open.add(conn);
    conn.once('close', () => this.open.delete(conn));
    return conn;
  }

  get size(): number {
    return this.open.size;
  }

  destroyAll(): void {
    for (const c of this.open) c.destroy();
    this.open.clear();
  }
}

/** Closes `server`, waits for tracked connections up to `graceMs`, then destroys the rest. */
export async function drainServer(
  server: Server | { close(cb?: (err?: Error) => void): unknown },
  tracker: ConnectionTracker,
  graceMs: number,
): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  const deadline = new Promise<void>((resolve) => setTimeout(resolve, graceMs).unref());
  await Promise.race([closed, deadline]);
  tracker.destroyAll();
  await closed;
}

export type { Socket };
