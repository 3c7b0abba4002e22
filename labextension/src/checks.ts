/**
 * The runtime checks the generated record checks (`records.generated.ts`) are made
 * of: each throws `SchemaError` saying where a value differs from its declaration
 * (pure: no JupyterLab imports).
 *
 * `object` is typed by its interface (`Checks<T>` needs one check per key), so a field
 * added to an interface without a check does not compile; `strict` mode also rejects
 * fields the interface does not know (the unit tests use it on real server answers).
 */

/** Thrown when an answer does not have the shape its interface says. */
export class SchemaError extends Error {
  constructor(where: string, problem: string) {
    super(`${where}: ${problem}`);
    this.name = 'SchemaError';
  }
}

export type Check = (value: unknown, where: string, strict: boolean) => void;
export type Checks<T> = { [K in keyof T]-?: Check };

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

export const number: Check = (value, where) => {
  if (typeof value !== 'number' || !Number.isFinite(value)) {
    throw new SchemaError(
      where,
      `expected a finite number, got ${show(value)}`
    );
  }
};
export const integer: Check = (value, where, strict) => {
  number(value, where, strict);
  if (!Number.isInteger(value)) {
    throw new SchemaError(where, `expected an integer, got ${show(value)}`);
  }
};
export const string: Check = (value, where) => {
  if (typeof value !== 'string') {
    throw new SchemaError(where, `expected a string, got ${show(value)}`);
  }
};
export const boolean: Check = (value, where) => {
  if (typeof value !== 'boolean') {
    throw new SchemaError(where, `expected a boolean, got ${show(value)}`);
  }
};
export const nullable =
  (check: Check): Check =>
  (value, where, strict) => {
    if (value !== null) {
      check(value, where, strict);
    }
  };
/** A fixed-length list: `[low, high]` pairs and the like. */
export const tuple =
  (...checks: Check[]): Check =>
  (value, where, strict) => {
    if (!Array.isArray(value) || value.length !== checks.length) {
      const shape =
        checks.length === 2 ? '[low, high]' : `${checks.length} items`;
      throw new SchemaError(where, `expected ${shape}, got ${show(value)}`);
    }
    value.forEach((item, index) =>
      checks[index](item, `${where}[${index}]`, strict)
    );
  };
export const literal =
  (...values: (string | number | boolean)[]): Check =>
  (value, where) => {
    if (!values.includes(value as string | number | boolean)) {
      throw new SchemaError(
        where,
        `expected one of ${values.join(', ')}, got ${show(value)}`
      );
    }
  };
export const recordOf =
  (check: Check): Check =>
  (value, where, strict) => {
    if (!isObject(value)) {
      throw new SchemaError(where, `expected an object, got ${show(value)}`);
    }
    for (const [key, item] of Object.entries(value)) {
      check(item, `${where}.${key}`, strict);
    }
  };
export const array =
  (check: Check): Check =>
  (value, where, strict) => {
    if (!Array.isArray(value)) {
      throw new SchemaError(where, `expected a list, got ${show(value)}`);
    }
    value.forEach((item, index) => check(item, `${where}[${index}]`, strict));
  };
/** One of several shapes: the first that fits; else the first one's complaint. */
export const anyOf =
  (...checks: Check[]): Check =>
  (value, where, strict) => {
    let first: unknown = null;
    for (const check of checks) {
      try {
        check(value, where, strict);
        return;
      } catch (error) {
        first ??= error;
      }
    }
    throw first;
  };

export function object<T>(checks: Checks<T>): Check {
  return (value, where, strict) => {
    if (!isObject(value)) {
      throw new SchemaError(where, `expected an object, got ${show(value)}`);
    }
    for (const [key, check] of Object.entries(checks) as [string, Check][]) {
      if (!(key in value)) {
        throw new SchemaError(`${where}.${key}`, 'missing');
      }
      check(value[key], `${where}.${key}`, strict);
    }
    if (strict) {
      const unknown = Object.keys(value).filter(key => !(key in checks));
      if (unknown.length) {
        throw new SchemaError(where, `fields not in the interface: ${unknown}`);
      }
    }
  };
}

function show(value: unknown): string {
  const text = JSON.stringify(value);
  return text === undefined ? String(value) : text.slice(0, 60);
}
