// Preloaded (node --require) into the Jazzer process by scripts/fuzz.mjs when the compat copy of
// @jazzer.js/fuzzer is in use: `require('@jazzer.js/fuzzer')` from @jazzer.js/core and
// @jazzer.js/instrumentor then resolves to that copy (AMBIT_JAZZER_FUZZER, a package dir in the
// cache) instead of node_modules, which stays untouched. See fuzz/README.md.
'use strict';
// A --require preload runs before any ESM loader, so it is CommonJS by necessity.
/* eslint-disable @typescript-eslint/no-require-imports */
const Module = require('node:module');
const path = require('node:path');

const dir = process.env.AMBIT_JAZZER_FUZZER;
if (dir) {
  const target = path.join(dir, 'dist', 'fuzzer.js');
  const resolve = Module._resolveFilename;
  Module._resolveFilename = function (request, ...rest) {
    if (request === '@jazzer.js/fuzzer') return target;
    return resolve.call(this, request, ...rest);
  };
}
