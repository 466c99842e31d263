import type { RecordedEvent } from "@smallchain/shared";

/** A map that forgets its oldest entries: an echo another replica received is never taken here. */
export class BoundedMap<V> {
  protected readonly items = new Map<string, V>();
  constructor(private readonly max: number) {}
  set(id: string, value: V): void {
    this.items.set(id, value);
    if (this.items.size > this.max) this.items.delete(this.items.keys().next().value!);
  }
  get(id: string): V | undefined {
    return this.items.get(id);
  }
  /** The value, forgotten. */
  take(id: string): V | undefined {
    const value = this.items.get(id);
    if (value !== undefined) this.items.delete(id);
    return value;
  }
  delete(id: string): boolean {
    return this.items.delete(id);
  }
  has(id: string): boolean {
    return this.items.has(id);
  }
}

/**
 * The decisions this process recorded and carried out, by event id, until their echo comes (see onEvent). An
 * event is kept whole for `keepMs` only, then just its id: an echo another replica received never comes here, and a
 * decision may carry a large command (the messages since the last LLM call), so at most `keepMs` of them are held.
 */
export class CarriedOut extends BoundedMap<RecordedEvent | true> {
  private readonly kept: { id: string; at: number }[] = [];
  private head = 0;
  constructor(
    max: number,
    private readonly keepMs: number,
    private readonly now: () => number,
  ) {
    super(max);
  }
  /** Remembers an event recorded and carried out here (0 ms: its id only). */
  keep(event: RecordedEvent): void {
    if (this.keepMs <= 0) {
      this.set(event.id, true);
      return;
    }
    const t = this.now();
    this.set(event.id, event);
    this.kept.push({ id: event.id, at: t });
    while (this.head < this.kept.length && this.kept[this.head]!.at < t - this.keepMs) {
      const { id } = this.kept[this.head++]!;
      if (this.items.get(id) !== undefined) this.items.set(id, true);
    }
    if (this.head > 1024 && this.head * 2 > this.kept.length) {
      this.kept.splice(0, this.head);
      this.head = 0;
    }
  }
}
