/**
 * Watches a node's certificate folder and calls back, debounced, when
 * anything in it changes: `restpipe-certs set-identity` renames several
 * files into place one after the other, and a Kubernetes secret volume
 * swaps a `..data` link, so the callback runs once the folder has been
 * quiet for `debounceMs`. The callback decides whether the contents really
 * changed. A watch that fails (the folder went away) is logged once and
 * stops; SIGHUP still reloads. When the folder is a link that now points
 * elsewhere, `refresh()` watches the new target.
 */
import { type FSWatcher, realpathSync, watch } from 'node:fs';
import type { Logger } from './logger.js';

/** How long the folder must be quiet before the callback runs. */
export const IDENTITY_WATCH_DEBOUNCE_MS = 500;

export class IdentityWatch {
  private watcher: FSWatcher | undefined;
  private watched: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    private readonly dir: string,
    private readonly onChange: () => void,
    private readonly log: Logger,
    private readonly debounceMs = IDENTITY_WATCH_DEBOUNCE_MS,
  ) {
    this.refresh();
  }

  /** (Re)starts the watch when the folder's real path is not the one watched. */
  refresh(): void {
    if (this.closed) return;
    let real: string;
    try {
      real = realpathSync(this.dir);
    } catch (err) {
      this.stop();
      this.log.warn({ dir: this.dir, err: (err as Error).message }, 'cannot watch the certificate folder; reload with SIGHUP');
      return;
    }
    if (real === this.watched && this.watcher) return;
    this.stop();
    try {
      this.watcher = watch(real, { persistent: false }, () => this.changed());
      this.watched = real;
      this.watcher.on('error', (err) => {
        this.log.warn({ dir: this.dir, err: err.message }, 'stopped watching the certificate folder; reload with SIGHUP');
        this.stop();
      });
    } catch (err) {
      this.log.warn({ dir: this.dir, err: (err as Error).message }, 'cannot watch the certificate folder; reload with SIGHUP');
    }
  }

  private changed(): void {
    if (this.closed) return;
    if (this.timer) this.timer.refresh();
    else {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        if (!this.closed) this.onChange();
      }, this.debounceMs);
      this.timer.unref();
    }
  }

  private stop(): void {
    this.watcher?.close();
    this.watcher = undefined;
    this.watched = undefined;
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.stop();
  }
}
