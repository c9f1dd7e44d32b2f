// Conversion warnings, collected per object while a route table is compiled: what routing will
// do differently from what was written. `ambit ctl analyze` prints them; nothing here logs.
import type { RouteWarning, RouteWarningCode } from './types.js';

export class WarningSink {
  private readonly byObject = new Map<string, RouteWarning[]>();

  add(object: string, field: string, code: RouteWarningCode, message: string): void {
    let list = this.byObject.get(object);
    if (!list) this.byObject.set(object, (list = []));
    list.push({ code, object, field, message });
  }

  /** Warns about every field of `value` that is not in `known` (unsupported or misspelt). */
  unknownFields(object: string, field: string, value: unknown, known: readonly string[]): void {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) return;
    for (const key of Object.keys(value)) {
      if (!known.includes(key)) {
        this.add(
          object,
          `${field}.${key}`,
          'UNSUPPORTED_FIELD',
          `${key} is not supported by ambit's waypoint; ignored`,
        );
      }
    }
  }

  result(): Map<string, RouteWarning[]> {
    return this.byObject;
  }
}
