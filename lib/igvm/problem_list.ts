/**
 * A list of problems with a cap: a hostile file can have millions of the same fault, and
 * neither memory nor the report should grow with them.
 */

/** How many problems a report lists before it only counts. */
const MAX_LISTED_PROBLEMS = 100;

/** Problems in the order found; past the cap they are only counted. */
export class ProblemList {
  private readonly listed: string[] = [];
  private more = 0;

  push(...problems: string[]): void {
    for (const p of problems) {
      if (this.listed.length < MAX_LISTED_PROBLEMS) this.listed.push(p);
      else this.more++;
    }
  }

  /** How many problems were found, listed or not. */
  get count(): number {
    return this.listed.length + this.more;
  }

  get first(): string | undefined {
    return this.listed[0];
  }

  /** The listed problems, then "… and N more" when some were only counted. */
  toArray(): string[] {
    return this.more === 0
      ? [...this.listed]
      : [...this.listed, `… and ${this.more.toLocaleString("en-US")} more`];
  }
}
