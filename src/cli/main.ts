// The `ambit` command: parses flags and calls components. No logic of its own beyond that.
import { parseArgs } from 'node:util';
import { errorMessage } from '../common/errors.js';
import { UsageError } from './usage-error.js';
import { certTtlFlag, untilSignal } from './run-flags.js';
import { ADMIN_PORT, CONTROL_PLANE_DEBUG_PORT, DEFAULT_CONTROL_PLANE_ADDR } from '../common/ports.js';

const USAGE = `ambit — an ambient (sidecar-less) service mesh

Usage:
  ambit up DIR [--state DIR] [--log-format text|json] [--cert-ttl SECONDS]
                                                           run the mesh described by DIR until Ctrl-C;
                                                           a component that dies is restarted (back-off 0.1-5 s)
  ambit up --netns DIR [--disable-capture]                 the same in real network namespaces, traffic captured (root)
  ambit down [--netns-prefix P]                            remove the namespaces a crashed "up --netns" left
  ambit demo [DIR]                                         start the quickstart mesh, send traffic, explain it
  ambit exec --pod NS/NAME [--state DIR] -- CMD [ARGS...]  run CMD with its traffic entering the mesh as that pod
  ambit echo [--host IP] [--port N]                        HTTP echo server (host defaults to $POD_IP)
  ambit controlplane --config DIR --state DIR [--listen HOST:PORT] [--root-namespace NS]
  ambit controlplane --kube [--kubeconfig FILE] [--namespace NS] [--waypoint-image IMG]   config from the API server
  ambit authz explain DIR|--server HOST:PORT --from SRC --to DST:PORT   why a connection is allowed or denied
  ambit node --name NODE --ip IP --state DIR --controlplane HOST:PORT [--cert-ttl SECONDS]
             [--access-log off|full|sample:RATIO] [--no-metrics]   (or AMBIT_ACCESS_LOG, AMBIT_METRICS=off)
             [--admin-bind IP]   admin :${ADMIN_PORT} address (default 127.0.0.1 with --capture netns, else --ip);
             admin asks for the token in <state>/admin.token (Authorization: Bearer)
             [--capture socks|netns [--netns-prefix P] [--disable-capture]]   (SIGUSR2 toggles netns capture;
             without --netns-prefix a pod's namespace is found by its IP, as on Kubernetes)
             [--workers N|auto]   (or AMBIT_NODE_WORKERS) processes serving traffic, default 1; auto = the
             usable cores, at most 8. Needs the native addon (SO_REUSEPORT listeners) and socks capture:
             without either it runs 1 worker and logs why. Control plane, certificates, admin, metrics
             and readiness stay in one primary process.
  ambit ctl workloads|services|policies|certs|status|config-dump --node N|analyze DIR [-o json] [--controlplane HOST:${CONTROL_PLANE_DEBUG_PORT}] [--state DIR]
  ambit dashboard [--controlplane HOST:${CONTROL_PLANE_DEBUG_PORT}] [--state DIR] [--open]   the live service graph's URL (with the admin token)
  ambit waypoint --name NS/NAME --ip IP --state DIR --controlplane HOST:PORT [--node NODE] [--cert-ttl SECONDS]

State (CA root, node tokens, mesh.json) lives in --state, default ./.ambit.
Logs: AMBIT_LOG_LEVEL=debug|info|warn.`;

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case 'up':
      return (await import('./up.js')).up(rest);
    case 'demo':
      return (await import('./demo.js')).demo(rest);
    case 'exec':
      return (await import('./exec.js')).exec(rest);
    case 'down':
      return (await import('./down.js')).down(rest);
    case 'echo':
      return echo(rest);
    case 'controlplane':
      return controlplane(rest);
    case 'node':
      return node(rest);
    case 'waypoint':
      return waypoint(rest);
    case 'authz':
      return (await import('./authz.js')).authz(rest);
    case 'ctl':
      return (await import('./ctl.js')).ctl(rest);
    case 'dashboard':
      return (await import('./dashboard.js')).dashboard(rest);
    case undefined:
    case '-h':
    case '--help':
    case 'help':
      console.log(USAGE);
      return cmd === undefined ? 2 : 0;
    default:
      console.error(`ambit: unknown command ${JSON.stringify(cmd)}\n\n${USAGE}`);
      return 2;
  }
}

