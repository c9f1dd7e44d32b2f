// HTTP/1.1 into a test mesh as one pod: an http.Agent whose connections are SOCKS5 tunnels
// through that pod's node proxy listener, a small GET that reads the whole answer, and a GET on
// a tunnel the test already opened.
import http from 'node:http';
import type net from 'node:net';
import { socksConnect } from '../../src/cli/socks-client.js';

export class SocksAgent extends http.Agent {
  constructor(
    private readonly fromIp: string,
    options?: http.AgentOptions,
  ) {
    super(options);
  }

  override createConnection(
    opts: net.NetConnectOpts,
    cb: (err: Error | null, s?: net.Socket) => void,
  ): undefined {
    const o = opts as net.TcpNetConnectOpts;
    socksConnect({ host: this.fromIp, port: 15080 }, o.host ?? '', Number(o.port)).then(
      (s) => cb(null, s),
      (e: Error) => cb(e),
    );
    return undefined;
  }
}

export interface MeshReply {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  /** Time from sending to the end of the answer. */
  ms: number;
}

export function meshGet(
  agent: http.Agent,
  host: string,
  port: number,
  path: string,
  headers: Record<string, string> = {},
): Promise<MeshReply> {
  const start = performance.now();
  return new Promise((resolve, reject) => {
    const req = http.request({ host, port, path, headers, agent }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () =>
        resolve({ status: res.statusCode!, headers: res.headers, text, ms: performance.now() - start }),
      );
    });
    req.on('error', reject);
    req.end();
  });
}

/** Sends `n` requests from `concurrency` workers; the answers in completion order. */
export async function meshLoad(
  n: number,
  concurrency: number,
  send: (i: number) => Promise<MeshReply>,
): Promise<MeshReply[]> {
  const out: MeshReply[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) out.push(await send(next++));
    }),
  );
  return out;
}

/** One GET / (connection: close) written on an already open tunnel `socket`; resolves with the status. */
export function httpGetOver(socket: net.Socket, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host, port, path: '/', createConnection: () => socket, headers: { connection: 'close' } },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode!));
      },
    );
    req.on('error', reject);
    req.end();
  });
}
