/**
 * How far V8 lets the old generation grow past what survived its last full collection before the
 * next one: 150 %, to 2.5 times. Left to itself V8 picks up to four times for a heap this small: a
 * saturated gateway then peaked at 192–203 MB resident, mostly garbage waiting for a collection,
 * against 158–163 MB at 2.5 times and 141–156 at twice, where the more frequent full collections
 * began to cost the server 4–8 % more CPU per run (`npm run bench`, alternating, 2026-11-30;
 * docs/benchmarks.md). A `--heap-growing-percent` given to node is kept.
 */
export const HEAP_GROWING_PERCENT = 150

/** The V8 flag server.ts sets at boot, unless node was started with its own. */
export function heapFlag (execArgv: readonly string[]): string | undefined {
  return execArgv.some(arg => /^--heap[-_]growing[-_]percent(=|$)/.test(arg)) ? undefined : `--heap-growing-percent=${HEAP_GROWING_PERCENT}`
}
