import { describe, expect, it } from 'vitest';
import { adsServiceDefinition, TYPE_ADDRESS } from '../../../src/xds/proto.js';

describe('Delta xDS wire form', () => {
  it('carries the type URL inside each resource Any as well as on the response', () => {
    const def = adsServiceDefinition.DeltaAggregatedResources!;
    const bytes = def.responseSerialize({
      typeUrl: TYPE_ADDRESS,
      nonce: 'n1',
      resources: [
        { name: 'r', version: 'v', resource: { typeUrl: TYPE_ADDRESS, value: Buffer.from([8, 1]) } },
      ],
    }) as Buffer;
    const occurrences = bytes.toString('latin1').split(TYPE_ADDRESS).length - 1;
    expect(occurrences).toBe(2);
    const back = def.responseDeserialize(bytes) as { resources: { resource: { typeUrl: string } }[] };
    expect(back.resources[0]!.resource.typeUrl).toBe(TYPE_ADDRESS);
  });
});
