/** Deliveries started per second, in one-second buckets over the last minute. */
export class RateWindow {
  private readonly buckets = new Float64Array(60);
  private second = 0;
  private advance(now: number): void {
    const sec = Math.floor(now / 1000);
    for (let s = Math.max(this.second + 1, sec - 59); s <= sec; s++) this.buckets[s % 60] = 0;
    this.second = Math.max(this.second, sec);
  }
  add(now: number): void {
    this.advance(now);
    this.buckets[Math.floor(now / 1000) % 60]!++;
  }
  /** Sum of the last `seconds` whole buckets before now's (the current one is still filling). */
  sum(now: number, seconds: number): number {
    this.advance(now);
    let n = 0;
    for (let s = this.second - seconds; s < this.second; s++) n += this.buckets[((s % 60) + 60) % 60]!;
    return n;
  }
}
