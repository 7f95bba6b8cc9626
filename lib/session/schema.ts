/**
 * Per-attribute Standard Schema validation (zod, valibot, arktype, ...): checked at `set()` and when
 * a change arrives from another node, so that schema drift during a rolling deploy is seen.
 */
import type { StandardSchemaV1 } from '@standard-schema/spec';
import { decodeValue } from './values.ts';
import { InvalidOptionsError, InvalidSessionValueError } from '../errors.ts';
import type { SessionObserver } from './events.ts';
import type { SessionState } from './state.ts';

/** A Standard Schema per attribute name; attributes without one are not checked. */
export type SessionSchema = { readonly [name: string]: StandardSchemaV1 };

/** The data type a `SessionSchema` describes: each attribute's schema output type. */
export type SchemaData<S extends SessionSchema> = { [K in keyof S]: StandardSchemaV1.InferOutput<S[K]> };

/**
 * Checks `value` against the schema of `name` and returns the schema's output (the value itself when
 * no schema covers the name). Throws `InvalidSessionValueError` listing the issues, and
 * `InvalidOptionsError` for a schema that validates asynchronously (a session write is synchronous).
 */
export function checkAttribute(schema: SessionSchema | undefined, name: string, value: unknown): unknown {
  const attribute = schema && Object.hasOwn(schema, name) ? schema[name] : undefined;
  if (!attribute) return value;
  const result = attribute['~standard'].validate(value);
  if (result instanceof Promise)
    throw new InvalidOptionsError(
      `the schema of attribute "${name}" validates asynchronously; session schemas must be synchronous`,
    );
  if (result.issues) throw new InvalidSessionValueError(name, result.issues.map(describeIssue));
  return result.value;
}

function describeIssue(issue: StandardSchemaV1.Issue): string {
  const path = issue.path?.map((segment) => String(typeof segment === 'object' ? segment.key : segment)).join('.');
  return path ? `${path}: ${issue.message}` : issue.message;
}

/**
 * Checks the attribute values that arrive from other nodes against this node's schema. A mismatch is
 * schema drift (a rolling deploy changed an attribute's shape): it is logged and counted, and the
 * value is still applied (every node must hold the same state); never thrown.
 */
export class SchemaDriftCheck {
  /** `report` hears each mismatch (the cluster logs it and counts `stats.schemaDrift`). */
  constructor(
    readonly schema: SessionSchema,
    readonly self: string,
    readonly report: (name: string, author: string, issues: readonly string[]) => void,
  ) {}

  /** The observer that checks each replicated attribute. */
  observer(): SessionObserver {
    const check = (state: SessionState, name: string, author: string) => {
      if (author === this.self || !Object.hasOwn(this.schema, name)) return;
      const value = state.attributes.get(name)?.value;
      if (value === undefined) return;
      try {
        checkAttribute(this.schema, name, decodeValue(value));
      } catch (error) {
        this.report(
          name,
          author,
          error instanceof InvalidSessionValueError ? error.issues : [(error as Error).message],
        );
      }
    };
    return {
      created: () => undefined, // its attributes follow as attribute changes
      attribute: (state, name, removed, author) => {
        if (!removed) check(state, name, author);
      },
      ended: () => undefined,
      removed: () => undefined,
    };
  }
}
