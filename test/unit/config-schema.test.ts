// config/schema.json against JSON Schema's meta-schema: the daemon compiles
// it without that check (config/schema-validate.ts, start-up CPU), so a
// mistake in the schema is caught here.
import { Ajv } from 'ajv';
import { describe, expect, it } from 'vitest';
import { configSchema } from '../../config/schema-validate.js';

describe('config/schema.json', () => {
  it('is a valid JSON Schema (draft-07, as ajv reads it)', () => {
    const ajv = new Ajv({ allErrors: true, strict: false });
    const ok = ajv.validateSchema(configSchema);
    expect(ajv.errors ?? []).toEqual([]);
    expect(ok).toBe(true);
  });

  it('the meta-schema check would catch a broken schema', () => {
    const ajv = new Ajv({ allErrors: true, strict: false });
    expect(ajv.validateSchema({ ...configSchema, properties: { mode: { type: 'strng' } } })).toBe(false);
  });
});
