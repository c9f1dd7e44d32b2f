// The entry of one worker process of `ambit node --workers N`, forked by workers.ts with an IPC
// channel: a NodeProxy fed by the primary (worker-feed.ts) with its own event loop, listeners,
// HBONE pool and inbound gate. It reports its readiness, pods and authorization counters to the
// primary, and exits when the primary asks or goes away (the IPC channel closes).
import { componentLogger } from '../common/log.js';
import { errorMessage } from '../common/errors.js';
import { NodeProxy } from './proxy.js';
import { WorkerFeed } from './worker-feed.js';
import type { WorkerInit } from './workers.js';
import type { WorkerStatus } from '../proxy/fan-out.js';

const STATUS_EVERY_MS = 250;

async function main(): Promise<void> {
  const init = JSON.parse(process.argv[2] ?? '') as WorkerInit;
  const log = componentLogger('node', { node: init.nodeName, worker: init.index });
  let proxy: NodeProxy | undefined;
  const stop = (graceMs: number) => {
    void (proxy?.stop(graceMs) ?? Promise.resolve()).finally(() => process.exit(0));
  };
  // Signals are the primary's to handle; it stops the workers over IPC. A primary that dies
  // without doing so closes the channel, and the worker leaves too (no orphan listeners).
  process.on('SIGINT', () => {});
  process.on('SIGTERM', () => {});
  process.on('disconnect', () => {
    log.warn('worker: primary gone; exiting');
    stop(0);
  });
  const feed = new WorkerFeed(process, log, stop, () => proxy!.telemetry.registry.getMetricsAsJSON());
  proxy = new NodeProxy({
    nodeName: init.nodeName,
    nodeIp: init.nodeIp,
    controlPlane: '',
    stateDir: init.stateDir,
    trustDomain: init.trustDomain,
    ports: init.ports,
    logger: log,
    telemetry: { accessLog: init.accessLog, metrics: init.metrics },
    feed,
  });
  await proxy.start();
  let last = '';
  const report = () => {
    const c = proxy!.authzCounters();
    const status: WorkerStatus = {
      ...proxy!.isReady(),
      pods: proxy!.localPods(),
      authz: {
        allowed: c.allowed,
        denied: c.denied,
        closedByPolicyChange: c.closedByPolicyChange,
        deniedByPolicy: [...c.deniedByPolicy],
      },
    };
    const text = JSON.stringify(status);
    if (text !== last) feed.report(status);
    last = text;
  };
  report();
  setInterval(report, STATUS_EVERY_MS).unref();
  log.info({ pods: proxy.localPods().length }, 'worker ready');
}

main().catch((err: unknown) => {
  console.error(`ambit node worker: ${errorMessage(err)}`);
  process.exit(1);
});
