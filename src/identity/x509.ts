// The one place that loads @peculiar/x509 (the CA and tests use it; node proxies never load it,
// which keeps ~9 MB of library out of every node proxy's memory). The library resolves its
// algorithm plugins through tsyringe, which needs the Reflect metadata API at load time; ES
// modules evaluate imports in order, so reflect-metadata comes first.
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import * as x509lib from '@peculiar/x509';

x509lib.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509lib.cryptoProvider.set>[0]);

export const x509 = x509lib;
