#!/usr/bin/env node
// Puts the operator's files into this package before `npm pack` / `npm publish`
// packs it, and takes them out again afterwards (`--remove`, the postpack step).
// deploy/ (systemd units, environment examples, nginx sites), the production
// start scripts and the production guide live once, at the repository root; an
// install without a checkout finds them in node_modules/restpipe/.
import { chmodSync, cpSync, mkdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, '..');
/** What the package gets, relative to the repository root and to this folder alike. */
const COPIED = ['deploy', 'scripts/start-server-prod.sh', 'scripts/start-client-prod.sh', 'scripts/lib/common.sh', 'docs/production.md', 'docs/identities.md'];
const FOLDERS = ['deploy', 'scripts', 'docs'];

for (const folder of FOLDERS) rmSync(join(here, folder), { recursive: true, force: true });
if (!process.argv.includes('--remove')) {
  for (const path of COPIED) {
    mkdirSync(dirname(join(here, path)), { recursive: true });
    cpSync(join(repo, path), join(here, path), { recursive: true });
  }
  for (const script of COPIED.filter((p) => p.endsWith('-prod.sh'))) chmodSync(join(here, script), 0o755);
}