async function echo(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { host: { type: 'string' }, port: { type: 'string', default: '8080' } },
  });
  const host = values.host ?? process.env.POD_IP ?? '127.0.0.1';
  const pod = process.env.POD_NAME
    ? `${process.env.POD_NAMESPACE ?? 'default'}/${process.env.POD_NAME}`
    : `echo@${host}`;
  const { startEcho } = await import('./echo.js');
  await startEcho({ host, port: Number(values.port), pod });
  console.log(
    JSON.stringify({
      level: 30,
      time: new Date().toISOString(),
      msg: 'echo listening',
      addr: `${host}:${values.port}`,
      pod,
    }),
  );
  await untilSignal();
  return 0;
}

async function controlplane(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      config: { type: 'string' },
      state: { type: 'string', default: '.ambit' },
      listen: { type: 'string', default: DEFAULT_CONTROL_PLANE_ADDR },
      'trust-domain': { type: 'string' },
      'root-namespace': { type: 'string' },
      'root-cert': { type: 'string' },
      'root-key': { type: 'string' },
      'waypoint-pool': { type: 'string' },
      kube: { type: 'boolean' },
      kubeconfig: { type: 'string' },
      namespace: { type: 'string' },
      'waypoint-image': { type: 'string' },
    },
  });
  if (!values.config && !values.kube) throw new UsageError('controlplane needs --config DIR or --kube');
  if (values.config && values.kube)
    throw new UsageError('controlplane takes --config DIR or --kube, not both');
  const { ControlPlane } = await import('../controlplane/server.js');
  const cp = new ControlPlane({
    configDir: values.config,
    stateDir: values.state,
    listen: values.listen,
    trustDomain: values['trust-domain'],
    rootNamespace: values['root-namespace'],
    rootCertFile: values['root-cert'],
    rootKeyFile: values['root-key'],
    waypointPool: values['waypoint-pool'],
    kube: values.kube
      ? {
          kubeconfig: values.kubeconfig,
          namespace: values.namespace,
          waypointImage: values['waypoint-image'],
        }
      : undefined,
  });
  await cp.start();
  process.send?.({ type: 'ready' });
  await untilSignal();
  await cp.stop();
  return 0;
}

