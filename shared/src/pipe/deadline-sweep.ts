/**
 * Deadlines of one exchange, on one timer. Each request in flight (sent or
 * being handled here) has an entry with its `deadlineAt`; the sweep keeps
 * them in a min-heap and arms a single timer for the earliest. A request
 * that settles just marks its entry done (dropped when it reaches the top),
 * and progress that moves a deadline later re-files it lazily, so adding,
 * settling and moving cost O(log n) at most and nothing per tick.
 *
 * This replaces a setTimeout per request on each side (timer insertion was
 * ~1% of a node's time under load, and GC more).
 */

/** One deadline. The owner sets `deadlineAt` (ms on the sweep's clock) before `add`. */
export interface Deadline {
  deadlineAt: number;
  /** Called once when the deadline passes, unless removed first. */
  expire(): void;
  /** @internal heap bookkeeping: false once removed or expired */
  active?: boolean;
  /** @internal the deadline it is filed under in the heap */
  filedAt?: number;
}

export class DeadlineSweep {
  private readonly heap: Deadline[] = [];
  private timer: NodeJS.Timeout | undefined;
  private armedFor = Number.POSITIVE_INFINITY;
  private closed = false;

  /** @param now monotonic milliseconds (performance.now by default; a test clock in unit tests). */
  constructor(private readonly now: () => number = () => performance.now()) {}

  /** Number of entries still waiting (done ones not yet dropped included). */
  get size(): number {
    return this.heap.length;
  }

  /** Files a new entry (each entry is added once). */
  add(entry: Deadline): void {
    if (this.closed || !Number.isFinite(entry.deadlineAt)) return;
    entry.active = true;
    this.file(entry);
    this.arm();
  }

  /** The entry settled: it will not expire. */
  remove(entry: Deadline): void {
    entry.active = false;
  }

  /** Moves a deadline later (progress on a streamed body): re-filed when it reaches the top, so this costs nothing now. */
  postpone(entry: Deadline, deadlineAt: number): void {
    if (deadlineAt > entry.deadlineAt) entry.deadlineAt = deadlineAt;
  }

  /** Stops the timer; no entry expires after this. */
  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.heap.length = 0;
  }

  private file(entry: Deadline): void {
    entry.filedAt = entry.deadlineAt;
    const heap = this.heap;
    heap.push(entry);
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const p = heap[parent] as Deadline;
      if ((p.filedAt as number) <= (entry.filedAt as number)) break;
      heap[i] = p;
      i = parent;
    }
    heap[i] = entry;
  }

  private pop(): Deadline | undefined {
    const heap = this.heap;
    const top = heap[0];
    const last = heap.pop();
    if (heap.length === 0 || last === undefined) return top;
    let i = 0;
    const n = heap.length;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const child = r < n && ((heap[r] as Deadline).filedAt as number) < ((heap[l] as Deadline).filedAt as number) ? r : l;
      if (((heap[child] as Deadline).filedAt as number) >= (last.filedAt as number)) break;
      heap[i] = heap[child] as Deadline;
      i = child;
    }
    heap[i] = last;
    return top;
  }

  /** Drops settled entries from the top, re-files moved ones, and arms the timer for the earliest. */
  private arm(): void {
    const heap = this.heap;
    for (;;) {
      const top = heap[0];
      if (top === undefined) break;
      if (top.active && top.filedAt === top.deadlineAt) break;
      this.pop();
      if (top.active && top.deadlineAt > (top.filedAt as number)) this.file(top);
    }
    const first = heap[0];
    if (first === undefined) {
      if (this.timer) clearTimeout(this.timer);
      this.timer = undefined;
      this.armedFor = Number.POSITIVE_INFINITY;
      return;
    }
    if (this.timer && this.armedFor <= first.deadlineAt) return;
    if (this.timer) clearTimeout(this.timer);
    this.armedFor = first.deadlineAt;
    this.timer = setTimeout(() => this.sweep(), Math.max(0, first.deadlineAt - this.now()));
    this.timer.unref();
  }

  private sweep(): void {
    this.timer = undefined;
    this.armedFor = Number.POSITIVE_INFINITY;
    const now = this.now();
    const heap = this.heap;
    while (!this.closed && heap.length > 0) {
      const top = heap[0] as Deadline;
      if (!top.active) {
        this.pop();
        continue;
      }
      if (top.filedAt !== top.deadlineAt) {
        // Moved later since it was filed: file it under its new deadline.
        this.pop();
        this.file(top);
        continue;
      }
      if (top.deadlineAt > now) break;
      this.pop();
      top.active = false;
      top.expire();
    }
    if (!this.closed) this.arm();
  }
}
