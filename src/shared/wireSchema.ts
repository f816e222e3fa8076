// Valibot builders for data a peer sends: every string, array and record has a maximum size (a
// hostile peer must not make the other side keep or walk unbounded data), and every message says
// what was expected and what came. protocol.ts and protocolModels.ts build their schemas from these;
// the field path is added where an issue is described (protocol.ts's validation).

import * as v from 'valibot';

export function got(x: unknown): string {
  if (x === null) return 'null';
  if (Array.isArray(x)) return 'an array';
  if (typeof x === 'string') return x.length > 40 ? `a string of ${x.length} characters` : JSON.stringify(x);
  if (typeof x === 'object') return 'an object';
  return String(x);
}

export const expected = (want: string) => (i: { input: unknown }) => `expected ${want}, got ${got(i.input)}`;

export function str(max = 4096, min = 0) {
  const m = expected(`a string of ${min}–${max} characters`);
  return v.pipe(v.string(m), v.minLength(min, m), v.maxLength(max, m));
}

export function num(min: number, max: number) {
  const m = expected(`a number between ${min} and ${max}`);
  return v.pipe(v.number(m), v.finite(m), v.minValue(min, m), v.maxValue(max, m));
}

export function int(min: number, max: number) {
  const m = expected(`an integer between ${min} and ${max}`);
  return v.pipe(v.number(m), v.integer(m), v.minValue(min, m), v.maxValue(max, m));
}

export const bool = v.boolean(expected('true or false'));

export function oneOf<const T extends readonly string[]>(...values: T) {
  return v.picklist(values, expected(`one of ${values.map((x) => JSON.stringify(x)).join(', ')}`));
}

export function isPlainObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

/** An object of known fields; others are dropped. Not an array (valibot's object would take one). */
export function obj<E extends v.ObjectEntries>(entries: E) {
  const anObject = expected('an object');
  return v.pipe(
    v.custom<Record<string, unknown>>(isPlainObject, anObject),
    v.object(entries, (i) => (i.path ? 'required but missing' : anObject(i))),
  );
}

/** An object with only the listed keys, all optional, all of one kind. */
export function partialRecord<const K extends string, S extends v.GenericSchema>(keys: readonly K[], value: S) {
  const entries = Object.fromEntries(keys.map((k) => [k, v.optional(value)])) as { [P in K]: v.OptionalSchema<S, undefined> };
  return v.strictObject(entries, (i) =>
    i.expected === 'never' ? `unknown key ${JSON.stringify(i.input)} (expected ${keys.join(', ')})` : expected('an object')(i),
  );
}

/** Checked for size before any item is: a million-item array is refused, not walked. */
export function arr<S extends v.GenericSchema>(item: S, max: number) {
  return v.pipe(
    v.custom<unknown[]>((x) => Array.isArray(x) && x.length <= max, expected(`an array of at most ${max} items`)),
    v.array(item),
  );
}

/** A string-keyed record of at most `max` entries, all of one kind. */
export function record<S extends v.GenericSchema>(value: S, max: number) {
  return v.pipe(
    v.custom<Record<string, unknown>>((x) => isPlainObject(x) && Object.keys(x).length <= max, expected(`an object of at most ${max} keys`)),
    v.record(v.string(), value),
  );
}

export const MAX_SAFE = Number.MAX_SAFE_INTEGER;
export const path = str(4096, 1);
export const bytes = num(0, 2 ** 60);

/** True when two object types have the same fields, optional ones included: a schema checked against the interface it stands for. */
export type Same<A, B> = [A, keyof A] extends [B, keyof B] ? ([B, keyof B] extends [A, keyof A] ? true : false) : false;
