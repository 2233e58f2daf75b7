/**
 * Loads a handler or hooks class named like `./handlers.js#FileHandlers` or
 * `my-package/handlers#FileHandlers` (module, `#`, exported name).
 */
import { ConfigError } from './errors.js';
import { toImportSpecifier } from './config.js';

/**
 * Imports the class `spec` names and checks that it extends `base`.
 * `variable` names the setting in errors.
 */
export async function loadClass<T>(spec: string, base: abstract new (...args: never[]) => T, variable: string): Promise<new () => T> {
  const hash = spec.lastIndexOf('#');
  if (hash <= 0 || hash === spec.length - 1) {
    throw new ConfigError(`${variable}="${spec}" is not valid: expected <module>#<ExportedClass>, e.g. ./handlers.js#FileHandlers`);
  }
  const modulePart = spec.slice(0, hash);
  const exportName = spec.slice(hash + 1);
  let mod: Record<string, unknown>;
  try {
    mod = (await import(toImportSpecifier(modulePart))) as Record<string, unknown>;
  } catch (err) {
    throw new ConfigError(`${variable}="${spec}": cannot import ${modulePart}: ${(err as Error).message}`, { cause: err });
  }
  const cls = mod[exportName];
  if (typeof cls !== 'function') {
    throw new ConfigError(`${variable}="${spec}": ${modulePart} exports no class named ${exportName}`);
  }
  if (!(cls.prototype instanceof base)) {
    throw new ConfigError(`${variable}="${spec}": ${exportName} must extend ${base.name}`);
  }
  return cls as new () => T;
}
