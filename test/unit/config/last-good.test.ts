import { describe, expect, it } from 'vitest';
import { keepLastGood } from '../../../src/config/file-source.js';
import { parseManifests } from '../../../src/config/load.js';

const svc = (name: string, port: number | string) =>
  `apiVersion: v1\nkind: Service\nmetadata: {name: ${name}}\nspec: {ports: [{port: ${port}}]}`;
const file = (...docs: string[]) => docs.join('\n---\n');

/** The keys and ports in force after `before` is edited into `after`. */
function inForce(before: string, after: string): string[] {
  const prevParse = parseManifests(before, 'f.yaml');
  const prev = { parse: prevParse, entries: prevParse.entries };
  return keepLastGood(prev, parseManifests(after, 'f.yaml'))
    .map((e) => `${e.key}:${(e.object as { spec: { ports: { port: number }[] } }).spec.ports[0]?.port}`)
    .sort();
}

describe('keepLastGood', () => {
  it.each([
    ['a valid edit applies', file(svc('a', 80)), file(svc('a', 81)), ['Service/default/a:81']],
    [
      'a broken document keeps its last good object',
      file(svc('a', 80), svc('b', 80)),
      file(svc('a', 0), svc('b', 81)),
      ['Service/default/a:80', 'Service/default/b:81'],
    ],
    [
      'a document renamed and broken at once keeps the old object, by position',
      file(svc('a', 80), svc('b', 80)),
      file(svc('A', 80), svc('b', 80)),
      ['Service/default/a:80', 'Service/default/b:80'],
    ],
    [
      'a misspelt kind keeps the old object, by position',
      file(svc('a', 80)),
      file(svc('a', 80).replace('kind: Service', 'kind: Servce')),
      ['Service/default/a:80'],
    ],
    [
      'a removed document is deleted when the rest is valid',
      file(svc('a', 80), svc('b', 80)),
      file(svc('b', 80)),
      ['Service/default/b:80'],
    ],
    [
      'a YAML syntax error keeps everything from the file',
      file(svc('a', 80), svc('b', 80)),
      file(svc('b', 81), 'x: [1, 2\ny: 3'),
      ['Service/default/a:80', 'Service/default/b:81'],
    ],
    [
      'a document removed while another broke without a name keeps everything',
      file(svc('a', 80), svc('b', 80), svc('c', 80)),
      file(svc('a', 80), 'kind: Service'),
      ['Service/default/a:80', 'Service/default/b:80', 'Service/default/c:80'],
    ],
    [
      'a broken document with a known name still lets other removals through',
      file(svc('a', 80), svc('b', 80), svc('c', 80)),
      file(svc('a', 0), svc('c', 80)),
      ['Service/default/a:80', 'Service/default/c:80'],
    ],
    [
      'a kind changed to an ignored kind is deleted',
      file(svc('a', 80)),
      'apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: a}',
      [],
    ],
  ])('%s', (_what, before, after, expected) => {
    expect(inForce(before, after)).toEqual(expected);
  });

  it('keeps nothing when there was nothing before', () => {
    expect(keepLastGood(undefined, parseManifests(svc('a', 0), 'f.yaml'))).toEqual([]);
  });
});
