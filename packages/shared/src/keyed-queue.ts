/**
 * Runs tasks one at a time per key and concurrently across keys: a run's events are handled in order
 * while thousands of runs progress at once.
 */
export class KeyedQueue {
  private readonly tails = new Map<string, Promise<unknown>>();
  private readonly counts = new Map<string, number>();

  run<T>(key: string, task: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(key) ?? Promise.resolve();
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
    const counted = () => {
      const left = (this.counts.get(key) ?? 1) - 1;
      if (left === 0) this.counts.delete(key);
      else this.counts.set(key, left);
      return task();
    };
    const result = previous.then(counted, counted);
    const tail = result.then(
      () => undefined,
      () => undefined,
    );
    this.tails.set(key, tail);
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return result;
  }

  /** Whether a task for this key is running or queued. */
  busy(key: string): boolean {
    return this.tails.has(key);
  }

  /** Tasks for this key queued behind the one running now. */
  waiting(key: string): number {
    return this.counts.get(key) ?? 0;
  }

  get size(): number {
    return this.tails.size;
  }
}
