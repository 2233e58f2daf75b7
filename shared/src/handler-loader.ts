/**
 * Loads a handler or hooks class named like `./handlers.js#FileHandlers` or
 * `my-package/handlers#FileHandlers` (module, `#`, exported name).
 */
import { ConfigError } from './errors.js';
import { importUserModule, showSetting } from './config.js';

/**
 * Imports the class `spec` names and checks that it extends `base`.
 * `variable` names the setting in errors. A path is relative to the working
 * directory; a package specifier is resolved as `importUserModule` does.
 */
export async function loadClass<T>(spec: string, base: abstract new (...args: never[]) => T, variable: string): Promise<new () => T> {
  const setting = showSetting(variable, spec);
  const hash = spec.lastIndexOf('#');
  if (hash <= 0 || hash === spec.length - 1) {
    throw new ConfigError(`${setting} is not valid: expected <module>#<ExportedClass>, e.g. ./handlers.js#FileHandlers`);
  }
  const modulePart = spec.slice(0, hash);
  const exportName = spec.slice(hash + 1);
  let mod: Record<string, unknown>;
  try {
    mod = await importUserModule(modulePart);
  } catch (err) {
    throw new ConfigError(`${setting}: cannot import ${modulePart}: ${(err as Error).message}`, { cause: err });
  }
  const cls = mod[exportName];
  if (typeof cls !== 'function') {
    const exported = Object.keys(mod).filter((k) => typeof mod[k] === 'function');
    throw new ConfigError(`${setting}: ${modulePart} exports no class named ${exportName}${exported.length > 0 ? ` (it exports ${exported.join(', ')})` : ''}`);
  }
  if (!(cls.prototype instanceof base)) {
    // The usual cause besides a wrong class: the module imported its own
    // copy of the RestPipe package, so its base class is another object.
    const sameName = ancestors(cls).some((a) => a !== base && a.name === base.name);
    throw new ConfigError(
      sameName
        ? `${setting}: ${exportName} extends a different copy of ${base.name}; the module must import the same RestPipe package this node runs (two copies are installed)`
        : `${setting}: ${exportName} must extend ${base.name}`,
    );
  }
  return cls as new () => T;
}

function ancestors(cls: Function): Function[] {
  const out: Function[] = [];
  let proto: unknown = Object.getPrototypeOf(cls);
  while (typeof proto === 'function' && proto !== Function.prototype) {
    out.push(proto);
    proto = Object.getPrototypeOf(proto);
  }
  return out;
}
