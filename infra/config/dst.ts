/**
 * Daylight-saving checks for schedules. EventBridge Scheduler evaluates a cron expression
 * in its time zone: a local time that does not exist (the spring-forward gap) is skipped
 * that day, and one that happens twice (the fall-back overlap) runs once. A nightly
 * backup at 02:00 in Europe/Berlin misses a night a year, a 47 h gap that fires the
 * staleness alarm. This finds the local times a cron fires at that fall in a gap or an
 * overlap of its zone within a year.
 */

const formatters = new Map<string, Intl.DateTimeFormat>();

/** The wall-clock minutes since midnight and the date of `utcMs` in `timeZone`. */
function wallClock(utcMs: number, timeZone: string): { date: string; minutes: number } {
  let f = formatters.get(timeZone);
  if (!f) {
    f = new Intl.DateTimeFormat("en-CA", {
      timeZone,
      year: "numeric",
      month: "2-digit",
      day: "2-digit",
      hour: "2-digit",
      minute: "2-digit",
      hourCycle: "h23",
    });
    formatters.set(timeZone, f);
  }
  const p = Object.fromEntries(f.formatToParts(new Date(utcMs)).map((x) => [x.type, x.value]));
  return { date: `${p.year}-${p.month}-${p.day}`, minutes: Number(p.hour) * 60 + Number(p.minute) };
}

/** How many distinct instants show `minutes` past midnight on `date` (UTC midnight ms) in the zone: 0, 1 or 2. */
function occurrences(dayUtcMs: number, minutes: number, timeZone: string): number {
  const date = new Date(dayUtcMs).toISOString().slice(0, 10);
  const wall = dayUtcMs + minutes * 60_000;
  let found = 0;
  // Every UTC offset in use is within ±14 h, in steps of 15 minutes.
  for (let offset = -14 * 60; offset <= 14 * 60; offset += 15) {
    const candidate = wall - offset * 60_000;
    const seen = wallClock(candidate, timeZone);
    if (seen.date === date && seen.minutes === minutes) found++;
  }
  return found;
}

/** The values a cron field lists, within [min, max]; undefined for forms this does not expand. */
function expand(field: string, min: number, max: number): number[] | undefined {
  const out = new Set<number>();
  for (const part of field.split(",")) {
    const m = /^(\*|(\d+)(?:-(\d+))?)(?:\/(\d+))?$/.exec(part);
    if (!m) return undefined;
    const from = m[1] === "*" ? min : Number(m[2]);
    const to = m[1] === "*" ? max : m[3] !== undefined ? Number(m[3]) : m[4] !== undefined ? max : from;
    const by = m[4] !== undefined ? Number(m[4]) : 1;
    if (by < 1) return undefined;
    for (let v = from; v <= to; v += by) if (v >= min && v <= max) out.add(v);
  }
  return [...out].sort((a, b) => a - b);
}

/**
 * The local dates (as UTC midnights) within a year of `start` on which the zone's offset
 * may change: a UTC day across which it changes, and the dates either side of it (a
 * zone far from UTC changes on a local date that is another UTC date).
 */
function changeDays(start: number, timeZone: string): number[] {
  const days = new Set<number>();
  for (let day = 0; day < 367; day++) {
    const dayMs = start + day * 86_400_000;
    if (wallClock(dayMs, timeZone).minutes === wallClock(dayMs + 86_400_000, timeZone).minutes) continue;
    for (const d of [-1, 0, 1]) days.add(dayMs + d * 86_400_000);
  }
  return [...days].sort((a, b) => a - b);
}

/**
 * The problems of a schedule in its zone over the year from `from`: one line per local
 * time that is skipped (a gap) or ambiguous (an overlap) on some day, naming the first
 * such day. `rate(…)` and `at(…)` schedules, and cron forms this does not expand, give none.
 */
export function dstProblems(expression: string, timeZone: string, from: Date): string[] {
  const cron = /^cron\((.*)\)$/.exec(expression);
  if (!cron) return [];
  const [minuteField, hourField] = (cron[1] ?? "").trim().split(/\s+/);
  const minutes = expand(minuteField ?? "", 0, 59);
  const hours = expand(hourField ?? "", 0, 23);
  if (!minutes || !hours) return [];
  const problems: string[] = [];
  const start = Date.UTC(from.getUTCFullYear(), from.getUTCMonth(), from.getUTCDate());
  for (const hour of hours) {
    for (const minute of minutes) {
      const at = hour * 60 + minute;
      const shown = `${String(hour).padStart(2, "0")}:${String(minute).padStart(2, "0")}`;
      let gap: string | undefined;
      let overlap: string | undefined;
      for (const dayMs of changeDays(start, timeZone)) {
        const n = occurrences(dayMs, at, timeZone);
        const date = new Date(dayMs).toISOString().slice(0, 10);
        if (n === 0) gap ??= date;
        if (n > 1) overlap ??= date;
      }
      if (gap) problems.push(`${shown} does not exist on ${gap} in ${timeZone}: that run is skipped`);
      if (overlap) problems.push(`${shown} happens twice on ${overlap} in ${timeZone}: it runs once`);
    }
  }
  return problems;
}