async function node(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      name: { type: 'string' },
      ip: { type: 'string' },
      state: { type: 'string', default: '.ambit' },
      controlplane: { type: 'string', default: DEFAULT_CONTROL_PLANE_ADDR },
      'cert-ttl': { type: 'string' },
      'trust-domain': { type: 'string' },
      'key-algorithm': { type: 'string' },
      'access-log': { type: 'string' },
      'no-metrics': { type: 'boolean' },
      capture: { type: 'string', default: 'socks' },
      'netns-prefix': { type: 'string' },
      'disable-capture': { type: 'boolean' },
      'admin-bind': { type: 'string' },
      workers: { type: 'string' },
    },
  });
  if (!values.name || !values.ip) throw new UsageError('node needs --name NODE and --ip IP');
  const { chooseWorkers, WorkersError } = await import('../nodeproxy/workers.js');
  let workers: ReturnType<typeof chooseWorkers>;
  try {
    workers = chooseWorkers(values.workers ?? process.env.AMBIT_NODE_WORKERS, {
      netnsCapture: values.capture === 'netns',
    });
  } catch (err) {
    if (err instanceof WorkersError) throw new UsageError(err.message);
    throw err;
  }
  if (workers.reason)
    (await import('../common/log.js'))
      .componentLogger('node', { node: values.name })
      .warn({ 'workers.asked': values.workers ?? process.env.AMBIT_NODE_WORKERS, reason: workers.reason }, 'running 1 worker');
  if (
    values['admin-bind'] !== undefined &&
    !(await import('../common/addr.js')).isIpLiteral(values['admin-bind'])
  )
    throw new UsageError('--admin-bind must be an IP address (e.g. 127.0.0.1 or the node IP)');
  if (values.capture !== 'socks' && values.capture !== 'netns')
    throw new UsageError('--capture must be socks (local mode) or netns (transparent, in pod namespaces)');
  const alg = values['key-algorithm'];
  if (alg && alg !== 'ECDSA_P256' && alg !== 'RSA_2048')
    throw new UsageError('--key-algorithm must be ECDSA_P256 or RSA_2048');
  const { NodeProxy } = await import('../nodeproxy/proxy.js');
  const proxyOptions: import('../nodeproxy/proxy.js').NodeProxyOptions = {
    nodeName: values.name,
    nodeIp: values.ip,
    controlPlane: values.controlplane,
    stateDir: values.state,
    certTtlSeconds: certTtlFlag(values['cert-ttl']),
    trustDomain: values['trust-domain'],
    keyAlgorithm: alg as 'ECDSA_P256' | 'RSA_2048' | undefined,
    telemetry: {
      accessLog: values['access-log'],
      metrics: values['no-metrics'] ? false : undefined,
      // Admin's address: default 127.0.0.1 with --capture netns, the node IP in local mode.
      ...(values['admin-bind'] ? { adminHost: values['admin-bind'] } : {}),
      // After an admin /quitquitquit drain, leave the way Ctrl-C does.
      onQuit: () => process.emit('SIGTERM'),
    },
    netnsCapture:
      values.capture === 'netns'
        ? {
            netnsPathOf: (await import('../redirect/pod-netns.js')).podNetnsLookup(values['netns-prefix']),
            enabled: !values['disable-capture'],
          }
        : undefined,
  };
  const proxy =
    workers.count > 1
      ? new (await import('../nodeproxy/primary.js')).NodeProxyPrimary(proxyOptions, workers.count)
      : new NodeProxy(proxyOptions);
  await proxy.start();
  // Kill switch at run time: SIGUSR2 turns transparent capture off, the next one on again.
  if (values.capture === 'netns')
    process.on('SIGUSR2', () => {
      if (proxy instanceof NodeProxy) void proxy.setCaptureEnabled(!proxy.captureEnabled());
    });
  process.send?.({ type: 'ready' });
  await untilSignal();
  await proxy.stop();
  return 0;
}

async function waypoint(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      name: { type: 'string' },
      ip: { type: 'string' },
      node: { type: 'string' },
      state: { type: 'string', default: '.ambit' },
      controlplane: { type: 'string', default: DEFAULT_CONTROL_PLANE_ADDR },
      'cert-ttl': { type: 'string' },
      'trust-domain': { type: 'string' },
    },
  });
  const [namespace, name, extra] = (values.name ?? '').split('/');
  if (!namespace || !name || extra !== undefined)
    throw new UsageError('waypoint needs --name NAMESPACE/NAME');
  const { isIpLiteral } = await import('../common/addr.js');
  if (!values.ip || !isIpLiteral(values.ip)) throw new UsageError('waypoint needs --ip IP (an IP address)');
  const { Waypoint } = await import('../waypoint/waypoint.js');
  const wp = new Waypoint({
    namespace,
    name,
    ip: values.ip,
    nodeName: values.node,
    controlPlane: values.controlplane,
    stateDir: values.state,
    certTtlSeconds: certTtlFlag(values['cert-ttl']),
    trustDomain: values['trust-domain'],
  });
  await wp.start();
  process.send?.({ type: 'ready' });
  await untilSignal();
  await wp.stop();
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    console.error(`ambit: ${err instanceof UsageError ? err.message : errorMessage(err)}`);
    if (!(err instanceof UsageError) && process.env.AMBIT_DEBUG) console.error(err);
    process.exit(err instanceof UsageError ? 2 : 1);
  },
);
